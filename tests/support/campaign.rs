//! A throwaway campaign for integration tests: a temp folder made by the real `breachmail init`,
//! people imported from a CSV written by the test, the real binary run against it, and its
//! database opened to check what was stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Row, SqlitePool};

pub const BIN: &str = env!("CARGO_BIN_EXE_breachmail");

/// Removes every `BREACHMAIL_*` variable inherited from the developer's shell, so that the
/// command sees only the overrides the test sets.
pub fn without_breachmail_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BREACHMAIL_") {
            command.env_remove(name);
        }
    }
    command
}

/// The binary under test, with no `BREACHMAIL_*` variable inherited from the developer's shell.
pub fn breachmail() -> Command {
    let mut command = Command::new(BIN);
    without_breachmail_env(&mut command);
    command
}

/// A campaign folder created by `breachmail init` inside a temporary folder.
pub struct Campaign {
    /// The temporary folder that holds the campaign folder; kept so both live as long as the
    /// test.
    pub tmp: tempfile::TempDir,
    /// The campaign folder.
    pub dir: PathBuf,
    /// `BREACHMAIL_*` overrides given to every command, set with [`Campaign::set`].
    pub env: Vec<(String, String)>,
}

/// One test person: a ref and an address; the rest is filled in.
pub fn person(person_ref: &str, email: &str) -> String {
    format!("{person_ref},{email},Mme,Élodie,Lefèvre,fr,name;email;postal;identifier,1234567A4821")
}

pub const CSV_HEADER: &str = "ref,email,civility,first_name,last_name,language,exposed,identifier";

impl Campaign {
    /// `breachmail init` in a new temp folder.
    pub fn new() -> Campaign {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let dir = tmp.path().join("campaign");
        let output = breachmail()
            .arg("init")
            .arg(&dir)
            .output()
            .expect("init runs");
        assert_success(&output, "init");
        Campaign {
            tmp,
            dir,
            env: Vec::new(),
        }
    }

    /// A campaign with these CSV rows (after [`CSV_HEADER`]) imported.
    pub fn with_people(rows: &[String]) -> Campaign {
        let campaign = Campaign::new();
        campaign.import_rows(rows);
        campaign
    }

