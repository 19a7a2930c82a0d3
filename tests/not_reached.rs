//! The operator's day after the letters went out: bounces come back (`bounces`), addresses are
//! fixed and letters go again (`resend`), the rest goes to the postal service (`export postal`).
//!
//! Each test makes a real campaign with `breachmail init` and `breachmail import`, puts letters
//! into `sent` through the ledger as a send run would (the relay is not needed to test what follows
//! it), writes bounce messages shaped like a real MTA's, and runs the real binary.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use breachmail::domain::Email;
use breachmail::smtp_reply::{Accepted, SmtpReply, Step};
use breachmail::store::ledger::{self, Outcome};
use breachmail::verp::{self, DeliveryRef};
use sqlx::SqlitePool;
use support::campaign::open_pool;
use support::files::{corpus, mode};

const MESSAGE_ID_DOMAIN: &str = "notification.example.fr";
const BOUNCE_DOMAIN: &str = "bounces.example.fr";

/// The shared campaign, with a runtime, an open pool and the signing key of its own, to set the
/// database up and read it without async tests.
struct Campaign {
    campaign: support::campaign::Campaign,
    runtime: tokio::runtime::Runtime,
    pool: SqlitePool,
    key: Vec<u8>,
}

impl Campaign {
    /// `init`, then `import` of these CSV rows (header included).
    fn new(people_csv: &str) -> Campaign {
        let campaign = support::campaign::Campaign::new();
        let csv = campaign.write_outside("people.csv", people_csv);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let pool = runtime.block_on(open_pool(&campaign.database()));
        let key = runtime
            .block_on(breachmail::store::campaign::signing_key(&pool))
            .expect("signing key");
        campaign.import(&csv, &[]);
        Campaign {
            campaign,
            runtime,
            pool,
            key,
        }
    }

