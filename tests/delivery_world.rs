//! `send` against a test relay that behaves like the world: greylisting, recipients that fail
//! once, a relay with a rate limit of its own, a provider that throttles one domain, a relay far
//! away, a relay that dies mid-run. Each is seen from the operator's side: the letters arrive,
//! once, in the states and events expected, at the pace expected.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::campaign::{Campaign, person, stderr};
use support::smtp_server::{Behaviour, Received, Script, SmtpServer};

fn people(n: usize, prefix: &str, domain: &str) -> Vec<String> {
    (1..=n)
        .map(|i| {
            person(
                &format!("{prefix}{i:04}"),
                &format!("{}{i}@{domain}", prefix.to_lowercase()),
            )
        })
        .collect()
}

/// A campaign pointed at the server; timeouts long enough for a loaded machine, since a
/// timeout after the message would make a letter a possible duplicate.
fn campaign_for(server: &SmtpServer, rows: &[String]) -> Campaign {
    let mut campaign = Campaign::with_people(rows);
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_SMTP_TIMEOUT", "20s");
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

/// The most letters accepted within any one second.
fn busiest_second(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn times_to(accepted: &[Received], domain: &str) -> Vec<Instant> {
    accepted
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r.ends_with(domain)))
        .map(|m| m.at)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn greylisted_and_ordinary_4xx_recipients_delay_only_themselves() {
    let mut script = Script::accept_all();
    let mut delayed = Vec::new();
    for i in (1..=300).step_by(20) {
        script = script.with(&format!("p{i}@exemple.fr"), Behaviour::greylist());
        delayed.push(format!("P{i:04}"));
    }
    for i in [7, 77] {
        script = script.with(&format!("p{i}@exemple.fr"), Behaviour::temp_fail(1));
        delayed.push(format!("P{i:04}"));
    }
    let server = SmtpServer::start(script).await;
    let campaign = campaign_for(&server, &people(300, "P", "exemple.fr"));

    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        !log.contains("slow down"),
        "a recipient's temporary failure slowed the run:\n{log}"
    );
    let states = campaign.states().await;
    for (person_ref, state) in &states {
        let expected = if delayed.contains(person_ref) {
            "deferred"
        } else {
            "sent"
        };
        assert_eq!(state, expected, "{person_ref}");
    }
    // Each waits for its own retry, with the reply that explains it.
    let reason: String = campaign.delivery("P0001", "last_error").await;
    assert!(reason.starts_with("451 4.7.1 Greylisted"), "{reason}");
    let next: i64 = campaign.delivery("P0001", "next_attempt_at").await;
    assert!(
        next > chrono_now_ms() + 30 * 60 * 1000,
        "retried an hour away"
    );
    assert_eq!(
        campaign.events("P0007").await,
        ["imported", "claimed", "deferred"]
    );

    // An hour later they are taken, once each.
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    let counts = accepted_per_recipient(&server);
    assert_eq!(counts.len(), 300);
    assert!(counts.values().all(|n| *n == 1));
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_limit_is_followed_and_everyone_is_sent_in_one_run() {
    const LIMIT: u32 = 40;
    let server = SmtpServer::start(Script::accept_all().relay_limit(LIMIT)).await;
    let campaign = campaign_for(&server, &people(240, "P", "exemple.fr"));
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the relay asks to slow down"),
        "{}",
        stderr(&output)
    );
    assert!(server.relay_limited() > 0, "the limit was reached");
    let slowed = campaign.status()["slowed"].clone();
    assert_eq!(slowed[0]["scope"], "relay", "{slowed}");
    assert_eq!(slowed[0]["name"], format!("127.0.0.1:{}", server.port()));
    // Everyone in one run, once, with one attempt each: a refusal of the relay is not the
    // person's.
    let states = campaign.states().await;
    assert!(
        states.values().all(|s| s == "sent"),
        "{:?}\n{}",
        states.values().filter(|s| *s != "sent").collect::<Vec<_>>(),
        stderr(&output)
    );
    assert!(accepted_per_recipient(&server).values().all(|n| *n == 1));
    let pool = campaign.db().await;
    let attempts: i64 = sqlx::query_scalar("SELECT sum(attempts) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, 240);
    // Followed, not collapsed under: after the first second (which the relay's own window
    // sets), the pace stays near the limit (the unit tests of `pacing` hold it to 90 %; here
    // the bound leaves room for a loaded machine).
    let mut times: Vec<Instant> = server.accepted().iter().map(|m| m.at).collect();
    times.sort();
    let first = times[0];
    let after_first_second: Vec<&Instant> = times
        .iter()
        .filter(|t| t.duration_since(first) >= Duration::from_secs(1))
        .collect();
    let span = after_first_second
        .last()
        .map(|t| t.duration_since(*after_first_second[0]))
        .unwrap_or_default()
        .as_secs_f64();
    let rate = after_first_second.len() as f64 / span.max(0.001);
    assert!(
        rate >= 0.5 * f64::from(LIMIT),
        "{rate:.1}/s for a relay that takes {LIMIT}/s"
    );
    // The relay counts in windows of its own: a sliding second may straddle two of them.
    assert!(busiest_second(&times) <= 2 * LIMIT as usize);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_that_throttles_slows_only_that_domain() {
    let server = SmtpServer::start(Script::accept_all().domain_limit("lent.fr", 5)).await;
    let mut rows = people(30, "L", "lent.fr");
    rows.extend(people(300, "V", "vite.fr"));
    let campaign = campaign_for(&server, &rows);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(log.contains("a domain asks to slow down"), "{log}");
    assert!(log.contains("lent.fr"), "{log}");
    assert!(
        !log.contains("lowering the rate of the whole run"),
        "the relay was slowed for one domain:\n{log}"
    );
    assert!(server.domain_limited() > 0);
    // status says what the run slowed, and why: that domain, not the relay.
    let slowed = campaign.status()["slowed"].clone();
    let slowed = slowed.as_array().expect("status --json has slowed");
    assert_eq!(slowed.len(), 1, "{slowed:?}");
    assert_eq!(slowed[0]["scope"], "domain");
    assert_eq!(slowed[0]["name"], "lent.fr");
    assert!(
        slowed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("450 4.7.28")
    );
    let text = support::campaign::stdout(&campaign.run(&["status"]));
    assert!(text.contains("domain lent.fr"), "{text}");
    let accepted = server.accepted();
    let fast = times_to(&accepted, "@vite.fr");
    let slow = times_to(&accepted, "@lent.fr");
    assert_eq!(fast.len(), 300, "every letter of the other domain went");
    // The other domain went at full speed, long before the slow one was done.
    let fast_done = fast.iter().max().copied().unwrap();
    let slow_done = slow.iter().max().copied().unwrap();
    assert!(fast_done < slow_done);
    assert!(
        busiest_second(&slow) <= 2 * 5,
        "the relay counts in windows of its own"
    );
    // What the slow domain did not take in this run waits for the next, none lost or doubled.
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    let counts = accepted_per_recipient(&server);
    assert_eq!(counts.len(), 330);
    assert!(counts.values().all(|n| *n == 1));
}

/// Round trips a letter on one session to a relay `latency` away (the session's own, from the
/// greeting to QUIT, counted in), as the relay saw them, and how many letters came with BDAT.
async fn run_through(latency: Duration, chunking: bool, people_count: usize) -> (f64, usize) {
    let server = SmtpServer::start(Script {
        latency,
        chunking,
        ..Script::accept_all()
    })
    .await;
    let mut campaign = campaign_for(&server, &people(people_count, "P", "exemple.fr"));
    campaign.set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "1");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    assert_eq!(server.accepted().len(), people_count);
    assert_eq!(server.connection_attempts(), 1);
    let per_letter = server.flights() as f64 / people_count as f64;
    (per_letter, server.bdat_messages())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_far_relay_costs_one_round_trip_a_letter() {
    // Without PIPELINING a letter costs four round trips (MAIL, RCPT, DATA, the message); the
    // session adds EHLO twice and QUIT once for all its letters. With PIPELINING alone, the next
    // letter's envelope goes behind each message's final dot (two round trips without that).
    let latency = Duration::from_millis(5);
    let (chunked, bdat) = run_through(latency, true, 40).await;
    assert_eq!(bdat, 40, "every letter went with BDAT");
    assert!(
        chunked <= 1.1,
        "{chunked} round trips a letter with CHUNKING"
    );
    let (pipelined, bdat) = run_through(latency, false, 40).await;
    assert_eq!(bdat, 0);
    assert!(
        pipelined <= 1.15,
        "{pipelined} round trips a letter with PIPELINING"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_on_a_session_whose_envelopes_go_ahead_concern_only_their_letter() {
    // One session, each letter's envelope behind the message before it: a refusal after the
    // final dot must not be followed by RSET (it would cancel the envelope already sent), a
    // refusal of an envelope that went ahead must be read as that letter's, and the session
    // must stay in step through all of them.
    let script = Script {
        latency: Duration::from_millis(2),
        ..Script::accept_all()
    }
    .with("p5@exemple.fr", Behaviour::reject_after_data())
    .with("p6@exemple.fr", Behaviour::greylist())
    .with("p10@exemple.fr", Behaviour::reject())
    .with("p11@exemple.fr", Behaviour::reject_after_data());
    let server = SmtpServer::start(script).await;
    let mut campaign = campaign_for(&server, &people(40, "P", "exemple.fr"));
    campaign.set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "1");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let states = campaign.states().await;
    for (person_ref, state) in &states {
        let expected = match person_ref.as_str() {
            "P0005" | "P0010" | "P0011" => "failed",
            "P0006" => "deferred",
            _ => "sent",
        };
        assert_eq!(state, expected, "{person_ref}");
    }
    let reply: String = campaign.delivery("P0005", "last_error").await;
    assert!(reply.starts_with("554 5.7.1"), "{reply}");
    let reply: String = campaign.delivery("P0010", "last_error").await;
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    let counts = accepted_per_recipient(&server);
    assert_eq!(counts.len(), 36);
    assert!(counts.values().all(|n| *n == 1));
    // Every letter after a refusal came on the same session, its message whole.
    assert_eq!(server.connection_attempts(), 1);
    for message in server.accepted() {
        let text = String::from_utf8_lossy(&message.data);
        assert!(text.contains("Subject:"), "{text}");
        assert!(!text.contains("MAIL FROM"), "an envelope inside a message");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_dies_mid_run_loses_nobody_and_doubles_nobody() {
    let server = SmtpServer::start(Script {
        latency: Duration::from_millis(5),
        ..Script::accept_all()
    })
    .await;
    let port = server.port();
    let campaign = campaign_for(&server, &people(400, "P", "exemple.fr"));
    let send = campaign.spawn(&["send"]);
    assert!(server.wait_for_accepted(50, Duration::from_secs(30)).await);
    let before = server.outage().await;
    let output = send.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    // Nothing lost: every letter is sent, or back to wait for the next run, with its
    // attempts intact; the few in flight when the relay died are flagged.
    let states = campaign.states().await;
    let sent = states.values().filter(|s| *s == "sent").count();
    assert!(
        sent >= before.len(),
        "{sent} sent, {} accepted",
        before.len()
    );
    assert!(
        states
            .values()
            .all(|s| ["sent", "pending", "deferred"].contains(&s.as_str()))
    );

    // The relay comes back (on the same port): the next run sends the rest, once each.
    let server = SmtpServer::start_on(port, Script::accept_all()).await;
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    let mut counts = accepted_per_recipient(&server);
    for message in before {
        for rcpt in message.rcpt_to {
            *counts.entry(rcpt.to_lowercase()).or_default() += 1;
        }
    }
    let pool = campaign.db().await;
    let flagged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE possible_duplicate = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let doubled = counts.values().filter(|n| **n > 1).count() as i64;
    assert!(
        doubled <= flagged,
        "{doubled} letters doubled, {flagged} flagged"
    );
    assert_eq!(counts.len(), 400);
}

/// Adds `[[relay]]` entries to the campaign's configuration: (url, weight).
fn with_relays(campaign: &Campaign, relays: &[(String, u32)]) {
    let mut text = std::fs::read_to_string(campaign.config()).unwrap();
    for (url, weight) in relays {
        text.push_str(&format!(
            "\n[[relay]]\nurl = \"{url}\"\nweight = {weight}\nmax_connections = 4\n"
        ));
    }
    std::fs::write(campaign.config(), text).unwrap();
}

/// ref → relay, from the audit export.
fn relays_in_audit(campaign: &Campaign) -> HashMap<String, String> {
    // JSONL: the machine format, the same names in every campaign language.
    let output = campaign.run(&["export", "audit", "--format", "jsonl"]);
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                row["ref"].as_str().unwrap_or_default().to_owned(),
                row["relay"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn letters_are_spread_over_relays_by_weight() {
    let heavy = SmtpServer::start(Script::accept_all()).await;
    let light = SmtpServer::start(Script::accept_all()).await;
    let campaign = campaign_for(&heavy, &people(400, "P", "exemple.fr"));
    with_relays(&campaign, &[(heavy.url(), 3), (light.url(), 1)]);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(campaign.states().await.values().all(|s| s == "sent"));
    let (h, l) = (heavy.accepted().len(), light.accepted().len());
    assert_eq!(h + l, 400);
    let share = h as f64 / 400.0;
    assert!(
        (0.6..=0.9).contains(&share),
        "{h} and {l} for weights 3 and 1"
    );
    // The audit names the relay that took each letter.
    let heavy_name = format!("127.0.0.1:{}", heavy.port());
    let relays = relays_in_audit(&campaign);
    assert_eq!(relays.values().filter(|r| **r == heavy_name).count(), h);
    let status = campaign.status();
    assert_eq!(status["relays"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_relays_one_killed_mid_run_every_letter_arrives_once() {
    let dying = SmtpServer::start(Script {
        latency: Duration::from_millis(5),
        ..Script::accept_all()
    })
    .await;
    let staying = SmtpServer::start(Script {
        latency: Duration::from_millis(5),
        ..Script::accept_all()
    })
    .await;
    let dying_name = format!("127.0.0.1:{}", dying.port());
    let staying_name = format!("127.0.0.1:{}", staying.port());
    let campaign = campaign_for(&staying, &people(500, "P", "exemple.fr"));
    with_relays(&campaign, &[(dying.url(), 1), (staying.url(), 1)]);
    let send = campaign.spawn(&["send"]);
    assert!(dying.wait_for_accepted(60, Duration::from_secs(30)).await);
    let before = dying.outage().await;
    let output = send.wait_with_output().await.unwrap();
    // The other relay took the dead one's share: the run ends normally.
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("relay down for this run"),
        "{}",
        stderr(&output)
    );

    // Letters whose message was complete when the relay died may have arrived: they are
    // deferred as possible duplicates; the next run sends them through the relay that is up.
    campaign.make_deferred_due().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let states = campaign.states().await;
    for (person_ref, state) in &states {
        if state != "sent" {
            let reason: Option<String> = campaign.delivery(person_ref, "last_error").await;
            let pool = campaign.db().await;
            let details: Vec<Option<String>> = sqlx::query_scalar(
                "SELECT e.detail FROM events e JOIN people p ON p.id = e.person_id WHERE p.ref = ? ORDER BY e.id",
            )
            .bind(person_ref)
            .fetch_all(&pool)
            .await
            .unwrap();
            panic!(
                "{person_ref} is {state}: {reason:?}, events {:?} {details:?}\n{}",
                campaign.events(person_ref).await,
                stderr(&output)
            );
        }
    }

    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in before.iter().chain(staying.accepted().iter()) {
        for rcpt in &message.rcpt_to {
            *counts.entry(rcpt.to_lowercase()).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 500, "every letter arrived");
    let pool = campaign.db().await;
    let flagged: Vec<String> = sqlx::query_scalar(
        "SELECT lower(d.email) FROM deliveries d WHERE d.possible_duplicate = 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (rcpt, n) in &counts {
        assert!(
            *n == 1 || flagged.contains(rcpt),
            "{rcpt} arrived {n} times without being flagged"
        );
    }
    // The audit names the relay that took each letter: the one that died for those it took.
    let relays = relays_in_audit(&campaign);
    assert!(
        relays
            .values()
            .all(|r| *r == dying_name || *r == staying_name)
    );
    let taken_by_dying = before
        .iter()
        .filter(|m| {
            let rcpt = m.rcpt_to[0].to_lowercase();
            counts.get(&rcpt) == Some(&1)
        })
        .count();
    let named_dying = relays.values().filter(|r| **r == dying_name).count();
    assert_eq!(named_dying, taken_by_dying);
}
