//! What comes back after a letter left: each bounce report once, a hard bounce (`bounce`), a
//! provider's acceptance (`deliver`), and the notes that change no state (a soft bounce, a
//! delay, a complaint).

use sqlx::SqliteConnection;

use super::notes::note;
use super::transition::{Binds, Change, From, To, apply};
use crate::domain::{DeliveryState, EventKind, Transition};
use crate::verp::DeliveryRef;

/// One recipient report of a bounce message, as the `bounces` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BounceRecord<'a> {
    /// SHA-256 of the message's bytes: the same message read twice is the same bounce.
    pub fingerprint: &'a str,
    /// The reported recipient, or "" when the report names none.
    pub recipient: &'a str,
    pub person_id: Option<i64>,
    pub generation: Option<i64>,
    /// hard | soft | delayed | delivered | complaint | forged | unmatched | ignored
    pub kind: &'a str,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    /// token | envelope_id | message_id | notice_id | recipient
    pub matched_by: Option<&'a str>,
    pub source: &'a str,
    /// How many of the message's recipient reports this row stands for (one row per person a
    /// message is about); 0 for a message that reports no recipient (ignored).
    pub recipients: i64,
}

/// Records one bounce report once. Returns false when the same message already gave this
/// recipient's report (a second reading of a mailbox), so the caller changes nothing twice.
pub async fn record_bounce(
    conn: &mut SqliteConnection,
    bounce: &BounceRecord<'_>,
    now: i64,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO bounces (fingerprint, recipient, person_id, generation, kind, status,
           diagnostic, matched_by, source, read_at, recipients)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (fingerprint, recipient) DO NOTHING",
    )
    .bind(bounce.fingerprint)
    .bind(bounce.recipient)
    .bind(bounce.person_id)
    .bind(bounce.generation)
    .bind(bounce.kind)
    .bind(bounce.status)
    .bind(bounce.diagnostic)
    .bind(bounce.matched_by)
    .bind(bounce.source)
    .bind(now)
    .bind(bounce.recipients)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A hard bounce for a letter that was sent (or that the provider had accepted: a provider may
/// bounce later what it accepted): `sent`/`delivered` → `bounced`, keeping the status, the
/// diagnostic and the address that bounced. Changes nothing (and returns false) when the
/// delivery is in another state than `from` or has moved on to a newer generation.
#[allow(clippy::too_many_arguments)]
pub async fn mark_bounced(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    from: DeliveryState,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let change = Change {
        transition: Transition::Bounce,
        from: From::Read(from),
        to: To::Only,
        set: "bounced_at = ?, bounce_status = ?, bounce_diagnostic = ?, failed_email = email,
           updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ? AND deliveries.generation = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(now)
        .add(status)
        .add(diagnostic)
        .add(now)
        .add(person_id)
        .add(generation);
    let detail = bounce_detail(status, diagnostic);
    let moved = apply(conn, &change, binds, run_id, |_| Some(&detail), now).await?;
    Ok(!moved.is_empty())
}

/// What a relay's success notification (RFC 3464 `Action: relayed` or `delivered`) says of one
/// letter: who took it past the relay, what they answered, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance<'a> {
    /// The provider's server (`Remote-MTA`), when the relay names it.
    pub remote_mta: Option<&'a str>,
    /// The provider's reply (`Diagnostic-Code`), e.g. `250 2.0.0 Ok: queued as 4Xz…`.
    pub reply: Option<&'a str>,
    /// When the provider accepted it (the notification's date), Unix milliseconds.
    pub at: i64,
}

/// The person's provider accepted a letter the relay took: `sent` → `delivered`, with the
/// provider's server, reply and time. Changes nothing (and returns false) in any other state
/// or generation: a second reading of the same notification, or one about a letter since
/// bounced or resent.
pub async fn mark_delivered(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    acceptance: &Acceptance<'_>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let change = Change {
        transition: Transition::Deliver,
        from: From::Any,
        to: To::Only,
        set: "delivered_at = ?, delivered_by = ?, delivered_reply = ?, updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ? AND deliveries.generation = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(acceptance.at)
        .add(acceptance.remote_mta)
        .add(acceptance.reply)
        .add(now)
        .add(person_id)
        .add(generation);
    let by = acceptance.remote_mta.unwrap_or("the provider");
    let at = crate::db::format_time(Some(acceptance.at));
    let detail = match acceptance.reply {
        Some(reply) => format!("accepted by {by} at {at}: {reply}"),
        None => format!("accepted by {by} at {at}"),
    };
    let moved = apply(conn, &change, binds, run_id, |_| Some(&detail), now).await?;
    Ok(!moved.is_empty())
}

/// A report that changes no state: the letter is still on its way, or may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporary {
    /// A temporary failure reported after the letter left.
    SoftBounce,
    /// A delay notice ("still trying"): the letter is not counted as bounced.
    Delay,
}

/// A temporary report after the letter left: evidence only, the state stays.
pub async fn note_temporary(
    conn: &mut SqliteConnection,
    delivery: DeliveryRef,
    temporary: Temporary,
    status: Option<&str>,
    diagnostic: Option<&str>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    let said = bounce_detail(status, diagnostic);
    let (kind, detail) = match temporary {
        Temporary::SoftBounce => (EventKind::SoftBounce, said),
        Temporary::Delay => (EventKind::Delayed, format!("still at the relay: {said}")),
    };
    let DeliveryRef {
        person_id,
        generation,
    } = delivery;
    note(conn, person_id, generation, kind, detail, run_id, now).await
}

/// A complaint from a provider's feedback loop (the person marked the letter as spam). The
/// notice is mandatory, so nothing is withdrawn and the state stays; the event is the evidence,
/// and the count per provider tells whether the next letters will still reach the inbox.
pub async fn record_complaint(
    conn: &mut SqliteConnection,
    person_id: i64,
    generation: i64,
    feedback_type: &str,
    provider: &str,
    run_id: i64,
    now: i64,
) -> anyhow::Result<()> {
    let detail = format!("{feedback_type} report from the feedback loop of {provider}");
    note(
        conn,
        person_id,
        generation,
        EventKind::Complained,
        detail,
        run_id,
        now,
    )
    .await
}

fn bounce_detail(status: Option<&str>, diagnostic: Option<&str>) -> String {
    match (status, diagnostic) {
        (Some(status), Some(diagnostic)) => format!("{status} {diagnostic}"),
        (Some(only), None) | (None, Some(only)) => only.to_owned(),
        (None, None) => "no status given".to_owned(),
    }
}