    /// A path in the temporary folder, outside the campaign folder.
    fn path(&self, name: &str) -> PathBuf {
        self.campaign.outside(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.campaign.run(args)
    }

    /// Runs `bounces --json` on these paths and returns its summary.
    fn bounces(&self, paths: &[&Path]) -> serde_json::Value {
        let mut args = vec!["bounces", "--json"];
        args.extend(paths.iter().map(|p| p.to_str().expect("utf-8 path")));
        let output = self.run(&args);
        assert!(output.status.success(), "bounces: {output:?}");
        serde_json::from_slice(&output.stdout).expect("JSON summary")
    }

    fn id(&self, person_ref: &str) -> i64 {
        self.scalar(&format!("SELECT id FROM people WHERE ref = '{person_ref}'"))
    }

    fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
    {
        self.runtime
            .block_on(sqlx::query_scalar(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn state(&self, person_ref: &str) -> String {
        self.scalar(&format!(
            "SELECT d.state FROM deliveries d JOIN people p ON p.id = d.person_id WHERE p.ref = '{person_ref}'"
        ))
    }

    fn generation(&self, person_ref: &str) -> i64 {
        self.scalar(&format!(
            "SELECT generation FROM deliveries WHERE person_id = {}",
            self.id(person_ref)
        ))
    }

    fn events(&self, person_ref: &str, kind: &str) -> i64 {
        self.scalar(&format!(
            "SELECT count(*) FROM events WHERE person_id = {} AND kind = '{kind}'",
            self.id(person_ref)
        ))
    }

    /// What a send would have left: `sent`, with the generation's Message-ID, written through
    /// the ledger as a send run writes it (claimed, then sent, each with its event).
    fn mark_sent(&self, person_ref: &str) {
        let generation = self.generation(person_ref);
        let message_id = self.message_id(person_ref, generation);
        self.settle(
            person_ref,
            Outcome::Sent {
                reply: Accepted::ByRelay(SmtpReply::new(Step::Message, 250, "2.0.0 Ok: queued")),
                message_id,
                fingerprint: "test".into(),
                sha256: "test".into(),
                // The address the delivery goes to is set by `settle`.
                email: Email::parse("any@exemple.fr").unwrap(),
                notify: true,
            },
        );
    }

    /// What a send leaves when the relay refuses the address for good.
    fn mark_failed(&self, person_ref: &str, reply: &str) {
        self.settle(
            person_ref,
            Outcome::Failed {
                reason: reply.into(),
                reply: SmtpReply::parse(Step::RcptTo, reply),
                message_id: None,
                possible_duplicate: false,
            },
        );
    }

    /// Everyone `sent`, through the ledger, as one send run would leave them.
    fn mark_all_sent(&self) {
        self.runtime.block_on(async {
            let run_id = breachmail::store::campaign::start_run(&self.pool, "send")
                .await
                .unwrap();
            let claimed = ledger::claim(&self.pool, run_id, i64::MAX, i64::MAX, &[], None)
                .await
                .unwrap();
            for chunk in claimed.chunks(5000) {
                let outcomes: Vec<(DeliveryRef, Outcome)> = chunk
                    .iter()
                    .map(|c| {
                        let sent = Outcome::Sent {
                            reply: Accepted::ByRelay(SmtpReply::new(
                                Step::Message,
                                250,
                                "2.0.0 Ok: queued",
                            )),
                            message_id: String::new(),
                            fingerprint: "test".into(),
                            sha256: "test".into(),
                            email: address_of(c),
                            notify: true,
                        };
                        (delivery_of(c), sent)
                    })
                    .collect();
                let stale = ledger::record_outcomes(&self.pool, run_id, &outcomes)
                    .await
                    .unwrap();
                assert!(stale.is_empty());
            }
        });
    }

    /// A send run that claims what is due, records `outcome` for one person and gives the
    /// others back, through the ledger.
    fn settle(&self, person_ref: &str, outcome: Outcome) {
        let target = self.id(person_ref);
        self.runtime.block_on(async {
            let run_id = breachmail::store::campaign::start_run(&self.pool, "send")
                .await
                .unwrap();
            let claimed = ledger::claim(&self.pool, run_id, i64::MAX, i64::MAX, &[], None)
                .await
                .unwrap();
            let outcomes: Vec<(DeliveryRef, Outcome)> = claimed
                .iter()
                .map(|c| {
                    let settled = if c.person.id == target {
                        match outcome.clone() {
                            // Sent to the address the delivery goes to, as a send records it.
                            Outcome::Sent {
                                reply,
                                message_id,
                                fingerprint,
                                sha256,
                                notify,
                                ..
                            } => Outcome::Sent {
                                reply,
                                message_id,
                                fingerprint,
                                sha256,
                                email: address_of(c),
                                notify,
                            },
                            other => other,
                        }
                    } else {
                        Outcome::Released {
                            reason: "not this test's".into(),
                        }
                    };
                    (delivery_of(c), settled)
                })
                .collect();
            let stale = ledger::record_outcomes(&self.pool, run_id, &outcomes)
                .await
                .unwrap();
            assert!(stale.is_empty());
        });
        assert_ne!(self.state(person_ref), "sending");
    }

    fn delivery(&self, person_ref: &str, generation: i64) -> DeliveryRef {
        DeliveryRef {
            person_id: self.id(person_ref),
            generation,
        }
    }

    fn verp(&self, person_ref: &str, generation: i64) -> String {
        verp::envelope_sender(
            &self.key,
            self.delivery(person_ref, generation),
            BOUNCE_DOMAIN,
        )
    }

    fn message_id(&self, person_ref: &str, generation: i64) -> String {
        verp::message_id(
            &self.key,
            self.delivery(person_ref, generation),
            MESSAGE_ID_DOMAIN,
        )
    }

    fn notice_id(&self, person_ref: &str) -> String {
        self.scalar(&format!(
            "SELECT notice_id FROM people WHERE ref = '{person_ref}'"
        ))
    }
}

const PEOPLE: &str = "ref,email,alt_email,civility,first_name,last_name,language,address_line1,postcode,city,country,exposed
A1,alice@example.org,,Mme,Alice,Martin,fr,1 rue de la Paix,75002,Paris,France,name;email
A2,bruno@example.org,,M,Bruno,Durand,fr,2 avenue Foch,69006,Lyon,France,name;email
A3,chloe@example.org,,Mme,Chloé,Petit,fr,3 place Bellecour,69002,Lyon,France,name;email
A4,shared@example.org,,M,David,Roux,fr,4 quai Rive Neuve,13007,Marseille,France,name;email
A5,shared@example.org,,Mme,Emma,Roux,fr,4 quai Rive Neuve,13007,Marseille,France,name;email
";

/// The address a claimed delivery goes to, as `send` records it with its outcome.
fn address_of(claimed: &ledger::Claimed) -> Email {
    claimed
        .person
        .email
        .clone()
        .expect("a claimed letter has an address")
}

fn delivery_of(claimed: &ledger::Claimed) -> DeliveryRef {
    DeliveryRef {
        person_id: claimed.person.id,
        generation: claimed.person.generation,
    }
}

/// What a bounce says and where it goes.
#[derive(Clone, Default)]
struct Dsn {
    to: String,
    recipient: String,
    status: &'static str,
    action: &'static str,
    message_id: Option<String>,
    notice_id: Option<String>,
    /// Makes otherwise identical bounces distinct messages.
    serial: u32,
}

impl Dsn {
    fn hard(to: String, recipient: &str) -> Dsn {
        Dsn {
            to,
            recipient: recipient.to_owned(),
            status: "5.1.1",
            action: "failed",
            ..Dsn::default()
        }
    }

    /// A Postfix delivery status notification, as it lands in the bounce mailbox.
    fn message(&self) -> String {
        let mut returned = String::from(
            "From: Agence <ne-pas-repondre@notification.example.fr>\r\nSubject: Information importante\r\n",
        );
        if let Some(id) = &self.message_id {
            returned.push_str(&format!("Message-ID: <{id}>\r\n"));
        }
        if let Some(notice) = &self.notice_id {
            returned.push_str(&format!("X-Notice-Id: {notice}\r\n"));
        }
        let code = if self.status.starts_with('5') {
            550
        } else {
            451
        };
        format!(
            "Return-Path: <>\r\nDelivered-To: {to}\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: Tue, 11 Mar 2025 09:30:{serial:02} +0100\r\n\
Message-Id: <20250311.{serial}@mx.example.org>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n\
Diagnostic-Code: smtp; {code} {status} <{recipient}>: Recipient address rejected\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--B--\r\n",
            to = self.to,
            serial = self.serial,
            recipient = self.recipient,
            action = self.action,
            status = self.status,
        )
    }
}

/// An mbox of these messages, ">From " escaped as mboxrd does.
fn write_mbox(path: &Path, messages: &[String]) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("creates the mbox"));
    for message in messages {
        writeln!(file, "From MAILER-DAEMON Tue Mar 11 09:30:00 2025").expect("writes");
        for line in message.split_inclusive('\n') {
            if line.trim_start_matches('>').starts_with("From ") {
                file.write_all(b">").expect("writes");
            }
            file.write_all(line.as_bytes()).expect("writes");
        }
        file.write_all(b"\n").expect("writes");
    }
    file.flush().expect("flushes");
}

#[test]
fn a_hard_bounce_by_token_marks_the_letter_bounced_once() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    campaign.mark_sent("A2");
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message()],
    );

    let first = campaign.bounces(&[&mbox]);
    assert_eq!(first["messages"], 1);
    assert_eq!(first["hard"], 1);
    assert_eq!(first["duplicates"], 0);
    assert_eq!(campaign.state("A1"), "bounced");
    assert_eq!(campaign.state("A2"), "sent");
    let (status, diagnostic, failed): (String, String, String) = campaign
        .runtime
        .block_on(
            sqlx::query_as(
                "SELECT bounce_status, bounce_diagnostic, failed_email FROM deliveries WHERE person_id = ?",
            )
            .bind(campaign.id("A1"))
            .fetch_one(&campaign.pool),
        )
        .expect("delivery");
    assert_eq!(status, "5.1.1");
    assert!(
        diagnostic.contains("Recipient address rejected"),
        "{diagnostic}"
    );
    assert_eq!(failed, "alice@example.org");
    assert_eq!(campaign.events("A1", "bounced"), 1);
    let matched_by: String = campaign.scalar("SELECT matched_by FROM bounces WHERE kind = 'hard'");
    assert_eq!(matched_by, "token");

    // The same mailbox read again: nothing counted or recorded twice.
    let second = campaign.bounces(&[&mbox]);
    assert_eq!(second["hard"], 0);
    assert_eq!(second["duplicates"], 1);
    assert_eq!(campaign.events("A1", "bounced"), 1);
    let rows: i64 = campaign.scalar("SELECT count(*) FROM bounces");
    assert_eq!(rows, 1);
}

