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

/// Whether the text holds a raw RFC 3339 time (`2026-12-06T05:22:29…`).
fn has_utc_timestamp(text: &str) -> bool {
    let shape = b"dddd-dd-ddTdd:dd";
    text.as_bytes().windows(shape.len()).any(|window| {
        window.iter().zip(shape).all(|(c, s)| {
            if *s == b'd' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
    })
}

/// A campaign whose helpline speaks English (the campaign's own language is French).
fn english(rows: &[String]) -> Campaign {
    let mut campaign = Campaign::with_people(rows);
    campaign.set("BREACHMAIL_CONSOLE_LANGUAGE", "en");
    campaign
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
    let campaign = english(&[person("A1", "alice@example.org")]);
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
        assert_eq!(answer["verdict_kind"], "genuine", "{spelling}: {answer}");
        // What was sent, machine-readable: the channel, when, to which masked address.
        let sent = &answer["people"][0]["sent"];
        assert_eq!(sent["channel"], "email", "{answer}");
        assert_eq!(sent["to"], "a***@example.org", "{answer}");
        assert_eq!(sent["generation"], 1, "{answer}");
        assert!(
            sent["at"].as_str().is_some_and(|at| at.ends_with('Z')),
            "{answer}"
        );
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
    assert!(
        text.starts_with("genuine: sent by e-mail on ")
            && text.contains(" (UTC) to a***@example.org"),
        "{text}"
    );
    assert!(
        text.contains("\n> Confirm the message is ours"),
        "a script: {text}"
    );
    assert!(
        !text.contains("Lefèvre") && !text.contains("alice@"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_notice_id_is_not_ours_and_is_logged() {
    let campaign = english(&[person("A1", "alice@example.org")]);
    let (found, answer) = lookup_json(&campaign, "ZZZZ-ZZZZ-ZZZZ");
    assert!(!found);
    assert_eq!(answer["genuine"], false);
    assert_eq!(
        answer["verdict"],
        "no notice with this number was sent: the message is not ours"
    );
    assert_eq!(answer["people"].as_array().map(Vec::len), Some(0));
    assert_eq!(answer["verdict_kind"], "not_ours");
    let text = stdout(&campaign.run(&["lookup", "zzzzzzzzzzzz"]));
    let (verdict, script) = text.trim().split_once('\n').unwrap_or_default();
    assert_eq!(
        verdict,
        "no notice with this number was sent: the message is not ours"
    );
    assert!(
        script.starts_with("> Tell the caller this message is not from us"),
        "{text}"
    );
    // Both lookups are in the access log, with nobody found and the kind of query only.
    let pool = campaign.db().await;
    let logged: Vec<(String, String, Option<i64>, String)> =
        sqlx::query_as("SELECT action, query_kind, person_id, verdict FROM access_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("the access log");
    assert_eq!(logged.len(), 2);
    assert!(
        logged
            .iter()
            .all(|(action, kind, person, verdict)| action == "lookup"
                && kind == "notice_id"
                && person.is_none()
                && verdict == "not_ours"),
        "{logged:?}"
    );
}

#[test]
fn a_malformed_notice_id_is_told_apart_from_a_ref() {
    let campaign = english(&[person("A1", "alice@example.org")]);
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
    let campaign = english(&[
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
    let (_, bounced) = lookup_json(&campaign, &notice);
    assert!(
        bounced["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("genuine: sent by e-mail on")
                && v.ends_with("to a***@example.org; it came back undelivered")),
        "{bounced}"
    );
    assert_success(&campaign.run(&["resend", "--bounced"]), "resend");
    // Between the resend and the next send: the letter as sent is the first, and the second is
    // the next letter, labelled as not received yet.
    let (_, between) = lookup_json(&campaign, &notice);
    let waiting = &between["people"][0];
    assert_eq!(waiting["letter_as_sent"]["generation"], 1, "{between}");
    assert_eq!(waiting["letter_as_sent"]["to"], "a***@example.org");
    assert_eq!(waiting["next_letter"]["generation"], 2, "{between}");
    assert_eq!(waiting["next_letter"]["state"], "pending");
    assert_eq!(between["verdict_kind"], "genuine", "an e-mail did go out");
    let text = stdout(&campaign.run(&["lookup", &notice]));
    assert!(text.contains("next          generation 2 to "), "{text}");
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

#[tokio::test]
async fn a_person_without_an_address_holds_a_genuine_number_but_no_email_of_ours() {
    let campaign = english(&[person("N1", ""), person("A1", "alice@example.org")]);
    assert_success(&campaign.run(&["send"]), "send");
    assert_eq!(campaign.delivery::<String>("N1", "state").await, "no_email");
    let notice = notice_id(&campaign, "N1").await;
    let (found, answer) = lookup_json(&campaign, &notice);
    assert!(found, "{answer}");
    // Not "genuine": a caller holding an e-mail with this number holds a fake.
    assert_eq!(answer["genuine"], false, "{answer}");
    assert_eq!(answer["number_is_ours"], true, "{answer}");
    assert_eq!(answer["verdict_kind"], "ours_no_email", "{answer}");
    assert_eq!(
        answer["verdict"],
        "this number is ours but no e-mail was sent to this person (no address); paper letter not exported yet: an e-mail quoting it is not ours"
    );
    assert_eq!(answer["people"][0]["sent"]["channel"], "none", "{answer}");
    assert!(answer["people"][0]["letter_as_sent"].is_null(), "{answer}");
    assert!(
        answer["script"]
            .as_str()
            .is_some_and(|s| s
                .starts_with("If the caller received an e-mail with this number, it is a fake")),
        "{answer}"
    );

    // Once the postal export is written, the verdict says when.
    let export = campaign.outside("postal.csv");
    assert_success(
        &campaign.run(&["export", "postal", "--out", export.to_str().expect("utf-8")]),
        "export postal",
    );
    let (_, answer) = lookup_json(&campaign, &notice);
    let verdict = answer["verdict"].as_str().unwrap_or_default();
    assert!(
        verdict.starts_with(
            "this number is ours but no e-mail was sent to this person (no address); paper letter exported on "
        ) && verdict.ends_with(" (UTC): an e-mail quoting it is not ours"),
        "{verdict}"
    );
    let sent = &answer["people"][0]["sent"];
    assert_eq!(sent["channel"], "paper", "{answer}");
    assert!(
        sent["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{answer}"
    );
}

#[tokio::test]
async fn a_letter_not_sent_yet_is_no_email_of_ours() {
    let campaign = english(&[person("A1", "alice@example.org")]);
    let notice = notice_id(&campaign, "A1").await;
    let (_, answer) = lookup_json(&campaign, &notice);
    assert_eq!(answer["verdict_kind"], "ours_no_email", "{answer}");
    assert_eq!(answer["genuine"], false);
    assert_eq!(
        answer["verdict"],
        "this number is ours but no e-mail was sent to this person (not sent yet); paper letter not exported yet: an e-mail quoting it is not ours"
    );
    assert_eq!(
        answer["people"][0]["next_letter"]["generation"], 1,
        "{answer}"
    );
    assert_eq!(answer["people"][0]["state_words"], "waiting to be sent");
}

#[tokio::test]
async fn the_answer_is_in_the_campaigns_language_with_local_times() {
    // The campaign is French (init's default) and schedules in Paris time.
    let mut campaign = Campaign::with_people(&[person("A1", "alice@example.org")]);
    campaign.set("BREACHMAIL_SCHEDULE_TIMEZONE", "Europe/Paris");
    assert_success(&campaign.run(&["send"]), "send");
    let notice = notice_id(&campaign, "A1").await;
    let text = stdout(&campaign.run(&["lookup", &notice]));
    assert!(
        text.starts_with("authentique : envoyé par courriel le ")
            && text.contains(" (Europe/Paris) à a***@example.org"),
        "{text}"
    );
    assert!(
        text.contains("envoyé par courriel (accepté par notre serveur d'envoi)"),
        "{text}"
    );
    // No raw UTC time stamps in what the adviser reads.
    assert!(!has_utc_timestamp(&text), "{text}");
    let (_, answer) = lookup_json(&campaign, "ZZZZ-ZZZZ-ZZZZ");
    assert_eq!(
        answer["verdict"],
        "pas de chez nous : aucun avis portant ce numéro n'a été envoyé"
    );
}
