//! `status`: where the campaign stands: counts by state (always adding up to the number of
//! people), the last send run, and the reconciliation that proves nobody was lost.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{Row, SqlitePool};

use crate::Exit;
use crate::config::Config;
use crate::db::format_time;
use crate::domain::DeliveryState;

#[derive(Debug, Serialize)]
pub struct Status {
    pub total: i64,
    pub states: BTreeMap<&'static str, i64>,
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Serialize)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: Option<String>,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
}

/// Counts every delivery by state and checks them against the people: a person without a
/// delivery, or a count that does not add up, is an error, never silence.
pub async fn collect(pool: &SqlitePool) -> anyhow::Result<Status> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(pool)
        .await?;
    let mut states: BTreeMap<&'static str, i64> =
        DeliveryState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for row in sqlx::query("SELECT state, count(*) FROM deliveries GROUP BY state")
        .fetch_all(pool)
        .await?
    {
        let state: DeliveryState = row.get::<String, _>(0).parse()?;
        states.insert(state.as_str(), row.get(1));
    }
    let counted: i64 = states.values().sum();
    if counted != total {
        anyhow::bail!(
            "reconciliation failed: {total} people but {counted} deliveries; the database is inconsistent, do not send before it is understood"
        );
    }
    let last_run = sqlx::query(
        "SELECT started_at, finished_at, sent, deferred, failed FROM runs WHERE command = 'send'
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?
    .map(|row| LastRun {
        started_at: format_time(row.get(0)),
        finished_at: row.get::<Option<i64>, _>(1).map(|t| format_time(Some(t))),
        sent: row.get(2),
        deferred: row.get(3),
        failed: row.get(4),
    });
    Ok(Status {
        total,
        states,
        last_run,
    })
}

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let status = collect(&pool).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_table(&status));
    }
    Ok(Exit::Ok)
}

pub fn render_table(status: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!("people        {:>10}\n", status.total));
    for state in DeliveryState::ALL {
        let count = status.states.get(state.as_str()).copied().unwrap_or(0);
        let share = if status.total > 0 {
            100.0 * count as f64 / status.total as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "  {:<11} {:>10}  {:>5.1} %\n",
            state.as_str(),
            count,
            share
        ));
    }
    match &status.last_run {
        Some(run) => out.push_str(&format!(
            "last send     {} to {}: {} sent, {} deferred, {} failed\n",
            run.started_at,
            run.finished_at
                .as_deref()
                .unwrap_or("(running or interrupted)"),
            run.sent,
            run.deferred,
            run.failed
        )),
        None => out.push_str("last send     never\n"),
    }
    out
}
