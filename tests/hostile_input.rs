//! Hostile input, at the library's doors: a CSV value with a line break cannot reach a header, an
//! `extra` column quoted in a subject cannot add one, templates cannot name a file to read, and
//! HTML letters escape what people's fields hold.

mod support;

use std::path::{Path, PathBuf};

use breachmail::config::Config;
use breachmail::domain::{Category, Email, NoticeId, PersonRef};
use breachmail::import::validate_csv_bytes;
use breachmail::message::MessageBuilder;
use breachmail::person::Person;
use breachmail::render::{Letter, Letters};
use support::files::{files_under, manifest_dir};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const HEADER: &str = "ref,email,civility,first_name,last_name,language,exposed";

/// A copy of the project's letters in `dir`, for a test to change.
fn copy_letters(dir: &Path) -> PathBuf {
    let letters = dir.join("letters");
    let source = manifest_dir().join("letters");
    for entry in files_under(&source) {
        let target = letters.join(entry.strip_prefix(&source).expect("inside"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&entry, &target).expect("copy letter");
    }
    letters
}

fn config_for(letters: &Path) -> Config {
    let incident = std::fs::read_to_string(manifest_dir().join("letters/incident.example.toml"))
        .expect("example incident");
    let text = format!(
        "[campaign]\nletters = {:?}\ndefault_language = \"fr\"\n\n[sender]\nfrom = \"Agence <ne-pas-repondre@notification.example.fr>\"\n\n{incident}",
        letters.display().to_string()
    );
    Config::from_toml(&text, letters.parent().expect("parent"), &[]).expect("valid config")
}

fn person_with_note(note: &str) -> Person {
    let mut extra = serde_json::Map::new();
    extra.insert("note".into(), serde_json::Value::String(note.into()));
    Person {
        id: 7,
        person_ref: PersonRef::parse("H1").expect("a ref"),
        notice_id: NoticeId::parse("K7QF-3MZ9-P2XH").expect("a notice id"),
        email: Some(Email::parse("marie.dupont@exemple.fr").expect("an address")),
        civility: Some("ms".into()),
        first_name: Some("Marie".into()),
        last_name: Some("Dupont".into()),
        language: "fr".into(),
        address_line1: None,
        address_line2: None,
        postcode: None,
        city: None,
        country: None,
        phone_masked: None,
        identifier_masked: None,
        exposed: Category::parse_list("name;email").expect("categories"),
        extra,
        generation: 1,
    }
}

#[test]
fn a_carriage_return_in_a_header_field_is_refused_at_import() {
    for (field, row) in [
        (
            "first_name",
            "R1,a@exemple.fr,Mme,\"Ma\rrie\",Dupont,fr,name",
        ),
        (
            "last_name",
            "R2,a@exemple.fr,Mme,Marie,\"Du\r\nBcc: x@evil.example\",fr,name",
        ),
        (
            "email",
            "R3,\"a@exemple.fr\rBcc: x@evil.example\",Mme,Marie,Dupont,fr,name",
        ),
    ] {
        let csv = format!("{HEADER}\n{row}\n");
        let verdict = validate_csv_bytes(csv.as_bytes()).expect("readable CSV");
        assert!(
            verdict.rejections.iter().any(|r| r.field == field),
            "{field}: {:?}",
            verdict.rejections
        );
        // The e-mail address is kept out (the person stays, without e-mail); names refuse the row.
        if field != "email" {
            assert_eq!(verdict.valid_rows, 0, "{field}");
        }
    }
    let clean = format!("{HEADER}\nR4,a@exemple.fr,Mme,Marie,Dupont,fr,name\n");
    let verdict = validate_csv_bytes(clean.as_bytes()).expect("readable CSV");
    assert_eq!(verdict.valid_rows, 1);
    assert!(verdict.rejections.is_empty(), "{:?}", verdict.rejections);
}

#[test]
fn an_extra_column_in_the_subject_cannot_add_a_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let letters = copy_letters(dir.path());
    std::fs::write(letters.join("fr/subject.hbs"), "Avis {{extra.note}}").expect("subject");
    let config = config_for(&letters);
    let letters = Letters::load(&config).expect("letters load");
    let hostile = person_with_note("x\r\nBcc: everyone@evil.example");
    let error = letters.render(&hostile).expect_err("refused at render");
    assert!(error.to_string().contains("control character"), "{error}");

    // And if a subject with a line break ever reached the message builder, it refuses it too.
    let builder = MessageBuilder::new(&config, KEY).expect("builder");
    let fine = letters
        .render(&person_with_note("important"))
        .expect("renders");
    for subject in [
        "Avis\r\nBcc: everyone@evil.example",
        "Avis\nX-Evil: 1",
        "Avis\u{0}",
    ] {
        let letter = Letter {
            subject: subject.into(),
            ..fine.clone()
        };
        let error = builder
            .build(&hostile, &letter, chrono::Utc::now())
            .expect_err("refused by the builder");
        assert!(error.to_string().contains("control character"), "{error}");
    }
}

#[test]
fn a_template_cannot_name_a_file_to_read() {
    for call in [
        "{{> /etc/passwd}}",
        "{{> ../../../../etc/passwd}}",
        "{{> partials/../../secret}}",
        "{{~> /etc/hostname ~}}",
        "{{#> /etc/passwd}}x{{/passwd}}",
        "{{> no_such_partial}}",
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let letters = copy_letters(dir.path());
        std::fs::write(letters.join("en/body.txt.hbs"), format!("Hello\n{call}\n"))
            .expect("template");
        let error = match Letters::load(&config_for(&letters)) {
            Ok(_) => panic!("{call} was accepted at load"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains("body.txt.hbs"), "{call}: {error}");
    }
    // Inline partials, which live in the template itself, still work.
    let dir = tempfile::tempdir().expect("temp dir");
    let letters = copy_letters(dir.path());
    let body = std::fs::read_to_string(letters.join("en/body.txt.hbs")).expect("body");
    std::fs::write(
        letters.join("en/body.txt.hbs"),
        format!("{{{{#*inline \"sign\"}}}}Regards{{{{/inline}}}}{body}{{{{> sign}}}}\n"),
    )
    .expect("template");
    Letters::load(&config_for(&letters)).expect("inline partials load");
}

#[test]
fn html_letters_escape_what_a_person_field_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let letters = Letters::load(&config_for(&copy_letters(dir.path()))).expect("letters load");
    let mut person = person_with_note("n");
    person.last_name = Some("<script>alert(1)</script>".into());
    let letter = letters.render(&person).expect("renders");
    assert!(letter.text.contains("<script>alert(1)</script>"));
    assert!(!letter.html.contains("<script>"));
    assert!(
        letter
            .html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
}
