//! `check --dns` against a real DNS server: dnsmasq on a free 127.0.0.1 port, serving a zone this
//! test writes, asked through `--resolver`. A correct zone passes; each broken record is named with
//! the record to publish; a server that never answers is a DNS failure, not a missing record; the
//! result reaches `status`, and `send` warns until a check has passed. The dnsmasq tests are
//! `#[ignore]`d in plain `cargo test` and run by `.ci/run` with `--ignored` (which installs
//! dnsmasq-base); they fail, never skip, when dnsmasq is missing.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::{Script, SmtpServer};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// dnsmasq answering for example.fr only (from its configuration), nothing forwarded.
struct DnsServer {
    child: Child,
    port: u16,
}

impl DnsServer {
    /// Starts dnsmasq with these `txt-record=`/`mx-host=` lines on a free port; retried on
    /// another port if the one picked was taken meanwhile.
    fn start(dir: &Path, records: &[String]) -> DnsServer {
        assert!(
            Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: install dnsmasq-base (apt-get install dnsmasq-base) to run the DNS end-to-end tests"
        );
        let config = dir.join("zone.conf");
        let mut text = "no-resolv\nno-hosts\nlocal=/example.fr/\n".to_owned();
        for record in records {
            text.push_str(record);
            text.push('\n');
        }
        std::fs::write(&config, text).unwrap();
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let mut child = Command::new(DNSMASQ)
                .arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", config.display()))
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg("--pid-file=")
                .arg("--user=root")
                .spawn()
                .expect("start dnsmasq");
            if Self::answering(&mut child, port) {
                return DnsServer { child, port };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start on 127.0.0.1");
    }

    /// Waits (bounded) until dnsmasq answers a query on `port`; false if it exited or never did.
    fn answering(child: &mut Child, port: u16) -> bool {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A query for example.fr's SOA, id 1: any answer means it is up.
        let query = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x02fr\x00\x00\x06\x00\x01";
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let _ = socket.send_to(query, ("127.0.0.1", port));
            let mut answer = [0u8; 512];
            if socket.recv(&mut answer).is_ok() {
                return true;
            }
        }
        false
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 at the time of asking.
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The public key of tests/keys/rsa.pem as a DKIM record carries it, from openssl's own output
/// format (SubjectPublicKeyInfo, base64): the independent reading of the key.
fn rsa_public_key() -> String {
    let pem = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa_public.pem"),
    )
    .unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// A TXT record line for dnsmasq, the value cut in strings of 255 as a zone file holds it.
fn txt(name: &str, value: &str) -> String {
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("txt-record={name},{}", strings.join(","))
}

/// The zone a campaign of notification.example.fr, bouncing to bounces.example.fr through
/// relay.example.fr and signing with the RSA test key as s2025, needs.
fn correct_zone() -> Vec<String> {
    vec![
        txt(
            "s2025._domainkey.notification.example.fr",
            &format!("v=DKIM1; k=rsa; p={}", rsa_public_key()),
        ),
        txt("bounces.example.fr", "v=spf1 a:relay.example.fr -all"),
        txt(
            "notification.example.fr",
            "v=spf1 include:_spf.example.fr ~all",
        ),
        txt("_spf.example.fr", "v=spf1 ip4:192.0.2.0/24 -all"),
        txt(
            "_dmarc.example.fr",
            "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.fr",
        ),
        "mx-host=bounces.example.fr,mail.example.fr,10".to_owned(),
        "mx-host=notification.example.fr,mail.example.fr,10".to_owned(),
    ]
}

/// The campaign: From notification.example.fr (the default), bounces.example.fr, the RSA key.
fn campaign(dkim_domain: &str) -> Campaign {
    use std::os::unix::fs::PermissionsExt;
    let mut campaign = Campaign::new();
    let key = campaign.path("dkim.pem");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa.pem"),
        &key,
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = std::fs::read_to_string(campaign.config()).unwrap();
    config.push_str(&format!(
        "\n[dkim]\nselector = \"s2025\"\ndomain = \"{dkim_domain}\"\nprivate_key = \"dkim.pem\"\n"
    ));
    std::fs::write(campaign.config(), config).unwrap();
    campaign
        .set("BREACHMAIL_SENDER_BOUNCE_DOMAIN", "bounces.example.fr")
        .set("BREACHMAIL_SMTP_URL", "smtp://relay.example.fr:25");
    campaign
}

fn check_dns(campaign: &Campaign, resolver: &str) -> (Output, serde_json::Value) {
    let output = campaign.run(&["check", "--dns", "--resolver", resolver, "--json"]);
    let report = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| {
        panic!(
            "check --dns --json prints JSON ({e}); stdout: {} stderr: {}",
            stdout(&output),
            stderr(&output)
        )
    });
    (output, report)
}

/// A finding that is not a pass: check, name, outcome, and the records to publish as
/// `name type value`.
type Problem = (String, String, String, Vec<String>);

fn problems(report: &serde_json::Value) -> Vec<Problem> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["outcome"] != "pass")
        .map(|f| {
            let publish = f["publish"]
                .as_array()
                .map(|records| {
                    records
                        .iter()
                        .map(|r| {
                            format!("{} {} {}", r["name"], r["type"], r["value"]).replace('"', "")
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                f["check"].as_str().unwrap().to_owned(),
                f["name"].as_str().unwrap().to_owned(),
                f["outcome"].as_str().unwrap().to_owned(),
                publish,
            )
        })
        .collect()
}

/// Runs the check against `zone` and returns its exit code and problems.
fn check_zone(campaign: &Campaign, zone: &[String]) -> (Option<i32>, Vec<Problem>) {
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(dir.path(), zone);
    let (output, report) = check_dns(campaign, &server.address());
    (output.status.code(), problems(&report))
}

#[test]
#[ignore = "needs dnsmasq (apt-get install dnsmasq-base); run by .ci/run"]
fn a_correct_zone_passes_and_status_shows_it() {
    let campaign = campaign("notification.example.fr");
    let (code, problems) = check_zone(&campaign, &correct_zone());
    assert_eq!(problems, [], "a correct zone has no problem");
    assert_eq!(code, Some(0));
    let status = campaign.status();
    assert_eq!(status["dns_check"]["passed"], true, "{status}");
    // The text form names every check and says it passed.
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(dir.path(), &correct_zone());
    let output = campaign.run(&["check", "--dns", "--resolver", &server.address()]);
    let text = stdout(&output);
    for check in ["dkim", "spf", "dmarc", "alignment", "mx"] {
        assert!(text.contains(&format!(" {check} ")), "{check} in {text}");
    }
    assert!(text.contains("every check passed"), "{text}");
}

#[test]
#[ignore = "needs dnsmasq (apt-get install dnsmasq-base); run by .ci/run"]
fn each_broken_record_is_named_with_the_record_to_publish() {
    let campaign = campaign("notification.example.fr");
    let ours = format!(
        "s2025._domainkey.notification.example.fr TXT v=DKIM1; k=rsa; p={}",
        rsa_public_key()
    );
    let zone_without = |prefix: &str| -> Vec<String> {
        correct_zone()
            .into_iter()
            .filter(|line| !line.contains(prefix))
            .collect()
    };

    // A DKIM record left from another key.
    let mut zone = zone_without("_domainkey");
    zone.push(txt(
        "s2025._domainkey.notification.example.fr",
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrongwrongwrongwrongAQAB",
    ));
    let (code, found) = check_zone(&campaign, &zone);
    assert_eq!(code, Some(1));
    assert_eq!(found.len(), 1, "{found:?}");
    let (check, name, outcome, publish) = &found[0];
    assert_eq!(
        (check.as_str(), name.as_str(), outcome.as_str()),
        (
            "dkim",
            "s2025._domainkey.notification.example.fr",
            "problem"
        )
    );
    assert_eq!(publish, std::slice::from_ref(&ours));

    // No DMARC record anywhere.
    let (code, found) = check_zone(&campaign, &zone_without("_dmarc"));
    assert_eq!(code, Some(1));
    assert_eq!(
        found,
        [(
            "dmarc".to_owned(),
            "_dmarc.notification.example.fr".to_owned(),
            "problem".to_owned(),
            vec![
                "_dmarc.example.fr TXT v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.fr"
                    .to_owned()
            ]
        )]
    );

    // A bounce domain without MX: no bounce would come back.
    let (code, found) = check_zone(&campaign, &zone_without("mx-host=bounces"));
    assert_eq!(code, Some(1));
    assert_eq!(
        found,
        [(
            "mx".to_owned(),
            "bounces.example.fr".to_owned(),
            "problem".to_owned(),
            vec!["bounces.example.fr MX 10 mail.example.fr.".to_owned()]
        )]
    );

    // SPF with 11 look-ups: 2 here, 9 more in the included record.
    let mut zone = zone_without("bounces.example.fr,\"v=spf1");
    zone.push(txt(
        "bounces.example.fr",
        "v=spf1 a:relay.example.fr include:_many.example.fr -all",
    ));
    zone.push(txt(
        "_many.example.fr",
        "v=spf1 a mx ptr a:a.example.fr a:b.example.fr a:c.example.fr mx:d.example.fr exists:e.example.fr a:f.example.fr ~all",
    ));
    let (code, found) = check_zone(&campaign, &zone);
    assert_eq!(code, Some(1));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("spf", "bounces.example.fr")
    );
    assert_eq!(
        found[0].3,
        ["bounces.example.fr TXT v=spf1 a:relay.example.fr -all"]
    );
    let dir = tempfile::tempdir().unwrap();
    let server = DnsServer::start(dir.path(), &zone);
    let (_, report) = check_dns(&campaign, &server.address());
    let detail = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "spf" && f["outcome"] == "problem")
        .map(|f| f["detail"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(detail.starts_with("11 DNS look-ups"), "{detail}");
}

#[test]
#[ignore = "needs dnsmasq (apt-get install dnsmasq-base); run by .ci/run"]
fn a_dkim_domain_outside_the_from_organisation_is_misaligned() {
    let campaign = campaign("mailer.example.com");
    // The key is published at its own domain, which this server also serves.
    let mut zone = correct_zone();
    zone.push("local=/example.com/".to_owned());
    zone.push(txt(
        "s2025._domainkey.mailer.example.com",
        &format!("v=DKIM1; k=rsa; p={}", rsa_public_key()),
    ));
    let (code, found) = check_zone(&campaign, &zone);
    assert_eq!(code, Some(1));
    assert_eq!(found.len(), 1, "{found:?}");
    let (check, name, _, publish) = &found[0];
    assert_eq!(
        (check.as_str(), name.as_str()),
        ("alignment", "s2025._domainkey.mailer.example.com")
    );
    assert_eq!(
        publish,
        &[format!(
            "s2025._domainkey.notification.example.fr TXT v=DKIM1; k=rsa; p={}",
            rsa_public_key()
        )]
    );
}

#[test]
#[ignore = "needs dnsmasq (apt-get install dnsmasq-base); run by .ci/run"]
fn a_refused_query_is_a_dns_failure_not_a_missing_record() {
    // The server answers for example.fr only: the DKIM key of another domain gets REFUSED.
    let campaign = campaign("notification.example.net");
    let (code, found) = check_zone(&campaign, &correct_zone());
    assert_eq!(code, Some(1));
    let dkim = found
        .iter()
        .find(|f| f.0 == "dkim")
        .expect("a DKIM finding");
    assert_eq!(dkim.2, "dns_failure", "{found:?}");
    assert!(
        dkim.3.is_empty(),
        "nothing to publish for an unknown answer"
    );
}

/// A resolver that never answers: every look-up times out, and none is reported as missing.
#[test]
fn a_silent_resolver_is_a_dns_failure_and_status_shows_the_failed_check() {
    let campaign = campaign("notification.example.fr");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (output, report) = check_dns(&campaign, &address);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report["problems"], 0, "{report}");
    assert!(report["dns_failures"].as_u64().unwrap() >= 4, "{report}");
    for finding in report["findings"].as_array().unwrap() {
        assert!(
            finding["outcome"] == "dns_failure" || finding["check"] == "alignment",
            "{finding}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    let status = campaign.status();
    assert_eq!(status["dns_check"]["passed"], false, "{status}");
    drop(silent);
}

#[tokio::test]
async fn send_warns_while_no_dns_check_has_passed() {
    let server = SmtpServer::start(Script::accept_all()).await;
    let mut campaign = Campaign::with_people(&[person("P1", "one@example.fr")]);
    campaign.send_to(&server.url());
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`breachmail check --dns` never ran"),
        "{}",
        stderr(&output)
    );
    assert_eq!(campaign.status()["dns_check"], serde_json::Value::Null);
}
