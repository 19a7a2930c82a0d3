//! The letters and the message as a person receives them: golden files for fixed people in
//! French and English, escaping, header safety, MIME structure and DKIM signatures.
//!
//! Golden files live in tests/golden/; on a mismatch the test prints a line diff, and
//! `UPDATE_GOLDEN=1 cargo test --test letters` rewrites them after a deliberate change.

mod support;

use std::path::Path;

use breachmail::config::Config;
use breachmail::domain::{Category, Email, NoticeId, PersonRef};
use breachmail::message::MessageBuilder;
use breachmail::person::Person;
use breachmail::render::Letters;
use chrono::TimeZone;
use mail_parser::{MessageParser, MimeHeaders};
use support::files::manifest_dir;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The project's letters and example incident, with a fixed sender.
fn config_with(dir: &Path, extra: &str) -> Config {
    let incident = std::fs::read_to_string(manifest_dir().join("letters/incident.example.toml"))
        .expect("example incident");
    let text = format!(
        "[campaign]\nletters = {:?}\ndefault_language = \"fr\"\n\n[sender]\nfrom = \"France Emploi (exemple) <ne-pas-repondre@notification.example.fr>\"\nreply_to = \"dpo@france-emploi.example.fr\"\n\n{extra}\n{incident}",
        manifest_dir().join("letters").display().to_string()
    );
    Config::from_toml(&text, dir, &[]).expect("valid config")
}

fn config() -> Config {
    config_with(&manifest_dir(), "")
}

fn person(person_ref: &str, language: &str) -> Person {
    Person {
        id: 42,
        person_ref: PersonRef::parse(person_ref).expect("a ref"),
        notice_id: NoticeId::parse("K7QF-3MZ9-P2XH").expect("a notice id"),
        email: Some(Email::parse("marie.dupont@exemple.fr").expect("an address")),
        civility: Some("ms".to_owned()),
        first_name: Some("Marie".to_owned()),
        last_name: Some("Dupont".to_owned()),
        language: language.to_owned(),
        address_line1: Some("12 rue Pasteur".to_owned()),
        address_line2: None,
        postcode: Some("69003".to_owned()),
        city: Some("Lyon".to_owned()),
        country: Some("France".to_owned()),
        phone_masked: Some("•• •• •• •• 78".to_owned()),
        identifier_masked: Some("…4821".to_owned()),
        exposed: Category::parse_list("name;email;postal;phone;identifier").expect("categories"),
        extra: serde_json::Map::new(),
        generation: 1,
    }
}

/// The fixed people of the golden files, each a different greeting or set of data.
fn golden_people() -> Vec<(&'static str, Person)> {
    let mut people = Vec::new();
    for language in ["fr", "en"] {
        people.push(("civility_all_categories", person("G-1", language)));
        let mut mr = person("G-2", language);
        mr.civility = Some("mr".into());
        mr.first_name = Some("Théo".into());
        mr.last_name = Some("N'Diaye".into());
        mr.exposed = Category::parse_list("name;email;identifier").expect("categories");
        mr.identifier_masked = None;
        people.push(("mr_no_identifier", mr));
        let mut plain = person("G-3", language);
        plain.civility = None;
        plain.exposed = Category::ALL.to_vec();
        people.push(("no_civility_every_category", plain));
        let mut anonymous = person("G-4", language);
        anonymous.civility = None;
        anonymous.first_name = None;
        anonymous.last_name = None;
        anonymous.phone_masked = None;
        anonymous.exposed = Vec::new();
        people.push(("no_name_no_category", anonymous));
    }
    people
}

fn compare_golden(name: &str, actual: &str, failures: &mut Vec<String>) {
    let path = manifest_dir().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("folder")).expect("golden folder");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return;
    }
    let mut diff = format!("--- {name} (expected)\n+++ {name} (rendered)\n");
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    diff.push_str(&format!("{:>4} - {x}\n", i + 1));
                }
                if let Some(y) = y {
                    diff.push_str(&format!("{:>4} + {y}\n", i + 1));
                }
            }
        }
    }
    failures.push(diff);
}

