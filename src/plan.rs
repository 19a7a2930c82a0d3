//! The schedule applied to this campaign's database: the gate `send` passes before it claims
//! anything, and the plan `status` and the report show (days ahead, what each took, the end
//! date against `incident.notify_by`, and what would meet it).
//!
//! The arithmetic is `schedule`'s (pure); this module only reads the counts it needs.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{SqliteConnection, SqlitePool};

use crate::config::Config;
use crate::schedule::{CappedDomain, PlanInput, Schedule};
use crate::store::schedule as days;

/// Whether `send` may claim now.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Go; stop claiming when the window closes (None: no window ends it).
    Open { closes: Option<DateTime<Utc>> },
    /// Nothing may leave now: why, and when letters may next leave.
    Closed(String),
}

/// A time as the operator reads it: the campaign's local time and zone.
pub fn local_time(schedule: &Schedule, at: DateTime<Utc>) -> String {
    at.with_timezone(&schedule.timezone)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// Open inside a window with some of the day's allowance left; closed otherwise, saying when
/// the next window opens.
pub async fn gate(config: &Config, pool: &SqlitePool, now: DateTime<Utc>) -> anyhow::Result<Gate> {
    let Some(schedule) = &config.schedule else {
        return Ok(Gate::Open { closes: None });
    };
    let Some(closes) = schedule.window_closes(now) else {
        let next = schedule.next_opening(now).map_or_else(
            || "no window opens in the next two years: check schedule.windows and schedule.skip_dates".to_owned(),
            |at| format!("the next window opens {}", local_time(schedule, at)),
        );
        return Ok(Gate::Closed(format!("outside the sending windows; {next}")));
    };
    let mut conn = pool.acquire().await?;
    let today = schedule.local_date(now);
    let (allowance, used) = allowance_used(&mut conn, schedule, today).await?;
    if let Some(allowance) = allowance
        && used >= allowance as i64
    {
        let (_, tomorrow) = schedule.day_bounds(today);
        let next = schedule
            .next_opening(tomorrow)
            .map_or_else(String::new, |at| {
                format!("; the next letters go {}", local_time(schedule, at))
            });
        return Ok(Gate::Closed(format!(
            "today's allowance of {allowance} letters is used up ({used} counted on {today}){next}"
        )));
    }
    Ok(Gate::Open {
        closes: Some(closes),
    })
}

/// The day's allowance (None: unlimited) and what has been counted against it.
async fn allowance_used(
    conn: &mut SqliteConnection,
    schedule: &Schedule,
    day: NaiveDate,
) -> anyhow::Result<(Option<u64>, i64)> {
    let day = day.to_string();
    let sending_day = days::sending_days_before(&mut *conn, &day).await?;
    let used = days::claimed_on(&mut *conn, &day)
        .await?
        .get(days::ALL_DOMAINS)
        .copied()
        .unwrap_or(0);
    Ok((schedule.allowance(sending_day as usize), used))
}

/// One day of the plan as `status --json` shows it under `plan.days`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDayReport {
    /// YYYY-MM-DD in the campaign's time zone.
    pub date: String,
    /// The day's allowance (warm-up or cap); null: no cap.
    pub allowance: Option<u64>,
    /// Letters counted on that day (handed to the relay, or on their way).
    pub sent: u64,
    /// Letters still planned for that day (0 for past days).
    pub planned: u64,
}

/// The campaign over days: `status --json` under `plan`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub timezone: String,
    pub today: String,
    pub window_open_now: bool,
    /// When letters may next leave (now, inside a window), in local time.
    pub next_window: Option<String>,
    pub still_due: u64,
    /// Past days with letters, then the days ahead.
    pub days: Vec<PlanDayReport>,
    /// The day the last letter should go; null when nothing is left or the plan does not end.
    pub end_date: Option<String>,
    /// Letters the plan cannot place in the next two years.
    pub unplaced: u64,
    pub notify_by: Option<String>,
    pub meets_notify_by: Option<bool>,
    pub late_by_days: Option<i64>,
    /// The smallest `schedule.daily_cap` that would meet `incident.notify_by`.
    pub daily_cap_that_meets: Option<u64>,
    /// The end date with the same hours on every day of the week, holidays included.
    pub end_date_every_day: Option<String>,
}

