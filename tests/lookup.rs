//! `lookup` as the helpline uses it: a caller reads out a notice number, or gives an address or
//! a ref. The campaign is real (init, import, send to files, a bounce read back, a resend), and
//! the answers are read from the real binary.

mod support;

use support::campaign::{Campaign, assert_success, person, stdout};

/// A Postfix-style hard bounce of the letter with this notice id.
fn hard_bounce(recipient: &str, notice_id: &str) -> String {
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
To: ne-pas-repondre@notification.example.fr\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Date: Tue, 11 Mar 2025 09:30:00 +0100\r\nMessage-Id: <20250311.1@mx.example.org>\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected\r\n\r\n\
--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Agence <ne-pas-repondre@notification.example.fr>\r\n\
X-Notice-Id: {notice_id}\r\n\r\n--B--\r\n"
    )
}

fn lookup_json(campaign: &Campaign, query: &str) -> (bool, serde_json::Value) {
    let output = campaign.run(&["lookup", query, "--json"]);
    let answer = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("lookup --json {query}: {e}: {}", stdout(&output)));
    (output.status.success(), answer)
}

async fn notice_id(campaign: &Campaign, person_ref: &str) -> String {
    sqlx::query_scalar("SELECT notice_id FROM people WHERE ref = ?")
        .bind(person_ref)
        .fetch_one(&campaign.db().await)
        .await
        .expect("the person's notice id")
}

#[tokio::test]
async fn a_genuine_notice_id_is_confirmed_in_any_spelling() {
    let campaign = Campaign::with_people(&[person("A1", "alice@example.org")]);
    assert_success(&campaign.run(&["send"]), "send");
    let notice = notice_id(&campaign, "A1").await;
    let message_id: String = campaign.delivery("A1", "message_id").await;
    for spelling in [
        notice.clone(),
        notice.replace('-', ""),
        notice.to_lowercase(),
    ] {
        let (found, answer) = lookup_json(&campaign, &spelling);
        assert!(found, "{spelling}: {answer}");
        assert_eq!(answer["genuine"], true, "{spelling}: {answer}");
        assert_eq!(answer["people"][0]["notice_id"], notice.as_str());
        assert_eq!(answer["people"][0]["state"], "sent");
        // Masked: initials and the first letter of the address only.
        assert_eq!(answer["people"][0]["name"], "É. L.");
        assert_eq!(answer["people"][0]["email"], "a***@example.org");
        let attempts = answer["people"][0]["attempts"]
            .as_array()
            .expect("attempts");
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["message_id"], format!("<{message_id}>"));
    }
    let text = stdout(&campaign.run(&["lookup", &notice]));
    assert!(text.starts_with("genuine"), "{text}");
    assert!(
        !text.contains("Lefèvre") && !text.contains("alice@"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_notice_id_is_not_ours_and_is_logged() {
    let campaign = Campaign::with_people(&[person("A1", "alice@example.org")]);
    let (found, answer) = lookup_json(&campaign, "ZZZZ-ZZZZ-ZZZZ");
    assert!(!found);
    assert_eq!(answer["genuine"], false);
    assert_eq!(
        answer["verdict"],
        "no notice with this number was sent: the message is not ours"
    );
    assert_eq!(answer["people"].as_array().map(Vec::len), Some(0));
    let text = stdout(&campaign.run(&["lookup", "zzzzzzzzzzzz"]));
    assert_eq!(
        text.trim(),
        "no notice with this number was sent: the message is not ours"
    );
    // Both lookups are in the access log, with nobody found and the kind of query only.
    let pool = campaign.db().await;
    let logged: Vec<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT action, query_kind, person_id FROM access_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("the access log");
    assert_eq!(logged.len(), 2);
    assert!(
        logged
            .iter()
            .all(|(action, kind, person)| action == "lookup"
                && kind == "notice_id"
                && person.is_none()),
        "{logged:?}"
    );
}

#[test]
fn a_malformed_notice_id_is_told_apart_from_a_ref() {
    let campaign = Campaign::with_people(&[person("A1", "alice@example.org")]);
    // An I and an O (not in the alphabet), and one character too few.
    for malformed in ["K7QF-3MZ9-P2XI", "K7QF-3MZ9-P2X", "OOOO-1111-2222"] {
        let (found, answer) = lookup_json(&campaign, malformed);
        assert!(!found, "{malformed}");
        assert_eq!(answer["query_kind"], "ref", "{malformed}");
        let verdict = answer["verdict"].as_str().unwrap_or_default();
        assert!(
            verdict.starts_with("this is not one of our notice numbers"),
            "{malformed}: {verdict}"
        );
    }
    let (found, answer) = lookup_json(&campaign, "B99");
    assert!(!found);
    assert_eq!(answer["verdict"], "no person with this ref");
    let (found, answer) = lookup_json(&campaign, "A1");
    assert!(found, "{answer}");
    assert_eq!(answer["people"][0]["person_ref"], "A1");
}

#[tokio::test]
async fn two_generations_and_a_bounce_show_every_attempt() {
    let campaign = Campaign::with_people(&[
        person("A1", "alice@example.org"),
        person("A2", "bruno@example.org"),
    ]);
    assert_success(&campaign.run(&["send"]), "first send");
    let notice = notice_id(&campaign, "A1").await;
    let first_message_id: String = campaign.delivery("A1", "message_id").await;
    let bounce = campaign.write_outside("bounce.eml", hard_bounce("alice@example.org", &notice));
    assert_success(
        &campaign.run(&["bounces", bounce.to_str().expect("utf-8 path")]),
        "bounces",
    );
    assert_success(&campaign.run(&["resend", "--bounced"]), "resend");
    assert_success(&campaign.run(&["send"]), "second send");
    let second_message_id: String = campaign.delivery("A1", "message_id").await;
    assert_ne!(first_message_id, second_message_id);

    // By e-mail address, in another case: the same person.
    let (found, answer) = lookup_json(&campaign, "ALICE@Example.org");
    assert!(found, "{answer}");
    assert_eq!(answer["people"].as_array().map(Vec::len), Some(1));
    let (_, answer) = lookup_json(&campaign, &notice);
    let found = &answer["people"][0];
    assert_eq!(found["state"], "sent");
    assert_eq!(found["generation"], 2);
    let attempts = found["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["generation"], 1);
    assert_eq!(attempts[0]["message_id"], format!("<{first_message_id}>"));
    assert_eq!(attempts[1]["generation"], 2);
    assert_eq!(attempts[1]["message_id"], format!("<{second_message_id}>"));
    let bounces = found["bounces"].as_array().expect("bounces");
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    assert_eq!(bounces[0]["kind"], "hard");
    assert_eq!(bounces[0]["generation"], 1);
    assert_eq!(bounces[0]["status"], "5.1.1");
    // The relay's diagnostic quoted the address: masked.
    let diagnostic = bounces[0]["diagnostic"].as_str().unwrap_or_default();
    assert!(!diagnostic.contains("alice@"), "{diagnostic}");
    let kinds: Vec<&str> = found["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|step| step["kind"].as_str())
        .collect();
    for kind in ["sent", "bounced", "resend"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let text = stdout(&campaign.run(&["lookup", &notice]));
    assert!(text.contains("attempts      2"), "{text}");
    assert!(text.contains("bounces       1"), "{text}");
    // The notice number under the name the letters give it.
    assert!(text.contains(&format!("notice number {notice}")), "{text}");
}
