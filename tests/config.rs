//! Configuration errors as the operator meets them: exit 2 and a message naming the key, whether
//! the mistake is in `breachmail.toml` or in a `BREACHMAIL_<SECTION>_<KEY>` override; and an
//! override that is right takes effect.

mod support;

use support::campaign::{Campaign, assert_success, breachmail, open_pool, stderr, stdout};
use support::files::mode;

/// Runs `status` with this configuration text (written over the campaign's) and these variables.
fn status_with(campaign: &Campaign, config: &str, env: &[(&str, &str)]) -> std::process::Output {
    std::fs::write(campaign.config(), config).unwrap();
    campaign
        .command()
        .arg("status")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn assert_config_error(output: &std::process::Output, names: &str) {
    assert_eq!(
        output.status.code(),
        Some(2),
        "a configuration error exits 2; stderr: {}",
        stderr(output)
    );
    assert!(
        stderr(output).contains(names),
        "the message should name {names:?}: {}",
        stderr(output)
    );
}

#[test]
fn errors_in_the_file_exit_2_and_name_the_key() {
    let campaign = Campaign::new();
    let cases = [
        ("[smtp]\ntimout = \"30s\"\n", "timout"),
        ("[campaign]\ndatabse = \"x.db\"\n", "databse"),
        (
            "[retry]\nfirst_delay = \"5 minutes\"\n",
            "retry.first_delay",
        ),
        ("[smtp]\ntimeout = \"30\"\n", "smtp.timeout"),
        ("[sender]\nfrom = \"not an address\"\n", "sender.from"),
        (
            "[sender]\nreply_to = \"dpo@@example.fr\"\n",
            "sender.reply_to",
        ),
        ("[smtp]\nurl = \"http://relay.example.fr\"\n", "smtp.url"),
        ("[rate]\nper_second = -3\n", "rate.per_second"),
        ("[rate]\nper_second = \"fast\"\n", "rate.per_second"),
        ("[smtp]\nmax_connections = 0\n", "smtp.max_connections"),
        ("[unknown_section]\nx = 1\n", "unknown_section"),
    ];
    for (text, key) in cases {
        let output = status_with(&campaign, text, &[]);
        assert_config_error(&output, key);
    }
}

#[test]
fn a_password_in_the_file_is_refused_and_never_printed() {
    let campaign = Campaign::new();
    let secret = "correct-horse-battery-staple";
    let output = status_with(
        &campaign,
        &format!("[smtp]\nusername = \"relay\"\npassword = \"{secret}\"\n"),
        &[],
    );
    assert_config_error(&output, "password");
    assert!(stderr(&output).contains("BREACHMAIL_SMTP_PASSWORD"));
    let everything = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        !everything.contains(secret),
        "the password leaked: {everything}"
    );
}

#[test]
fn bad_environment_overrides_exit_2_and_name_the_key() {
    let campaign = Campaign::new();
    let output = status_with(&campaign, "", &[("BREACHMAIL_RATE_PER_SECOND", "fast")]);
    assert_config_error(&output, "per_second");
    let output = status_with(&campaign, "", &[("BREACHMAIL_RETRY_MAX_DELAY", "soon")]);
    assert_config_error(&output, "retry.max_delay");
    let output = status_with(&campaign, "", &[("BREACHMAIL_SMPT_URL", "smtp://x:25")]);
    assert_config_error(&output, "BREACHMAIL_SMPT_URL");
    let output = status_with(&campaign, "", &[("BREACHMAIL_SMTP_TIMOUT", "3s")]);
    assert_config_error(&output, "timout");
}

#[test]
fn the_password_variable_is_not_taken_for_a_config_key() {
    let campaign = Campaign::new();
    let output = status_with(&campaign, "", &[("BREACHMAIL_SMTP_PASSWORD", "s3cret")]);
    assert_success(&output, "status with a password in the environment");
}

#[test]
fn a_missing_config_file_exits_2() {
    let campaign = Campaign::new();
    let output = breachmail()
        .current_dir(campaign.tmp.path())
        .args(["--config", "nowhere.toml", "status"])
        .output()
        .unwrap();
    assert_config_error(&output, "nowhere.toml");
}

#[tokio::test]
async fn the_database_override_is_used_relative_to_the_config() {
    let campaign = Campaign::new();
    let people = campaign.write_outside(
        "people.csv",
        "ref,email,exposed\nA1,a1@exemple.fr,name;email\nA2,a2@exemple.fr,email\n",
    );
    let output = campaign
        .command()
        .arg("import")
        .arg(&people)
        .env("BREACHMAIL_CAMPAIGN_DATABASE", "other.db")
        .output()
        .unwrap();
    assert_success(&output, "import with BREACHMAIL_CAMPAIGN_DATABASE");
    let other = campaign.dir.join("other.db");
    assert!(other.is_file(), "other.db is created next to the config");
    assert_eq!(mode(&other), 0o600);

    let pool = open_pool(&other).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM people")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
    pool.close().await;
    // The database init made was left alone.
    assert_eq!(campaign.status()["total"], 0);
    let output = campaign
        .command()
        .args(["status", "--json"])
        .env("BREACHMAIL_CAMPAIGN_DATABASE", "other.db")
        .output()
        .unwrap();
    assert_success(&output, "status on the other database");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["total"], 2);
}

/// `[dkim]` takes one key (selector, domain, private_key) or several `[[dkim.key]]` entries; a mix
/// of both, or a key missing one of its three values, is refused naming it.
#[test]
fn dkim_keys_are_one_section_or_several_entries_never_a_mix() {
    let campaign = Campaign::new();
    let one = "[dkim]\nselector = \"s\"\ndomain = \"example.fr\"\nprivate_key = \"k.pem\"\n";
    let several = "[[dkim.key]]\nselector = \"a\"\ndomain = \"example.fr\"\nprivate_key = \"a.pem\"\n\
                   [[dkim.key]]\nselector = \"b\"\ndomain = \"example.fr\"\nprivate_key = \"b.pem\"\n";
    for good in [one, several] {
        let output = status_with(&campaign, good, &[]);
        assert_success(&output, "status with [dkim] keys");
    }
    let cases = [
        (
            "[dkim]\nselector = \"s\"\ndomain = \"example.fr\"\n",
            "dkim.private_key",
        ),
        (
            "[dkim]\nselector = \"s\"\n[[dkim.key]]\nselector = \"a\"\ndomain = \"example.fr\"\nprivate_key = \"a.pem\"\n",
            "not a mix",
        ),
        (
            "[[dkim.key]]\nselector = \"a\"\ndomain = \"example.fr\"\nprivate_key = \"a.pem\"\n\
             [[dkim.key]]\nselector = \"b\"\ndomain = \"not a domain\"\nprivate_key = \"b.pem\"\n",
            "dkim.key[2].domain",
        ),
        (
            "[[dkim.key]]\nselector = \"a\"\ndomain = \"example.fr\"\n",
            "private_key",
        ),
    ];
    for (text, names) in cases {
        let output = status_with(&campaign, text, &[]);
        assert_config_error(&output, names);
    }
}
