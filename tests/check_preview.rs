//! `check` and `preview` as the operator runs them: the real binary against a real campaign
//! folder (init, import a CSV), asserting exit codes, files, modes and the database.

mod support;

use std::path::Path;

use support::campaign::{Campaign, stderr, stdout};
use support::files::mode;

const PEOPLE: &str = "ref,email,civility,first_name,last_name,language,phone,identifier,exposed
FR-1,marie.dupont@exemple.fr,Mme,Marie,Dupont,fr,06 12 34 56 78,1234567A4821,name;email;phone;identifier
FR-2,theo.martin@exemple.fr,M.,Théo,Martin,fr,,,name;email
FR-3,zoe@exemple.fr,,Zoé,,fr,,,name;email
EN-1,grace.obrien@example.co.uk,Ms,Grace,O'Brien,en,,998877,name;email;identifier
DE-1,jonas@beispiel.de,,Jonas,Weber,de,,,name;email
NO-MAIL,,,Paul,Sans,fr,,,name;postal
";

/// A campaign with [`PEOPLE`] imported from `people.csv` in its folder.
fn campaign() -> Campaign {
    let campaign = Campaign::new();
    let people = campaign.path("people.csv");
    std::fs::write(&people, PEOPLE).unwrap();
    campaign.import(&people, &[]);
    campaign
}

#[test]
fn check_renders_every_letter_still_to_send() {
    let campaign = campaign();
    let out = campaign.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["checked"], 5);
    assert_eq!(report["failed"], 0);
    assert_eq!(
        report["languages"]["fr"], 4,
        "the German person gets the default letter"
    );
    assert_eq!(report["languages"]["en"], 1);
    let size = &report["size"];
    assert!(size["min"].as_u64() <= size["median"].as_u64());
    assert!(size["median"].as_u64() <= size["max"].as_u64());
    assert_eq!(report["shared_addresses"], 0);
}

#[test]
fn check_counts_addresses_shared_by_several_people() {
    let campaign = Campaign::new();
    let people = campaign.path("people.csv");
    let shared = format!(
        "{PEOPLE}FR-4,Marie.Dupont@exemple.fr,M.,Luc,Dupont,fr,,,name;email\nFR-5,marie.dupont@exemple.fr,,Lea,Dupont,fr,,,name;email\n"
    );
    std::fs::write(&people, shared).unwrap();
    campaign.import(&people, &[]);
    let out = campaign.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("7 letters rendered")
            && said.contains(
                "1 e-mail addresses are shared by several people; each person gets their own letter"
            ),
        "three people share one address, in two spellings: {said}"
    );
}

#[test]
fn a_name_that_does_not_resolve_fails_check_and_names_the_ref() {
    let campaign = campaign();
    let dir = &campaign.dir;
    let template = dir.join("letters/en/body.txt.hbs");
    let mut body = std::fs::read_to_string(&template).unwrap();
    body.push_str("\n{{incident.no_such_fact}}\n");
    std::fs::write(&template, body).unwrap();
    let out = campaign.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = stdout(&out);
    assert!(stdout.contains("FAILED EN-1"), "{stdout}");
    assert!(stdout.contains("incident.no_such_fact"), "{stdout}");
    assert!(stdout.contains("letters/en/body.txt.hbs"), "{stdout}");
    assert!(!stdout.contains("FAILED FR-1"), "{stdout}");
}

#[test]
fn a_template_syntax_error_is_a_usage_error_naming_the_file() {
    let campaign = campaign();
    let dir = &campaign.dir;
    std::fs::write(dir.join("letters/fr/subject.hbs"), "{{#if x}}unclosed").unwrap();
    let out = campaign.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("letters/fr/subject.hbs"),
        "{}",
        stderr(&out)
    );
}

/// Every row of the tables preview must not touch.
fn dump(database: &Path) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=ro", database.display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut out = String::new();
        for table in ["people", "deliveries", "events", "runs"] {
            let rows: Vec<(String,)> = sqlx::query_as(&format!(
                "SELECT json_array(t.*) FROM (SELECT * FROM {table} ORDER BY rowid) t"
            ))
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap();
            out.push_str(&format!("{table} {count}\n"));
            for (row,) in rows {
                out.push_str(&row);
                out.push('\n');
            }
        }
        let deliveries: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT person_id, state, generation, updated_at FROM deliveries ORDER BY person_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        out.push_str(&format!("{deliveries:?}\n"));
        pool.close().await;
        out
    })
}