#[test]
fn letters_match_the_golden_files() {
    let letters = Letters::load(&config()).expect("letters load");
    let mut failures = Vec::new();
    for (variant, person) in golden_people() {
        let letter = letters.render(&person).expect("renders");
        let stem = format!("{}_{variant}", person.language);
        compare_golden(&format!("{stem}.subject"), &letter.subject, &mut failures);
        compare_golden(&format!("{stem}.txt"), &letter.text, &mut failures);
        compare_golden(&format!("{stem}.html"), &letter.html, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "letters differ from tests/golden (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_language_without_letters_gets_the_default_one() {
    let letters = Letters::load(&config()).expect("letters load");
    let letter = letters.render(&person("X", "de")).expect("renders");
    assert_eq!(letter.language, "fr");
    assert!(letter.text.contains("Madame Dupont,"));
}

#[test]
fn a_name_is_escaped_in_html_and_verbatim_in_text() {
    let letters = Letters::load(&config()).expect("letters load");
    let mut p = person("X", "en");
    p.last_name = Some("<script>alert(1)</script>".into());
    let letter = letters.render(&p).expect("renders");
    assert!(letter.text.contains("Dear Ms <script>alert(1)</script>,"));
    assert!(!letter.html.contains("<script>"));
    assert!(
        letter
            .html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
}

#[test]
fn a_name_with_a_line_break_cannot_add_a_header() {
    let letters = Letters::load(&config()).expect("letters load");
    let builder = MessageBuilder::new(&config(), KEY).expect("builder");
    let mut p = person("X", "fr");
    p.last_name = Some("Dupont\r\nBcc: everyone@exemple.fr".into());
    let letter = letters.render(&p).expect("renders");
    let error = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect_err("refused");
    assert!(error.to_string().contains("control character"), "{error}");
}

#[test]
fn names_with_quotes_accents_and_angle_brackets_stay_in_the_to_header() {
    let letters = Letters::load(&config()).expect("letters load");
    let builder = MessageBuilder::new(&config(), KEY).expect("builder");
    let mut p = person("X", "fr");
    p.first_name = Some("Zoë \"la <boss>\"".into());
    p.last_name = Some("O'Brien-Müller, Jr.".into());
    let letter = letters.render(&p).expect("renders");
    let outgoing = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds");
    let parsed = MessageParser::default()
        .parse(&outgoing.bytes)
        .expect("parses");
    let to = parsed.to().and_then(|a| a.first()).expect("one To");
    assert_eq!(to.address(), Some("marie.dupont@exemple.fr"));
    assert_eq!(to.name(), Some("Zoë \"la <boss>\" O'Brien-Müller, Jr."));
    assert_eq!(parsed.to().map(|a| a.iter().count()), Some(1));
    assert!(parsed.header_raw("Bcc").is_none());
}

#[test]
fn the_message_is_multipart_alternative_with_text_first() {
    let letters = Letters::load(&config()).expect("letters load");
    let builder = MessageBuilder::new(&config(), KEY).expect("builder");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    let date = chrono::Utc.with_ymd_and_hms(2025, 7, 11, 9, 0, 0).unwrap();
    let outgoing = builder.build(&p, &letter, date).expect("builds");
    let parsed = MessageParser::default()
        .parse(&outgoing.bytes)
        .expect("parses");
    assert!(parsed.is_content_type("multipart", "alternative"));
    assert_eq!(parsed.parts.len(), 3);
    assert!(parsed.parts[1].is_content_type("text", "plain"));
    assert!(parsed.parts[2].is_content_type("text", "html"));
    // On the wire every line ends in CRLF, as MIME requires.
    let received = parsed
        .body_text(0)
        .expect("text part")
        .replace("\r\n", "\n");
    assert_eq!(received, letter.text);
    assert_eq!(parsed.subject(), Some(letter.subject.as_str()));
    assert_eq!(
        parsed.header_raw("X-Notice-Id").map(str::trim),
        Some("K7QF-3MZ9-P2XH")
    );
    assert_eq!(
        parsed.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert_eq!(
        parsed.message_id(),
        Some(outgoing.message_id.as_str()),
        "Message-ID without brackets"
    );
    assert_eq!(
        outgoing.envelope_from,
        "ne-pas-repondre@notification.example.fr"
    );
    assert_eq!(outgoing.recipient, "marie.dupont@exemple.fr");
    use sha2::Digest;
    assert_eq!(
        outgoing.sha256(),
        hex::encode(sha2::Sha256::digest(&outgoing.bytes))
    );
    // The same person and generation keep the Message-ID across builds (retries).
    let again = builder.build(&p, &letter, date).expect("builds");
    assert_eq!(again.message_id, outgoing.message_id);
}

#[test]
fn a_plain_ascii_sender_name_is_quoted_not_encoded() {
    let letters = Letters::load(&config()).expect("letters load");
    let builder = MessageBuilder::new(&config(), KEY).expect("builder");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    let outgoing = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds");
    // A line break first, so the first header is found as any other.
    let text = format!(
        "\r\n{}",
        String::from_utf8(outgoing.bytes.clone()).expect("ASCII headers")
    );
    assert!(
        text.contains(
            "\r\nFrom: \"France Emploi (exemple)\" <ne-pas-repondre@notification.example.fr>\r\n"
        ),
        "{}",
        text.split("\r\n\r\n").next().unwrap_or_default()
    );
    let parsed = MessageParser::default()
        .parse(&outgoing.bytes)
        .expect("parses");
    let from = parsed.from().and_then(|a| a.first()).expect("one From");
    assert_eq!(from.name(), Some("France Emploi (exemple)"));
    assert_eq!(
        from.address(),
        Some("ne-pas-repondre@notification.example.fr")
    );
}

#[test]
fn a_sender_name_outside_ascii_is_an_encoded_word() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), "");
    config.sender.from = "Agence Régionale <ne-pas-repondre@notification.example.fr>"
        .parse()
        .expect("mailbox");
    let builder = MessageBuilder::new(&config, KEY).expect("builder");
    let letters = Letters::load(&config).expect("letters load");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    let outgoing = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds");
    // A line break first, so the first header is found as any other.
    let text = format!(
        "\r\n{}",
        String::from_utf8(outgoing.bytes.clone()).expect("ASCII headers")
    );
    assert!(text.contains("\r\nFrom: =?utf-8?"), "{text}");
    let parsed = MessageParser::default()
        .parse(&outgoing.bytes)
        .expect("parses");
    let from = parsed.from().and_then(|a| a.first()).expect("one From");
    assert_eq!(from.name(), Some("Agence Régionale"));
}

#[test]
fn a_bounce_domain_gives_a_verp_envelope_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), "");
    config.sender.bounce_domain = Some("bounces.example.fr".into());
    let builder = MessageBuilder::new(&config, KEY).expect("builder");
    let letters = Letters::load(&config).expect("letters load");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    let outgoing = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds");
    let verified = breachmail::verp::verify_address(KEY, &outgoing.envelope_from);
    assert_eq!(
        verified,
        Some(Ok(breachmail::verp::DeliveryRef {
            person_id: 42,
            generation: 1
        }))
    );
}

