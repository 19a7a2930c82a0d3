//! A run's set-up and tear-down: the sending window, the free disk, the lease, the recovery of
//! what dead runs left, then the dispatch ([`super::dispatcher`]), and the summary, the runs
//! table and the exit code.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::SqlitePool;

use super::dispatcher::{Dispatcher, StopReason};
use super::halt::RunGuard;
use super::handovers::{self, HandOverLog};
use super::signals::StopSignal;
use super::writer::RunTotals;
use crate::cli::SendArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::lease::Lease;
use crate::pipeline::Pipeline;
use crate::store::ledger;
use crate::transport::Relayer;

pub async fn run(config: &Config, args: &SendArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open_writer(&config.campaign.database).await?;
    // [schedule]: outside a window, or with the day's allowance used up, nothing is claimed.
    let window_closes = match crate::plan::gate(config, &pool, crate::clock::now()).await? {
        crate::plan::Gate::Open { closes } => closes,
        crate::plan::Gate::Closed(why) => {
            crate::exit::print_out(&format!("send: nothing sent: {why}"));
            return Ok(Exit::Ok);
        }
    };
    crate::dns::warn_before_send(config, &pool).await?;
    let pipeline = Arc::new(Pipeline::load(config, &pool).await?);
    let relayers = Relayer::all(config)?;
    if let Some(exit) = refuse_without_disk(&pool, &config.campaign.database).await? {
        return Ok(exit);
    }
    let run_id = crate::store::campaign::start_run(&pool, "send").await?;
    let lease = match Lease::acquire(&pool, run_id).await? {
        Ok(lease) => lease,
        Err(holder) => {
            crate::exit::print_err(&format!(
                "send: another send is running (run {} on {}, pid {}); nothing sent",
                holder.run_id, holder.host, holder.pid
            ));
            crate::store::campaign::finish_run(&pool, run_id, "lock held", "").await?;
            return Ok(Exit::TryLater);
        }
    };
    recover(&pool, &config.campaign.database, run_id).await?;
    let handovers = Arc::new(HandOverLog::create(&config.campaign.database, run_id)?);
    let order = config.schedule.as_ref().map_or(&[][..], |s| &s.order[..]);
    crate::store::schedule::rank_deliveries(&pool, order)
        .await
        .context("while ordering the letters still to send (schedule.order)")?;
    let stop = StopSignal::install();
    let started = Instant::now();
    let guard = Arc::new(RunGuard::new());
    let heartbeat = guard.keep_lease(lease.clone());
    // The window's end is a deadline like --max-duration: claiming stops, in flight finishes.
    let window_deadline = window_closes.map(|at| {
        started
            + (at - crate::clock::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
    });
    let dispatcher = Dispatcher {
        config: config.clone(),
        pool: pool.clone(),
        run_id,
        pipeline,
        relayers,
        limit: args.limit,
        deadline: args
            .max_duration
            .map(|d| started + d)
            .into_iter()
            .chain(window_deadline)
            .min(),
        stop: stop.receiver(),
        totals: Arc::new(RunTotals::default()),
        guard,
        handovers: handovers.clone(),
    };
    let result = dispatcher.run().await;
    heartbeat.abort();
    // A run that lost its lease must not delete the new holder's row: release is conditional
    // on the run id. A failed release is harmless (the lease expires).
    if let Err(error) = lease.release().await {
        tracing::warn!(error = %format!("{error:#}"), "the sender lease could not be released; it expires by itself");
    }
    let (reason, totals) = result?;
    let totals = totals.counts();
    // Every outcome is recorded (or the run stopped before handing anything more over and
    // left its claims to the next run, which needs the journal).
    if !matches!(reason, StopReason::LeaseLost | StopReason::WriterFailed) {
        handovers.remove();
    }
    let elapsed = started.elapsed();
    let summary = format!(
        "send: {} sent, {} deferred, {} failed, {} possible duplicates, {} released; {:.1}s; stopped: {}",
        totals.sent,
        totals.deferred,
        totals.failed,
        totals.duplicates_possible,
        totals.released,
        elapsed.as_secs_f64(),
        reason.describe(),
    );
    let run_totals = crate::store::campaign::SendTotals {
        sent: totals.sent as i64,
        deferred: totals.deferred as i64,
        failed: totals.failed as i64,
        duplicates: totals.duplicates_possible as i64,
    };
    crate::store::campaign::record_send_totals(&pool, run_id, run_totals).await?;
    crate::store::campaign::finish_run(&pool, run_id, reason.describe(), &summary).await?;
    crate::exit::print_out(&summary);
    if let crate::plan::Gate::Closed(why) =
        crate::plan::gate(config, &pool, crate::clock::now()).await?
    {
        crate::exit::print_out(&format!("send: {why}"));
    }
    let render_failures = totals.render_failures;
    if render_failures > 0 {
        crate::exit::print_err(&format!(
            "send: {render_failures} letters did not render and were not sent; run `breachmail check` to see why"
        ));
        return Ok(Exit::Failed);
    }
    Ok(match reason {
        StopReason::Unreachable | StopReason::LeaseLost => Exit::TryLater,
        StopReason::Misconfigured(_) => Exit::Configuration,
        StopReason::WriterFailed => Exit::Failed,
        _ => Exit::Ok,
    })
}

/// A run that cannot write its outcomes would hand letters over and forget them: below the
/// space the run needs, nothing starts (exit 75: free space, and cron's next run goes on).
async fn refuse_without_disk(pool: &SqlitePool, database: &Path) -> anyhow::Result<Option<Exit>> {
    let to_send = ledger::count_still_to_send(pool).await?;
    let needed = crate::db::free_disk_needed(to_send);
    let free = crate::db::free_disk(database)?;
    if free >= needed {
        return Ok(None);
    }
    let mib = |bytes: u64| bytes / (1024 * 1024);
    crate::exit::print_err(&format!(
        "send: only {} MiB free beside {}; a run with {to_send} letters still to send needs {} MiB (the write-ahead log grows to {} MiB before it is folded back, plus about 1 KiB of evidence per letter); nothing sent",
        mib(free),
        database.display(),
        mib(needed),
        mib(crate::db::WAL_CEILING),
    ));
    Ok(Some(Exit::TryLater))
}

/// Takes back what dead runs left in `sending`: their hand-over journals say which of those
/// letters reached a relay (flagged as possible duplicates), folded into the ledger with the
/// recovery, then deleted.
async fn recover(pool: &SqlitePool, database: &Path, run_id: i64) -> anyhow::Result<()> {
    let journals = handovers::left_by_others(database, run_id)?;
    let mut handed_over = Vec::new();
    for journal in &journals {
        handed_over.push((journal.run_id, journal.person_ids()?));
    }
    let recovered = ledger::recover_abandoned(pool, run_id, &handed_over).await?;
    for journal in &journals {
        journal.remove()?;
    }
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "deliveries left in sending by a run that died are sent again (possible duplicates)"
        );
    }
    Ok(())
}
