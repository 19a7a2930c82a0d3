//! `send` over TLS to a loopback relay with a certificate made for the test: STARTTLS and
//! `smtps://` deliver encrypted when the test CA is trusted, a certificate nobody vouches for is
//! refused before anything is sent or counted, and the login only ever travels encrypted.
//! (The rule that a remote relay without STARTTLS is refused lives in `transport.rs`' unit tests:
//! these tests can only reach loopback.)

mod support;

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Script, SmtpServer};

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
