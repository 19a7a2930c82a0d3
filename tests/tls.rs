//! `send` over TLS to a loopback relay with a certificate made for the test, as relays are
//! really run: a local relay's self-signed certificate (Debian's Postfix "snakeoil") is used
//! encrypted, with one warning; `tls_ca` trusts a private CA or the relay's own certificate, and
//! `tls_server_name` the name a relay reached by address carries; each certificate problem stops
//! the run before anything is sent or counted, saying what to set; the login only ever travels
//! encrypted, and a refused one stops the run as a configuration error.
//! (On loopback, setting `tls_ca` or `tls_server_name` asks for verification: that is how these
//! tests reach the rules of a remote relay, which `tls.rs`' unit tests check directly.)

mod support;

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Behaviour, Script, SmtpServer, TestCertificate};

fn people(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| person(&format!("P{i:04}"), &format!("p{i}@example.fr")))
        .collect()
}

/// How the campaign is told about the server's certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Nothing: the rules for a relay on loopback.
    Nothing,
    /// `smtp.tls_ca` names the PEM the server says to trust.
    TlsCa,
    /// The test suite's own extra root (debug builds only).
    TestCaFile,
}

/// A campaign pointed at the server.
fn campaign_for(server: &SmtpServer, rows: &[String], trust: Trust) -> Campaign {
    let mut campaign = Campaign::with_people(rows);
    campaign
        .set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "0")
        .set("BREACHMAIL_SMTP_TIMEOUT", "5s");
    let ca = campaign.path("relay-ca.pem");
    std::fs::write(&ca, server.ca_pem()).expect("write the test CA");
    let ca = ca.to_str().expect("utf-8 path").to_owned();
    match trust {
        Trust::Nothing => {}
        Trust::TlsCa => {
            campaign.set("BREACHMAIL_SMTP_TLS_CA", &ca);
        }
        Trust::TestCaFile => {
            campaign.set("BREACHMAIL_TEST_CA_FILE", &ca);
        }
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

/// The run stops as a configuration error (exit 2), says `stopped` and `cause`, and nothing
/// is sent, counted or changed.
async fn assert_refused_untouched(
    server: &SmtpServer,
    campaign: &Campaign,
    stopped: &str,
    cause: &str,
) -> String {
    let output = campaign.run_async(&["send"]).await;
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("stopped: {stopped}")), "{said}");
    assert!(said.contains(cause), "{said}");
    assert!(server.accepted().is_empty());
    assert!(campaign.states().await.values().all(|s| s == "pending"));
    assert_eq!(attempts(campaign).await, 0);
    said
}

const OUR_TLS: &str = "our TLS settings refuse this relay";
const UNVERIFIED: &str = "the certificate is not verified (";