/// Relaxed body canonicalisation (RFC 6376 3.4.4), to recompute the body hash independently.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|line| {
            let collapsed: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let leading = line.starts_with([' ', '\t']) && !collapsed.is_empty();
            format!("{}{}", if leading { " " } else { "" }, collapsed.join(" "))
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut out = lines.join("\r\n").into_bytes();
    if !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn signed_message(key_file: &str) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    std::fs::copy(manifest_dir().join("tests/keys").join(key_file), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config_with(
        dir.path(),
        "[dkim]\nselector = \"s2025\"\ndomain = \"notification.example.fr\"\nprivate_key = \"dkim.pem\"\n",
    );
    let builder = MessageBuilder::new(&config, KEY).expect("builder with DKIM");
    assert!(builder.signs());
    let letters = Letters::load(&config).expect("letters load");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds")
        .bytes
}

fn check_dkim(bytes: &[u8], algorithm: &str) {
    use base64::Engine as _;
    use sha2::Digest;
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (_, body) = text.split_once("\r\n\r\n").expect("headers then body");
    let parsed = MessageParser::default().parse(bytes).expect("parses");
    let signature: String = parsed
        .header_raw("DKIM-Signature")
        .expect("signed")
        .split_whitespace()
        .collect();
    let tag = |name: &str| {
        signature
            .split(';')
            .find_map(|t| t.trim().strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(tag("a"), format!("{algorithm}-sha256"));
    assert_eq!(tag("d"), "notification.example.fr");
    assert_eq!(tag("c"), "relaxed/relaxed");
    let signed: Vec<String> = tag("h").split(':').map(str::to_ascii_lowercase).collect();
    for required in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "x-notice-id",
        "reply-to",
        "mime-version",
        "content-type",
        "auto-submitted",
    ] {
        assert!(
            signed.iter().any(|h| h == required),
            "h= lacks {required}: {signed:?}"
        );
    }
    // Over-signed: named once more than the message has them, so none can be added.
    for once in ["from", "to", "subject", "reply-to"] {
        let named = signed.iter().filter(|h| *h == once).count();
        let present = parsed
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(once))
            .count();
        assert_eq!(named, present + 1, "{once} is not over-signed: {signed:?}");
    }
    // The body hash covers the whole MIME body (after the top-level Content-Type header).
    let mime_body = body;
    let expected = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(relaxed_body(mime_body.as_bytes())));
    assert_eq!(tag("bh"), expected, "body hash");
    assert!(!tag("b").is_empty());
}

