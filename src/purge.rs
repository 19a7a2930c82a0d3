//! `purge --yes`: after the campaign, erases what identifies the people and keeps the evidence.
//!
//! The regulator may ask, for the retention period, how many people were told, when, with which
//! letters, and what became of each letter; nobody needs their names and addresses any more. So
//! the personal fields are erased (the source system's ref is replaced by its SHA-256, addresses
//! quoted in relay replies and bounce diagnostics are blotted out), while states, times, attempt
//! counts, notice ids, Message-IDs, content hashes and every event stay. It refuses while a letter
//! is still due, since a purged person can no longer be written to, and it runs in one
//! transaction followed by `VACUUM`, so the erased values do not linger in free pages.

use sha2::{Digest, Sha256};
use sqlx::{SqliteConnection, SqlitePool};

use crate::config::Config;
use crate::exit::{Exit, UsageError};
use crate::lease::Lease;
use crate::store::purge as store;

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
    let run_id = crate::store::campaign::start_run(pool, "purge").await?;
    // Holding the sender's lease keeps a `send` from starting while people are being erased.
    let lease = match Lease::acquire(pool, run_id).await? {
        Ok(lease) => lease,
        Err(holder) => {
            crate::exit::print_err(&format!(
                "purge refused: a send is running (run {} on {}, pid {}); purge after it ends",
                holder.run_id, holder.host, holder.pid
            ));
            crate::store::campaign::finish_run(pool, run_id, "refused", "a send is running")
                .await?;
            return Ok(Exit::TryLater);
        }
    };
    let outcome = purge_under_lease(pool, run_id).await;
    if let Err(error) = &outcome {
        crate::store::campaign::finish_failed_run(pool, run_id, error).await;
    }
    lease.release().await?;
    let exit = outcome?;
    if matches!(exit, Exit::Ok) {
        // The erased values still sit in free pages and in the write-ahead log until compacted.
        store::compact(pool).await?;
    }
    Ok(exit)
}

async fn purge_under_lease(pool: &SqlitePool, run_id: i64) -> anyhow::Result<Exit> {
    let mut tx = crate::db::begin_write(pool).await?;
    let due = store::count_still_to_send_by_state(&mut tx).await?;
    if !due.is_empty() {
        tx.rollback().await?;
        let counts: Vec<String> = due.iter().map(|(s, n)| format!("{n} {s}")).collect();
        crate::exit::print_err(&format!(
            "purge refused: letters are still due ({}); let `send` finish them, or give up on them, before erasing the people",
            counts.join(", ")
        ));
        let detail = serde_json::json!({ "refused": "letters still due", "due": counts });
        crate::store::campaign::finish_run(pool, run_id, "refused", &detail.to_string()).await?;
        return Ok(Exit::Failed);
    }
    let summary = erase(&mut tx).await?;
    tx.commit().await?;
    let detail = serde_json::to_string(&summary)?;
    crate::store::campaign::finish_run(pool, run_id, "purged", &detail).await?;
    crate::exit::print_out(&format!(
        "purged {} people: names, addresses, phone and identifier tails and extra columns erased, refs replaced by their SHA-256; {} replies, {} events and {} bounces scrubbed of addresses; {} call notes erased. Counts, states, times, notice ids and hashes are kept.",
        summary.people,
        summary.replies_scrubbed,
        summary.events_scrubbed,
        summary.bounces_scrubbed,
        summary.call_notes_erased
    ));
    crate::exit::print_out(
        "previews, exports and file:// outbox folders are not touched: delete them yourself",
    );
    Ok(Exit::Ok)
}

/// Everything in one transaction: a purge that stops half way changes nothing.
async fn erase(tx: &mut SqliteConnection) -> anyhow::Result<PurgeSummary> {
    let now = crate::db::now_ms();
    let mut summary = PurgeSummary::default();

    let people = store::people_to_erase(tx).await?;
    for person in &people {
        store::erase_person(tx, person.id, &hashed_ref(&person.person_ref), now).await?;
        summary.people += 1;
    }
    store::erase_delivery_addresses(tx).await?;

    for replies in store::replies_quoting_addresses(tx).await? {
        let scrub = |text: Option<String>| text.map(|text| erase_addresses(&text));
        let scrubbed = store::QuotedReplies {
            person_id: replies.person_id,
            smtp_reply: scrub(replies.smtp_reply),
            last_error: scrub(replies.last_error),
            bounce_diagnostic: scrub(replies.bounce_diagnostic),
            delivered_reply: scrub(replies.delivered_reply),
        };
        store::rewrite_replies(tx, &scrubbed).await?;
        summary.replies_scrubbed += 1;
    }

    for event in store::event_details_quoting_addresses(tx).await? {
        store::rewrite_event_detail(tx, event.event_id, &erase_addresses(&event.detail)).await?;
        summary.events_scrubbed += 1;
    }

    for bounce in store::bounces_quoting_addresses(tx).await? {
        // Hashed rather than emptied: (fingerprint, recipient) stays unique.
        let scrubbed = store::QuotedBounce {
            bounce_id: bounce.bounce_id,
            recipient: bounce.recipient.map(|r| hashed_ref(&r.to_lowercase())),
            diagnostic: bounce.diagnostic.map(|d| erase_addresses(&d)),
        };
        store::rewrite_bounce(tx, &scrubbed).await?;
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
