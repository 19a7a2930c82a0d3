//! The campaign itself: its signing key, the runs of state-changing commands and the one-sender
//! lease. (The key is made, and the schema version checked, where the file is opened: `db`.)
//!
//! These rows say who did what and who may send; the people and their deliveries are elsewhere
//! in the store.

use anyhow::Context;
use sqlx::{Row, SqlitePool};

/// The campaign's signing key. Never printed or exported.
pub async fn signing_key(pool: &SqlitePool) -> anyhow::Result<Vec<u8>> {
    let hex_key: String =
        sqlx::query_scalar("SELECT value FROM campaign WHERE key = 'signing_key'")
            .fetch_one(pool)
            .await
            .context("while reading the campaign's signing key")?;
    hex::decode(hex_key).context("the campaign's signing key is damaged")
}

/// Starts a run of a state-changing command, for the evidence.
pub async fn start_run(pool: &SqlitePool, command: &str) -> anyhow::Result<i64> {
    let id = sqlx::query("INSERT INTO runs (command, started_at, host, pid) VALUES (?, ?, ?, ?)")
        .bind(command)
        .bind(crate::db::now_ms())
        .bind(crate::files::host_name())
        .bind(std::process::id() as i64)
        .execute(pool)
        .await
        .context("while recording the run")?
        .last_insert_rowid();
    Ok(id)
}

/// Records how a run ended.
pub async fn finish_run(
    pool: &SqlitePool,
    run_id: i64,
    outcome: &str,
    detail: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE runs SET finished_at = ?, outcome = ?, detail = ? WHERE id = ?")
        .bind(crate::db::now_ms())
        .bind(outcome)
        .bind(detail)
        .bind(run_id)
        .execute(pool)
        .await
        .context("while recording the end of the run")?;
    Ok(())
}

/// Records how a run ended when its command gave up with an error (`busy` when another process
/// held the database past the busy timeout), so no run is left without an end. The error
/// itself is what the caller reports: a failure to record it is only logged.
pub async fn finish_failed_run(pool: &SqlitePool, run_id: i64, error: &anyhow::Error) {
    let outcome = if crate::db::is_busy(error) {
        "busy"
    } else {
        "error"
    };
    if let Err(second) = finish_run(pool, run_id, outcome, &format!("{error:#}")).await {
        tracing::warn!(run = run_id, error = %format!("{second:#}"), "the end of the run could not be recorded");
    }
}

/// What a send run did, as its row keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendTotals {
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    /// Letters that may have gone twice (the relay's answer was lost).
    pub duplicates: i64,
}

/// Records a send run's totals on its row.
pub async fn record_send_totals(
    pool: &SqlitePool,
    run_id: i64,
    totals: SendTotals,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE runs SET sent = ?, deferred = ?, failed = ?, duplicates = ? WHERE id = ?")
        .bind(totals.sent)
        .bind(totals.deferred)
        .bind(totals.failed)
        .bind(totals.duplicates)
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The sender lease as its row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub run_id: i64,
    pub host: String,
    pub pid: i64,
    pub expires_at: i64,
}

/// What a run writes when it takes the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim<'a> {
    pub run_id: i64,
    pub host: &'a str,
    pub pid: i64,
    pub now: i64,
    pub expires_at: i64,
}

/// The lease's row, None when no run holds it.
pub async fn current_lease(pool: &SqlitePool) -> anyhow::Result<Option<LeaseRow>> {
    let row = sqlx::query("SELECT run_id, host, pid, expires_at FROM lease WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    row.map(|row| {
        Ok(LeaseRow {
            run_id: row.try_get("run_id")?,
            host: row.try_get("host")?,
            pid: row.try_get("pid")?,
            expires_at: row.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Takes a lease nobody holds; false when another run wrote its row first.
pub async fn take_free_lease(pool: &SqlitePool, claim: &LeaseClaim<'_>) -> anyhow::Result<bool> {
    let taken = sqlx::query(
        "INSERT INTO lease (id, run_id, host, pid, heartbeat_at, expires_at)
         VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(claim.run_id)
    .bind(claim.host)
    .bind(claim.pid)
    .bind(claim.now)
    .bind(claim.expires_at)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Takes the lease over from `old_run_id`. Conditional on the old holder, so two runs taking
/// over at once cannot both win: false for the one that lost.
pub async fn take_over_lease(
    pool: &SqlitePool,
    claim: &LeaseClaim<'_>,
    old_run_id: i64,
) -> anyhow::Result<bool> {
    let taken = sqlx::query(
        "UPDATE lease SET run_id = ?, host = ?, pid = ?, heartbeat_at = ?, expires_at = ?
         WHERE id = 1 AND run_id = ?",
    )
    .bind(claim.run_id)
    .bind(claim.host)
    .bind(claim.pid)
    .bind(claim.now)
    .bind(claim.expires_at)
    .bind(old_run_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Extends `run_id`'s lease; false when another run holds it.
pub async fn extend_lease(
    pool: &SqlitePool,
    run_id: i64,
    now: i64,
    expires_at: i64,
) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE lease SET heartbeat_at = ?, expires_at = ? WHERE id = 1 AND run_id = ?",
    )
    .bind(now)
    .bind(expires_at)
    .bind(run_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Gives the lease up, if `run_id` still holds it.
pub async fn release_lease(pool: &SqlitePool, run_id: i64) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM lease WHERE id = 1 AND run_id = ?")
        .bind(run_id)
        .execute(pool)
        .await?;
    Ok(())
}
