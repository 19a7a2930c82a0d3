//! The helpline console over real HTTP: the real `serve` on a loopback port of its own, driven
//! by a minimal HTTP/1.1 client, against a real campaign. What an adviser may do, and everything
//! the console must refuse: no page without a login, a wrong password, an expired session, an
//! action without its CSRF token, a flood of searches, too many person pages in an hour. What
//! the adviser sees: the verdict and its script, the letter as sent beside the next one, masked
//! data, a name found however it is typed, the campaign's language and time zone. What the
//! supervisor sees: the day's calls per adviser, the person pages over the cap, the "not ours"
//! look-ups per hour, bounces and letters still at the mail server.

mod support;

use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::campaign::{Campaign, assert_success, person, stderr, stdout};
use support::console::Console;

fn people() -> Vec<String> {
    vec![
        person("A1", "alice.martin@example.org"),
        person("A2", "bruno@example.org"),
    ]
}

#[tokio::test]
async fn nothing_is_served_without_a_login() {
    let console = Console::start(&people(), &[]).await;
    for path in ["/", "/search?q=A1", "/person/1", "/supervisor"] {
        let reply = console.get(path, None).await;
        assert_eq!(reply.status, 303, "{path}: {reply:?}");
        assert_eq!(reply.location(), "/login", "{path}");
        assert!(!reply.body.contains("A1"), "{path}: {}", reply.body);
    }
    let reply = console.post("/person/1/note", None, "note=hello").await;
    assert_eq!(reply.status, 303);
    assert_eq!(console.count("SELECT count(*) FROM call_notes").await, 0);
    // A forged cookie is no session either.
    let forged = format!("breachmail_session={}", "ab".repeat(32));
    let reply = console.get("/", Some(&forged)).await;
    assert_eq!(reply.status, 303);
    let login = console.get("/login", None).await;
    assert_eq!(login.status, 200);
    assert!(
        login.headers["content-security-policy"].contains("default-src 'none'"),
        "{login:?}"
    );
    assert!(!login.body.contains("<script"), "{}", login.body);
    console.stop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_login_are_refused_alike() {
    let console = Console::start(&people(), &[]).await;
    let wrong = console
        .post("/login", None, "login=alice&password=not+the+password")
        .await;
    let unknown = console
        .post("/login", None, "login=mallory&password=not+the+password")
        .await;
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, 401, "{reply:?}");
        assert!(reply.cookie().is_none(), "{reply:?}");
        assert!(reply.body.contains("Wrong login or password."));
    }
    // What was typed stays in the login field.
    assert!(
        wrong
            .body
            .contains(r#"name="login" autocomplete="username" value="alice""#),
        "{}",
        wrong.body
    );
    assert_eq!(
        console.count("SELECT count(*) FROM console_sessions").await,
        0
    );
    console.stop().await;
}

#[tokio::test]
async fn an_expired_session_sends_back_to_the_login() {
    let console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    assert_eq!(console.get("/", Some(&cookie)).await.status, 200);
    sqlx::query("UPDATE console_sessions SET expires_at = 0")
        .execute(&console.campaign.db().await)
        .await
        .expect("expire the session");
    let reply = console.get("/search?q=A1", Some(&cookie)).await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.location(), "/login?expired=1");
    assert_eq!(
        console.count("SELECT count(*) FROM access_log").await,
        0,
        "no search ran"
    );
    console.stop().await;
}

