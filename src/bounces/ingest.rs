//! Matching bounces to deliveries and recording them: the `bounces` command.
//!
//! A reader thread streams and parses messages (the CPU-bound part) while the async side resolves
//! and writes them, one transaction per batch, so a mailbox of a whole campaign's bounces costs a
//! few hundred commits rather than one per message. Each recipient report is matched, most
//! trustworthy first: the signed VERP token of the address the bounce came back to, the returned
//! Message-ID, the returned X-Notice-Id, and last a reported recipient that only one person has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{SqliteConnection, SqlitePool};

use super::parse::{Bounce, BounceKind, RecipientStatus, parse_bounce};
use super::{imap, mailbox};
use crate::cli::BouncesArgs;
use crate::config::Config;
use crate::domain::{DeliveryState, NoticeId};
use crate::exit::{Exit, UsageError};
use crate::store;
use crate::store::bounces::DeliveryNow;
use crate::store::ledger::{self, BounceRecord};
use crate::verp::{self, DeliveryRef, TokenError};

/// Messages per transaction: enough to amortise the commit, small enough to keep memory flat.
const BATCH_MESSAGES: usize = 500;

/// What one `bounces` run found, as printed and as `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Messages read, readable or not.
    pub messages: u64,
    /// Hard bounce reports matched to the current generation of a delivery.
    pub hard: u64,
    /// Soft (temporary) bounce reports matched to the current generation of a delivery.
    pub soft: u64,
    /// Bounce reports that name no known delivery.
    pub unmatched: u64,
    /// Bounce reports whose VERP token has a bad signature: they mark nobody.
    pub forged: u64,
    /// Reports already recorded by an earlier reading of the same message.
    pub duplicates: u64,
    /// Messages that report no delivery problem: auto-replies, people's replies and the rest.
    pub ignored: u64,
    /// Of the ignored: auto-replies and out-of-office answers (RFC 3834 and the providers' shapes).
    pub auto_replies: u64,
    /// Of the ignored: people writing back, who may be asking for help (`--replies-to DIR`).
    pub replies: u64,
    /// Delay notices ("still trying") matched to a delivery: a note each, not a bounce.
    pub delayed: u64,
    /// Complaints (ARF feedback reports), matched or not.
    pub complaints: u64,
    /// Complaints per provider's feedback loop (`yahoo.com`, `laposte.net`).
    pub complaints_by_provider: BTreeMap<String, u64>,
    /// Messages that could not be read (garbage, truncated, oversized): reported and skipped.
    pub errors: u64,
    /// Reports about an older generation than the delivery's current one (already resent).
    pub stale_generation: u64,
    /// Deliveries that went `sent` → `bounced` in this run.
    pub marked_bounced: u64,
    /// Success notifications (the person's provider accepted the letter) matched to the
    /// current generation of a delivery.
    pub delivered: u64,
    /// Deliveries that went `sent` → `delivered` in this run.
    pub marked_delivered: u64,
}

impl Summary {
    pub fn line(&self) -> String {
        let providers = if self.complaints_by_provider.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = self
                .complaints_by_provider
                .iter()
                .map(|(provider, count)| format!("{provider} {count}"))
                .collect();
            format!(" ({})", each.join(", "))
        };
        format!(
            "bounces: {} messages: {} delivered ({} marked delivered), {} hard ({} marked bounced), {} soft, {} delayed, {} complaints{providers}, {} unmatched, {} forged, {} duplicates, {} ignored ({} auto-replies, {} replies), {} errors, {} stale generation",
            self.messages,
            self.delivered,
            self.marked_delivered,
            self.hard,
            self.marked_bounced,
            self.soft,
            self.delayed,
            self.complaints,
            self.unmatched,
            self.forged,
            self.duplicates,
            self.ignored,
            self.auto_replies,
            self.replies,
            self.errors,
            self.stale_generation
        )
    }
}

