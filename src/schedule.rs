//! The campaign planned over days: sending windows, the day's allowance (daily cap and warm-up),
//! and the plan of how many letters go on which day until everyone is told.
//!
//! Pure: every function takes the time and the counts it needs and returns an answer, so a week
//! of windows, caps and daylight-saving changes is tested without a clock or a database. Days are
//! the campaign's own (`schedule.timezone`): a day starts at local midnight, whatever its length
//! on the night the clocks change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead the plan and the next opening look: two years is beyond any notification
/// campaign; a plan that does not end by then says so.
const HORIZON_DAYS: i64 = 731;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `[schedule]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub timezone: Tz,
    /// When letters may leave; empty: at any time.
    pub windows: Vec<Window>,
    /// Days without any letter (public holidays), in the campaign's time zone.
    pub skip_dates: BTreeSet<NaiveDate>,
    /// At most this many letters a day, for the helpline.
    pub daily_cap: Option<u32>,
    /// The allowance of the first sending days, for a new sending domain; then `daily_cap`.
    pub warm_up: Vec<u32>,
    /// At most this many letters a day to these recipient domains (lowercased).
    pub per_domain_daily_cap: BTreeMap<String, u32>,
    /// Who goes first; import order breaks ties (and is the whole order when empty).
    pub order: Vec<OrderKey>,
}

/// One sending window: days of the week and a time of day, e.g. `mon-fri 08:30-18:00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after local midnight; `end` may be 1440 (`24:00`).
    start: u32,
    end: u32,
}

/// What decides who goes first, before import order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKey {
    /// The import file's `priority` column: 1 before 2; no number: after everyone with one.
    Priority,
    /// People whose identifier and postal address leaked, then one of the two, then the rest.
    Exposure,
}

impl OrderKey {
    pub fn parse(text: &str) -> Result<OrderKey, String> {
        match text.trim() {
            "priority" => Ok(OrderKey::Priority),
            "exposure" => Ok(OrderKey::Exposure),
            _ => Err(
                "\"priority\" (the import file's column) or \"exposure\" (identifier and postal address first)"
                    .to_owned(),
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderKey::Priority => "priority",
            OrderKey::Exposure => "exposure",
        }
    }
}

impl Window {
    /// `mon-fri 08:30-18:00`, `sat 09:00-12:00`, `mon,wed,fri 14:00-16:00`, `sun 00:00-24:00`.
    /// The error says what would be right.
    pub fn parse(text: &str) -> Result<Window, String> {
        let expected = "\"DAYS HH:MM-HH:MM\" such as \"mon-fri 08:30-18:00\"";
        let (days_text, times_text) = text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| expected.to_owned())?;
        let mut days = [false; 7];
        for part in days_text.split(',') {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (day_index(a)?, day_index(b)?),
                None => (day_index(part)?, day_index(part)?),
            };
            // A range may wrap around the week (`sat-mon`).
            let mut day = first;
            loop {
                days[day] = true;
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        let (start, end) = times_text
            .trim()
            .split_once('-')
            .ok_or_else(|| expected.to_owned())?;
        let (start, end) = (minute_of_day(start)?, minute_of_day(end)?);
        if start >= end {
            return Err(format!(
                "the window must end after it starts (from 00:00 to 24:00), not {}",
                times_text.trim()
            ));
        }
        if start == 1440 {
            return Err("a window cannot start at 24:00".to_owned());
        }
        Ok(Window { days, start, end })
    }