#[tokio::test]
async fn a_search_flood_is_refused() {
    let console = Console::start(
        &people(),
        &[("BREACHMAIL_CONSOLE_SEARCHES_PER_MINUTE", "5")],
    )
    .await;
    let cookie = console.log_in("bob").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(console.get("/search?q=A1", Some(&cookie)).await.status);
    }
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another adviser is not held up by bob's flood.
    let other = console.log_in("alice").await;
    assert_eq!(console.get("/search?q=A1", Some(&other)).await.status, 200);
    console.stop().await;
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_are_recorded_naming_the_adviser() {
    let console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{page:?}");
    // Masked everywhere, the letter included.
    assert!(page.body.contains("a***@example.org"), "masked address");
    assert!(!page.body.contains("alice.martin@"), "the address in clear");
    let csrf = page.csrf();

    // Without the token, and with another one: refused, nothing recorded.
    for form in [
        "note=called".to_owned(),
        format!("csrf={}&note=called", "0".repeat(64)),
    ] {
        let reply = console
            .post(&format!("/person/{id}/note"), Some(&cookie), &form)
            .await;
        assert_eq!(reply.status, 403, "{form}: {reply:?}");
    }
    let reply = console
        .post(
            &format!("/person/{id}/address"),
            Some(&cookie),
            "email=alice%40example.net&kind=corrected",
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(console.count("SELECT count(*) FROM call_notes").await, 0);
    assert_eq!(console.campaign.events("A1").await, vec!["imported"]);

    // With it: the note, the paper request, the corrected address.
    let note = console
        .post(
            &format!("/person/{id}/note"),
            Some(&cookie),
            &format!("csrf={csrf}&note=Asked+whether+the+mail+is+genuine+%3Cb%3E"),
        )
        .await;
    assert_eq!(note.status, 303, "{note:?}");
    let paper = console
        .post(
            &format!("/person/{id}/paper"),
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(paper.status, 303);
    let address = console
        .post(
            &format!("/person/{id}/address"),
            Some(&cookie),
            &format!("csrf={csrf}&email=alice%40example.net&kind=corrected"),
        )
        .await;
    assert_eq!(address.location(), format!("/person/{id}?done=address"));
    assert_eq!(
        console.campaign.delivery::<i64>("A1", "generation").await,
        2
    );
    assert_eq!(
        console.campaign.delivery::<String>("A1", "email").await,
        "alice@example.net"
    );
    assert_eq!(
        console.campaign.events("A1").await,
        vec![
            "imported",
            "call_note",
            "paper_requested",
            "resend",
            "address_corrected"
        ]
    );
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert!(page.body.contains("&lt;b&gt;"), "the note is escaped");

    // The evidence names the adviser; the postal export includes the paper request.
    let audit = console
        .campaign
        .run(&["export", "audit", "--events", "--format", "jsonl"]);
    assert_success(&audit, "export audit --events");
    let corrected = stdout(&audit)
        .lines()
        .find(|line| line.contains("address_corrected"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(corrected.contains("adviser bob"), "{}", stdout(&audit));
    let postal = console.campaign.run(&["export", "postal"]);
    assert_success(&postal, "export postal");
    assert!(
        stdout(&postal).contains("asked the helpline for a paper letter"),
        "{}",
        stdout(&postal)
    );

    // The supervisor's counters (bob is no supervisor).
    assert_eq!(console.get("/supervisor", Some(&cookie)).await.status, 403);
    let supervisor = console.log_in("alice").await;
    let counters = console.get("/supervisor", Some(&supervisor)).await;
    assert_eq!(counters.status, 200);
    for figure in [
        "<td id=\"calls-today\">1</td>",
        "<td id=\"corrections-today\">1</td>",
        "<td id=\"paper-today\">1</td>",
    ] {
        assert!(
            counters.body.contains(figure),
            "{figure}: {}",
            counters.body
        );
    }
    // Every page opened is in the access log, with who looked at whom.
    let views = console
        .count(&format!(
            "SELECT count(*) FROM access_log WHERE adviser = 'bob' AND action = 'view' AND person_id = {id}"
        ))
        .await;
    assert_eq!(views, 2);
    console.stop().await;
}

#[tokio::test]
async fn purge_erases_the_call_notes_and_keeps_their_count() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A2").await;
    let csrf = console
        .get(&format!("/person/{id}"), Some(&cookie))
        .await
        .csrf();
    let reply = console
        .post(
            &format!("/person/{id}/note"),
            Some(&cookie),
            &format!("csrf={csrf}&note=Moved+to+Lyon"),
        )
        .await;
    assert_eq!(reply.status, 303);
    let campaign = console.stop().await;
    let database = campaign.database();
    let purge = campaign.run(&["purge", "--yes"]);
    assert_success(&purge, "purge");
    assert!(
        stdout(&purge).contains("1 call notes erased"),
        "{}",
        stdout(&purge)
    );
    let pool = support::campaign::open_pool(&database).await;
    let (notes, texts): (i64, i64) = sqlx::query_as("SELECT count(*), count(note) FROM call_notes")
        .fetch_one(&pool)
        .await
        .expect("call notes");
    assert_eq!((notes, texts), (1, 0));
    let raw = std::fs::read(&database).expect("the database file");
    assert!(!support::files::contains(&raw, b"Moved to Lyon"));
}

#[test]
fn the_console_refuses_to_listen_beyond_loopback_in_clear() {
    let campaign = Campaign::new();
    let output = campaign.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a loopback address"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn the_supervisor_sees_the_days_the_schedule_plans_letters_for() {
    // One letter a day, every day: the two people are planned on two days.
    let console = Console::start(
        &people(),
        &[
            ("BREACHMAIL_SCHEDULE_TIMEZONE", "Europe/Paris"),
            ("BREACHMAIL_SCHEDULE_WINDOWS", "[\"mon-sun 00:00-24:00\"]"),
            ("BREACHMAIL_SCHEDULE_DAILY_CAP", "1"),
        ],
    )
    .await;
    let supervisor = console.log_in("alice").await;
    let page = console.get("/supervisor", Some(&supervisor)).await;
    assert_eq!(page.status, 200);
    let planned = page.body.matches("planned by the schedule").count();
    assert_eq!(
        planned,
        people().len(),
        "one line a day, one letter each: {}",
        page.body
    );
    assert!(page.body.contains("(today)"), "{}", page.body);
}

/// People with a postcode and a city: three Lefèvre at 75011 (two in Paris, one spelt without
/// the accent), 25 Dupont at 75011, one Lefèvre at 69003.
fn people_with_postcodes(campaign: &Campaign) {
    let mut csv = String::from(
        "ref,email,civility,first_name,last_name,language,exposed,identifier,postcode,city\n",
    );
    let line = |r: &str, email: &str, first: &str, last: &str, postcode: &str, city: &str| {
        format!(
            "{r},{email},Mme,{first},{last},fr,name;email;postal,1234567A4821,{postcode},{city}\n"
        )
    };
    csv.push_str(&line(
        "L1",
        "lea@example.org",
        "Léa",
        "Lefèvre",
        "75011",
        "Paris",
    ));
    csv.push_str(&line(
        "L2",
        "marc@example.net",
        "Marc",
        "LEFÈVRE",
        "75 011",
        "Paris",
    ));
    csv.push_str(&line(
        "L3",
        "max@example.com",
        "Maxime",
        "Lefevre",
        "75011",
        "Paris 11e",
    ));
    csv.push_str(&line(
        "L4",
        "lyon@example.org",
        "Léa",
        "Lefèvre",
        "69003",
        "Lyon",
    ));
    for i in 0..25 {
        csv.push_str(&line(
            &format!("D{i}"),
            &format!("d{i}@example.org"),
            "Jean",
            "Dupont",
            "75011",
            "Paris",
        ));
    }
    let file = campaign.write_outside("postcodes.csv", csv);
    assert_success(&campaign.import(&file, &[]), "import");
}

#[tokio::test]
async fn a_last_name_and_postcode_are_found_however_typed_with_the_true_count() {
    let campaign = Campaign::new();
    people_with_postcodes(&campaign);
    let console = Console::serve(campaign, &[]).await;
    let cookie = console.log_in("bob").await;

    // No accent, another case, a space in the postcode: the three of 75011, not the one of Lyon.
    let page = console
        .get("/search?last_name=lefevre&postcode=75+011", Some(&cookie))
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body
            .contains("3 people with this last name at postcode 75 011"),
        "{}",
        page.body
    );
    let results = page.body.split("id=\"results\"").nth(1).unwrap_or_default();
    assert_eq!(results.matches("href=\"/person/").count(), 3, "{results}");
    // Told apart without opening a row: the first-name initial, the city, the masked address,
    // and the postcode as it was typed.
    for shown in [
        "L. L.",
        "M. L.",
        "l***@example.org",
        "m***@example.net",
        "m***@example.com",
        "Paris 11e",
        "<td>75 011</td>",
    ] {
        assert!(results.contains(shown), "{shown}: {results}");
    }
    assert!(!results.contains("Lyon"), "{results}");
    // What was typed stays in the boxes.
    assert!(
        page.body.contains(
            r#"name="last_name" placeholder="Last name" aria-label="Last name" value="lefevre""#
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"value="75 011""#), "{}", page.body);

    // The true number of matches, beyond the 20 listed; the first name narrows.
    let page = console
        .get("/search?last_name=DUPONT&postcode=75011", Some(&cookie))
        .await;
    assert!(
        page.body.contains("25 people with this last name at postcode 75011; the first 20 below: add the first name to narrow"),
        "{}",
        page.body
    );
    let page = console
        .get(
            "/search?last_name=lefevre&postcode=75011&first_name=ma",
            Some(&cookie),
        )
        .await;
    assert!(
        page.body
            .contains("2 people with this last name at postcode 75011"),
        "{}",
        page.body
    );

    // A misspelt name finds nobody, and says what to ask.
    let page = console
        .get("/search?last_name=Lefebvre&postcode=75011", Some(&cookie))
        .await;
    assert!(
        page.body
            .contains("no person with this last name at postcode 75011"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Ask the caller to spell the name"),
        "{}",
        page.body
    );
    console.stop().await;
}

#[tokio::test]
async fn the_letter_is_masked_unless_the_adviser_asks_and_that_is_logged() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("id=\"letter\""),
        "the letter is on the page"
    );
    for clear in ["alice.martin@", "Lefèvre", "Élodie"] {
        assert!(
            !page.body.contains(clear),
            "{clear} in clear: {}",
            page.body
        );
    }
    assert!(
        page.body.contains("Show the letter unmasked (logged)"),
        "{}",
        page.body
    );
    assert_eq!(
        console
            .count("SELECT count(*) FROM access_log WHERE action = 'reveal'")
            .await,
        0
    );
    let revealed = console
        .get(&format!("/person/{id}?reveal=1"), Some(&cookie))
        .await;
    assert!(revealed.body.contains("Lefèvre"), "{}", revealed.body);
    assert!(
        revealed.body.contains("this look is logged"),
        "{}",
        revealed.body
    );
    assert_eq!(
        console
            .count(&format!(
                "SELECT count(*) FROM access_log WHERE adviser = 'bob' AND action = 'reveal' AND person_id = {id}"
            ))
            .await,
        1
    );
    console.stop().await;
}

#[tokio::test]
async fn person_pages_are_capped_per_hour_and_the_supervisor_sees_who_reached_the_cap() {
    let console = Console::start(
        &people(),
        &[("BREACHMAIL_CONSOLE_PERSON_VIEWS_PER_HOUR", "3")],
    )
    .await;
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(
            console
                .get(&format!("/person/{}", id + n % 2), Some(&cookie))
                .await,
        );
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429], "{codes:?}");
    assert!(
        statuses[3].body.contains("Too many person pages"),
        "{}",
        statuses[3].body
    );
    assert!(
        !statuses[3].body.contains("example.org"),
        "nothing of the person"
    );
    // Another adviser is not held up.
    let supervisor = console.log_in("alice").await;
    assert_eq!(
        console
            .get(&format!("/person/{id}"), Some(&supervisor))
            .await
            .status,
        200
    );
    let page = console.get("/supervisor", Some(&supervisor)).await;
    let bob = page
        .body
        .split("<tr id=\"adviser-bob\"")
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .unwrap_or_default();
    assert!(bob.starts_with(" class=\"over\""), "{}", page.body);
    assert!(
        bob.contains("<td>3</td><td>3</td><td>2 (over the cap)</td>"),
        "{bob}"
    );
    console.stop().await;
}

#[tokio::test]
async fn the_letter_as_sent_and_the_next_letter_are_told_apart_on_the_first_screen() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let csrf = console
        .get(&format!("/person/{id}"), Some(&cookie))
        .await
        .csrf();
    let reply = console
        .post(
            &format!("/person/{id}/address"),
            Some(&cookie),
            &format!("csrf={csrf}&email=alice%40example.net&kind=corrected"),
        )
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    // Both above the actions (the first screen), each labelled.
    let (first_screen, _) = page
        .body
        .split_once("<h2>Actions</h2>")
        .expect("the actions");
    let as_sent = first_screen
        .split("id=\"as-sent-summary\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .unwrap_or_default();
    assert!(
        as_sent.starts_with("Generation 1 · by e-mail · Sent on ")
            && as_sent.ends_with("(UTC) · To a***@example.org"),
        "{as_sent}"
    );
    assert!(
        first_screen.contains("The next letter (not sent yet)"),
        "{first_screen}"
    );
    let next = first_screen
        .split("id=\"next-summary\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .unwrap_or_default();
    assert_eq!(
        next,
        "Generation 2 · To a***@example.net · waiting to be sent"
    );
    // The letter as sent went to the first address; the next one goes to the new one.
    let text_of = |id: &str| {
        page.body
            .split(&format!("id=\"{id}\">"))
            .nth(1)
            .and_then(|s| s.split("</pre>").next())
            .unwrap_or_default()
            .to_owned()
    };
    let (letter, next_letter) = (text_of("letter"), text_of("next-letter-body"));
    assert!(
        letter.contains("a***@example.org") && !letter.contains("a***@example.net"),
        "{letter}"
    );
    assert!(next_letter.contains("a***@example.net"), "{next_letter}");
    // The verdict: genuine, by e-mail, with its date and address.
    let verdict = page
        .body
        .split("id=\"verdict\">")
        .nth(1)
        .unwrap_or_default();
    assert!(
        verdict.starts_with("genuine: sent by e-mail on "),
        "{verdict}"
    );
    assert!(
        page.body.contains("class=\"verdict genuine\""),
        "{}",
        page.body
    );
    console.stop().await;
}

#[tokio::test]
async fn genuine_and_not_ours_are_equally_prominent_with_a_script_each() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let notice: String = sqlx::query_scalar("SELECT notice_id FROM people WHERE ref = 'A1'")
        .fetch_one(&console.campaign.db().await)
        .await
        .expect("notice id");
    let genuine = console
        .get(&format!("/search?q={notice}"), Some(&cookie))
        .await;
    let forged = console.get("/search?q=ZZZZ-ZZZZ-ZZZZ", Some(&cookie)).await;
    assert!(
        genuine
            .body
            .contains(r#"<div class="verdict genuine" id="verdict">genuine: sent by e-mail on "#),
        "{}",
        genuine.body
    );
    assert!(
        forged.body.contains(
            r#"<div class="verdict forged" id="verdict">no notice with this number was sent"#
        ),
        "{}",
        forged.body
    );
    // One style for both: bold and large; only the colours differ.
    assert!(
        genuine
            .body
            .contains(".verdict{font-size:1.35em;font-weight:bold;"),
        "{}",
        genuine.body
    );
    assert!(
        !genuine
            .body
            .contains(".forged{border-color:#b02020;color:#b02020;font-weight:bold}")
    );
    for page in [&genuine, &forged] {
        assert!(
            page.body.contains(
                "<div class=\"script\" id=\"script\"><strong>What to tell the caller</strong>"
            ),
            "{}",
            page.body
        );
    }
    // The search box keeps the number, and the person's page opened from it has it too.
    assert!(
        genuine
            .body
            .contains(&format!("name=\"q\" size=\"30\" value=\"{notice}\"")),
        "{}",
        genuine.body
    );
    let id = console.person_id("A1").await;
    // (`=` is escaped in the attribute, as every value is.)
    let link = format!("href=\"/person/{id}?q&#x3D;{notice}\"");
    assert!(genuine.body.contains(&link), "{link}: {}", genuine.body);
    let person = console
        .get(&format!("/person/{id}?q={notice}"), Some(&cookie))
        .await;
    assert!(
        person
            .body
            .contains(&format!("name=\"q\" size=\"30\" value=\"{notice}\"")),
        "{}",
        person.body
    );
    console.stop().await;
}

#[tokio::test]
async fn the_console_speaks_the_campaigns_language_with_local_times_and_plain_states() {
    let console = Console::start(
        &[person("A1", "alice.martin@example.org"), person("N1", "")],
        &[
            ("BREACHMAIL_CONSOLE_LANGUAGE", ""),
            ("BREACHMAIL_SCHEDULE_TIMEZONE", "Europe/Paris"),
        ],
    )
    .await;
    let login = console.get("/login", None).await;
    assert!(login.body.contains("<html lang=\"fr\">"), "{}", login.body);
    assert!(
        login.body.contains(">Identifiant</label>"),
        "{}",
        login.body
    );
    assert_success(&console.campaign.run(&["send"]), "send");
    let cookie = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let page = console.get(&format!("/person/{id}"), Some(&cookie)).await;
    assert!(
        page.body.contains("authentique : envoyé par courriel le "),
        "{}",
        page.body
    );
    assert!(page.body.contains("(Europe/Paris)"), "{}", page.body);
    assert!(
        page.body.contains("pris pour envoi"),
        "the timeline in words: {}",
        page.body
    );
    for internal in [">sent<", ">claimed<", "T0", ":00Z<"] {
        assert!(!page.body.contains(internal), "{internal}: {}", page.body);
    }
    let without = console.person_id("N1").await;
    let page = console
        .get(&format!("/person/{without}"), Some(&cookie))
        .await;
    assert!(
        page.body
            .contains("<td id=\"state\">pas d&#x27;adresse électronique"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("class=\"verdict caution\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("ce numéro d&#x27;avis est bien le nôtre, mais aucun courriel n&#x27;a été envoyé à cette personne (pas d&#x27;adresse)"),
        "{}",
        page.body
    );
    console.stop().await;
}

/// A Postfix-style hard bounce of the letter to this address.
fn hard_bounce(recipient: &str) -> String {
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
To: ne-pas-repondre@notification.example.fr\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Date: Tue, 11 Mar 2025 09:30:00 +0100\r\nMessage-Id: <20250311.2@mx.example.org>\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected\r\n\r\n--B--\r\n"
    )
}

#[tokio::test]
async fn the_supervisor_sees_the_days_calls_per_adviser_not_ours_look_ups_and_bounces() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    let bounce = console
        .campaign
        .write_outside("bounce.eml", hard_bounce("bruno@example.org"));
    assert_success(
        &console
            .campaign
            .run(&["bounces", bounce.to_str().expect("utf-8 path")]),
        "bounces",
    );
    let bob = console.log_in("bob").await;
    let id = console.person_id("A1").await;
    let csrf = console
        .get(&format!("/person/{id}"), Some(&bob))
        .await
        .csrf();
    for (path, form) in [
        ("note", format!("csrf={csrf}&note=asked+about+the+letter")),
        ("paper", format!("csrf={csrf}")),
    ] {
        let reply = console
            .post(&format!("/person/{id}/{path}"), Some(&bob), &form)
            .await;
        assert_eq!(reply.status, 303, "{reply:?}");
    }
    // Callers quoting notice numbers nobody was sent.
    for n in 0..7 {
        let reply = console
            .get(
                &format!("/search?q=ZZZZ-ZZZZ-ZZZ{}", (b'A' + n) as char),
                Some(&bob),
            )
            .await;
        assert!(reply.body.contains("verdict forged"), "{}", reply.body);
    }
    let alice = console.log_in("alice").await;
    let page = console.get("/supervisor", Some(&alice)).await;
    assert_eq!(page.status, 200);
    let bob_row = page
        .body
        .split("<tr id=\"adviser-bob\">")
        .nth(1)
        .and_then(|row| row.split("</tr>").next())
        .unwrap_or_default();
    assert_eq!(
        bob_row, "<td>bob</td><td>1</td><td>0</td><td>1</td><td>1</td><td>1</td><td>0</td>",
        "{}",
        page.body
    );
    let calls = page.body.split("id=\"calls\"").nth(1).unwrap_or_default();
    assert_eq!(calls.matches("<td>bob</td>").count(), 2, "{calls}");
    assert!(
        calls.contains("call noted") && calls.contains("paper letter asked for"),
        "{calls}"
    );
    let not_ours = page
        .body
        .split("id=\"not-ours\"")
        .nth(1)
        .unwrap_or_default();
    assert!(not_ours.contains("<td>7</td>"), "{not_ours}");
    assert!(page.body.contains("id=\"not-ours-alert\""), "{}", page.body);
    assert!(
        page.body.contains("<td id=\"bounces-hard\">1</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<td id=\"being-sent\">0</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<td id=\"deferred\">0</td>"),
        "{}",
        page.body
    );
    console.stop().await;
}

#[tokio::test]
async fn serve_stops_within_five_seconds_of_sigterm_with_idle_keep_alive_connections_open() {
    let mut console = Console::start(&people(), &[]).await;
    // A browser's way: one request answered, the connection kept open for the next one.
    let mut kept = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    kept.write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n\r\n", console.addr).as_bytes())
        .await
        .expect("sends");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("</html>") {
        let n = kept.read(&mut chunk).await.expect("reads the reply");
        assert!(n > 0, "the console closed a keep-alive connection");
        reply.extend_from_slice(&chunk[..n]);
    }
    // One opened that never sent a byte, and one whose request stalled half-way.
    let _silent = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    let mut stalled = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    stalled
        .write_all(format!("GET /login HTTP/1.1\r\nHost: {}\r\n", console.addr).as_bytes())
        .await
        .expect("sends");

    let pid = console.server.id().expect("the console runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), console.server.wait())
        .await
        .expect("serve ended after SIGTERM")
        .expect("serve could be waited for");
    let took = started.elapsed();
    assert!(ended.success(), "{ended:?}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM runs WHERE command = 'serve' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&console.campaign.db().await)
    .await
    .expect("the serve run is recorded");
    assert_eq!(outcome, "stopped");
}

#[tokio::test]
async fn serve_stops_within_five_seconds_of_sigterm_with_a_request_waiting_for_the_database() {
    let mut console = Console::start(&people(), &[]).await;
    let cookie = console.log_in("bob").await;
    // Another process holds the database: the search (which logs the look) waits its turn,
    // up to the busy timeout of 30 s.
    let mut holder = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        console.campaign.database().display()
    ))
    .await
    .expect("opens the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("takes the write lock");
    let mut waiting = tokio::net::TcpStream::connect(&console.addr)
        .await
        .expect("connects to the console");
    waiting
        .write_all(
            format!(
                "GET /search?q=A1 HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
                console.addr
            )
            .as_bytes(),
        )
        .await
        .expect("sends");

    let pid = console.server.id().expect("the console runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(40), console.server.wait())
        .await
        .expect("serve ended after SIGTERM")
        .expect("serve could be waited for");
    let took = started.elapsed();
    assert!(ended.success(), "{ended:?}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}

#[tokio::test]
async fn the_person_page_says_where_the_letter_stands_past_the_relay() {
    let console = Console::start(&people(), &[]).await;
    assert_success(&console.campaign.run(&["send"]), "send");
    // A1's provider accepted the letter, as its relay's notification said (what `bounces` records).
    let a1 = console.person_id("A1").await;
    let pool = console.campaign.db().await;
    let run = breachmail::store::campaign::start_run(&pool, "bounces")
        .await
        .expect("a run");
    let mut conn = pool.acquire().await.expect("a connection");
    let acceptance = breachmail::store::ledger::Acceptance {
        remote_mta: Some("mx.example.org"),
        reply: Some("250 2.0.0 Ok: queued as 4P00000001"),
        at: 1_796_541_198_000,
    };
    assert!(
        breachmail::store::ledger::mark_delivered(
            &mut conn,
            a1,
            1,
            &acceptance,
            run,
            1_796_541_199_000
        )
        .await
        .expect("mark delivered")
    );
    drop(conn);
    pool.close().await;

    let cookie = console.log_in("bob").await;
    let page = console.get(&format!("/person/{a1}"), Some(&cookie)).await;
    // The helpline's words for the state and the verdict (the English campaign of this test).
    assert!(
        page.body
            .contains("sent by e-mail, accepted by the person&#x27;s provider")
            || page
                .body
                .contains("sent by e-mail, accepted by the person's provider"),
        "{}",
        page.body
    );
    let a2 = console.person_id("A2").await;
    let page = console.get(&format!("/person/{a2}"), Some(&cookie)).await;
    assert!(
        page.body
            .contains("sent by e-mail (accepted by our mail server)"),
        "{}",
        page.body
    );
    console.stop().await;
}
