//! `status` as scripts read it: the `--json` shape of the spec, every state present, counts that
//! add up to the number of people, and a loud failure when they do not.

mod support;

use support::campaign::{Campaign, assert_success, stderr, stdout};

const STATES: [&str; 8] = [
    "pending",
    "sending",
    "sent",
    "deferred",
    "failed",
    "bounced",
    "no_email",
    "delivered",
];

fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn status_json_has_the_spec_shape_on_a_new_campaign() {
    let campaign = Campaign::new();
    let status = campaign.status();
    // The spec's keys, exactly; the extra figures live under keys of their own.
    let top = keys(&status);
    for spec_key in ["last_run", "states", "total"] {
        assert!(
            top.iter().any(|k| k == spec_key),
            "{spec_key} missing from {top:?}"
        );
    }
    for extra in [
        "reconciliation",
        "runs",
        "top_errors",
        "domains",
        "estimated_finish",
        "past_the_relay",
    ] {
        assert!(
            top.iter().any(|k| k == extra),
            "{extra} missing from {top:?}"
        );
    }
    assert_eq!(status["total"], 0);
    let mut expected: Vec<String> = STATES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keys(&status["states"]), expected);
    assert!(STATES.iter().all(|s| status["states"][s] == 0));
    assert!(status["last_run"].is_null(), "no send has run yet");
}

#[test]
fn states_add_up_to_the_total_after_an_import() {
    let campaign = Campaign::new();
    let export = campaign.write_outside(
        "people.csv",
        "ref,email,exposed\n\
         P1,p1@exemple.fr,email\n\
         P2,,name\n\
         P3,p3@exemple.fr,email\n\
         P4,not-an-address,email\n",
    );
    campaign.import(&export, &[]);
    let status = campaign.status();
    assert_eq!(status["total"], 4);
    assert_eq!(status["states"]["pending"], 2);
    assert_eq!(status["states"]["no_email"], 2);
    let sum: i64 = STATES
        .iter()
        .map(|s| status["states"][s].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 4);

    let output = campaign.run(&["status"]);
    assert_success(&output, "status");
    let table = stdout(&output);
    assert!(table.contains("pending"), "{table}");
    assert!(table.contains("no_email"), "{table}");
    assert!(stdout(&output).lines().next().unwrap_or("").contains('4'));
}

#[tokio::test]
async fn a_person_without_a_delivery_is_an_error_not_a_wrong_count() {
    let campaign = Campaign::new();
    let export =
        campaign.write_outside("people.csv", "ref,email,exposed\nP1,p1@exemple.fr,email\n");
    campaign.import(&export, &[]);
    let pool = campaign.db().await;
    sqlx::query("DELETE FROM deliveries")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = campaign.run(&["status", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("reconciliation failed"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty(), "no half-true JSON on stdout");
}
