//! What `purge` reads and rewrites: the letters still due (which forbid it), the personal fields
//! of every person, the addresses quoted in replies, event details and bounces, and the
//! compaction that leaves no erased value in free pages or the log.
//!
//! The statements run in the caller's transaction, so a purge that stops half way changes
//! nothing; how an address is erased or a ref hashed is the caller's to say.

use anyhow::Context;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::domain::{DeliveryState, sql_states};

/// How many letters are still to send, per state, in the order of the states' names; empty
/// when none is.
pub async fn count_still_to_send_by_state(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<(DeliveryState, i64)>> {
    let sql = format!(
        "SELECT state, count(*) AS letters FROM deliveries
          WHERE state IN ({}) GROUP BY state ORDER BY state",
        sql_states(DeliveryState::STILL_TO_SEND)
    );
    sqlx::query(&sql)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            Ok((state.parse()?, row.try_get("letters")?))
        })
        .collect()
}

/// A person not purged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonToErase {
    pub id: i64,
    pub person_ref: String,
}

pub async fn people_to_erase(conn: &mut SqliteConnection) -> anyhow::Result<Vec<PersonToErase>> {
    sqlx::query("SELECT id, ref FROM people WHERE purged_at IS NULL")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok(PersonToErase {
                id: row.try_get("id")?,
                person_ref: row.try_get("ref")?,
            })
        })
        .collect()
}

/// Erases a person's personal fields and puts `hashed_ref` where the ref was.
pub async fn erase_person(
    conn: &mut SqliteConnection,
    person_id: i64,
    hashed_ref: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE people SET ref = ?1, email = NULL, email_domain = NULL, alt_email = NULL,
                civility = NULL, first_name = NULL, last_name = NULL,
                address_line1 = NULL, address_line2 = NULL, postcode = NULL, city = NULL,
                country = NULL, phone_masked = NULL, identifier_masked = NULL, extra = '{}',
                purged_at = ?2, updated_at = ?2
          WHERE id = ?3",
    )
    .bind(hashed_ref)
    .bind(now)
    .bind(person_id)
    .execute(conn)
    .await
    .context("while erasing a person")?;
    Ok(())
}

/// Forgets every address the deliveries hold (current, failed, and its domain).
pub async fn erase_delivery_addresses(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    sqlx::query("UPDATE deliveries SET email = NULL, failed_email = NULL, email_domain = NULL")
        .execute(conn)
        .await?;
    Ok(())
}

/// A delivery whose relay reply, error or bounce diagnostic quotes something like an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedReplies {
    pub person_id: i64,
    pub smtp_reply: Option<String>,
    pub last_error: Option<String>,
    pub bounce_diagnostic: Option<String>,
    /// The provider's reply as the relay's notification quoted it.
    pub delivered_reply: Option<String>,
}

pub async fn replies_quoting_addresses(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<QuotedReplies>> {
    sqlx::query(
        "SELECT person_id, smtp_reply, last_error, bounce_diagnostic, delivered_reply
           FROM deliveries
          WHERE smtp_reply LIKE '%@%' OR last_error LIKE '%@%' OR bounce_diagnostic LIKE '%@%'
             OR delivered_reply LIKE '%@%'",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(QuotedReplies {
            person_id: row.try_get("person_id")?,
            smtp_reply: row.try_get("smtp_reply")?,
            last_error: row.try_get("last_error")?,
            bounce_diagnostic: row.try_get("bounce_diagnostic")?,
            delivered_reply: row.try_get("delivered_reply")?,
        })
    })
    .collect()
}

/// Writes a delivery's replies back, scrubbed.
pub async fn rewrite_replies(
    conn: &mut SqliteConnection,
    replies: &QuotedReplies,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET smtp_reply = ?, last_error = ?, bounce_diagnostic = ?,
           delivered_reply = ?
          WHERE person_id = ?",
    )
    .bind(replies.smtp_reply.as_deref())
    .bind(replies.last_error.as_deref())
    .bind(replies.bounce_diagnostic.as_deref())
    .bind(replies.delivered_reply.as_deref())
    .bind(replies.person_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// An event whose detail quotes something like an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedDetail {
    pub event_id: i64,
    pub detail: String,
}

pub async fn event_details_quoting_addresses(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<QuotedDetail>> {
    sqlx::query("SELECT id, detail FROM events WHERE detail LIKE '%@%'")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok(QuotedDetail {
                event_id: row.try_get("id")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}

/// Events are append-only; the schema lets `detail`, and only it, be rewritten for this.
pub async fn rewrite_event_detail(
    conn: &mut SqliteConnection,
    event_id: i64,
    detail: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE events SET detail = ? WHERE id = ?")
        .bind(detail)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A bounce report whose recipient or diagnostic quotes something like an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedBounce {
    pub bounce_id: i64,
    pub recipient: Option<String>,
    pub diagnostic: Option<String>,
}

pub async fn bounces_quoting_addresses(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<QuotedBounce>> {
    sqlx::query(
        "SELECT id, recipient, diagnostic FROM bounces
          WHERE recipient LIKE '%@%' OR diagnostic LIKE '%@%'",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok(QuotedBounce {
            bounce_id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            diagnostic: row.try_get("diagnostic")?,
        })
    })
    .collect()
}

/// Writes a bounce report's recipient and diagnostic back, scrubbed.
pub async fn rewrite_bounce(
    conn: &mut SqliteConnection,
    bounce: &QuotedBounce,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE bounces SET recipient = ?, diagnostic = ? WHERE id = ?")
        .bind(bounce.recipient.as_deref())
        .bind(bounce.diagnostic.as_deref())
        .bind(bounce.bounce_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Rewrites the file without the free pages that still hold erased values, then empties the
/// write-ahead log, which held copies of them too.
pub async fn compact(pool: &SqlitePool) -> anyhow::Result<()> {
    sqlx::query("VACUUM")
        .execute(pool)
        .await
        .context("while compacting the database after the purge")?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
        .context("while emptying the write-ahead log after the purge")?;
    Ok(())
}
