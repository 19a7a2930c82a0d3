//! The promises of docs/operator/security.md, through the real binary: the SMTP password and
//! the campaign's signing key appear in no output of a verbose run (logs, results, database,
//! previews, outbox), the password can come from a file, every file that holds personal data is
//! owner-only even under `umask 000`, and `purge` erases the people while the counts stay. The
//! helpline console: wrong passwords slow down their login and their address but lock no one
//! out, no password crosses a network without TLS, a proxy's header is believed from the listed
//! addresses only, HSTS over TLS, and error pages that give nothing away.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::campaign::{BIN, CSV_HEADER, Campaign, breachmail, person, stderr, stdout};
use support::files::{contains, files_under, mode};
use support::smtp_server::{Behaviour, Script, SmtpServer};

const WAIT: Duration = Duration::from_secs(20);

fn folders_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        for entry in std::fs::read_dir(&found[i]).expect("read folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                found.push(path);
            }
        }
        i += 1;
    }
    found
}

/// The campaign's VERP and Message-ID key, as stored.
async fn signing_key(campaign: &Campaign) -> String {
    let pool = campaign.db().await;
    let key: String = sqlx::query_scalar("SELECT value FROM campaign WHERE key = 'signing_key'")
        .fetch_one(&pool)
        .await
        .expect("read the signing key");
    pool.close().await;
    key
}