/// One message as the reader hands it over. Nearly every message is `Parsed`: boxing it, as
/// clippy would, only adds an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ReadMessage {
    Parsed {
        source: String,
        fingerprint: String,
        bounce: Bounce,
        /// The message itself, kept only for a person's reply (to be written out for the
        /// operator).
        reply: Option<Vec<u8>>,
    },
    Unreadable {
        source: String,
        reason: String,
    },
}

/// What the operator asked of one `bounces` run, besides where to read.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write each person's reply into this folder (0700, files 0600).
    pub replies_to: Option<PathBuf>,
    /// Print the summary as JSON.
    pub json: bool,
    /// `sender.bounce_domain`: an address there that begins like a VERP address is one.
    pub bounce_domain: Option<String>,
}

/// `bounces`: the files named, or else the IMAP mailbox of `--imap` or `bounces.imap`.
pub async fn run_command(config: &Config, args: &BouncesArgs) -> anyhow::Result<Exit> {
    let options = Options {
        replies_to: args
            .replies_to
            .clone()
            .or_else(|| config.bounces.replies_to.clone()),
        json: args.json,
        bounce_domain: config.sender.bounce_domain.clone(),
    };
    if !args.paths.is_empty() {
        return run(config, &args.paths, &options).await;
    }
    let url = match &args.imap {
        Some(url) => crate::imap_url::ImapUrl::parse(url).map_err(|e| UsageError::new(format!("--imap: {e}")))?,
        None => config.bounces.imap.clone().ok_or_else(|| {
            UsageError::new(
                "bounces: name mbox files, maildir folders or .eml files, or a mailbox with --imap imaps://USER@HOST/FOLDER (or bounces.imap)",
            )
        })?,
    };
    let move_to = args
        .move_to
        .clone()
        .or_else(|| config.bounces.move_to.clone());
    let disposal = if args.delete || (args.move_to.is_none() && config.bounces.delete) {
        imap::Disposal::Delete
    } else if let Some(folder) = move_to {
        crate::imap_url::check_mailbox_name(&folder)
            .map_err(|e| UsageError::new(format!("--move-to: {e}")))?;
        if folder == url.folder {
            return Err(UsageError::new(format!(
                "--move-to {folder:?} is the folder being read: name another one"
            ))
            .into());
        }
        imap::Disposal::MoveTo(folder)
    } else {
        imap::Disposal::Flag
    };
    let password = imap::password_from_environment()?;
    let request = imap::Request {
        url,
        disposal,
        batch: args.imap_batch,
        tls: config.bounces.tls.clone(),
        abort_after_batches: std::env::var("BREACHMAIL_TEST_ABORT_AFTER_BATCHES")
            .ok()
            .and_then(|n| n.parse().ok()),
    };
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let summary = imap::ingest(&pool, &request, &password, &options).await?;
    print_summary(&summary, &options)?;
    Ok(Exit::Ok)
}

pub async fn run(config: &Config, paths: &[PathBuf], options: &Options) -> anyhow::Result<Exit> {
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        return Err(UsageError::new(format!(
            "{}: no such mbox file, maildir folder or .eml file",
            missing.display()
        ))
        .into());
    }
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let summary = ingest_with(&pool, paths, options).await?;
    print_summary(&summary, options)?;
    Ok(Exit::Ok)
}

/// The summary on stdout, and on stderr what the operator should act on.
pub(crate) fn print_summary(summary: &Summary, options: &Options) -> anyhow::Result<()> {
    if options.json {
        crate::exit::print_out(&serde_json::to_string(summary)?);
    } else {
        crate::exit::print_out(&summary.line());
    }
    if summary.replies > 0 {
        match &options.replies_to {
            Some(dir) => tracing::warn!(
                "{} replies from people written to {}: someone may be asking for help",
                summary.replies,
                dir.display()
            ),
            None => tracing::warn!(
                "{} replies from people: read them with --replies-to DIR, someone may be asking for help",
                summary.replies
            ),
        }
    }
    Ok(())
}

/// Reads every message of every path and records what it says. The run is recorded for the
/// evidence, with the summary as its detail.
pub async fn ingest(pool: &SqlitePool, paths: &[PathBuf]) -> anyhow::Result<Summary> {
    ingest_with(pool, paths, &Options::default()).await
}

