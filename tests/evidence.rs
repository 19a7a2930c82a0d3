//! The evidence for the regulator, over a campaign driven through every state with the SMTP test
//! server: `status` counts and reconciles, `export audit` writes every column right for each
//! outcome (CSV and JSONL, the event timeline, masked addresses, spreadsheet-safe cells, owner-only
//! files), and `report --html` is one page that states the facts and loads nothing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::campaign::{Campaign, person, stderr, stdout};
use support::files::mode;
use support::smtp_server::{Behaviour, Script, SmtpServer};

/// A ref a spreadsheet would run as a formula, written as a quoted CSV cell.
const FORMULA_REF: &str = "=HYPERLINK(\"evil.example\")";
const PLUS_REF: &str = "+33REF";

/// A campaign whose people end in every state: sent, failed (550 at sending), deferred (451),
/// no e-mail, bounced (set as the bounces command would), and two with dangerous refs.
async fn driven_campaign() -> (Campaign, SmtpServer) {
    let server = SmtpServer::start(
        Script::accept_all()
            .with("rejected@example.fr", Behaviour::reject())
            .with("later@example.fr", Behaviour::temp_fail(100)),
    )
    .await;
    let mut campaign = Campaign::with_people(&[
        person("OK1", "ok1@example.fr"),
        person("OK2", "ok2@example.org"),
        person("REJ", "rejected@example.fr"),
        person("LATER", "later@example.fr"),
        "NOMAIL,,M.,Jean,Martin,fr,name;postal,".to_owned(),
        person("BOUNCE", "bounce@example.net"),
        person(PLUS_REF, "plus@example.fr"),
        format!(
            "\"{}\",formula@example.fr,Mme,Ana,\"=HYPERLINK(\"\"http://x\"\")\",fr,name;email,",
            FORMULA_REF.replace('"', "\"\"")
        ),
    ]);
    campaign.send_to(&server.url());
    let output = campaign.run_async(&["send"]).await;
    assert!(output.status.success(), "send: {}", stderr(&output));
    mark_bounced(&campaign, "BOUNCE").await;
    (campaign, server)
}

/// What `bounces` records for a hard bounce, through the ledger as `bounces` writes it.
async fn mark_bounced(campaign: &Campaign, person_ref: &str) {
    let pool = campaign.db().await;
    let now = chrono_now_ms();
    let run_id = breachmail::store::campaign::start_run(&pool, "bounces")
        .await
        .expect("a run");
    let person_id: i64 = sqlx::query_scalar("SELECT id FROM people WHERE ref = ?")
        .bind(person_ref)
        .fetch_one(&pool)
        .await
        .expect("the person");
    let mut conn = pool.acquire().await.expect("a connection");
    let changed = breachmail::store::ledger::mark_bounced(
        &mut conn,
        person_id,
        1,
        breachmail::domain::DeliveryState::Sent,
        Some("5.1.1"),
        Some("smtp; 550 5.1.1 <bounce@example.net>: Recipient address rejected"),
        run_id,
        now,
    )
    .await
    .expect("mark bounced");
    assert!(changed, "{person_ref} was sent, so the bounce applies");
    drop(conn);
    pool.close().await;
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The audit CSV as ref → column → cell.
fn read_csv(path: &Path) -> (Vec<String>, BTreeMap<String, BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_path(path).expect("open the export");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.expect("a valid CSV record");
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        rows.insert(row["ref"].clone(), row);
    }
    (header, rows)
}

/// The audit's columns written out again on purpose, not imported from `export`: the test pins
/// the contract, so dropping or renaming a column in the code fails here.
const AUDIT_COLUMNS: [&str; 24] = [
    "ref",
    "notice_id",
    "email",
    "language",
    "state",
    "generation",
    "attempts",
    "first_attempt_at",
    "last_attempt_at",
    "sent_at",
    "smtp_reply",
    "message_id",
    "letters_fingerprint",
    "content_sha256",
    "bounced_at",
    "bounce_status",
    "bounce_diagnostic",
    "possible_duplicate",
    "postal_fallback",
    "relay",
    "delivery_notifications",
    "delivered_at",
    "delivered_by",
    "delivered_reply",
];

