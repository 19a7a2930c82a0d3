//! `[schedule]` over days, on a fake clock (`BREACHMAIL_TEST_NOW`, read by debug builds): no
//! letter leaves outside a window; the daily cap holds across runs and across midnight in the
//! campaign's time zone, the night the clocks change included; the warm-up ramp is followed;
//! the order is followed; the plan's end date is the day the runs then finish; bad values are
//! configuration errors naming the key.

mod support;

use std::collections::BTreeMap;
use std::process::Output;

use chrono::{DateTime, Utc};
use support::campaign::{Campaign, assert_success, person, stderr, stdout};

/// A campaign of `n` people writing its letters to files, with this `[schedule]` body.
fn campaign(n: usize, schedule: &str) -> Campaign {
    let rows: Vec<String> = (1..=n)
        .map(|i| person(&format!("P{i:03}"), &format!("p{i}@example.fr")))
        .collect();
    let mut campaign = Campaign::with_people(&rows);
    with_schedule(&mut campaign, schedule);
    campaign
}

fn with_schedule(campaign: &mut Campaign, schedule: &str) {
    let mut config = std::fs::read_to_string(campaign.config()).expect("read the config");
    config.push_str("\n[schedule]\ntimezone = \"Europe/Paris\"\n");
    config.push_str(schedule);
    std::fs::write(campaign.config(), config).expect("write the config");
    campaign.set("BREACHMAIL_RATE_PER_SECOND", "0");
}

/// The command at a given instant of the fake clock.
fn at(campaign: &Campaign, when: &str, args: &[&str]) -> Output {
    campaign
        .command()
        .env("BREACHMAIL_TEST_NOW", when)
        .args(args)
        .output()
        .expect("breachmail runs")
}

/// `send` at `when`, which must succeed; its stdout.
fn send_at(campaign: &Campaign, when: &str) -> String {
    let output = at(campaign, when, &["send"]);
    assert_success(&output, &format!("send at {when}"));
    stdout(&output)
}

fn status_at(campaign: &Campaign, when: &str) -> serde_json::Value {
    let output = at(campaign, when, &["status", "--json"]);
    assert_success(&output, "status --json");
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

/// ref → sent_at, for the letters that went.
async fn sent_times(campaign: &Campaign) -> BTreeMap<String, DateTime<Utc>> {
    let pool = campaign.db().await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.ref, d.sent_at FROM people p JOIN deliveries d ON d.person_id = p.id
         WHERE d.state = 'sent'",
    )
    .fetch_all(&pool)
    .await
    .expect("read sent_at");
    pool.close().await;
    rows.into_iter()
        .map(|(r, ms)| (r, DateTime::from_timestamp_millis(ms).expect("a time")))
        .collect()
}

/// How many letters went on each day, in Paris.
async fn sent_per_local_day(campaign: &Campaign) -> BTreeMap<String, usize> {
    let mut days = BTreeMap::new();
    for at in sent_times(campaign).await.values() {
        let day = at.with_timezone(&chrono_tz::Europe::Paris).date_naive();
        *days.entry(day.to_string()).or_default() += 1;
    }
    days
}

fn sent_count(line: &str) -> usize {
    let (count, _) = line
        .strip_prefix("send: ")
        .and_then(|rest| rest.split_once(" sent"))
        .unwrap_or_else(|| panic!("no summary in {line:?}"));
    count.parse().expect("a count")
}

