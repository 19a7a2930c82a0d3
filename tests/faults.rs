//! `send` on an operator's bad night: a database that refuses a write, one that another process
//! holds locked, a run frozen past its lease while another takes over, a kill -9, stdout on a
//! full disk. In every case the run ends (never hangs), no outcome the relay confirmed is
//! dropped, nothing is written over another run's deliveries, and the ledger agrees with itself.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection;
use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Behaviour, Script, SmtpServer};

const WAIT: Duration = Duration::from_secs(30);

fn people(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| person(&format!("P{i:04}"), &format!("p{i}@example.fr")))
        .collect()
}

fn received_per_recipient(server: &SmtpServer) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in server.accepted().into_iter().chain(server.unconfirmed()) {
        for rcpt in message.rcpt_to {
            *counts.entry(rcpt.to_lowercase()).or_default() += 1;
        }
    }
    counts
}

async fn count(campaign: &Campaign, sql: &str) -> i64 {
    let pool = campaign.db().await;
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

/// Every recipient the relay received more than once is flagged as a possible duplicate.
async fn assert_every_duplicate_is_flagged(campaign: &Campaign, counts: &HashMap<String, usize>) {
    for (rcpt, n) in counts.iter().filter(|(_, n)| **n > 1) {
        let number: usize = rcpt[1..rcpt.find('@').unwrap()].parse().unwrap();
        let flagged: i64 = campaign
            .delivery(&format!("P{number:04}"), "possible_duplicate")
            .await;
        assert_eq!(flagged, 1, "{rcpt} received {n} times and is not flagged");
    }
}

/// Another process's connection holding SQLite's lock (`BEGIN IMMEDIATE` or `BEGIN EXCLUSIVE`)
/// until the test rolls it back.
async fn lock(campaign: &Campaign, begin: &str) -> sqlx::SqliteConnection {
    let mut holder =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", campaign.database().display()))
            .await
            .unwrap();
    sqlx::query(begin).execute(&mut holder).await.unwrap();
    holder
}

/// Waits for a child with a bound: a run that hangs fails the test instead of blocking it.
async fn finishes(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the run ended by itself")
        .expect("the run could be waited for")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_database_refuses_ends_the_run_with_the_error_and_exit_1() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(120));
    campaign.send_to(&server.url());
    // The 30th `sent` event fails, as a full disk or any database fault would.
    let pool = campaign.db().await;
    sqlx::query(
        "CREATE TRIGGER fail_the_30th_sent BEFORE INSERT ON events
         WHEN NEW.kind = 'sent' AND (SELECT count(*) FROM events WHERE kind = 'sent') >= 29
         BEGIN SELECT RAISE(ABORT, 'the disk said no'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let output = finishes(campaign.spawn(&["send"])).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the disk said no"),
        "the database's error is shown: {}",
        stderr(&output)
    );
    // Nothing written contradicts itself; what was in flight stays `sending` for the next run.
    // The transaction holding the 30th `sent` rolls back whole and the writer stops there, so
    // fewer than 30 are sent; how many fewer depends on how the outcomes fell into batches.
    let sent = count(
        &campaign,
        "SELECT count(*) FROM deliveries WHERE state = 'sent'",
    )
    .await;
    assert!(sent < 30, "{sent} sent");
    let sending = count(
        &campaign,
        "SELECT count(*) FROM deliveries WHERE state = 'sending'",
    )
    .await;
    assert!(sending > 0, "the refused batch stays `sending`");

    let pool = campaign.db().await;
    sqlx::query("DROP TRIGGER fail_the_30th_sent")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
    let counts = received_per_recipient(&server);
    assert_eq!(counts.len(), 120, "everyone was reached");
    assert_every_duplicate_is_flagged(&campaign, &counts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_past_the_busy_timeout_is_exit_75_saying_the_database_is_busy() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(3));
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_BUSY_TIMEOUT", "1s");
    let mut holder = lock(&campaign, "BEGIN EXCLUSIVE").await;

    let output = finishes(campaign.spawn(&["send"])).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the database is busy"),
        "{}",
        stderr(&output)
    );
    assert!(server.accepted().is_empty());

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_in_the_middle_of_a_run_loses_no_accepted_letter() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(200));
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "50")
        .set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "2")
        .set("BREACHMAIL_BUSY_TIMEOUT", "1s");
    let child = campaign.spawn(&["send"]);
    assert!(server.wait_for_accepted(20, WAIT).await);

    // Another process takes the database for five times the busy timeout.
    let mut holder = lock(&campaign, "BEGIN IMMEDIATE").await;
    let during = server.accepted().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The run goes on through the stall with its outcomes kept, but no further than 32 letters
    // a connection ahead of the ledger (and what is in flight): at 50/s, five seconds would
    // otherwise be 250 letters, everyone left.
    assert!(
        server.accepted().len() <= during + 2 * 32 + 2,
        "{} accepted during the lock, {during} before it",
        server.accepted().len()
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    let output = finishes(child).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("200 sent"), "{}", stdout(&output));
    let counts = received_per_recipient(&server);
    assert_eq!(counts.len(), 200);
    assert!(
        counts.values().all(|n| *n == 1),
        "no letter went twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
}