/// Runs a whole verbose campaign day against a relay that wants a login, and returns every
/// stdout and stderr, plus the messages the relay received.
async fn verbose_cycle(
    server: &SmtpServer,
    campaign: &Campaign,
    log_format: &str,
) -> (Vec<(String, Output)>, Vec<Vec<u8>>) {
    let flags = ["-vv", "--log-format", log_format];
    let csv = campaign.path("people.csv");
    let preview = campaign.path("preview");
    let audit = campaign.path("audit.csv");
    let steps: Vec<Vec<String>> = vec![
        vec!["import".into(), csv.display().to_string()],
        vec!["check".into()],
        vec![
            "preview".into(),
            "--out".into(),
            preview.display().to_string(),
        ],
        vec!["send".into()],
        vec!["status".into()],
        vec!["status".into(), "--json".into()],
        vec![
            "export".into(),
            "audit".into(),
            "--out".into(),
            audit.display().to_string(),
        ],
    ];
    let mut outputs = Vec::new();
    for step in steps {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(step.iter().map(String::as_str));
        let output = campaign.run_async(&args).await;
        if step[0] != "export" {
            // `export audit` may not be built in yet; whatever it wrote is searched all the same.
            assert!(output.status.success(), "{step:?}: {}", stderr(&output));
        }
        outputs.push((step.join(" "), output));
    }
    let received = server.accepted().into_iter().map(|m| m.data).collect();
    (outputs, received)
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_the_password_nor_the_signing_key_appears_in_any_output() {
    let secret = "pw-7Hq2-unique-9Zx4";
    for log_format in ["text", "json"] {
        let server = SmtpServer::start(Script {
            require_auth: Some(("relay-user".into(), secret.into())),
            // The login only travels inside TLS (the loopback relay's certificate is taken
            // unverified).
            advertise_starttls: true,
            ..Script::default()
        })
        .await;
        let mut campaign = Campaign::new();
        let rows: Vec<String> = (1..=4)
            .map(|i| person(&format!("S{i}"), &format!("s{i}@example.fr")))
            .collect();
        std::fs::write(
            campaign.path("people.csv"),
            format!("{CSV_HEADER}\n{}\n", rows.join("\n")),
        )
        .expect("write csv");
        campaign
            .set("BREACHMAIL_SMTP_URL", &server.url())
            .set("BREACHMAIL_RATE_PER_SECOND", "0")
            .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
            .set("BREACHMAIL_SMTP_PASSWORD", secret);

        // init too, verbose, in a folder of its own.
        let init_dir = campaign.path("second-campaign");
        let init = breachmail()
            .args(["-vv", "--log-format", log_format, "init"])
            .arg(&init_dir)
            .env("BREACHMAIL_SMTP_PASSWORD", secret)
            .output()
            .expect("run init");
        assert!(init.status.success(), "{}", stderr(&init));

        let (mut outputs, received) = verbose_cycle(&server, &campaign, log_format).await;
        outputs.push(("init".into(), init));
        assert_eq!(received.len(), 4, "every letter went out");
        let key = signing_key(&campaign).await;

        for (step, output) in &outputs {
            for stream in [&output.stdout, &output.stderr] {
                assert!(
                    !contains(stream, secret.as_bytes()),
                    "{step} printed the password"
                );
                assert!(
                    !contains(stream, key.as_bytes()),
                    "{step} printed the signing key"
                );
            }
        }
        // The verbose logs said something, so the search means something.
        assert!(outputs.iter().any(|(_, o)| o.stderr.len() > 100));
        for message in &received {
            assert!(!contains(message, secret.as_bytes()));
            assert!(!contains(message, key.as_bytes()));
        }
        let files = files_under(&campaign.dir);
        assert!(
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "eml"))
        );
        for file in &files {
            let bytes = std::fs::read(file).expect("read file");
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds the password",
                file.display()
            );
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with("breachmail.db") {
                assert!(
                    !contains(&bytes, key.as_bytes()),
                    "{} holds the signing key",
                    file.display()
                );
            }
        }
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_can_come_from_a_file() {
    let secret = "from-a-file-Pa55";
    let server = SmtpServer::start(Script {
        require_auth: Some(("relay-user".into(), secret.into())),
        // The login only travels inside TLS (the loopback relay's certificate is taken
        // unverified).
        advertise_starttls: true,
        ..Script::default()
    })
    .await;
    let mut campaign = Campaign::with_people(&[person("F1", "f1@example.fr")]);
    let password_file = campaign.path("smtp-password");
    // A trailing newline, as `echo` leaves, is not part of the password.
    std::fs::write(&password_file, format!("{secret}\n")).expect("write password file");
    campaign
        .set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "0")
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set(
            "BREACHMAIL_SMTP_PASSWORD_FILE",
            password_file.to_str().expect("utf-8 path"),
        );
    let output = campaign.run_async(&["-vv", "send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(server.accepted().len(), 1);
    assert!(!stderr(&output).contains(secret) && !stdout(&output).contains(secret));

    // A file that cannot be read is a configuration error naming the variable.
    let mut missing = Campaign::with_people(&[person("F2", "f2@example.fr")]);
    missing
        .set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_SMTP_USERNAME", "relay-user")
        .set("BREACHMAIL_SMTP_PASSWORD_FILE", "/nonexistent/password");
    let output = missing.run_async(&["send"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("BREACHMAIL_SMTP_PASSWORD_FILE"));
}

/// The binary run through `sh` with `umask 000`, with the campaign's environment.
fn under_umask_000(campaign: &Campaign, args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .arg("--config")
        .arg(campaign.config())
        .args(args);
    campaign.apply_env(&mut command);
    command
}

fn assert_owner_only(campaign: &Campaign) {
    let letters = campaign.path("letters");
    for file in files_under(&campaign.dir) {
        // The templates and configuration are the operator's own files, not personal data.
        if file.starts_with(&letters) || file == campaign.config() || file.ends_with("people.csv") {
            continue;
        }
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    for folder in folders_under(&campaign.dir) {
        if folder.starts_with(&letters) {
            continue;
        }
        assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_file_with_personal_data_is_owner_only_under_umask_000() {
    let mut campaign = Campaign::new();
    // Made again under umask 000, database included.
    std::fs::remove_dir_all(&campaign.dir).expect("remove the campaign");
    let init = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .arg("init")
        .arg(&campaign.dir)
        .output()
        .expect("run init");
    assert!(init.status.success(), "{}", stderr(&init));
    let mut csv = format!("{CSV_HEADER}\n");
    for i in 1..=3 {
        csv.push_str(&person(&format!("U{i}"), &format!("u{i}@example.fr")));
        csv.push('\n');
    }
    csv.push_str("BAD,not-an-address,Mme,A,B,fr,nonsense-category,\n");
    std::fs::write(campaign.path("people.csv"), csv).expect("write csv");

    let csv = campaign.path("people.csv").display().to_string();
    let preview = campaign.path("preview").display().to_string();
    let outbox = campaign.path("outbox");
    campaign.set(
        "BREACHMAIL_SMTP_URL",
        &format!("file://{}", outbox.display()),
    );
    let audit = campaign.path("exports/audit.csv").display().to_string();
    for args in [
        vec!["import", csv.as_str()],
        vec!["preview", "--all", "--out", preview.as_str()],
        vec!["send"],
        vec!["export", "audit", "--out", audit.as_str()],
    ] {
        let output = under_umask_000(&campaign, &args).output().expect("run");
        if args[0] != "export" {
            assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        }
    }
    assert!(campaign.path("breachmail.db").exists());
    assert!(files_under(&outbox).len() >= 3);
    let previews = files_under(&campaign.path("preview"));
    assert!(previews.len() >= 3, "{previews:?}");
    assert!(
        files_under(&campaign.dir)
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".rejects.csv")),
        "a rejects file was written"
    );
    assert_owner_only(&campaign);

    // The -wal and -shm files exist while a sender holds the database open.
    let server = SmtpServer::start(
        Script::accept_all().with("slow@example.fr", Behaviour::StallAfterData { times: 1 }),
    )
    .await;
    let mut slow = Campaign::with_people(&[person("SLOW", "slow@example.fr")]);
    slow.set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_SMTP_TIMEOUT", "30s");
    let mut sender = tokio::process::Command::from(under_umask_000(&slow, &["send"]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn send");
    assert!(server.wait_for_unconfirmed(1, WAIT).await);
    for suffix in ["-wal", "-shm"] {
        let path = slow.path(&format!("breachmail.db{suffix}"));
        assert!(path.exists(), "{}", path.display());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    sender.kill().await.expect("stop the sender");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_needs_yes_and_refuses_while_letters_are_due() {
    let campaign = Campaign::with_people(&[person("P1", "p1@example.fr")]);
    let output = campaign.run(&["purge"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--yes"), "{}", stderr(&output));

    let output = campaign.run(&["purge", "--yes"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("1 pending"), "{}", stderr(&output));
    assert_eq!(campaign.states().await["P1"], "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_erases_the_people_and_keeps_the_evidence() {
    // The relay quotes the address in its refusal, as Postfix does: the purge must blot it out.
    let server = SmtpServer::start(Script::accept_all().with(
        "gone.away@example.fr",
        Behaviour::Reject {
            code: 550,
            text: "5.1.1 <gone.away@example.fr>: Recipient address rejected".into(),
        },
    ))
    .await;
    let mut campaign = Campaign::with_people(&[
        person("REF-KEPT-1", "marie.curie@example.fr"),
        person("REF-KEPT-2", "gone.away@example.fr"),
        "REF-KEPT-3,,M.,Aristide,Quenouille,fr,name;postal,9876543Z".to_owned(),
    ]);
    campaign
        .set("BREACHMAIL_SMTP_URL", &server.url())
        .set("BREACHMAIL_RATE_PER_SECOND", "0");
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let reply: String = campaign.delivery("REF-KEPT-2", "smtp_reply").await;
    assert!(reply.contains("gone.away@example.fr"), "{reply}");
    let before = campaign.run(&["status", "--json"]);
    let pool = campaign.db().await;
    let (notice_id, message_id): (String, String) = sqlx::query_as(
        "SELECT p.notice_id, d.message_id FROM people p JOIN deliveries d ON d.person_id = p.id
          WHERE p.ref = 'REF-KEPT-1'",
    )
    .fetch_one(&pool)
    .await
    .expect("evidence before");
    pool.close().await;

    let output = campaign.run(&["purge", "--yes"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("purged 3 people"),
        "{}",
        stdout(&output)
    );

    // Nothing personal is left anywhere in the database's bytes.
    let mut raw = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(campaign.path(&format!("breachmail.db{suffix}"))) {
            raw.extend(bytes);
        }
    }
    for personal in [
        "marie.curie",
        "gone.away",
        "Élodie",
        "Lefèvre",
        "Aristide",
        "Quenouille",
        "REF-KEPT",
    ] {
        assert!(
            !contains(&raw, personal.as_bytes()),
            "{personal} is still in the database"
        );
    }

    // The evidence stays: counts, states, notice ids, Message-IDs, a purge run.
    let after = campaign.run(&["status", "--json"]);
    assert!(after.status.success(), "{}", stderr(&after));
    let counts = |o: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
        (v["total"].clone(), v["states"].clone())
    };
    assert_eq!(counts(&before), counts(&after));
    let pool = campaign.db().await;
    let kept: (String, Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT d.state, d.message_id, p.purged_at FROM people p JOIN deliveries d ON d.person_id = p.id
          WHERE p.notice_id = ?",
    )
    .bind(&notice_id)
    .fetch_one(&pool)
    .await
    .expect("the person is still counted under their notice id");
    assert_eq!(kept.0, "sent");
    assert_eq!(kept.1.as_deref(), Some(message_id.as_str()));
    assert!(kept.2.is_some());
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM runs WHERE command = 'purge' AND outcome = 'purged'",
    )
    .fetch_one(&pool)
    .await
    .expect("purge run");
    assert_eq!(runs, 1);
    pool.close().await;

    // Purging again finds nobody left to erase and still succeeds.
    let again = campaign.run(&["purge", "--yes"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("purged 0 people"));

    // The audit export (when built in) still runs on a purged campaign.
    let audit = campaign.path("audit.csv");
    let export = campaign.run(&["export", "audit", "--out", audit.to_str().expect("utf-8")]);
    if export.status.success() {
        let text = std::fs::read_to_string(&audit).expect("audit");
        assert!(text.contains(&notice_id));
        assert!(!text.contains("marie.curie"));
    }
}

// The helpline console: who may log in, from where, how, and what its pages give away.

mod console {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    use super::support::campaign::{Campaign, person};
    use super::support::console::{Console, PASSWORD};

    fn people() -> Vec<String> {
        vec![person("A1", "alice.martin@example.org")]
    }

    fn password_form(login: &str, password: &str) -> String {
        format!("login={login}&password={}", password.replace(' ', "+"))
    }

    #[tokio::test]
    async fn wrong_passwords_slow_down_a_login_and_an_address_but_never_lock_the_adviser_out() {
        let console = Console::start(&people(), &[]).await;
        // Three wrong passwords, over three logins from one address (spraying): refused, no wait.
        for login in ["alice", "bob", "carol"] {
            let reply = console
                .post("/login", None, &password_form(login, "spring2026!"))
                .await;
            assert_eq!(reply.status, 401, "{login}: {reply:?}");
        }
        // The fourth, whatever the login, waits: a growing delay, said in Retry-After.
        let slowed = console
            .post("/login", None, &password_form("dave", "spring2026!"))
            .await;
        assert_eq!(slowed.status, 429, "{slowed:?}");
        assert!(
            slowed.body.contains("wait a few seconds (30 at most)"),
            "{}",
            slowed.body
        );
        let wait: u64 = slowed.headers["retry-after"].parse().expect("Retry-After");
        assert!((1..=30).contains(&wait), "{wait}");
        // Waiting is enough: the right password then opens the session (no lock).
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let reply = console
            .post("/login", None, &password_form("alice", PASSWORD))
            .await;
        assert_eq!(
            reply.status, 303,
            "the adviser is not locked out: {reply:?}"
        );
        assert!(reply.cookie().is_some());
        console.stop().await;
    }

    #[tokio::test]
    async fn the_proxy_header_is_believed_only_from_the_listed_addresses() {
        let header = [("X-Remote-User", "alice")];
        // Loopback is any local process: not trusted unless listed.
        let console = Console::start(
            &people(),
            &[("BREACHMAIL_CONSOLE_PROXY_HEADER", "X-Remote-User")],
        )
        .await;
        let reply = console.request_with("GET", "/", None, "", &header).await;
        assert_eq!(reply.status, 303, "{reply:?}");
        assert_eq!(reply.location(), "/login");
        assert!(
            reply.cookie().is_none(),
            "no session from an untrusted header"
        );
        console.stop().await;

        let console = Console::start(
            &people(),
            &[
                ("BREACHMAIL_CONSOLE_PROXY_HEADER", "X-Remote-User"),
                ("BREACHMAIL_CONSOLE_TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
            ],
        )
        .await;
        let reply = console.request_with("GET", "/", None, "", &header).await;
        assert_eq!(reply.status, 303, "{reply:?}");
        assert!(
            reply.cookie().is_some(),
            "listed: the proxy's adviser has a session"
        );
        console.stop().await;
    }

    #[tokio::test]
    async fn no_password_login_beyond_loopback_without_the_consoles_own_tls() {
        // An authenticating proxy in front, the console listening on every address: the hop from
        // the proxy is plain HTTP, so passwords are refused there.
        let campaign = Campaign::with_people(&people());
        super::support::console::add_adviser(&campaign, "alice", &[]);
        let mut toml = std::fs::read_to_string(campaign.config()).expect("the config");
        toml.push_str("\n[console]\nproxy_header = \"X-Remote-User\"\nlanguage = \"en\"\n");
        std::fs::write(campaign.config(), toml).expect("write the config");
        let config =
            breachmail::config::Config::load(&campaign.config()).expect("the config loads");
        let everywhere = "0.0.0.0:8080".parse().expect("an address");
        let app = breachmail::console::build(&config, everywhere)
            .await
            .expect("the console builds");
        // Served here on loopback for the test, as the console built for 0.0.0.0 answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                breachmail::console::router(app)
                    .into_make_service_with_connect_info::<breachmail::console::Peer>(),
            )
            .await
        });
        let page = raw_request(
            &addr.to_string(),
            "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(page.contains("Password login is off"), "{page}");
        assert!(!page.contains("type=\"password\""), "{page}");
        let form = password_form("alice", PASSWORD);
        let reply = raw_request(
            &addr.to_string(),
            &format!(
                "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
        assert!(
            !reply.to_ascii_lowercase().contains("set-cookie"),
            "{reply}"
        );
        server.abort();
    }

    async fn raw_request(addr: &str, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads");
        String::from_utf8_lossy(&raw).into_owned()
    }

    #[tokio::test]
    async fn over_its_own_tls_the_console_sends_hsts() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let mut campaign = Campaign::with_people(&people());
        let cert_path = campaign.write_outside("console.pem", cert.pem());
        let key_path = campaign.write_outside("console.key", key.serialize_pem());
        campaign.set(
            "BREACHMAIL_CONSOLE_TLS_CERT",
            cert_path.to_str().expect("utf-8"),
        );
        campaign.set(
            "BREACHMAIL_CONSOLE_TLS_KEY",
            key_path.to_str().expect("utf-8"),
        );
        let console = Console::serve(campaign, &[]).await;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(cert.der().clone())
            .expect("trust the certificate");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(&console.addr)
            .await
            .expect("connects");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("sends");
        let mut raw = Vec::new();
        // The server may close without a close_notify: what was read is the reply.
        let _ = tls.read_to_end(&mut raw).await;
        let reply = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(reply.starts_with("http/1.1 200"), "{reply}");
        assert!(
            reply.contains("strict-transport-security: max-age=31536000"),
            "{reply}"
        );
        console.stop().await;

        // Plain HTTP on loopback: no HSTS (it would bind the browser to an HTTPS that is not there).
        let plain = Console::start(&people(), &[]).await;
        let reply = plain.get("/login", None).await;
        assert!(
            !reply.headers.contains_key("strict-transport-security"),
            "{reply:?}"
        );
        plain.stop().await;
    }

    #[tokio::test]
    async fn error_pages_say_nothing_of_the_internals_and_echo_nothing() {
        let console = Console::start(&people(), &[]).await;
        let cookie = console.log_in("bob").await;
        for path in [
            "/person/abc%3Cmarker%3E",
            "/person/99999999999999999999",
            "/person/1/note",
        ] {
            let reply = console.get(path, Some(&cookie)).await;
            assert!(reply.status >= 400, "{path}: {reply:?}");
            for internal in [
                "i64",
                "marker",
                "Cannot parse",
                "deserialize",
                "99999999999999999999",
                "invalid utf-8",
            ] {
                assert!(
                    !reply.body.contains(internal),
                    "{path}: {internal}: {}",
                    reply.body
                );
            }
            assert!(
                reply.headers["content-type"].starts_with("text/html"),
                "{reply:?}"
            );
        }
        // A form the console cannot read.
        let reply = console.post("/login", None, "login=alice").await;
        assert!(reply.status >= 400, "{reply:?}");
        assert!(!reply.body.contains("missing field"), "{}", reply.body);
        assert!(!reply.body.contains("password"), "{}", reply.body);
        console.stop().await;
    }
}
