//! Which relay took each letter: written as the relays answer, read by `status`, the audit and
//! the report. Rows are read by column name.

use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::verp::DeliveryRef;

/// Notes, for each (person, generation), the relay that answered for its letter (`host:port`),
/// fenced like the outcome it goes with: only on a delivery `run_id` still holds in `sending`.
/// Called in the outcomes' transaction before them (recording an outcome ends the claim), so
/// a run whose deliveries were taken over writes no relay over the new owner's.
pub async fn record_relays(
    conn: &mut SqliteConnection,
    run_id: i64,
    records: &[(DeliveryRef, String)],
) -> anyhow::Result<()> {
    // A few relays and, nearly always, one generation: one statement per relay and generation
    // and chunk, not one per letter.
    let mut groups: std::collections::BTreeMap<(&str, i64), Vec<i64>> = Default::default();
    for (delivery, relay) in records {
        groups
            .entry((relay.as_str(), delivery.generation))
            .or_default()
            .push(delivery.person_id);
    }
    for ((relay, generation), people) in groups {
        for chunk in people.chunks(500) {
            let sql = format!(
                "UPDATE deliveries SET relay = ?
                 WHERE generation = ? AND claimed_by = ? AND state = ? AND person_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut query = sqlx::query(&sql)
                .bind(relay)
                .bind(generation)
                .bind(run_id)
                .bind(crate::domain::DeliveryState::Sending.as_str());
            for person_id in chunk {
                query = query.bind(person_id);
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// What one relay carried, by state of the letters it answered for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayCounts {
    pub relay: String,
    /// Handed over: `sent` and `delivered`.
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub bounced: i64,
}

/// The relays that answered for letters, busiest first.
pub async fn counts_by_relay(conn: &mut SqliteConnection) -> anyhow::Result<Vec<RelayCounts>> {
    use crate::domain::DeliveryState;
    let sql = format!(
        "SELECT relay,
                sum(state IN ({handed_over})) AS sent, sum(state = ?) AS deferred,
                sum(state = ?) AS failed, sum(state = ?) AS bounced
         FROM deliveries WHERE relay IS NOT NULL GROUP BY relay ORDER BY count(*) DESC, relay",
        handed_over = crate::domain::sql_states(DeliveryState::HANDED_OVER)
    );
    let rows = sqlx::query(&sql)
        .bind(DeliveryState::Deferred.as_str())
        .bind(DeliveryState::Failed.as_str())
        .bind(DeliveryState::Bounced.as_str())
        .fetch_all(&mut *conn)
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

/// One scope a send run slowed down.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Slowed {
    /// `relay` or `domain`.
    pub scope: String,
    /// The relay's `host:port`, or the domain.
    pub name: String,
    pub decreases: i64,
    /// Letters per second at the end of the run; None when back to the full rate.
    pub final_rate: Option<f64>,
    pub reason: Option<String>,
}

/// Keeps what a run slowed and why, for `status`.
pub async fn record_pacing(
    pool: &SqlitePool,
    run_id: i64,
    slowed: &[Slowed],
) -> anyhow::Result<()> {
    let mut tx = crate::db::begin_write(pool).await?;
    for row in slowed {
        sqlx::query(
            "INSERT OR REPLACE INTO run_pacing (run_id, scope, name, decreases, final_rate, reason)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(row.scope.as_str())
        .bind(row.name.as_str())
        .bind(row.decreases)
        .bind(row.final_rate)
        .bind(row.reason.as_deref())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Keeps, for each relay a run opened a session with, whether it offered delivery status
/// notifications and whether they were asked for.
pub async fn record_notifications(
    pool: &SqlitePool,
    run_id: i64,
    relays: &[(String, crate::domain::RelayNotifications)],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for (relay, seen) in relays {
        sqlx::query(
            "INSERT OR REPLACE INTO run_relay_notifications (run_id, relay, offered, requested)
             VALUES (?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(relay.as_str())
        .bind(seen.offered)
        .bind(seen.requested)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What the latest run that used each relay learnt of its delivery status notifications.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayConfirms {
    pub relay: String,
    /// Its EHLO listed DSN.
    pub offered: bool,
    /// Notifications were asked for: its letters can become `delivered`.
    pub requested: bool,
}

/// Per relay, the latest run's record; relays that confirm nothing first.
pub async fn notifications_by_relay(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<RelayConfirms>> {
    let rows = sqlx::query(
        "SELECT relay, offered, requested FROM run_relay_notifications AS n
         WHERE run_id = (SELECT max(run_id) FROM run_relay_notifications WHERE relay = n.relay)
         ORDER BY requested, relay",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RelayConfirms {
                relay: row.try_get("relay")?,
                offered: row.try_get("offered")?,
                requested: row.try_get("requested")?,
            })
        })
        .collect()
}

/// What the last finished send run slowed, relays first, then domains by how often.
pub async fn slowed_in_last_run(conn: &mut SqliteConnection) -> anyhow::Result<Vec<Slowed>> {
    let rows = sqlx::query(
        "SELECT scope, name, decreases, final_rate, reason FROM run_pacing
         WHERE run_id = (SELECT max(id) FROM runs WHERE command = 'send' AND finished_at IS NOT NULL)
         ORDER BY scope = 'domain', decreases DESC, name",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Slowed {
                scope: row.try_get("scope")?,
                name: row.try_get("name")?,
                decreases: row.try_get("decreases")?,
                final_rate: row.try_get("final_rate")?,
                reason: row.try_get("reason")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_and_pacing_are_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .unwrap();
        let run = crate::store::campaign::start_run(&pool, "send")
            .await
            .unwrap();
        let slowed = vec![Slowed {
            scope: "domain".into(),
            name: "lent.fr".into(),
            decreases: 3,
            final_rate: Some(4.5),
            reason: Some("450 4.7.28 slow down (at RCPT TO)".into()),
        }];
        record_pacing(&pool, run, &slowed).await.unwrap();
        crate::store::campaign::finish_run(&pool, run, "nothing more due", "")
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(slowed_in_last_run(&mut conn).await.unwrap(), slowed);
        assert!(counts_by_relay(&mut conn).await.unwrap().is_empty());
    }
}
