//! The supervisor's figures: the day's calls (notes, corrections, paper letter requests) per
//! adviser and one by one, the person pages each adviser opened and any refused over the cap,
//! the "not ours" look-ups per hour with an alert when they rise (the first sign of a phishing
//! wave quoting made-up notice numbers), the day's bounces, the letters still at the mail server,
//! and the letters still to go out, so that the helpline can staff for the calls they bring.

use chrono::TimeZone;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::helpline_text::{Language, Voice};
use crate::store::helpline::{self as store, AdviserDay, Counters};

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
    pub advisers: Vec<AdviserLine>,
    pub calls: Vec<CallLine>,
    pub not_ours: Vec<HourLine>,
    pub not_ours_alert: bool,
    pub bounces_hard: i64,
    pub bounces_soft: i64,
    pub being_sent: i64,
    pub deferred: i64,
}

/// One adviser's day, and whether they reached the cap of person pages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdviserLine {
    #[serde(flatten)]
    pub day: AdviserDay,
    pub over_cap: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CallLine {
    pub at: String,
    pub adviser: String,
    pub what: String,
    pub notice_id: String,
    pub person_id: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HourLine {
    pub hour: String,
    pub count: i64,
}

/// The "not ours" alert: the current hour has at least this many look-ups, and at least
/// [`ALERT_FACTOR`] times the day's hourly average before it.
pub const ALERT_AT_LEAST: i64 = 6;
pub const ALERT_FACTOR: i64 = 3;

/// Whether the last hour stands out from the day's earlier hours (`hours`: the hours of the day
/// so far, the current one last, each with its count, zero included).
pub fn not_ours_alert(hours: &[i64]) -> bool {
    let Some((current, earlier)) = hours.split_last() else {
        return false;
    };
    let average = if earlier.is_empty() {
        0
    } else {
        let (sum, hours) = (earlier.iter().sum::<i64>(), earlier.len() as i64);
        (sum + hours - 1) / hours
    };
    *current >= ALERT_AT_LEAST && *current >= ALERT_FACTOR * average
}

/// The start of today in the campaign's time zone, in milliseconds.
fn start_of_day(now_ms: i64, zone: chrono_tz::Tz) -> i64 {
    let Some(now) = chrono::DateTime::from_timestamp_millis(now_ms) else {
        return now_ms;
    };
    let date = now.with_timezone(&zone).date_naive();
    date.and_hms_opt(0, 0, 0)
        .and_then(|midnight| zone.from_local_datetime(&midnight).earliest())
        .map_or(now_ms - now_ms.rem_euclid(86_400_000), |t| {
            t.timestamp_millis()
        })
}

/// The letters still to go out. With a `[schedule]`, the days ahead and how many letters each
/// is planned to carry, so the helpline can staff for the days the batches land; without one,
/// the counts by state, all due now.
pub async fn letters_to_go(
    pool: &SqlitePool,
    config: &Config,
    voice: &Voice,
) -> anyhow::Result<Vec<PlanLine>> {
    let fr = voice.language == Language::Fr;
    if config.schedule.is_some() {
        let still_due = crate::store::ledger::count_still_to_send(pool).await?;
        let mut conn = pool.acquire().await?;
        if let Some(plan) =
            crate::plan::collect(&mut conn, config, still_due, crate::clock::now()).await?
        {
            return Ok(plan
                .days
                .iter()
                .filter(|day| day.planned > 0)
                .map(|day| PlanLine {
                    when: match (day.date == plan.today, fr) {
                        (true, true) => format!("{} (aujourd'hui)", day.date),
                        (true, false) => format!("{} (today)", day.date),
                        _ => day.date.clone(),
                    },
                    what: if fr {
                        "prévus par le calendrier d'envoi"
                    } else {
                        "planned by the schedule"
                    }
                    .to_owned(),
                    letters: day.planned as i64,
                })
                .collect());
        }
    }
    Ok(store::still_to_send(pool)
        .await?
        .into_iter()
        .map(|(state, letters)| PlanLine {
            when: if fr { "dès maintenant" } else { "due now" }.to_owned(),
            what: voice.state(state.as_str()),
            letters,
        })
        .collect())
}

pub async fn figures(pool: &SqlitePool, config: &Config, voice: &Voice) -> anyhow::Result<Figures> {
    const HOUR: i64 = 3_600_000;
    let now = crate::db::now_ms();
    let since = start_of_day(now, voice.zone);
    let counters = store::counters(pool, since).await?;
    let plan = letters_to_go(pool, config, voice).await?;
    let cap = i64::from(config.console.person_views_per_hour);
    let advisers = store::advisers_day(pool, since)
        .await?
        .into_iter()
        .map(|day| AdviserLine {
            over_cap: day.views_refused > 0 || day.views_worst_hour >= cap,
            day,
        })
        .collect();
    let calls = store::calls_of_the_day(pool, since)
        .await?
        .into_iter()
        .map(|call| CallLine {
            at: voice.time(call.at),
            adviser: call.adviser,
            what: voice.event(&call.kind),
            notice_id: call.notice_id,
            person_id: call.person_id,
        })
        .collect();
    // Every hour of the day so far, those without a look-up too.
    let counted = store::not_ours_per_hour(pool, since).await?;
    let mut hours = Vec::new();
    let mut hour = since - since.rem_euclid(HOUR);
    while hour <= now {
        let count = counted
            .iter()
            .find(|(start, _)| *start == hour)
            .map_or(0, |(_, n)| *n);
        hours.push((hour, count));
        hour += HOUR;
    }
    let counts: Vec<i64> = hours.iter().map(|(_, n)| *n).collect();
    let bounces = store::bounces_since(pool, since).await?;
    let bounced = |kind: &str| {
        bounces
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n)
    };
    let (being_sent, deferred) = store::at_the_relay(pool).await?;
    Ok(Figures {
        since: voice.time(since),
        still_to_send: plan.iter().map(|line| line.letters).sum(),
        counters,
        plan,
        advisers,
        calls,
        not_ours_alert: not_ours_alert(&counts),
        not_ours: hours
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(start, count)| HourLine {
                hour: voice.hour(*start),
                count: *count,
            })
            .collect(),
        bounces_hard: bounced("hard"),
        bounces_soft: bounced("soft"),
        being_sent,
        deferred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_starts_at_midnight_in_the_campaigns_zone() {
        // 2025-07-11T13:45:00Z
        let at = 1_752_241_500_000;
        assert_eq!(
            crate::db::format_time(Some(start_of_day(at, chrono_tz::UTC))),
            "2025-07-11T00:00:00Z"
        );
        assert_eq!(
            crate::db::format_time(Some(start_of_day(at, chrono_tz::Europe::Paris))),
            "2025-07-10T22:00:00Z"
        );
    }

    #[test]
    fn the_alert_shows_when_not_ours_look_ups_rise() {
        assert!(!not_ours_alert(&[]));
        assert!(!not_ours_alert(&[1, 0, 2, 3]), "a few now and then");
        assert!(not_ours_alert(&[1, 0, 2, 9]), "nine in the last hour");
        assert!(!not_ours_alert(&[8, 9, 7, 10]), "a steady level");
        assert!(not_ours_alert(&[6]), "six in the day's first hour");
    }
}