    /// Writes these rows under [`CSV_HEADER`] to `people.csv` in the campaign folder, and imports
    /// them.
    pub fn import_rows(&self, rows: &[String]) {
        let csv = self.path("people.csv");
        let mut text = format!("{CSV_HEADER}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        std::fs::write(&csv, text).expect("write csv");
        let output = self.run(&["import", csv.to_str().expect("utf-8 path")]);
        assert!(
            output.status.success(),
            "import failed: {}",
            stderr(&output)
        );
    }

    /// `import FILE ARGS...`, which must succeed.
    pub fn import(&self, file: &Path, args: &[&str]) -> Output {
        let output = self
            .command()
            .arg("import")
            .arg(file)
            .args(args)
            .output()
            .expect("import runs");
        assert_success(&output, "import");
        output
    }

    /// Sets a `BREACHMAIL_*` override for every command run from now on.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sends to the test server at `url`: unlimited rate, short timeouts, retries an hour away.
    pub fn send_to(&mut self, url: &str) -> &mut Self {
        self.set("BREACHMAIL_SMTP_URL", url)
            .set("BREACHMAIL_RATE_PER_SECOND", "0")
            .set("BREACHMAIL_SMTP_TIMEOUT", "2s")
            .set("BREACHMAIL_RETRY_FIRST_DELAY", "1h")
            .set("BREACHMAIL_RETRY_MAX_DELAY", "2h")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("breachmail.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("breachmail.db")
    }

    /// A path inside the campaign folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// A path in the temporary folder, beside the campaign folder and outside it.
    pub fn outside(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file in the temporary folder, outside the campaign folder, and returns its path.
    pub fn write_outside(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.outside(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    /// Gives `command` this campaign's environment: no inherited `BREACHMAIL_*` variable, then
    /// the overrides set with [`Campaign::set`].
    pub fn apply_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        without_breachmail_env(command).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The command, ready to take arguments, run from the temporary folder with this campaign's
    /// configuration and environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .current_dir(self.tmp.path())
            .arg("--config")
            .arg(self.config());
        self.apply_env(&mut command);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("breachmail runs")
    }

    /// The same, without blocking the test's runtime (the SMTP test server lives on it).
    pub async fn run_async(&self, args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(args);
        tokio::process::Command::from(command)
            .kill_on_drop(true)
            .output()
            .await
            .expect("breachmail runs")
    }

    /// Starts the command in the background. The child is killed when its handle is dropped:
    /// a test that fails (or forgets to stop it) leaves no process behind.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut command = self.command();
        command.args(args);
        let mut command = tokio::process::Command::from(command);
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("spawn breachmail")
    }

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let output = self.run(&["status", "--json"]);
        assert_success(&output, "status --json");
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
    }

    pub async fn db(&self) -> SqlitePool {
        open_pool(&self.database()).await
    }

    /// ref → state
    pub async fn states(&self) -> BTreeMap<String, String> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT p.ref, d.state FROM people p JOIN deliveries d ON d.person_id = p.id",
        )
        .fetch_all(&pool)
        .await
        .expect("read states");
        pool.close().await;
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// One delivery column for a ref.
    pub async fn delivery<T>(&self, person_ref: &str, column: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
    {
        let pool = self.db().await;
        let value = sqlx::query_scalar::<_, T>(&format!(
            "SELECT d.{column} FROM deliveries d JOIN people p ON p.id = d.person_id WHERE p.ref = ?"
        ))
        .bind(person_ref)
        .fetch_one(&pool)
        .await
        .expect("read delivery");
        pool.close().await;
        value
    }

    /// Event kinds for a ref, in order.
    pub async fn events(&self, person_ref: &str) -> Vec<String> {
        let pool = self.db().await;
        let kinds = sqlx::query_scalar::<_, String>(
            "SELECT e.kind FROM events e JOIN people p ON p.id = e.person_id WHERE p.ref = ? ORDER BY e.id",
        )
        .bind(person_ref)
        .fetch_all(&pool)
        .await
        .expect("read events");
        pool.close().await;
        kinds
    }

    /// The ledger agrees with itself: every delivery's state is the `to_state` of its latest
    /// state-changing event, and nothing is left in `sending`. Returns the disagreements.
    pub async fn ledger_disagreements(&self) -> Vec<String> {
        let pool = self.db().await;
        let rows = sqlx::query(
            "SELECT p.ref, d.state,
                    (SELECT e.to_state FROM events e WHERE e.person_id = d.person_id
                       AND e.to_state IS NOT NULL ORDER BY e.id DESC LIMIT 1) AS last
             FROM deliveries d JOIN people p ON p.id = d.person_id",
        )
        .fetch_all(&pool)
        .await
        .expect("read states and events");
        pool.close().await;
        rows.iter()
            .filter_map(|r| {
                let (person_ref, state, last): (String, String, Option<String>) =
                    (r.get(0), r.get(1), r.get(2));
                (state == "sending" || last.as_deref() != Some(state.as_str()))
                    .then(|| format!("{person_ref}: state {state}, latest event {last:?}"))
            })
            .collect()
    }

    /// Lets time pass for the retry rules: every deferred delivery becomes due now.
    pub async fn make_deferred_due(&self) {
        let pool = self.db().await;
        sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE state = 'deferred'")
            .execute(&pool)
            .await
            .expect("make deferred deliveries due");
        pool.close().await;
    }
}

pub async fn open_pool(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("open the campaign database")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// The rows of a rejects file (header excluded), each as its five columns.
pub fn read_rejects(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("rejects file {}: {e}", path.display()));
    let header: Vec<String> = reader
        .headers()
        .expect("a header row")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, ["line", "ref", "field", "reason", "action"]);
    reader
        .records()
        .map(|r| {
            r.expect("a rejects row")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The Message-ID header of a raw message, without angle brackets.
pub fn message_id_of(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_matches(['<', '>']).to_owned())
    })
}
