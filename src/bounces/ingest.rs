//! Matching bounces to deliveries and recording them: the `bounces` command.
//!
//! A reader thread streams and parses messages (the CPU-bound part) while the async side resolves
//! and writes them, one transaction per batch, so a mailbox of a whole campaign's bounces costs a
//! few hundred commits rather than one per message. Each recipient report is matched, most
//! trustworthy first: the signed VERP token of the address the bounce came back to, the returned
//! Message-ID, the returned X-Notice-Id, and last a reported recipient that only one person has.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::mailbox;
use super::parse::{Bounce, BounceKind, RecipientStatus, parse_bounce};
use crate::config::Config;
use crate::domain::{DeliveryState, NoticeId};
use crate::ledger::{self, BounceRecord};
use crate::verp::{self, DeliveryRef, TokenError};
use crate::{Exit, UsageError};

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
    /// Auto-replies and messages that report no delivery problem.
    pub ignored: u64,
    /// Messages that could not be read (garbage, truncated, oversized): reported and skipped.
    pub errors: u64,
    /// Reports about an older generation than the delivery's current one (already resent).
    pub stale_generation: u64,
    /// Deliveries that went `sent` → `bounced` in this run.
    pub marked_bounced: u64,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "bounces: {} messages: {} hard ({} marked bounced), {} soft, {} unmatched, {} forged, {} duplicates, {} ignored, {} errors, {} stale generation",
            self.messages,
            self.hard,
            self.marked_bounced,
            self.soft,
            self.unmatched,
            self.forged,
            self.duplicates,
            self.ignored,
            self.errors,
            self.stale_generation
        )
    }
}

/// One message as the reader thread hands it over.
enum ReadMessage {
    Parsed {
        source: String,
        fingerprint: String,
        bounce: Bounce,
    },
    Unreadable {
        source: String,
        reason: String,
    },
}

pub async fn run(config: &Config, paths: &[PathBuf], json: bool) -> anyhow::Result<Exit> {
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        return Err(UsageError::new(format!(
            "{}: no such mbox file, maildir folder or .eml file",
            missing.display()
        ))
        .into());
    }
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let summary = ingest(&pool, paths).await?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", summary.line());
    }
    Ok(Exit::Ok)
}

