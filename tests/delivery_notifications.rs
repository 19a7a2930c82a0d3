//! Past the relay: `send` asks a relay that offers DSN (RFC 3461) for delivery status
//! notifications, in each of the three ways a letter goes (one command at a time, pipelined,
//! chunked), and asks nothing of a relay that does not; `bounces` reads the notifications the
//! relay sends back (real Postfix texts, `tests/bounces/postfix-*.eml`) into `delivered`, a
//! "still at the relay" note or `bounced`, once however often they are read; `status`, the
//! audit, `lookup` and the report show the three levels.

mod support;

use std::path::Path;

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Received, Script, SmtpServer};

const VERP_IN_FIXTURES: &str = "b-0000002s01k3h6q9z2m4x7w@bounces.example.fr";

fn people() -> Vec<String> {
    vec![
        person("ANNE", "anne@people.test"),
        person("BEA", "greylist-bea@people.test"),
        person("CARL", "refuse-carl@people.test"),
        // '+' and '=' are xtext-encoded in ORCPT (RFC 3461 § 4).
        person("DORA", "dora+news=1@people.test"),
    ]
}

/// A campaign with a bounce domain (signed VERP envelope senders), sending to `server`.
fn campaign_for(server: &SmtpServer) -> Campaign {
    let mut campaign = Campaign::with_people(&people());
    campaign.send_to(&server.url());
    campaign.set("BREACHMAIL_SENDER_BOUNCE_DOMAIN", "bounces.example.fr");
    campaign
}

async fn notice_id(campaign: &Campaign, person_ref: &str) -> String {
    let pool = campaign.db().await;
    let id = sqlx::query_scalar::<_, String>("SELECT notice_id FROM people WHERE ref = ?")
        .bind(person_ref)
        .fetch_one(&pool)
        .await
        .expect("the person");
    pool.close().await;
    id
}

fn received_by(server: &SmtpServer, address: &str) -> Received {
    server
        .accepted()
        .into_iter()
        .find(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address)))
        .unwrap_or_else(|| panic!("{address} was not received"))
}

async fn assert_asked_for_notifications(campaign: &Campaign, server: &SmtpServer) {
    for (person_ref, address, orcpt) in [
        ("ANNE", "anne@people.test", "anne@people.test"),
        (
            "DORA",
            "dora+news=1@people.test",
            "dora+2Bnews+3D1@people.test",
        ),
    ] {
        let message = received_by(server, address);
        let envid = notice_id(campaign, person_ref).await;
        assert_eq!(
            message
                .mail_parameters
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["RET=HDRS", &format!("ENVID={envid}")],
            "{person_ref}'s MAIL FROM"
        );
        assert_eq!(
            message.rcpt_parameters,
            [format!("NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;{orcpt}")],
            "{person_ref}'s RCPT TO"
        );
        assert_eq!(
            campaign
                .delivery::<i64>(person_ref, "notify_requested")
                .await,
            1
        );
    }
}