#[test]
fn dkim_signs_with_an_rsa_key() {
    check_dkim(&signed_message("rsa.pem"), "rsa");
}

#[test]
fn dkim_signs_with_an_ed25519_key() {
    check_dkim(&signed_message("ed25519.pem"), "ed25519");
}

/// Two keys under `[[dkim.key]]`: every letter carries one signature per key, RSA first, each
/// covering the same headers and the same body.
#[test]
fn dual_signing_puts_an_rsa_and_an_ed25519_signature_on_every_letter() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for file in ["rsa.pem", "ed25519.pem"] {
        let key = dir.path().join(file);
        std::fs::copy(manifest_dir().join("tests/keys").join(file), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = config_with(
        dir.path(),
        "[[dkim.key]]\nselector = \"rsa2025\"\ndomain = \"notification.example.fr\"\nprivate_key = \"rsa.pem\"\n\
         [[dkim.key]]\nselector = \"ed2025\"\ndomain = \"notification.example.fr\"\nprivate_key = \"ed25519.pem\"\n",
    );
    let builder = MessageBuilder::new(&config, KEY).expect("builder with two keys");
    let letters = Letters::load(&config).expect("letters load");
    let p = person("X", "fr");
    let letter = letters.render(&p).expect("renders");
    let bytes = builder
        .build(&p, &letter, chrono::Utc::now())
        .expect("builds")
        .bytes;
    let text = String::from_utf8(bytes.clone()).unwrap();
    let (headers, _) = text.split_once("\r\n\r\n").unwrap();
    let signatures: Vec<&str> = headers
        .split("\r\n")
        .filter(|line| line.starts_with("DKIM-Signature:"))
        .collect();
    assert_eq!(signatures.len(), 2, "{headers}");
    assert!(signatures[0].contains("a=rsa-sha256") && signatures[0].contains("s=rsa2025;"));
    assert!(signatures[1].contains("a=ed25519-sha256") && signatures[1].contains("s=ed2025;"));
    // Each, read as the only one, is a complete signature of the letter.
    let second = text.find("\r\nDKIM-Signature:").expect("second signature") + 2;
    let second_end = second
        + text[second..]
            .match_indices("\r\n")
            .find(|(at, _)| !text[second + at + 2..].starts_with([' ', '\t']))
            .expect("end of the second signature")
            .0
        + 2;
    let rsa_only = format!("{}{}", &text[..second], &text[second_end..]);
    check_dkim(rsa_only.as_bytes(), "rsa");
    check_dkim(&bytes[second..], "ed25519");
}

#[test]
fn a_dkim_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dkim.pem");
    std::fs::copy(manifest_dir().join("tests/keys/rsa.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config_with(
        dir.path(),
        "[dkim]\nselector = \"s\"\ndomain = \"notification.example.fr\"\nprivate_key = \"dkim.pem\"\n",
    );
    let error = MessageBuilder::new(&config, KEY).err().expect("refused");
    let usage = error
        .downcast_ref::<breachmail::exit::UsageError>()
        .expect("usage error");
    assert!(usage.to_string().contains("dkim.private_key"), "{usage}");
}

/// The text before the first section heading: in the text part, the sections are set apart by
/// two empty lines; in the HTML part, each opens with an `<h2`.
fn first_screen<'a>(text: &'a str, html: &'a str) -> (&'a str, &'a str) {
    let text = text.split("\n\n\n").next().unwrap_or_default();
    let html = html.split("<h2").next().unwrap_or_default();
    (text, html)
}