#[test]
fn bounces_without_a_token_match_by_message_id_notice_id_or_a_unique_recipient() {
    let campaign = Campaign::new(PEOPLE);
    for person in ["A1", "A2", "A3", "A4", "A5"] {
        campaign.mark_sent(person);
    }
    // A bounce mailbox without VERP: the bounces come back to the From address.
    let to = "ne-pas-repondre@notification.example.fr".to_owned();
    let by_message_id = Dsn {
        message_id: Some(campaign.message_id("A1", 1)),
        serial: 1,
        ..Dsn::hard(to.clone(), "forwarded@elsewhere.example")
    };
    let by_notice_id = Dsn {
        notice_id: Some(campaign.notice_id("A2").to_lowercase()),
        serial: 2,
        ..Dsn::hard(to.clone(), "forwarded@elsewhere.example")
    };
    let by_recipient = Dsn {
        serial: 3,
        ..Dsn::hard(to.clone(), "Chloe@Example.ORG")
    };
    let shared = Dsn {
        serial: 4,
        ..Dsn::hard(to.clone(), "shared@example.org")
    };
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[by_message_id, by_notice_id, by_recipient, shared].map(|d| d.message()),
    );

    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["hard"], 3, "{summary}");
    assert_eq!(summary["unmatched"], 1, "{summary}");
    assert_eq!(campaign.state("A1"), "bounced");
    assert_eq!(campaign.state("A2"), "bounced");
    assert_eq!(campaign.state("A3"), "bounced");
    assert_eq!(
        campaign.state("A4"),
        "sent",
        "a shared address marks nobody"
    );
    assert_eq!(campaign.state("A5"), "sent");
    let methods: Vec<String> = campaign
        .runtime
        .block_on(
            sqlx::query_scalar(
                "SELECT matched_by FROM bounces WHERE matched_by IS NOT NULL ORDER BY id",
            )
            .fetch_all(&campaign.pool),
        )
        .expect("bounces");
    assert_eq!(methods, ["message_id", "notice_id", "recipient"]);
}