/// Waits until every thread of `pid` is stopped (state `T` in `/proc/PID/task/*/stat`).
async fn wait_until_stopped(pid: u32) {
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command name, which is in parentheses.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !all_stopped() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {pid} did not stop"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_lost_its_lease_hands_nothing_more_over_and_writes_nothing() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(200));
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "40");
    let first = campaign.spawn(&["send"]);
    let pid = first.id().expect("the first run has a pid");
    assert!(server.wait_for_accepted(10, WAIT).await);
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    // Frozen past its lease: the lease's expiry is in the past (as if two minutes had gone by).
    // A run frozen in the middle of a write holds SQLite's lock, and then nobody can take the
    // lease over until it wakes: freeze it again after its next letter until it holds none.
    let mut frozen = false;
    for _ in 0..50 {
        signal("-STOP");
        // kill returns before every thread has stopped: a thread that runs on for a moment
        // could take the lock after the check below. Wait until all of them are stopped.
        wait_until_stopped(pid).await;
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(campaign.database())
                .busy_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        if sqlx::query("UPDATE lease SET expires_at = 0")
            .execute(&mut conn)
            .await
            .is_ok()
        {
            frozen = true;
            break;
        }
        drop(conn);
        let seen = server.accepted().len();
        signal("-CONT");
        assert!(server.wait_for_accepted(seen + 1, WAIT).await);
    }
    assert!(frozen, "the first run was never frozen outside a write");
    let frozen_at = server.accepted().len() + server.unconfirmed().len();

    campaign.set("BREACHMAIL_RATE_PER_SECOND", "0");
    let second = campaign.run_async(&["send"]).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let after_takeover = server.accepted().len() + server.unconfirmed().len();
    let events_after_takeover = count(&campaign, "SELECT count(*) FROM events").await;

    signal("-CONT");
    let output = finishes(first).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("lease"),
        "the run says why it stopped: {}",
        stderr(&output)
    );
    // Resumed, it handed nothing more to the relay (the letter it was writing when frozen at
    // most) and wrote no event for deliveries the second run had taken.
    assert!(
        server.accepted().len() + server.unconfirmed().len() <= after_takeover + 8,
        "{} received after the take-over, {after_takeover} before (frozen at {frozen_at})",
        server.accepted().len() + server.unconfirmed().len()
    );
    let new_events = count(&campaign, "SELECT count(*) FROM events").await - events_after_takeover;
    assert_eq!(new_events, 0, "the stale run wrote {new_events} events");
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        )
        .await,
        200
    );
}

/// A bounce of `email`'s letter as Postfix writes it, without a VERP token: matched by its
/// Final-Recipient.
fn dsn(serial: usize, email: &str) -> String {
    format!(
        "From MAILER-DAEMON Mon Dec  1 10:00:00 2025\n\
Return-Path: <>\nFrom: MAILER-DAEMON@relay.example.fr (Mail Delivery System)\n\
To: ne-pas-repondre@notification.example.fr\nSubject: Undelivered Mail Returned to Sender\n\
Message-ID: <bounce-{serial}@relay.example.fr>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n\
--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.fr\n\n\
Final-Recipient: rfc822; {email}\nAction: failed\nStatus: 5.1.1\n\
Diagnostic-Code: smtp; 550 5.1.1 <{email}>: User unknown\n\n--B--\n\n"
    )
}

