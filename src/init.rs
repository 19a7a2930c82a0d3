//! `init DIR`: a new campaign folder with a commented configuration, the default letters and an
//! empty, migrated, owner-only database.

use std::path::Path;

use anyhow::Context;

use crate::exit::{Exit, UsageError};

include!(concat!(env!("OUT_DIR"), "/default_letters.rs"));

/// The configuration `init` writes: every key explained, optional settings commented out.
pub const CONFIG_TEMPLATE: &str = include_str!("breachmail.toml.in");

/// The facts the default letters use, appended to the configuration as its `[incident]` table.
const INCIDENT_EXAMPLE: &str = include_str!("../letters/incident.example.toml");

pub async fn run(dir: &Path) -> anyhow::Result<Exit> {
    create_campaign(dir).await?;
    crate::exit::print_out(&format!("init: created the campaign in {}", dir.display()));
    crate::exit::print_out(&format!(
        "init: next, edit {}/breachmail.toml ([sender], [smtp], [incident]) and the letters, then `breachmail import people.csv`",
        dir.display()
    ));
    Ok(Exit::Ok)
}

/// Creates the folder's contents; refuses a folder that already holds files.
pub async fn create_campaign(dir: &Path) -> anyhow::Result<()> {
    // The build refuses to embed no letters; this is the last guard for a binary that has none.
    let letters = DEFAULT_LETTERS
        .iter()
        .filter(|(relative, _)| relative.ends_with(".hbs"))
        .count();
    if letters == 0 {
        anyhow::bail!(
            "this binary carries no default letters, so the campaign would have none: rebuild it from a checkout that has letters/"
        );
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| UsageError::new(format!("{}: {e}", dir.display())))?;
        // Not a usage error (exit 2) but a refusal (exit 1, as the spec says): the command line
        // was right, the folder is not, and overwriting a campaign would lose its evidence.
        if entries.next().is_some() {
            anyhow::bail!(
                "{} already holds files: init only creates a new campaign in an empty or new folder",
                dir.display()
            );
        }
    }
    crate::files::create_private_dir(dir)
        .with_context(|| format!("while creating {}", dir.display()))?;
    let config = format!("{CONFIG_TEMPLATE}{INCIDENT_EXAMPLE}");
    crate::files::write_private(&dir.join("breachmail.toml"), config.as_bytes())
        .context("while writing breachmail.toml")?;
    for (relative, contents) in DEFAULT_LETTERS {
        if *relative == "incident.example.toml" {
            continue;
        }
        let path = dir.join("letters").join(relative);
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent)
                .with_context(|| format!("while creating {}", parent.display()))?;
        }
        crate::files::write_private(&path, contents.as_bytes())
            .with_context(|| format!("while writing {}", path.display()))?;
    }
    let pool = crate::db::open(&dir.join("breachmail.db"), true).await?;
    pool.close().await;
    Ok(())
}
