//! `check` and `preview` as the operator runs them: the real binary against a real campaign
//! folder (init, import a CSV), asserting exit codes, files, modes and the database.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const PEOPLE: &str = "ref,email,civility,first_name,last_name,language,phone,identifier,exposed
FR-1,marie.dupont@exemple.fr,Mme,Marie,Dupont,fr,06 12 34 56 78,1234567A4821,name;email;phone;identifier
FR-2,theo.martin@exemple.fr,M.,Théo,Martin,fr,,,name;email
FR-3,zoe@exemple.fr,,Zoé,,fr,,,name;email
EN-1,grace.obrien@example.co.uk,Ms,Grace,O'Brien,en,,998877,name;email;identifier
DE-1,jonas@beispiel.de,,Jonas,Weber,de,,,name;email
NO-MAIL,,,Paul,Sans,fr,,,name;postal
";

fn breachmail(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_breachmail"))
        .arg("--config")
        .arg(dir.join("breachmail.toml"))
        .args(args)
        .env_remove("BREACHMAIL_CONFIG")
        .output()
        .expect("runs")
}

fn campaign() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("c");
    let init = Command::new(env!("CARGO_BIN_EXE_breachmail"))
        .arg("init")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    std::fs::write(dir.join("people.csv"), PEOPLE).unwrap();
    let import = breachmail(&dir, &["import", dir.join("people.csv").to_str().unwrap()]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    root
}

fn dir_of(root: &tempfile::TempDir) -> std::path::PathBuf {
    root.path().join("c")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_renders_every_letter_still_to_send() {
    let root = campaign();
    let out = breachmail(&dir_of(&root), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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
}

#[test]
fn a_name_that_does_not_resolve_fails_check_and_names_the_ref() {
    let root = campaign();
    let dir = dir_of(&root);
    let template = dir.join("letters/en/body.txt.hbs");
    let mut body = std::fs::read_to_string(&template).unwrap();
    body.push_str("\n{{incident.no_such_fact}}\n");
    std::fs::write(&template, body).unwrap();
    let out = breachmail(&dir, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAILED EN-1"), "{stdout}");
    assert!(stdout.contains("incident.no_such_fact"), "{stdout}");
    assert!(stdout.contains("letters/en/body.txt.hbs"), "{stdout}");
    assert!(!stdout.contains("FAILED FR-1"), "{stdout}");
}

#[test]
fn a_template_syntax_error_is_a_usage_error_naming_the_file() {
    let root = campaign();
    let dir = dir_of(&root);
    std::fs::write(dir.join("letters/fr/subject.hbs"), "{{#if x}}unclosed").unwrap();
    let out = breachmail(&dir, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("letters/fr/subject.hbs"),
        "{}",
        text(&out.stderr)
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
    let root = campaign();
    let dir = dir_of(&root);
    let before = dump(&dir.join("breachmail.db"));
    let out_dir = dir.join("preview");
    let out = breachmail(&dir, &["preview", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        before,
        dump(&dir.join("breachmail.db")),
        "preview changed the database"
    );

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
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
    let root = campaign();
    let dir = dir_of(&root);
    let out_dir = dir.join("named");
    let out = breachmail(
        &dir,
        &[
            "preview",
            "--out",
            out_dir.to_str().unwrap(),
            "--ref",
            "DE-1",
            "--ref",
            "FR-3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out_dir.join("DE-1.eml").exists());
    assert!(out_dir.join("FR-3.eml").exists());
    let out = breachmail(
        &dir,
        &[
            "preview",
            "--out",
            out_dir.to_str().unwrap(),
            "--ref",
            "NOPE-9",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("NOPE-9"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn preview_all_and_limit() {
    let root = campaign();
    let dir = dir_of(&root);
    let all = dir.join("all");
    let out = breachmail(&dir, &["preview", "--all", "--out", all.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let manifest = std::fs::read_to_string(all.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 1 + 5, "{manifest}");
    let some = dir.join("some");
    let out = breachmail(
        &dir,
        &["preview", "--limit", "2", "--out", some.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    let manifest = std::fs::read_to_string(some.join("manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 1 + 2, "{manifest}");
}