/// The plan from `now`, on a connection inside the caller's read transaction.
pub async fn collect(
    conn: &mut SqliteConnection,
    config: &Config,
    still_due: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<PlanReport>> {
    let Some(schedule) = &config.schedule else {
        return Ok(None);
    };
    let today = schedule.local_date(now);
    let today_text = today.to_string();
    let sending_days_before = days::sending_days_before(&mut *conn, &today_text).await?;
    let counted_today = days::claimed_on(&mut *conn, &today_text).await?;
    let domains: Vec<&str> = schedule
        .per_domain_daily_cap
        .keys()
        .map(String::as_str)
        .collect();
    let due_by_domain = days::still_due_to(&mut *conn, &domains).await?;
    let capped_domains = schedule
        .per_domain_daily_cap
        .iter()
        .map(|(domain, cap)| CappedDomain {
            cap: *cap,
            still_due: due_by_domain.get(domain).copied().unwrap_or(0).max(0) as u64,
            sent_today: counted_today.get(domain).copied().unwrap_or(0).max(0) as u64,
        })
        .collect();
    let input = PlanInput {
        now,
        still_due,
        sent_today: counted_today
            .get(days::ALL_DOMAINS)
            .copied()
            .unwrap_or(0)
            .max(0) as u64,
        sending_days_before_today: sending_days_before.max(0) as usize,
        per_second: config.rate.per_second,
        capped_domains,
    };
    let notify_by = config
        .incident
        .get("notify_by")
        .and_then(|v| v.as_str())
        .and_then(|text| NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok());
    let verdict = schedule.plan_against(&input, notify_by);
    let mut report_days: Vec<PlanDayReport> = Vec::new();
    let mut sending_day = 0;
    for past in days::day_totals(&mut *conn).await? {
        if past.day >= today_text || past.claimed <= 0 {
            continue;
        }
        report_days.push(PlanDayReport {
            date: past.day,
            allowance: schedule.allowance(sending_day),
            sent: past.claimed as u64,
            planned: 0,
        });
        sending_day += 1;
    }
    report_days.extend(verdict.plan.days.iter().map(|day| PlanDayReport {
        date: day.date.to_string(),
        allowance: day.allowance,
        sent: day.sent,
        planned: day.planned,
    }));
    Ok(Some(PlanReport {
        timezone: schedule.timezone.name().to_owned(),
        today: today_text,
        window_open_now: schedule.window_closes(now).is_some(),
        next_window: schedule
            .next_opening(now)
            .map(|at| local_time(schedule, at)),
        still_due,
        days: report_days,
        end_date: verdict.plan.end.map(|d| d.to_string()),
        unplaced: verdict.plan.left_beyond_horizon,
        notify_by: verdict.notify_by.map(|d| d.to_string()),
        meets_notify_by: verdict.meets,
        late_by_days: verdict.late_by_days,
        daily_cap_that_meets: verdict.daily_cap_that_meets,
        end_date_every_day: verdict.every_day_end.map(|d| d.to_string()),
    }))
}

/// The plan for a person at a terminal, as `status` prints it.
pub fn render_text(plan: &PlanReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "plan ({})    {} still due; window {}; next letters {}",
        plan.timezone,
        plan.still_due,
        if plan.window_open_now {
            "open"
        } else {
            "closed"
        },
        plan.next_window
            .as_deref()
            .unwrap_or("never (no window ahead)")
    ));
    line(format!(
        "  {:<12} {:>10} {:>10} {:>10}",
        "day", "allowance", "sent", "planned"
    ));
    const SHOWN: usize = 14;
    let hidden = plan.days.len().saturating_sub(SHOWN);
    for day in plan.days.iter().take(SHOWN) {
        line(format!(
            "  {:<12} {:>10} {:>10} {:>10}{}",
            day.date,
            day.allowance
                .map_or_else(|| "no cap".to_owned(), |a| a.to_string()),
            day.sent,
            day.planned,
            if day.date == plan.today {
                "  today"
            } else {
                ""
            }
        ));
    }
    if hidden > 0 {
        line(format!(
            "  ... {hidden} more days (status --json lists them all)"
        ));
    }
    match (&plan.end_date, plan.unplaced) {
        (_, unplaced) if unplaced > 0 => line(format!(
            "  end          never: {unplaced} letters find no window in the next two years"
        )),
        (Some(end), _) => line(format!(
            "  end          {end} (the last letters go that day)"
        )),
        (None, _) => line("  end          nothing left to send".to_owned()),
    }
    if let (Some(deadline), Some(meets)) = (&plan.notify_by, plan.meets_notify_by) {
        if meets {
            line(format!("  notify_by    {deadline}: met"));
        } else {
            let late = plan
                .late_by_days
                .map_or_else(String::new, |d| format!(" by {d} days"));
            line(format!("  notify_by    {deadline}: MISSED{late}"));
            match plan.daily_cap_that_meets {
                Some(cap) => line(format!(
                    "               a schedule.daily_cap of {cap} would meet it"
                )),
                None => line(
                    "               no daily cap alone meets it: the windows or the warm-up hold it back"
                        .to_owned(),
                ),
            }
            if let Some(end) = &plan.end_date_every_day {
                let verdict = if end.as_str() <= deadline.as_str() {
                    "meets it"
                } else {
                    "still late"
                };
                line(format!(
                    "               the same hours every day of the week would end on {end} ({verdict})"
                ));
            }
        }
    }
    out
}
