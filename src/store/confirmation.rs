//! Past the relay: what the relays' delivery status notifications told, for `status`, the audit
//! and the report. Three levels: handed to the relay (`sent`, `delivered`), accepted by the
//! person's provider (`delivered`), bounced. A `sent` letter whose relay was asked for a
//! notification and has not answered yet is still at the relay (a provider greylists or
//! throttles, or the notification is on its way); one sent without asking never will be known.

use sqlx::{Row, SqliteConnection};

use crate::domain::DeliveryState;

/// The campaign's letters past the relay, in one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confirmation {
    /// Handed to a relay and not bounced: `sent` and `delivered`.
    pub handed_to_relay: i64,
    /// Accepted by the person's provider, as the relay reported (`delivered`).
    pub accepted_by_provider: i64,
    /// Bounced, whether before or after the provider's acceptance.
    pub bounced: i64,
    /// `sent` with a notification asked for and none yet: still at the relay.
    pub still_at_relay: i64,
    /// `sent` through a relay that was not asked (it does not offer DSN, or the setting is
    /// off): nothing more will be known of them.
    pub not_confirmed: i64,
}

/// Counts the three levels, and splits `sent` into waiting and never to be confirmed.
pub async fn counts(conn: &mut SqliteConnection) -> anyhow::Result<Confirmation> {
    let row = sqlx::query(
        "SELECT coalesce(sum(state = ?1), 0) AS sent,
                coalesce(sum(state = ?2), 0) AS delivered,
                coalesce(sum(state = ?3), 0) AS bounced,
                coalesce(sum(state = ?1 AND notify_requested = 1), 0) AS waiting
         FROM deliveries",
    )
    .bind(DeliveryState::Sent.as_str())
    .bind(DeliveryState::Delivered.as_str())
    .bind(DeliveryState::Bounced.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let (sent, delivered, bounced, waiting): (i64, i64, i64, i64) = (
        row.try_get("sent")?,
        row.try_get("delivered")?,
        row.try_get("bounced")?,
        row.try_get("waiting")?,
    );
    Ok(Confirmation {
        handed_to_relay: sent + delivered,
        accepted_by_provider: delivered,
        bounced,
        still_at_relay: waiting,
        not_confirmed: sent - waiting,
    })
}

/// One provider (recipient domain): how many of its letters wait at the relay and how long
/// the accepted ones sat there, from hand-over to the provider's acceptance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderWait {
    pub domain: String,
    pub still_at_relay: i64,
    pub accepted: i64,
    /// Seconds from hand-over to acceptance: the median and the 95th percentile (nearest
    /// rank); None before the first acceptance.
    pub median_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// The `limit` providers with the most letters still at the relay, then the most accepted.
pub async fn providers(
    conn: &mut SqliteConnection,
    limit: usize,
) -> anyhow::Result<Vec<ProviderWait>> {
    let rows = sqlx::query(
        "SELECT email_domain AS domain, state, notify_requested,
                delivered_at - sent_at AS waited_ms
         FROM deliveries
         WHERE (state = ?1 AND notify_requested = 1) OR state = ?2
         ORDER BY email_domain",
    )
    .bind(DeliveryState::Sent.as_str())
    .bind(DeliveryState::Delivered.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut by_domain: std::collections::BTreeMap<String, (i64, Vec<i64>)> = Default::default();
    for row in &rows {
        let domain: Option<String> = row.try_get("domain")?;
        let entry = by_domain.entry(domain.unwrap_or_default()).or_default();
        let state: String = row.try_get("state")?;
        if state == DeliveryState::Sent.as_str() {
            entry.0 += 1;
        } else if let Some(waited) = row.try_get::<Option<i64>, _>("waited_ms")? {
            // A clock that went back gives no negative wait.
            entry.1.push(waited.max(0));
        }
    }
    let mut providers: Vec<ProviderWait> = by_domain
        .into_iter()
        .map(|(domain, (still_at_relay, mut waits))| {
            waits.sort_unstable();
            ProviderWait {
                domain,
                still_at_relay,
                accepted: waits.len() as i64,
                median_seconds: percentile(&waits, 50),
                p95_seconds: percentile(&waits, 95),
            }
        })
        .collect();
    providers.sort_by(|a, b| {
        b.still_at_relay
            .cmp(&a.still_at_relay)
            .then(b.accepted.cmp(&a.accepted))
            .then_with(|| a.domain.cmp(&b.domain))
    });
    providers.truncate(limit);
    Ok(providers)
}

/// The nearest-rank percentile of sorted milliseconds, in seconds.
fn percentile(sorted_ms: &[i64], percent: usize) -> Option<f64> {
    if sorted_ms.is_empty() {
        return None;
    }
    let rank = (percent * sorted_ms.len()).div_ceil(100).max(1);
    Some(sorted_ms[rank - 1] as f64 / 1000.0)
}

/// One person's letter past the relay, for the audit, `lookup` and the console.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PersonConfirmation {
    /// The relay was asked to report this letter's fate.
    pub notify_requested: bool,
    pub delivered_at: Option<i64>,
    /// The provider's server (Remote-MTA).
    pub delivered_by: Option<String>,
    /// The provider's reply.
    pub delivered_reply: Option<String>,
}

impl PersonConfirmation {
    /// From a row with the columns `notify_requested`, `delivered_at`, `delivered_by` and
    /// `delivered_reply` (NULL for a person without a delivery).
    pub fn from_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<PersonConfirmation> {
        Ok(PersonConfirmation {
            notify_requested: row
                .try_get::<Option<i64>, _>("notify_requested")?
                .unwrap_or(0)
                != 0,
            delivered_at: row.try_get("delivered_at")?,
            delivered_by: row.try_get("delivered_by")?,
            delivered_reply: row.try_get("delivered_reply")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_seconds() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[4000], 95), Some(4.0));
        let waits: Vec<i64> = (1..=20).map(|s| s * 1000).collect();
        assert_eq!(percentile(&waits, 50), Some(10.0));
        assert_eq!(percentile(&waits, 95), Some(19.0));
    }
}