async fn relay_record(campaign: &Campaign) -> Vec<(String, bool, bool)> {
    let pool = campaign.db().await;
    let rows = sqlx::query_as::<_, (String, bool, bool)>(
        "SELECT relay, offered, requested FROM run_relay_notifications ORDER BY run_id",
    )
    .fetch_all(&pool)
    .await
    .expect("run_relay_notifications");
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn each_way_of_sending_asks_a_relay_that_offers_dsn() {
    let ways = [
        (
            "one by one",
            Script {
                dsn: true,
                no_pipelining: true,
                ..Script::accept_all()
            },
        ),
        (
            "pipelined",
            Script {
                dsn: true,
                ..Script::accept_all()
            },
        ),
        (
            "chunked",
            Script {
                dsn: true,
                chunking: true,
                ..Script::accept_all()
            },
        ),
    ];
    for (way, script) in ways {
        let chunked = script.chunking;
        let server = SmtpServer::start(script).await;
        let campaign = campaign_for(&server);
        let output = campaign.run_async(&["send"]).await;
        assert!(output.status.success(), "{way}: {}", stderr(&output));
        assert_eq!(server.accepted().len(), 4, "{way}");
        assert_eq!(server.bdat_messages() > 0, chunked, "{way}");
        assert_asked_for_notifications(&campaign, &server).await;
        let relay = format!("127.0.0.1:{}", server.port());
        assert_eq!(
            relay_record(&campaign).await,
            [(relay, true, true)],
            "{way}"
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_without_dsn_is_asked_nothing_and_status_says_it_confirms_nothing() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let campaign = campaign_for(&server);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    // The test server refuses NOTIFY/RET/ENVID when it does not offer DSN, as Postfix does:
    // all four accepted means none was sent.
    assert_eq!(server.accepted().len(), 4);
    for message in server.accepted() {
        assert_eq!(message.mail_parameters, "");
        assert_eq!(message.rcpt_parameters, [""]);
    }
    assert_eq!(
        campaign.delivery::<i64>("ANNE", "notify_requested").await,
        0
    );
    let relay = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        relay_record(&campaign).await,
        [(relay.clone(), false, false)]
    );

    let status = campaign.run_async(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["states"]["sent"], 4);
    assert_eq!(status["states"]["delivered"], 0);
    let past = &status["past_the_relay"];
    assert_eq!(past["handed_to_relay"], 4);
    assert_eq!(past["still_at_relay"], 0);
    assert_eq!(past["not_confirmed"], 4);
    assert_eq!(past["relays"][0]["offered"], false);
    let table = stdout(&campaign.run_async(&["status"]).await);
    assert!(
        table.contains(&format!(
            "relay {relay} does not confirm delivery: it does not offer delivery status notifications (DSN); its letters stay `sent`"
        )),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_setting_off_asks_nothing_of_a_relay_that_offers_dsn() {
    let server = SmtpServer::start(Script {
        dsn: true,
        ..Script::accept_all()
    })
    .await;
    let mut campaign = campaign_for(&server);
    campaign.set("BREACHMAIL_SMTP_DELIVERY_NOTIFICATIONS", "false");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    for message in server.accepted() {
        assert_eq!(message.mail_parameters, "");
        assert_eq!(message.rcpt_parameters, [""]);
    }
    let relay = format!("127.0.0.1:{}", server.port());
    assert_eq!(relay_record(&campaign).await, [(relay, true, false)]);
    let table = stdout(&campaign.run_async(&["status"]).await);
    assert!(
        table.contains("delivery notifications are turned off"),
        "{table}"
    );
}

/// A real Postfix notification (`tests/bounces/NAME`) about this letter: the relay's text with
/// the letter's envelope sender, recipient and envelope id.
fn notification(name: &str, received: &Received, person_envid: &str) -> String {
    let fixture = std::fs::read_to_string(support::files::corpus(name)).expect("corpus file");
    let (address, fixture_address, fixture_envid) = match name {
        "postfix-relayed.eml" => (&received.rcpt_to[0], "anne@people.test", "AAAA-BBBB-CCC1"),
        "postfix-failed-at-provider.eml" => (
            &received.rcpt_to[0],
            "refuse-carl@people.test",
            "AAAA-BBBB-CCC3",
        ),
        _ => (
            &received.rcpt_to[0],
            "greylist-bea@people.test",
            "AAAA-BBBB-CCC2",
        ),
    };
    fixture
        .replace(VERP_IN_FIXTURES, &received.mail_from)
        .replace(fixture_address, address)
        .replace(fixture_envid, person_envid)
}

fn write_maildir(dir: &Path, messages: &[(String, String)]) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("maildir");
    }
    for (name, text) in messages {
        std::fs::write(dir.join("new").join(name), text).expect("write a notification");
    }
}

async fn bounces(campaign: &Campaign, dir: &Path) -> serde_json::Value {
    let output = campaign
        .run_async(&["bounces", "--json", dir.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("bounces --json")
}

async fn event_details(campaign: &Campaign, person_ref: &str, kind: &str) -> Vec<String> {
    let pool = campaign.db().await;
    let details = sqlx::query_scalar::<_, String>(
        "SELECT e.detail FROM events e JOIN people p ON p.id = e.person_id
         WHERE p.ref = ? AND e.kind = ? ORDER BY e.id",
    )
    .bind(person_ref)
    .bind(kind)
    .fetch_all(&pool)
    .await
    .expect("events");
    pool.close().await;
    details
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_make_letters_delivered_bounced_or_still_at_the_relay_once() {
    let server = SmtpServer::start(Script {
        dsn: true,
        ..Script::accept_all()
    })
    .await;
    let campaign = campaign_for(&server);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let anne = received_by(&server, "anne@people.test");
    let bea = received_by(&server, "greylist-bea@people.test");
    let carl = received_by(&server, "refuse-carl@people.test");
    let (anne_id, bea_id, carl_id) = (
        notice_id(&campaign, "ANNE").await,
        notice_id(&campaign, "BEA").await,
        notice_id(&campaign, "CARL").await,
    );

    // First the relay's "still trying" for Bea (her provider greylists) and Carl's refusal.
    let first = campaign.outside("first");
    write_maildir(
        &first,
        &[
            (
                "1.delayed".into(),
                notification("postfix-delayed-greylisted.eml", &bea, &bea_id),
            ),
            (
                "2.failed".into(),
                notification("postfix-failed-at-provider.eml", &carl, &carl_id),
            ),
        ],
    );
    let summary = bounces(&campaign, &first).await;
    assert_eq!(summary["delayed"], 1, "{summary}");
    assert_eq!(summary["marked_bounced"], 1, "{summary}");
    let states = campaign.states().await;
    assert_eq!(states["BEA"], "sent", "a delay notice changes no state");
    assert_eq!(states["CARL"], "bounced");
    let notes = event_details(&campaign, "BEA", "delayed").await;
    assert!(
        notes.len() == 1
            && notes[0].starts_with("still at the relay: 4.7.1 451 4.7.1")
            && notes[0].contains("Greylisted"),
        "the provider's reason is kept: {notes:?}"
    );
    let status = campaign.run_async(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["past_the_relay"]["still_at_relay"], 3, "{status}");
    let waiting = status["past_the_relay"]["providers"][0].clone();
    assert_eq!(waiting["domain"], "people.test");
    assert_eq!(waiting["still_at_relay"], 3);
    let table = stdout(&campaign.run_async(&["status"]).await);
    assert!(
        table.contains(
            "(nothing left to send; 3 still at the relay, not yet accepted by the person's provider)"
        ),
        "the finish counts what still waits at the relay: {table}"
    );

    // Then the acceptances: Anne's at once, Bea's once the greylisting let it through.
    let second = campaign.outside("second");
    write_maildir(
        &second,
        &[
            (
                "3.relayed".into(),
                notification("postfix-relayed.eml", &anne, &anne_id),
            ),
            (
                "4.relayed".into(),
                notification("postfix-relayed-after-greylisting.eml", &bea, &bea_id),
            ),
        ],
    );
    let summary = bounces(&campaign, &second).await;
    assert_eq!(summary["delivered"], 2, "{summary}");
    assert_eq!(summary["marked_delivered"], 2, "{summary}");
    let states = campaign.states().await;
    assert_eq!(states["ANNE"], "delivered");
    assert_eq!(states["BEA"], "delivered");
    assert_eq!(
        states["DORA"], "sent",
        "no word about Dora: still at the relay"
    );
    assert_eq!(
        campaign.events("ANNE").await,
        ["imported", "claimed", "sent", "delivered"]
    );
    let accepted = event_details(&campaign, "ANNE", "delivered").await;
    assert_eq!(
        accepted,
        ["accepted by 127.0.0.1 at 2026-12-06T07:13:18Z: 250 2.0.0 Ok: queued as 4P00000001"]
    );
    assert_eq!(
        campaign.delivery::<String>("BEA", "delivered_reply").await,
        "250 2.0.0 Ok: queued as 4P00000002"
    );
    assert!(campaign.ledger_disagreements().await.is_empty());

    // Read both mailboxes again: nothing changes, every report is a duplicate.
    let events_before: i64 = {
        let pool = campaign.db().await;
        let n = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    };
    for dir in [&first, &second] {
        let again = bounces(&campaign, dir).await;
        assert_eq!(again["duplicates"], 2, "{again}");
        assert_eq!(again["marked_delivered"], 0);
        assert_eq!(again["delayed"], 0);
    }
    let events_after: i64 = {
        let pool = campaign.db().await;
        let n = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    };
    assert_eq!(events_after, events_before);
    assert_eq!(campaign.states().await, states);

    // The three levels everywhere.
    let status = campaign.run_async(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["states"]["delivered"], 2, "{status}");
    assert_eq!(status["states"]["sent"], 1);
    assert_eq!(
        status["progress"]["sent"], 3,
        "delivered letters were handed over too"
    );
    let past = &status["past_the_relay"];
    assert_eq!(past["handed_to_relay"], 3);
    assert_eq!(past["accepted_by_provider"], 2);
    assert_eq!(past["bounced"], 1);
    assert_eq!(past["still_at_relay"], 1);
    assert_eq!(past["providers"][0]["accepted"], 2);
    assert!(status["reconciliation"]["ok"].as_bool().unwrap_or(false));

    // The audit in the campaign's language (French here), as the operator opens it...
    let audit = campaign.outside("audit.csv");
    let output = campaign
        .run_async(&["export", "audit", "--out", audit.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut reader = csv::Reader::from_path(&audit).expect("audit csv");
    let headers = reader.headers().expect("header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let anne_row = rows.iter().find(|r| &r[0] == "ANNE").expect("Anne's row");
    assert_eq!(&anne_row[column("état")], "acceptée par le fournisseur");
    assert_eq!(
        &anne_row[column("acceptée par le fournisseur le")],
        "06/12/2026 07:13:18 UTC"
    );
    assert_eq!(&anne_row[column("serveur du fournisseur")], "127.0.0.1");
    assert_eq!(
        &anne_row[column("réponse du fournisseur")],
        "250 2.0.0 Ok: queued as 4P00000001"
    );
    assert_eq!(&anne_row[column("avis de remise demandé")], "oui");
    let legend = std::fs::read_to_string(campaign.outside("audit.legende.txt")).expect("legend");
    assert!(
        legend.contains("pas la preuve qu'elle a été lue"),
        "{legend}"
    );

    // ...and in the machine format, the same in every language.
    let output = campaign
        .run_async(&["export", "audit", "--format", "jsonl"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let anne: serde_json::Value = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .find(|row| row["ref"] == "ANNE")
        .expect("Anne's row");
    assert_eq!(anne["state"], "delivered");
    assert_eq!(anne["delivered_at"], "2026-12-06T07:13:18Z");
    assert_eq!(anne["delivered_by"], "127.0.0.1");
    assert_eq!(
        anne["delivered_reply"],
        "250 2.0.0 Ok: queued as 4P00000001"
    );
    assert_eq!(anne["delivery_notifications"], true);

    let lookup = |person: &'static str| {
        let campaign = &campaign;
        async move {
            let output = campaign.run_async(&["lookup", person, "--json"]).await;
            let answer: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("lookup --json");
            answer["people"][0]["past_the_relay"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let anne_past = lookup("ANNE").await;
    assert!(
        anne_past
            .starts_with("accepted by the person's provider (127.0.0.1) at 2026-12-06T07:13:18Z"),
        "{anne_past}"
    );
    let dora_past = lookup("DORA").await;
    assert!(
        dora_past.contains("no word yet from the person's provider: still at the relay"),
        "{dora_past}"
    );

    let report = campaign.outside("report.html");
    let output = campaign
        .run_async(&["report", "--html", report.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let html = std::fs::read_to_string(&report).expect("the report");
    assert!(
        html.contains("Au-delà du relais"),
        "the campaign speaks French"
    );
    assert!(html.contains("acceptées par le fournisseur du destinataire"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_envelope_id_matches_a_notification_without_token_or_headers_and_a_later_bounce_counts()
{
    let server = SmtpServer::start(Script {
        dsn: true,
        ..Script::accept_all()
    })
    .await;
    let campaign = campaign_for(&server);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let anne = received_by(&server, "anne@people.test");
    let anne_id = notice_id(&campaign, "ANNE").await;

    // Sent back to a plain address, and the returned headers cut off (RET=HDRS not honoured):
    // only the Original-Envelope-Id says whose letter it was.
    let plain = Received {
        mail_from: "ne-pas-repondre@notification.example.fr".into(),
        ..anne.clone()
    };
    let text = notification("postfix-relayed.eml", &plain, &anne_id);
    let cut = text
        .split("Content-Description: Message Headers")
        .next()
        .expect("a part before the headers")
        .to_owned();
    let dir = campaign.outside("envid");
    write_maildir(&dir, &[("1.relayed".into(), cut)]);
    let summary = bounces(&campaign, &dir).await;
    assert_eq!(summary["marked_delivered"], 1, "{summary}");
    assert_eq!(campaign.states().await["ANNE"], "delivered");
    let pool = campaign.db().await;
    let matched_by: String =
        sqlx::query_scalar("SELECT matched_by FROM bounces WHERE kind = 'delivered'")
            .fetch_one(&pool)
            .await
            .expect("the report");
    pool.close().await;
    assert_eq!(matched_by, "envelope_id");

    // The provider accepted it, then bounced it (a mailbox closed since): it counts.
    let failed = notification("postfix-failed-at-provider.eml", &anne, &anne_id);
    let dir = campaign.outside("later");
    write_maildir(&dir, &[("2.failed".into(), failed)]);
    let summary = bounces(&campaign, &dir).await;
    assert_eq!(summary["marked_bounced"], 1, "{summary}");
    assert_eq!(campaign.states().await["ANNE"], "bounced");
    assert_eq!(
        campaign.events("ANNE").await,
        ["imported", "claimed", "sent", "delivered", "bounced"]
    );
    assert!(campaign.ledger_disagreements().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivered_letter_may_be_resent_and_news_of_the_old_one_changes_nothing() {
    let server = SmtpServer::start(Script {
        dsn: true,
        ..Script::accept_all()
    })
    .await;
    let campaign = campaign_for(&server);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let first_letter = received_by(&server, "anne@people.test");
    let anne_id = notice_id(&campaign, "ANNE").await;
    let dir = campaign.outside("accepted");
    write_maildir(
        &dir,
        &[(
            "1.relayed".into(),
            notification("postfix-relayed.eml", &first_letter, &anne_id),
        )],
    );
    assert_eq!(bounces(&campaign, &dir).await["marked_delivered"], 1);

    // A corrected letter goes to Anne again: a delivered letter may be resent.
    let output = campaign.run_async(&["resend", "--ref", "ANNE"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(campaign.states().await["ANNE"], "pending");
    assert_eq!(
        campaign
            .delivery::<Option<i64>>("ANNE", "delivered_at")
            .await,
        None,
        "the new generation starts with nothing known past the relay"
    );
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(campaign.delivery::<i64>("ANNE", "generation").await, 2);

    // The first letter's bounce arrives late: its token names generation 1.
    let dir = campaign.outside("late");
    write_maildir(
        &dir,
        &[(
            "2.failed".into(),
            notification("postfix-failed-at-provider.eml", &first_letter, &anne_id),
        )],
    );
    let summary = bounces(&campaign, &dir).await;
    assert_eq!(summary["stale_generation"], 1, "{summary}");
    assert_eq!(summary["marked_bounced"], 0, "{summary}");
    assert_eq!(campaign.states().await["ANNE"], "sent");
    assert!(campaign.ledger_disagreements().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_erases_an_address_the_providers_reply_quotes() {
    let server = SmtpServer::start(Script {
        dsn: true,
        ..Script::accept_all()
    })
    .await;
    let campaign = campaign_for(&server);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let anne = received_by(&server, "anne@people.test");
    let anne_id = notice_id(&campaign, "ANNE").await;
    // Some providers quote the recipient in their 250.
    let text = notification("postfix-relayed.eml", &anne, &anne_id).replace(
        "Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4P00000001",
        "Diagnostic-Code: smtp; 250 2.1.5 <anne@people.test> ok, queued as 4P00000001",
    );
    let dir = campaign.outside("quoting");
    write_maildir(&dir, &[("1.relayed".into(), text)]);
    assert_eq!(bounces(&campaign, &dir).await["marked_delivered"], 1);
    let reply: String = campaign.delivery("ANNE", "delivered_reply").await;
    assert!(reply.contains("anne@people.test"), "{reply}");

    // purge erases the people (their refs too): the delivery and its events are found by id.
    let pool = campaign.db().await;
    let anne_id: i64 = sqlx::query_scalar("SELECT id FROM people WHERE ref = 'ANNE'")
        .fetch_one(&pool)
        .await
        .expect("Anne");
    pool.close().await;
    let output = campaign.run_async(&["purge", "--yes"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let pool = campaign.db().await;
    let reply: String =
        sqlx::query_scalar("SELECT delivered_reply FROM deliveries WHERE person_id = ?")
            .bind(anne_id)
            .fetch_one(&pool)
            .await
            .expect("Anne's delivery");
    assert!(
        !reply.contains('@'),
        "the address stays after purge: {reply}"
    );
    assert!(reply.contains("queued as 4P00000001"), "{reply}");
    let details: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM events WHERE person_id = ? AND kind = 'delivered'")
            .bind(anne_id)
            .fetch_all(&pool)
            .await
            .expect("events");
    pool.close().await;
    assert_eq!(details.len(), 1);
    assert!(
        details.iter().all(|d| !d.contains('@')),
        "an event quotes the address after purge: {details:?}"
    );
}