#[test]
fn a_unique_recipient_matches_case_insensitively() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A3");
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(
            "postmaster@notification.example.fr".into(),
            "CHLOE@EXAMPLE.ORG",
        )
        .message()],
    );
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["hard"], 1, "{summary}");
    assert_eq!(campaign.state("A3"), "bounced");
    let matched_by: String = campaign.scalar("SELECT matched_by FROM bounces");
    assert_eq!(matched_by, "recipient");
}

#[test]
fn a_forged_token_marks_nobody() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    let genuine = campaign.verp("A1", 1);
    let (local, domain) = genuine.split_once('@').expect("an address");
    let last = if local.ends_with('a') { 'b' } else { 'a' };
    let forged = format!("{}{last}@{domain}", &local[..local.len() - 1]);
    // Even with the right Message-ID inside, a bad signature stops the matching.
    let dsn = Dsn {
        message_id: Some(campaign.message_id("A1", 1)),
        ..Dsn::hard(forged, "alice@example.org")
    };
    let mbox = campaign.path("forged.mbox");
    write_mbox(&mbox, &[dsn.message()]);
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["forged"], 1, "{summary}");
    assert_eq!(summary["hard"], 0);
    assert_eq!(campaign.state("A1"), "sent");
    assert_eq!(campaign.events("A1", "bounced"), 0);
    let kind: String = campaign.scalar("SELECT kind FROM bounces");
    assert_eq!(kind, "forged");
}

#[test]
fn a_malformed_or_badly_signed_token_marks_nobody_whatever_its_final_recipient_says() {
    let mut campaign = Campaign::new(PEOPLE);
    campaign
        .campaign
        .set("BREACHMAIL_SENDER_BOUNCE_DOMAIN", BOUNCE_DOMAIN);
    campaign.mark_sent("A1");
    let genuine = campaign.verp("A1", 1);
    let (local, domain) = genuine.split_once('@').expect("an address");
    let last = if local.ends_with('a') { 'b' } else { 'a' };
    // Our prefix at our bounce domain, then: nothing like a token; a token of the wrong
    // length; a token whose signature is wrong. Each names Alice as the Final-Recipient.
    let addresses = [
        format!("b-zzzzzzzzzzzzzzzzzzzzzzzzz@{domain}"),
        format!("b-@{domain}"),
        format!("{}@{domain}", &local[..local.len() - 2]),
        format!("{}{last}@{domain}", &local[..local.len() - 1]),
    ];
    let messages: Vec<String> = addresses
        .iter()
        .enumerate()
        .map(|(serial, to)| {
            Dsn {
                serial: serial as u32,
                ..Dsn::hard(to.clone(), "alice@example.org")
            }
            .message()
        })
        .collect();
    let mbox = campaign.path("forged.mbox");
    write_mbox(&mbox, &messages);
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["forged"], 4, "{summary}");
    assert_eq!(summary["hard"], 0, "{summary}");
    assert_eq!(campaign.state("A1"), "sent");
    assert_eq!(campaign.events("A1", "bounced"), 0);
    let matched: i64 = campaign.scalar("SELECT count(*) FROM bounces WHERE person_id IS NOT NULL");
    assert_eq!(matched, 0);

    // The same Final-Recipient with no token at all (another address of ours) still matches.
    let untokened = Dsn {
        serial: 9,
        ..Dsn::hard(format!("postmaster@{domain}"), "alice@example.org")
    };
    let mbox = campaign.path("untokened.mbox");
    write_mbox(&mbox, &[untokened.message()]);
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["hard"], 1, "{summary}");
    assert_eq!(campaign.state("A1"), "bounced");
}

#[test]
fn a_report_listing_ten_thousand_recipients_under_one_token_is_one_row() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    let one = Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message();
    let block = "Final-Recipient: rfc822; alice@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected\r\n\r\n";
    assert!(one.contains(block), "the DSN has the expected report block");
    let many: String = (0..10_000)
        .map(|i| block.replace("alice@example.org", &format!("r{i}@example.net")))
        .collect();
    let message = one.replacen(block, &many, 1);
    let mbox = campaign.path("wide.mbox");
    write_mbox(&mbox, &[message]);
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["hard"], 1, "{summary}");
    let rows: i64 = campaign.scalar("SELECT count(*) FROM bounces");
    assert_eq!(rows, 1);
    let listed: i64 = campaign.scalar("SELECT recipients FROM bounces");
    assert_eq!(listed, 10_000);
    assert_eq!(campaign.state("A1"), "bounced");
    assert_eq!(campaign.events("A1", "bounced"), 1);
}

#[test]
fn soft_bounces_and_auto_replies_change_no_state() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    let soft = Dsn {
        status: "4.2.2",
        action: "delayed",
        ..Dsn::hard(campaign.verp("A1", 1), "alice@example.org")
    };
    let soft_path = campaign.path("soft.eml");
    std::fs::write(&soft_path, soft.message()).expect("writes");
    let summary = campaign.bounces(&[&soft_path, &corpus("autoreply-ooo.eml")]);
    assert_eq!(summary["soft"], 1, "{summary}");
    assert_eq!(summary["ignored"], 1, "{summary}");
    assert_eq!(campaign.state("A1"), "sent");
    assert_eq!(campaign.events("A1", "soft_bounce"), 1);
}

