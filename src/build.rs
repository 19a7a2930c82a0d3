//! Build script: embeds the project's default letters (every file under letters/) into the
//! binary, so `init` and `demo` work from an installed binary with no source tree beside it.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=letters");
    // sqlx::migrate! embeds migrations/ at compile time.
    println!("cargo:rerun-if-changed=migrations");
    // Read when the script runs, not when it was compiled: a build script compiled for another
    // checkout (a shared CARGO_TARGET_DIR) would otherwise look in that checkout's folder.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("letters");
    let mut files = Vec::new();
    if let Err(error) = collect(&root, &root, &mut files) {
        panic!(
            "the default letters cannot be read from {}: {error}; a binary without them would create campaigns with no letters",
            root.display()
        );
    }
    files.sort();
    for required in [
        "fr/body.txt.hbs",
        "fr/subject.hbs",
        "en/body.txt.hbs",
        "en/subject.hbs",
    ] {
        assert!(
            files.iter().any(|f| f == required),
            "letters/{required} is missing from {}: a binary without it would create campaigns with no letters",
            root.display()
        );
    }
    let mut out = String::from(
        "/// Every default letter file, as (path under letters/, contents).\npub static DEFAULT_LETTERS: &[(&str, &str)] = &[\n",
    );
    for relative in &files {
        let absolute = root.join(relative);
        println!("cargo:rerun-if-changed={}", absolute.display());
        let _ = writeln!(
            out,
            "    ({relative:?}, include_str!({:?})),",
            absolute.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("default_letters.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
