//! `preview`: writes the exact messages people would get as `<ref>.<generation>.eml` files (named
//! and written as the `file://` transport does, [`crate::pipeline`]), plus a `manifest.csv`, and
//! changes nothing in the campaign database.
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

use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::exit::{Exit, UsageError};
use crate::person::Person;
use crate::pipeline::{Built, Pipeline, for_each_page};
use crate::store::deliveries::{self, Selection};

/// One line of the manifest, or why that person's message could not be made.
type Written = Result<[String; 5], String>;

pub async fn run(config: &Config, args: &PreviewArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let outcome = write_preview(config, &pool, args).await;
    pool.close().await;
    let summary = outcome?;
    crate::exit::print_out(&format!(
        "preview: wrote {} messages to {} (see manifest.csv); nothing was sent",
        summary.written,
        args.out.display()
    ));
    for failure in &summary.failures {
        crate::exit::print_err(&format!("preview: FAILED {failure}"));
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
    let pipeline = Pipeline::load(config, pool).await?;
    let selection = choose(pool, pipeline.letters(), args).await?;
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
    for_each_page(pool, &selection, |mut people| {
        if remaining == 0 {
            return Ok(());
        }
        people.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
        remaining -= people.len() as u64;
        let results = pipeline.prepare_all(
            people,
            |person| person,
            |person, built| write_one(out, &person, built),
        );
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

/// Delivers one message to the preview folder, as the `file://` transport would.
fn write_one(out: &Path, person: &Person, built: Built) -> Written {
    let (letter, outgoing) = built.map_err(|e| format!("{}: {e}", person.person_ref))?;
    let file = crate::transport::write_to_folder(out, &outgoing).map_err(|e| {
        format!(
            "{}: cannot write {}: {e}",
            person.person_ref, outgoing.file_name
        )
    })?;
    Ok([
        person.person_ref.to_string(),
        letter.language,
        letter.subject,
        outgoing.bytes.len().to_string(),
        file,
    ])
}

/// The people to preview.
async fn choose(
    pool: &SqlitePool,
    letters: &crate::render::Letters,
    args: &PreviewArgs,
) -> anyhow::Result<Selection> {
    if !args.refs.is_empty() {
        return named_people(pool, &args.refs).await;
    }
    if args.all {
        return Ok(Selection::WithAddress);
    }
    if args.limit.is_some() {
        return Ok(Selection::StillToSend);
    }
    one_per_variant(pool, letters).await
}

/// The named people, whatever their state; refs that do not exist are a usage error.
async fn named_people(pool: &SqlitePool, refs: &[String]) -> anyhow::Result<Selection> {
    let mut ids = Vec::new();
    let mut missing = Vec::new();
    for person_ref in refs {
        match deliveries::person_id_by_ref(pool, person_ref).await? {
            Some(id) => ids.push(id),
            None => missing.push(person_ref.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(
            UsageError::new(format!("no person with the ref {}", missing.join(", "))).into(),
        );
    }
    Ok(Selection::People(ids))
}

/// One person per letter variant (resolved language × set of exposed categories) among those
/// still to send.
async fn one_per_variant(
    pool: &SqlitePool,
    letters: &crate::render::Letters,
) -> anyhow::Result<Selection> {
    let variants = deliveries::letter_variants_still_to_send(pool).await?;
    let known: BTreeSet<&str> = letters.languages().collect();
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for variant in variants {
        let language = if known.contains(variant.language.as_str()) {
            variant.language
        } else {
            letters.default_language().to_owned()
        };
        if seen.insert((language, variant.exposed)) {
            ids.push(variant.first_person_id);
        }
    }
    Ok(Selection::People(ids))
}
