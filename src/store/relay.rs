//! Which relay took each letter: written as the relays answer, read by `status`, the audit and
//! the report. Rows are read by column name.

use sqlx::{Row, SqlitePool};

/// Notes, for each (person, generation), the relay that answered for its letter (`host:port`).
/// A delivery that moved on to a newer generation since is left alone.
pub async fn record_relays(
    pool: &SqlitePool,
    records: &[(i64, i64, String)],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for (person_id, generation, relay) in records {
        sqlx::query("UPDATE deliveries SET relay = ? WHERE person_id = ? AND generation = ?")
            .bind(relay.as_str())
            .bind(person_id)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What one relay carried, by state of the letters it answered for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayCounts {
    pub relay: String,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub bounced: i64,
}

/// The relays that answered for letters, busiest first.
pub async fn counts_by_relay(pool: &SqlitePool) -> anyhow::Result<Vec<RelayCounts>> {
    use crate::domain::DeliveryState;
    let rows = sqlx::query(
        "SELECT relay,
                sum(state = ?) AS sent, sum(state = ?) AS deferred,
                sum(state = ?) AS failed, sum(state = ?) AS bounced
         FROM deliveries WHERE relay IS NOT NULL GROUP BY relay ORDER BY count(*) DESC, relay",
    )
    .bind(DeliveryState::Sent.as_str())
    .bind(DeliveryState::Deferred.as_str())
    .bind(DeliveryState::Failed.as_str())
    .bind(DeliveryState::Bounced.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RelayCounts {
                relay: row.try_get("relay")?,
                sent: row.try_get("sent")?,
                deferred: row.try_get("deferred")?,
                failed: row.try_get("failed")?,
                bounced: row.try_get("bounced")?,
            })
        })
        .collect()
}
