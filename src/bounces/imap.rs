//! Reading the bounce mailbox over IMAP, where the operator has no shell on the mail server.
//!
//! The folder's UIDVALIDITY and the last UID read are kept in the campaign database
//! (`store::mailbox`), saved in the transaction that records the messages. Only after that commit
//! is a message moved (`--move-to`), deleted (`--delete`) or flagged `\Seen`; a run that dies
//! between the two finds, next time, messages at or below the saved UID still waiting in the
//! folder and finishes moving or flagging them without reading them again. Whatever happens, the
//! `bounces` table's fingerprints keep a message read twice from counting twice.
//!
//! TLS follows the same rules as for the relays ([`crate::tls`]): verified against the web's
//! roots and `bounces.tls_ca`, for the host or `bounces.tls_server_name`; a server on loopback
//! with neither key set may present a certificate that does not verify (Dovecot's self-signed
//! default), said once. `imaps://` is TLS from the first byte, `imap://` must upgrade with
//! STARTTLS or nothing is sent, not even the user name.

use anyhow::Context;
use async_imap::Session;
use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ingest::{self, Options, ReadMessage, Recorder, Summary};
use super::parse::MAX_BOUNCE_BYTES;
use crate::imap_url::{ImapUrl, Security};
use crate::store::mailbox::{self as store, Cursor};

/// What to do with a message once it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposal {
    /// Flag it `\Seen` and leave it (the default).
    Flag,
    /// Move it to this folder, created if missing.
    MoveTo(String),
    /// Delete it (`--delete` only).
    Delete,
}

/// Everything a run against one folder needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: ImapUrl,
    pub disposal: Disposal,
    pub batch: usize,
    /// `bounces.tls_ca`, `bounces.tls_server_name`.
    pub tls: crate::tls::TlsSettings,
    /// Debug builds only: stop dead after this many batches are recorded and before they are
    /// moved, as a run killed at the worst moment would (the crash-safety test).
    pub abort_after_batches: Option<usize>,
}

