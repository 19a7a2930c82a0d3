//! Output that cannot be written is dropped, never a panic: `breachmail status | head -1`, a
//! closed terminal or a full disk end the command normally, its record in the database intact.
//! Every command prints through `exit::print_out`, `print_err` and `print_block`, and nothing in
//! src/ calls `println!` and its kin behind their back.

mod support;

use std::process::{Output, Stdio};

use support::campaign::{Campaign, person};

/// Files allowed to print directly: the printers themselves, and the build script (its
/// `println!` speaks to cargo).
const PRINTERS: &[&str] = &["src/exit.rs", "src/build.rs"];

/// Files whose last direct print goes in the mechanical path rename.
const UNTIL_PATH_RENAME: &[&str] = &[];

/// Runs the command with stdout a pipe whose reading end is already closed, as `| head -1` leaves
/// it once `head` has its line: every write fails with EPIPE (the binary, like any Rust program,
/// ignores SIGPIPE).
fn run_with_stdout_closed(campaign: &Campaign, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    campaign
        .command()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("breachmail runs")
}

fn assert_ends_normally(output: &Output, what: &str, code: i32) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{what} panicked on a closed stdout:\n{stderr}"
    );
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what} with a closed stdout:\n{stderr}"
    );
}

#[test]
fn commands_end_normally_when_stdout_is_closed() {
    let campaign =
        Campaign::with_people(&[person("P1", "p1@example.fr"), person("P2", "p2@example.fr")]);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["check"],
        &["lookup", "P1"],
    ] {
        let output = run_with_stdout_closed(&campaign, args);
        assert_ends_normally(&output, &args.join(" "), 0);
    }
    // A command that writes to the database still records everything: the import's people are
    // there although its summary went nowhere.
    let csv = campaign.write_outside(
        "more.csv",
        format!(
            "{}\n{}\n",
            support::campaign::CSV_HEADER,
            person("P3", "p3@example.fr")
        ),
    );
    let output = run_with_stdout_closed(&campaign, &["import", csv.to_str().expect("UTF-8")]);
    assert_ends_normally(&output, "import", 0);
    let status = campaign.status();
    assert_eq!(status["total"], 3, "{status}");
}

#[test]
fn nothing_in_src_prints_around_the_printers() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut folders = vec![root.join("src")];
    let mut found = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src/ is readable") {
            let path = entry.expect("a src/ entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let name = path
                .strip_prefix(&root)
                .expect("below the root")
                .display()
                .to_string();
            if PRINTERS.contains(&name.as_str()) || UNTIL_PATH_RENAME.contains(&name.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            for (number, line) in text.lines().enumerate() {
                let code = line.find("//").map_or(line, |at| &line[..at]);
                let prints = ["println!(", "print!(", "eprintln!(", "eprint!(", "dbg!("]
                    .iter()
                    .any(|m| {
                        code.match_indices(m).any(|(at, _)| {
                            !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                        })
                    });
                if prints {
                    found.push(format!("{name}:{}: {}", number + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "print through crate::exit's printers instead:\n{}",
        found.join("\n")
    );
}
