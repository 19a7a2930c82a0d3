//! How a command ends and how it speaks: the exit codes scripts read ([`Exit`]), the usage or
//! configuration error that maps to exit 2 ([`UsageError`]), and the printers that never panic
//! ([`print_out`], [`print_err`]). The ground floor: it imports nothing from the crate, so every
//! module may use it.

use std::process::ExitCode;

/// A usage or configuration error: exit 2, with a message that names the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// How a command ended, as the exit code scripts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: done, but something the operator must look at failed (bad rows with --strict, a
    /// letter that does not render, a fatal error in send).
    Failed,
    /// 75 (EX_TEMPFAIL): no progress possible now (lock held, relay unreachable); try later.
    TryLater,
    /// 2: the configuration cannot work as it is (a relay's certificate not trusted, its login
    /// refused); the same code as a usage or configuration error found before starting.
    Configuration,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed => ExitCode::from(1),
            Exit::TryLater => ExitCode::from(75),
            Exit::Configuration => ExitCode::from(2),
        }
    }
}

/// Writes a line of results to stdout. A line that cannot be written (a full disk, a closed
/// pipe) is dropped rather than panicking: the database, not the terminal, is the record.
pub fn print_out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Writes a line to stderr; like [`print_out`], never panics.
pub fn print_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes text that already ends its lines (a rendered table or report) to stdout as it is;
/// like [`print_out`], never panics.
pub fn print_block(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}
