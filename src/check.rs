//! `check`: renders every letter still to send, in memory and strictly, and says which fail.
//!
//! People are read from the database in pages (so 340,000 people never sit in memory at once) and
//! each page is rendered and built into the full message on every core. A person whose letter fails
//! is reported by ref and reason and the check goes on; the exit code says whether any failed. The
//! paging and the parallel build are shared with `preview`, so both see exactly what `send` would.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use sqlx::SqlitePool;

use crate::Exit;
use crate::config::Config;
use crate::message::{MessageBuilder, Outgoing};
use crate::person::Person;
use crate::render::{Letter, Letters, RenderError};
use crate::store::deliveries::{self, PersonPages, Selection};

/// People read per database round trip.
const PAGE: i64 = 4096;

/// Calls `each` with successive pages of the people `selection` names, in id order (see
/// [`PersonPages`] for how a page is read).
pub async fn for_each_page<F>(
    pool: &SqlitePool,
    selection: &Selection,
    mut each: F,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<Person>) -> anyhow::Result<()>,
{
    let pages = PersonPages::new(selection);
    // The next page is read (and decoded) while this one is rendered: reading is a third of the
    // work, and SQLite's thread would otherwise wait for the renderers and they for it.
    let fetch = |after: i64| {
        let (pool, pages) = (pool.clone(), pages.clone());
        tokio::spawn(async move { pages.after(&pool, after, PAGE).await })
    };
    let mut next = Some(fetch(0));
    while let Some(reading) = next.take() {
        let people = reading.await.context("the page reader stopped")??;
        if people.len() as i64 == PAGE {
            next = people.last().map(|last| fetch(last.id));
        }
        if people.is_empty() {
            break;
        }
        // Rendering is CPU work: keep it off the async workers' backs.
        tokio::task::block_in_place(|| each(people))?;
    }
    Ok(())
}

/// One person's letter and message, or why they could not be made.
pub type Built = Result<(Letter, Outgoing), RenderError>;