async fn ingest_with(
    pool: &SqlitePool,
    paths: &[PathBuf],
    options: &Options,
) -> anyhow::Result<Summary> {
    let mut recorder = Recorder::start(pool, options).await?;
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<ReadMessage>>(4);
    let paths = paths.to_vec();
    let reader = std::thread::spawn(move || read_all(&paths, &batches));

    let mut outcome = Ok(());
    while let Some(batch) = received.recv().await {
        if let Err(error) = recorder.record(pool, &batch, None).await {
            outcome = Err(error);
            break;
        }
    }
    // Dropping the receiver makes a still-running reader stop at its next batch.
    drop(received);
    if reader.join().is_err() {
        outcome = outcome.and(Err(anyhow::anyhow!(
            "the bounce reader stopped unexpectedly"
        )));
    }
    recorder.finish(pool, outcome).await
}

/// Records batches of read messages for one run: matching, the ledger, the replies folder, the
/// counts. Shared by the file readers and the IMAP reader.
pub(crate) struct Recorder {
    matcher: Matcher,
    summary: Summary,
    replies_to: Option<PathBuf>,
}

impl Recorder {
    /// Starts a `bounces` run (recorded in `runs`).
    pub(crate) async fn start(pool: &SqlitePool, options: &Options) -> anyhow::Result<Recorder> {
        if let Some(dir) = &options.replies_to {
            crate::files::create_private_dir(dir)
                .with_context(|| format!("while creating the replies folder {}", dir.display()))?;
        }
        let key = crate::store::campaign::signing_key(pool).await?;
        let run_id = crate::store::campaign::start_run(pool, "bounces").await?;
        Ok(Recorder {
            matcher: Matcher::new(key, run_id, options.bounce_domain.clone()),
            summary: Summary::default(),
            replies_to: options.replies_to.clone(),
        })
    }

    /// Records one batch in one transaction; `cursor`, when given, is saved in the same
    /// transaction, so the mailbox position and what was read from it never disagree.
    pub(crate) async fn record(
        &mut self,
        pool: &SqlitePool,
        batch: &[ReadMessage],
        cursor: Option<&crate::store::mailbox::Cursor>,
    ) -> anyhow::Result<()> {
        record_batch(pool, &mut self.matcher, batch, &mut self.summary, cursor).await?;
        if let Some(dir) = &self.replies_to {
            write_replies(dir, batch)?;
        }
        Ok(())
    }

    /// Ends the run, with the summary (or the error) as its detail.
    pub(crate) async fn finish(
        self,
        pool: &SqlitePool,
        outcome: anyhow::Result<()>,
    ) -> anyhow::Result<Summary> {
        let run_id = self.matcher.run_id;
        let detail = serde_json::to_string(&self.summary)?;
        match outcome {
            Ok(()) => {
                crate::store::campaign::finish_run(pool, run_id, "ok", &detail).await?;
                Ok(self.summary)
            }
            Err(error) => {
                crate::store::campaign::finish_failed_run(pool, run_id, &error).await;
                Err(error)
            }
        }
    }
}

/// Each reply as `reply-<first 16 hex digits of its SHA-256>.eml`, owner-only: the same message
/// read again lands on the same file.
fn write_replies(dir: &Path, batch: &[ReadMessage]) -> anyhow::Result<()> {
    for message in batch {
        if let ReadMessage::Parsed {
            fingerprint,
            reply: Some(bytes),
            ..
        } = message
        {
            let name = format!("reply-{}.eml", fingerprint.get(..16).unwrap_or(fingerprint));
            let path = dir.join(name);
            crate::files::write_private(&path, bytes)
                .with_context(|| format!("while writing the reply {}", path.display()))?;
        }
    }
    Ok(())
}

