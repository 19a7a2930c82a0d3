//! The results of `check --dns`, one row a run: the last one is what `status` shows and what
//! `send` warns about.

use serde::Serialize;
use sqlx::SqlitePool;

/// The last check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastDnsCheck {
    pub checked_at: String,
    pub passed: bool,
    pub problems: i64,
    pub dns_failures: i64,
}

/// One run of `check --dns` as its row keeps it: the summary, and the whole report as JSON.
pub struct NewDnsCheck<'a> {
    pub checked_at: &'a str,
    pub passed: bool,
    pub problems: usize,
    pub dns_failures: usize,
    pub report_json: String,
}

pub async fn record(pool: &SqlitePool, check: &NewDnsCheck<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dns_checks (checked_at, passed, problems, dns_failures, report) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(check.checked_at)
    .bind(check.passed)
    .bind(check.problems as i64)
    .bind(check.dns_failures as i64)
    .bind(&check.report_json)
    .execute(pool)
    .await?;
    Ok(())
}

/// The last check, or None when `check --dns` never ran on this campaign.
pub async fn last(conn: &mut sqlx::SqliteConnection) -> anyhow::Result<Option<LastDnsCheck>> {
    use sqlx::Row as _;
    let row = sqlx::query(
        "SELECT checked_at, passed, problems, dns_failures FROM dns_checks ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(LastDnsCheck {
            checked_at: row.try_get("checked_at")?,
            passed: row.try_get("passed")?,
            problems: row.try_get("problems")?,
            dns_failures: row.try_get("dns_failures")?,
        })
    })
    .transpose()
}