/// Reads the IMAP password: `BREACHMAIL_BOUNCES_PASSWORD`, or the file named by
/// `BREACHMAIL_BOUNCES_PASSWORD_FILE` (one line, the newline dropped).
pub fn password_from_environment() -> Result<SecretString, crate::exit::UsageError> {
    if let Ok(password) = std::env::var("BREACHMAIL_BOUNCES_PASSWORD")
        && !password.is_empty()
    {
        return Ok(SecretString::from(password));
    }
    if let Some(path) = std::env::var_os("BREACHMAIL_BOUNCES_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::exit::UsageError::new(format!(
                "BREACHMAIL_BOUNCES_PASSWORD_FILE: cannot read {}: {e}",
                std::path::Path::new(&path).display()
            ))
        })?;
        return Ok(SecretString::from(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    Err(crate::exit::UsageError::new(
        "bounces over IMAP need the mailbox's password in BREACHMAIL_BOUNCES_PASSWORD (or a file named by BREACHMAIL_BOUNCES_PASSWORD_FILE)",
    ))
}

type ImapSession = Session<TlsStream<TcpStream>>;

/// One `bounces --imap` run: log in, finish what an interrupted run left, read every new
/// message in batches, record each batch with the folder's position, then move or flag it.
pub async fn ingest(
    pool: &SqlitePool,
    request: &Request,
    password: &SecretString,
    options: &Options,
) -> anyhow::Result<Summary> {
    let label = request.url.to_string();
    let mut session = connect(&request.url, &request.tls, password).await?;
    let mut recorder = Recorder::start(pool, options).await?;
    let outcome = read_folder(pool, &mut session, request, &label, &mut recorder).await;
    // A failed logout changes nothing that was recorded.
    let _ = session.logout().await;
    recorder.finish(pool, outcome).await
}

async fn read_folder(
    pool: &SqlitePool,
    session: &mut ImapSession,
    request: &Request,
    label: &str,
    recorder: &mut Recorder,
) -> anyhow::Result<()> {
    let url = &request.url;
    if let Disposal::MoveTo(folder) = &request.disposal {
        ensure_folder(session, folder).await?;
    }
    let selected = session
        .select(&url.folder)
        .await
        .with_context(|| format!("while opening the folder {:?}", url.folder))?;
    let uidvalidity = selected.uid_validity.ok_or_else(|| {
        anyhow::anyhow!(
            "the server gives no UIDVALIDITY for {:?}: messages cannot be tracked",
            url.folder
        )
    })?;
    let moves = session
        .capabilities()
        .await
        .context("while asking the server's capabilities")?
        .has_str("MOVE");
    let saved = store::load_cursor(pool, label).await?;
    let last_uid = match saved {
        Some(cursor) if cursor.uidvalidity == uidvalidity => cursor.last_uid,
        Some(cursor) => {
            tracing::warn!(
                "{label}: UIDVALIDITY changed ({} to {uidvalidity}): reading the folder again from the start; messages already recorded count as duplicates",
                cursor.uidvalidity
            );
            0
        }
        None => 0,
    };
    if last_uid > 0 {
        finish_interrupted(session, &request.disposal, last_uid, moves).await?;
    }

    let found = session
        .uid_search(format!("UID {}:*", u64::from(last_uid) + 1))
        .await
        .context("while listing the new messages")?;
    // "N:*" always names the last message, even when it is below N.
    let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
    uids.sort_unstable();
    tracing::info!("{label}: {} new messages", uids.len());

    // Recorded messages are moved (or flagged) many batches at a time: a server rewrites its
    // list of the folder's messages for each MOVE or EXPUNGE (Dovecot's maildir: 1.9 s a batch
    // of 500 in a folder of 20,000, measured), so moving each batch made a large folder cost the
    // square of its size. Until they are moved they are at or below the saved UID, which is what
    // a run that dies in between finishes next time (`finish_interrupted`).
    let mut recorded: Vec<u32> = Vec::new();
    for (done, chunk) in uids.chunks(request.batch.max(1)).enumerate() {
        let batch = fetch_batch(session, label, chunk).await?;
        let cursor = Cursor {
            mailbox: label.to_owned(),
            uidvalidity,
            last_uid: chunk.last().copied().unwrap_or(last_uid),
        };
        recorder.record(pool, &batch, Some(&cursor)).await?;
        if cfg!(debug_assertions) && request.abort_after_batches == Some(done + 1) {
            tracing::warn!("stopping dead after {} batches, as asked", done + 1);
            std::process::abort();
        }
        recorded.extend_from_slice(chunk);
        if recorded.len() >= DISPOSE_EVERY {
            dispose_all(session, &request.disposal, &recorded, moves).await?;
            recorded.clear();
        }
    }
    dispose_all(session, &request.disposal, &recorded, moves).await?;
    Ok(())
}

/// Messages at or below the saved UID are recorded: those still in the folder (moving or
/// deleting mode) or still unseen (flagging mode) were left by a run that died after its commit.
async fn finish_interrupted(
    session: &mut ImapSession,
    disposal: &Disposal,
    last_uid: u32,
    moves: bool,
) -> anyhow::Result<()> {
    let query = match disposal {
        Disposal::Flag => format!("UID 1:{last_uid} UNSEEN"),
        Disposal::MoveTo(_) | Disposal::Delete => format!("UID 1:{last_uid}"),
    };
    let left: Vec<u32> = session
        .uid_search(query)
        .await
        .context("while looking for messages an interrupted run recorded but did not move")?
        .into_iter()
        .filter(|uid| *uid <= last_uid)
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    tracing::info!(
        "{} messages recorded by an earlier run were still waiting: finishing them",
        left.len()
    );
    let mut left = left;
    left.sort_unstable();
    dispose_all(session, disposal, &left, moves).await
}

/// Fetches one batch: sizes first, so that an oversized message is reported without being
/// downloaded, then the bodies of the others (`BODY.PEEK`: reading sets no flag).
async fn fetch_batch(
    session: &mut ImapSession,
    label: &str,
    chunk: &[u32],
) -> anyhow::Result<Vec<ReadMessage>> {
    let sizes: Vec<(u32, u32)> = session
        .uid_fetch(uid_set(chunk), "(UID RFC822.SIZE)")
        .await
        .context("while fetching the message sizes")?
        .try_filter_map(|fetch| async move { Ok(fetch.uid.zip(fetch.size)) })
        .try_collect()
        .await
        .context("while fetching the message sizes")?;
    let mut batch = Vec::with_capacity(chunk.len());
    let mut wanted = Vec::with_capacity(chunk.len());
    for &(uid, size) in &sizes {
        if size as usize > MAX_BOUNCE_BYTES {
            batch.push(ReadMessage::Unreadable {
                source: format!("{label} UID {uid}"),
                reason: format!(
                    "message of {size} bytes is over the {MAX_BOUNCE_BYTES}-byte bounce limit"
                ),
            });
        } else {
            wanted.push(uid);
        }
    }
    wanted.sort_unstable();
    if wanted.is_empty() {
        return Ok(batch);
    }
    let bodies: Vec<(u32, Vec<u8>)> = session
        .uid_fetch(uid_set(&wanted), "(UID BODY.PEEK[])")
        .await
        .context("while fetching the messages")?
        .try_filter_map(|fetch| async move {
            Ok(fetch
                .uid
                .map(|uid| (uid, fetch.body().map(<[u8]>::to_vec).unwrap_or_default())))
        })
        .try_collect()
        .await
        .context("while fetching the messages")?;
    // Parsing is CPU work: off the async threads, as the file reader does on its own thread.
    let label = label.to_owned();
    let parsed = tokio::task::spawn_blocking(move || {
        bodies
            .into_iter()
            .map(|(uid, bytes)| ingest::read_bytes(format!("{label} UID {uid}"), bytes))
            .collect::<Vec<_>>()
    })
    .await
    .context("while parsing the messages")?;
    batch.extend(parsed);
    Ok(batch)
}

/// How many recorded messages wait before they are moved or flagged together.
const DISPOSE_EVERY: usize = 25_000;

/// Moves or flags recorded messages (sorted), in as few commands as lines of at most
/// [`MAX_SET_CHARS`] allow: a folder read in order is a few ranges, one with holes many.
async fn dispose_all(
    session: &mut ImapSession,
    disposal: &Disposal,
    uids: &[u32],
    moves: bool,
) -> anyhow::Result<()> {
    for set in uid_sets(uids, MAX_SET_CHARS) {
        dispose(session, disposal, &set, moves).await?;
    }
    Ok(())
}

/// The longest UID set put in one command: well under the line lengths servers accept
/// (Dovecot's default is 64 KiB).
const MAX_SET_CHARS: usize = 8_000;

/// [`uid_set`] cut into sets of at most `max_chars` characters.
pub fn uid_sets(uids: &[u32], max_chars: usize) -> Vec<String> {
    let mut sets = Vec::new();
    let mut current = String::new();
    for part in uid_ranges(uids) {
        if !current.is_empty() && current.len() + 1 + part.len() > max_chars {
            sets.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&part);
    }
    if !current.is_empty() {
        sets.push(current);
    }
    sets
}

async fn dispose(
    session: &mut ImapSession,
    disposal: &Disposal,
    set: &str,
    moves: bool,
) -> anyhow::Result<()> {
    match disposal {
        Disposal::Flag => store_flags(session, set, "+FLAGS.SILENT (\\Seen)").await,
        Disposal::MoveTo(folder) if moves => session
            .uid_mv(set, folder)
            .await
            .with_context(|| format!("while moving messages to {folder:?}")),
        Disposal::MoveTo(folder) => {
            session
                .uid_copy(set, folder)
                .await
                .with_context(|| format!("while copying messages to {folder:?}"))?;
            delete(session, set).await
        }
        Disposal::Delete => delete(session, set).await,
    }
}

async fn store_flags(session: &mut ImapSession, set: &str, flags: &str) -> anyhow::Result<()> {
    session
        .uid_store(set, flags)
        .await
        .context("while flagging messages")?
        .try_for_each(|_| async { Ok(()) })
        .await
        .context("while flagging messages")
}

async fn delete(session: &mut ImapSession, set: &str) -> anyhow::Result<()> {
    store_flags(session, set, "+FLAGS.SILENT (\\Deleted)").await?;
    session
        .uid_expunge(set)
        .await
        .context("while deleting messages")?
        .try_for_each(|_| async { Ok(()) })
        .await
        .context("while deleting messages")
}

/// Creates the folder unless it exists.
async fn ensure_folder(session: &mut ImapSession, folder: &str) -> anyhow::Result<()> {
    let existing: Vec<_> = session
        .list(Some(""), Some(folder))
        .await
        .context("while looking for the folder to move messages to")?
        .try_collect()
        .await
        .context("while looking for the folder to move messages to")?;
    if existing.is_empty() {
        session
            .create(folder)
            .await
            .with_context(|| format!("while creating the folder {folder:?}"))?;
        tracing::info!("created the folder {folder:?}");
    }
    Ok(())
}

/// Sorted UIDs as an IMAP set with ranges: `3:7,9,12:14`.
pub fn uid_set(uids: &[u32]) -> String {
    uid_ranges(uids).collect::<Vec<_>>().join(",")
}

/// The parts of an IMAP set for sorted UIDs: `3:7`, `9`, `12:14`.
fn uid_ranges(uids: &[u32]) -> impl Iterator<Item = String> + '_ {
    let mut iter = uids.iter().copied().peekable();
    std::iter::from_fn(move || {
        let start = iter.next()?;
        let mut end = start;
        while let Some(&next) = iter.peek() {
            if next != end.saturating_add(1) {
                break;
            }
            end = next;
            iter.next();
        }
        Some(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        })
    })
}

