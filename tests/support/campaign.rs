//! A throwaway campaign for integration tests: a temp folder made by the real `breachmail init`,
//! people imported from a CSV written by the test, and the real binary run against it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Row, SqlitePool};

pub const BIN: &str = env!("CARGO_BIN_EXE_breachmail");

pub struct Campaign {
    _temp: tempfile::TempDir,
    pub dir: PathBuf,
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
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("campaign");
        let output = Command::new(BIN)
            .arg("init")
            .arg(&dir)
            .output()
            .expect("run init");
        assert!(
            output.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Campaign {
            _temp: temp,
            dir,
            env: Vec::new(),
        }
    }

    /// A campaign with these CSV rows (after the header) imported.
    pub fn with_people(rows: &[String]) -> Campaign {
        let campaign = Campaign::new();
        campaign.import_rows(rows);
        campaign
    }

    pub fn import_rows(&self, rows: &[String]) {
        let csv = self.dir.join("people.csv");
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

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("breachmail.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.arg("--config").arg(self.config()).args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("BREACHMAIL_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run breachmail")
    }

    /// The same, without blocking the test's runtime (the SMTP test server lives on it).
    pub async fn run_async(&self, args: &[&str]) -> Output {
        tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("run breachmail")
    }

    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        let mut command = tokio::process::Command::from(self.command(args));
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("spawn breachmail")
    }

    pub async fn db(&self) -> SqlitePool {
        SqlitePool::connect(&format!(
            "sqlite://{}",
            self.dir.join("breachmail.db").display()
        ))
        .await
        .expect("open the campaign database")
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

    /// Lets time pass for the retry rules: every deferred delivery becomes due now.
    pub async fn make_deferred_due(&self) {
        let pool = self.db().await;
        sqlx::query("UPDATE deliveries SET next_attempt_at = 0 WHERE state = 'deferred'")
            .execute(&pool)
            .await
            .expect("make deferred deliveries due");
        pool.close().await;
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
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

pub fn exists(path: &Path) -> bool {
    path.exists()
}