/// Words of each of the three rules, in both languages.
fn three_rules(language: &str) -> [&'static str; 3] {
    if language == "fr" {
        [
            "votre mot de passe",
            "tout message, appel ou offre inattendu",
            "raccrochez et rappelez-nous",
        ]
    } else {
        [
            "a password",
            "any unexpected message, call or offer",
            "hang up and call us back",
        ]
    }
}

#[test]
fn the_first_screen_holds_the_categories_the_three_rules_and_the_notice_number() {
    let letters = Letters::load(&config()).expect("letters load");
    for (variant, person) in golden_people() {
        let letter = letters.render(&person).expect("renders");
        let french = person.language == "fr";
        let (text, html) = first_screen(&letter.text, &letter.html);
        // Read as the reader sees it: the HTML part's entities for ' and " back to characters.
        let html = html
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&quot;", "\"");
        for screen in [text, html.as_str()] {
            let what = format!("{} {variant}: {screen}", person.language);
            assert!(
                screen.contains(person.notice_id.as_str()),
                "no notice number in {what}"
            );
            for rule in three_rules(&person.language) {
                assert!(screen.contains(rule), "no rule {rule:?} in {what}");
            }
            for category in &person.exposed {
                let label =
                    breachmail::render::category_label(category.code(), french).expect("label");
                assert!(screen.contains(label), "no {label:?} in {what}");
            }
            if person.exposed.is_empty() {
                let unknown = if french {
                    "Nous ne savons pas encore"
                } else {
                    "We do not know yet"
                };
                assert!(
                    screen.contains(unknown),
                    "unknown categories unsaid in {what}"
                );
            }
        }
    }
}

#[test]
fn every_combination_of_categories_keeps_every_warning_that_applies() {
    let letters = Letters::load(&config()).expect("letters load");
    for language in ["fr", "en"] {
        let (call, post, email) = if language == "fr" {
            ("faux conseiller", "faux courrier", "un courriel")
        } else {
            ("fake adviser", "fake letter", "an email")
        };
        for mask in 0..(1_u32 << Category::ALL.len()) {
            let mut p = person("X", language);
            p.exposed = Category::ALL
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, c)| *c)
                .collect();
            let letter = letters.render(&p).expect("renders");
            // No category given: nobody knows, so every warning applies.
            let unknown = p.exposed.is_empty();
            let phone = unknown || p.exposed.contains(&Category::Phone);
            let postal = unknown || p.exposed.contains(&Category::Postal);
            for body in [&letter.text, &letter.html] {
                let what = format!("{language} {:?}", p.exposed);
                assert!(body.contains(email), "{what}: no e-mail warning");
                assert_eq!(body.contains(call), phone, "{what}: fake-adviser warning");
                assert_eq!(body.contains(post), postal, "{what}: fake-letter warning");
                assert!(body.contains(three_rules(language)[0]), "{what}: no rules");
            }
        }
    }
}

