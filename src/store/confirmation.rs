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
/// Counted and ranked in SQL (window functions), so that a campaign of 340,000 letters brings
/// back a row per provider, not one per letter.
pub async fn providers(
    conn: &mut SqliteConnection,
    limit: usize,
) -> anyhow::Result<Vec<ProviderWait>> {
    let rows = sqlx::query(
        "WITH waits AS (
           SELECT coalesce(email_domain, '') AS domain,
                  max(delivered_at - sent_at, 0) AS waited
           FROM deliveries
           WHERE state = ?2 AND delivered_at IS NOT NULL AND sent_at IS NOT NULL
         ),
         ranked AS (
           SELECT domain, waited,
                  row_number() OVER (PARTITION BY domain ORDER BY waited) AS rank,
                  count(*) OVER (PARTITION BY domain) AS n
           FROM waits
         ),
         accepted AS (
           SELECT domain, max(n) AS accepted,
                  max(CASE WHEN rank = (50 * n + 99) / 100 THEN waited END) AS median_ms,
                  max(CASE WHEN rank = (95 * n + 99) / 100 THEN waited END) AS p95_ms
           FROM ranked GROUP BY domain
         ),
         waiting AS (
           SELECT coalesce(email_domain, '') AS domain, count(*) AS still_at_relay
           FROM deliveries WHERE state = ?1 AND notify_requested = 1 GROUP BY 1
         )
         SELECT d.domain AS domain, coalesce(w.still_at_relay, 0) AS still_at_relay,
                coalesce(a.accepted, 0) AS accepted, a.median_ms AS median_ms,
                a.p95_ms AS p95_ms
         FROM (SELECT domain FROM waiting UNION SELECT domain FROM accepted) AS d
         LEFT JOIN waiting AS w ON w.domain = d.domain
         LEFT JOIN accepted AS a ON a.domain = d.domain
         ORDER BY 2 DESC, 3 DESC, 1
         LIMIT ?3",
    )
    .bind(DeliveryState::Sent.as_str())
    .bind(DeliveryState::Delivered.as_str())
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let seconds = |ms: Option<i64>| ms.map(|ms| ms as f64 / 1000.0);
    rows.iter()
        .map(|row| {
            Ok(ProviderWait {
                domain: row.try_get("domain")?,
                still_at_relay: row.try_get("still_at_relay")?,
                accepted: row.try_get("accepted")?,
                median_seconds: seconds(row.try_get("median_ms")?),
                p95_seconds: seconds(row.try_get("p95_ms")?),
            })
        })
        .collect()
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

    #[tokio::test]
    async fn providers_are_ranked_with_nearest_rank_percentiles_in_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .unwrap();
        // orange.fr: 20 accepted after 1..=20 s, 2 still at the relay; free.fr: 1 accepted after
        // 4 s; laposte.net: 1 sent without a notification asked (not waiting, not accepted).
        let mut rows: Vec<(&str, &str, i64, Option<i64>)> = (1..=20)
            .map(|s| ("orange.fr", "delivered", 1, Some(s * 1000)))
            .collect();
        rows.extend([
            ("orange.fr", "sent", 1, None),
            ("orange.fr", "sent", 1, None),
            ("free.fr", "delivered", 1, Some(4000)),
            ("laposte.net", "sent", 0, None),
        ]);
        for (id, (domain, state, notify, waited)) in rows.iter().enumerate() {
            sqlx::query(
                "INSERT INTO people (id, ref, notice_id, language, exposed, row_hash, import_run,
                   imported_at, updated_at) VALUES (?1, ?1, ?1, 'fr', 'email', 'h', 1, 0, 0)",
            )
            .bind(id as i64)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO deliveries (person_id, state, generation_started_at, email_domain,
                   sent_at, delivered_at, notify_requested, updated_at)
                 VALUES (?, ?, 0, ?, 1000, 1000 + ?, ?, 0)",
            )
            .bind(id as i64)
            .bind(state)
            .bind(domain)
            .bind(waited)
            .bind(notify)
            .execute(&pool)
            .await
            .unwrap();
        }
        let mut conn = pool.acquire().await.unwrap();
        let providers = providers(&mut conn, 10).await.unwrap();
        assert_eq!(
            providers,
            [
                ProviderWait {
                    domain: "orange.fr".into(),
                    still_at_relay: 2,
                    accepted: 20,
                    median_seconds: Some(10.0),
                    p95_seconds: Some(19.0),
                },
                ProviderWait {
                    domain: "free.fr".into(),
                    still_at_relay: 0,
                    accepted: 1,
                    median_seconds: Some(4.0),
                    p95_seconds: Some(4.0),
                },
            ]
        );
        let totals = counts(&mut conn).await.unwrap();
        assert_eq!(
            (totals.handed_to_relay, totals.accepted_by_provider),
            (24, 21)
        );
        assert_eq!((totals.still_at_relay, totals.not_confirmed), (2, 1));
    }
}