async fn connect(
    url: &ImapUrl,
    settings: &crate::tls::TlsSettings,
    password: &SecretString,
) -> anyhow::Result<ImapSession> {
    let address = format!("{}:{}", url.host, url.port);
    let server = format!("the IMAP server {address}");
    let client = crate::tls::TlsClient::new(&url.host, settings, "bounces", &server)?;
    let tcp = TcpStream::connect(&address)
        .await
        .with_context(|| format!("while connecting to the IMAP server {address}"))?;
    let connector = TlsConnector::from(client.config.clone());
    let name = client.name.clone();
    // A refused certificate is a configuration error (exit 2) that says what to set.
    let failed = |error: std::io::Error, doing: &str| -> anyhow::Error {
        match client.explain(&error, &server) {
            Some((reason, _)) => crate::exit::UsageError::new(reason).into(),
            None => anyhow::Error::new(error).context(format!("while {doing} with {address}")),
        }
    };
    let tls = match url.security {
        Security::Tls => connector
            .connect(name, tcp)
            .await
            .map_err(|e| failed(e, "opening TLS"))?,
        Security::StartTls => {
            let mut plain = async_imap::Client::new(tcp);
            plain
                .read_response()
                .await
                .context("while reading the server's greeting")?;
            plain
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .with_context(|| {
                    format!("{address} refuses STARTTLS: nothing is sent in clear, use imaps:// or a server that offers it")
                })?;
            connector
                .connect(name, plain.into_inner())
                .await
                .map_err(|e| failed(e, "upgrading to TLS"))?
        }
    };
    let mut client = async_imap::Client::new(tls);
    if url.security == Security::Tls {
        client
            .read_response()
            .await
            .context("while reading the server's greeting")?;
    }
    client
        .login(&url.user, password.expose_secret())
        .await
        .map_err(|(error, _)| error)
        .with_context(|| format!("while logging in to {address} as {}", url.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_use_ranges() {
        assert_eq!(uid_set(&[3, 4, 5, 6, 7, 9, 12, 13, 14]), "3:7,9,12:14");
        assert_eq!(uid_set(&[1]), "1");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(
            uid_sets(&[3, 4, 5, 6, 7, 9, 12, 13, 14], 8),
            ["3:7,9", "12:14"]
        );
        assert_eq!(
            uid_sets(&(1..=100_000).collect::<Vec<_>>(), 8),
            ["1:100000"]
        );
        assert!(uid_sets(&[], 8).is_empty());
        let holes: Vec<u32> = (1..20_000).step_by(2).collect();
        let sets = uid_sets(&holes, MAX_SET_CHARS);
        assert!(sets.iter().all(|s| s.len() <= MAX_SET_CHARS));
        assert_eq!(sets.join(","), uid_set(&holes));
    }
}
