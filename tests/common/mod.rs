//! What the integration tests share: a throwaway campaign folder made by the real `init`, the
//! real binary run against it, and a connection to its database to check what was stored.
//!
//! Every test file includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;

/// The binary under test, with no `BREACHMAIL_*` variable inherited from the developer's shell,
/// so a test sees only the overrides it sets.
pub fn breachmail() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_breachmail"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BREACHMAIL_") {
            command.env_remove(name);
        }
    }
    command
}

/// A campaign folder created by `breachmail init` inside a temporary folder.
pub struct Campaign {
    /// Kept so the folder lives as long as the test.
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Campaign {
    pub fn new() -> Campaign {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let dir = tmp.path().join("campaign");
        let output = breachmail()
            .arg("init")
            .arg(&dir)
            .output()
            .expect("init runs");
        assert_success(&output, "init");
        Campaign { tmp, dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("breachmail.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("breachmail.db")
    }

    /// A file in the temporary folder, outside the campaign.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a file in the temporary folder and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    /// The command, ready to take arguments, run from the temporary folder with this campaign's
    /// configuration.
    pub fn command(&self) -> Command {
        let mut command = breachmail();
        command
            .current_dir(self.tmp.path())
            .arg("--config")
            .arg(self.config());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("breachmail runs")
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

    /// `status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let output = self.run(&["status", "--json"]);
        assert_success(&output, "status --json");
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
    }

    pub async fn pool(&self) -> SqlitePool {
        open_pool(&self.database()).await
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

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
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