/// The reader thread: streams, fingerprints and parses, and hands over batches.
fn read_all(paths: &[PathBuf], batches: &tokio::sync::mpsc::Sender<Vec<ReadMessage>>) {
    let mut batch = Vec::with_capacity(BATCH_MESSAGES);
    for path in paths {
        for message in mailbox::messages(path) {
            batch.push(read_one(path, message));
            if batch.len() == BATCH_MESSAGES {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MESSAGES));
                if batches.blocking_send(full).is_err() {
                    return;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(batch);
    }
}

fn read_one(path: &Path, message: Result<mailbox::RawMessage, std::io::Error>) -> ReadMessage {
    let message = match message {
        Ok(message) => message,
        Err(error) => {
            return ReadMessage::Unreadable {
                source: path.display().to_string(),
                reason: format!("cannot be read: {error}"),
            };
        }
    };
    if message.oversized {
        return ReadMessage::Unreadable {
            source: message.source,
            reason: format!(
                "message of {} bytes is over the {}-byte bounce limit",
                message.size,
                super::parse::MAX_BOUNCE_BYTES
            ),
        };
    }
    read_bytes(message.source, message.bytes)
}

/// Fingerprints and parses one message's bytes.
pub(crate) fn read_bytes(source: String, bytes: Vec<u8>) -> ReadMessage {
    if bytes.len() > super::parse::MAX_BOUNCE_BYTES {
        return ReadMessage::Unreadable {
            source,
            reason: format!(
                "message of {} bytes is over the {}-byte bounce limit",
                bytes.len(),
                super::parse::MAX_BOUNCE_BYTES
            ),
        };
    }
    match parse_bounce(&bytes) {
        Ok(bounce) => ReadMessage::Parsed {
            source,
            fingerprint: hex::encode(Sha256::digest(&bytes)),
            reply: (bounce.kind == BounceKind::Reply).then_some(bytes),
            bounce,
        },
        Err(error) => ReadMessage::Unreadable {
            source,
            reason: error.to_string(),
        },
    }
}

/// Who a recipient report is about, and how we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Delivery {
        person_id: i64,
        /// The generation the bounced letter belonged to, when the bounce says so.
        generation: Option<i64>,
        by: &'static str,
    },
    Forged,
    Unmatched,
}

/// The campaign's secret and the recipient lookup, kept for the whole run.
struct Matcher {
    key: Vec<u8>,
    run_id: i64,
    /// Where our VERP addresses are (`sender.bounce_domain`), when configured.
    bounce_domain: Option<String>,
    /// Lowercased address → the people whose current delivery goes there; loaded on first need,
    /// since most bounces match by token and never need it.
    recipients: Option<HashMap<String, Vec<i64>>>,
}

impl Matcher {
    fn new(key: Vec<u8>, run_id: i64, bounce_domain: Option<String>) -> Self {
        Self {
            key,
            run_id,
            bounce_domain,
            recipients: None,
        }
    }

