//! `purge --yes`: after the campaign, erases what identifies the people and keeps the evidence.
//!
//! The regulator may ask, for the retention period, how many people were told, when, with which
//! letters, and what became of each letter; nobody needs their names and addresses any more. So
//! the personal fields are erased (the source system's ref is replaced by its SHA-256, addresses
//! quoted in relay replies and bounce diagnostics are blotted out), while states, times, attempt
//! counts, notice ids, Message-IDs, content hashes and every event stay. It refuses while a letter
//! is still due, since a purged person can no longer be written to, and it runs in one
//! transaction followed by `VACUUM`, so the erased values do not linger in free pages.

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::config::Config;
use crate::lease::Lease;
use crate::{Exit, UsageError};

/// What stands where an address was.
const ERASED: &str = "[address erased]";

/// What a purge erased, for the run record and the operator.
#[derive(Debug, Default, serde::Serialize)]
pub struct PurgeSummary {
    pub people: u64,
    pub replies_scrubbed: u64,
    pub events_scrubbed: u64,
    pub bounces_scrubbed: u64,
    pub call_notes_erased: u64,
}

pub async fn run(config: &Config, yes: bool) -> anyhow::Result<Exit> {
    if !yes {
        return Err(UsageError::new(
            "purge erases the names, addresses and other personal fields of every person for good (the counts, times, hashes and notice ids stay): run `breachmail purge --yes` once the campaign is over",
        )
        .into());
    }
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let exit = purge(&pool).await;
    pool.close().await;
    exit
}

async fn purge(pool: &SqlitePool) -> anyhow::Result<Exit> {
    let run_id = crate::db::start_run(pool, "purge").await?;
    // Holding the sender's lease keeps a `send` from starting while people are being erased.
    let lease = match Lease::acquire(pool, run_id).await? {
        Ok(lease) => lease,
        Err(holder) => {
            eprintln!(
                "purge refused: a send is running (run {} on {}, pid {}); purge after it ends",
                holder.run_id, holder.host, holder.pid
            );
            crate::db::finish_run(pool, run_id, "refused", "a send is running").await?;
            return Ok(Exit::TryLater);
        }
    };
    let outcome = purge_under_lease(pool, run_id).await;
    lease.release().await?;
    let exit = outcome?;
    if matches!(exit, Exit::Ok) {
        // VACUUM rewrites the file without the free pages that still hold the old values; the
        // checkpoint then empties the write-ahead log, which held copies of them too.
        sqlx::query("VACUUM")
            .execute(pool)
            .await
            .context("while compacting the database after the purge")?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .context("while emptying the write-ahead log after the purge")?;
    }
    Ok(exit)
}

async fn purge_under_lease(pool: &SqlitePool, run_id: i64) -> anyhow::Result<Exit> {
    let mut tx = pool.begin().await?;
    let due: Vec<(String, i64)> = sqlx::query(
        "SELECT state, count(*) FROM deliveries
          WHERE state IN ('pending', 'deferred', 'sending') GROUP BY state ORDER BY state",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    if !due.is_empty() {
        tx.rollback().await?;
        let counts: Vec<String> = due.iter().map(|(s, n)| format!("{n} {s}")).collect();
        eprintln!(
            "purge refused: letters are still due ({}); let `send` finish them, or give up on them, before erasing the people",
            counts.join(", ")
        );
        let detail = serde_json::json!({ "refused": "letters still due", "due": counts });
        crate::db::finish_run(pool, run_id, "refused", &detail.to_string()).await?;
        return Ok(Exit::Failed);
    }
    let summary = erase(&mut tx).await?;
    tx.commit().await?;
    let detail = serde_json::to_string(&summary)?;
    crate::db::finish_run(pool, run_id, "purged", &detail).await?;
    println!(
        "purged {} people: names, addresses, phone and identifier tails and extra columns erased, refs replaced by their SHA-256; {} replies, {} events and {} bounces scrubbed of addresses; {} call notes erased. Counts, states, times, notice ids and hashes are kept.",
        summary.people,
        summary.replies_scrubbed,
        summary.events_scrubbed,
        summary.bounces_scrubbed,
        summary.call_notes_erased
    );
    println!("previews, exports and file:// outbox folders are not touched: delete them yourself");
    Ok(Exit::Ok)
}