/// The most words the text part may hold for a person with every category exposed; a person
/// with fewer categories gets no more.
const MAX_WORDS: usize = 550;

/// Words as a reader counts them: runs between spaces (no-break spaces included) holding at
/// least one letter or digit, so "K7QF-3MZ9-P2XH" is one word and a lone ":" none.
fn words(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

#[test]
fn every_golden_letter_is_short_enough_and_docs_give_its_length() {
    let mut counts = Vec::new();
    for entry in std::fs::read_dir(manifest_dir().join("tests/golden")).expect("golden folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path).expect("golden letter");
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            counts.push((stem, words(&text)));
        }
    }
    counts.sort();
    assert_eq!(counts.len(), 8, "{counts:?}");
    let table: String = counts
        .iter()
        .map(|(stem, n)| format!("| {stem} | {n} |\n"))
        .collect();
    println!("{table}");
    for (stem, n) in &counts {
        assert!(*n <= MAX_WORDS, "{stem}: {n} words, over {MAX_WORDS}");
        let language = &stem[..2];
        let every = counts
            .iter()
            .find(|(s, _)| *s == format!("{language}_no_civility_every_category"))
            .map(|(_, n)| *n)
            .expect("an every-category letter");
        assert!(
            *n <= every,
            "{stem}: {n} words, more than the letter with every category ({every})"
        );
    }
    let docs =
        std::fs::read_to_string(manifest_dir().join("docs/operator/letters.md")).expect("docs");
    for line in table.lines() {
        assert!(
            docs.contains(line),
            "docs/operator/letters.md does not give the measured length {line:?}; the table is:\n{table}"
        );
    }
}

/// Pairs of things a letter must never say together (the second may be a heading that opens a
/// list of actions), and words no letter may hold at all.
fn contradictions(language: &str) -> (Vec<(&'static str, &'static str)>, Vec<&'static str>) {
    if language == "fr" {
        (
            vec![
                ("aucune démarche", "Ce que vous pouvez faire"),
                ("rien à faire", "Ce que vous pouvez faire"),
                ("ne vous demande rien", "Donnez-le"),
                ("- vos mots de passe\n", "changez-le partout"),
                ("ni lien", "www."),
            ],
            vec!["Numéro de ce message", "Bonjour", "aucune démarche"],
        )
    } else {
        (
            vec![
                ("do not need to do anything", "What you can do"),
                ("nothing to do", "What you can do"),
                ("asks you for nothing", "Quote it"),
                ("- your passwords\n", "change it everywhere"),
                ("has no link", "www."),
            ],
            vec!["Number of this message", "Dear Marie", "nothing to do"],
        )
    }
}

/// The letters of a campaign: the golden people, and every combination of categories.
fn campaign_letters(letters: &Letters) -> Vec<(String, breachmail::render::Letter)> {
    let mut out = Vec::new();
    for (variant, person) in golden_people() {
        let letter = letters.render(&person).expect("renders");
        out.push((format!("{} {variant}", person.language), letter));
    }
    for language in ["fr", "en"] {
        for mask in 0..(1_u32 << Category::ALL.len()) {
            let mut p = person("X", language);
            p.exposed = Category::ALL
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, c)| *c)
                .collect();
            let letter = letters.render(&p).expect("renders");
            out.push((format!("{language} {:?}", p.exposed), letter));
        }
    }
    out
}

#[test]
fn no_letter_says_contradictory_things() {
    let letters = Letters::load(&config()).expect("letters load");
    for (what, letter) in campaign_letters(&letters) {
        let (pairs, never) = contradictions(&letter.language);
        for (claim, contrary) in pairs {
            assert!(
                !(letter.text.contains(claim) && letter.text.contains(contrary)),
                "{what}: says {claim:?} and {contrary:?}:\n{}",
                letter.text
            );
        }
        for word in never {
            assert!(!letter.text.contains(word), "{what}: says {word:?}");
        }
        let notice = if letter.language == "fr" {
            "numéro d'avis"
        } else {
            "notice number"
        };
        assert!(letter.text.contains(notice), "{what}: no {notice:?}");
        let theft = if letter.language == "fr" {
            "usurpation d'identité"
        } else {
            "identity theft"
        };
        assert!(letter.text.contains(theft), "{what}: {theft:?} unnamed");
        assert!(
            letter
                .text
                .contains("ne-pas-repondre@notification.example.fr"),
            "{what}: the sender address is not given"
        );
    }
}