/// The README's cron lines at work: `bounces` and `import --update` run while a full-speed
/// `send` writes its outcomes, wait their turn for the database (they used to be refused at
/// once, exit 75), and record everything.
#[tokio::test(flavor = "multi_thread")]
async fn bounces_and_import_update_get_in_beside_a_full_speed_send() {
    const PEOPLE: usize = 4000;
    const CHANGED: usize = 500;
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(PEOPLE));
    campaign.send_to(&server.url());
    let bounces: String = (1..=CHANGED)
        .map(|i| dsn(i, &format!("p{i}@example.fr")))
        .collect();
    let mbox = campaign.write_outside("bounces.mbox", bounces);
    let mut corrections = format!("{}\n", support::campaign::CSV_HEADER);
    for i in (1..=PEOPLE).rev().take(CHANGED) {
        corrections.push_str(&format!(
            "P{i:04},p{i}@example.fr,Mme,Élodie,Martin,fr,name;email;postal;identifier,1234567A4821\n"
        ));
    }
    let corrections = campaign.write_outside("corrections.csv", corrections);

    let send = campaign.spawn(&["send"]);
    assert!(server.wait_for_accepted(200, WAIT).await);
    let bounces_args = ["bounces", "--json", mbox.to_str().unwrap()];
    let import_args = ["import", corrections.to_str().unwrap(), "--update"];
    let (bounced, updated) = tokio::join!(
        campaign.run_async(&bounces_args),
        campaign.run_async(&import_args),
    );
    let send = finishes(send).await;
    assert!(bounced.status.success(), "bounces: {}", stderr(&bounced));
    assert!(
        updated.status.success(),
        "import --update: {}",
        stderr(&updated)
    );
    assert!(send.status.success(), "send: {}", stderr(&send));

    // They ran while the send was writing, not after it.
    let overlapping = count(
        &campaign,
        "SELECT count(*) FROM runs r, runs s
         WHERE s.command = 'send' AND r.command IN ('bounces', 'import')
           AND r.started_at < s.finished_at AND r.id > s.id",
    )
    .await;
    assert_eq!(overlapping, 2, "bounces and import ran beside the send");
    let summary: serde_json::Value = serde_json::from_slice(&bounced.stdout).unwrap();
    assert_eq!(summary["messages"], CHANGED, "{summary}");
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM bounces WHERE kind = 'hard'"
        )
        .await,
        CHANGED as i64
    );
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM people WHERE last_name = 'Martin'"
        )
        .await,
        CHANGED as i64
    );
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM events WHERE kind = 'updated'"
        )
        .await,
        CHANGED as i64
    );
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM deliveries WHERE state IN ('sent', 'bounced')"
        )
        .await,
        PEOPLE as i64
    );
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM runs WHERE finished_at IS NULL OR outcome IS NULL"
        )
        .await,
        0
    );
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
}