/// Everything in one transaction: a purge that stops half way changes nothing.
async fn erase(tx: &mut Transaction<'_, Sqlite>) -> anyhow::Result<PurgeSummary> {
    let now = crate::db::now_ms();
    let mut summary = PurgeSummary::default();

    let people: Vec<(i64, String)> =
        sqlx::query("SELECT id, ref FROM people WHERE purged_at IS NULL")
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    for (id, person_ref) in &people {
        sqlx::query(
            "UPDATE people SET ref = ?1, email = NULL, email_domain = NULL, alt_email = NULL,
                    civility = NULL, first_name = NULL, last_name = NULL,
                    address_line1 = NULL, address_line2 = NULL, postcode = NULL, city = NULL,
                    country = NULL, phone_masked = NULL, identifier_masked = NULL, extra = '{}',
                    purged_at = ?2, updated_at = ?2
              WHERE id = ?3",
        )
        .bind(hashed_ref(person_ref))
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await
        .context("while erasing a person")?;
        summary.people += 1;
    }
    sqlx::query("UPDATE deliveries SET email = NULL, failed_email = NULL, email_domain = NULL")
        .execute(&mut **tx)
        .await?;

    let replies = sqlx::query(
        "SELECT person_id, smtp_reply, last_error, bounce_diagnostic FROM deliveries
          WHERE smtp_reply LIKE '%@%' OR last_error LIKE '%@%' OR bounce_diagnostic LIKE '%@%'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for row in replies {
        let scrub = |column: &str| {
            row.get::<Option<String>, _>(column)
                .map(|text| erase_addresses(&text))
        };
        sqlx::query(
            "UPDATE deliveries SET smtp_reply = ?, last_error = ?, bounce_diagnostic = ?
              WHERE person_id = ?",
        )
        .bind(scrub("smtp_reply"))
        .bind(scrub("last_error"))
        .bind(scrub("bounce_diagnostic"))
        .bind(row.get::<i64, _>("person_id"))
        .execute(&mut **tx)
        .await?;
        summary.replies_scrubbed += 1;
    }

    // Events are append-only; the schema lets `detail`, and only it, be rewritten for this.
    let events: Vec<(i64, String)> =
        sqlx::query("SELECT id, detail FROM events WHERE detail LIKE '%@%'")
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    for (id, detail) in events {
        sqlx::query("UPDATE events SET detail = ? WHERE id = ?")
            .bind(erase_addresses(&detail))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        summary.events_scrubbed += 1;
    }

    let bounces: Vec<(i64, Option<String>, Option<String>)> = sqlx::query(
        "SELECT id, recipient, diagnostic FROM bounces
          WHERE recipient LIKE '%@%' OR diagnostic LIKE '%@%'",
    )
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect();
    for (id, recipient, diagnostic) in bounces {
        // Hashed rather than emptied: (fingerprint, recipient) stays unique.
        sqlx::query("UPDATE bounces SET recipient = ?, diagnostic = ? WHERE id = ?")
            .bind(recipient.map(|r| hashed_ref(&r.to_lowercase())))
            .bind(diagnostic.map(|d| erase_addresses(&d)))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        summary.bounces_scrubbed += 1;
    }
    // What callers told the helpline is personal data too; the notes' rows (who, when) stay, so
    // the counts do.
    summary.call_notes_erased = crate::store::helpline::erase_call_notes(tx, now).await?;
    Ok(summary)
}

/// `sha256:<hex>`: still unique and still matchable against the source system by whoever holds
/// it, but no longer the source's key in clear.
fn hashed_ref(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// Replaces every e-mail address in a relay's reply or a diagnostic with `[address erased]`.
/// An address here is a run of address characters on both sides of an `@`.
pub fn erase_addresses(text: &str) -> String {
    let in_local = |c: char| c.is_alphanumeric() || "._%+-!#$&'*/=?^`{|}~".contains(c);
    let in_domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '@' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && in_local(chars[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < chars.len() && in_domain(chars[end]) {
            end += 1;
        }
        let local = i - start;
        let domain = end - (i + 1);
        if local == 0 && domain == 0 {
            out.push('@');
            i += 1;
            continue;
        }
        // The local part was already copied: take it back.
        for _ in 0..local {
            out.pop();
        }
        out.push_str(ERASED);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_erased_from_replies() {
        assert_eq!(
            erase_addresses("550 5.1.1 <marie.dupont@exemple.fr>: Recipient address rejected"),
            "550 5.1.1 <[address erased]>: Recipient address rejected"
        );
        // `=` may be part of a local part, so a log-style "to=" goes too: erring on the side of
        // erasing more is the point.
        assert_eq!(
            erase_addresses("to=jean+x@orange.fr, relay=mx.orange.fr"),
            "[address erased], relay=mx.orange.fr"
        );
        assert_eq!(erase_addresses("élodie@exemple.fr"), "[address erased]");
        assert_eq!(
            erase_addresses("no address here @ all"),
            "no address here @ all"
        );
        assert_eq!(erase_addresses(""), "");
    }

    #[test]
    fn a_hashed_ref_is_stable_and_not_the_ref() {
        let hashed = hashed_ref("P0001");
        assert_eq!(hashed, hashed_ref("P0001"));
        assert!(hashed.starts_with("sha256:") && !hashed.contains("P0001"));
    }
}