/// The summary line's count of letters sent; 0 when the run did not start.
fn sent_by(stdout: &str) -> usize {
    stdout
        .lines()
        .find(|l| l.contains(" sent, "))
        .map_or(0, sent_count)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_letter_leaves_outside_a_window() {
    let campaign = campaign(
        5,
        "windows = [\"mon-fri 08:30-18:00\", \"sat 09:00-12:00\"]\n",
    );
    // Saturday 17 January 2026, 12:30 in Paris: after the Saturday window.
    let out = send_at(&campaign, "2026-01-17T12:30:00+01:00");
    assert!(
        out.contains("outside the sending windows; the next window opens Mon 2026-01-19 08:30 CET"),
        "{out}"
    );
    // Friday 18:00 sharp: the window has just closed; Sunday: none at all.
    for closed in ["2026-01-16T18:00:00+01:00", "2026-01-18T10:00:00+01:00"] {
        let out = send_at(&campaign, closed);
        assert!(out.contains("nothing sent"), "{closed}: {out}");
    }
    assert!(sent_times(&campaign).await.is_empty());
    let outbox = std::fs::read_dir(campaign.path("outbox")).map_or(0, |d| d.count());
    assert_eq!(outbox, 0, "no file was written outside the windows");

    // Monday 08:30: everyone goes, and every letter's time is inside the window.
    let out = send_at(&campaign, "2026-01-19T08:30:00+01:00");
    assert_eq!(sent_by(&out), 5, "{out}");
    let opened: DateTime<Utc> = "2026-01-19T07:30:00Z".parse().unwrap();
    let closes: DateTime<Utc> = "2026-01-19T17:00:00Z".parse().unwrap();
    for (person_ref, sent_at) in sent_times(&campaign).await {
        assert!(
            opened <= sent_at && sent_at < closes,
            "{person_ref} went at {sent_at}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stops_claiming_when_its_window_closes() {
    let mut campaign = campaign(10, "windows = [\"mon-fri 08:30-18:00\"]\n");
    // One letter a second, three seconds before Friday's window closes.
    campaign.set("BREACHMAIL_RATE_PER_SECOND", "1");
    let out = send_at(&campaign, "2026-01-16T17:59:57+01:00");
    let sent = sent_by(&out);
    assert!((1..=3).contains(&sent), "{out}");
    assert!(
        out.contains("the next window opens Mon 2026-01-19 08:30 CET"),
        "{out}"
    );
    // What was handed over in the last instant may be recorded a moment later, never more.
    let closed: DateTime<Utc> = "2026-01-16T17:00:00.500Z".parse().unwrap();
    for (person_ref, sent_at) in sent_times(&campaign).await {
        assert!(sent_at < closed, "{person_ref} went at {sent_at}");
    }
    let states = campaign.states().await;
    let pending = states.values().filter(|s| *s == "pending").count();
    assert_eq!(pending, 10 - sent, "the rest wait for Monday: {states:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_holds_across_runs_and_midnight_the_night_the_clocks_change() {
    let campaign = campaign(10, "daily_cap = 3\n");
    // Saturday 28 March 2026, 23:50 in Paris (UTC+1); the clocks go forward that night.
    let saturday = "2026-03-28T23:50:00+01:00";
    assert_eq!(sent_by(&send_at(&campaign, saturday)), 3);
    let again = send_at(&campaign, "2026-03-28T23:55:00+01:00");
    assert!(
        again.contains("today's allowance of 3 letters is used up (3 counted on 2026-03-28)"),
        "{again}"
    );
    assert_eq!(sent_by(&again), 0);
    // 00:10 on Sunday is 23:10 UTC on Saturday: a new day in Paris, whatever UTC says.
    assert_eq!(sent_by(&send_at(&campaign, "2026-03-29T00:10:00+01:00")), 3);
    assert_eq!(sent_by(&send_at(&campaign, "2026-03-29T01:59:00+01:00")), 0);
    // After the change (UTC+2), still Sunday: still capped, however many runs.
    for when in ["2026-03-29T03:00:00+02:00", "2026-03-29T23:59:00+02:00"] {
        assert_eq!(sent_by(&send_at(&campaign, when)), 0, "{when}");
    }
    // Monday 00:05 local is Sunday 22:05 UTC.
    assert_eq!(sent_by(&send_at(&campaign, "2026-03-30T00:05:00+02:00")), 3);
    assert_eq!(
        sent_per_local_day(&campaign).await,
        BTreeMap::from([
            ("2026-03-28".to_owned(), 3),
            ("2026-03-29".to_owned(), 3),
            ("2026-03-30".to_owned(), 3),
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_warm_up_ramp_is_followed_then_the_cap() {
    let campaign = campaign(14, "warm_up = [2, 4]\ndaily_cap = 5\n");
    // A quiet Monday (nothing sent) does not use up a step of the ramp.
    let days = [
        ("2026-01-13T10:00:00+01:00", 2),
        ("2026-01-13T15:00:00+01:00", 0),
        ("2026-01-14T10:00:00+01:00", 4),
        ("2026-01-15T10:00:00+01:00", 5),
        ("2026-01-16T10:00:00+01:00", 3),
    ];
    for (when, expected) in days {
        assert_eq!(sent_by(&send_at(&campaign, when)), expected, "{when}");
    }
    let status = status_at(&campaign, "2026-01-16T12:00:00+01:00");
    let allowances: Vec<serde_json::Value> = status["plan"]["days"]
        .as_array()
        .expect("plan.days")
        .iter()
        .map(|d| d["allowance"].clone())
        .collect();
    assert_eq!(allowances, [2, 4, 5, 5].map(serde_json::Value::from));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_high_priority_people_all_go_before_the_first_low_priority_one() {
    let mut campaign = Campaign::new();
    let mut csv = String::from("ref,email,exposed,priority\n");
    for i in 1..=12 {
        // Import order mixes them: every third person is urgent.
        let priority = if i % 3 == 0 { "1" } else { "2" };
        csv.push_str(&format!("R{i:02},r{i}@example.fr,name;email,{priority}\n"));
    }
    let file = campaign.write_outside("people.csv", csv);
    campaign.import(&file, &[]);
    with_schedule(&mut campaign, "daily_cap = 4\norder = [\"priority\"]\n");
    assert_eq!(sent_by(&send_at(&campaign, "2026-01-13T10:00:00+01:00")), 4);
    let first_day: Vec<String> = sent_times(&campaign).await.into_keys().collect();
    assert_eq!(first_day, ["R03", "R06", "R09", "R12"]);
    assert_eq!(sent_by(&send_at(&campaign, "2026-01-14T10:00:00+01:00")), 4);
    let second_day: Vec<String> = sent_times(&campaign)
        .await
        .into_keys()
        .filter(|r| !first_day.contains(r))
        .collect();
    assert_eq!(
        second_day,
        ["R01", "R02", "R04", "R05"],
        "then import order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_ends_the_day_the_runs_finish() {
    let mut campaign = campaign(8, "windows = [\"mon-fri 08:30-18:00\"]\ndaily_cap = 3\n");
    campaign.set("BREACHMAIL_INCIDENT_NOTIFY_BY", "2026-01-23");
    let monday = status_at(&campaign, "2026-01-19T07:00:00+01:00");
    let plan = &monday["plan"];
    assert_eq!(plan["end_date"], "2026-01-21", "{plan:#}");
    assert_eq!(plan["meets_notify_by"], true);
    assert_eq!(plan["window_open_now"], false);
    assert_eq!(plan["next_window"], "Mon 2026-01-19 08:30 CET");
    let planned: Vec<(String, u64)> = plan["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| {
            (
                d["date"].as_str().expect("date").to_owned(),
                d["planned"].as_u64().expect("planned"),
            )
        })
        .collect();
    let expected = [("2026-01-19", 3), ("2026-01-20", 3), ("2026-01-21", 2)];
    assert_eq!(planned, expected.map(|(d, n)| (d.to_owned(), n)));

    // A run every hour of every day that week, as cron would.
    for day in 19..=23 {
        for hour in (0..24).step_by(3) {
            send_at(&campaign, &format!("2026-01-{day}T{hour:02}:15:00+01:00"));
        }
    }
    let happened = sent_per_local_day(&campaign).await;
    assert_eq!(
        happened,
        expected
            .map(|(d, n)| (d.to_owned(), n as usize))
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    );

    // The report draws the plan against what happened: each day's letters and allowance.
    let html = campaign.outside("report.html");
    let output = at(
        &campaign,
        "2026-01-23T19:00:00+01:00",
        &["report", "--html", html.to_str().expect("utf-8 path")],
    );
    assert_success(&output, "report");
    let page = std::fs::read_to_string(&html).expect("read the report");
    // A French campaign: the plan in French, its days written out.
    assert!(
        page.contains(
            "Le plan d&#39;envoi et ce qui s&#39;est passé, jour par jour (Europe/Paris)"
        )
    );
    for (day, sent) in expected {
        let day = breachmail::render::long_date(day, true).expect("a day");
        let row = format!(
            "<tr><td>{day}</td><td class=\"n\">3</td><td class=\"n\">{sent}</td><td class=\"n\">0</td></tr>"
        );
        assert!(page.contains(&row), "{row} missing");
    }

    // A deadline on Tuesday is missed by a day; a cap of 4 would meet it.
    let mut fresh = self::campaign(8, "windows = [\"mon-fri 08:30-18:00\"]\ndaily_cap = 3\n");
    fresh.set("BREACHMAIL_INCIDENT_NOTIFY_BY", "2026-01-20");
    let verdict = status_at(&fresh, "2026-01-19T07:00:00+01:00");
    let plan = &verdict["plan"];
    assert_eq!(plan["meets_notify_by"], false, "{plan:#}");
    assert_eq!(plan["late_by_days"], 1);
    assert_eq!(plan["daily_cap_that_meets"], 4);
    let warning = verdict["notify_by_warning"].as_str().expect("a warning");
    assert!(warning.contains("2026-01-21"), "{warning}");
    let text = at(&fresh, "2026-01-19T07:00:00+01:00", &["status"]);
    let text = stdout(&text);
    assert!(
        text.contains("notify_by    2026-01-20: MISSED by 1 days"),
        "{text}"
    );
    assert!(
        text.contains("a schedule.daily_cap of 4 would meet it"),
        "{text}"
    );
}

#[test]
fn bad_schedule_values_are_configuration_errors_naming_the_key() {
    let cases = [
        (
            "windows = [\"mon-fri 25:00-26:00\"]\n",
            "schedule.windows[0]",
        ),
        ("windows = [\"lundi 08:00-18:00\"]\n", "schedule.windows[0]"),
        ("daily_cap = 0\n", "schedule.daily_cap"),
        ("warm_up = [0]\n", "schedule.warm_up[0]"),
    ];
    let mut campaign = Campaign::new();
    let config = std::fs::read_to_string(campaign.config()).expect("read the config");
    for (line, key) in cases {
        std::fs::write(campaign.config(), &config).expect("reset the config");
        with_schedule(&mut campaign, line);
        let output = campaign.run(&["status"]);
        assert_eq!(output.status.code(), Some(2), "{line}: {}", stderr(&output));
        assert!(stderr(&output).contains(key), "{line}: {}", stderr(&output));
    }
    std::fs::write(
        campaign.config(),
        format!("{config}\n[schedule]\ntimezone = \"Europe/Lutece\"\n"),
    )
    .expect("write the config");
    let output = campaign.run(&["send"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("schedule.timezone"),
        "{}",
        stderr(&output)
    );
}
