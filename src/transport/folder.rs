//! The `file://` transport: each letter an owner-only `.eml` file in a folder, as `preview`
//! writes them too.

use std::path::{Path, PathBuf};

use super::{Attempt, MayCommit, Outgoing, Transport, withheld};
use crate::smtp_reply::Accepted;

/// Writes a message into a folder as `message.file_name`, owner-only (the folder too): the
/// `file://` transport and `preview` alike. Returns the file's name.
pub fn write_to_folder(dir: &Path, message: &Outgoing) -> std::io::Result<String> {
    crate::files::create_private_dir(dir)?;
    crate::files::write_private(&dir.join(&message.file_name), &message.bytes)?;
    Ok(message.file_name.clone())
}

async fn deliver_to_folder(dir: &Path, message: &Outgoing) -> Attempt {
    let (dir, message) = (dir.to_path_buf(), message.clone());
    let written = tokio::task::spawn_blocking(move || write_to_folder(&dir, &message)).await;
    match written {
        Ok(Ok(file_name)) => Attempt::Accepted {
            reply: Accepted::Written { file_name },
            notify: false,
        },
        Ok(Err(e)) => Attempt::Unreachable {
            reason: format!("cannot write to the outbox: {e}"),
        },
        Err(e) => Attempt::Unreachable {
            reason: format!("cannot write to the outbox: {e}"),
        },
    }
}

/// A folder letters are written to, one `.eml` file each.
pub struct Folder {
    dir: PathBuf,
}

impl Folder {
    pub fn new(dir: PathBuf) -> Folder {
        Folder { dir }
    }
}

impl Transport for Folder {
    async fn deliver(
        &mut self,
        message: &Outgoing,
        _next: Option<&Outgoing>,
        may_commit: MayCommit<'_>,
    ) -> Attempt {
        if !may_commit() {
            return withheld();
        }
        deliver_to_folder(&self.dir, message).await
    }

    async fn close(&mut self) {}
}