#[test]
fn preview_writes_exact_owner_only_files_and_changes_no_state() {
    let campaign = campaign();
    let dir = &campaign.dir;
    let before = dump(&campaign.database());
    let out_dir = dir.join("preview");
    let out = campaign.run(&["preview", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        before,
        dump(&campaign.database()),
        "preview changed the database"
    );

    assert_eq!(mode(&out_dir), 0o700);
    let manifest = std::fs::read_to_string(out_dir.join("manifest.csv")).unwrap();
    assert_eq!(mode(&out_dir.join("manifest.csv")), 0o600);
    let mut reader = csv::Reader::from_reader(manifest.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["ref", "language", "subject", "size", "file"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // One person per (language, exposed set): FR-1, FR-2 (FR-3 has the same variant as FR-2),
    // EN-1, and DE-1 is French with FR-2's set; NO-MAIL has no address.
    let refs: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(refs, ["FR-1", "FR-2", "EN-1"], "{manifest}");
    for row in &rows {
        let file = out_dir.join(&row[4]);
        assert_eq!(mode(&file), 0o600);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(row[3].parse::<usize>().unwrap(), bytes.len());
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some(&row[2]));
    }
    assert_eq!(&rows[2][1], "en");
    assert!(rows[2][2].starts_with("Important notice"));
}

#[test]
fn preview_of_named_people_and_of_unknown_refs() {
    let campaign = campaign();
    let dir = &campaign.dir;
    let out_dir = dir.join("named");
    let out = campaign.run(&[
        "preview",
        "--out",
        out_dir.to_str().unwrap(),
        "--ref",
        "DE-1",
        "--ref",
        "FR-3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out_dir.join("DE-1.1.eml").exists());
    assert!(out_dir.join("FR-3.1.eml").exists());
    let out = campaign.run(&[
        "preview",
        "--out",
        out_dir.to_str().unwrap(),
        "--ref",
        "NOPE-9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("NOPE-9"), "{}", stderr(&out));
}

#[test]
fn preview_all_and_limit() {
    let campaign = campaign();
    let dir = &campaign.dir;
    let all = dir.join("all");
    let out = campaign.run(&["preview", "--all", "--out", all.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let manifest = std::fs::read_to_string(all.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 1 + 5, "{manifest}");
    let some = dir.join("some");
    let out = campaign.run(&["preview", "--limit", "2", "--out", some.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let manifest = std::fs::read_to_string(some.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 1 + 2, "{manifest}");
}

/// The headers of a message that do not change from one preparation to the next.
fn stable_headers(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut kept: Vec<String> = head
        .split("\r\n")
        .filter(|line| {
            ["Subject:", "To:", "From:", "Message-ID:", "Reply-To:"]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .map(str::to_owned)
        .collect();
    kept.sort();
    kept
}

/// `preview` and `send` over `file://` are one pipeline: the same files, by the same names, with
/// the same letters (only the date and the signature over it differ).
#[test]
fn preview_and_the_file_transport_write_the_same_files() {
    let campaign = campaign();
    let preview = campaign.dir.join("preview-all");
    let out = campaign.run(&["preview", "--all", "--out", preview.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = campaign.run(&["send"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".eml"))
            .collect();
        names.sort();
        names
    };
    let outbox = campaign.path("outbox");
    let previewed = names(&preview);
    assert_eq!(previewed.len(), 5, "{previewed:?}");
    assert_eq!(previewed, names(&outbox));
    assert!(
        previewed.contains(&"DE-1.1.eml".to_string()),
        "{previewed:?}"
    );
    for name in &previewed {
        let (a, b) = (
            stable_headers(&preview.join(name)),
            stable_headers(&outbox.join(name)),
        );
        assert!(a.len() >= 4, "{name}: {a:?}");
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn send_gives_back_letters_that_do_not_render_once_and_sends_the_others() {
    let campaign = campaign();
    let template = campaign.dir.join("letters/en/body.txt.hbs");
    let mut body = std::fs::read_to_string(&template).unwrap();
    body.push_str("\n{{incident.no_such_fact}}\n");
    std::fs::write(&template, body).unwrap();
    // --max-duration only bounds a run that would otherwise claim the same letter forever.
    let out = campaign.run(&["send", "--max-duration", "120s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not render"), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("4 sent"), "{said}");
    let released: u64 = said
        .split(", ")
        .find_map(|part| {
            part.strip_suffix(" released")
                .and_then(|n| n.trim().parse().ok())
        })
        .or_else(|| {
            said.split(" released")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .expect("the summary counts what was released");
    // Given back a few times while other letters were claimed beside it, not in a loop.
    assert!(
        released < 20,
        "EN-1 was given back {released} times: {said}"
    );
}