#[test]
fn maildirs_single_files_and_broken_messages_are_all_read() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    campaign.mark_sent("A2");
    let maildir = campaign.path("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    std::fs::write(
        maildir.join("new/1741680912.M1P1.mx"),
        Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message(),
    )
    .expect("writes");
    std::fs::write(
        maildir.join("cur/1741680001.M2P2.mx:2,S"),
        Dsn::hard(campaign.verp("A2", 1), "bruno@example.org").message(),
    )
    .expect("writes");
    std::fs::copy(
        corpus("garbage.eml"),
        maildir.join("cur/1741680002.M3P3.mx:2,S"),
    )
    .expect("copies");
    // Still being delivered: not read.
    std::fs::copy(
        corpus("exim-hard.eml"),
        maildir.join("tmp/1741689999.M4P4.mx"),
    )
    .expect("copies");

    let output = campaign.run(&[
        "bounces",
        "--json",
        maildir.to_str().expect("utf-8"),
        corpus("truncated-empty.eml").to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(summary["messages"], 4, "{summary}");
    assert_eq!(summary["hard"], 2, "{summary}");
    assert_eq!(summary["errors"], 2, "{summary}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1741680002.M3P3.mx:2,S"), "{stderr}");
    assert!(stderr.contains("truncated-empty.eml"), "{stderr}");
    assert_eq!(campaign.state("A1"), "bounced");
    assert_eq!(campaign.state("A2"), "bounced");
}

#[test]
fn the_corpus_mbox_is_read_without_marking_anyone_by_its_foreign_tokens() {
    let campaign = Campaign::new(PEOPLE);
    let summary = campaign.bounces(&[&corpus("mixed.mbox")]);
    assert_eq!(summary["messages"], 5, "{summary}");
    // The corpus was signed by no campaign of ours: every token in it is forged here.
    assert_eq!(summary["hard"], 0, "{summary}");
    assert_eq!(summary["ignored"], 2, "{summary}");
    let summary_text = campaign.run(&["bounces", corpus("mixed.mbox").to_str().expect("utf-8")]);
    let line = String::from_utf8_lossy(&summary_text.stdout);
    assert!(line.starts_with("bounces: 5 messages:"), "{line}");
    assert!(line.contains("duplicates"), "{line}");
}

#[test]
fn a_bounce_of_an_older_generation_changes_nothing() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    let mbox = campaign.path("first.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message()],
    );
    campaign.bounces(&[&mbox]);
    assert_eq!(campaign.state("A1"), "bounced");
    let resend = campaign.run(&["resend", "--bounced"]);
    assert!(resend.status.success(), "{resend:?}");
    assert_eq!(campaign.generation("A1"), 2);
    campaign.mark_sent("A1");

    // A late copy of the first generation's bounce (another relay, other bytes).
    let late = Dsn {
        serial: 9,
        ..Dsn::hard(campaign.verp("A1", 1), "alice@example.org")
    };
    let mbox = campaign.path("late.mbox");
    write_mbox(&mbox, &[late.message()]);
    let summary = campaign.bounces(&[&mbox]);
    assert_eq!(summary["stale_generation"], 1, "{summary}");
    assert_eq!(summary["hard"], 0, "{summary}");
    assert_eq!(campaign.state("A1"), "sent");
}

