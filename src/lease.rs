//! The one-sender lock: a row in the database naming the run that may send, with a heartbeat.
//!
//! A second `send` finds the row held and exits 75 at once. A holder that died (its process is
//! gone on this host, or its heartbeat expired) is taken over, so a crash never blocks cron.

use std::time::Duration;

use sqlx::SqlitePool;

use crate::store::campaign::{self, LeaseClaim, LeaseRow};

/// How long a lease lives without a heartbeat: long enough for a busy database, short enough
/// that cron's next run takes over from a machine that vanished.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// For tests only, never for a campaign: `BREACHMAIL_TEST_LEASE_TTL` (a duration such as
/// `2s`) shortens the lease, so that a test can let one lapse and take it over in seconds
/// instead of minutes. Ignored unless it is shorter than [`LEASE_TTL`] and at least 1 s.
const TEST_TTL_VARIABLE: &str = "BREACHMAIL_TEST_LEASE_TTL";

/// How long a lease lives without a heartbeat: [`LEASE_TTL`], or the test-only setting.
pub fn ttl() -> Duration {
    std::env::var(TEST_TTL_VARIABLE)
        .ok()
        .and_then(|v| crate::duration::parse(&v))
        .filter(|ttl| *ttl >= Duration::from_secs(1) && *ttl < LEASE_TTL)
        .unwrap_or(LEASE_TTL)
}

/// How often the lease is renewed: [`HEARTBEAT`], an eighth of a test's shorter lease.
pub fn heartbeat_every() -> Duration {
    HEARTBEAT.min(ttl() / 8)
}

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
        let claim = LeaseClaim {
            run_id,
            host: &host,
            pid,
            now,
            expires_at: now + ttl().as_millis() as i64,
        };
        let taken = match campaign::current_lease(pool).await? {
            None => campaign::take_free_lease(pool, &claim).await?,
            Some(row) => {
                let expired = row.expires_at < now;
                let holder = Holder::from(row);
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
                campaign::take_over_lease(pool, &claim, holder.run_id).await?
            }
        };
        if taken {
            return Ok(Ok(Lease {
                pool: pool.clone(),
                run_id,
            }));
        }
        let holder = campaign::current_lease(pool).await?.ok_or_else(|| {
            anyhow::anyhow!("the sender lease changed hands while this run tried to take it")
        })?;
        Ok(Err(Holder::from(holder)))
    }

    /// Extends the lease; false when another run has taken it (then this run must stop).
    pub async fn heartbeat(&self) -> anyhow::Result<bool> {
        let now = crate::db::now_ms();
        let expires_at = now + ttl().as_millis() as i64;
        campaign::extend_lease(&self.pool, self.run_id, now, expires_at).await
    }

    pub async fn release(self) -> anyhow::Result<()> {
        campaign::release_lease(&self.pool, self.run_id).await
    }
}

impl From<LeaseRow> for Holder {
    fn from(row: LeaseRow) -> Holder {
        Holder {
            run_id: row.run_id,
            host: row.host,
            pid: row.pid,
        }
    }
}
