//! The README and docs/ link only inside the repository, and every link resolves: the file
//! exists and, where the link names a heading (`file.md#heading`), the heading exists, with the
//! anchor spelled as the usual Markdown renderers make it (lower case, punctuation dropped,
//! spaces as hyphens). A moved or renamed document fails here, not in a reader's browser.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file below docs/.
fn documents() -> Vec<PathBuf> {
    let mut found = vec![repository().join("README.md")];
    let mut folders = vec![repository().join("docs")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("docs/ is readable") {
            let path = entry.expect("a docs/ entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The text outside fenced code blocks and inline code spans, where links are links.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of inline links `[text](target)`.
fn link_targets(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut targets = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        targets.push(rest[..end].trim().to_owned());
        rest = &rest[end..];
    }
    targets
}

/// The anchors of a document's headings, as renderers make them.
fn anchors(markdown: &str) -> BTreeSet<String> {
    prose(markdown)
        .lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| slug(line.trim_start_matches('#').trim()))
        .collect()
}

fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

fn check(document: &Path, problems: &mut Vec<String>) {
    let markdown = std::fs::read_to_string(document).expect("a readable document");
    let shown = document
        .strip_prefix(repository())
        .unwrap_or(document)
        .display()
        .to_string();
    for target in link_targets(&markdown) {
        if target.contains("://") || target.starts_with("mailto:") {
            problems.push(format!("{shown}: {target} leads outside the repository"));
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let linked = if file.is_empty() {
            document.to_path_buf()
        } else {
            document.parent().expect("a folder").join(file)
        };
        let Ok(linked) = linked.canonicalize() else {
            problems.push(format!("{shown}: {target} names no file"));
            continue;
        };
        if !linked.starts_with(repository().canonicalize().expect("the repository")) {
            problems.push(format!("{shown}: {target} leads outside the repository"));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let text = std::fs::read_to_string(&linked).unwrap_or_default();
        if !anchors(&text).contains(anchor) {
            problems.push(format!("{shown}: {target} names no heading of that file"));
        }
    }
}

#[test]
fn every_link_of_the_readme_and_docs_resolves_inside_the_repository() {
    let documents = documents();
    assert!(documents.len() > 5, "README.md and docs/ were found");
    let mut problems = Vec::new();
    let mut links = 0;
    for document in &documents {
        links += link_targets(&std::fs::read_to_string(document).expect("readable")).len();
        check(document, &mut problems);
    }
    assert!(
        links > 10,
        "the documents were read for links ({links} found)"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_broken_link_and_a_missing_heading_are_found() {
    let markdown = "[ok](b.md#sending-letters) [gone](c.md) [nohead](b.md#other) `[code](d.md)`";
    assert_eq!(
        link_targets(markdown),
        ["b.md#sending-letters", "c.md", "b.md#other"]
    );
    assert!(anchors("# Sending letters\n").contains("sending-letters"));
    assert_eq!(slug("A campaign over days"), "a-campaign-over-days");
    assert_eq!(
        slug("The `delivered` state: what it means"),
        "the-delivered-state-what-it-means"
    );
}