/// Renders and builds each person's message on every core; results in the people's order.
/// `finish` runs on the worker right after each build (e.g. to write the file), so the bytes
/// need not wait for the whole page.
pub fn build_all<T, F>(
    letters: &Letters,
    builder: &MessageBuilder,
    people: &[Person],
    finish: F,
) -> Vec<T>
where
    T: Send,
    F: Fn(&Person, Built) -> T + Sync,
{
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(people.len().max(1));
    let chunk = people.len().div_ceil(threads).max(1);
    let now = crate::clock::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = people
            .chunks(chunk)
            .map(|chunk| {
                let finish = &finish;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|person| {
                            let built = letters.render(person).and_then(|letter| {
                                let outgoing = builder.build(person, &letter, now)?;
                                Ok((letter, outgoing))
                            });
                            finish(person, built)
                        })
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// The letters and the message builder, as `send` would load them.
pub async fn load_pipeline(
    config: &Config,
    pool: &SqlitePool,
) -> anyhow::Result<(Letters, MessageBuilder)> {
    let letters = Letters::load(config)?;
    let key = crate::db::signing_key(pool).await?;
    let builder = MessageBuilder::new(config, &key)?;
    Ok((letters, builder))
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub checked: u64,
    pub failed: u64,
    pub letters_fingerprint: String,
    pub languages: BTreeMap<String, u64>,
    pub size: Option<Sizes>,
    /// Addresses that several people share (a family, an adviser's address): each of them still
    /// gets a letter of their own, which the operator should expect before sending.
    pub shared_addresses: u64,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
pub struct Sizes {
    pub min: usize,
    pub median: usize,
    pub max: usize,
}

#[derive(Debug, Serialize)]
pub struct Failure {
    #[serde(rename = "ref")]
    pub person_ref: String,
    pub reason: String,
}

pub async fn run(config: &Config, json: bool) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let (letters, builder) = load_pipeline(config, &pool).await?;
    let report = check(&pool, &letters, &builder).await?;
    pool.close().await;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_report(&report));
    }
    Ok(if report.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

pub async fn check(
    pool: &SqlitePool,
    letters: &Letters,
    builder: &MessageBuilder,
) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport {
        letters_fingerprint: letters.fingerprint().to_owned(),
        ..CheckReport::default()
    };
    // Counted beside the rendering, which leaves a third of a core idle.
    let shared = {
        let pool = pool.clone();
        tokio::spawn(async move { deliveries::count_shared_addresses(&pool).await })
    };
    // Sizes counted by value, not kept one per person: memory stays flat at any N.
    let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
    for_each_page(pool, &Selection::StillToSend, |people| {
        let results = build_all(letters, builder, &people, |person, built| match built {
            Ok((letter, outgoing)) => Ok((letter.language, outgoing.bytes.len())),
            Err(error) => Err(Failure {
                person_ref: person.person_ref.to_string(),
                reason: error.to_string(),
            }),
        });
        for result in results {
            report.checked += 1;
            match result {
                Ok((language, size)) => {
                    *report.languages.entry(language).or_default() += 1;
                    *sizes.entry(size).or_default() += 1;
                }
                Err(failure) => {
                    report.failed += 1;
                    report.failures.push(failure);
                }
            }
        }
        Ok(())
    })
    .await?;
    report.size = size_summary(&sizes);
    report.shared_addresses = shared
        .await
        .context("the count of shared addresses stopped")??;
    Ok(report)
}

/// Smallest, median (the upper one for an even count) and largest of sizes counted by value.
fn size_summary(sizes: &BTreeMap<usize, u64>) -> Option<Sizes> {
    let total: u64 = sizes.values().sum();
    let (min, max) = (*sizes.keys().next()?, *sizes.keys().next_back()?);
    let mut seen = 0;
    let median = sizes
        .iter()
        .find(|(_, count)| {
            seen += **count;
            seen > total / 2
        })
        .map_or(max, |(size, _)| *size);
    Some(Sizes { min, median, max })
}

pub fn render_report(report: &CheckReport) -> String {
    let mut out = String::new();
    for failure in &report.failures {
        out.push_str(&format!(
            "FAILED {}: {}\n",
            failure.person_ref, failure.reason
        ));
    }
    out.push_str(&format!(
        "check: {} letters rendered, {} failed\n",
        report.checked, report.failed
    ));
    for (language, count) in &report.languages {
        out.push_str(&format!("  {language:<5} {count:>10}\n"));
    }
    if let Some(size) = &report.size {
        out.push_str(&format!(
            "  message size: min {} B, median {} B, max {} B\n",
            size.min, size.median, size.max
        ));
    }
    if report.shared_addresses > 0 {
        out.push_str(&format!(
            "  {} e-mail addresses are shared by several people; each person gets their own letter\n",
            report.shared_addresses
        ));
    }
    out.push_str(&format!(
        "  letters fingerprint: {}\n",
        report.letters_fingerprint
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(values: &[usize]) -> Option<(usize, usize, usize)> {
        let mut sizes = BTreeMap::new();
        for value in values {
            *sizes.entry(*value).or_default() += 1;
        }
        size_summary(&sizes).map(|s| (s.min, s.median, s.max))
    }

    #[test]
    fn sizes_counted_by_value_give_the_sorted_list_median() {
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[7]), Some((7, 7, 7)));
        // The element at index len / 2 of the sorted list, as before: the upper of two middles.
        assert_eq!(summary(&[10, 30]), Some((10, 30, 30)));
        assert_eq!(summary(&[30, 10, 20]), Some((10, 20, 30)));
        assert_eq!(summary(&[5, 5, 5, 9, 9, 100]), Some((5, 9, 100)));
        assert_eq!(summary(&[5, 5, 5, 5, 9, 100]), Some((5, 5, 100)));
    }
}
