//! The modules form layers: no module imports one that imports it back, directly or through
//! others. A module's own submodules count as the module (`store::ledger` using `store::people`
//! is inside `store`); between the modules declared in src/lib.rs, every `crate::…` path is an
//! edge, and the graph must have no cycle. A knot fails here, naming the files and lines that
//! tie it, instead of growing until nobody can move a function without moving five.
//!
//! The source is read as text: each `crate::name` (and each name of a `crate::{a, b::c}` group)
//! outside comments is one use of `name`. Doc links are comments and do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One use of another module: which file, which line, which module it names.
struct Use {
    file: String,
    line: usize,
    target: String,
}

/// Edges that only a re-export under an old path makes, while the last callers move to the new
/// one: each goes with its re-export, in the same commit.
const OLD_PATHS: &[(&str, &str)] = &[];

fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules, as src/lib.rs declares them.
fn modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(source_dir().join("lib.rs")).expect("src/lib.rs is readable");
    lib.lines()
        .map(str::trim)
        .filter_map(|line| {
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// Every .rs file of a module: src/name.rs and everything below src/name/.
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let file = source_dir().join(format!("{module}.rs"));
    if file.is_file() {
        found.push(file);
    }
    let mut folders = vec![source_dir().join(module)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a src/ entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The line without its `//` comment (doc comments included).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

/// The first path segments a `crate::` path names, starting just after `crate::`: one name, or
/// the names of a `{…}` group (which may run over several lines, hence the whole text).
fn named_after(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 0;
        let mut at_item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_item_start = true,
                c if at_item_start && is_ident(c) => {
                    let name: String = group[i..].chars().take_while(|&c| is_ident(c)).collect();
                    names.push(name);
                    at_item_start = false;
                }
                c if c.is_whitespace() => {}
                _ => at_item_start = false,
            }
        }
        return names;
    }
    let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
    vec![name]
}

/// Every use of another top-level module in one file.
fn uses_in(path: &Path, module: &str, modules: &BTreeSet<String>) -> Vec<Use> {
    let text = std::fs::read_to_string(path).expect("a source file is readable");
    let code: Vec<&str> = text.lines().map(code_of).collect();
    let joined = code.join("\n");
    let file = path
        .strip_prefix(source_dir().parent().expect("src/ has a parent"))
        .unwrap_or(path)
        .display()
        .to_string();
    let mut uses = Vec::new();
    for (at, _) in joined.match_indices("crate::") {
        let before = joined[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) && c != '$') {
            continue;
        }
        let line = joined[..at].matches('\n').count() + 1;
        for target in named_after(&joined[at + "crate::".len()..]) {
            if target != module && modules.contains(&target) {
                uses.push(Use {
                    file: file.clone(),
                    line,
                    target,
                });
            }
        }
    }
    uses
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn knots(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_string());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// Every use of one top-level module by another, as (user, use).
fn all_uses() -> Vec<(String, Use)> {
    let modules = modules();
    assert!(
        modules.len() > 10 && modules.contains("store") && modules.contains("domain"),
        "src/lib.rs's module list was not read: {modules:?}"
    );
    let mut uses = Vec::new();
    for module in &modules {
        let files = files_of(module);
        assert!(!files.is_empty(), "no source file for the module {module}");
        for file in files {
            for used in uses_in(&file, module, &modules) {
                uses.push((module.clone(), used));
            }
        }
    }
    uses
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules();
    let uses = all_uses();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (module, used) in &uses {
        if OLD_PATHS.contains(&(module.as_str(), used.target.as_str())) {
            continue;
        }
        graph
            .get_mut(module)
            .expect("every module is a node")
            .insert(used.target.clone());
    }
    let knots = knots(&graph);
    let mut report = String::new();
    for knot in &knots {
        report.push_str(&format!(
            "\nthese modules import each other: {}\n",
            knot.join(", ")
        ));
        for (module, used) in &uses {
            if knot.contains(module) && knot.contains(&used.target) {
                report.push_str(&format!(
                    "  {} -> {}   ({}:{})\n",
                    module, used.target, used.file, used.line
                ));
            }
        }
    }
    assert!(knots.is_empty(), "{report}");
}

/// `exit` is the ground floor (every module may use it, it uses none) and `commands` the top
/// floor (it may use every module, none uses it).
#[test]
fn the_ground_and_top_floors_stay_where_they_are() {
    let uses = all_uses();
    let below_ground: Vec<String> = uses
        .iter()
        .filter(|(module, _)| module == "exit")
        .map(|(_, used)| format!("exit -> {} ({}:{})", used.target, used.file, used.line))
        .collect();
    assert!(below_ground.is_empty(), "{below_ground:#?}");
    let above_top: Vec<String> = uses
        .iter()
        .filter(|(_, used)| used.target == "commands")
        .map(|(module, used)| format!("{module} -> commands ({}:{})", used.file, used.line))
        .collect();
    assert!(above_top.is_empty(), "{above_top:#?}");
    assert!(
        uses.iter().any(|(module, _)| module == "commands"),
        "commands uses no module: the checker read nothing"
    );
}

/// The checker itself: a group spread over lines, a nested group, and a comment.
#[test]
fn the_reader_finds_the_modules_a_path_names() {
    assert_eq!(named_after("config::Config;"), ["config"]);
    assert_eq!(
        named_after("{\n    domain::{Email, NoticeId},\n    store::Stale,\n};"),
        ["domain", "store"]
    );
    assert_eq!(named_after("{Exit, UsageError}"), ["Exit", "UsageError"]);
    assert_eq!(code_of("use x; // see crate::send"), "use x; ");
}
