//! The hand-over journal: which letters a run has begun to hand to a relay, written before the
//! first byte of each transaction goes out, so that after a crash only those are flagged as
//! possible duplicates.
//!
//! One append-only file per run beside the database (`<database>-handovers-<run id>`, owner
//! only), one record of 8 bytes a letter (its person id: a delivery is one row a person). A
//! record is one `write(2)`:
//! once it returns, the bytes are the kernel's and survive the process being killed, which is
//! the failure the flag is for. Writing it costs microseconds, where a committed mark in the
//! database cost the letter a round trip through the writer and SQLite (70 % of a worker's time
//! against a fast relay, measured), so the mark no longer waits behind outcomes and claims.
//!
//! The run that next takes the sender lease folds every journal of another run into the ledger
//! (`ledger::recover_abandoned`: the dead run's deliveries still `sending` whose record is here
//! are flagged), in the same transaction that gives those deliveries back, and then deletes the
//! files. A run that ends cleanly, every outcome recorded, deletes its own. Reading a journal
//! twice changes nothing: only deliveries still `sending` for that run are marked.
//!
//! The fence that the database mark gave (a run whose claims were taken over hands nothing over)
//! is the lease clock, read after the record is written: a run can only lose its claims once its
//! lease has expired, so a record written while the lease was still valid is in the file when
//! the next holder reads it, and a run that finds its lease lapsed stops.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

/// Bytes in one record: the person id, little-endian.
const RECORD: usize = 8;

/// This run's journal, shared by its workers.
pub(crate) struct HandOverLog {
    path: PathBuf,
    /// One writer at a time, so records follow each other whole (a short write, on a full disk,
    /// stops the run, and the reader drops a record cut short).
    file: Mutex<File>,
}

impl HandOverLog {
    /// Creates the journal of `run_id` beside `database`, owner-only.
    pub(crate) fn create(database: &Path, run_id: i64) -> anyhow::Result<HandOverLog> {
        let path = journal_path(database, run_id);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            // A file left under the same run id (a database restored from a copy) says nothing
            // of this run.
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("while creating the hand-over journal {}", path.display()))?;
        Ok(HandOverLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// Records that this letter is about to be handed to a relay. An error (a full disk) means
    /// the letter must not go.
    pub(crate) fn record(&self, person_id: i64) -> io::Result<()> {
        let record: [u8; RECORD] = person_id.to_le_bytes();
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("the hand-over journal's lock is poisoned"))?;
        file.write_all(&record)
    }

    /// Deletes the journal once every letter of the run has its outcome recorded.
    pub(crate) fn remove(&self) {
        if let Err(error) = remove_journal(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "the hand-over journal could not be deleted; the next run deletes it");
        }
    }
}

/// The journals that runs other than `run_id` left beside `database`, with their run ids.
pub(crate) fn left_by_others(database: &Path, run_id: i64) -> anyhow::Result<Vec<Journal>> {
    let dir = match database.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = format!("{}-handovers-", file_name(database));
    let mut journals = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("while looking for hand-over journals in {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(run) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|r| r.parse::<i64>().ok())
        else {
            continue;
        };
        if run != run_id {
            journals.push(Journal {
                run_id: run,
                path: entry.path(),
            });
        }
    }
    journals.sort_by_key(|j| j.run_id);
    Ok(journals)
}

/// A journal another run left.
#[derive(Debug)]
pub(crate) struct Journal {
    pub run_id: i64,
    pub path: PathBuf,
}

impl Journal {
    /// The person ids it names (a record cut short by a crash is ignored: its letter never
    /// went, since the record comes before the letter).
    pub(crate) fn person_ids(&self) -> anyhow::Result<Vec<i64>> {
        let mut bytes = Vec::new();
        File::open(&self.path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| {
                format!(
                    "while reading the hand-over journal {}",
                    self.path.display()
                )
            })?;
        Ok(bytes
            .chunks_exact(RECORD)
            .map(|r| i64::from_le_bytes(r.try_into().unwrap_or_default()))
            .collect())
    }

    /// Deletes it once what it says is committed.
    pub(crate) fn remove(&self) -> anyhow::Result<()> {
        remove_journal(&self.path).with_context(|| {
            format!(
                "while deleting the hand-over journal {}",
                self.path.display()
            )
        })
    }
}

/// Deletes a journal; one already gone (deleted by a run before a crash) is no error.
fn remove_journal(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        done => done,
    }
}

fn file_name(database: &Path) -> String {
    database
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "breachmail.db".to_owned())
}

fn journal_path(database: &Path, run_id: i64) -> PathBuf {
    database.with_file_name(format!("{}-handovers-{run_id}", file_name(database)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_are_read_back_by_the_next_run_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("breachmail.db");
        let log = HandOverLog::create(&db, 7).unwrap();
        log.record(42).unwrap();
        log.record(43).unwrap();
        let mode = std::fs::metadata(journal_path(&db, 7))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A crash in the middle of a record leaves a few bytes of it.
        OpenOptions::new()
            .append(true)
            .open(journal_path(&db, 7))
            .unwrap()
            .write_all(&[1, 2, 3])
            .unwrap();
        assert!(left_by_others(&db, 7).unwrap().is_empty());
        let journals = left_by_others(&db, 8).unwrap();
        assert_eq!(journals.len(), 1);
        assert_eq!(journals[0].run_id, 7);
        assert_eq!(journals[0].person_ids().unwrap(), vec![42, 43]);
        journals[0].remove().unwrap();
        journals[0].remove().unwrap();
        assert!(left_by_others(&db, 8).unwrap().is_empty());
    }
}