#[test]
fn resend_starts_a_new_generation_and_keeps_the_old_evidence() {
    let campaign = Campaign::new(PEOPLE);
    campaign.mark_sent("A1");
    campaign.mark_failed("A2", "550 5.1.1 unknown user");
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message()],
    );
    campaign.bounces(&[&mbox]);
    let old_message_id = campaign.message_id("A1", 1);

    let output = campaign.run(&["resend", "--bounced"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("resend: 1 people back to pending"),
        "{stdout}"
    );
    // The address did not change since it bounced: warned about, resent anyway.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("A1"), "{stderr}");
    assert_eq!(campaign.state("A1"), "pending");
    assert_eq!(campaign.generation("A1"), 2);
    assert_eq!(
        campaign.state("A2"),
        "failed",
        "--bounced leaves failed letters alone"
    );
    let (attempts, message_id): (i64, Option<String>) = campaign
        .runtime
        .block_on(
            sqlx::query_as("SELECT attempts, message_id FROM deliveries WHERE person_id = ?")
                .bind(campaign.id("A1"))
                .fetch_one(&campaign.pool),
        )
        .expect("delivery");
    assert_eq!((attempts, message_id), (0, None));
    assert_eq!(campaign.events("A1", "bounced"), 1, "old events kept");
    assert_eq!(campaign.events("A1", "resend"), 1);
    let resend_generation: i64 = campaign.scalar(&format!(
        "SELECT generation FROM events WHERE kind = 'resend' AND person_id = {}",
        campaign.id("A1")
    ));
    assert_eq!(resend_generation, 2);
    assert_ne!(campaign.message_id("A1", 2), old_message_id);

    let output = campaign.run(&["resend", "--failed"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(campaign.state("A2"), "pending");
    assert_eq!(campaign.generation("A2"), 2);
}

#[test]
fn changed_only_resends_only_people_whose_address_was_fixed() {
    let campaign = Campaign::new(PEOPLE);
    for person in ["A1", "A2"] {
        campaign.mark_sent(person);
    }
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[
            Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message(),
            Dsn::hard(campaign.verp("A2", 1), "bruno@example.org").message(),
        ],
    );
    campaign.bounces(&[&mbox]);
    let fixed = campaign.path("fixed.csv");
    std::fs::write(
        &fixed,
        PEOPLE.replace("alice@example.org", "alice.martin@example.org"),
    )
    .expect("writes");
    let update = campaign.run(&["import", "--update", fixed.to_str().expect("utf-8")]);
    assert!(update.status.success(), "{update:?}");

    let output = campaign.run(&["resend", "--bounced", "--changed-only"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(campaign.state("A1"), "pending");
    let email: String = campaign.scalar(&format!(
        "SELECT email FROM deliveries WHERE person_id = {}",
        campaign.id("A1")
    ));
    assert_eq!(email, "alice.martin@example.org");
    assert_eq!(campaign.state("A2"), "bounced", "unchanged address skipped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("A2"), "{stderr}");
}

#[test]
fn a_bounced_main_address_gives_way_to_the_alternative_one() {
    let people = PEOPLE.replace(
        "A1,alice@example.org,,",
        "A1,alice@example.org,alice.perso@example.net,",
    );
    let campaign = Campaign::new(&people);
    campaign.mark_sent("A1");
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message()],
    );
    campaign.bounces(&[&mbox]);
    let output = campaign.run(&["resend", "--bounced", "--changed-only"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(campaign.state("A1"), "pending");
    let (email, domain): (String, String) = campaign
        .runtime
        .block_on(
            sqlx::query_as("SELECT email, email_domain FROM deliveries WHERE person_id = ?")
                .bind(campaign.id("A1"))
                .fetch_one(&campaign.pool),
        )
        .expect("delivery");
    assert_eq!(email, "alice.perso@example.net");
    assert_eq!(domain, "example.net");
}

#[test]
fn resend_by_ref_refuses_unknown_people_and_skips_those_without_an_address() {
    let people =
        format!("{PEOPLE}A6,,,M,Félix,Blanc,fr,6 rue Haute,67000,Strasbourg,France,name\n");
    let campaign = Campaign::new(&people);
    campaign.mark_sent("A1");
    let unknown = campaign.run(&["resend", "--ref", "A1", "--ref", "NOPE"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NOPE"));
    assert_eq!(campaign.state("A1"), "sent", "nothing changed");

    let output = campaign.run(&["resend", "--ref", "A1", "--ref", "A6"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(campaign.state("A1"), "pending");
    assert_eq!(campaign.generation("A1"), 2);
    assert_eq!(campaign.state("A6"), "no_email");
    assert!(String::from_utf8_lossy(&output.stderr).contains("A6"));
}

#[test]
fn the_postal_export_lists_everyone_not_reached_with_the_reason() {
    let people = format!(
        "{}A6,,,M,Félix,=HYPERLINK(\"http://x\"),fr,6 rue Haute,67000,Strasbourg,France,name\n",
        PEOPLE
    );
    let campaign = Campaign::new(&people);
    for person in ["A1", "A3"] {
        campaign.mark_sent(person);
    }
    campaign.mark_failed("A2", "550 5.1.1 <bruno@example.org>: no such user");
    let mbox = campaign.path("bounces.mbox");
    write_mbox(
        &mbox,
        &[Dsn::hard(campaign.verp("A1", 1), "alice@example.org").message()],
    );
    campaign.bounces(&[&mbox]);

    let out = campaign.path("postal.csv");
    let output = campaign.run(&["export", "postal", "--out", out.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(mode(&out), 0o600);
    let mut reader = csv::Reader::from_path(&out).expect("reads the CSV");
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "ref",
            "notice_id",
            "civility",
            "first_name",
            "last_name",
            "address_line1",
            "address_line2",
            "postcode",
            "city",
            "country",
            "state",
            "reason"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    let refs: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(
        refs,
        ["A1", "A2", "A6"],
        "sent and pending letters are not postal cases"
    );
    let row = |person: &str| rows.iter().find(|r| &r[0] == person).expect("row");
    assert_eq!(&row("A1")[10], "bounced");
    assert!(row("A1")[11].contains("Recipient address rejected"));
    assert_eq!(&row("A1")[1], campaign.notice_id("A1"));
    assert_eq!(&row("A1")[5], "1 rue de la Paix");
    assert_eq!(&row("A2")[10], "failed");
    assert_eq!(
        &row("A2")[11],
        "550 5.1.1 <bruno@example.org>: no such user"
    );
    assert_eq!(&row("A6")[10], "no_email");
    assert_eq!(&row("A6")[11], "no e-mail address");
    assert_eq!(
        &row("A6")[4],
        "'=HYPERLINK(\"http://x\")",
        "formula neutralised"
    );

    // Without --out the CSV goes to stdout.
    let stdout = campaign.run(&["export", "postal"]);
    assert!(stdout.status.success());
    assert_eq!(
        String::from_utf8_lossy(&stdout.stdout),
        std::fs::read_to_string(&out).expect("reads")
    );
}

#[test]
fn postal_letters_are_written_with_the_given_letter_text() {
    let people =
        format!("{PEOPLE}A6,,,M,Félix,Blanc,fr,6 rue Haute,67000,Strasbourg,France,name\n");
    let campaign = Campaign::new(&people);
    let letters = campaign.path("letters");
    let render: breachmail::postal::LetterText = &|person| {
        Ok(format!(
            "Bonjour {}",
            person.display_name().unwrap_or_default()
        ))
    };
    let mut csv = Vec::new();
    let summary = campaign
        .runtime
        .block_on(breachmail::postal::export(
            &campaign.pool,
            Box::new(&mut csv),
            Some((letters.as_path(), render)),
        ))
        .expect("exports");
    assert_eq!(summary.people, 1);
    assert_eq!(summary.letters_written, 1);
    let letter = letters.join("A6.txt");
    assert_eq!(
        std::fs::read_to_string(&letter).expect("letter"),
        "Bonjour Félix Blanc"
    );
    assert_eq!(mode(&letter), 0o600);
}

/// The campaign-sized figure: 100,000 bounces from one mbox, against 100,000 imported people.
/// Run with `cargo test --release --test not_reached -- --ignored --nocapture ingest_100k`.
#[test]
#[ignore = "timing run: use --release --ignored"]
fn ingest_100k_bounces_from_one_mbox() {
    const PEOPLE_COUNT: usize = 100_000;
    let mut csv = String::from("ref,email,first_name,last_name,language,exposed\n");
    for i in 0..PEOPLE_COUNT {
        csv.push_str(&format!(
            "P{i},person{i}@example{}.org,Prénom,Nom,fr,name;email\n",
            i % 50
        ));
    }
    let campaign = Campaign::new(&csv);
    campaign.mark_all_sent();
    // Message-IDs for the tenth of bounces that carry no token.
    campaign.runtime.block_on(async {
        let mut tx = campaign.pool.begin().await.expect("tx");
        for i in (0..PEOPLE_COUNT).filter(|i| i % 10 == 7) {
            let id = (i + 1) as i64;
            let message_id = verp::message_id(
                &campaign.key,
                DeliveryRef {
                    person_id: id,
                    generation: 1,
                },
                MESSAGE_ID_DOMAIN,
            );
            sqlx::query("UPDATE deliveries SET message_id = ? WHERE person_id = ?")
                .bind(message_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("update");
        }
        tx.commit().await.expect("commit");
    });
    let autoreply = std::fs::read_to_string(corpus("autoreply-ooo.eml")).expect("corpus");
    let messages: Vec<String> = (0..PEOPLE_COUNT)
        .map(|i| {
            let id = (i + 1) as i64;
            let delivery = DeliveryRef {
                person_id: id,
                generation: 1,
            };
            let recipient = format!("person{i}@example{}.org", i % 50);
            let token = verp::envelope_sender(&campaign.key, delivery, BOUNCE_DOMAIN);
            let message_id = verp::message_id(&campaign.key, delivery, MESSAGE_ID_DOMAIN);
            match i % 10 {
                0..=5 => Dsn {
                    message_id: Some(message_id),
                    ..Dsn::hard(token, &recipient)
                }
                .message(),
                6 => Dsn {
                    status: "4.2.2",
                    action: "delayed",
                    ..Dsn::hard(token, &recipient)
                }
                .message(),
                7 => Dsn {
                    message_id: Some(message_id),
                    ..Dsn::hard("postmaster@notification.example.fr".into(), &recipient)
                }
                .message(),
                8 => Dsn {
                    serial: i as u32,
                    ..Dsn::hard(
                        "postmaster@notification.example.fr".into(),
                        "gone@nowhere.example",
                    )
                }
                .message(),
                _ => autoreply.replace("Subject:", &format!("X-Serial: {i}\nSubject:")),
            }
        })
        .collect();
    let mbox = campaign.path("100k.mbox");
    write_mbox(&mbox, &messages);
    drop(messages);
    let size = std::fs::metadata(&mbox).expect("mbox").len();

    let started = std::time::Instant::now();
    let summary = campaign.bounces(&[&mbox]);
    let elapsed = started.elapsed();
    println!(
        "{} bounce messages ({:.1} MiB) ingested in {:.2} s ({:.0}/s): {summary}",
        PEOPLE_COUNT,
        size as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64(),
        PEOPLE_COUNT as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(summary["messages"], PEOPLE_COUNT);
    assert_eq!(summary["hard"], 70_000);
    assert_eq!(summary["soft"], 10_000);
    assert_eq!(summary["unmatched"], 10_000);
    assert_eq!(summary["ignored"], 10_000);
    if !cfg!(debug_assertions) {
        assert!(elapsed.as_secs_f64() <= 20.0, "took {elapsed:?}");
    }
}

/// The corpus message `name` with its foreign VERP token and Message-ID replaced by those of this
/// person's letter.
fn corpus_for(campaign: &Campaign, name: &str, person_ref: &str) -> String {
    std::fs::read_to_string(corpus(name))
        .expect("corpus file")
        .replace(
            "b-0000002s01k3h6q9z2m4x7w@bounces.example.fr",
            &campaign.verp(person_ref, 1),
        )
        .replace(
            "3f9a1c0e5b7d2a64c8e1f0b2@notification.example.fr",
            &campaign.message_id(person_ref, 1),
        )
}

#[test]
fn complaints_delays_and_replies_are_recorded_apart_from_bounces() {
    let campaign = Campaign::new(PEOPLE);
    for person in ["A1", "A2", "A3"] {
        campaign.mark_sent(person);
    }
    let complaint = campaign.path("complaint.eml");
    std::fs::write(&complaint, corpus_for(&campaign, "arf-laposte.eml", "A1")).expect("writes");
    // Yahoo's report keeps only the headers, with the recipient redacted: the Return-Path's
    // token still names the letter.
    let redacted = campaign.path("redacted.eml");
    std::fs::write(&redacted, corpus_for(&campaign, "arf-yahoo.eml", "A2")).expect("writes");
    let delay = campaign.path("delay.eml");
    std::fs::write(&delay, corpus_for(&campaign, "postfix-delayed.eml", "A3")).expect("writes");
    let replies = campaign.path("replies");
    let output = campaign.run(&[
        "bounces",
        "--json",
        "--replies-to",
        replies.to_str().expect("utf-8"),
        complaint.to_str().expect("utf-8"),
        redacted.to_str().expect("utf-8"),
        delay.to_str().expect("utf-8"),
        corpus("reply-person.eml").to_str().expect("utf-8"),
        corpus("autoreply-outlook-fr.eml").to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(summary["complaints"], 2, "{summary}");
    assert_eq!(
        summary["complaints_by_provider"]["laposte.net"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["complaints_by_provider"]["yahoo.com"], 1,
        "{summary}"
    );
    assert_eq!(summary["delayed"], 1, "{summary}");
    assert_eq!(summary["replies"], 1, "{summary}");
    assert_eq!(summary["auto_replies"], 1, "{summary}");
    assert_eq!(summary["hard"], 0, "{summary}");
    assert_eq!(summary["soft"], 0, "{summary}");
    // A complaint withdraws nothing: the letters stay sent, with the evidence beside them.
    for person in ["A1", "A2", "A3"] {
        assert_eq!(campaign.state(person), "sent", "{person}");
    }
    assert_eq!(campaign.events("A1", "complained"), 1);
    assert_eq!(campaign.events("A2", "complained"), 1);
    assert_eq!(campaign.events("A3", "delayed"), 1);
    assert_eq!(campaign.events("A3", "soft_bounce"), 0);
    // The person's reply is written out for the operator, owner-only.
    let written: Vec<PathBuf> = std::fs::read_dir(&replies)
        .expect("replies folder")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(mode(&written[0]), 0o600);
    assert_eq!(mode(&replies), 0o700);
    let reply = std::fs::read_to_string(&written[0]).expect("reply");
    assert!(reply.contains("Merci de me rappeler"), "{reply}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1 replies from people"), "{stderr}");
    // The report shows the complaints per provider.
    let report = campaign.path("report.html");
    let output = campaign.run(&["report", "--html", report.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{output:?}");
    let page = std::fs::read_to_string(&report).expect("report");
    assert!(
        page.contains("Plaintes transmises par les fournisseurs de messagerie"),
        "no complaints section, in the campaign's language"
    );
    assert!(page.contains("<td>laposte.net</td>"), "no laposte.net row");
    // Read again: nothing counted twice.
    let again = campaign.bounces(&[&complaint, &redacted, &delay]);
    assert_eq!(again["complaints"], 0, "{again}");
    assert_eq!(again["duplicates"], 3, "{again}");
    assert_eq!(campaign.events("A1", "complained"), 1);
}

#[test]
fn the_mailbox_must_be_named_and_its_password_given_outside_the_file() {
    let campaign = Campaign::new(PEOPLE);
    let output = campaign.run(&["bounces"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--imap"));
    let output = campaign.run(&["bounces", "--imap", "imaps://bounces@127.0.0.1:1/INBOX"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("BREACHMAIL_BOUNCES_PASSWORD"));
    let output = campaign.run(&[
        "bounces",
        "--imap",
        "imaps://bounces:hunter2@127.0.0.1/INBOX",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("BREACHMAIL_BOUNCES_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
