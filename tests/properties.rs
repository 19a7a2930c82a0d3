//! What the fuzz targets in `tests/fuzz` check, as property tests that `cargo test` runs on every
//! change: whatever lands in the bounce mailbox, whatever a CSV export holds, whatever a
//! mistyped breachmail.toml says, the result is a classification, a rejection or an error that
//! names the problem, never a panic. Inputs are random bytes and, because random bytes rarely
//! get past the first check, real corpus messages and well-formed rows mutated at random.
//! (`tests/fuzz/run.sh` keeps the coverage-guided fuzzers for long runs.)

mod support;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn corpus_messages() -> Vec<Vec<u8>> {
    support::files::files_under(&support::files::corpus_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| std::fs::read(p).expect("read a corpus message"))
        .collect()
}

/// One edit of a byte string: overwrite, insert, delete a run, or cut the tail.
#[derive(Debug, Clone)]
enum Edit {
    Overwrite(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Overwrite(at, b)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..16),
                Just(b"\r\n\r\n".to_vec()),
                Just(b"\r\nContent-Type: multipart/report; boundary=\"x\"\r\n".to_vec()),
                Just(b"\r\n--x\r\n".to_vec()),
                Just(b"=?utf-8?b?".to_vec()),
                Just(b"Status: 5.1.1\r\n".to_vec()),
                Just(b"Final-Recipient: rfc822;".to_vec()),
                Just(vec![0xff, 0xfe, 0x00]),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Overwrite(at, b) => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = *b;
                }
            }
            Edit::Insert(at, more) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, more.iter().copied());
            }
            Edit::Delete(at, n) => {
                let i = at % len;
                let end = (i + n).min(bytes.len());
                if i < end {
                    bytes.drain(i..end);
                }
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_bounce_parser_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = breachmail::bounces::parse::parse_bounce(&bytes);
    }

    #[test]
    fn the_bounce_parser_never_panics_on_damaged_real_bounces(
        which in any::<usize>(),
        edits in prop::collection::vec(edit(), 1..12),
    ) {
        let corpus = corpus_messages();
        let original = corpus[which % corpus.len()].clone();
        let damaged = apply(original, &edits);
        let _ = breachmail::bounces::parse::parse_bounce(&damaged);
    }

    #[test]
    fn csv_validation_rejects_with_a_reason_never_panics(
        rows in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    "[a-zA-Z0-9@._ -]{0,20}",
                    ".{0,12}",
                    Just("\"quoted, with comma\"".to_owned()),
                    Just("\"line\nbreak\"".to_owned()),
                    Just("x\r\nBcc: victim@example.org".to_owned()),
                    Just("name;email;password".to_owned()),
                    Just("=cmd|' /C calc'!A0".to_owned()),
                ],
                0..8,
            ),
            0..20,
        ),
        edits in prop::collection::vec(edit(), 0..4),
    ) {
        let mut csv = String::from("ref,email,first_name,last_name,language,exposed,alt_email\n");
        for row in &rows {
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        let bytes = apply(csv.into_bytes(), &edits);
        if let Ok(verdict) = breachmail::import::validate_csv_bytes(&bytes) {
            for rejection in &verdict.rejections {
                prop_assert!(!rejection.reason.is_empty(), "a rejection says why");
            }
        }
    }

    #[test]
    fn the_config_loader_refuses_with_a_message_never_panics(
        lines in prop::collection::vec(
            prop_oneof![
                Just("[campaign]".to_owned()),
                Just("[smtp]".to_owned()),
                Just("[rate]".to_owned()),
                Just("[retry]".to_owned()),
                Just("[incident]".to_owned()),
                Just("[[relay]]".to_owned()),
                Just("[schedule]".to_owned()),
                "[a-z_]{1,16} = \"[^\"\n]{0,24}\"",
                "[a-z_]{1,16} = -?[0-9]{1,12}",
                "[a-z_]{1,16} = \\[[0-9, ]{0,12}\\]",
                "per_domain = \\{ \"[a-z.]{1,10}\" = [0-9]{1,4} \\}",
                "url = \"smtps?://[a-z0-9.:@]{0,20}\"",
                "timeout = \"[0-9]{0,4}(ms|s|m|h|d|x)?\"",
                ".{0,30}",
            ],
            0..16,
        ),
    ) {
        let text = lines.join("\n");
        let dir = std::path::Path::new("/nonexistent-campaign");
        if let Err(error) = breachmail::config::Config::from_toml(&text, dir, &[]) {
            prop_assert!(!error.to_string().is_empty(), "an error names the problem");
        }
    }
}
