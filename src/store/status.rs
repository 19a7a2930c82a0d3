//! What `status` reads, all of it counts: people, deliveries by state, the send runs, the
//! reasons letters failed, bounced or wait for a retry, the busiest domains, and what the
//! estimated finish needs (the backlog of a domain, the last letter sent, the last retry).
//!
//! Every read takes the caller's connection, so `status` and `export audit` can make them all
//! inside one read transaction and get one consistent snapshot. Rows are read by column name;
//! states are bound or spliced from [`DeliveryState`], never written as text here.

use sqlx::{Row, SqliteConnection};

use crate::domain::{DeliveryState, sql_states};

/// How many people the campaign holds.
pub async fn people_count(conn: &mut SqliteConnection) -> anyhow::Result<i64> {
    let row = sqlx::query("SELECT count(*) AS people FROM people")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("people")?)
}

/// How many deliveries are in each state, for the states that have any.
pub async fn deliveries_by_state(
    conn: &mut SqliteConnection,
) -> anyhow::Result<Vec<(DeliveryState, i64)>> {
    let rows = sqlx::query("SELECT state, count(*) AS deliveries FROM deliveries GROUP BY state")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let state: DeliveryState = row.try_get::<String, _>("state")?.parse()?;
            Ok((state, row.try_get("deliveries")?))
        })
        .collect()
}

/// One send run as the `runs` table keeps it (times in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRunRow {
    pub id: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub outcome: Option<String>,
}

/// The last `limit` send runs, newest first.
pub async fn send_runs(conn: &mut SqliteConnection, limit: i64) -> anyhow::Result<Vec<SendRunRow>> {
    let rows = sqlx::query(
        "SELECT id, started_at, finished_at, sent, deferred, failed, outcome FROM runs
         WHERE command = 'send' ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(SendRunRow {
                id: row.try_get("id")?,
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
                sent: row.try_get("sent")?,
                deferred: row.try_get("deferred")?,
                failed: row.try_get("failed")?,
                outcome: row.try_get("outcome")?,
            })
        })
        .collect()
}

/// Whose reasons a count of reasons reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasons {
    /// Failed or deferred letters: the last error first, else the relay's reply.
    Errors,
    /// Failed letters: the relay's refusal first, else the last error.
    Refusals,
    /// Bounced letters: the bounce status and diagnostic.
    Bounces,
}

/// The raw reasons of [`Reasons`] and how many letters gave each (no reason is
/// "no reason recorded", or an empty text for a bounce that said nothing).
pub async fn reason_counts(
    conn: &mut SqliteConnection,
    which: Reasons,
) -> anyhow::Result<Vec<(Option<String>, i64)>> {
    let sql = match which {
        Reasons::Errors => format!(
            "SELECT COALESCE(last_error, smtp_reply, 'no reason recorded') AS reason,
                    count(*) AS letters
             FROM deliveries WHERE state IN ({}) GROUP BY 1",
            sql_states(&[DeliveryState::Failed, DeliveryState::Deferred])
        ),
        Reasons::Refusals => format!(
            "SELECT COALESCE(smtp_reply, last_error, 'no reason recorded') AS reason,
                    count(*) AS letters
             FROM deliveries WHERE state = '{}' GROUP BY 1",
            DeliveryState::Failed.as_str()
        ),
        Reasons::Bounces => format!(
            "SELECT trim(COALESCE(bounce_status, '') || ' ' || COALESCE(bounce_diagnostic, ''))
                        AS reason,
                    count(*) AS letters
             FROM deliveries WHERE state = '{}' GROUP BY 1",
            DeliveryState::Bounced.as_str()
        ),
    };
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("reason")?, row.try_get("letters")?)))
        .collect()
}

/// A recipient domain, its people and how their letters fared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainCounts {
    pub domain: String,
    pub people: i64,
    /// Handed to a relay: `sent` and `delivered`.
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub bounced: i64,
}

