//! End-to-end: `send` through Postfix's own `smtp-sink` on loopback. Needs Postfix installed, so
//! these tests are `#[ignore]`d in plain `cargo test` and run by `.ci/run` with `--ignored`
//! (which installs Postfix first). They fail, never skip, when the tools are missing.

mod support;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::campaign::{Campaign, person, stderr, stdout};
use support::smtp_server::unused_port;

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// smtp-sink on 127.0.0.1, dumping every accepted transaction into `dump`.
struct Sink {
    child: Child,
    port: u16,
}

impl Sink {
    fn start(dump: &Path) -> Sink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "{SMTP_SINK} is missing: install Postfix (apt-get install postfix) to run the end-to-end tests"
        );
        std::fs::create_dir_all(dump).unwrap();
        let port = unused_port();
        let child = Command::new(SMTP_SINK)
            .arg("-u")
            .arg(whoami())
            .arg("-d")
            .arg(format!("{}/%M.", dump.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .spawn()
            .expect("start smtp-sink");
        // Wait until it listens: connect attempts, bounded, no fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start listening"
            );
            std::thread::yield_now();
        }
        Sink { child, port }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn whoami() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned())
}

#[test]
#[ignore = "needs Postfix's smtp-sink; run by .ci/run with --ignored"]
fn every_letter_reaches_postfix_smtp_sink() {
    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("dump");
    let sink = Sink::start(&dump);
    let rows: Vec<String> = (1..=300)
        .map(|i| person(&format!("S{i:04}"), &format!("person{i}@example.fr")))
        .collect();
    let mut campaign = Campaign::with_people(&rows);
    campaign
        .set(
            "BREACHMAIL_SMTP_URL",
            &format!("smtp://127.0.0.1:{}", sink.port),
        )
        .set("BREACHMAIL_RATE_PER_SECOND", "0")
        .set("BREACHMAIL_SMTP_MAX_CONNECTIONS", "8");
    let output = campaign.run(&["send"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("300 sent"), "{}", stdout(&output));
    let dumped = std::fs::read_dir(&dump).unwrap().count();
    assert_eq!(dumped, 300, "smtp-sink received {dumped} transactions");
    let status = campaign.run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["states"]["sent"], 300);
}