fn server_script(certificate: TestCertificate, implicit_tls: bool) -> Script {
    Script {
        advertise_starttls: !implicit_tls,
        implicit_tls,
        certificate,
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_a_trusted_certificate_delivers_encrypted() {
    for trust in [Trust::TlsCa, Trust::TestCaFile] {
        let server = SmtpServer::start(server_script(TestCertificate::default(), false)).await;
        let campaign = campaign_for(&server, &people(3), trust);
        let output = campaign.run_async(&["send"]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(!stderr(&output).contains(UNVERIFIED), "{}", stderr(&output));
        let accepted = server.accepted();
        assert_eq!(accepted.len(), 3);
        assert!(accepted.iter().all(|m| m.encrypted));
        assert!(server.tls_sessions() >= 1);
        assert!(campaign.states().await.values().all(|s| s == "sent"));
    }
}

/// Debian's Postfix as installed: STARTTLS with a self-signed certificate, on the same
/// machine. The letters go, encrypted, and the log says once that the certificate was not
/// verified, however many sessions were opened.
#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_certificate_on_loopback_is_used_encrypted_with_one_warning() {
    for (name, implicit) in [("STARTTLS", false), ("smtps", true)] {
        let snakeoil = TestCertificate {
            names: vec!["localhost".into()],
            self_signed: true,
            ..TestCertificate::default()
        };
        let server = SmtpServer::start(server_script(snakeoil, implicit)).await;
        let mut campaign = campaign_for(&server, &people(12), Trust::Nothing);
        campaign.set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "4");
        let output = campaign.run_async(&["send"]).await;
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let accepted = server.accepted();
        assert_eq!(accepted.len(), 12, "{name}");
        assert!(accepted.iter().all(|m| m.encrypted), "{name}");
        assert!(server.tls_sessions() >= 2, "{name}: several sessions");
        let log = stderr(&output);
        assert_eq!(log.matches(UNVERIFIED).count(), 1, "{name}: {log}");
        assert!(
            log.contains("to verify it, set smtp.tls_ca to its certificate or its CA's"),
            "{name}: {log}"
        );
        assert!(
            log.contains("(self-signed, or unknown issuer)"),
            "{name}: {log}"
        );
        assert!(campaign.states().await.values().all(|s| s == "sent"));
    }
}

/// An untrusted CA on loopback, too: nothing crosses a network, the letters go encrypted.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ca_on_loopback_without_settings_goes_on_encrypted() {
    let server = SmtpServer::start(server_script(TestCertificate::default(), false)).await;
    let campaign = campaign_for(&server, &people(2), Trust::Nothing);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains(UNVERIFIED), "{}", stderr(&output));
    assert!(server.accepted().iter().all(|m| m.encrypted));
    assert_eq!(server.accepted().len(), 2);
}

/// `smtp.tls_ca` naming another CA: verification is asked for, and fails with what to set.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_tls_ca_did_not_sign_is_refused_saying_what_to_set() {
    for implicit in [false, true] {
        let server = SmtpServer::start(server_script(TestCertificate::default(), implicit)).await;
        let other = SmtpServer::start(Script::default()).await;
        let campaign = campaign_for(&server, &people(3), Trust::Nothing);
        let wrong_ca = campaign.path("other-ca.pem");
        std::fs::write(&wrong_ca, other.ca_pem()).expect("write");
        let mut campaign = campaign;
        campaign.set("BREACHMAIL_SMTP_TLS_CA", wrong_ca.to_str().expect("utf-8"));
        let said = assert_refused_untouched(
            &server,
            &campaign,
            OUR_TLS,
            "the certificate is not trusted (unknown issuer): set smtp.tls_ca to the certificate of the CA that signed it",
        )
        .await;
        assert!(!said.contains("relay refuses this configuration"), "{said}");
    }
}

/// An internal relay reached by address, its certificate from a private CA for its name:
/// `tls_ca` and `tls_server_name` make it work; without the name, the error says to set it.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_relay_reached_by_address_works_with_tls_ca_and_tls_server_name() {
    let internal = TestCertificate {
        names: vec!["relay.agence.example".into()],
        ..TestCertificate::default()
    };
    let server = SmtpServer::start(server_script(internal, false)).await;

    let campaign = campaign_for(&server, &people(3), Trust::TlsCa);
    assert_refused_untouched(
        &server,
        &campaign,
        OUR_TLS,
        "the certificate is not valid for the name 127.0.0.1 (it is for relay.agence.example): reach the server by a name its certificate carries, or set smtp.tls_server_name to that name",
    )
    .await;

    let mut campaign = campaign_for(&server, &people(3), Trust::TlsCa);
    campaign.set("BREACHMAIL_SMTP_TLS_SERVER_NAME", "relay.agence.example");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains(UNVERIFIED), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 3);
    assert!(server.accepted().iter().all(|m| m.encrypted));
}

