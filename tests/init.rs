//! `init DIR` as the operator meets it: a new campaign folder that works as it is, owner-only
//! files, and a refusal (exit 1) to touch a folder that already holds something.

mod support;

use support::campaign::{Campaign, assert_success, breachmail, read_rejects, stderr, stdout};
use support::files::mode;

#[test]
fn init_creates_a_private_campaign_that_works_as_it_is() {
    let campaign = Campaign::new();
    let dir = &campaign.dir;
    assert_eq!(mode(dir), 0o700, "the campaign folder is owner-only");
    assert_eq!(
        mode(&campaign.database()),
        0o600,
        "the database is owner-only"
    );
    assert!(campaign.config().is_file());
    for language in ["fr", "en"] {
        for template in ["subject.hbs", "body.txt.hbs", "body.html.hbs"] {
            let path = dir.join("letters").join(language).join(template);
            assert!(path.is_file(), "{} is missing", path.display());
        }
    }
    assert!(dir.join("letters/partials").is_dir());
    let config = std::fs::read_to_string(campaign.config()).unwrap();
    assert!(
        config.contains("[incident]"),
        "the incident facts are in the config"
    );
    assert!(!config.contains("password ="), "no secret in the file");

    // The generated configuration loads as it is, and the database is migrated and empty.
    let status = campaign.status();
    assert_eq!(status["total"], 0);
}

#[test]
fn the_generated_config_is_found_in_the_current_folder() {
    let campaign = Campaign::new();
    let output = breachmail()
        .current_dir(&campaign.dir)
        .arg("status")
        .output()
        .unwrap();
    assert_success(&output, "status without --config");
    assert!(stdout(&output).contains("people"));
}

#[test]
fn init_accepts_an_existing_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let output = breachmail().arg("init").arg(tmp.path()).output().unwrap();
    assert_success(&output, "init in an empty folder");
    assert!(tmp.path().join("breachmail.db").is_file());
}

#[test]
fn init_refuses_a_folder_that_holds_files_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "the operator's notes").unwrap();
    let output = breachmail().arg("init").arg(tmp.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("already holds files"));
    assert!(!tmp.path().join("breachmail.toml").exists());
    assert!(!tmp.path().join("breachmail.db").exists());
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "the operator's notes"
    );
}

#[test]
fn init_twice_does_not_overwrite_a_campaign() {
    let campaign = Campaign::new();
    let before = std::fs::read(campaign.database()).unwrap();
    let output = breachmail()
        .arg("init")
        .arg(&campaign.dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(std::fs::read(campaign.database()).unwrap(), before);
}

#[test]
fn a_usage_error_still_exits_2() {
    let output = breachmail().arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = breachmail().args(["import"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn demo_builds_a_campaign_with_people_and_shows_the_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let output = breachmail()
        .current_dir(tmp.path())
        .args(["demo", "demo", "--people", "100"])
        .output()
        .unwrap();
    assert_success(&output, "demo");
    // The demo's deadline is weeks after the day it runs: no warning at the end of every demo.
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!said.contains("WARNING"), "{said}");
    let config = std::fs::read_to_string(dir.join("breachmail.toml")).unwrap();
    let notify_by = config
        .lines()
        .find_map(|l| l.strip_prefix("notify_by = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a notify_by line");
    let today = chrono::Utc::now().date_naive();
    let days =
        (chrono::NaiveDate::parse_from_str(notify_by, "%Y-%m-%d").unwrap() - today).num_days();
    assert!(
        (20..=35).contains(&days),
        "notify_by {notify_by} is {days} days away"
    );
    assert_eq!(mode(&dir.join("breachmail.toml")), 0o600);
    let rejects = dir.join("people.csv.rejects.csv");
    assert!(rejects.is_file(), "the demo shows a rejects file");
    let refused = read_rejects(&rejects)
        .iter()
        .filter(|r| r[4] == "refused")
        .count();
    assert!(refused >= 3, "a few rows are broken on purpose");

    let output = breachmail()
        .current_dir(&dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_success(&output, "status in the demo folder");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["total"].as_u64(), Some(100 - refused as u64));
    // The import file's rows add up: the people, and the rows refused at import.
    let imports = &status["imports"];
    assert_eq!(imports["ok"], true, "{imports}");
    assert_eq!(imports["rows"].as_u64(), Some(100));
    assert_eq!(imports["refused"].as_u64(), Some(refused as u64));
    assert!(status["states"]["no_email"].as_u64().unwrap_or(0) >= 1);
}
