//! The one-sender lock: a row in the database naming the run that may send, with a heartbeat.
//!
//! A second `send` finds the row held and exits 75 at once. A holder that died (its process is
//! gone on this host, or its heartbeat expired) is taken over, so a crash never blocks cron.

use std::time::Duration;

use sqlx::{Row, SqlitePool};

/// How long a lease lives without a heartbeat: long enough for a busy database, short enough
/// that cron's next run takes over from a machine that vanished.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
pub const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Lease {
    pool: SqlitePool,
    run_id: i64,
}

/// Who holds the lease, for the "already running" message.
#[derive(Debug)]
pub struct Holder {
    pub run_id: i64,
    pub host: String,
    pub pid: i64,
}

fn process_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Lease {
    /// Takes the lease for `run_id`, or says who holds it.
    pub async fn acquire(pool: &SqlitePool, run_id: i64) -> anyhow::Result<Result<Lease, Holder>> {
        let host = crate::files::host_name();
        let pid = std::process::id() as i64;
        let now = crate::db::now_ms();
        let expires = now + LEASE_TTL.as_millis() as i64;
        let current = sqlx::query("SELECT run_id, host, pid, expires_at FROM lease WHERE id = 1")
            .fetch_optional(pool)
            .await?;
        let taken = match current {
            None => sqlx::query(
                "INSERT INTO lease (id, run_id, host, pid, heartbeat_at, expires_at)
                 VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .bind(run_id)
            .bind(&host)
            .bind(pid)
            .bind(now)
            .bind(expires)
            .execute(pool)
            .await?
            .rows_affected(),
            Some(row) => {
                let holder = Holder {
                    run_id: row.get(0),
                    host: row.get(1),
                    pid: row.get(2),
                };
                let expired = row.get::<i64, _>(3) < now;
                let dead = holder.host == host && holder.pid != pid && !process_alive(holder.pid);
                if !expired && !dead {
                    return Ok(Err(holder));
                }
                tracing::warn!(
                    run = holder.run_id,
                    host = %holder.host,
                    pid = holder.pid,
                    "taking over the sender lease of a run that is gone"
                );
                // Conditional on the old holder, so two runs taking over at once cannot both win.
                sqlx::query(
                    "UPDATE lease SET run_id = ?, host = ?, pid = ?, heartbeat_at = ?, expires_at = ?
                     WHERE id = 1 AND run_id = ?",
                )
                .bind(run_id)
                .bind(&host)
                .bind(pid)
                .bind(now)
                .bind(expires)
                .bind(holder.run_id)
                .execute(pool)
                .await?
                .rows_affected()
            }
        };
        if taken == 1 {
            return Ok(Ok(Lease {
                pool: pool.clone(),
                run_id,
            }));
        }
        let row = sqlx::query("SELECT run_id, host, pid FROM lease WHERE id = 1")
            .fetch_one(pool)
            .await?;
        Ok(Err(Holder {
            run_id: row.get(0),
            host: row.get(1),
            pid: row.get(2),
        }))
    }

    /// Extends the lease; false when another run has taken it (then this run must stop).
    pub async fn heartbeat(&self) -> anyhow::Result<bool> {
        let now = crate::db::now_ms();
        let updated = sqlx::query(
            "UPDATE lease SET heartbeat_at = ?, expires_at = ? WHERE id = 1 AND run_id = ?",
        )
        .bind(now)
        .bind(now + LEASE_TTL.as_millis() as i64)
        .bind(self.run_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    pub async fn release(self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM lease WHERE id = 1 AND run_id = ?")
            .bind(self.run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