    async fn recipient_index(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> anyhow::Result<&HashMap<String, Vec<i64>>> {
        if self.recipients.is_none() {
            let mut index: HashMap<String, Vec<i64>> = HashMap::new();
            let rows = store::bounces::recipients(&mut *conn)
                .await
                .context("while reading the recipients' addresses")?;
            for (person_id, email) in rows {
                index
                    .entry(email.to_lowercase())
                    .or_default()
                    .push(person_id);
            }
            self.recipients = Some(index);
        }
        Ok(self.recipients.get_or_insert_default())
    }

    /// The generation a returned Message-ID names, if it is one of ours for this person: the
    /// Message-ID is `<mac>.<generation>@domain`, so an old generation's letter is recognised
    /// even though the delivery now carries the new one's Message-ID.
    fn generation_of_message_id(&self, person_id: i64, message_id: &str) -> Option<i64> {
        let (local, domain) = message_id.rsplit_once('@')?;
        let generation: i64 = local.rsplit_once('.')?.1.parse().ok()?;
        let ours = verp::message_id(
            &self.key,
            DeliveryRef {
                person_id,
                generation,
            },
            domain,
        );
        ours.eq_ignore_ascii_case(message_id).then_some(generation)
    }
}

/// Resolves, then writes, one batch in one transaction.
async fn record_batch(
    pool: &SqlitePool,
    matcher: &mut Matcher,
    batch: &[ReadMessage],
    summary: &mut Summary,
    cursor: Option<&crate::store::mailbox::Cursor>,
) -> anyhow::Result<()> {
    let mut tx = crate::db::begin_write(pool)
        .await
        .context("while starting a transaction")?;
    let matches = resolve(&mut tx, matcher, batch).await?;
    let person_ids: Vec<i64> = matches
        .iter()
        .flatten()
        .filter_map(|m| match m {
            Match::Delivery { person_id, .. } => Some(*person_id),
            _ => None,
        })
        .collect();
    let mut deliveries = store::bounces::deliveries_now(&mut tx, &person_ids).await?;
    let now = crate::db::now_ms();
    for (message, reports) in batch.iter().zip(&matches) {
        summary.messages += 1;
        match message {
            ReadMessage::Unreadable { source, reason } => {
                summary.errors += 1;
                tracing::warn!("{source}: {reason}; skipped");
            }
            ReadMessage::Parsed {
                source,
                fingerprint,
                bounce,
                ..
            } => {
                let context = MessageContext {
                    source,
                    fingerprint,
                    run_id: matcher.run_id,
                    now,
                };
                record_message(&mut tx, &context, bounce, reports, &mut deliveries, summary)
                    .await?;
            }
        }
    }
    if let Some(cursor) = cursor {
        crate::store::mailbox::save_cursor(&mut tx, cursor).await?;
    }
    tx.commit().await.context("while committing bounces")?;
    Ok(())
}

/// The kinds of report that say something about a delivery, so are matched to one.
fn is_about_a_delivery(kind: BounceKind) -> bool {
    matches!(
        kind,
        BounceKind::Hard
            | BounceKind::Soft
            | BounceKind::Delayed
            | BounceKind::Complaint
            | BounceKind::Delivered
    )
}

/// The reports of a message that say something about a delivery.
fn problem_reports(bounce: &Bounce) -> impl Iterator<Item = &RecipientStatus> {
    bounce
        .recipients
        .iter()
        .filter(|r| is_about_a_delivery(r.kind))
}

fn is_problem(bounce: &Bounce) -> bool {
    is_about_a_delivery(bounce.kind)
}

/// Finds who each problem report of each message is about. The database is asked once per
/// batch and kind of key, not once per message.
async fn resolve(
    conn: &mut SqliteConnection,
    matcher: &mut Matcher,
    batch: &[ReadMessage],
) -> anyhow::Result<Vec<Vec<Match>>> {
    let bounces: Vec<Option<&Bounce>> = batch
        .iter()
        .map(|m| match m {
            ReadMessage::Parsed { bounce, .. } if is_problem(bounce) => Some(bounce),
            _ => None,
        })
        .collect();
    // The token comes first: it is signed, and a token that does not verify (badly signed, or
    // not even shaped like one) stops the matching for the whole message, so a forged bounce
    // cannot mark anyone by another route. Only a message sent to an address that is not one
    // of our VERP addresses at all is matched by its Message-ID, notice id or recipient.
    let tokens: Vec<Option<Result<DeliveryRef, TokenError>>> = bounces
        .iter()
        .map(|b| {
            b.and_then(|b| b.envelope_to.as_deref()).and_then(|to| {
                verp::verify_bounce_address(&matcher.key, to, matcher.bounce_domain.as_deref())
            })
        })
        .collect();
    let untokened = || {
        bounces
            .iter()
            .zip(&tokens)
            .filter(|(_, t)| t.is_none())
            .filter_map(|(b, _)| *b)
    };
    let message_ids: Vec<String> = untokened()
        .filter_map(|b| b.original_message_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_message_id = store::bounces::people_by_message_id(conn, &message_ids).await?;
    let notice_ids: Vec<String> = untokened()
        .flat_map(|b| [b.envelope_id.as_deref(), b.notice_id.as_deref()])
        .flatten()
        .filter_map(|n| NoticeId::parse(n).ok())
        .map(|n| n.as_str().to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_notice_id = store::bounces::people_by_notice_id(conn, &notice_ids).await?;

    let mut matches = Vec::with_capacity(batch.len());
    for (bounce, token) in bounces.iter().zip(&tokens) {
        let Some(bounce) = bounce else {
            matches.push(Vec::new());
            continue;
        };
        let mut reports = Vec::new();
        for report in problem_reports(bounce) {
            let found = match token {
                Some(Ok(delivery)) => Match::Delivery {
                    person_id: delivery.person_id,
                    generation: Some(delivery.generation),
                    by: "token",
                },
                Some(Err(_)) => Match::Forged,
                None => {
                    match_without_token(
                        conn,
                        matcher,
                        bounce,
                        report,
                        &by_message_id,
                        &by_notice_id,
                    )
                    .await?
                }
            };
            reports.push(found);
        }
        matches.push(reports);
    }
    Ok(matches)
}

async fn match_without_token(
    conn: &mut SqliteConnection,
    matcher: &mut Matcher,
    bounce: &Bounce,
    report: &RecipientStatus,
    by_message_id: &HashMap<String, i64>,
    by_notice_id: &HashMap<String, i64>,
) -> anyhow::Result<Match> {
    if let Some(found) = match_by_envelope_id(bounce, by_notice_id) {
        return Ok(found);
    }
    let returned_id = bounce.original_message_id.as_deref();
    if let Some(&person_id) = returned_id.and_then(|id| by_message_id.get(id)) {
        // The delivery still carries this Message-ID: it is the current generation.
        return Ok(Match::Delivery {
            person_id,
            generation: None,
            by: "message_id",
        });
    }
    let generation_hint = |matcher: &Matcher, person_id| {
        returned_id.and_then(|id| matcher.generation_of_message_id(person_id, id))
    };
    let notice = bounce
        .notice_id
        .as_deref()
        .and_then(|n| NoticeId::parse(n).ok());
    if let Some(&person_id) = notice.and_then(|n| by_notice_id.get(n.as_str())) {
        return Ok(Match::Delivery {
            person_id,
            generation: generation_hint(matcher, person_id),
            by: "notice_id",
        });
    }
    let Some(recipient) = report.final_recipient.as_deref() else {
        return Ok(Match::Unmatched);
    };
    let index = matcher.recipient_index(conn).await?;
    match index.get(&recipient.to_lowercase()).map(Vec::as_slice) {
        Some(&[person_id]) => Ok(Match::Delivery {
            person_id,
            generation: generation_hint(matcher, person_id),
            by: "recipient",
        }),
        // Nobody, or several people sharing the address: guessing would mark the wrong one.
        _ => Ok(Match::Unmatched),
    }
}

/// The envelope id a delivery status notification quotes back (`Original-Envelope-Id`: the
/// notice id sent as `ENVID`): the key after the signed token. It names the person, not the
/// generation: the report is taken for the current one.
fn match_by_envelope_id(bounce: &Bounce, by_notice_id: &HashMap<String, i64>) -> Option<Match> {
    let envelope_id = NoticeId::parse(bounce.envelope_id.as_deref()?).ok()?;
    let &person_id = by_notice_id.get(envelope_id.as_str())?;
    Some(Match::Delivery {
        person_id,
        generation: None,
        by: "envelope_id",
    })
}

struct MessageContext<'a> {
    source: &'a str,
    fingerprint: &'a str,
    run_id: i64,
    now: i64,
}

async fn record_message(
    conn: &mut SqliteConnection,
    message: &MessageContext<'_>,
    bounce: &Bounce,
    matches: &[Match],
    deliveries: &mut HashMap<i64, DeliveryNow>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    if !is_problem(bounce) {
        // Kept too, so that reading the same mailbox again reports it as a duplicate.
        let record = BounceRecord {
            fingerprint: message.fingerprint,
            recipient: "",
            person_id: None,
            generation: None,
            kind: "ignored",
            status: None,
            diagnostic: Some(bounce.kind.as_str()),
            matched_by: None,
            source: message.source,
            recipients: 0,
        };
        if ledger::record_bounce(conn, &record, message.now).await? {
            summary.ignored += 1;
            match bounce.kind {
                BounceKind::AutoReply => summary.auto_replies += 1,
                BounceKind::Reply => summary.replies += 1,
                _ => {}
            }
        } else {
            summary.duplicates += 1;
        }
        return Ok(());
    }
    for (index, group) in one_per_person(bounce, matches).iter().enumerate() {
        // Two reports without a recipient in one message must not collide on the unique key.
        let recipient = group.report.final_recipient.clone().unwrap_or_else(|| {
            if index == 0 {
                String::new()
            } else {
                format!("#{index}")
            }
        });
        record_report(
            conn,
            message,
            bounce,
            group.report,
            &recipient,
            group.found,
            group.listed,
            deliveries,
            summary,
        )
        .await?;
    }
    Ok(())
}

/// The reports of one message about one person (or, alike, those a forged token or nobody
/// answers for), with how many of the message's recipients they stand for.
struct ReportGroup<'a> {
    /// The one that speaks for them: the first hard failure, else the first.
    report: &'a RecipientStatus,
    found: Match,
    listed: i64,
}

/// A message records at most one row per person it is about: a DSN listing ten thousand
/// recipients, all under one token, is one bounce of that person's letter (with the number
/// listed kept as a count), not ten thousand. Reports matched to nobody, and those under a
/// forged token, make one row too.
fn one_per_person<'a>(bounce: &'a Bounce, matches: &[Match]) -> Vec<ReportGroup<'a>> {
    let mut groups: Vec<ReportGroup<'a>> = Vec::new();
    for (report, found) in problem_reports(bounce).zip(matches) {
        let same = |group: &ReportGroup<'_>| match (group.found, *found) {
            (Match::Delivery { person_id: a, .. }, Match::Delivery { person_id: b, .. }) => a == b,
            (Match::Forged, Match::Forged) | (Match::Unmatched, Match::Unmatched) => true,
            _ => false,
        };
        match groups.iter_mut().find(|group| same(group)) {
            Some(group) => {
                group.listed += 1;
                if group.report.kind != BounceKind::Hard && report.kind == BounceKind::Hard {
                    group.report = report;
                    group.found = *found;
                }
            }
            None => groups.push(ReportGroup {
                report,
                found: *found,
                listed: 1,
            }),
        }
    }
    groups
}