    /// The same hours on every day of the week: what "more windows" would look like.
    fn every_day(&self) -> Window {
        Window {
            days: [true; 7],
            ..self.clone()
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = DAY_NAMES
            .iter()
            .zip(self.days)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        write!(
            f,
            "{} {:02}:{:02}-{:02}:{:02}",
            days.join(","),
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

fn day_index(text: &str) -> Result<usize, String> {
    let name = text.trim().to_ascii_lowercase();
    DAY_NAMES.iter().position(|d| name == *d).ok_or_else(|| {
        format!(
            "{:?} is not a day: use mon, tue, wed, thu, fri, sat, sun",
            text.trim()
        )
    })
}

fn minute_of_day(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a time of day: use HH:MM from 00:00 to 24:00");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u32 = hours.parse().map_err(|_| bad())?;
    let minutes: u32 = minutes.parse().map_err(|_| bad())?;
    if hours > 24 || minutes > 59 || (hours == 24 && minutes > 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// The first instant at or after a local time; a time skipped by a daylight-saving change
/// (02:30 the night clocks go forward) becomes the first minute that exists after it.
fn local_to_utc(timezone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut candidate = local;
    for _ in 0..=180 {
        if let Some(at) = timezone.from_local_datetime(&candidate).earliest() {
            return at.with_timezone(&Utc);
        }
        candidate += Duration::minutes(1);
    }
    // No zone skips three hours; fall back to reading the time as UTC rather than fail.
    local.and_utc()
}

impl Schedule {
    /// The campaign's date at this instant.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    /// Local midnight to the next local midnight, in UTC (23 or 25 hours on a change night).
    pub fn day_bounds(&self, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = local_to_utc(self.timezone, date.and_time(chrono::NaiveTime::MIN));
        let next = date.succ_opt().unwrap_or(date);
        let end = local_to_utc(self.timezone, next.and_time(chrono::NaiveTime::MIN));
        (start, end)
    }

    /// The day's open intervals in UTC, sorted and merged; none on a skipped date.
    fn open_intervals(&self, date: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        if self.skip_dates.contains(&date) {
            return Vec::new();
        }
        if self.windows.is_empty() {
            return vec![self.day_bounds(date)];
        }
        let weekday = date.weekday().num_days_from_monday() as usize;
        let at_minute = |minute: u32| {
            let midnight = date.and_time(chrono::NaiveTime::MIN);
            local_to_utc(
                self.timezone,
                midnight + Duration::minutes(i64::from(minute)),
            )
        };
        let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = self
            .windows
            .iter()
            .filter(|w| w.days[weekday])
            .map(|w| (at_minute(w.start), at_minute(w.end)))
            .filter(|(start, end)| start < end)
            .collect();
        intervals.sort();
        let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (start, end) in intervals {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// When the window open at `at` closes (following windows that touch it, across midnight),
    /// or None when no window is open.
    pub fn window_closes(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut date = self.local_date(at);
        let (_, mut end) = self
            .open_intervals(date)
            .into_iter()
            .find(|(start, end)| *start <= at && at < *end)?;
        // A window to 24:00 followed by one from 00:00 is one stretch.
        for _ in 0..HORIZON_DAYS {
            date = date.succ_opt()?;
            match self.open_intervals(date).first() {
                Some((start, next_end)) if *start <= end => end = *next_end,
                _ => break,
            }
        }
        Some(end)
    }

    /// When letters may next leave: `at` itself inside a window, else the next opening.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut date = self.local_date(at);
        for _ in 0..HORIZON_DAYS {
            for (start, end) in self.open_intervals(date) {
                if at < end {
                    return Some(start.max(at));
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// How many letters may leave on the campaign's `sending_day`-th day with letters (0 for
    /// the first): the warm-up ramp, never above the daily cap; None: no limit.
    pub fn allowance(&self, sending_day: usize) -> Option<u64> {
        let cap = self.daily_cap.map(u64::from);
        match self.warm_up.get(sending_day) {
            Some(&ramp) => Some(cap.map_or(u64::from(ramp), |cap| cap.min(u64::from(ramp)))),
            None => cap,
        }
    }

    /// Seconds of open window on `date` after `from`.
    fn open_seconds(&self, date: NaiveDate, from: DateTime<Utc>) -> i64 {
        self.open_intervals(date)
            .into_iter()
            .map(|(start, end)| (end - start.max(from)).num_seconds().max(0))
            .sum()
    }

    /// The plan from `now` on: how many letters each day takes until none is left.
    pub fn plan(&self, input: &PlanInput) -> Plan {
        let mut days = Vec::new();
        let mut due = input.still_due;
        let mut domains: Vec<(u64, u64)> = input
            .capped_domains
            .iter()
            .map(|d| (u64::from(d.cap), d.still_due.min(input.still_due)))
            .collect();
        let mut sending_day = input.sending_days_before_today;
        let mut date = self.local_date(input.now);
        let today = date;
        for _ in 0..HORIZON_DAYS {
            // Today is listed when letters went today, even with none left.
            if due == 0 && (date != today || input.sent_today == 0) {
                break;
            }
            let (sent_already, domain_sent) = if date == today {
                (
                    input.sent_today,
                    input.capped_domains.iter().map(|d| d.sent_today).collect(),
                )
            } else {
                (0, vec![0; domains.len()])
            };
            let (day_start, _) = self.day_bounds(date);
            let seconds = self.open_seconds(date, input.now.max(day_start));
            let allowance = self.allowance(sending_day);
            let mut capacity = allowance.map_or(u64::MAX, |a| a.saturating_sub(sent_already));
            if input.per_second > 0 {
                capacity = capacity.min(u64::from(input.per_second) * seconds.max(0) as u64);
            } else if seconds == 0 {
                capacity = 0;
            }
            // What the domain caps let through today, and everyone else.
            let capped_due: u64 = domains.iter().map(|(_, due)| due).sum();
            let uncapped = due.saturating_sub(capped_due);
            let room: Vec<u64> = domains
                .iter()
                .zip(&domain_sent)
                .map(|((cap, due), sent)| cap.saturating_sub(*sent).min(*due))
                .collect();
            let available = uncapped + room.iter().sum::<u64>();
            let planned = capacity.min(available);
            if planned > 0 {
                // The claim's order decides who goes; the plan shares the day in proportion,
                // and what rounding leaves over goes to whoever still has room.
                let mut shares: Vec<u64> = room
                    .iter()
                    .map(|r| (u128::from(*r) * u128::from(planned) / u128::from(available)) as u64)
                    .collect();
                let mut left = planned - shares.iter().sum::<u64>();
                left -= left.min(uncapped);
                for (share, room) in shares.iter_mut().zip(&room) {
                    let more = left.min(room - *share);
                    *share += more;
                    left -= more;
                }
                for ((_, domain_due), share) in domains.iter_mut().zip(&shares) {
                    *domain_due -= share;
                }
                due -= planned;
            }
            if planned > 0 || sent_already > 0 {
                days.push(PlanDay {
                    date,
                    allowance,
                    sent: sent_already,
                    planned,
                });
                sending_day += 1;
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        let end = if due == 0 {
            days.iter().rev().find(|d| d.planned > 0).map(|d| d.date)
        } else {
            None
        };
        Plan {
            days,
            end,
            left_beyond_horizon: due,
        }
    }

    /// `plan`, and when it ends after `notify_by`: by how much, and what would meet it.
    pub fn plan_against(&self, input: &PlanInput, notify_by: Option<NaiveDate>) -> Verdict {
        let plan = self.plan(input);
        let Some(deadline) = notify_by else {
            return Verdict {
                plan,
                notify_by: None,
                meets: None,
                late_by_days: None,
                daily_cap_that_meets: None,
                every_day_end: None,
            };
        };
        let meets = plan.end.is_some_and(|end| end <= deadline)
            || (input.still_due == 0 && plan.left_beyond_horizon == 0);
        if meets {
            return Verdict {
                plan,
                notify_by: Some(deadline),
                meets: Some(true),
                late_by_days: None,
                daily_cap_that_meets: None,
                every_day_end: None,
            };
        }
        let late_by_days = plan.end.map(|end| (end - deadline).num_days());
        let ends_by =
            |schedule: &Schedule| schedule.plan(input).end.is_some_and(|end| end <= deadline);
        // The smallest daily cap that meets the deadline, the warm-up kept as it is.
        let daily_cap_that_meets = {
            let mut larger = self.clone();
            larger.daily_cap = None;
            if ends_by(&larger) {
                let (mut low, mut high) = (1_u64, input.still_due.max(1));
                while low < high {
                    let middle = low + (high - low) / 2;
                    larger.daily_cap = Some(u32::try_from(middle).unwrap_or(u32::MAX));
                    if ends_by(&larger) {
                        high = middle;
                    } else {
                        low = middle + 1;
                    }
                }
                Some(low)
            } else {
                None
            }
        };
        let every_day_end = (!self.windows.is_empty()).then(|| {
            let mut wider = self.clone();
            wider.windows = self.windows.iter().map(Window::every_day).collect();
            wider.skip_dates.clear();
            wider.plan(input).end
        });
        Verdict {
            plan,
            notify_by: Some(deadline),
            meets: Some(false),
            late_by_days,
            daily_cap_that_meets,
            every_day_end: every_day_end.flatten(),
        }
    }
}

/// What the plan starts from: the time, what is left, and what today has already taken.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub now: DateTime<Utc>,
    /// Letters still to send (pending, deferred, sending).
    pub still_due: u64,
    /// Letters counted against today's allowance so far.
    pub sent_today: u64,
    /// Earlier days on which letters left: where today sits on the warm-up ramp.
    pub sending_days_before_today: usize,
    /// `rate.per_second` (0: unlimited): a window can hold only so many.
    pub per_second: u32,
    pub capped_domains: Vec<CappedDomain>,
}

/// A recipient domain with a daily cap, and its share of what is left.
#[derive(Debug, Clone)]
pub struct CappedDomain {
    pub cap: u32,
    pub still_due: u64,
    pub sent_today: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanDay {
    pub date: NaiveDate,
    /// The day's allowance (warm-up or cap); None: unlimited.
    pub allowance: Option<u64>,
    /// Already counted on this day (today only).
    pub sent: u64,
    /// Still to go on this day.
    pub planned: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The days with letters, today first.
    pub days: Vec<PlanDay>,
    /// The day the last letter goes; None when nothing is left or the plan does not end.
    pub end: Option<NaiveDate>,
    /// Letters the plan cannot place within two years (no window, or a cap that never opens).
    pub left_beyond_horizon: u64,
}

/// The plan against `incident.notify_by`.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub plan: Plan,
    pub notify_by: Option<NaiveDate>,
    pub meets: Option<bool>,
    pub late_by_days: Option<i64>,
    /// The smallest `daily_cap` that would end by the deadline (None: no cap can, the
    /// windows or the warm-up are what hold it back).
    pub daily_cap_that_meets: Option<u64>,
    /// When the plan would end with the same hours on every day of the week, holidays included.
    pub every_day_end: Option<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris(windows: &[&str]) -> Schedule {
        Schedule {
            timezone: chrono_tz::Europe::Paris,
            windows: windows.iter().map(|w| Window::parse(w).unwrap()).collect(),
            skip_dates: BTreeSet::new(),
            daily_cap: None,
            warm_up: Vec::new(),
            per_domain_daily_cap: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn input(now: &str, still_due: u64) -> PlanInput {
        PlanInput {
            now: at(now),
            still_due,
            sent_today: 0,
            sending_days_before_today: 0,
            per_second: 0,
            capped_domains: Vec::new(),
        }
    }

    #[test]
    fn windows_read_as_operators_write_them() {
        let window = Window::parse("mon-fri 08:30-18:00").unwrap();
        assert_eq!(window.to_string(), "mon,tue,wed,thu,fri 08:30-18:00");
        assert_eq!(
            Window::parse("sat-mon 00:00-24:00").unwrap().to_string(),
            "mon,sat,sun 00:00-24:00"
        );
        assert_eq!(
            Window::parse("mon,WED 14:00-16:00").unwrap().to_string(),
            "mon,wed 14:00-16:00"
        );
        for (bad, says) in [
            ("mon-fri 25:00-26:00", "\"25:00\" is not a time"),
            ("mun 08:00-09:00", "\"mun\" is not a day"),
            ("mon 18:00-08:00", "must end after it starts"),
            ("mon 8:00-9:00", "is not a time"),
            ("mon", "DAYS HH:MM-HH:MM"),
            ("mon 08:60-09:00", "is not a time"),
        ] {
            let error = Window::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?} gave {error:?}");
        }
    }

    #[test]
    fn inside_and_outside_the_windows() {
        let schedule = paris(&["mon-fri 08:30-18:00", "sat 09:00-12:00"]);
        // Friday 17:00 in Paris (UTC+1 in winter): open until 18:00.
        assert_eq!(
            schedule.window_closes(at("2026-01-16T16:00:00Z")),
            Some(at("2026-01-16T17:00:00Z"))
        );
        // Friday 18:30: closed; Saturday opens at 09:00.
        let friday_evening = at("2026-01-16T17:30:00Z");
        assert_eq!(schedule.window_closes(friday_evening), None);
        assert_eq!(
            schedule.next_opening(friday_evening),
            Some(at("2026-01-17T08:00:00Z"))
        );
        // Saturday 12:30: the next is Monday 08:30.
        assert_eq!(
            schedule.next_opening(at("2026-01-17T11:30:00Z")),
            Some(at("2026-01-19T07:30:00Z"))
        );
        // A public holiday on Monday moves it to Tuesday.
        let mut holiday = schedule.clone();
        holiday.skip_dates.insert(date("2026-01-19"));
        assert_eq!(
            holiday.next_opening(at("2026-01-17T11:30:00Z")),
            Some(at("2026-01-20T07:30:00Z"))
        );
    }

    #[test]
    fn windows_follow_the_clocks_across_daylight_saving() {
        let schedule = paris(&["mon-sun 08:00-20:00"]);
        // Saturday 28 March 2026 is UTC+1, Sunday 29 March is UTC+2.
        assert_eq!(
            schedule.next_opening(at("2026-03-28T19:30:00Z")),
            Some(at("2026-03-29T06:00:00Z"))
        );
        let (start, end) = schedule.day_bounds(date("2026-03-29"));
        assert_eq!(
            (end - start).num_hours(),
            23,
            "the day the clocks go forward"
        );
        let (start, end) = schedule.day_bounds(date("2026-10-25"));
        assert_eq!((end - start).num_hours(), 25, "the day they go back");
        // 23:30 UTC on the 28th is already the 29th in Paris.
        assert_eq!(
            schedule.local_date(at("2026-03-28T23:30:00Z")),
            date("2026-03-29")
        );
        // A window starting in the skipped hour opens at the first minute that exists.
        let night = paris(&["sun 02:30-04:00"]);
        assert_eq!(
            night.next_opening(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn a_window_to_midnight_joins_the_next_day() {
        let schedule = paris(&["fri 20:00-24:00", "sat 00:00-02:00"]);
        assert_eq!(
            schedule.window_closes(at("2026-01-16T21:00:00Z")),
            Some(at("2026-01-17T01:00:00Z"))
        );
    }

    #[test]
    fn the_warm_up_ramp_then_the_cap() {
        let mut schedule = paris(&[]);
        schedule.warm_up = vec![5000, 10_000, 20_000, 40_000];
        schedule.daily_cap = Some(15_000);
        let days: Vec<Option<u64>> = (0..6).map(|d| schedule.allowance(d)).collect();
        assert_eq!(
            days,
            [5000, 10_000, 15_000, 15_000, 15_000, 15_000].map(Some)
        );
        schedule.daily_cap = None;
        assert_eq!(schedule.allowance(3), Some(40_000));
        assert_eq!(schedule.allowance(4), None);
    }

    #[test]
    fn the_plan_fills_each_sending_day_up_to_its_allowance() {
        let mut schedule = paris(&["mon-fri 08:30-18:00"]);
        schedule.warm_up = vec![100, 200];
        schedule.daily_cap = Some(300);
        // Thursday 15 January 2026, 10:00 in Paris; 50 already went today.
        let mut start = input("2026-01-15T09:00:00Z", 1000);
        start.sent_today = 50;
        let plan = schedule.plan(&start);
        let days: Vec<(String, u64, u64)> = plan
            .days
            .iter()
            .map(|d| (d.date.to_string(), d.sent, d.planned))
            .collect();
        assert_eq!(
            days,
            [
                ("2026-01-15", 50, 50),
                ("2026-01-16", 0, 200),
                ("2026-01-19", 0, 300),
                ("2026-01-20", 0, 300),
                ("2026-01-21", 0, 150),
            ]
            .map(|(d, s, p)| (d.to_owned(), s, p))
        );
        assert_eq!(plan.end, Some(date("2026-01-21")));
    }

    #[test]
    fn the_rate_limits_what_a_window_holds() {
        let schedule = paris(&["mon-fri 09:00-10:00"]);
        let mut start = input("2026-01-15T07:00:00Z", 10_000);
        start.per_second = 1;
        let plan = schedule.plan(&start);
        assert!(plan.days.iter().all(|d| d.planned <= 3600));
        assert_eq!(plan.days[0].planned, 3600);
        assert_eq!(
            plan.end,
            Some(date("2026-01-19")),
            "Thursday, Friday, then Monday"
        );
    }

    #[test]
    fn a_domain_cap_stretches_the_plan() {
        let mut schedule = paris(&[]);
        schedule.daily_cap = Some(1000);
        let mut start = input("2026-01-15T00:30:00Z", 1000);
        start.capped_domains = vec![CappedDomain {
            cap: 100,
            still_due: 500,
            sent_today: 0,
        }];
        let plan = schedule.plan(&start);
        assert_eq!(
            plan.days[0].planned, 600,
            "everyone else, and 100 of the domain"
        );
        assert_eq!(plan.end, Some(date("2026-01-19")));
    }

    #[test]
    fn a_late_plan_says_by_how_much_and_what_would_meet_the_deadline() {
        let mut schedule = paris(&["mon-fri 08:30-18:00"]);
        schedule.daily_cap = Some(100);
        let start = input("2026-01-12T07:00:00Z", 1000);
        // Ten weekdays from Monday 12th: ends Friday 23rd; the deadline is Friday 16th.
        let verdict = schedule.plan_against(&start, Some(date("2026-01-16")));
        assert_eq!(verdict.plan.end, Some(date("2026-01-23")));
        assert_eq!(verdict.meets, Some(false));
        assert_eq!(verdict.late_by_days, Some(7));
        assert_eq!(verdict.daily_cap_that_meets, Some(200));
        // Seven days a week: Mon 12th to Wed 21st.
        assert_eq!(verdict.every_day_end, Some(date("2026-01-21")));
        let on_time = schedule.plan_against(&start, Some(date("2026-01-30")));
        assert_eq!(on_time.meets, Some(true));
    }

    #[test]
    fn nothing_left_is_an_empty_plan() {
        let schedule = paris(&[]);
        let plan = schedule.plan(&input("2026-01-15T09:00:00Z", 0));
        assert!(plan.days.is_empty());
        assert_eq!(plan.end, None);
    }
}
