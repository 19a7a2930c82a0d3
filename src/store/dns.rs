//! The results of `check --dns`, one row a run: the last one is what `status` shows and what
//! `send` warns about.

use serde::Serialize;
use sqlx::SqlitePool;

use crate::dns::DnsReport;

/// The last check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastDnsCheck {
    pub checked_at: String,
    pub passed: bool,
    pub problems: i64,
    pub dns_failures: i64,
}

pub async fn record(pool: &SqlitePool, report: &DnsReport) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dns_checks (checked_at, passed, problems, dns_failures, report) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&report.checked_at)
    .bind(report.passed)
    .bind(report.problems as i64)
    .bind(report.dns_failures as i64)
    .bind(serde_json::to_string(report)?)
    .execute(pool)
    .await?;
    Ok(())
}

/// The last check, or None when `check --dns` never ran on this campaign.
pub async fn last(conn: &mut sqlx::SqliteConnection) -> anyhow::Result<Option<LastDnsCheck>> {
    let row: Option<(String, bool, i64, i64)> = sqlx::query_as(
        "SELECT checked_at, passed, problems, dns_failures FROM dns_checks ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(
        |(checked_at, passed, problems, dns_failures)| LastDnsCheck {
            checked_at,
            passed,
            problems,
            dns_failures,
        },
    ))
}
