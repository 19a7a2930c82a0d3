//! The one writer of a run's outcomes, and the run's totals, which it alone adds up from what
//! it committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::SqlitePool;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::decide::{self, GiveBack};
use super::halt::{Halt, RunGuard};
use crate::store::ledger::{self, Outcome};
use crate::verp::DeliveryRef;

/// How long confirmed outcomes wait for a database another process has locked before the run
/// gives up on them (they stay `sending`, handed over, and the next run flags them).
const MAX_WRITE_STALL: Duration = Duration::from_secs(300);

/// An outcome for the writer: with the relay that answered for the letter, if one did, and the
/// worker's place among the unrecorded outcomes (freed once it is committed).
pub(super) struct ToRecord {
    pub(super) delivery: DeliveryRef,
    pub(super) outcome: Outcome,
    pub(super) relay: Option<String>,
    pub(super) place: Option<OwnedSemaphorePermit>,
    /// A dead run had handed this letter over already: accepted now, it may be there twice.
    pub(super) handed_over_before: bool,
}

impl ToRecord {
    /// A letter given back without an attempt.
    pub(super) fn released(delivery: DeliveryRef, why: GiveBack<'_>) -> ToRecord {
        ToRecord {
            delivery,
            outcome: decide::give_back(why),
            relay: None,
            place: None,
            handed_over_before: false,
        }
    }
}

/// What one run did, for the summary line, the runs table and the progress. The ledger's
/// outcomes are counted by the writer from what it committed, and nowhere else: an outcome the
/// run decided and could not write (its deliveries were taken over) is not in them.
#[derive(Debug, Default)]
pub(super) struct RunTotals {
    sent: AtomicU64,
    deferred: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
    duplicates_possible: AtomicU64,
    render_failures: AtomicU64,
}

/// The run's totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) sent: u64,
    pub(super) deferred: u64,
    pub(super) failed: u64,
    pub(super) released: u64,
    pub(super) duplicates_possible: u64,
    pub(super) render_failures: u64,
}

impl RunTotals {
    /// An outcome the writer committed; `handed_over_before`: a dead run had handed the letter
    /// over already, so accepted now it may be there twice.
    pub(super) fn committed(&self, outcome: &Outcome, handed_over_before: bool) {
        let (counter, duplicate) = match outcome {
            Outcome::Sent { .. } => (&self.sent, handed_over_before),
            Outcome::Deferred {
                possible_duplicate, ..
            } => (&self.deferred, *possible_duplicate),
            Outcome::Failed {
                possible_duplicate, ..
            } => (&self.failed, *possible_duplicate),
            Outcome::Released { .. } => (&self.released, false),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if duplicate {
            self.duplicates_possible.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A letter that did not render (given back, and counted as released once committed).
    pub(super) fn did_not_render(&self) {
        self.render_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn counts(&self) -> Counts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            sent: get(&self.sent),
            deferred: get(&self.deferred),
            failed: get(&self.failed),
            released: get(&self.released),
            duplicates_possible: get(&self.duplicates_possible),
            render_failures: get(&self.render_failures),
        }
    }
}

/// The one writer: records outcomes in batches, so the database sees a few transactions a
/// second however fast the relay. A letter's hand-over is in the run's journal, not here, so no
/// worker waits for this writer before a letter goes.
pub(super) async fn write_outcomes(
    pool: SqlitePool,
    run_id: i64,
    mut outcomes: mpsc::Receiver<ToRecord>,
    guard: Arc<RunGuard>,
    totals: Arc<RunTotals>,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(512);
    // Which relay answered for each letter, in the same transaction.
    let mut relays = Vec::with_capacity(512);
    // The workers' places among the unrecorded outcomes, freed when the batch is committed.
    let mut places = Vec::with_capacity(512);
    // Which letters a dead run had handed over already, for the run's totals once committed.
    let mut handed_over_before = Vec::with_capacity(512);
    while let Some(first) = outcomes.recv().await {
        let mut next = Some(first);
        while let Some(record) = next.take() {
            let delivery = record.delivery;
            handed_over_before.push(record.handed_over_before);
            batch.push((delivery, record.outcome));
            relays.extend(record.relay.map(|relay| (delivery, relay)));
            places.extend(record.place);
            // Take whatever else is already waiting, up to a batch, without waiting for more.
            if batch.len() < 512 {
                next = outcomes.try_recv().ok();
            }
        }
        match write_patiently(&pool, run_id, &batch, &relays).await {
            Ok(stale) => {
                let lost: std::collections::HashSet<i64> =
                    stale.iter().map(|s| s.person_id).collect();
                for ((delivery, outcome), before) in batch.iter().zip(&handed_over_before) {
                    if !lost.contains(&delivery.person_id) {
                        totals.committed(outcome, *before);
                    }
                }
                if !stale.is_empty() {
                    tracing::error!(
                        deliveries = stale.len(),
                        "another run holds deliveries this run had claimed (its lease was taken over): stopping, nothing more is written for them"
                    );
                    guard.halt(Halt::LeaseLost);
                }
            }
            Err(error) => {
                guard.halt(Halt::WriterFailed);
                let what = if crate::db::is_disk_full(&error) {
                    "the disk is full"
                } else {
                    "the database refused the write"
                };
                tracing::error!(error = %format!("{error:#}"), "{what}: stopping; the next run sends again what was in flight");
                return Err(error.context(format!(
                    "while recording delivery outcomes ({what}; {} outcomes not recorded: those letters stay `sending` and the next run takes them back)",
                    batch.len()
                )));
            }
        }
        batch.clear();
        relays.clear();
        places.clear();
        handed_over_before.clear();
    }
    Ok(())
}

/// One batch in one transaction, tried again while another process holds the database.
async fn write_patiently(
    pool: &SqlitePool,
    run_id: i64,
    batch: &[(DeliveryRef, Outcome)],
    relays: &[(DeliveryRef, String)],
) -> anyhow::Result<Vec<crate::store::Stale>> {
    while_busy("outcomes", || write_once(pool, run_id, batch, relays)).await
}

/// Runs `write` until it succeeds, trying again while another process holds the database (up to
/// [`MAX_WRITE_STALL`]); any other error is returned at once. `what` names what waits, for the log.
async fn while_busy<T, F, Fut>(what: &str, mut write: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    let mut warned = false;
    loop {
        match write().await {
            Ok(written) => {
                if warned {
                    tracing::info!(
                        waited_s = started.elapsed().as_secs(),
                        "the database is free again: {what} recorded"
                    );
                }
                return Ok(written);
            }
            Err(error) if crate::db::is_busy(&error) && started.elapsed() < MAX_WRITE_STALL => {
                if !warned {
                    tracing::warn!(
                        "the database is locked by another process: keeping the {what} until it is free"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn write_once(
    pool: &SqlitePool,
    run_id: i64,
    batch: &[(DeliveryRef, Outcome)],
    relays: &[(DeliveryRef, String)],
) -> anyhow::Result<Vec<crate::store::Stale>> {
    let now = crate::db::now_ms();
    let mut tx = crate::db::begin_write(pool).await?;
    // Before the outcomes, which end the claims that fence it: a delivery another run holds
    // now gets neither.
    crate::store::relay::record_relays(&mut tx, run_id, relays)
        .await
        .context("while recording which relay took each letter")?;
    let stale = ledger::record_outcomes_in(&mut tx, run_id, batch, now).await?;
    tx.commit().await?;
    Ok(stale)
}
