//! Criterion micro-benchmarks of the per-person hot paths: rendering one letter, building (and
//! DKIM-signing) one message, parsing one bounce. `cargo bench --bench hot_paths`.

use std::path::Path;

use breachmail::config::Config;
use breachmail::domain::{Category, Email, NoticeId, PersonRef};
use breachmail::message::MessageBuilder;
use breachmail::person::Person;
use breachmail::render::Letters;
use criterion::{Criterion, criterion_group, criterion_main};

fn config(extra: &str) -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let incident = std::fs::read_to_string(root.join("letters/incident.example.toml"))
        .expect("letters/incident.example.toml");
    let text = format!("{}{extra}\n{incident}", breachmail::init::CONFIG_TEMPLATE);
    Config::from_toml(&text, root, &[]).expect("the default configuration loads")
}

fn person() -> Person {
    Person {
        id: 4821,
        person_ref: PersonRef::parse("DE00004821").expect("a ref"),
        notice_id: NoticeId::parse("K7QF-3MZ9-P2XA").expect("a notice id"),
        email: Some(Email::parse("elodie.lefevre@orange.fr").expect("an address")),
        civility: Some("ms".into()),
        first_name: Some("Élodie".into()),
        last_name: Some("Lefèvre".into()),
        language: "fr".into(),
        address_line1: Some("12 rue de la République".into()),
        address_line2: None,
        postcode: Some("69003".into()),
        city: Some("Lyon".into()),
        country: Some("France".into()),
        phone_masked: Some("•• •• •• •• 12".into()),
        identifier_masked: Some("…4821".into()),
        exposed: Category::ALL.to_vec(),
        extra: serde_json::Map::new(),
        generation: 1,
    }
}

fn hot_paths(c: &mut Criterion) {
    let plain = config("");
    let letters = Letters::load(&plain).expect("letters load");
    let person = person();
    c.bench_function("render one letter (fr, every category)", |b| {
        b.iter(|| letters.render(&person).expect("renders"))
    });

    let builder = MessageBuilder::new(&plain, &[7u8; 32]).expect("builder");
    let letter = letters.render(&person).expect("renders");
    let now = chrono::Utc::now();
    c.bench_function("build one message", |b| {
        b.iter(|| builder.build(&person, &letter, now).expect("builds"))
    });

    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let private = tempfile::tempdir().expect("temp dir");
    for (name, file) in [("rsa", "rsa.pem"), ("ed25519", "ed25519.pem")] {
        // The builder refuses a key others can read: a private copy.
        let pem = private.path().join(file);
        let bytes = std::fs::read(keys.join(file)).expect("test key");
        breachmail::files::write_private(&pem, &bytes).expect("private copy");
        let signed = config(&format!(
            "[dkim]\nselector = \"s2025\"\ndomain = \"notification.example.fr\"\nprivate_key = \"{}\"\n",
            pem.display()
        ));
        let builder = MessageBuilder::new(&signed, &[7u8; 32]).expect("signing builder");
        c.bench_function(&format!("build and DKIM-sign one message ({name})"), |b| {
            b.iter(|| builder.build(&person, &letter, now).expect("builds"))
        });
    }
}

fn bounce_parsing(c: &mut Criterion) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bounces");
    for file in ["postfix-dsn-hard.eml", "exim-text.eml"] {
        let raw = std::fs::read(corpus.join(file)).expect("corpus message");
        c.bench_function(&format!("parse one bounce ({file})"), |b| {
            b.iter(|| breachmail::bounces::parse::parse_bounce(&raw).expect("parses"))
        });
    }
}

criterion_group!(benches, hot_paths, bounce_parsing);
criterion_main!(benches);
