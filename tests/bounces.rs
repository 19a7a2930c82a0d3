//! The bounce reader on its corpus: every message of `tests/bounces/` against
//! `tests/bounces/expected.tsv`, no input (cut or mangled) that makes the parser panic, and the
//! mailbox readers on real files (the corpus mbox, a maildir, a folder of .eml files, one .eml).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use breachmail::bounces::mailbox::{RawMessage, messages};
use breachmail::bounces::parse::{
    Bounce, BounceKind, MAX_BOUNCE_BYTES, ParseError, RecipientStatus, parse_bounce,
};
use support::files::{corpus, corpus_dir};

fn corpus_messages() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("corpus folder")
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (name, fs::read(&path).expect("corpus file"))
        })
        .collect()
}

/// The expected.tsv columns for one parse result.
fn columns(result: &Result<Bounce, ParseError>) -> [String; 6] {
    match result {
        Err(_) => [
            "error".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
        Ok(bounce) => {
            let join = |pick: fn(&RecipientStatus) -> Option<&String>| {
                bounce
                    .recipients
                    .iter()
                    .map(|r| pick(r).cloned().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            [
                bounce.kind.as_str().to_string(),
                join(|r| r.final_recipient.as_ref()),
                join(|r| r.status.as_ref()),
                bounce.envelope_to.clone().unwrap_or_default(),
                bounce.original_message_id.clone().unwrap_or_default(),
                bounce.notice_id.clone().unwrap_or_default(),
            ]
        }
    }
}

#[test]
fn corpus_matches_expected_tsv() {
    let expected = fs::read_to_string(corpus_dir().join("expected.tsv")).expect("expected.tsv");
    let mut rows = expected.lines();
    assert_eq!(
        rows.next(),
        Some("file\tkind\trecipient\tstatus\tenvelope_to\toriginal_message_id\tnotice_id")
    );
    let messages = corpus_messages();
    let mut checked = 0;
    let mut failures = Vec::new();
    for row in rows.filter(|row| !row.trim().is_empty()) {
        let fields: Vec<&str> = row.split('\t').collect();
        assert_eq!(fields.len(), 7, "row has 7 columns: {row}");
        let (_, bytes) = messages
            .iter()
            .find(|(name, _)| name == fields[0])
            .unwrap_or_else(|| panic!("{} is in the corpus", fields[0]));
        let result = parse_bounce(bytes);
        let actual = columns(&result);
        if actual
            .iter()
            .map(String::as_str)
            .ne(fields[1..].iter().copied())
        {
            failures.push(format!(
                "{}\n  expected {:?}\n  actual   {:?}\n  parsed   {:?}",
                fields[0],
                &fields[1..],
                actual,
                result
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "corpus mismatches:\n{}",
        failures.join("\n")
    );
    assert_eq!(checked, messages.len(), "every corpus message has a row");
}

#[test]
fn two_recipient_report_keeps_each_outcome() {
    let bytes = fs::read(corpus_dir().join("rfc3464-two-recipients.eml")).expect("corpus file");
    let bounce = parse_bounce(&bytes).expect("parses");
    let kinds: Vec<_> = bounce.recipients.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [BounceKind::Hard, BounceKind::Delayed]);
    assert_eq!(bounce.recipients[0].action.as_deref(), Some("failed"));
    assert_eq!(bounce.recipients[1].action.as_deref(), Some("delayed"));
    assert_eq!(
        bounce.recipients[0].diagnostic.as_deref(),
        Some("550 5.1.1 <Luc.Girard@Example.org>... No such mailbox")
    );
}

/// Small deterministic generator: tests stay reproducible without a rand crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

#[test]
fn no_input_makes_the_parser_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Random byte slices, some behind a plausible header line.
    for round in 0..3000 {
        let length = rng.below(3000);
        let mut bytes: Vec<u8> = (0..length).map(|_| rng.next() as u8).collect();
        if round % 3 == 0 {
            let mut framed =
                b"From: x@y.z\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\n"
                    .to_vec();
            framed.append(&mut bytes);
            bytes = framed;
        }
        let _ = parse_bounce(&bytes);
    }
    for (name, bytes) in corpus_messages() {
        // Every cut point near the start, then a spread of cuts through the message.
        let step = (bytes.len() / 300).max(1);
        let cuts = (0..bytes.len().min(400)).chain((400..bytes.len()).step_by(step));
        for cut in cuts {
            let _ = parse_bounce(bytes.get(..cut).unwrap_or_default());
            let _ = parse_bounce(bytes.get(cut..).unwrap_or_default());
        }
        // Byte flips and junk splices.
        for _ in 0..200 {
            let mut mangled = bytes.clone();
            for _ in 0..1 + rng.below(8) {
                if mangled.is_empty() {
                    break;
                }
                let at = rng.below(mangled.len());
                match rng.below(3) {
                    0 => mangled[at] = rng.next() as u8,
                    1 => {
                        mangled.remove(at);
                    }
                    _ => mangled.insert(
                        at,
                        [b'\n', b'-', b':', b'<', b'>', b';', 0xc3][rng.below(7)],
                    ),
                }
            }
            let result = parse_bounce(&mangled);
            if let Ok(bounce) = result {
                for recipient in &bounce.recipients {
                    if let Some(diagnostic) = &recipient.diagnostic {
                        assert!(
                            diagnostic.chars().count() <= 500,
                            "{name}: diagnostic capped"
                        );
                    }
                }
            }
        }
    }
}

/// A fresh folder under the system temp dir, removed when dropped.
struct TempFolder(PathBuf);

impl TempFolder {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("breachmail-bounces-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temp folder");
        TempFolder(path)
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_all(path: &Path) -> Vec<RawMessage> {
    messages(path)
        .collect::<Result<Vec<_>, _>>()
        .expect("mailbox reads")
}

#[test]
fn mixed_mbox_yields_each_message_unescaped() {
    let path = corpus("mixed.mbox");
    let found = read_all(&path);
    assert_eq!(found.len(), 5);
    assert_eq!(
        found[0].source,
        format!("{} message #1 (byte 0)", path.display())
    );
    assert!(found[2].source.contains("message #3 (byte "));
    assert!(
        found
            .iter()
            .all(|m| !m.oversized && !m.bytes.starts_with(b"From "))
    );

    // The escaped body line is restored, and did not split the message.
    let normal = String::from_utf8(found[2].bytes.clone()).expect("utf-8");
    assert!(normal.contains("\nFrom now on, please write"));
    assert!(!normal.contains(">From now on"));
    assert!(normal.trim_end().ends_with("--=_alt_7c9e--"));

    // Each message parses the same as its corpus original.
    let kinds: Vec<_> = found
        .iter()
        .map(|m| parse_bounce(&m.bytes).expect("parses").kind)
        .collect();
    assert_eq!(
        kinds,
        [
            BounceKind::Hard,
            BounceKind::Hard,
            BounceKind::Reply,
            BounceKind::Soft,
            BounceKind::AutoReply
        ]
    );
    let original = fs::read(corpus("postfix-dsn-hard.eml")).expect("corpus file");
    assert_eq!(found[0].bytes, original);
}

#[test]
fn maildir_reads_new_and_cur_sorted_by_name() {
    let folder = TempFolder::new("maildir");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(folder.0.join(sub)).expect("maildir sub-folder");
    }
    let copy = |from: &str, to: &str| {
        fs::copy(corpus(from), folder.0.join(to)).expect("copy into maildir");
    };
    copy("exim-hard.eml", "new/1741680912.M1P1.mx:2,");
    copy("gmail-delay.eml", "cur/1741680001.M2P2.mx:2,S");
    copy("normal.eml", "tmp/1741689999.M3P3.mx");
    fs::write(folder.0.join("cur/.hidden"), b"not a message").expect("dotfile");

    let found = read_all(&folder.0);
    let names: Vec<_> = found
        .iter()
        .map(|m| {
            Path::new(&m.source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect();
    assert_eq!(
        names,
        [
            Some("1741680001.M2P2.mx:2,S".to_string()),
            Some("1741680912.M1P1.mx:2,".to_string())
        ]
    );
    assert_eq!(
        parse_bounce(&found[0].bytes).expect("parses").kind,
        BounceKind::Delayed
    );
    assert_eq!(
        parse_bounce(&found[1].bytes).expect("parses").kind,
        BounceKind::Hard
    );
}

#[test]
fn folder_of_eml_files_and_single_file() {
    let folder = TempFolder::new("emls");
    fs::copy(corpus("yahoo-policy.eml"), folder.0.join("b.eml")).expect("copy");
    fs::copy(corpus("orange-hard.eml"), folder.0.join("a.EML")).expect("copy");
    fs::write(folder.0.join("notes.txt"), b"ignored").expect("write");
    let found = read_all(&folder.0);
    assert_eq!(found.len(), 2);
    assert!(found[0].source.ends_with("a.EML"));
    assert!(found[1].source.ends_with("b.eml"));

    let single = read_all(&corpus("sendmail-text.eml"));
    assert_eq!(single.len(), 1);
    assert_eq!(
        single[0].source,
        corpus("sendmail-text.eml").display().to_string()
    );
    assert_eq!(
        parse_bounce(&single[0].bytes).expect("parses").kind,
        BounceKind::Hard
    );
}

#[test]
fn oversized_eml_file_is_flagged_without_reading_it() {
    let folder = TempFolder::new("oversized");
    let path = folder.0.join("huge.eml");
    let file = fs::File::create(&path).expect("create");
    file.set_len(MAX_BOUNCE_BYTES as u64 + 1)
        .expect("sparse file");
    let found = read_all(&path);
    assert_eq!(found.len(), 1);
    assert!(found[0].oversized);
    assert!(found[0].bytes.is_empty());
}

#[test]
fn missing_path_is_an_error_not_a_panic() {
    let mut found = messages(Path::new("/nonexistent/bounces.mbox"));
    assert!(found.next().expect("one item").is_err());
    assert!(found.next().is_none());
}