#[test]
fn advice_about_passwords_appears_only_when_passwords_may_have_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), "");
    config.incident.insert(
        "not_exposed".into(),
        serde_json::json!(["bank_details", "benefits"]),
    );
    let letters = Letters::load(&config).expect("letters load");
    for (language, advice) in [("fr", "changez-le partout"), ("en", "change it everywhere")] {
        let letter = letters.render(&person("X", language)).expect("renders");
        assert!(letter.text.contains(advice), "{language}: {}", letter.text);
        assert!(letter.html.contains(advice), "{language}: {}", letter.html);
    }
    let letters = Letters::load(&self::config()).expect("letters load");
    for (language, advice) in [("fr", "changez-le partout"), ("en", "change it everywhere")] {
        let letter = letters.render(&person("X", language)).expect("renders");
        assert!(!letter.html.contains(advice), "{language}: {}", letter.html);
    }
}

/// Sentences of a text part: lines joined, cut at full stops, question marks, colons and list
/// dashes; those of five words or more.
fn sentences(text: &str) -> Vec<String> {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .split(['.', '?', '!', ':', ';'])
        .flat_map(|s| s.split(" - "))
        .map(|s| s.trim().trim_start_matches("- ").to_owned())
        .filter(|s| words(s) >= 5)
        .collect()
}

#[test]
fn no_sentence_is_said_twice() {
    let letters = Letters::load(&config()).expect("letters load");
    for (what, letter) in campaign_letters(&letters) {
        let mut seen = std::collections::BTreeSet::new();
        for sentence in sentences(&letter.text) {
            assert!(
                seen.insert(sentence.clone()),
                "{what}: said twice: {sentence:?}"
            );
        }
    }
}

#[test]
fn the_greeting_and_the_closing_are_in_one_register() {
    let letters = Letters::load(&config()).expect("letters load");
    let cases = [
        (
            Some("ms"),
            Some("Dupont"),
            "fr",
            "Madame Dupont,",
            "Veuillez agréer, Madame, nos",
        ),
        (
            None,
            Some("Dupont"),
            "fr",
            "Madame, Monsieur,",
            "Veuillez agréer, Madame, Monsieur, nos",
        ),
        (
            None,
            None,
            "fr",
            "Madame, Monsieur,",
            "Veuillez agréer, Madame, Monsieur, nos",
        ),
        (
            Some("mr"),
            None,
            "fr",
            "Monsieur,",
            "Veuillez agréer, Monsieur, nos",
        ),
        (
            Some("ms"),
            Some("Dupont"),
            "en",
            "Dear Ms Dupont,",
            "Yours sincerely,",
        ),
        (
            None,
            Some("Dupont"),
            "en",
            "Dear Sir or Madam,",
            "Yours faithfully,",
        ),
        (Some("mr"), None, "en", "Dear Sir,", "Yours faithfully,"),
    ];
    for (civility, last_name, language, greeting, closing) in cases {
        let mut p = person("X", language);
        p.civility = civility.map(str::to_owned);
        p.last_name = last_name.map(str::to_owned);
        let letter = letters.render(&p).expect("renders");
        assert!(
            letter.text.starts_with(&format!("{greeting}\n")),
            "{civility:?} {last_name:?} {language}: {}",
            &letter.text[..60]
        );
        assert!(
            letter.text.contains(closing),
            "{civility:?} {last_name:?} {language}"
        );
        assert!(
            letter.html.contains(greeting),
            "{civility:?} {last_name:?} {language}"
        );
    }
}
