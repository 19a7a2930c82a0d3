//! Resends: a delivery back to `pending` as a new generation, to the same or another address.

use sqlx::SqliteConnection;

use super::transition::{Binds, Change, From, To, apply};
use crate::domain::{DeliveryState, Transition};

/// What `resend` asks of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGeneration<'a> {
    pub person_id: i64,
    /// The state the delivery was read in; if it changed since, nothing is done.
    pub from_state: DeliveryState,
    pub email: &'a str,
    pub email_domain: &'a str,
    /// Why, in the operator's words ("resend --bounced", "to the alternative address").
    pub reason: &'a str,
}

/// Puts a delivery back to `pending` as a new attempt generation to `email`: a fresh start
/// (attempts, Message-ID, content hash and relay reply cleared; the events keep the old ones).
/// Returns the new generation, or None when the delivery was no longer in `from_state`.
pub async fn start_new_generation(
    conn: &mut SqliteConnection,
    resend: &NewGeneration<'_>,
    run_id: i64,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let change = Change {
        transition: Transition::Resend,
        from: From::Read(resend.from_state),
        to: To::Only,
        set: "generation = generation + 1, attempts = 0,
           generation_started_at = ?, email = ?, email_domain = ?, next_attempt_at = NULL,
           first_attempt_at = NULL, last_attempt_at = NULL, sent_at = NULL, claimed_by = NULL,
           claimed_from = NULL, last_error = NULL, smtp_code = NULL, smtp_enhanced = NULL,
           smtp_step = NULL, smtp_reply = NULL,
           message_id = NULL, content_sha256 = NULL, possible_duplicate = 0,
           notify_requested = 0, delivered_at = NULL, delivered_by = NULL, delivered_reply = NULL,
           updated_at = ?",
        source: "",
        rows: "deliveries.person_id = ?",
        names_generation: true,
    };
    let binds = Binds::new()
        .add(now)
        .add(resend.email)
        .add(resend.email_domain)
        .add(now)
        .add(resend.person_id);
    let moved = apply(conn, &change, binds, run_id, |_| Some(resend.reason), now).await?;
    Ok(moved.first().map(|moved| moved.generation))
}
