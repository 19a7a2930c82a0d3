//! `bounces --imap` against the IMAP stand-in of `tests/support` (plain `cargo test` has no real
//! server; `tests/e2e/dovecot_imap.sh` runs the same against Dovecot in CI): the folder's
//! position is kept, so a second run reads only what is new; flagged, moved or deleted after
//! recording; a run killed between recording and moving reads nothing twice; a new UIDVALIDITY
//! reads everything again without counting anything twice; a certificate `bounces.tls_ca` does not
//! vouch for reads nothing, and one on loopback with no TLS keys set is read with a warning.

mod support;

use support::campaign::{Campaign, person, stderr};
use support::files::corpus;
use support::imap_server::{ImapServer, PASSWORD};

const MESSAGES: [&str; 4] = [
    "postfix-dsn-hard.eml",
    "autoreply-ooo.eml",
    "reply-person.eml",
    "exim-delay.eml",
];

fn campaign_for(server: &ImapServer, trust: bool) -> Campaign {
    let mut campaign = Campaign::with_people(&[person("A1", "alice@example.org")]);
    campaign.set("BREACHMAIL_BOUNCES_PASSWORD", PASSWORD);
    if trust {
        let ca = campaign.path("imap-ca.pem");
        std::fs::write(&ca, server.ca_pem()).expect("write the test CA");
        campaign.set("BREACHMAIL_TEST_CA_FILE", ca.to_str().expect("utf-8 path"));
    }
    campaign
}

async fn server_with_corpus() -> ImapServer {
    let server = ImapServer::start().await;
    for name in MESSAGES {
        server.deliver(&std::fs::read(corpus(name)).expect("corpus file"));
    }
    server
}