/// Reads every message of every path and records what it says. The run is recorded for the
/// evidence, with the summary as its detail.
pub async fn ingest(pool: &SqlitePool, paths: &[PathBuf]) -> anyhow::Result<Summary> {
    let key = crate::db::signing_key(pool).await?;
    let run_id = crate::db::start_run(pool, "bounces").await?;
    let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<ReadMessage>>(4);
    let paths = paths.to_vec();
    let reader = std::thread::spawn(move || read_all(&paths, &batches));

    let mut matcher = Matcher::new(key, run_id);
    let mut summary = Summary::default();
    let mut outcome = Ok(());
    while let Some(batch) = received.recv().await {
        if let Err(error) = record_batch(pool, &mut matcher, &batch, &mut summary).await {
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
    let detail = serde_json::to_string(&summary)?;
    match outcome {
        Ok(()) => {
            crate::db::finish_run(pool, run_id, "ok", &detail).await?;
            Ok(summary)
        }
        Err(error) => {
            crate::db::finish_run(pool, run_id, "error", &format!("{error:#}")).await?;
            Err(error)
        }
    }
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
    match parse_bounce(&message.bytes) {
        Ok(bounce) => ReadMessage::Parsed {
            source: message.source,
            fingerprint: hex::encode(Sha256::digest(&message.bytes)),
            bounce,
        },
        Err(error) => ReadMessage::Unreadable {
            source: message.source,
            reason: error.to_string(),
        },
    }
}

/// Where a delivery stands, as far as a bounce cares.
#[derive(Debug, Clone)]
struct DeliveryNow {
    generation: i64,
    state: DeliveryState,
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
    /// Lowercased address → the people whose current delivery goes there; loaded on first need,
    /// since most bounces match by token and never need it.
    recipients: Option<HashMap<String, Vec<i64>>>,
}

impl Matcher {
    fn new(key: Vec<u8>, run_id: i64) -> Self {
        Self {
            key,
            run_id,
            recipients: None,
        }
    }

    async fn recipient_index(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> anyhow::Result<&HashMap<String, Vec<i64>>> {
        if self.recipients.is_none() {
            let mut index: HashMap<String, Vec<i64>> = HashMap::new();
            let rows =
                sqlx::query("SELECT person_id, email FROM deliveries WHERE email IS NOT NULL")
                    .fetch_all(&mut *conn)
                    .await
                    .context("while reading the recipients' addresses")?;
            for row in rows {
                let email: String = row.get(1);
                index
                    .entry(email.to_lowercase())
                    .or_default()
                    .push(row.get(0));
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
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("while starting a transaction")?;
    let matches = resolve(&mut tx, matcher, batch).await?;
    let person_ids: Vec<i64> = matches
        .iter()
        .flatten()
        .filter_map(|m| match m {
            Match::Delivery { person_id, .. } => Some(*person_id),
            _ => None,
        })
        .collect();
    let mut deliveries = load_deliveries(&mut tx, &person_ids).await?;
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
    tx.commit().await.context("while committing bounces")?;
    Ok(())
}

/// The reports of a bounce that say something about a delivery: hard or soft ones.
fn problem_reports(bounce: &Bounce) -> impl Iterator<Item = &RecipientStatus> {
    bounce
        .recipients
        .iter()
        .filter(|r| matches!(r.kind, BounceKind::Hard | BounceKind::Soft))
}

fn is_problem(bounce: &Bounce) -> bool {
    matches!(bounce.kind, BounceKind::Hard | BounceKind::Soft)
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
    // The token comes first: it is signed, and a bad signature stops the matching for the
    // whole message, so a forged bounce cannot mark anyone by another route.
    let tokens: Vec<Option<Result<DeliveryRef, TokenError>>> = bounces
        .iter()
        .map(|b| {
            b.and_then(|b| b.envelope_to.as_deref())
                .and_then(|to| verp::verify_address(&matcher.key, to))
                .filter(|verdict| *verdict != Err(TokenError::Malformed))
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
    let by_message_id = lookup(
        conn,
        "SELECT message_id, person_id FROM deliveries WHERE message_id IN",
        &message_ids,
    )
    .await?;
    let notice_ids: Vec<String> = untokened()
        .filter_map(|b| b.notice_id.as_deref())
        .filter_map(|n| NoticeId::parse(n).ok())
        .map(|n| n.as_str().to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let by_notice_id = lookup(
        conn,
        "SELECT notice_id, id FROM people WHERE notice_id IN",
        &notice_ids,
    )
    .await?;

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

/// `SELECT key, person FROM ... WHERE key IN (...)` in chunks under SQLite's variable limit.
async fn lookup(
    conn: &mut SqliteConnection,
    select_in: &str,
    keys: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(900) {
        let sql = format!("{select_in} ({})", vec!["?"; chunk.len()].join(","));
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key);
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(row.get::<String, _>(0), row.get::<i64, _>(1));
        }
    }
    Ok(found)
}

async fn load_deliveries(
    conn: &mut SqliteConnection,
    person_ids: &[i64],
) -> anyhow::Result<HashMap<i64, DeliveryNow>> {
    let unique: Vec<i64> = person_ids
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut deliveries = HashMap::new();
    for chunk in unique.chunks(900) {
        let sql = format!(
            "SELECT person_id, generation, state FROM deliveries WHERE person_id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let state: String = row.get(2);
            deliveries.insert(
                row.get::<i64, _>(0),
                DeliveryNow {
                    generation: row.get(1),
                    state: state.parse()?,
                },
            );
        }
    }
    Ok(deliveries)
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
        };
        if ledger::record_bounce(conn, &record, message.now).await? {
            summary.ignored += 1;
        } else {
            summary.duplicates += 1;
        }
        return Ok(());
    }
    for (index, (report, found)) in problem_reports(bounce).zip(matches).enumerate() {
        // Two reports without a recipient in one message must not collide on the unique key.
        let recipient = report.final_recipient.clone().unwrap_or_else(|| {
            if index == 0 {
                String::new()
            } else {
                format!("#{index}")
            }
        });
        record_report(
            conn, message, report, &recipient, *found, deliveries, summary,
        )
        .await?;
    }
    Ok(())
}

async fn record_report(
    conn: &mut SqliteConnection,
    message: &MessageContext<'_>,
    report: &RecipientStatus,
    recipient: &str,
    found: Match,
    deliveries: &mut HashMap<i64, DeliveryNow>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let hard = report.kind == BounceKind::Hard;
    let mut record = BounceRecord {
        fingerprint: message.fingerprint,
        recipient,
        person_id: None,
        generation: None,
        kind: "unmatched",
        status: report.status.as_deref(),
        diagnostic: report.diagnostic.as_deref(),
        matched_by: None,
        source: message.source,
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
            record.kind = if hard { "hard" } else { "soft" };
            (person_id, generation, current)
        }),
    };
    // A token for a generation that never existed can only come from a damaged key: not ours.
    let delivery = delivery.filter(|(_, generation, current)| *generation <= current.generation);
    if delivery.is_none() && record.kind != "forged" {
        record.kind = "unmatched";
        record.person_id = None;
        record.generation = None;
        record.matched_by = None;
    }
    if !ledger::record_bounce(conn, &record, message.now).await? {
        summary.duplicates += 1;
        return Ok(());
    }
    let Some((person_id, generation, current)) = delivery else {
        match record.kind {
            "forged" => summary.forged += 1,
            _ => summary.unmatched += 1,
        }
        return Ok(());
    };
    if generation < current.generation {
        // That letter was already replaced by a resend: the bounce is history, not news.
        summary.stale_generation += 1;
        return Ok(());
    }
    let (status, diagnostic) = (report.status.as_deref(), report.diagnostic.as_deref());
    if !hard {
        summary.soft += 1;
        return ledger::note_soft_bounce(
            conn,
            person_id,
            generation,
            status,
            diagnostic,
            message.run_id,
            message.now,
        )
        .await;
    }
    summary.hard += 1;
    if current.state == DeliveryState::Sent
        && ledger::mark_bounced(
            conn,
            person_id,
            generation,
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