#[allow(clippy::too_many_arguments)]
async fn record_report(
    conn: &mut SqliteConnection,
    message: &MessageContext<'_>,
    bounce: &Bounce,
    report: &RecipientStatus,
    recipient: &str,
    found: Match,
    listed: i64,
    deliveries: &mut HashMap<i64, DeliveryNow>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    // A complaint keeps its feedback type as the status and its provider as the diagnostic,
    // so that the table counts complaints per provider, matched or not.
    let complaint = bounce
        .feedback
        .as_ref()
        .filter(|_| report.kind == BounceKind::Complaint);
    let matched_kind = match report.kind {
        BounceKind::Hard => "hard",
        BounceKind::Delayed => "delayed",
        BounceKind::Complaint => "complaint",
        BounceKind::Delivered => "delivered",
        _ => "soft",
    };
    let unmatched_kind = if complaint.is_some() {
        "complaint"
    } else {
        "unmatched"
    };
    let mut record = BounceRecord {
        fingerprint: message.fingerprint,
        recipient,
        person_id: None,
        generation: None,
        kind: unmatched_kind,
        status: complaint
            .map(|c| c.feedback_type.as_str())
            .or(report.status.as_deref()),
        diagnostic: complaint
            .map(|c| c.provider.as_str())
            .or(report.diagnostic.as_deref()),
        matched_by: None,
        source: message.source,
        recipients: listed,
    };
    let delivery = match found {
        Match::Forged => {
            record.kind = "forged";
            None
        }
        Match::Unmatched => None,
        Match::Delivery {
            person_id,
            generation,
            by,
        } => deliveries.get_mut(&person_id).map(|current| {
            let generation = generation.unwrap_or(current.generation);
            record.person_id = Some(person_id);
            record.generation = Some(generation);
            record.matched_by = Some(by);
            record.kind = matched_kind;
            (person_id, generation, current)
        }),
    };
    // A token for a generation that never existed can only come from a damaged key: not ours.
    let delivery = delivery.filter(|(_, generation, current)| *generation <= current.generation);
    if delivery.is_none() && record.kind != "forged" {
        record.kind = unmatched_kind;
        record.person_id = None;
        record.generation = None;
        record.matched_by = None;
    }
    if !ledger::record_bounce(conn, &record, message.now).await? {
        summary.duplicates += 1;
        return Ok(());
    }
    if record.kind == "forged" {
        summary.forged += 1;
        return Ok(());
    }
    if let Some(complaint) = complaint {
        summary.complaints += 1;
        *summary
            .complaints_by_provider
            .entry(complaint.provider.clone())
            .or_default() += 1;
    }
    let Some((person_id, generation, current)) = delivery else {
        if complaint.is_none() {
            summary.unmatched += 1;
        }
        return Ok(());
    };
    if let Some(complaint) = complaint {
        // Even about an older letter: the person complained, and the provider counted it.
        return ledger::record_complaint(
            conn,
            person_id,
            generation,
            &complaint.feedback_type,
            &complaint.provider,
            message.run_id,
            message.now,
        )
        .await;
    }
    if generation < current.generation {
        // That letter was already replaced by a resend: the bounce is history, not news.
        summary.stale_generation += 1;
        return Ok(());
    }
    let (status, diagnostic) = (report.status.as_deref(), report.diagnostic.as_deref());
    let temporary = match report.kind {
        BounceKind::Hard => None,
        BounceKind::Delivered => {
            return record_delivered(
                conn, message, bounce, report, person_id, generation, current, summary,
            )
            .await;
        }
        BounceKind::Delayed => {
            summary.delayed += 1;
            Some(ledger::Temporary::Delay)
        }
        _ => {
            summary.soft += 1;
            Some(ledger::Temporary::SoftBounce)
        }
    };
    if let Some(temporary) = temporary {
        let delivery = DeliveryRef {
            person_id,
            generation,
        };
        return ledger::note_temporary(
            conn,
            delivery,
            temporary,
            status,
            diagnostic,
            message.run_id,
            message.now,
        )
        .await;
    }
    summary.hard += 1;
    if ledger::mark_bounced(
        conn,
        person_id,
        generation,
        current.state,
        status,
        diagnostic,
        message.run_id,
        message.now,
    )
    .await?
    {
        current.state = DeliveryState::Bounced;
        summary.marked_bounced += 1;
    }
    Ok(())
}

/// A success notification for the current generation: `sent` → `delivered`, with the provider's
/// server, reply and the time the relay gave. A letter already delivered, since bounced, or not
/// sent yet changes nothing (the report is kept in `bounces` all the same).
#[allow(clippy::too_many_arguments)]
async fn record_delivered(
    conn: &mut SqliteConnection,
    message: &MessageContext<'_>,
    bounce: &Bounce,
    report: &RecipientStatus,
    person_id: i64,
    generation: i64,
    current: &mut DeliveryNow,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    summary.delivered += 1;
    // When the provider accepted it: the report's own time for that recipient, else when the
    // relay wrote the report (Postfix writes it at once), else when it was read.
    let at = report
        .last_attempt_at
        .or(bounce.date)
        .unwrap_or(message.now);
    let acceptance = ledger::Acceptance {
        remote_mta: report.remote_mta.as_deref(),
        reply: report.diagnostic.as_deref(),
        at,
    };
    if current.state == DeliveryState::Sent
        && ledger::mark_delivered(
            conn,
            person_id,
            generation,
            &acceptance,
            message.run_id,
            message.now,
        )
        .await?
    {
        current.state = DeliveryState::Delivered;
        summary.marked_delivered += 1;
    }
    Ok(())
}