/// The same keys on a `[[relay]]` entry, named as such in the error.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_entry_has_its_own_tls_keys() {
    let internal = TestCertificate {
        names: vec!["relay.agence.example".into()],
        ..TestCertificate::default()
    };
    let server = SmtpServer::start(server_script(internal, false)).await;
    let campaign = campaign_for(&server, &people(2), Trust::Nothing);
    let config = std::fs::read_to_string(campaign.config()).expect("read config");
    let write_config = |name: &str| {
        std::fs::write(
            campaign.config(),
            format!(
                "{config}\n[[relay]]\nurl = \"{}\"\ntls_ca = \"relay-ca.pem\"\n{name}",
                server.url()
            ),
        )
        .expect("write config");
    };
    write_config("");
    assert_refused_untouched(
        &server,
        &campaign,
        OUR_TLS,
        "or set relay[0].tls_server_name to that name",
    )
    .await;
    write_config("tls_server_name = \"relay.agence.example\"\n");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_certificate_is_refused_even_when_trusted() {
    let expired = TestCertificate {
        expired: true,
        ..TestCertificate::default()
    };
    let server = SmtpServer::start(server_script(expired, false)).await;
    let campaign = campaign_for(&server, &people(2), Trust::TlsCa);
    assert_refused_untouched(
        &server,
        &campaign,
        OUR_TLS,
        "the certificate has expired (on 2020-01-01): the server's administrator must renew it",
    )
    .await;
}

/// A relay's own self-signed certificate, named by `tls_ca`, is trusted as it is.
#[tokio::test(flavor = "multi_thread")]
async fn tls_ca_may_be_the_relays_own_self_signed_certificate() {
    let own = TestCertificate {
        names: vec!["relay.agence.example".into()],
        self_signed: true,
        ..TestCertificate::default()
    };
    let server = SmtpServer::start(server_script(own, false)).await;
    let mut campaign = campaign_for(&server, &people(2), Trust::TlsCa);
    campaign.set("BREACHMAIL_SMTP_TLS_SERVER_NAME", "relay.agence.example");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains(UNVERIFIED), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 2);
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
    let mut campaign = campaign_for(&server, &people(2), Trust::Nothing);
    campaign
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", secret);
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 2);
    assert!(server.accepted().iter().all(|m| m.encrypted));
    assert_eq!(server.auth_in_clear(), 0);
}

/// A relay that offers no STARTTLS, even on loopback, never gets the password.
#[tokio::test(flavor = "multi_thread")]
async fn no_login_without_tls_even_on_loopback() {
    let server = SmtpServer::start(Script {
        require_auth: Some(("relay-user".into(), "secret".into())),
        ..Script::default()
    })
    .await;
    let mut campaign = campaign_for(&server, &people(2), Trust::Nothing);
    campaign
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", "secret");
    assert_refused_untouched(
        &server,
        &campaign,
        OUR_TLS,
        "does not offer STARTTLS: refusing to send the password of relay-user unencrypted",
    )
    .await;
    assert_eq!(server.logins(), 0);
}

/// A wrong password: one refused login, a configuration error naming the relay and the keys,
/// nothing sent or counted, no retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_configuration_error_naming_the_relay() {
    let server = SmtpServer::start(Script {
        advertise_starttls: true,
        require_auth: Some(("relay-user".into(), "right-Pa55".into())),
        ..Script::default()
    })
    .await;
    let mut campaign = campaign_for(&server, &people(5), Trust::Nothing);
    campaign
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD", "wrong-Pa55");
    let said = assert_refused_untouched(
        &server,
        &campaign,
        "relay refuses this configuration",
        &format!(
            "the relay {} refused the login: 535 5.7.8 Authentication credentials invalid (at AUTH); check smtp.username (relay-user) and BREACHMAIL_SMTP_PASSWORD",
            server.url()
        ),
    )
    .await;
    assert!(!said.contains("wrong-Pa55"), "{said}");
    assert!(
        server.logins() <= 8,
        "one login per connection at most, no retry loop: {}",
        server.logins()
    );
    // A second run is refused the same way, and still sends nothing.
    let output = campaign.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(server.accepted().is_empty());
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
        let campaign = campaign_for(&server, &people(4), Trust::TestCaFile);
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
