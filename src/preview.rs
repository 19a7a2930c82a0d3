//! `preview`: writes the exact messages people would get as `<ref>.eml` files, plus a
//! `manifest.csv`, and changes nothing in the campaign database.
//!
//! The messages come from the same `Letters` and `MessageBuilder` as `send` (DKIM-signed when
//! configured), so the files are what would go out. Without a choice of people it writes one
//! letter per variant: each language and each combination of exposed categories present among the
//! people still to send, so the operator reads every variant once. The folder and files are
//! owner-only, since every letter holds a person's data.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use sqlx::SqlitePool;

use crate::check::{STILL_TO_SEND, build_all, for_each_page, load_pipeline};
use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::person::Person;
use crate::{Exit, UsageError};

/// One line of the manifest, or why that person's message could not be made.
type Written = Result<[String; 5], String>;

pub async fn run(config: &Config, args: &PreviewArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let outcome = write_preview(config, &pool, args).await;
    pool.close().await;
    let summary = outcome?;
    println!(
        "preview: wrote {} messages to {} (see manifest.csv); nothing was sent",
        summary.written,
        args.out.display()
    );
    for failure in &summary.failures {
        eprintln!("preview: FAILED {failure}");
    }
    Ok(if summary.failures.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

pub struct PreviewSummary {
    pub written: u64,
    pub failures: Vec<String>,
}

/// Writes the preview of `args` into `args.out`.
pub async fn write_preview(
    config: &Config,
    pool: &SqlitePool,
    args: &PreviewArgs,
) -> anyhow::Result<PreviewSummary> {
    let (letters, builder) = load_pipeline(config, pool).await?;
    let filter = choose(pool, &letters, args).await?;
    let out = &args.out;
    crate::files::create_private_dir(out)
        .with_context(|| format!("while creating {}", out.display()))?;
    let manifest_path = out.join("manifest.csv");
    let mut manifest = csv::Writer::from_writer(
        crate::files::private_writer(&manifest_path)
            .with_context(|| format!("while creating {}", manifest_path.display()))?,
    );
    manifest.write_record(["ref", "language", "subject", "size", "file"])?;
    let mut summary = PreviewSummary {
        written: 0,
        failures: Vec::new(),
    };
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    for_each_page(pool, &filter, |mut people| {
        if remaining == 0 {
            return Ok(());
        }
        people.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
        remaining -= people.len() as u64;
        let results = build_all(&letters, &builder, &people, |person, built| {
            write_one(out, person, built)
        });
        for result in results {
            match result {
                Ok(record) => {
                    manifest.write_record(&record)?;
                    summary.written += 1;
                }
                Err(failure) => summary.failures.push(failure),
            }
        }
        Ok(())
    })
    .await?;
    let mut writer = manifest
        .into_inner()
        .map_err(|e| anyhow::anyhow!("while writing {}: {e}", manifest_path.display()))?;
    writer.flush()?;
    Ok(summary)
}

fn write_one(out: &Path, person: &Person, built: crate::check::Built) -> Written {
    let (letter, outgoing) = built.map_err(|e| format!("{}: {e}", person.person_ref))?;
    let file = format!("{}.eml", person.person_ref);
    crate::files::write_private(&out.join(&file), &outgoing.bytes)
        .map_err(|e| format!("{}: cannot write {file}: {e}", person.person_ref))?;
    Ok([
        person.person_ref.clone(),
        letter.language,
        letter.subject,
        outgoing.bytes.len().to_string(),
        file,
    ])
}

/// The SQL condition naming the people to preview.
async fn choose(
    pool: &SqlitePool,
    letters: &crate::render::Letters,
    args: &PreviewArgs,
) -> anyhow::Result<String> {
    if !args.refs.is_empty() {
        return refs_filter(pool, &args.refs).await;
    }
    if args.all {
        return Ok("COALESCE(d.email, p.email) IS NOT NULL".to_owned());
    }
    if args.limit.is_some() {
        return Ok(STILL_TO_SEND.to_owned());
    }
    sample_filter(pool, letters).await
}

/// The named people, whatever their state; refs that do not exist are a usage error.
async fn refs_filter(pool: &SqlitePool, refs: &[String]) -> anyhow::Result<String> {
    let mut ids = Vec::new();
    let mut missing = Vec::new();
    for person_ref in refs {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM people WHERE ref = ?")
            .bind(person_ref)
            .fetch_optional(pool)
            .await?;
        match id {
            Some(id) => ids.push(id.to_string()),
            None => missing.push(person_ref.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(
            UsageError::new(format!("no person with the ref {}", missing.join(", "))).into(),
        );
    }
    Ok(format!("p.id IN ({})", ids.join(",")))
}

/// One person per letter variant (resolved language × set of exposed categories) among those
/// still to send.
async fn sample_filter(
    pool: &SqlitePool,
    letters: &crate::render::Letters,
) -> anyhow::Result<String> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(&format!(
        "SELECT MIN(p.id), p.language, p.exposed FROM people p JOIN deliveries d ON d.person_id = p.id
         WHERE {STILL_TO_SEND} AND COALESCE(d.email, p.email) IS NOT NULL
         GROUP BY p.language, p.exposed ORDER BY MIN(p.id)"
    ))
    .fetch_all(pool)
    .await?;
    let known: BTreeSet<&str> = letters.languages().collect();
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for (id, language, exposed) in rows {
        let language = if known.contains(language.as_str()) {
            language
        } else {
            letters.default_language().to_owned()
        };
        if seen.insert((language, exposed)) {
            ids.push(id.to_string());
        }
    }
    if ids.is_empty() {
        return Ok("0".to_owned());
    }
    Ok(format!("p.id IN ({})", ids.join(",")))
}