fn is_rfc3339(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && text.as_bytes().get(10) == Some(&b'T')
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_every_state_and_reconciles() {
    let (campaign, _server) = driven_campaign().await;
    let output = campaign.run_async(&["status", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let keys: Vec<&str> = status
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for key in ["total", "states", "last_run"] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(status["total"], 8);
    let states = status["states"].as_object().expect("states");
    assert_eq!(states.len(), 8, "{states:?}");
    let expected = [
        ("delivered", 0),
        ("pending", 0),
        ("sending", 0),
        ("sent", 3),
        ("deferred", 1),
        ("failed", 1),
        ("bounced", 1),
        ("no_email", 1),
    ];
    // OK1, OK2, PLUS and FORMULA went; BOUNCE went and came back.
    let mut expected: BTreeMap<&str, i64> = expected.into_iter().collect();
    expected.insert("sent", 4);
    for (state, count) in &expected {
        assert_eq!(states[*state], *count, "{state}");
    }
    let sum: i64 = states.values().map(|v| v.as_i64().unwrap_or(0)).sum();
    assert_eq!(sum, 8, "the states add up to the total");
    let last_run = &status["last_run"];
    for key in ["started_at", "finished_at", "sent", "deferred", "failed"] {
        assert!(!last_run[key].is_null(), "last_run.{key}");
    }
    assert_eq!(last_run["sent"], 5);
    assert_eq!(last_run["deferred"], 1);
    assert_eq!(last_run["failed"], 1);
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(status["reconciliation"]["ok"], true);
    assert_eq!(status["reconciliation"]["people"], 8);
    let errors = status["top_errors"].to_string();
    assert!(errors.contains("550 5.1.1 User unknown"), "{errors}");
    assert!(errors.contains("451 4.3.0"), "{errors}");
    // Not reached: the 5xx at sending and the hard bounce, each with its reason.
    let not_reached = &status["not_reached"];
    assert_eq!(not_reached["total"], 3);
    assert!(
        not_reached["failed_reasons"]
            .to_string()
            .contains("550 5.1.1")
    );
    let bounces = not_reached["bounce_reasons"].to_string();
    assert!(
        bounces.contains("5.1.1") && bounces.contains("<address>"),
        "{bounces}"
    );
    let domains = status["domains"].as_array().expect("domains");
    assert_eq!(domains[0]["domain"], "example.fr");
    assert_eq!(domains[0]["people"], 5);
    assert_eq!(domains[0]["failed"], 1);
    assert_eq!(domains[0]["deferred"], 1);
    assert!(
        domains
            .iter()
            .any(|d| d["domain"] == "example.net" && d["bounced"] == 1)
    );
    // The retry is an hour away, and the default incident's deadline is long past.
    assert_eq!(status["estimated_finish"]["still_due"], 1);
    assert!(
        status["notify_by_warning"]
            .as_str()
            .is_some_and(|w| w.contains("notify_by")),
        "{}",
        status["notify_by_warning"]
    );

    let output = campaign.run_async(&["status"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table.contains(
            "reconciliation: ok, 8 people = 4 sent + 1 bounced + 1 failed + 1 no_email + 0 pending + 1 deferred + 0 sending"
        ),
        "{table}"
    );
    for text in [
        "progress",
        "57.1 % reached",
        "top errors",
        "not reached",
        "example.fr",
        "estimated finish",
        "WARNING",
    ] {
        assert!(table.contains(text), "{text:?} missing from\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_warning_when_the_deadline_is_ahead_and_an_error_when_counts_disagree() {
    let (mut campaign, _server) = driven_campaign().await;
    campaign.set("BREACHMAIL_INCIDENT_NOTIFY_BY", "2999-12-31");
    let output = campaign.run_async(&["status", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert!(status["notify_by_warning"].is_null());

    // A person without a delivery: status and the export refuse to pretend.
    let pool = campaign.db().await;
    sqlx::query(
        "INSERT INTO people (ref, notice_id, language, exposed, row_hash, import_run, imported_at, updated_at)
         VALUES ('GHOST', 'GHOST-NOTICE', 'fr', 'name', 'x', 1, 0, 0)",
    )
    .execute(&pool)
    .await
    .expect("insert a person behind the ledger's back");
    pool.close().await;
    let output = campaign.run_async(&["status"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("reconciliation failed"),
        "{}",
        stderr(&output)
    );
    let out = campaign.path("audit.csv");
    let output = campaign
        .run_async(&["export", "audit", "--out", out.to_str().expect("utf-8")])
        .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_csv_has_every_column_right_for_every_outcome() {
    let (mut campaign, _server) = driven_campaign().await;
    // The English CSV uses the JSONL's names and codes: the contract pinned here.
    campaign.set("BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE", "en");
    let out = campaign.path("audit.csv");
    let output = campaign
        .run_async(&["export", "audit", "--out", out.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "rows go to the file only");
    assert!(
        stderr(&output).contains("reconciliation: ok, 8 people = 4 sent + 1 bounced"),
        "{}",
        stderr(&output)
    );
    assert_eq!(mode(&out), 0o600);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, AUDIT_COLUMNS);
    assert_eq!(rows.len(), 8);

    let ok = &rows["OK1"];
    assert_eq!(ok["email"], "ok1@example.fr");
    assert_eq!(ok["language"], "fr");
    assert_eq!(ok["state"], "sent");
    assert_eq!(ok["generation"], "1");
    assert_eq!(ok["attempts"], "1");
    for column in ["first_attempt_at", "last_attempt_at", "sent_at"] {
        assert!(is_rfc3339(&ok[column]), "{column}: {}", ok[column]);
    }
    assert!(ok["smtp_reply"].starts_with("250"), "{}", ok["smtp_reply"]);
    assert!(!ok["message_id"].is_empty());
    assert!(!ok["letters_fingerprint"].is_empty());
    // What the ledger recorded for the letter that went, column for column.
    for column in [
        "message_id",
        "letters_fingerprint",
        "content_sha256",
        "smtp_reply",
    ] {
        let recorded: Option<String> = campaign.delivery("OK1", column).await;
        assert_eq!(ok[column], recorded.unwrap_or_default(), "{column}");
    }
    assert_eq!(ok["bounced_at"], "");
    assert_eq!(ok["possible_duplicate"], "false");
    assert_eq!(ok["postal_fallback"], "false");
    assert!(!ok["notice_id"].is_empty());
    let notice_id: String = campaign_notice_id(&campaign, "OK1").await;
    assert_eq!(ok["notice_id"], notice_id);

    let rejected = &rows["REJ"];
    assert_eq!(rejected["state"], "failed");
    assert!(
        rejected["smtp_reply"].starts_with("550"),
        "{}",
        rejected["smtp_reply"]
    );
    assert_eq!(rejected["sent_at"], "");
    assert_eq!(rejected["postal_fallback"], "true");

    let later = &rows["LATER"];
    assert_eq!(later["state"], "deferred");
    assert_eq!(later["attempts"], "1");
    assert_eq!(later["sent_at"], "");
    assert_eq!(later["postal_fallback"], "false");

    let no_email = &rows["NOMAIL"];
    assert_eq!(no_email["state"], "no_email");
    assert_eq!(no_email["email"], "");
    assert_eq!(no_email["attempts"], "0");
    assert_eq!(no_email["postal_fallback"], "true");

    let bounced = &rows["BOUNCE"];
    assert_eq!(bounced["state"], "bounced");
    assert!(is_rfc3339(&bounced["sent_at"]));
    assert!(is_rfc3339(&bounced["bounced_at"]));
    assert_eq!(bounced["bounce_status"], "5.1.1");
    assert!(bounced["bounce_diagnostic"].contains("Recipient address rejected"));
    assert_eq!(bounced["postal_fallback"], "true");

    // Cells that a spreadsheet would run start with an apostrophe.
    assert!(
        rows.contains_key(&format!("'{PLUS_REF}")),
        "{:?}",
        rows.keys()
    );
    assert!(
        rows.contains_key(&format!("'{FORMULA_REF}")),
        "{:?}",
        rows.keys()
    );
    assert!(!rows.keys().any(|r| r.starts_with(['=', '+', '-', '@'])));
}

async fn campaign_notice_id(campaign: &Campaign, person_ref: &str) -> String {
    let pool = campaign.db().await;
    let id = sqlx::query_scalar("SELECT notice_id FROM people WHERE ref = ?")
        .bind(person_ref)
        .fetch_one(&pool)
        .await
        .expect("notice id");
    pool.close().await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_jsonl_carries_typed_values_and_masks_addresses_on_request() {
    let (mut campaign, _server) = driven_campaign().await;
    campaign.set("BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE", "en");
    let output = campaign
        .run_async(&["export", "audit", "--format", "jsonl"])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: BTreeMap<String, serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("one JSON per line");
            (row["ref"].as_str().unwrap_or_default().to_owned(), row)
        })
        .collect();
    assert_eq!(rows.len(), 8);
    for row in rows.values() {
        let keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for column in AUDIT_COLUMNS {
            assert!(keys.contains(&column), "{column} missing");
        }
    }
    // JSON is not a spreadsheet: refs stay as they are.
    assert!(rows.contains_key(PLUS_REF));
    assert_eq!(rows["OK1"]["generation"], 1);
    assert_eq!(rows["OK1"]["postal_fallback"], false);
    assert_eq!(rows["OK1"]["possible_duplicate"], false);
    assert_eq!(rows["NOMAIL"]["email"], serde_json::Value::Null);
    assert_eq!(rows["NOMAIL"]["postal_fallback"], true);
    assert_eq!(rows["BOUNCE"]["bounce_status"], "5.1.1");
    assert_eq!(rows["REJ"]["state"], "failed");

    let out = campaign.path("masked.csv");
    let output = campaign
        .run_async(&[
            "export",
            "audit",
            "--mask-email",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, rows) = read_csv(&out);
    assert_eq!(rows["OK1"]["email"], "o***@example.fr");
    assert_eq!(rows["BOUNCE"]["email"], "b***@example.net");
    let text = std::fs::read_to_string(&out).expect("read");
    for address in ["ok1@", "bounce@example.net", "rejected@"] {
        assert!(!text.contains(address), "{address} left unmasked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_export_is_the_timeline_in_order() {
    let (mut campaign, _server) = driven_campaign().await;
    campaign.set("BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE", "en");
    let out = campaign.path("events.csv");
    let output = campaign
        .run_async(&[
            "export",
            "audit",
            "--events",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(mode(&out), 0o600);
    let mut reader = csv::Reader::from_path(&out).expect("open");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "ref",
            "notice_id",
            "at",
            "run_id",
            "kind",
            "from_state",
            "to_state",
            "generation",
            "detail"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    let pool = campaign.db().await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    assert_eq!(records.len() as i64, events, "one row per event");
    let times: Vec<&str> = records.iter().map(|r| &r[2]).collect();
    assert!(times.iter().all(|t| is_rfc3339(t)));
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    let kinds = |person_ref: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| &r[0] == person_ref)
            .map(|r| r[4].to_owned())
            .collect()
    };
    assert_eq!(kinds("OK1"), ["imported", "claimed", "sent"]);
    assert_eq!(kinds("REJ"), ["imported", "claimed", "failed"]);
    assert_eq!(kinds("LATER"), ["imported", "claimed", "deferred"]);
    assert_eq!(kinds("NOMAIL"), ["imported"]);
    assert_eq!(kinds("BOUNCE"), ["imported", "claimed", "sent", "bounced"]);
    let sent = records
        .iter()
        .find(|r| &r[0] == "OK1" && &r[4] == "sent")
        .expect("the sent event");
    assert_eq!(&sent[5], "sending");
    assert_eq!(&sent[6], "sent");
    assert_eq!(&sent[7], "1");
    assert!(!sent[3].is_empty(), "the run that sent it");
    assert!(sent[8].starts_with("250"), "{}", &sent[8]);
    assert!(stderr(&output).contains("reconciliation: ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn report_states_the_facts_and_loads_nothing() {
    let (mut campaign, _server) = driven_campaign().await;
    campaign.set("BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE", "en");
    campaign.set(
        "BREACHMAIL_INCIDENT_ORGANISATION",
        "<b>Evil & Co</b><img src=\"http://tracker.example/x.png\">",
    );
    let out = campaign.path("report.html");
    let output = campaign
        .run_async(&["report", "--html", out.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(mode(&out), 0o600);
    let html = std::fs::read_to_string(&out).expect("read the report");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for text in [
        "INC-2025-07",
        "reconciliation: ok, 8 people = 4 sent + 1 bounced + 1 failed + 1 no_email",
        "<svg",
        "Letters handed to the relay over time",
        "import: ok, 8 rows in 1 import = 8 people + 0 already known + 0 refused",
        "What people were told",
        "Words used in this report",
        "Where every letter stands",
        "5.1.1",
        "example.fr",
        "Campaign timeline",
        "letters fingerprint",
        "@media print",
        "size: A4",
        "<html lang=\"en\">",
        "login with the stolen credentials of a staff or partner account (<code>stolen_credentials</code>)",
    ] {
        assert!(html.contains(text), "{text:?} missing from the report");
    }
    assert!(
        !html.contains("Nature</th><td>stolen_credentials<"),
        "a raw code"
    );
    let fingerprint: String = campaign.delivery("OK1", "letters_fingerprint").await;
    assert!(html.contains(&fingerprint));
    // The organisation's markup is shown as text, never run.
    assert!(html.contains("&lt;b&gt;Evil &amp; Co&lt;/b&gt;"));
    assert!(!html.contains("<b>Evil"));
    assert!(!html.contains("<img"));
    assert_loads_nothing(&html);
    for tag in ["section", "table", "svg", "tr", "style", "body", "html"] {
        assert_eq!(
            html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count(),
            html.matches(&format!("</{tag}>")).count(),
            "<{tag}> opened and closed as often"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_french_campaign_gets_its_report_in_french_with_the_same_numbers() {
    let (campaign, _server) = driven_campaign().await;
    let out = campaign.path("rapport.html");
    let output = campaign
        .run_async(&["report", "--html", out.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let html = std::fs::read_to_string(&out).expect("read the report");
    for text in [
        "<html lang=\"fr\">",
        "INC-2025-07",
        "import\u{a0}: concordant, 8 lignes en 1 import = 8 personnes + 0 ligne d&#39;une personne déjà importée + 0 ligne refusée à l&#39;import",
        "rapprochement\u{a0}: concordant, 8 personnes = 4 remises au relais + 1 revenue en erreur + 1 refusée à l&#39;envoi + 1 sans adresse + 0 en attente + 1 différée + 0 en cours d&#39;envoi",
        "Lettres remises au relais au fil du temps",
        "Où en est chaque lettre",
        "Déroulement de la campagne",
        "empreinte des lettres",
        "Accès frauduleux bloqué le",
        "connexion avec les identifiants volés d&#39;un compte professionnel (<code>stolen_credentials</code>)",
        "9 juillet 2025",
        "5.1.1",
        "Ce qui a été dit aux personnes",
        "Votre numéro d&#39;avis",
        "Lexique",
    ] {
        assert!(html.contains(text), "{text:?} missing from the report");
    }
    for english in [
        "reconciliation:",
        "Letters sent over time",
        "Where every letter stands",
        "Campaign timeline",
        "Relays",
        "export audit",
        "2025-07-09",
        "T0",
    ] {
        assert!(!html.contains(english), "{english:?} left in English");
    }
    // What people were told: the letter of the fingerprint in use, with how many got it.
    let fingerprint: String = campaign.delivery("OK1", "letters_fingerprint").await;
    assert!(
        html.contains(&format!(
            "<span class=\"mono\">{fingerprint}</span>. C&#39;est la version reçue par"
        )),
        "the specimen's fingerprint is not the one in use"
    );
    let fingerprint: String = campaign.delivery("OK1", "letters_fingerprint").await;
    assert!(html.contains(&fingerprint));
    assert_loads_nothing(&html);
}

/// No script, no stylesheet link, no remote URL in any src, href or CSS url().
fn assert_loads_nothing(html: &str) {
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "a script");
    assert!(!lower.contains("<link"), "a link element");
    assert!(!lower.contains("@import"), "a CSS import");
    assert!(!lower.contains("url("), "a CSS url()");
    assert!(!lower.contains("@font-face"), "a web font");
    for attribute in ["src=", "href=", "xlink:href="] {
        for (at, _) in lower.match_indices(attribute) {
            let value = lower[at + attribute.len()..].trim_start_matches(['"', '\'']);
            assert!(
                !value.starts_with("http:")
                    && !value.starts_with("https:")
                    && !value.starts_with("//"),
                "remote {attribute} at {at}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn report_of_a_campaign_with_nothing_sent_yet() {
    let mut campaign = Campaign::with_people(&[person("A", "a@example.fr")]);
    campaign.set("BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE", "en");
    let out = campaign.path("report.html");
    let output = campaign
        .run_async(&["report", "--html", out.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let html = std::fs::read_to_string(&out).expect("read");
    assert!(html.contains("No letter has been sent yet"));
    assert!(html.contains("No letter sent so far carries this fingerprint."));
    assert!(html.contains("reconciliation: ok, 1 people = 0 sent"));
    assert_loads_nothing(&html);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_french_audit_says_everything_in_french_with_its_legend_beside_it() {
    let (campaign, _server) = driven_campaign().await;
    let out = campaign.path("audit.csv");
    let output = campaign
        .run_async(&["export", "audit", "--out", out.to_str().expect("utf-8")])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let mut reader = csv::Reader::from_path(&out).expect("open the export");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[0], "référence");
    assert_eq!(header[1], "numéro d'avis");
    assert_eq!(header[4], "état");
    assert_eq!(header[18], "envoi postal");
    let rows: BTreeMap<String, csv::StringRecord> = reader
        .records()
        .map(|r| r.expect("record"))
        .map(|r| (r[0].to_owned(), r))
        .collect();
    assert_eq!(&rows["OK1"][4], "remise au relais");
    assert_eq!(&rows["REJ"][4], "refusée à l'envoi");
    assert_eq!(&rows["BOUNCE"][4], "revenue en erreur");
    assert_eq!(&rows["NOMAIL"][4], "sans adresse");
    assert_eq!(&rows["NOMAIL"][18], "oui");
    assert_eq!(&rows["OK1"][18], "non");
    // 06/12/2026 07:20:46 UTC: day first, the zone named (no schedule: UTC).
    let sent_at = &rows["OK1"][9];
    assert!(
        sent_at.len() == 23 && &sent_at[2..3] == "/" && sent_at.ends_with(" UTC"),
        "{sent_at}"
    );

    let legend = campaign.path("audit.legende.txt");
    assert_eq!(mode(&legend), 0o600);
    let text = std::fs::read_to_string(&legend).expect("the legend");
    for said in [
        "Légende de l'export d'audit audit.csv",
        "fuseau UTC",
        "- référence\u{a0}: la clé de la personne",
        "- remise au relais\u{a0}: le relais a accepté la lettre",
        "- revenue en erreur\u{a0}:",
        "code SMTP",
        "Rapprochement au moment de l'export\u{a0}: concordant, 8 personnes = 4 remises au relais",
    ] {
        assert!(
            text.contains(said),
            "{said:?} missing from the legend:\n{text}"
        );
    }
    // Every column of the file is explained in the legend.
    for column in &header {
        assert!(
            text.contains(&format!("- {column}\u{a0}:")),
            "{column} unexplained"
        );
    }

    let events = campaign.path("events.csv");
    let output = campaign
        .run_async(&[
            "export",
            "audit",
            "--events",
            "--out",
            events.to_str().expect("utf-8"),
        ])
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&events).expect("events");
    assert!(text.starts_with("référence,numéro d'avis,date et heure,exécution,événement,"));
    assert!(text.contains(",importée,"), "{text}");
    let legend = std::fs::read_to_string(campaign.path("events.legende.txt")).expect("legend");
    assert!(legend.contains("- prise pour envoi\u{a0}:"), "{legend}");
}