/// Freezes `pid` (SIGSTOP) at a moment it holds no SQLite lock, so another run can write: a run
/// frozen in the middle of a write would block everyone until it wakes.
async fn freeze_outside_a_write(campaign: &Campaign, pid: u32) {
    for _ in 0..50 {
        signal(pid, "-STOP");
        wait_until_stopped(pid).await;
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new()
                .filename(campaign.database())
                .busy_timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        let free = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .is_ok();
        drop(conn);
        if free {
            return;
        }
        signal(pid, "-CONT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} was never frozen outside a write");
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {name} {pid}");
}

/// Every column of every delivery, and the number of events: what "nothing written" compares.
async fn ledger_snapshot(campaign: &Campaign) -> (Vec<String>, i64) {
    let pool = campaign.db().await;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT json_array(d.person_id, d.state, d.generation, d.attempts, d.claimed_by,
                d.smtp_reply, d.relay, d.possible_duplicate, d.sent_at, d.message_id)
         FROM deliveries d ORDER BY d.person_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let events = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (rows, events)
}

/// The take-over in the middle of a pipelined session, made deterministic: the relay answers a
/// letter's final dot, then answers nothing more (the next letter's envelope waits, sent, for
/// its replies) while the run is frozen past its (test-short) lease and a second run takes the
/// campaign over through another relay. Woken, the stale run reads the envelope's replies:
/// it must not send that letter's final dot, nor write anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_lease_lapsed_while_its_relay_was_slow_sends_no_final_dot_and_writes_nothing() {
    let slow =
        SmtpServer::start(Script::accept_all().with("p5@example.fr", Behaviour::HoldAfterReply))
            .await;
    let other = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(20));
    campaign
        .send_to(&slow.url())
        // The relay holds its replies for as long as the test needs.
        .set("BREACHMAIL_SMTP_TIMEOUT", "90s")
        .set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "1")
        .set("BREACHMAIL_TEST_LEASE_TTL", "2s");
    let first = campaign.spawn(&["send"]);
    let pid = first.id().expect("the first run has a pid");
    let queued = slow.wait_for_hold(WAIT).await;
    assert!(queued.is_some(), "the relay never held after p5");
    println!("next envelope already behind the final dot when the relay held: {queued:?}");

    // Frozen past its lease: once the lease row has expired, the run's own clock (renewed
    // before the row was written) has lapsed too.
    freeze_outside_a_write(&campaign, pid).await;
    let expires_at: i64 = count(&campaign, "SELECT expires_at FROM lease").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(
        (expires_at - now).max(0) as u64 + 100,
    ))
    .await;

    campaign.set("BREACHMAIL_SMTP_URL", &other.url());
    let second = campaign.run_async(&["send"]).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let taken_over = ledger_snapshot(&campaign).await;
    let at_take_over = slow.accepted().len() + slow.unconfirmed().len();

    slow.release();
    signal(pid, "-CONT");
    let output = finishes(first).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(stderr(&output).contains("lease"), "{}", stderr(&output));

    assert_eq!(
        slow.messages_after_release(),
        0,
        "the stale run sent a final dot after the take-over"
    );
    assert_eq!(
        slow.accepted().len() + slow.unconfirmed().len(),
        at_take_over
    );
    assert!(
        ledger_snapshot(&campaign).await == taken_over,
        "the stale run wrote to the ledger after the take-over"
    );
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        )
        .await,
        20
    );
    // Each run's totals are what its events say it did.
    let disagreeing = count(
        &campaign,
        "SELECT count(*) FROM runs r WHERE r.command = 'send' AND r.sent IS NOT
           (SELECT count(*) FROM events e WHERE e.run_id = r.id AND e.to_state = 'sent')",
    )
    .await;
    assert_eq!(disagreeing, 0, "a run's total differs from its events");
    // Every relay named beside a reply is the relay whose queue id the reply carries.
    let pool = campaign.db().await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT relay, smtp_reply FROM deliveries WHERE state = 'sent'")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    for (relay, reply) in rows {
        let port: u16 = relay.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            reply.contains(&format!("queued as {port:04X}")),
            "relay {relay} beside the reply {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_only_letters_handed_to_the_relay_are_flagged() {
    let server = SmtpServer::start(
        Script::accept_all().with("p30@example.fr", Behaviour::StallAfterData { times: 1 }),
    )
    .await;
    let mut campaign = Campaign::with_people(&people(300));
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_SMTP_TIMEOUT", "60s")
        .set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "1");
    let mut first = campaign.spawn(&["send"]);
    // One connection, stuck on p30: a whole batch is claimed, a few dozen handed over.
    assert!(server.wait_for_unconfirmed(1, WAIT).await);
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let claimed = count(
        &campaign,
        "SELECT count(*) FROM deliveries WHERE state = 'sending'",
    )
    .await;
    let seen_by_relay: std::collections::HashSet<String> = server
        .accepted()
        .into_iter()
        .chain(server.unconfirmed())
        .flat_map(|m| m.rcpt_to)
        .map(|r| r.to_lowercase())
        .collect();
    assert!(
        claimed as usize > seen_by_relay.len(),
        "more claimed ({claimed}) than handed over"
    );

    campaign.set("BREACHMAIL_SMTP_TIMEOUT", "5s");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let pool = campaign.db().await;
    let flagged: Vec<String> =
        sqlx::query_scalar("SELECT d.email FROM deliveries d WHERE d.possible_duplicate = 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(!flagged.is_empty());
    for email in &flagged {
        assert!(
            seen_by_relay.contains(&email.to_lowercase()),
            "{email} is flagged but the killed run never handed it over"
        );
    }
    // Everyone the relay has twice is flagged, and the summary counts them.
    for (rcpt, n) in received_per_recipient(&server) {
        if n > 1 {
            assert!(
                flagged.iter().any(|f| f.eq_ignore_ascii_case(&rcpt)),
                "{rcpt} x{n}"
            );
        }
    }
    assert!(
        stdout(&output).contains(&format!("{} possible duplicates", flagged.len())),
        "{}",
        stdout(&output)
    );
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_on_a_full_disk_is_no_panic_and_loses_nothing() {
    let server =
        SmtpServer::start(Script::accept_all().with("p2@example.fr", Behaviour::reject())).await;
    let mut campaign = Campaign::with_people(&people(20));
    campaign.send_to(&server.url());
    let mut command = tokio::process::Command::from(campaign.command());
    command
        .kill_on_drop(true)
        .arg("send")
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full exists"))
        .stderr(std::fs::File::create("/dev/full").expect("/dev/full exists"));
    let status = command.status().await.expect("send runs");
    assert_eq!(status.code(), Some(0), "no panic (101), a normal end");
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        )
        .await,
        19
    );
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_commands_work_while_another_process_holds_the_write_lock() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(5));
    campaign
        .send_to(&server.url())
        .set("BREACHMAIL_BUSY_TIMEOUT", "1s");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let mut holder = lock(&campaign, "BEGIN IMMEDIATE").await;
    let report = campaign.outside("report.html");
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["export", "audit", "--format", "csv"],
        vec!["export", "postal"],
        vec!["report", "--html", report.to_str().unwrap()],
    ] {
        let output = campaign.run_async(&args).await;
        assert!(
            output.status.success(),
            "{args:?} needs no write: {}",
            stderr(&output)
        );
    }
    assert!(stdout(&campaign.run_async(&["status"]).await).contains("sent"));
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}

