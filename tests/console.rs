//! The helpline console over real HTTP: the real `serve` on a loopback port of its own, driven
//! by a minimal HTTP/1.1 client, against a real campaign. What an adviser may do, and everything
//! the console must refuse: no page without a login, a wrong password, an expired session, an
//! action without its CSRF token, a flood of searches.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use sqlx::Connection;

use support::campaign::{Campaign, assert_success, person, stderr, stdout};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = "a long enough password";

/// One HTTP exchange, as the test reads it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers.get("location").map_or("", String::as_str)
    }

    /// The `name=value` of the session cookie set by this reply.
    fn cookie(&self) -> Option<String> {
        let set = self.headers.get("set-cookie")?;
        let pair = set.split(';').next()?.trim().to_owned();
        (!pair.ends_with('=')).then_some(pair)
    }

    /// The value of the first hidden CSRF field of the page.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a CSRF field") + marker.len();
        self.body[start..start + 64].to_owned()
    }
}

struct Console {
    campaign: Campaign,
    server: tokio::process::Child,
    addr: String,
}

impl Console {
    /// A campaign with these people, one adviser `alice` (a supervisor) and one `bob`, and the
    /// console listening on a free loopback port.
    async fn start(rows: &[String], env: &[(&str, &str)]) -> Console {
        let mut campaign = Campaign::with_people(rows);
        for (key, value) in env {
            campaign.set(key, value);
        }
        add_adviser(&campaign, "alice", &["--supervisor"]);
        add_adviser(&campaign, "bob", &[]);
        let mut server = campaign.spawn(&["serve", "--listen", "127.0.0.1:0"]);
        let stdout = server.stdout.take().expect("the server's stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .await
            .expect("the server prints its address");
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Console {
            campaign,
            server,
            addr,
        }
    }

    async fn request(&self, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connects to the console");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(cookie) = cookie {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                form.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(form);
        stream.write_all(head.as_bytes()).await.expect("sends");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads the reply");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.request("GET", path, cookie, "").await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        self.request("POST", path, cookie, form).await
    }

    /// Logs in and returns the session cookie.
    async fn log_in(&self, login: &str) -> String {
        let reply = self
            .post(
                "/login",
                None,
                &format!("login={login}&password={}", PASSWORD.replace(' ', "+")),
            )
            .await;
        assert_eq!(reply.status, 303, "{reply:?}");
        reply.cookie().expect("a session cookie")
    }

    async fn person_id(&self, person_ref: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM people WHERE ref = ?")
            .bind(person_ref)
            .fetch_one(&self.campaign.db().await)
            .await
            .expect("the person")
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.campaign.db().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stops the server; the campaign stays for what the test does next.
    async fn stop(mut self) -> Campaign {
        let _ = self.server.kill().await;
        self.campaign
    }
}

fn add_adviser(campaign: &Campaign, login: &str, args: &[&str]) {
    let mut command = campaign.command();
    command
        .args(["adviser", "add", login])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("adviser add runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("writes the password");
    let output = child.wait_with_output().expect("adviser add ends");
    assert_success(&output, "adviser add");
}

fn people() -> Vec<String> {
    vec![
        person("A1", "alice.martin@example.org"),
        person("A2", "bruno@example.org"),
    ]
}

#[tokio::test]
async fn nothing_is_served_without_a_login() {
    let console = Console::start(&people(), &[]).await;
    for path in ["/", "/search?q=A1", "/person/1", "/supervisor"] {
        let reply = console.get(path, None).await;
        assert_eq!(reply.status, 303, "{path}: {reply:?}");
        assert_eq!(reply.location(), "/login", "{path}");
        assert!(!reply.body.contains("A1"), "{path}: {}", reply.body);
    }
    let reply = console.post("/person/1/note", None, "note=hello").await;
    assert_eq!(reply.status, 303);
    assert_eq!(console.count("SELECT count(*) FROM call_notes").await, 0);
    // A forged cookie is no session either.
    let forged = format!("breachmail_session={}", "ab".repeat(32));
    let reply = console.get("/", Some(&forged)).await;
    assert_eq!(reply.status, 303);
    let login = console.get("/login", None).await;
    assert_eq!(login.status, 200);
    assert!(
        login.headers["content-security-policy"].contains("default-src 'none'"),
        "{login:?}"
    );
    assert!(!login.body.contains("<script"), "{}", login.body);
    console.stop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_login_are_refused_alike() {
    let console = Console::start(&people(), &[]).await;
    let wrong = console
        .post("/login", None, "login=alice&password=not+the+password")
        .await;
    let unknown = console
        .post("/login", None, "login=mallory&password=not+the+password")
        .await;
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, 401, "{reply:?}");
        assert!(reply.cookie().is_none(), "{reply:?}");
        assert!(reply.body.contains("Wrong login or password."));
    }
    assert_eq!(
        console.count("SELECT count(*) FROM console_sessions").await,
        0
    );
    console.stop().await;
}

#[tokio::test]
async fn an_expired_session_sends_back_to_the_login() {
    let console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    assert_eq!(console.get("/", Some(&cookie)).await.status, 200);
    sqlx::query("UPDATE console_sessions SET expires_at = 0")
        .execute(&console.campaign.db().await)
        .await
        .expect("expire the session");
    let reply = console.get("/search?q=A1", Some(&cookie)).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.location(), "/login?expired=1");
    assert_eq!(
        console.count("SELECT count(*) FROM access_log").await,
        0,
        "no search ran"
    );
    console.stop().await;
}

#[tokio::test]
async fn a_search_flood_is_refused() {
    let console = Console::start(
        &people(),
        &[("BREACHMAIL_CONSOLE_SEARCHES_PER_MINUTE", "5")],
    )
    .await;
    let cookie = console.log_in("bob").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(console.get("/search?q=A1", Some(&cookie)).await.status);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another adviser is not held up by bob's flood.
    let other = console.log_in("alice").await;
    assert_eq!(console.get("/search?q=A1", Some(&other)).await.status, 200);
    console.stop().await;
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_are_recorded_naming_the_adviser() {
    let console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{page:?}");
    // Masked everywhere but in the letter itself, which is shown as it was sent.
    let (before_letter, _) = page.body.split_once("<h2>The letter").expect("the letter");
    assert!(before_letter.contains("a***@example.org"), "masked address");
    assert!(
        !before_letter.contains("alice.martin@"),
        "the address in clear"
    );
    let csrf = page.csrf();

    // Without the token, and with another one: refused, nothing recorded.
    for form in [
        "note=called".to_owned(),
        format!("csrf={}&note=called", "0".repeat(64)),
    ] {
        let reply = console
            .post(&format!("/person/{id}/note"), Some(&cookie), &form)
            .await;
        assert_eq!(reply.status, 403, "{form}: {reply:?}");
    }
    let reply = console
        .post(
            &format!("/person/{id}/address"),
            Some(&cookie),
            "email=alice%40example.net&kind=corrected",
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(console.count("SELECT count(*) FROM call_notes").await, 0);
    assert_eq!(console.campaign.events("A1").await, vec!["imported"]);

    // With it: the note, the paper request, the corrected address.
    let note = console
        .post(
            &format!("/person/{id}/note"),
            Some(&cookie),
            &format!("csrf={csrf}&note=Asked+whether+the+mail+is+genuine+%3Cb%3E"),
        )
        .await;
    assert_eq!(note.status, 303, "{note:?}");
    let paper = console
        .post(
            &format!("/person/{id}/paper"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(paper.status, 303);
    let address = console
        .post(
            &format!("/person/{id}/address"),
            Some(&cookie),
            &format!("csrf={csrf}&email=alice%40example.net&kind=corrected"),
        )
        .await;
    assert_eq!(address.location(), format!("/person/{id}?done=address"));
    assert_eq!(
        console.campaign.delivery::<i64>("A1", "generation").await,
        2
    );
    assert_eq!(
        console.campaign.delivery::<String>("A1", "email").await,
        "alice@example.net"
    );
    assert_eq!(
        console.campaign.events("A1").await,
        vec![
            "imported",
            "call_note",
            "paper_requested",
            "resend",
            "address_corrected"
        ]
    );
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert!(page.body.contains("&lt;b&gt;"), "the note is escaped");

    // The evidence names the adviser; the postal export includes the paper request.
    let audit = console
        .campaign
        .run(&["export", "audit", "--events", "--format", "jsonl"]);
    assert_success(&audit, "export audit --events");
    let corrected = stdout(&audit)
        .lines()
        .find(|line| line.contains("address_corrected"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(corrected.contains("adviser bob"), "{}", stdout(&audit));
    let postal = console.campaign.run(&["export", "postal"]);
    assert_success(&postal, "export postal");
    assert!(
        stdout(&postal).contains("asked the helpline for a paper letter"),
        "{}",
        stdout(&postal)
    );

    // The supervisor's counters (bob is no supervisor).
    assert_eq!(console.get("/supervisor", Some(&cookie)).await.status, 403);
    let supervisor = console.log_in("alice").await;
    let counters = console.get("/supervisor", Some(&supervisor)).await;
    assert_eq!(counters.status, 200);
    for figure in [
        "<td id=\"calls-today\">1</td>",
        "<td id=\"corrections-today\">1</td>",
        "<td id=\"paper-today\">1</td>",
    ] {
        assert!(
            counters.body.contains(figure),
            "{figure}: {}",
            counters.body
        );
    }
    // Every page opened is in the access log, with who looked at whom.
    let views = console
        .count(&format!(
            "SELECT count(*) FROM access_log WHERE adviser = 'bob' AND action = 'view' AND person_id = {id}"
        ))
        .await;
    assert_eq!(views, 2);
    console.stop().await;
}

#[tokio::test]
async fn purge_erases_the_call_notes_and_keeps_their_count() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A2").await;
    let csrf = console
        .get(&format!("/person/{id}"), Some(&cookie))
        .await
        .csrf();
    let reply = console
        .post(
            &format!("/person/{id}/note"),
            Some(&cookie),
            &format!("csrf={csrf}&note=Moved+to+Lyon"),
        )
        .await;
    assert_eq!(reply.status, 303);
    let campaign = console.stop().await;
    let database = campaign.database();
    let purge = campaign.run(&["purge", "--yes"]);
    assert_success(&purge, "purge");
    assert!(
        stdout(&purge).contains("1 call notes erased"),
        "{}",
        stdout(&purge)
    );
    let pool = support::campaign::open_pool(&database).await;
    let (notes, texts): (i64, i64) = sqlx::query_as("SELECT count(*), count(note) FROM call_notes")
        .fetch_one(&pool)
        .await
        .expect("call notes");
    assert_eq!((notes, texts), (1, 0));
    let raw = std::fs::read(&database).expect("the database file");
    assert!(!support::files::contains(&raw, b"Moved to Lyon"));
}

#[test]
fn the_console_refuses_to_listen_beyond_loopback_in_clear() {
    let campaign = Campaign::new();
    let output = campaign.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a loopback address"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn the_supervisor_sees_the_days_the_schedule_plans_letters_for() {
    // One letter a day, every day: the two people are planned on two days.
    let console = Console::start(
        &people(),
        &[
            ("BREACHMAIL_SCHEDULE_TIMEZONE", "Europe/Paris"),
            ("BREACHMAIL_SCHEDULE_WINDOWS", "[\"mon-sun 00:00-24:00\"]"),
            ("BREACHMAIL_SCHEDULE_DAILY_CAP", "1"),
        ],
    )
    .await;
    let supervisor = console.log_in("alice").await;
    let page = console.get("/supervisor", Some(&supervisor)).await;
    assert_eq!(page.status, 200);
    let planned = page.body.matches("planned by the schedule").count();
    assert_eq!(
        planned,
        people().len(),
        "one line a day, one letter each: {}",
        page.body
    );
    assert!(page.body.contains("(today)"), "{}", page.body);
}

#[tokio::test]
async fn serve_stops_within_five_seconds_of_sigterm_with_idle_keep_alive_connections_open() {
    let mut console = Console::start(&people(), &[]).await;
    // A browser's way: one request answered, the connection kept open for the next one.
    let mut kept = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    kept.write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n\r\n", console.addr).as_bytes())
        .await
        .expect("sends");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("</html>") {
        let n = kept.read(&mut chunk).await.expect("reads the reply");
        assert!(n > 0, "the console closed a keep-alive connection");
        reply.extend_from_slice(&chunk[..n]);
    }
    // One opened that never sent a byte, and one whose request stalled half-way.
    let _silent = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    let mut stalled = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    stalled
        .write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n", console.addr).as_bytes())
        .await
        .expect("sends");

    let pid = console.server.id().expect("the console runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), console.server.wait())
        .await
        .expect("serve ended after SIGTERM")
        .expect("serve could be waited for");
    let took = started.elapsed();
    assert!(ended.success(), "{ended:?}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM runs WHERE command = 'serve' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&console.campaign.db().await)
    .await
    .expect("the serve run is recorded");
    assert_eq!(outcome, "stopped");
}

#[tokio::test]
async fn serve_stops_within_five_seconds_of_sigterm_with_a_request_waiting_for_the_database() {
    let mut console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    // Another process holds the database: the search (which logs the look) waits its turn,
    // up to the busy timeout of 30 s.
    let mut holder = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        console.campaign.database().display()
    ))
    .await
    .expect("opens the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("takes the write lock");
    let mut waiting = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    waiting
        .write_all(
            format!(
                "GET /search?q=A1 HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
                console.addr
            )
            .as_bytes(),
        )
        .await
        .expect("sends");

    let pid = console.server.id().expect("the console runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(40), console.server.wait())
        .await
        .expect("serve ended after SIGTERM")
        .expect("serve could be waited for");
    let took = started.elapsed();
    assert!(ended.success(), "{ended:?}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}
