//! `send` against a loopback SMTP server that fails on purpose: every outcome lands in the right
//! state with its event, retries keep their Message-ID, nobody is accepted twice, a killed run
//! loses nobody, a second sender is refused, and the rates are held.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::campaign::{Campaign, message_id_of, person, stderr, stdout};
use support::smtp_server::{Behaviour, Greeting, Script, SmtpServer, unused_port};

const WAIT: Duration = Duration::from_secs(20);

fn people(n: usize, domain: &str) -> Vec<String> {
    (1..=n)
        .map(|i| person(&format!("P{i:04}"), &format!("p{i}@{domain}")))
        .collect()
}

/// A campaign pointed at the server, unlimited rate, short timeouts, quick retries.
fn campaign_for(server: &SmtpServer, rows: &[String]) -> Campaign {
    let mut campaign = Campaign::with_people(rows);
    campaign.send_to(&server.url());
    campaign
}

fn accepted_per_recipient(server: &SmtpServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in server.accepted() {
        for rcpt in message.rcpt_to {
            *counts.entry(rcpt.to_lowercase()).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn each_outcome_lands_in_its_state_with_its_event() {
    let server = SmtpServer::start(
        Script::accept_all()
            .with("rejected@example.fr", Behaviour::reject())
            .with("later@example.fr", Behaviour::temp_fail(1))
            .with("after-data@example.fr", Behaviour::reject_after_data())
            .with("hangup@example.fr", Behaviour::HangUpAfterData { times: 1 }),
    )
    .await;
    let campaign = campaign_for(
        &server,
        &[
            person("OK", "ok@example.fr"),
            person("REJ", "rejected@example.fr"),
            person("LATER", "later@example.fr"),
            person("AFTER", "after-data@example.fr"),
            person("HANG", "hangup@example.fr"),
            "NOMAIL,,M.,Jean,Martin,fr,name;postal,".to_owned(),
        ],
    );
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let states = campaign.states().await;
    assert_eq!(states["OK"], "sent");
    assert_eq!(states["REJ"], "failed");
    assert_eq!(states["LATER"], "deferred");
    assert_eq!(states["AFTER"], "failed");
    assert_eq!(states["HANG"], "deferred");
    assert_eq!(states["NOMAIL"], "no_email");
    assert_eq!(campaign.events("OK").await, ["imported", "claimed", "sent"]);
    assert_eq!(
        campaign.events("REJ").await,
        ["imported", "claimed", "failed"]
    );
    assert_eq!(campaign.delivery::<i64>("REJ", "smtp_code").await, 550);
    let reply: String = campaign.delivery("OK", "smtp_reply").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        campaign.delivery::<i64>("HANG", "possible_duplicate").await,
        1
    );
    assert_eq!(
        campaign
            .delivery::<i64>("LATER", "possible_duplicate")
            .await,
        0
    );
    // A reply's code is kept; a hang-up has no code, and none is made up.
    assert_eq!(campaign.delivery::<i64>("LATER", "smtp_code").await, 451);
    assert_eq!(
        campaign.delivery::<Option<i64>>("HANG", "smtp_code").await,
        None
    );
    assert!(
        stdout(&output).contains("1 sent, 2 deferred, 2 failed"),
        "{}",
        stdout(&output)
    );

    // The next run retries the deferred ones, with the same Message-ID, and reaches them.
    let later_id: String = campaign.delivery("LATER", "message_id").await;
    let hang_id: String = campaign.delivery("HANG", "message_id").await;
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let states = campaign.states().await;
    assert_eq!(states["LATER"], "sent");
    assert_eq!(states["HANG"], "sent");
    let ids: HashMap<String, String> = server
        .accepted()
        .iter()
        .map(|m| {
            (
                m.rcpt_to[0].to_lowercase(),
                message_id_of(&m.data).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(ids["later@example.fr"], later_id);
    assert_eq!(ids["hangup@example.fr"], hang_id);
    assert_eq!(
        campaign.events("LATER").await,
        ["imported", "claimed", "deferred", "claimed", "sent"]
    );
    // Nobody accepted twice; the hang-up was received once unconfirmed, then accepted.
    assert!(accepted_per_recipient(&server).values().all(|n| *n == 1));
    assert_eq!(server.unconfirmed().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_give_up_after_the_limit() {
    let server = SmtpServer::start(Script::accept_all().with(
        "busy@example.fr",
        Behaviour::TempFailForever {
            code: 452,
            text: "4.2.2 Mailbox full".into(),
        },
    ))
    .await;
    let mut campaign = campaign_for(&server, &[person("BUSY", "busy@example.fr")]);
    campaign.set("BREACHMAIL_RETRY_MAX_ATTEMPTS", "3");
    for expected in ["deferred", "deferred", "failed", "failed"] {
        campaign.make_deferred_due().await;
        let output = campaign.run_async(&["send"]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(campaign.states().await["BUSY"], expected);
    }
    assert_eq!(campaign.delivery::<i64>("BUSY", "attempts").await, 3);
    assert_eq!(server.attempts("busy@example.fr"), 3);
    let error: String = campaign.delivery("BUSY", "last_error").await;
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("452"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_relay_costs_no_attempt_and_exits_75() {
    let mut campaign = Campaign::with_people(&people(20, "example.fr"));
    campaign
        .set(
            "BREACHMAIL_SMTP_URL",
            &format!("smtp://127.0.0.1:{}", unused_port()),
        )
        .set("BREACHMAIL_SMTP_TIMEOUT", "2s");
    let output = campaign.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    let states = campaign.states().await;
    assert!(states.values().all(|s| s == "pending"), "{states:?}");
    let pool = campaign.db().await;
    let attempts: i64 = sqlx::query_scalar("SELECT sum(attempts) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_refuses_every_session_costs_no_attempt() {
    let server = SmtpServer::start(Script {
        greeting: Greeting::Refuse421,
        ..Script::default()
    })
    .await;
    let campaign = campaign_for(&server, &people(10, "example.fr"));
    let output = campaign.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "pending"));
    assert!(server.connection_attempts() >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sender_exits_75_while_the_first_runs() {
    // The first sender's only letter stalls after the data, so it stays busy.
    let server = SmtpServer::start(
        Script::accept_all().with("slow@example.fr", Behaviour::StallAfterData { times: 1 }),
    )
    .await;
    let mut campaign = campaign_for(&server, &[person("SLOW", "slow@example.fr")]);
    campaign.set("BREACHMAIL_SMTP_TIMEOUT", "30s");
    let mut first = campaign.spawn(&["send"]);
    assert!(
        server.wait_for_unconfirmed(1, WAIT).await,
        "the first sender never sent"
    );
    let second = campaign.run_async(&["send"]).await;
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another send is running"),
        "{}",
        stderr(&second)
    );
    first.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_way_loses_nobody() {
    let server = SmtpServer::start(
        Script::accept_all().with("p7@example.fr", Behaviour::StallAfterData { times: 1 }),
    )
    .await;
    let mut campaign = campaign_for(&server, &people(40, "example.fr"));
    campaign
        .set("BREACHMAIL_SMTP_TIMEOUT", "60s")
        .set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "1");
    let mut first = campaign.spawn(&["send"]);
    // One connection: the run is stuck on p7 with p1..p6 accepted.
    assert!(server.wait_for_unconfirmed(1, WAIT).await);
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before = campaign.states().await;
    assert!(before.values().any(|s| s == "sending"), "{before:?}");

    campaign.set("BREACHMAIL_SMTP_TIMEOUT", "5s");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let states = campaign.states().await;
    assert!(states.values().all(|s| s == "sent"), "{states:?}");
    // Everyone was reached. A letter accepted twice is one whose outcome the killed run had not
    // recorded yet: each of those, and the one caught mid-message, is flagged.
    let counts = accepted_per_recipient(&server);
    assert_eq!(counts.len(), 40);
    for (rcpt, n) in &counts {
        let number: usize = rcpt
            .trim_start_matches('p')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let flagged: i64 = campaign
            .delivery(&format!("P{number:04}"), "possible_duplicate")
            .await;
        assert!(
            *n == 1 || flagged == 1,
            "{rcpt} accepted {n} times, not flagged"
        );
    }
    assert_eq!(
        campaign
            .delivery::<i64>("P0007", "possible_duplicate")
            .await,
        1
    );
    assert!(
        campaign
            .events("P0007")
            .await
            .contains(&"recovered".to_owned())
    );
    let flagged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE possible_duplicate = 1")
            .fetch_one(&campaign.db().await)
            .await
            .unwrap();
    assert!(flagged >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_max_duration_drain_cleanly() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = campaign_for(&server, &people(200, "example.fr"));
    campaign.set("BREACHMAIL_RATE_PER_SECOND", "20");
    let child = campaign.spawn(&["send"]);
    assert!(server.wait_for_accepted(5, WAIT).await);
    let pid = child.id().expect("child pid") as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe_kill(pid, 15);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("stopped: signal"),
        "{}",
        stdout(&output)
    );
    let states = campaign.states().await;
    assert!(!states.values().any(|s| s == "sending"), "{states:?}");
    let sent = states.values().filter(|s| *s == "sent").count();
    assert_eq!(sent, server.accepted().len());
    assert!(sent < 200);

    let output = campaign.run_async(&["send", "--max-duration", "1s"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("--max-duration reached"),
        "{}",
        stdout(&output)
    );
    let states = campaign.states().await;
    assert!(!states.values().any(|s| s == "sending"));
    assert_eq!(
        states.values().filter(|s| *s == "sent").count(),
        server.accepted().len()
    );
    assert!(states.values().any(|s| s == "pending"));
}

fn unsafe_kill(pid: i32, signal: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_stops_after_n_messages() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let campaign = campaign_for(&server, &people(30, "example.fr"));
    let output = campaign.run_async(&["send", "--limit", "7"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 7);
    let states = campaign.states().await;
    assert_eq!(states.values().filter(|s| *s == "sent").count(), 7);
    assert_eq!(states.values().filter(|s| *s == "pending").count(), 23);
}

/// The most messages received in any one-second window.
fn busiest_second(times: &[std::time::Instant]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_and_per_domain_rates_are_held() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut rows = people(40, "example.fr");
    rows.extend((1..=12).map(|i| person(&format!("O{i:03}"), &format!("o{i}@orange.fr"))));
    let mut campaign = campaign_for(&server, &rows);
    campaign
        .set("BREACHMAIL_RATE_PER_SECOND", "20")
        .set("BREACHMAIL_RATE_PER_DOMAIN", "{ \"orange.fr\" = 4 }");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 52);
    let all: Vec<_> = accepted.iter().map(|m| m.at).collect();
    let orange: Vec<_> = accepted
        .iter()
        .filter(|m| m.rcpt_to[0].ends_with("@orange.fr"))
        .map(|m| m.at)
        .collect();
    // The server stamps a letter when it has read it, which a loaded machine can delay: a
    // letter held back half a second arrives beside the next ones, and the first can arrive
    // late. So the bounds allow half a second of jitter either way (`JITTER`), and still tell a
    // held rate from none: unlimited, the 52 letters arrive within a few tens of milliseconds.
    const JITTER: f64 = 0.5;
    let most_in_a_second = |rate: f64| (rate * (1.0 + JITTER)).ceil() as usize + 1;
    assert!(
        busiest_second(&all) <= most_in_a_second(20.0),
        "global: {} in one second",
        busiest_second(&all)
    );
    assert!(
        busiest_second(&orange) <= most_in_a_second(4.0),
        "orange.fr: {} in one second",
        busiest_second(&orange)
    );
    let span = |t: &[std::time::Instant]| {
        t.iter()
            .max()
            .unwrap()
            .duration_since(*t.iter().min().unwrap())
            .as_secs_f64()
    };
    // 12 letters at 4 per second take at least 11/4 s; 52 at 20 per second at least 51/20 s.
    let least = |letters: usize, rate: f64| (letters - 1) as f64 / rate - JITTER;
    assert!(
        span(&orange) >= least(orange.len(), 4.0),
        "orange.fr: {} letters in {:.2} s",
        orange.len(),
        span(&orange)
    );
    assert!(
        span(&all) >= least(all.len(), 20.0),
        "global: {} letters in {:.2} s",
        all.len(),
        span(&all)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_relays_slow_the_run_and_everyone_is_reached() {
    let server = SmtpServer::start(
        Script::accept_all().with("p3@example.fr", Behaviour::Throttle { times: 1 }),
    )
    .await;
    let campaign = campaign_for(&server, &people(10, "example.fr"));
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("slow down"), "{}", stderr(&output));
    // The 421 concerned the relay, not the person: the letter waited for the lower pace and
    // went in the same run, without an attempt counted for the refusal.
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    assert_eq!(server.attempts("p3@example.fr"), 2);
    assert_eq!(campaign.delivery::<i64>("P0003", "attempts").await, 1);
    assert_eq!(
        campaign.events("P0003").await,
        ["imported", "claimed", "sent"]
    );
    assert!(accepted_per_recipient(&server).values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_bounded_by_max_connections() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = campaign_for(&server, &people(60, "example.fr"));
    campaign.set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "3");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 60);
    assert!(server.max_concurrent_connections() <= 3);
    assert!(server.max_concurrent_connections() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_in_with_the_password_from_the_environment_and_never_prints_it() {
    let secret = "s3cr3t-Pa55-word";
    let server = SmtpServer::start(Script {
        require_auth: Some(("relay-user".into(), secret.into())),
        // The login only travels inside TLS (the loopback relay's certificate is taken
        // unverified).
        advertise_starttls: true,
        ..Script::default()
    })
    .await;
    let mut campaign = campaign_for(&server, &people(3, "example.fr"));
    campaign
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", secret);
    let output = campaign.run_async(&["-vv", "send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 3);
    assert!(!stderr(&output).contains(secret) && !stdout(&output).contains(secret));

    // A wrong password: the relay refuses the login, which no retry can mend: a configuration
    // error (exit 2), and nothing is counted against anyone.
    let mut wrong = campaign_for(&server, &people(2, "example.fr"));
    wrong
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", "wrong-password");
    let output = wrong.run_async(&["-vv", "send"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("refused the login"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("wrong-password"));
    assert!(wrong.states().await.values().all(|s| s == "pending"));

    // A username without a password is a configuration error.
    let mut missing = campaign_for(&server, &people(1, "example.fr"));
    missing.set("BREACHMAIL_SMTP_USERNAME", "relay-user");
    let output = missing.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("BREACHMAIL_SMTP_PASSWORD"));
}