/// Needs a small file system of its own under `TMPDIR` (`.ci/run` mounts a tmpfs, as root):
/// the disk fills up in the middle of a run.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TMPDIR on a small tmpfs: run by .ci/run"]
async fn a_disk_that_fills_up_mid_run_stops_it_clearly_and_the_next_run_finishes() {
    let tmp = std::env::temp_dir();
    let stats = rustix::fs::statvfs(&tmp).expect("statvfs of TMPDIR");
    let size = stats.f_blocks * stats.f_frsize;
    assert!(
        size < 1024 * 1024 * 1024,
        "TMPDIR ({}) must be a small file system of its own (it is {} MiB): see .ci/run",
        tmp.display(),
        size / (1024 * 1024)
    );
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&people(6000));
    campaign.send_to(&server.url());
    let child = campaign.spawn(&["send"]);
    assert!(server.wait_for_accepted(300, WAIT).await);
    // Fill the disk to the last byte.
    let filler = campaign.outside("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("create the filler");
        let block = vec![0u8; 1024 * 1024];
        while file.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
    }
    let output = finishes(child).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the disk is full"),
        "the run says why it stopped: {}",
        stderr(&output)
    );

    // While the disk is full, a run refuses to start rather than hand letters over it could
    // not record.
    let output = campaign.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(stderr(&output).contains("MiB free"), "{}", stderr(&output));

    std::fs::remove_file(&filler).expect("free the space again");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(campaign.ledger_disagreements().await, Vec::<String>::new());
    let counts = received_per_recipient(&server);
    assert_eq!(counts.len(), 6000, "everyone was reached");
    assert_eq!(
        count(
            &campaign,
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        )
        .await,
        6000
    );
    assert_every_duplicate_is_flagged(&campaign, &counts).await;
}