async fn bounces(campaign: &Campaign, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bounces", "--json"];
    all.extend_from_slice(args);
    let output = campaign.run_async(&all).await;
    assert!(output.status.success(), "bounces: {output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON summary")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_reads_only_what_is_new_and_flags_what_it_read() {
    let server = server_with_corpus().await;
    let campaign = campaign_for(&server, true);
    let url = server.url();

    let first = bounces(&campaign, &["--imap", &url]).await;
    assert_eq!(first["messages"], 4, "{first}");
    assert_eq!(first["auto_replies"], 1, "{first}");
    assert_eq!(first["replies"], 1, "{first}");
    // Flagged \Seen, left in place: nothing is deleted unless asked.
    let inbox = server.folder("INBOX");
    assert_eq!(inbox.len(), 4);
    assert!(inbox.iter().all(|m| m.seen && !m.deleted), "{inbox:?}");

    let second = bounces(&campaign, &["--imap", &url]).await;
    assert_eq!(second["messages"], 0, "{second}");
    server.deliver(&std::fs::read(corpus("arf-yahoo.eml")).expect("corpus file"));
    let third = bounces(&campaign, &["--imap", &url]).await;
    assert_eq!(third["messages"], 1, "{third}");
    // Its Return-Path carries another campaign's token: recorded, counted as forged, nobody marked.
    assert_eq!(third["forged"], 1, "{third}");
    assert_eq!(server.most_fetches_of_one_message(), 1);
    assert_eq!(server.body_fetches(), 5);

    // The server rebuilt its index: every UID is new, every message is read again, and each
    // counts as a duplicate of what was recorded.
    server.renumber();
    let again = bounces(&campaign, &["--imap", &url]).await;
    assert_eq!(again["messages"], 5, "{again}");
    assert_eq!(again["ignored"], 0, "{again}");
    assert_eq!(again["complaints"], 0, "{again}");
    assert!(again["duplicates"].as_u64().unwrap_or(0) >= 5, "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_recording_moves_what_it_left_without_reading_it_again() {
    let server = server_with_corpus().await;
    let mut campaign = campaign_for(&server, true);
    let url = server.url();
    let args = [
        "--imap",
        url.as_str(),
        "--move-to",
        "Processed",
        "--imap-batch",
        "2",
    ];

    campaign.set("BREACHMAIL_TEST_ABORT_AFTER_BATCHES", "1");
    let mut all = vec!["bounces"];
    all.extend_from_slice(&args);
    let killed = campaign.run_async(&all).await;
    assert!(!killed.status.success(), "{killed:?}");
    assert!(killed.stdout.is_empty(), "{killed:?}");
    assert_eq!(
        server.folder("INBOX").len(),
        4,
        "nothing moved before dying"
    );
    assert!(
        server.has_folder("Processed"),
        "the folder is created first"
    );
    assert_eq!(server.body_fetches(), 2);

    campaign.set("BREACHMAIL_TEST_ABORT_AFTER_BATCHES", "");
    let rerun = bounces(&campaign, &args).await;
    assert_eq!(rerun["messages"], 2, "{rerun}");
    assert_eq!(rerun["duplicates"], 0, "{rerun}");
    assert!(server.folder("INBOX").is_empty());
    assert_eq!(server.folder("Processed").len(), 4);
    assert_eq!(server.most_fetches_of_one_message(), 1);
    assert_eq!(server.body_fetches(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_only_what_was_recorded() {
    let server = server_with_corpus().await;
    let campaign = campaign_for(&server, true);
    let summary = bounces(&campaign, &["--imap", &server.url(), "--delete"]).await;
    assert_eq!(summary["messages"], 4, "{summary}");
    assert!(server.folder("INBOX").is_empty());
    assert!(!server.has_folder("Processed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_bounces_tls_ca_did_not_sign_reads_nothing() {
    let server = server_with_corpus().await;
    let other = ImapServer::start().await;
    let mut campaign = campaign_for(&server, false);
    let wrong_ca = campaign.path("other-ca.pem");
    std::fs::write(&wrong_ca, other.ca_pem()).expect("write");
    campaign.set(
        "BREACHMAIL_BOUNCES_TLS_CA",
        wrong_ca.to_str().expect("utf-8"),
    );
    let output = campaign
        .run_async(&["bounces", "--imap", &server.url()])
        .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let error = stderr(&output);
    assert!(
        error.contains("the certificate is not trusted (unknown issuer): set bounces.tls_ca to the certificate of the CA that signed it"),
        "{error}"
    );
    assert!(!error.contains(PASSWORD), "{error}");
    assert_eq!(server.body_fetches(), 0);
    assert!(server.folder("INBOX").iter().all(|m| !m.seen));

    // The right CA, and the name the certificate carries: read.
    let mut campaign = campaign_for(&server, false);
    let ca = campaign.path("imap-ca.pem");
    std::fs::write(&ca, server.ca_pem()).expect("write");
    campaign
        .set("BREACHMAIL_BOUNCES_TLS_CA", ca.to_str().expect("utf-8"))
        .set("BREACHMAIL_BOUNCES_TLS_SERVER_NAME", "localhost");
    let output = campaign
        .run_async(&["bounces", "--imap", &server.url()])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        !stderr(&output).contains("not verified"),
        "{}",
        stderr(&output)
    );
    assert_eq!(server.body_fetches(), 4);
}

/// Dovecot as Debian installs it presents a self-signed certificate: on loopback, read
/// encrypted, with one warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_mailbox_on_loopback_with_an_unverified_certificate_is_read_with_a_warning() {
    let server = server_with_corpus().await;
    let campaign = campaign_for(&server, false);
    let output = campaign
        .run_async(&["bounces", "--imap", &server.url()])
        .await;
    assert!(output.status.success(), "{output:?}");
    let log = stderr(&output);
    assert_eq!(
        log.matches(
            "the certificate is not verified (self-signed, or unknown issuer): going on encrypted"
        )
        .count(),
        1,
        "{log}"
    );
    assert!(log.contains("to verify it, set bounces.tls_ca"), "{log}");
    assert_eq!(server.body_fetches(), 4);
}
