//! Outcomes: what became of each claimed delivery (sent, deferred, failed, released), recorded
//! in batches by the send run that holds it, with the relay's reply as columns from its type.

use std::collections::{HashMap, HashSet};

use sqlx::SqliteConnection;

use super::transition::{Binds, Change, From, Moved, To, apply};
use crate::domain::{Email, Transition};
use crate::smtp_reply::{Accepted, SmtpReply};
use crate::store::Stale;
use crate::verp::DeliveryRef;

/// What became of one claimed delivery, as the writer records it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The relay (or the outbox folder) took the letter.
    Sent {
        reply: Accepted,
        message_id: String,
        fingerprint: String,
        sha256: String,
        /// The address it went to.
        email: Email,
        /// The relay was asked for delivery status notifications for it (RFC 3461 NOTIFY).
        notify: bool,
    },
    /// Try again at `next_attempt_at`; `possible_duplicate` after an unknown outcome.
    Deferred {
        /// Why, for people (`last_error`): the reply as the relay gave it, or what happened
        /// when there was none (a session that broke, no reply after the message).
        reason: String,
        /// The relay's reply, when there was one.
        reply: Option<SmtpReply>,
        next_attempt_at: i64,
        possible_duplicate: bool,
        message_id: String,
    },
    /// Never again to this address: refused, or given up on after too many attempts.
    Failed {
        /// Why, for people: the refusal, or "gave up after …" and the last reply.
        reason: String,
        /// The relay's reply it stands on, when there was one.
        reply: Option<SmtpReply>,
        message_id: Option<String>,
        possible_duplicate: bool,
    },
    /// Not attempted (relay unreachable, run stopping, letter did not render): back to where
    /// it was, no attempt counted.
    Released { reason: String },
}

impl Outcome {
    pub fn transition(&self) -> Transition {
        match self {
            Outcome::Sent { .. } => Transition::Send,
            Outcome::Deferred { .. } => Transition::Defer,
            Outcome::Failed { .. } => Transition::Fail,
            Outcome::Released { .. } => Transition::Release,
        }
    }
}

/// Records a batch of outcomes of one run in one transaction: each state change with its event.
/// Returns the deliveries this run no longer held (another run took them over): for those
/// nothing is written, and the caller must stop sending.
pub async fn record_outcomes(
    pool: &sqlx::SqlitePool,
    run_id: i64,
    outcomes: &[(DeliveryRef, Outcome)],
) -> anyhow::Result<Vec<Stale>> {
    let mut tx = crate::db::begin_write(pool).await?;
    let stale = record_outcomes_in(&mut tx, run_id, outcomes, crate::db::now_ms()).await?;
    tx.commit().await?;
    Ok(stale)
}

/// [`record_outcomes`] inside the caller's transaction.
pub async fn record_outcomes_in(
    conn: &mut SqliteConnection,
    run_id: i64,
    outcomes: &[(DeliveryRef, Outcome)],
    now: i64,
) -> anyhow::Result<Vec<Stale>> {
    let mut stale = Vec::new();
    // Letters the relay accepted, the bulk of every batch, are written a chunk to a statement
    // (and their events a chunk to another), instead of two statements each: each statement is
    // a round trip to SQLite's thread, and the claims wait for the connection meanwhile. The
    // rest, and a person named twice (a chunk holds distinct people), go one by one, after.
    let mut seen = std::collections::HashSet::new();
    let (sent, others): (Vec<_>, Vec<_>) = outcomes.iter().partition(|(delivery, outcome)| {
        matches!(outcome, Outcome::Sent { .. }) && seen.insert(delivery.person_id)
    });
    for chunk in sent.chunks(SENT_CHUNK) {
        stale.extend(record_sent(conn, run_id, chunk, now).await?);
    }
    for (delivery, outcome) in others {
        if let Err(lost) = record_outcome(conn, run_id, *delivery, outcome, now).await? {
            stale.push(lost);
        }
    }
    Ok(stale)
}

/// Accepted letters written together: ten values a letter, well under SQLite's limit of bound
/// values in one statement.
const SENT_CHUNK: usize = 128;

/// A reply's columns, taken from its type: its code, its enhanced status code (`5.1.1`) and the
/// step it answered (`RCPT TO`), all None without a reply.
struct ReplyColumns {
    code: Option<i64>,
    enhanced: Option<String>,
    step: Option<&'static str>,
}

impl ReplyColumns {
    fn of(reply: Option<&SmtpReply>) -> ReplyColumns {
        ReplyColumns {
            code: reply.map(|reply| i64::from(reply.code())),
            enhanced: reply.and_then(SmtpReply::enhanced).map(|e| e.to_string()),
            step: reply.map(|reply| reply.step().as_str()),
        }
    }

