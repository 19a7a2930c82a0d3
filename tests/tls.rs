//! `send` over TLS to a loopback relay with a certificate made for the test: STARTTLS and
//! `smtps://` deliver encrypted when the test CA is trusted, a certificate nobody vouches for is
//! refused before anything is sent or counted, and the login only ever travels encrypted.
//! (The rule that a remote relay without STARTTLS is refused lives in `transport.rs`' unit tests:
//! these tests can only reach loopback.)

mod support;

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Behaviour, Script, SmtpServer};

fn people(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| person(&format!("P{i:04}"), &format!("p{i}@example.fr")))
        .collect()
}

/// A campaign pointed at the server, trusting its CA when `trust` is set.
fn campaign_for(server: &SmtpServer, rows: &[String], trust: bool) -> Campaign {
    let mut campaign = Campaign::with_people(rows);
    campaign
        .set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "0")
        .set("BREACHMAIL_SMTP_TIMEOUT", "5s");
    if trust {
        let ca = campaign.path("test-ca.pem");
        std::fs::write(&ca, server.ca_pem()).expect("write the test CA");
        campaign.set("BREACHMAIL_TEST_CA_FILE", ca.to_str().expect("utf-8 path"));
    }
    campaign
}

async fn attempts(campaign: &Campaign) -> i64 {
    let pool = campaign.db().await;
    let attempts: i64 = sqlx::query_scalar("SELECT coalesce(sum(attempts), 0) FROM deliveries")
        .fetch_one(&pool)
        .await
        .expect("count attempts");
    pool.close().await;
    attempts
}

async fn assert_refused_untouched(server: &SmtpServer, campaign: &Campaign) {
    let output = campaign.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(said.contains("relay refuses this configuration"), "{said}");
    assert!(said.contains("invalid peer certificate"), "{said}");
    assert!(server.accepted().is_empty());
    assert!(campaign.states().await.values().all(|s| s == "pending"));
    assert_eq!(attempts(campaign).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_a_trusted_certificate_delivers_encrypted() {
    let server = SmtpServer::start(Script {
        advertise_starttls: true,
        ..Script::default()
    })
    .await;
    let campaign = campaign_for(&server, &people(3), true);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 3);
    assert!(accepted.iter().all(|m| m.encrypted));
    assert!(server.tls_sessions() >= 1);
    assert!(campaign.states().await.values().all(|s| s == "sent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_an_untrusted_certificate_sends_nothing() {
    let server = SmtpServer::start(Script {
        advertise_starttls: true,
        ..Script::default()
    })
    .await;
    let campaign = campaign_for(&server, &people(3), false);
    assert_refused_untouched(&server, &campaign).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smtps_with_a_trusted_certificate_delivers_encrypted() {
    let server = SmtpServer::start(Script {
        implicit_tls: true,
        ..Script::default()
    })
    .await;
    assert!(server.url().starts_with("smtps://"));
    let campaign = campaign_for(&server, &people(2), true);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let accepted = server.accepted();
    assert_eq!(accepted.len(), 2);
    assert!(accepted.iter().all(|m| m.encrypted));
}

#[tokio::test(flavor = "multi_thread")]
async fn smtps_with_an_untrusted_certificate_sends_nothing() {
    let server = SmtpServer::start(Script {
        implicit_tls: true,
        ..Script::default()
    })
    .await;
    let campaign = campaign_for(&server, &people(2), false);
    assert_refused_untouched(&server, &campaign).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_travels_only_inside_tls() {
    let secret = "tls-only-Pa55";
    let server = SmtpServer::start(Script {
        advertise_starttls: true,
        require_auth: Some(("relay-user".into(), secret.into())),
        ..Script::default()
    })
    .await;
    let mut campaign = campaign_for(&server, &people(2), true);
    campaign
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", secret);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 2);
    assert!(server.accepted().iter().all(|m| m.encrypted));
    assert_eq!(server.auth_in_clear(), 0);
}

/// What a relay may answer after the final dot besides a tidy `250 2.0.0 Ok`: Latin-1 text,
/// and a queue report longer than any line lettre reads (50 kB on one line, then 200 more).
fn odd_acceptances() -> Vec<(String, Behaviour)> {
    let latin1 =
        b"250 2.0.0 Message accept\xe9 pour livraison (file d'attente \xabA1B2\xbb)\r\n".to_vec();
    let mut long = b"250 2.0.0 Ok: queued as ".to_vec();
    long.extend(std::iter::repeat_n(b'Q', 50_000));
    long.extend_from_slice(b"\r\n");
    let mut many = Vec::new();
    for i in 0..200 {
        many.extend_from_slice(format!("250-queued on node {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"250 2.0.0 Ok\r\n");
    vec![
        (
            "p1@example.fr".into(),
            Behaviour::AcceptWithReply { reply: latin1 },
        ),
        (
            "p2@example.fr".into(),
            Behaviour::AcceptWithReply { reply: long },
        ),
        (
            "p3@example.fr".into(),
            Behaviour::AcceptWithReply { reply: many },
        ),
    ]
}

/// A 250 is `sent` whatever its text, on every kind of session: clear, STARTTLS and
/// `smtps://` (the replies are made readable above TLS, not only on clear sessions).
#[tokio::test(flavor = "multi_thread")]
async fn a_250_with_any_text_is_sent_over_clear_and_tls_sessions() {
    for (name, starttls, implicit) in [
        ("clear", false, false),
        ("STARTTLS", true, false),
        ("smtps", false, true),
    ] {
        let server = SmtpServer::start(Script {
            advertise_starttls: starttls,
            implicit_tls: implicit,
            per_recipient: odd_acceptances().into_iter().collect(),
            ..Script::default()
        })
        .await;
        let campaign = campaign_for(&server, &people(4), true);
        let output = campaign.run_async(&["send"]).await;
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let accepted = server.accepted();
        assert_eq!(accepted.len(), 4, "{name}: each letter once");
        assert!(server.unconfirmed().is_empty(), "{name}");
        assert!(
            accepted
                .iter()
                .all(|m| m.encrypted == (starttls || implicit)),
            "{name}"
        );
        let states = campaign.states().await;
        assert!(states.values().all(|s| s == "sent"), "{name}: {states:?}");
        assert_eq!(
            attempts(&campaign).await,
            4,
            "{name}: no letter tried twice"
        );
    }
}
