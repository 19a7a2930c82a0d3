//! The campaign database: opening it privately and migrating it (with the campaign's signing
//! key, made once, and the schema version a reader checks before trusting the file), and the
//! connection's plumbing (busy and disk-full errors, free space, times). The store's statements
//! are in [`crate::store`], a floor above: this module uses none of them.
//!
//! SQLite in WAL mode with `synchronous=NORMAL`: a crash loses at most the last transaction, never
//! corrupts, and readers (`status`) never block the sender.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rand::RngCore;
use sqlx::ConnectOptions;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Milliseconds since the Unix epoch: the unit of every time column (from the one clock).
pub fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// RFC 3339 for exports and logs; empty for a missing time.
pub fn format_time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// How long a statement waits for another process's lock before giving up with "busy":
/// `BREACHMAIL_BUSY_TIMEOUT` (a duration such as `30s`), 30 seconds by default.
pub fn busy_timeout() -> Duration {
    std::env::var("BREACHMAIL_BUSY_TIMEOUT")
        .ok()
        .and_then(|v| crate::duration::parse(&v))
        .unwrap_or(Duration::from_secs(30))
}

/// Begins a transaction that writes, as a writer (`BEGIN IMMEDIATE`): it takes SQLite's write
/// lock first, waiting up to [`busy_timeout`] for another process's turn to end. A deferred
/// transaction would read first and be refused at its first write, at once and without
/// waiting (`SQLITE_BUSY_SNAPSHOT`), whenever `send`'s writer committed in between.
pub async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Whether an error is SQLite saying that another process holds a lock (SQLITE_BUSY and
/// SQLITE_LOCKED, with their extended codes) or the pool finding no free connection: nothing
/// is wrong with the data, the command can simply be run again later.
pub fn is_busy(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::PoolTimedOut) => true,
            Some(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
            _ => false,
        })
}

/// Whether an error is SQLite saying the disk (or the file system's quota) is full.
pub fn is_disk_full(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| code & 0xff == 13),
            _ => false,
        })
}

/// The write-ahead log grows to this before SQLite folds it back into the database
/// (`wal_autocheckpoint` of 4,096 pages of 16 KiB).
pub const WAL_CEILING: u64 = 64 * 1024 * 1024;

/// What a send run needs free beside the database: room for the write-ahead log to reach its
/// ceiling twice over (a checkpoint copies pages while new ones are written), and about a
/// kilobyte of events and index per letter still to send.
pub fn free_disk_needed(letters_to_send: u64) -> u64 {
    2 * WAL_CEILING + letters_to_send * 1024
}

/// Bytes free for this user on the file system that holds `path`'s folder.
pub fn free_disk(path: &Path) -> anyhow::Result<u64> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let stats = rustix::fs::statvfs(dir)
        .with_context(|| format!("while reading the free space of {}", dir.display()))?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Opens (creating when asked) and migrates the database. A new file is made owner-only before
/// SQLite writes a byte to it; SQLite gives its -wal and -shm files the same mode.
pub async fn open(path: &Path, create: bool) -> anyhow::Result<SqlitePool> {
    open_with(path, create, 4).await
}

/// [`open`] with one connection: `send` writes from several tasks at once (claims, hand-over
/// marks, outcomes, the lease), and with one connection they queue in the pool, in order,
/// instead of meeting SQLite's lock and its busy handler, which sleeps (thousands of sleeps of
/// about 3 ms a run, measured, each holding up the letters waiting for their mark).
pub async fn open_writer(path: &Path) -> anyhow::Result<SqlitePool> {
    open_with(path, false, 1).await
}

async fn open_with(path: &Path, create: bool, connections: u32) -> anyhow::Result<SqlitePool> {
    if !path.exists() {
        if !create {
            anyhow::bail!(
                "no campaign database at {} (run `breachmail init` or `breachmail import` first)",
                path.display()
            );
        }
        crate::files::create_private(path)
            .with_context(|| format!("while creating the database {}", path.display()))?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        // 16 KiB pages for a new database (an existing one keeps its size): a third fewer
        // writes to the log than 4 KiB at import.
        .page_size(16384)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy_timeout())
        .foreign_keys(true)
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        // Checkpoint every 64 MiB of log (4,096 pages of 16 KiB) rather than every 1,000 pages:
        // a bulk import spent 6 % of its time copying the log back into the database.
        .pragma("wal_autocheckpoint", "4096")
        // Room for every row a statement returns (a claim returns 256, an outcome batch 128):
        // with sqlx's 50, SQLite's thread waited, mid-statement, for the task that reads them.
        .row_buffer_size(1024)
        // sqlx warns of statements over a second; the import's and the report's whole-table
        // queries are meant to take that long, and the warning broke the output of --quiet.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .with_context(|| format!("while opening the database {}", path.display()))?;
    MIGRATOR
        .run(&pool)
        .await
        .with_context(|| format!("while migrating the database {}", path.display()))?;
    // The secret that signs VERP tokens and derives Message-IDs: made once, with the database.
    ensure_signing_key(&pool).await?;
    Ok(pool)
}

/// Opens an existing database for reading only (`status`, `export`, `report`): nothing is
/// migrated or created, so a database on a read-only disk, or one the operator may only read,
/// can still be inspected, and a reader can never take a write lock from the sender.
pub async fn open_read_only(path: &Path) -> anyhow::Result<SqlitePool> {
    if !path.exists() {
        anyhow::bail!(
            "no campaign database at {} (run `breachmail init` or `breachmail import` first)",
            path.display()
        );
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(busy_timeout())
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory")
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .with_context(|| format!("while opening the database {} to read it", path.display()))?;
    let applied = applied_schema_version(&pool)
        .await
        .with_context(|| format!("while reading the schema version of {}", path.display()))?;
    let expected = MIGRATOR.iter().map(|m| m.version).max();
    if applied < expected {
        anyhow::bail!(
            "the database {} was made by an older breachmail: run a command that writes to it \
             (`breachmail check`) once to bring it up to date",
            path.display()
        );
    }
    Ok(pool)
}

/// Makes the secret that signs VERP tokens and derives Message-IDs, once: a database that has
/// one keeps it.
pub async fn ensure_signing_key(pool: &SqlitePool) -> anyhow::Result<()> {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    sqlx::query("INSERT OR IGNORE INTO campaign (key, value) VALUES ('signing_key', ?)")
        .bind(hex::encode(key))
        .execute(pool)
        .await
        .context("while creating the campaign's signing key")?;
    Ok(())
}

/// The newest migration applied to the file, None for a file sqlx never migrated.
pub async fn applied_schema_version(pool: &SqlitePool) -> anyhow::Result<Option<i64>> {
    let applied = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(applied)
}