    /// Binds them in this order: code, enhanced, step.
    fn bind<'q>(&'q self, binds: Binds<'q>) -> Binds<'q> {
        binds
            .add(self.code)
            .add(self.enhanced.as_deref())
            .add(self.step)
    }
}

/// The text column kept for people (`smtp_reply`): the reply as the relay said it, "250 2.0.0
/// Ok: queued as 4Xz…", or where the letter was written.
fn said(accepted: &Accepted) -> String {
    match accepted {
        Accepted::ByRelay(reply) => format!("{} {}", reply.code(), reply.text())
            .trim_end()
            .to_owned(),
        Accepted::Written { file_name } => format!("written to {file_name}"),
    }
}

/// [`record_outcome`] for a chunk of `Sent` outcomes (distinct people): one `UPDATE … FROM
/// (VALUES …)` fenced like the single one, then the events of the rows it changed.
async fn record_sent(
    conn: &mut SqliteConnection,
    run_id: i64,
    chunk: &[&(DeliveryRef, Outcome)],
    now: i64,
) -> anyhow::Result<Vec<Stale>> {
    let rows: Vec<_> = chunk
        .iter()
        .filter_map(|(delivery, outcome)| match outcome {
            Outcome::Sent {
                reply,
                message_id,
                fingerprint,
                sha256,
                email,
                notify,
            } => Some((
                delivery.person_id,
                said(reply),
                ReplyColumns::of(reply.smtp()),
                outcome_texts(message_id, fingerprint, sha256, email),
                *notify,
            )),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Plain `?` only: sqlx asks SQLite the name of every parameter, and SQLite finds a numbered
    // one (`?NNN`) by walking the list of names, so 770 of them cost the square of that on
    // every statement. The parameters go in the order they appear.
    let source = format!(
        "(SELECT ? AS now, ? AS run_id) AS t, (VALUES {}) AS v",
        vec!["(?,?,?,?,?,?,?,?,?,?)"; rows.len()].join(",")
    );
    let change = Change {
        transition: Transition::Send,
        from: From::Any,
        to: To::Only,
        set: "attempts = attempts + 1,
           first_attempt_at = COALESCE(first_attempt_at, t.now), last_attempt_at = t.now,
           sent_at = t.now, smtp_reply = v.column2, smtp_code = v.column3,
           smtp_enhanced = v.column4, smtp_step = v.column5, last_error = NULL,
           message_id = v.column6, letters_fingerprint = v.column7, content_sha256 = v.column8,
           email = v.column9, notify_requested = v.column10,
           next_attempt_at = NULL, claimed_by = NULL, claimed_from = NULL, updated_at = t.now",
        source: &source,
        rows: "deliveries.person_id = v.column1 AND deliveries.claimed_by = t.run_id",
        names_generation: true,
    };
    let mut binds = Binds::new().add(now).add(run_id);
    for (person_id, text, reply, texts, notify) in &rows {
        binds = reply.bind(binds.add(*person_id).add(text.as_str()));
        for text in texts {
            binds = binds.add(*text);
        }
        binds = binds.add(i64::from(*notify));
    }
    let replies: HashMap<i64, &str> = rows
        .iter()
        .map(|(person_id, text, ..)| (*person_id, text.as_str()))
        .collect();
    let detail = |moved: &Moved| replies.get(&moved.person_id).copied();
    let moved = apply(conn, &change, binds, run_id, detail, now).await?;
    let changed: HashSet<i64> = moved.iter().map(|m| m.person_id).collect();
    Ok(rows
        .iter()
        .filter(|(person_id, ..)| !changed.contains(person_id))
        .map(|(person_id, ..)| stale(Transition::Send, *person_id))
        .collect())
}

/// The texts of a sent letter, in the order its statement binds them.
fn outcome_texts<'a>(
    message_id: &'a str,
    fingerprint: &'a str,
    sha256: &'a str,
    email: &'a Email,
) -> [&'a str; 4] {
    [message_id, fingerprint, sha256, email.as_str()]
}

/// The answer to a write that found the delivery no longer in the transition's from-state.
fn stale(transition: Transition, person_id: i64) -> Stale {
    Stale {
        person_id,
        expected: transition.from_states().first().map_or("", |s| s.as_str()),
    }
}

/// Writes one outcome if, and only if, the delivery is still `sending` for this run; the event
/// only when the row changed.
async fn record_outcome(
    conn: &mut SqliteConnection,
    run_id: i64,
    delivery: DeliveryRef,
    outcome: &Outcome,
    now: i64,
) -> anyhow::Result<Result<(), Stale>> {
    let transition = outcome.transition();
    let person_id = delivery.person_id;
    // Fenced by the run that claimed it.
    let rows = "deliveries.person_id = ? AND deliveries.claimed_by = ?";
    let mut columns = None;
    let (change, binds, detail) = match outcome {
        // Accepted letters have their own statement, for one letter or many.
        Outcome::Sent { .. } => {
            let stale = record_sent(conn, run_id, &[&(delivery, outcome.clone())], now).await?;
            return Ok(stale.into_iter().next().map_or(Ok(()), Err));
        }
        Outcome::Deferred {
            reason,
            reply,
            next_attempt_at,
            possible_duplicate,
            message_id,
        } => {
            let change = Change {
                transition,
                from: From::Any,
                to: To::Only,
                set: "attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                   last_error = ?, smtp_code = ?, smtp_enhanced = ?, smtp_step = ?,
                   next_attempt_at = ?,
                   possible_duplicate = MAX(possible_duplicate, ?), message_id = ?,
                   claimed_by = NULL, claimed_from = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            let binds = Binds::new().add(now).add(now).add(reason.as_str());
            let binds = columns
                .insert(ReplyColumns::of(reply.as_ref()))
                .bind(binds)
                .add(*next_attempt_at)
                .add(i64::from(*possible_duplicate))
                .add(message_id.as_str())
                .add(now);
            (change, binds, reason)
        }
        Outcome::Failed {
            reason,
            reply,
            message_id,
            possible_duplicate,
        } => {
            let change = Change {
                transition,
                from: From::Any,
                to: To::Only,
                set: "attempts = attempts + 1,
                   first_attempt_at = COALESCE(first_attempt_at, ?), last_attempt_at = ?,
                   last_error = ?, smtp_reply = ?, smtp_code = ?, smtp_enhanced = ?,
                   smtp_step = ?, failed_email = email,
                   message_id = COALESCE(?, message_id),
                   possible_duplicate = MAX(possible_duplicate, ?), next_attempt_at = NULL,
                   claimed_by = NULL, claimed_from = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            let binds = Binds::new()
                .add(now)
                .add(now)
                .add(reason.as_str())
                .add(reason.as_str());
            let binds = columns
                .insert(ReplyColumns::of(reply.as_ref()))
                .bind(binds)
                .add(message_id.as_deref())
                .add(i64::from(*possible_duplicate))
                .add(now);
            (change, binds, reason)
        }
        Outcome::Released { reason } => {
            // The day's cap gets its place back (nothing when the claim is not this run's).
            crate::store::schedule::give_back(&mut *conn, person_id, run_id).await?;
            // Back to the state it was claimed from.
            let change = Change {
                transition,
                from: From::Any,
                to: To::Claimed,
                set: "claimed_by = NULL, claimed_from = NULL, handed_over_at = NULL, updated_at = ?",
                source: "",
                rows,
                names_generation: true,
            };
            (change, Binds::new().add(now), reason)
        }
    };
    let binds = binds.add(person_id).add(run_id);
    let moved = apply(conn, &change, binds, run_id, |_| Some(detail.as_str()), now).await?;
    if moved.is_empty() {
        return Ok(Err(stale(transition, person_id)));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::super::claim;
    use super::*;
    use crate::smtp_reply::Step;
    use crate::store::ledger::testing::campaign_of;

    /// Claims every delivery of `pool` for run 1 and records `outcomes` in order (person ids
    /// from 1).
    async fn record_all(pool: &sqlx::SqlitePool, outcomes: Vec<Outcome>) {
        let claimed = claim(pool, 1, 100, 0, &[], None).await.unwrap();
        assert_eq!(claimed.len(), outcomes.len());
        let outcomes: Vec<(DeliveryRef, Outcome)> = outcomes
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| {
                let delivery = DeliveryRef {
                    person_id: i as i64 + 1,
                    generation: 1,
                };
                (delivery, outcome)
            })
            .collect();
        assert!(
            record_outcomes(pool, 1, &outcomes)
                .await
                .unwrap()
                .is_empty()
        );
    }

    fn refused(step: Step, code: u16, text: &str) -> Outcome {
        let reply = SmtpReply::new(step, code, text);
        Outcome::Failed {
            reason: reply.to_string(),
            reply: Some(reply),
            message_id: None,
            possible_duplicate: false,
        }
    }

    fn sent(reply: Accepted) -> Outcome {
        Outcome::Sent {
            reply,
            message_id: "m@x".into(),
            fingerprint: "f".into(),
            sha256: "s".into(),
            email: crate::domain::Email::parse("p@exemple.fr").unwrap(),
            notify: false,
        }
    }

    #[tokio::test]
    async fn a_letter_written_to_the_outbox_keeps_no_made_up_reply() {
        let (_dir, pool) = campaign_of(2).await;
        record_all(
            &pool,
            vec![
                sent(Accepted::ByRelay(SmtpReply::new(
                    Step::Message,
                    250,
                    "2.0.0 Ok: queued as 4Xz",
                ))),
                sent(Accepted::Written {
                    file_name: "P2.1.eml".into(),
                }),
            ],
        )
        .await;
        let rows: Vec<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT state, smtp_reply, smtp_code, smtp_step FROM deliveries ORDER BY person_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            [
                (
                    "sent".into(),
                    "250 2.0.0 Ok: queued as 4Xz".into(),
                    Some(250),
                    Some("after the message".into())
                ),
                ("sent".into(), "written to P2.1.eml".into(), None, None),
            ]
        );
    }

    #[tokio::test]
    async fn refusals_are_counted_by_the_replys_code_enhanced_code_and_step() {
        let (_dir, pool) = campaign_of(5).await;
        record_all(
            &pool,
            vec![
                refused(
                    Step::RcptTo,
                    550,
                    "5.1.1 <a@exemple.fr>: Recipient address rejected",
                ),
                refused(Step::RcptTo, 550, "5.1.1 Mailbox does not exist, sorry"),
                refused(Step::Message, 550, "5.1.1 Mailbox does not exist, sorry"),
                refused(Step::RcptTo, 554, "5.7.1 Relay access denied"),
                Outcome::Failed {
                    reason: "gave up after 5 attempts: no reply after the message: timed out"
                        .into(),
                    reply: None,
                    message_id: None,
                    possible_duplicate: true,
                },
            ],
        )
        .await;
        let columns: Vec<(Option<i64>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT smtp_code, smtp_enhanced, smtp_step FROM deliveries ORDER BY person_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            columns[0],
            (Some(550), Some("5.1.1".into()), Some("RCPT TO".into()))
        );
        assert_eq!(columns[2].2.as_deref(), Some("after the message"));
        assert_eq!(columns[4], (None, None, None));

        let mut conn = pool.acquire().await.unwrap();
        let counts =
            crate::store::status::reason_counts(&mut conn, crate::store::status::Reasons::Refusals)
                .await
                .unwrap();
        type Key = (i64, Option<String>, Option<String>);
        let mut counted: Vec<(Option<Key>, i64)> = counts
            .iter()
            .map(|c| {
                let key = c
                    .reply
                    .as_ref()
                    .map(|k| (k.code, k.enhanced.clone(), k.step.clone()));
                (key, c.letters)
            })
            .collect();
        counted.sort();
        let key = |code: i64, enhanced: &str, step: &str| {
            Some((code, Some(enhanced.to_string()), Some(step.to_string())))
        };
        assert_eq!(
            counted,
            [
                (None, 1),
                (key(550, "5.1.1", "RCPT TO"), 2),
                (key(550, "5.1.1", "after the message"), 1),
                (key(554, "5.7.1", "RCPT TO"), 1),
            ],
            "one reply at one step is one reason whatever its text; another step is another"
        );
    }

    #[tokio::test]
    async fn the_migration_reads_the_columns_of_replies_recorded_as_text() {
        let (_dir, pool) = campaign_of(4).await;
        let recorded = [
            (1, "sent", "250 2.0.0 Ok: queued as 4Xz", None),
            (
                2,
                "deferred",
                "451 4.7.1 Greylisted (at RCPT TO)",
                Some(451),
            ),
            (
                3,
                "failed",
                "gave up after 5 attempts: 421 4.3.2 Service not available (at greeting)",
                Some(421),
            ),
            (4, "failed", "550 Mailbox unavailable (at DATA)", Some(550)),
        ];
        for (id, state, text, code) in recorded {
            let column = if state == "deferred" {
                "last_error"
            } else {
                "smtp_reply"
            };
            sqlx::query(&format!(
                "UPDATE deliveries SET state = ?, {column} = ?, smtp_code = ? WHERE person_id = ?"
            ))
            .bind(state)
            .bind(text)
            .bind(code.or((state == "sent").then_some(250)))
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
        let migration = include_str!("../../../migrations/0013_reply_columns.sql");
        let fill = &migration[migration.find("UPDATE deliveries SET").unwrap()..];
        sqlx::query(fill).execute(&pool).await.unwrap();
        let columns: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT smtp_enhanced, smtp_step FROM deliveries ORDER BY person_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let expected = [
            (Some("2.0.0"), Some("after the message")),
            (Some("4.7.1"), Some("RCPT TO")),
            (Some("4.3.2"), Some("greeting")),
            (None, Some("DATA")),
        ];
        let columns: Vec<(Option<&str>, Option<&str>)> = columns
            .iter()
            .map(|(e, s)| (e.as_deref(), s.as_deref()))
            .collect();
        assert_eq!(columns, expected);
    }
}
