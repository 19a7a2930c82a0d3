//! `check`: renders every letter still to send, in memory and strictly, and says which fail.
//!
//! People are read from the database in pages (so 340,000 people never sit in memory at once) and
//! each page is rendered and built into the full message on every core. A person whose letter fails
//! is reported by ref and reason and the check goes on; the exit code says whether any failed. The
//! paging and the parallel build are [`crate::pipeline`]'s, shared with `preview` and `send`:
//! the letter checked is the letter sent.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use sqlx::SqlitePool;

use crate::config::Config;
use crate::exit::Exit;
use crate::pipeline::{Pipeline, for_each_page};
use crate::store::deliveries::{self, Selection};

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
    let pipeline = Pipeline::load(config, &pool).await?;
    let report = check(&pool, &pipeline).await?;
    pool.close().await;
    if json {
        crate::exit::print_out(&serde_json::to_string(&report)?);
    } else {
        crate::exit::print_block(&render_report(&report));
    }
    Ok(if report.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

/// Prepares every letter still to send and delivers it nowhere: what is kept is its language and
/// size, or why it failed.
pub async fn check(pool: &SqlitePool, pipeline: &Pipeline) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport {
        letters_fingerprint: pipeline.letters().fingerprint().to_owned(),
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
        let results = pipeline.prepare_all(
            people,
            |person| person,
            |person, built| match built {
                Ok((letter, outgoing)) => Ok((letter.language, outgoing.bytes.len())),
                Err(error) => Err(Failure {
                    person_ref: person.person_ref.to_string(),
                    reason: error.to_string(),
                }),
            },
        );
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
