//! The helpline console for the tests: the real `serve` on a free loopback port, two advisers
//! (`alice`, a supervisor, and `bob`), and a minimal HTTP/1.1 client that reads a reply as the
//! test needs it (status, headers, body, the session cookie, the page's CSRF token).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::campaign::{Campaign, assert_success};

pub const PASSWORD: &str = "a long enough password";

/// One HTTP exchange, as the test reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers.get("location").map_or("", String::as_str)
    }

    /// The `name=value` of the session cookie set by this reply.
    pub fn cookie(&self) -> Option<String> {
        let set = self.headers.get("set-cookie")?;
        let pair = set.split(';').next()?.trim().to_owned();
        (!pair.ends_with('=')).then_some(pair)
    }

    /// The value of the first hidden CSRF field of the page.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("a CSRF field") + marker.len();
        self.body[start..start + 64].to_owned()
    }
}

pub struct Console {
    pub campaign: Campaign,
    pub server: tokio::process::Child,
    pub addr: String,
}

impl Console {
    /// A campaign with these people, one adviser `alice` (a supervisor) and one `bob`, and the
    /// console listening on a free loopback port.
    /// The console speaks English unless `env` sets `BREACHMAIL_CONSOLE_LANGUAGE` (empty: the
    /// campaign's language, French).
    pub async fn start(rows: &[String], env: &[(&str, &str)]) -> Console {
        Console::serve(Campaign::with_people(rows), env).await
    }

    pub async fn serve(mut campaign: Campaign, env: &[(&str, &str)]) -> Console {
        campaign.set("BREACHMAIL_CONSOLE_LANGUAGE", "en");
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
            .or_else(|| first.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Console {
            campaign,
            server,
            addr,
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: &str,
    ) -> Reply {
        self.request_with(method, path, cookie, form, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
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
        for (name, value) in extra {
            head.push_str(&format!("{name}: {value}\r\n"));
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

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.request("GET", path, cookie, "").await
    }

    pub async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Reply {
        self.request("POST", path, cookie, form).await
    }

    /// Logs in and returns the session cookie.
    pub async fn log_in(&self, login: &str) -> String {
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

    pub async fn person_id(&self, person_ref: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM people WHERE ref = ?")
            .bind(person_ref)
            .fetch_one(&self.campaign.db().await)
            .await
            .expect("the person")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.campaign.db().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Stops the server; the campaign stays for what the test does next.
    pub async fn stop(mut self) -> Campaign {
        let _ = self.server.kill().await;
        self.campaign
    }
}

pub fn add_adviser(campaign: &Campaign, login: &str, args: &[&str]) {
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
