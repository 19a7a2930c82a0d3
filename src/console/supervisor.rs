//! The supervisor's figures: the day's calls, corrections and paper letter requests, and the
//! letters still to go out, so that the helpline can staff for the calls the next letters bring.

use sqlx::SqlitePool;

use crate::config::Config;

use crate::store::helpline::{self as store, Counters};

/// One line of the letters still to go out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanLine {
    /// When this part goes out, when known ("now" while nothing schedules the letters).
    pub when: String,
    /// What the letters are waiting for, in the operator's words.
    pub what: String,
    pub letters: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub since: String,
    pub counters: Counters,
    pub plan: Vec<PlanLine>,
    pub still_to_send: i64,
}

/// The start of today (UTC), in milliseconds.
fn start_of_day(now_ms: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    now_ms - now_ms.rem_euclid(DAY)
}

/// The letters still to go out. With a `[schedule]`, the days ahead and how many letters each
/// is planned to carry, so the helpline can staff for the days the batches land; without one,
/// the counts by state, all due now.
pub async fn letters_to_go(pool: &SqlitePool, config: &Config) -> anyhow::Result<Vec<PlanLine>> {
    if config.schedule.is_some() {
        let still_due = crate::ledger::count_still_to_send(pool).await?;
        let mut conn = pool.acquire().await?;
        if let Some(plan) =
            crate::plan::collect(&mut conn, config, still_due, crate::clock::now()).await?
        {
            return Ok(plan
                .days
                .iter()
                .filter(|day| day.planned > 0)
                .map(|day| PlanLine {
                    when: if day.date == plan.today {
                        format!("{} (today)", day.date)
                    } else {
                        day.date.clone()
                    },
                    what: "planned by the schedule".to_owned(),
                    letters: day.planned as i64,
                })
                .collect());
        }
    }
    Ok(store::still_to_send(pool)
        .await?
        .into_iter()
        .map(|(state, letters)| PlanLine {
            when: "due now".to_owned(),
            what: match state {
                crate::domain::DeliveryState::Deferred => "deferred, to be retried".to_owned(),
                crate::domain::DeliveryState::Sending => "being sent".to_owned(),
                other => other.as_str().to_owned(),
            },
            letters,
        })
        .collect())
}

pub async fn figures(pool: &SqlitePool, config: &Config) -> anyhow::Result<Figures> {
    let since = start_of_day(crate::db::now_ms());
    let counters = store::counters(pool, since).await?;
    let plan = letters_to_go(pool, config).await?;
    Ok(Figures {
        since: crate::db::format_time(Some(since)),
        still_to_send: plan.iter().map(|line| line.letters).sum(),
        counters,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_starts_at_midnight_utc() {
        // 2025-07-11T13:45:00Z
        let at = 1_752_241_500_000;
        assert_eq!(
            crate::db::format_time(Some(start_of_day(at))),
            "2025-07-11T00:00:00Z"
        );
    }
}