/// The `limit` domains with the most people, busiest first (ties by name).
pub async fn top_domains(
    conn: &mut SqliteConnection,
    limit: i64,
) -> anyhow::Result<Vec<DomainCounts>> {
    let sql = format!(
        "SELECT email_domain AS domain, count(*) AS people,
                sum(state IN ({handed_over})) AS sent, sum(state = ?) AS deferred,
                sum(state = ?) AS failed, sum(state = ?) AS bounced
         FROM deliveries WHERE email_domain IS NOT NULL AND email_domain <> ''
         GROUP BY email_domain ORDER BY count(*) DESC, email_domain LIMIT ?",
        handed_over = sql_states(DeliveryState::HANDED_OVER)
    );
    let rows = sqlx::query(&sql)
        .bind(DeliveryState::Deferred.as_str())
        .bind(DeliveryState::Failed.as_str())
        .bind(DeliveryState::Bounced.as_str())
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(DomainCounts {
                domain: row.try_get("domain")?,
                people: row.try_get("people")?,
                sent: row.try_get("sent")?,
                deferred: row.try_get("deferred")?,
                failed: row.try_get("failed")?,
                bounced: row.try_get("bounced")?,
            })
        })
        .collect()
}

/// When the last letter was sent (milliseconds), None before the first.
pub async fn last_sent_at(conn: &mut SqliteConnection) -> anyhow::Result<Option<i64>> {
    let row = sqlx::query("SELECT max(sent_at) AS last_sent FROM deliveries")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get("last_sent")?)
}

/// How many letters to one domain are still to send.
pub async fn still_to_send_to(conn: &mut SqliteConnection, domain: &str) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT count(*) AS backlog FROM deliveries
         WHERE state IN ({}) AND email_domain = ?",
        sql_states(DeliveryState::STILL_TO_SEND)
    );
    let row = sqlx::query(&sql).bind(domain).fetch_one(&mut *conn).await?;
    Ok(row.try_get("backlog")?)
}

/// When the last scheduled retry of a deferred letter is due (milliseconds), None without one.
pub async fn last_retry_at(conn: &mut SqliteConnection) -> anyhow::Result<Option<i64>> {
    let row =
        sqlx::query("SELECT max(next_attempt_at) AS last_retry FROM deliveries WHERE state = ?")
            .bind(DeliveryState::Deferred.as_str())
            .fetch_one(&mut *conn)
            .await?;
    Ok(row.try_get("last_retry")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_send_runs_totals_are_read_back_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(&dir.path().join("c.db"), true)
            .await
            .unwrap();
        let run = crate::store::campaign::start_run(&pool, "send")
            .await
            .unwrap();
        let totals = crate::store::campaign::SendTotals {
            sent: 7,
            deferred: 2,
            failed: 1,
            duplicates: 0,
        };
        crate::store::campaign::record_send_totals(&pool, run, totals)
            .await
            .unwrap();
        crate::store::campaign::finish_run(&pool, run, "nothing more due", "")
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let runs = send_runs(&mut conn, 5).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].id, runs[0].sent, runs[0].deferred, runs[0].failed),
            (run, 7, 2, 1)
        );
        assert_eq!(runs[0].outcome.as_deref(), Some("nothing more due"));
        assert!(runs[0].finished_at.is_some());
        assert_eq!(people_count(&mut conn).await.unwrap(), 0);
        assert!(deliveries_by_state(&mut conn).await.unwrap().is_empty());
        assert_eq!(last_sent_at(&mut conn).await.unwrap(), None);
        assert_eq!(still_to_send_to(&mut conn, "x.fr").await.unwrap(), 0);
    }
}

/// One finished import run as the `runs` table keeps it: when, and its counts (a JSON object
/// written by `import`, see `import::import_rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRunRow {
    pub id: i64,
    pub started_at: Option<i64>,
    pub detail: Option<String>,
}

/// Every finished import run, oldest first.
pub async fn import_runs(conn: &mut SqliteConnection) -> anyhow::Result<Vec<ImportRunRow>> {
    let rows = sqlx::query(
        "SELECT id, started_at, detail FROM runs
         WHERE command = 'import' AND finished_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ImportRunRow {
                id: row.try_get("id")?,
                started_at: row.try_get("started_at")?,
                detail: row.try_get("detail")?,
            })
        })
        .collect()
}
