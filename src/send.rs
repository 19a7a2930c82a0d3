//! `send`: the cron job. Claims what is due, renders, paces, sends, records, exits.
//!
//! The pipeline, one way: the dispatcher claims batches of due deliveries (one statement moves
//! them to `sending`), holds them in per-domain queues, and releases each one when the global and
//! per-domain rate limiters allow; `smtp.max_connections` workers each own one relay session,
//! build the message and hand it over; one writer records the outcomes in batched transactions.
//! Memory holds at most a few batches, whatever the number of people.
//!
//! Anything claimed but not attempted (the run stops, the relay cannot be reached, a letter does
//! not render) is released to the state it came from without counting an attempt. A run that
//! dies leaves its in-flight deliveries in `sending`; the next run sends them again and flags
//! those its hand-over journal (`handovers`) names as possible duplicates.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use governor::{Quota, RateLimiter};
use sqlx::SqlitePool;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::Exit;
use crate::cli::SendArgs;
use crate::config::{Config, Retry};
use crate::lease::Lease;
use crate::ledger::{self, Claimed, Outcome};
use crate::message::Outgoing;
use crate::pacing::Pace;
use crate::pipeline::Pipeline;
use crate::smtp_reply::Scope;
use crate::store::relay::Slowed;
use crate::transport::{Refuser, Relayer};
use decide::{At, Decision, GiveBack, Letter, News, Then};
use handovers::HandOverLog;
use lanes::Lanes;

type Limiter = governor::DefaultDirectRateLimiter;

/// How long confirmed outcomes wait for a database another process has locked before the run
/// gives up on them (they stay `sending`, handed over, and the next run flags them).
const MAX_WRITE_STALL: Duration = Duration::from_secs(300);

/// How long before the lease's expiry, as this run last renewed it, it stops handing letters
/// over: another run may take the lease over once it has expired. An eighth of a test's
/// shorter lease.
fn lease_margin() -> Duration {
    Duration::from_secs(15).min(crate::lease::ttl() / 8)
}

mod decide;
mod handovers;
mod lanes;

/// How many letters a connection may have handed over whose outcome is not yet committed.
const UNRECORDED_PER_CONNECTION: usize = 32;

/// An outcome for the writer: with the relay that answered for the letter, if one did, and the
/// worker's place among the unrecorded outcomes (freed once it is committed).
struct ToRecord {
    person_id: i64,
    generation: i64,
    outcome: Outcome,
    relay: Option<String>,
    place: Option<OwnedSemaphorePermit>,
    /// A dead run had handed this letter over already: accepted now, it may be there twice.
    handed_over_before: bool,
}

impl ToRecord {
    /// A letter given back without an attempt.
    fn released(person: &crate::person::Person, why: GiveBack<'_>) -> ToRecord {
        ToRecord {
            person_id: person.id,
            generation: person.generation,
            outcome: decide::give_back(why),
            relay: None,
            place: None,
            handed_over_before: false,
        }
    }
}

/// After this many connection failures in a row, with no success between them, the relay is
/// taken as unreachable and the run ends with 75.
const UNREACHABLE_AFTER: u64 = 3;

/// What one run did, for the summary line, the runs table and the progress. The ledger's
/// outcomes are counted by the writer from what it committed, and nowhere else: an outcome the
/// run decided and could not write (its deliveries were taken over) is not in them.
#[derive(Debug, Default)]
pub(crate) struct RunTotals {
    sent: AtomicU64,
    deferred: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
    duplicates_possible: AtomicU64,
    render_failures: AtomicU64,
}

/// The run's totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) sent: u64,
    pub(crate) deferred: u64,
    pub(crate) failed: u64,
    pub(crate) released: u64,
    pub(crate) duplicates_possible: u64,
    pub(crate) render_failures: u64,
}

impl RunTotals {
    /// An outcome the writer committed; `handed_over_before`: a dead run had handed the letter
    /// over already, so accepted now it may be there twice.
    fn committed(&self, outcome: &Outcome, handed_over_before: bool) {
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
    fn did_not_render(&self) {
        self.render_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> Counts {
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

/// Why the dispatcher stopped claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    NothingDue,
    Limit,
    Deadline,
    Signal,
    Unreachable,
    /// A relay cannot be used as configured: refused by our TLS settings, or by the relay.
    Misconfigured(Refuser),
    LeaseLost,
    /// The outcome writer failed: nothing more can be recorded.
    WriterFailed,
    /// Everything left to claim is letters that do not render.
    Unrenderable,
}

/// What tells every part of a run to stop at once, whatever it is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Halt {
    Running,
    /// Another run holds this run's deliveries now (its lease was taken over).
    LeaseLost,
    /// The database refused a write: the error is the writer's.
    WriterFailed,
}

/// Until when this run may hand letters over, as its last heartbeat says: on the monotonic
/// clock (a process frozen by SIGSTOP) and on the wall clock too, which, unlike the monotonic
/// one, goes on while a machine is suspended, and is what another run reads the lease by.
struct LeaseClock {
    valid_until: std::sync::Mutex<(Instant, std::time::SystemTime)>,
}

impl LeaseClock {
    fn new() -> LeaseClock {
        LeaseClock {
            valid_until: std::sync::Mutex::new(Self::until(Instant::now())),
        }
    }

    fn until(at: Instant) -> (Instant, std::time::SystemTime) {
        let wall = std::time::SystemTime::now() - at.elapsed();
        let valid_for = crate::lease::ttl() - lease_margin();
        (at + valid_for, wall + valid_for)
    }

    fn renewed(&self, at: Instant) {
        if let Ok(mut until) = self.valid_until.lock() {
            *until = Self::until(at);
        }
    }

    fn valid(&self) -> bool {
        self.valid_until
            .lock()
            .map(|until| Instant::now() < until.0 && std::time::SystemTime::now() < until.1)
            .unwrap_or(false)
    }
}

/// Renews the lease every [`crate::lease::HEARTBEAT`], in a task of its own, so a busy
/// dispatcher or a stalled relay never lets it lapse; halts the run when another run has taken it.
fn keep_lease(
    lease: Lease,
    clock: Arc<LeaseClock>,
    halt: Arc<watch::Sender<Halt>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(crate::lease::heartbeat_every()).await;
            let at = Instant::now();
            match lease.heartbeat().await {
                Ok(true) => clock.renewed(at),
                Ok(false) => {
                    tracing::error!("the sender lease was taken over by another run: stopping");
                    halt.send_if_modified(|h| halt_with(h, Halt::LeaseLost));
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "the sender lease could not be renewed; trying again")
                }
            }
        }
    })
}

/// The first reason to halt wins.
fn halt_with(current: &mut Halt, reason: Halt) -> bool {
    if *current == Halt::Running {
        *current = reason;
        true
    } else {
        false
    }
}

pub async fn run(config: &Config, args: &SendArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open_writer(&config.campaign.database).await?;
    // [schedule]: outside a window, or with the day's allowance used up, nothing is claimed.
    let window_closes = match crate::plan::gate(config, &pool, crate::clock::now()).await? {
        crate::plan::Gate::Open { closes } => closes,
        crate::plan::Gate::Closed(why) => {
            println!("send: nothing sent: {why}");
            return Ok(Exit::Ok);
        }
    };
    crate::dns::warn_before_send(config, &pool).await?;
    let pipeline = Arc::new(Pipeline::load(config, &pool).await?);
    let relayers = Relayer::all(config)?;
    if let Some(exit) = refuse_without_disk(&pool, &config.campaign.database).await? {
        return Ok(exit);
    }
    let run_id = crate::db::start_run(&pool, "send").await?;
    let lease = match Lease::acquire(&pool, run_id).await? {
        Ok(lease) => lease,
        Err(holder) => {
            crate::print_err(&format!(
                "send: another send is running (run {} on {}, pid {}); nothing sent",
                holder.run_id, holder.host, holder.pid
            ));
            crate::db::finish_run(&pool, run_id, "lock held", "").await?;
            return Ok(Exit::TryLater);
        }
    };
    // Dead runs' hand-over journals say which of the letters they left in `sending` reached a
    // relay: folded into the ledger with the recovery, then deleted.
    let journals = handovers::left_by_others(&config.campaign.database, run_id)?;
    let mut handed_over = Vec::new();
    for journal in &journals {
        handed_over.push((journal.run_id, journal.person_ids()?));
    }
    let recovered = ledger::recover_abandoned(&pool, run_id, &handed_over).await?;
    for journal in &journals {
        journal.remove()?;
    }
    let handovers = Arc::new(HandOverLog::create(&config.campaign.database, run_id)?);
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "deliveries left in sending by a run that died are sent again (possible duplicates)"
        );
    }
    let order = config.schedule.as_ref().map_or(&[][..], |s| &s.order[..]);
    crate::store::schedule::rank_deliveries(&pool, order)
        .await
        .context("while ordering the letters still to send (schedule.order)")?;
    let stop = StopSignal::install();
    let started = Instant::now();
    let lease_clock = Arc::new(LeaseClock::new());
    let (halt, _) = watch::channel(Halt::Running);
    let halt = Arc::new(halt);
    let heartbeat = keep_lease(lease.clone(), lease_clock.clone(), halt.clone());
    // The window's end is a deadline like --max-duration: claiming stops, in flight finishes.
    let window_deadline = window_closes.map(|at| {
        started
            + (at - crate::clock::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
    });
    let job = SendJob {
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
        halt,
        lease_clock,
        handovers: handovers.clone(),
    };
    let result = job.run().await;
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
        describe(reason),
    );
    let run_totals = crate::store::campaign::SendTotals {
        sent: totals.sent as i64,
        deferred: totals.deferred as i64,
        failed: totals.failed as i64,
        duplicates: totals.duplicates_possible as i64,
    };
    crate::store::campaign::record_send_totals(&pool, run_id, run_totals).await?;
    crate::db::finish_run(&pool, run_id, describe(reason), &summary).await?;
    crate::print_out(&summary);
    if let crate::plan::Gate::Closed(why) =
        crate::plan::gate(config, &pool, crate::clock::now()).await?
    {
        crate::print_out(&format!("send: {why}"));
    }
    let render_failures = totals.render_failures;
    if render_failures > 0 {
        crate::print_err(&format!(
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
async fn refuse_without_disk(
    pool: &SqlitePool,
    database: &std::path::Path,
) -> anyhow::Result<Option<Exit>> {
    let to_send = ledger::count_still_to_send(pool).await?;
    let needed = crate::db::free_disk_needed(to_send);
    let free = crate::db::free_disk(database)?;
    if free >= needed {
        return Ok(None);
    }
    let mib = |bytes: u64| bytes / (1024 * 1024);
    crate::print_err(&format!(
        "send: only {} MiB free beside {}; a run with {to_send} letters still to send needs {} MiB (the write-ahead log grows to {} MiB before it is folded back, plus about 1 KiB of evidence per letter); nothing sent",
        mib(free),
        database.display(),
        mib(needed),
        mib(crate::db::WAL_CEILING),
    ));
    Ok(Some(Exit::TryLater))
}

fn describe(reason: StopReason) -> &'static str {
    match reason {
        StopReason::NothingDue => "nothing more due",
        StopReason::Limit => "--limit reached",
        StopReason::Deadline => "--max-duration reached",
        StopReason::Signal => "signal",
        StopReason::Unreachable => "relay unreachable",
        StopReason::Misconfigured(Refuser::Us) => "our TLS settings refuse this relay",
        StopReason::Misconfigured(Refuser::Server) => "relay refuses this configuration",
        StopReason::LeaseLost => "sender lease lost",
        StopReason::WriterFailed => "the outcomes could not be recorded",
        StopReason::Unrenderable => "what is left to send does not render",
    }
}

/// SIGTERM or SIGINT: stop claiming, finish what is in flight. A second one aborts at once.
struct StopSignal {
    receiver: watch::Receiver<bool>,
}

impl StopSignal {
    fn install() -> StopSignal {
        let (sender, receiver) = watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            for count in 0.. {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if count > 0 {
                    crate::print_err(
                        "send: second signal: aborting; the next run sends what was in flight again",
                    );
                    std::process::exit(130);
                }
                tracing::warn!(
                    "signal received: finishing what is in flight, claiming nothing new"
                );
                let _ = sender.send(true);
            }
        });
        StopSignal { receiver }
    }

    fn receiver(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }
}

struct SendJob {
    config: Config,
    pool: SqlitePool,
    run_id: i64,
    pipeline: Arc<Pipeline>,
    relayers: Vec<Relayer>,
    limit: Option<u64>,
    deadline: Option<Instant>,
    stop: watch::Receiver<bool>,
    totals: Arc<RunTotals>,
    halt: Arc<watch::Sender<Halt>>,
    lease_clock: Arc<LeaseClock>,
    handovers: Arc<HandOverLog>,
}

/// A claimed delivery with its message built, waiting for the rate limiters.
struct Prepared {
    claimed: Claimed,
    message: Outgoing,
    /// How often a relay or domain that asked to slow down held it back in this run.
    held_back: u32,
}

/// The next batch being claimed and prepared: how many were claimed, and their messages.
type Refill = tokio::task::JoinHandle<anyhow::Result<(usize, Vec<Prepared>)>>;

/// A prepared delivery handed to a free worker, with the permit that says it is free.
struct Job {
    prepared: Prepared,
    _worker_free: tokio::sync::OwnedSemaphorePermit,
}

/// What workers tell the dispatcher besides outcomes: what a verdict said about the relay of
/// their lane, or about the recipient's domain.
#[derive(Debug)]
struct Signal {
    lane: usize,
    domain: String,
    news: News,
}

/// Takes one signal in: the relay's health and pace in its lane, a domain's pace in the
/// dispatcher.
fn note(signal: Signal, lanes: &mut Lanes, dispatcher: &mut Dispatcher) {
    let Signal { lane, domain, news } = signal;
    match news {
        News::Reached { accepted } => {
            lanes.reached(lane);
            if accepted {
                lanes.lanes[lane].pace.accepted(Instant::now());
                dispatcher.accepted(&domain);
            }
        }
        News::Unreachable { reason } => lanes.unreachable(lane, &reason),
        News::Misconfigured { reason, by } => lanes.misconfigured(lane, reason, by),
        News::SlowDown { scope, reason } => {
            lanes.reached(lane);
            match scope {
                Scope::Relay => {
                    let relay = &mut lanes.lanes[lane];
                    if let Some(rate) = relay.pace.slow_down(Instant::now(), &reason) {
                        tracing::warn!(
                            scope = "relay",
                            relay = %relay.relayer.name(),
                            rate_per_s = format!("{rate:.1}"),
                            %reason,
                            "the relay asks to slow down: lowering the rate of the whole run"
                        );
                    }
                }
                Scope::Domain => dispatcher.slow_down(&domain, &reason),
                Scope::Recipient => {}
            }
        }
    }
}

impl SendJob {
    /// Claims the next batch and prepares its messages, in a task of its own.
    fn refill(
        &self,
        limit: i64,
        exclude: Vec<String>,
        outcomes: &mpsc::Sender<ToRecord>,
    ) -> Refill {
        let pool = self.pool.clone();
        let run_id = self.run_id;
        let pipeline = self.pipeline.clone();
        let totals = self.totals.clone();
        let outcomes = outcomes.clone();
        let schedule = self.config.schedule.clone();
        tokio::spawn(async move {
            let now = crate::db::now_ms();
            let claimed = ledger::claim(&pool, run_id, limit, now, &exclude, schedule.as_ref())
                .await
                .context("while claiming due deliveries")?;
            let count = claimed.len();
            let prepared = prepare(pipeline, totals, claimed, &outcomes).await?;
            Ok((count, prepared))
        })
    }

    async fn run(self) -> anyhow::Result<(StopReason, Arc<RunTotals>)> {
        let mut lanes = Lanes::new(self.relayers.clone(), &self.config, Instant::now());
        let (outcome_sender, outcome_receiver) = mpsc::channel::<ToRecord>(4096);
        let (signal_sender, mut signal_receiver) = mpsc::unbounded_channel::<Signal>();
        let (requeue_sender, mut requeue_receiver) = mpsc::unbounded_channel::<Prepared>();
        let workers: usize = (0..lanes.lanes.len()).map(|l| lanes.connections(l)).sum();
        let unrecorded = Arc::new(Semaphore::new(workers.max(1) * UNRECORDED_PER_CONNECTION));
        // Set when claimed work must be given back instead of sent.
        let draining = Arc::new(AtomicBool::new(false));

        let writer = tokio::spawn(write_outcomes(
            self.pool.clone(),
            self.run_id,
            outcome_receiver,
            self.halt.clone(),
            self.totals.clone(),
        ));
        let mut halted = self.halt.subscribe();
        let global = NonZeroU32::new(self.config.rate.per_second).map(limiter);
        let mut worker_handles = Vec::new();
        for (lane, worker) in (0..lanes.lanes.len())
            .flat_map(|lane| (0..lanes.connections(lane)).map(move |_| lane))
            .map(|lane| (lane, &lanes.lanes[lane]))
        {
            let worker = Worker {
                lane,
                relay_name: worker.relayer.name().to_owned(),
                connection: worker.relayer.connection(),
                jobs: worker.receiver.clone(),
                outcomes: outcome_sender.clone(),
                signals: signal_sender.clone(),
                requeue: requeue_sender.clone(),
                fingerprint: self.pipeline.letters().fingerprint().to_owned(),
                retry: self.config.retry.clone(),
                draining: draining.clone(),
                handovers: self.handovers.clone(),
                unrecorded: unrecorded.clone(),
                halt: self.halt.clone(),
                lease_clock: self.lease_clock.clone(),
            };
            worker_handles.push(tokio::spawn(worker.run()));
        }
        drop(signal_sender);
        drop(requeue_sender);
        // A claim or preparation that failed for a reason other than a busy database: returned
        // once what is in flight has been recorded.
        let mut failure: Option<anyhow::Error> = None;

        let mut dispatcher = Dispatcher::new(&self.config);
        let mut dispatched: u64 = 0;
        let mut progress = Progress::new(&self.pool).await;
        let mut stop = self.stop.clone();
        let mut refill: Option<Refill> = None;
        let mut last_claim_empty = false;
        let reason = loop {
            while let Ok(signal) = signal_receiver.try_recv() {
                note(signal, &mut lanes, &mut dispatcher);
            }
            // Letters the relay or their domain asked to hold: back in their queue, to go when
            // the pace allows, without an attempt counted.
            while let Ok(held_back) = requeue_receiver.try_recv() {
                dispatched = dispatched.saturating_sub(1);
                dispatcher.hold_again(held_back);
            }
            if lanes.all_down() {
                // The relays that refused the configuration say more than the unreachable ones.
                if let Some((reason, by)) = lanes.first_misconfigured() {
                    tracing::error!(%reason, "stopping: the relay cannot be used as configured");
                    break StopReason::Misconfigured(by);
                }
                break StopReason::Unreachable;
            }
            match *halted.borrow() {
                Halt::Running => {}
                Halt::LeaseLost => break StopReason::LeaseLost,
                Halt::WriterFailed => break StopReason::WriterFailed,
            }
            if *stop.borrow() {
                break StopReason::Signal;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break StopReason::Deadline;
            }
            if self.limit.is_some_and(|l| dispatched >= l) {
                break StopReason::Limit;
            }
            progress.tick(&self.totals);
            // Claiming and rendering the next batch run beside the dispatch, so the limiter's
            // slots are never missed while a batch is prepared (with a burst of one, a missed
            // slot is lost for good: 5 % of the rate, measured).
            if let Some(task) = refill.take_if(|t| t.is_finished() || dispatcher.held() == 0) {
                match task.await.context("the claiming task failed") {
                    Ok(Ok((claimed, prepared))) => {
                        last_claim_empty = claimed == 0;
                        // A batch in which no letter rendered: what is due now is letters that
                        // do not render, given back each time and claimed again. Stop (exit 1,
                        // `check` says why) rather than claim them in a loop.
                        let unrenderable = claimed > 0 && prepared.is_empty();
                        dispatcher.hold(prepared);
                        if unrenderable && dispatcher.held() == 0 {
                            break StopReason::Unrenderable;
                        }
                    }
                    // Another process holds the database: what is in flight goes on, the
                    // next claim is tried again.
                    Ok(Err(error)) if crate::db::is_busy(&error) => {
                        tracing::warn!(error = %format!("{error:#}"), "the database is busy: claiming again shortly");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => {}
                            _ = halted.changed() => {}
                        }
                    }
                    Ok(Err(error)) | Err(error) => {
                        failure = Some(error);
                        break StopReason::WriterFailed;
                    }
                }
            }
            if refill.is_none() && dispatcher.held() == 0 && last_claim_empty {
                // A letter in flight may still come back, held back by its relay or domain:
                // nothing is due only once every worker is free.
                if !lanes.all_free() {
                    lanes.wait_all_free().await?;
                    continue;
                }
                // A worker hands a letter back before it frees its connection: one handed back
                // since the top of this turn is held again, not lost.
                if let Ok(held_back) = requeue_receiver.try_recv() {
                    dispatched = dispatched.saturating_sub(1);
                    dispatcher.hold_again(held_back);
                    continue;
                }
                break StopReason::NothingDue;
            }
            if refill.is_none() && dispatcher.needs_more() && !last_claim_empty {
                let room = self.limit.map_or(i64::MAX, |l| {
                    (l - dispatched) as i64 - dispatcher.held() as i64
                });
                if room > 0 {
                    refill = Some(self.refill(
                        room.min(dispatcher.batch_size()),
                        dispatcher.full_domains(),
                        &outcome_sender,
                    ));
                }
            }
            if dispatcher.held() == 0 {
                // The batch being prepared is awaited at the top of the next turn.
                continue;
            }
            // Picking is synchronous and waiting happens after it, so nothing picked can be
            // lost to a cancelled future.
            let prepared = match dispatcher.pick() {
                Pick::Ready(prepared) => *prepared,
                Pick::Wait(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                Pick::Empty => continue,
            };
            // A relay with a free worker (by weight, at its own pace) first, then the global
            // ceiling: the message leaves the moment the limiter allows it, so the relay sees
            // the configured spacing. Waiting for a worker watches the stop signal and the halt,
            // so neither a stuck relay nor a failed writer can hold the run here.
            let next = tokio::select! {
                next = lanes.next() => next,
                _ = stop.changed() => {
                    dispatcher.hold_again(prepared);
                    continue;
                }
                _ = halted.changed() => {
                    dispatcher.hold_again(prepared);
                    continue;
                }
            };
            let Some((lane, worker_free)) = next else {
                // Every relay went down while this letter waited: given back below.
                dispatcher.hold_again(prepared);
                continue;
            };
            if let Some(global) = &global {
                until_ready_precisely(global).await;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                // The wait ran past the deadline (a sending window's end): hold the letter
                // back, to be given back below, rather than let it leave late.
                dispatcher.hold_again(prepared);
                continue;
            }
            let job = Job {
                prepared,
                _worker_free: worker_free,
            };
            if let Err(unsent) = lanes.lanes[lane].jobs.send(job).await {
                dispatcher.hold_again(unsent.0.prepared);
                failure = Some(anyhow::anyhow!("every send worker stopped"));
                break StopReason::WriterFailed;
            }
            dispatched += 1;
        };
        // A batch still being prepared was claimed too: hold it, to give it back below.
        if let Some(task) = refill.take()
            && let Ok(Ok((_, prepared))) = task.await
        {
            dispatcher.hold(prepared);
        }
        // Whatever is still held was claimed but never attempted: give it back.
        if matches!(
            reason,
            StopReason::Unreachable | StopReason::Misconfigured(_)
        ) {
            draining.store(true, Ordering::Relaxed);
        }
        // A run that lost its claims, or cannot write, leaves what it holds as it is: the
        // deliveries are another run's now, or stay `sending` (not handed over) for the next.
        let held = dispatcher.drain();
        let give_back = !matches!(reason, StopReason::LeaseLost | StopReason::WriterFailed);
        for prepared in held.into_iter().filter(|_| give_back) {
            let person = &prepared.claimed.person;
            outcome_sender
                .send(ToRecord::released(
                    person,
                    GiveBack::NotAttempted(&describe(reason)),
                ))
                .await
                .ok();
        }
        for lane in &mut lanes.lanes {
            // Closing each lane's queue lets its workers end.
            let (closed, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut lane.jobs, closed));
        }
        for handle in worker_handles {
            if let Err(error) = handle.await {
                tracing::error!(%error, "a send worker failed");
            }
        }
        // Held back by the last replies, after the dispatch ended: given back too.
        while let Ok(prepared) = requeue_receiver.try_recv() {
            let person = &prepared.claimed.person;
            outcome_sender
                .send(ToRecord::released(
                    person,
                    GiveBack::NotAttempted(&describe(reason)),
                ))
                .await
                .ok();
        }
        drop(outcome_sender);
        writer.await.context("the outcome writer failed")??;
        if let Some(error) = failure {
            return Err(error);
        }
        let reason = match (reason, self.halt.borrow().clone()) {
            (_, Halt::LeaseLost) => StopReason::LeaseLost,
            (reason, _) => reason,
        };
        // Signals from the last messages: a relay that failed every session after the last
        // success was not reached, even when fewer people were due than it takes to notice.
        let mut reason = reason;
        while let Ok(signal) = signal_receiver.try_recv() {
            note(signal, &mut lanes, &mut dispatcher);
        }
        let slowed = dispatcher.slowed(&lanes);
        for scope in &slowed {
            tracing::info!(
                scope = %scope.scope,
                name = %scope.name,
                decreases = scope.decreases,
                rate_per_s = scope.final_rate.map_or("full".to_owned(), |r| format!("{r:.1}")),
                reason = scope.reason.as_deref().unwrap_or(""),
                "slowed during this run"
            );
        }
        crate::store::relay::record_pacing(&self.pool, self.run_id, &slowed)
            .await
            .context("while recording what the run slowed down")?;
        let notifications: Vec<_> = lanes
            .lanes
            .iter()
            .filter_map(|lane| {
                let seen = lane.relayer.notifications()?;
                Some((lane.relayer.name().to_owned(), seen))
            })
            .collect();
        crate::store::relay::record_notifications(&self.pool, self.run_id, &notifications)
            .await
            .context("while recording which relays offered delivery status notifications")?;
        // With one relay, a failure since its last success ends the run as unreachable; with
        // several, only when every one of them is down.
        if reason == StopReason::NothingDue && (lanes.lanes.len() == 1 || lanes.all_down()) {
            if let Some((why, by)) = lanes.first_misconfigured() {
                tracing::error!(reason = %why, "the relay cannot be used as configured");
                reason = StopReason::Misconfigured(by);
            } else if lanes.any_failing() {
                reason = StopReason::Unreachable;
            }
        }
        progress.finish(&self.totals);
        Ok((reason, self.totals))
    }
}

enum Pick {
    Ready(Box<Prepared>),
    Wait(Duration),
    Empty,
}

/// Renders and builds the messages of a claimed batch ([`Pipeline::prepare_all`], as `check`
/// and `preview` do), on every core, off the I/O threads. A letter that does not render is
/// released (no attempt counted) and makes the run end with exit 1, so `check` is run before
/// anything else goes.
async fn prepare(
    pipeline: Arc<Pipeline>,
    totals: Arc<RunTotals>,
    claimed: Vec<Claimed>,
    outcomes: &mpsc::Sender<ToRecord>,
) -> anyhow::Result<Vec<Prepared>> {
    let built = tokio::task::spawn_blocking(move || {
        pipeline.prepare_all(
            claimed,
            |claimed| &claimed.person,
            |claimed, built| (claimed, built.map(|(_, message)| message)),
        )
    })
    .await
    .context("a rendering task failed")?;
    let mut prepared = Vec::new();
    for (claimed, built) in built {
        match built {
            Ok(message) => prepared.push(Prepared {
                claimed,
                message,
                held_back: 0,
            }),
            Err(error) => {
                let person = &claimed.person;
                tracing::error!(person = %person.person_ref, %error, "the letter did not render");
                totals.did_not_render();
                outcomes
                    .send(ToRecord::released(person, GiveBack::DidNotRender(&error)))
                    .await
                    .context("the outcome writer stopped")?;
            }
        }
    }
    Ok(prepared)
}

/// Holds claimed deliveries until the rate limiters and the pace of their scope let them go.
struct Dispatcher {
    domains: HashMap<String, DomainQueue>,
    general: VecDeque<Prepared>,
    batch: i64,
}

/// The letters of one domain that has a rate of its own (`rate.per_domain`) or that asked to
/// slow down during this run.
struct DomainQueue {
    limiter: Option<Limiter>,
    ceiling: u32,
    pace: Pace,
    queue: VecDeque<Prepared>,
}

impl DomainQueue {
    fn new(ceiling: u32, now: Instant) -> DomainQueue {
        DomainQueue {
            limiter: NonZeroU32::new(ceiling).map(limiter),
            ceiling,
            pace: Pace::new(ceiling, now),
            queue: VecDeque::new(),
        }
    }

    /// At most two seconds' worth held (four at least); as many as a batch while not limited.
    fn cap(&self, batch: usize) -> usize {
        let rate = match (self.pace.rate(), self.ceiling) {
            (Some(rate), _) => rate,
            (None, 0) => return batch,
            (None, ceiling) => f64::from(ceiling),
        };
        ((rate * 2.0) as usize).max(4)
    }
}

impl Dispatcher {
    fn new(config: &Config) -> Dispatcher {
        let now = Instant::now();
        let domains = config
            .rate
            .per_domain
            .iter()
            .filter(|(_, rate)| **rate > 0)
            .map(|(domain, rate)| (domain.clone(), DomainQueue::new(*rate, now)))
            .collect();
        Dispatcher {
            domains,
            general: VecDeque::new(),
            batch: (config
                .relays
                .iter()
                .map(|r| r.max_connections)
                .sum::<usize>() as i64
                * 32)
                .clamp(64, 1000),
        }
    }

    fn batch_size(&self) -> i64 {
        self.batch
    }

    fn held(&self) -> usize {
        self.general.len() + self.domains.values().map(|d| d.queue.len()).sum::<usize>()
    }

    /// The next claim starts while a whole batch is still waiting: a claim waits its turn
    /// behind the outcomes for the one connection, and with half a batch left the workers ran
    /// dry before it came back (18 s instead of 15.5 s for 49,047 letters to `smtp-sink`).
    fn needs_more(&self) -> bool {
        self.general.len() < self.batch as usize
    }

    /// Domains whose queue is full: the next claim leaves their people in the database.
    fn full_domains(&self) -> Vec<String> {
        let batch = self.batch as usize;
        self.domains
            .iter()
            .filter(|(_, d)| d.queue.len() >= d.cap(batch))
            .map(|(domain, _)| domain.clone())
            .collect()
    }

    fn hold(&mut self, prepared: Vec<Prepared>) {
        for item in prepared {
            match self.domains.get_mut(&item.claimed.email_domain) {
                Some(domain) => domain.queue.push_back(item),
                None => self.general.push_back(item),
            }
        }
    }

    /// A letter held back by its relay or domain goes behind those already waiting: the same
    /// letter tried again at once would meet the same refusal, within the same window.
    fn hold_again(&mut self, mut item: Prepared) {
        item.held_back += 1;
        match self.domains.get_mut(&item.claimed.email_domain) {
            Some(domain) => domain.queue.push_back(item),
            None => self.general.push_back(item),
        }
    }

    /// The relay took a letter to this domain: its pace may give a step back.
    fn accepted(&mut self, domain: &str) {
        if let Some(domain) = self.domains.get_mut(domain) {
            domain.pace.accepted(Instant::now());
        }
    }

    /// Slows a domain that asked for it, once per window, and only that domain.
    fn slow_down(&mut self, domain: &str, reason: &str) {
        let now = Instant::now();
        if !self.domains.contains_key(domain) {
            // Its letters held so far move to a queue of their own.
            let mut queue = DomainQueue::new(0, now);
            let (theirs, others) = std::mem::take(&mut self.general)
                .into_iter()
                .partition(|p| p.claimed.email_domain == domain);
            queue.queue = theirs;
            self.general = others;
            self.domains.insert(domain.to_owned(), queue);
        }
        if let Some(queue) = self.domains.get_mut(domain)
            && let Some(rate) = queue.pace.slow_down(now, reason)
        {
            tracing::warn!(
                scope = "domain",
                %domain,
                rate_per_s = format!("{rate:.1}"),
                %reason,
                "a domain asks to slow down: lowering its rate only"
            );
        }
    }

    /// Which scopes were slowed during the run, and why: for the log and `status`.
    fn slowed(&self, lanes: &Lanes) -> Vec<Slowed> {
        let row = |scope: &str, name: &str, pace: &Pace| Slowed {
            scope: scope.to_owned(),
            name: name.to_owned(),
            decreases: pace.decreases() as i64,
            final_rate: pace.rate(),
            reason: pace.reason().map(str::to_owned),
        };
        let mut slowed: Vec<Slowed> = lanes
            .slowed()
            .map(|(name, pace)| row("relay", name, pace))
            .collect();
        let mut domains: Vec<Slowed> = self
            .domains
            .iter()
            .filter(|(_, d)| d.pace.decreases() > 0)
            .map(|(name, d)| row("domain", name, &d.pace))
            .collect();
        domains.sort_by(|a, b| b.decreases.cmp(&a.decreases).then(a.name.cmp(&b.name)));
        slowed.extend(domains);
        slowed
    }

    /// The next delivery whose domain allows it now, or how long until one does.
    fn pick(&mut self) -> Pick {
        let now = Instant::now();
        let mut earliest: Option<Duration> = None;
        let mut wait_at_least = |wait: Duration| {
            earliest = Some(earliest.map_or(wait, |e: Duration| e.min(wait)));
        };
        for domain in self.domains.values_mut() {
            if domain.queue.is_empty() {
                continue;
            }
            let paced = domain.pace.wait(now);
            if !paced.is_zero() {
                wait_at_least(paced);
                continue;
            }
            let allowed = match &domain.limiter {
                None => Ok(()),
                Some(limiter) => limiter.check().map_err(|not_until| {
                    not_until.wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ))
                }),
            };
            match allowed {
                Ok(()) => {
                    if let Some(item) = domain.queue.pop_front() {
                        domain.pace.take(now);
                        return Pick::Ready(Box::new(item));
                    }
                }
                Err(wait) => wait_at_least(wait),
            }
        }
        if let Some(item) = self.general.pop_front() {
            return Pick::Ready(Box::new(item));
        }
        earliest.map_or(Pick::Empty, Pick::Wait)
    }

    fn drain(&mut self) -> Vec<Prepared> {
        let mut all: Vec<Prepared> = self.general.drain(..).collect();
        for domain in self.domains.values_mut() {
            all.extend(domain.queue.drain(..));
        }
        all
    }
}

/// A rate of N per second with a burst of one: messages are spaced just over 1/N apart (1 %
/// more, to absorb scheduling jitter), so no one-second window ever holds more than N.
fn limiter(rate: NonZeroU32) -> Limiter {
    let period = Duration::from_secs_f64(1.01 / f64::from(rate.get()));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(rate))
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// Waits for the limiter's next slot to the microsecond. tokio's timer fires on millisecond
/// ticks, so a plain sleep wakes up to 1 ms late, and with a burst of one the lateness is lost
/// for good (at 200/s: 187/s measured). Sleep until 2 ms before the slot, then yield until it.
async fn until_ready_precisely(limiter: &Limiter) {
    let clock = governor::clock::DefaultClock::default();
    loop {
        match limiter.check() {
            Ok(()) => return,
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
                if wait > Duration::from_millis(2) {
                    tokio::time::sleep(wait - Duration::from_millis(2)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// One relay session: builds each message and hands it over.
struct Worker {
    /// The relay this worker's session goes to.
    lane: usize,
    relay_name: String,
    connection: crate::transport::Connection,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    outcomes: mpsc::Sender<ToRecord>,
    signals: mpsc::UnboundedSender<Signal>,
    /// Letters held back by a relay or domain that asked to slow down, back to the dispatcher.
    requeue: mpsc::UnboundedSender<Prepared>,
    fingerprint: String,
    retry: Retry,
    draining: Arc<AtomicBool>,
    handovers: Arc<HandOverLog>,
    /// Places among the outcomes not yet committed (see [`Worker::room_to_record`]).
    unrecorded: Arc<Semaphore>,
    halt: Arc<watch::Sender<Halt>>,
    lease_clock: Arc<LeaseClock>,
}

impl Worker {
    async fn run(mut self) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => Some(job),
                None => self.jobs.lock().await.recv().await,
            };
            let Some(job) = job else { break };
            let person_id = job.prepared.claimed.person.id;
            let generation = job.prepared.claimed.person.generation;
            let handed_over_before = job.prepared.claimed.possible_duplicate;
            let Some(room) = self.room_to_record().await else {
                // Halted while the writer could not keep up: left `sending` for the next run.
                continue;
            };
            next = self.waiting_job();
            let after = next.as_ref().map(|job| &job.prepared.message);
            let Some((outcome, relay)) = self.attempt(job.prepared, after).await else {
                // Not handed over, and not this run's to record any more.
                continue;
            };
            let record = ToRecord {
                person_id,
                generation,
                outcome,
                relay,
                place: Some(room),
                handed_over_before,
            };
            if self.outcomes.send(record).await.is_err() {
                break;
            }
        }
        self.connection.close().await;
    }

    /// The outcome to record, with the relay that answered for the letter, or None when the
    /// letter went back to the dispatcher to wait for the pace of its scope (nothing reached the
    /// recipient; no attempt is counted), or is no longer this run's to record.
    async fn attempt(
        &mut self,
        prepared: Prepared,
        next: Option<&Outgoing>,
    ) -> Option<(Outcome, Option<String>)> {
        if self.draining.load(Ordering::Relaxed) {
            let why = GiveBack::NotAttempted(&"the relay is unreachable");
            return Some((decide::give_back(why), None));
        }
        if !self.may_hand_over(prepared.claimed.person.id) {
            return None;
        }
        // Asked again immediately before the bytes that commit each letter to the relay (its
        // final dot, or BDAT LAST): the session may have waited for the relay's replies, or the
        // process may have been frozen, since the check above.
        let (halt, lease_clock) = (self.halt.clone(), self.lease_clock.clone());
        let may_commit = move || {
            let running = *halt.borrow() == Halt::Running;
            if running && !lease_clock.valid() {
                halt.send_if_modified(|h| halt_with(h, Halt::LeaseLost));
                return false;
            }
            running
        };
        let attempt = self
            .connection
            .deliver(&prepared.message, next, &may_commit)
            .await;
        let letter = Letter {
            message: &prepared.message,
            fingerprint: &self.fingerprint,
            attempts: prepared.claimed.attempts,
            first_attempt_at: prepared.claimed.first_attempt_at,
            held_back: prepared.held_back,
        };
        let at = At {
            now: crate::db::now_ms(),
            jitter: rand::random(),
        };
        let Decision { news, then } = decide::decide(attempt, &letter, &self.retry, at);
        let domain = &prepared.claimed.email_domain;
        if let Some(news) = news {
            let lane = self.lane;
            let domain = domain.clone();
            let _ = self.signals.send(Signal { lane, domain, news });
        }
        match then {
            Then::Record { outcome, answered } => {
                Some((outcome, answered.then(|| self.relay_name.clone())))
            }
            Then::HandBack { otherwise } => {
                tracing::debug!(%domain, relay = %self.relay_name, "handed back to the dispatcher");
                match self.requeue.send(prepared) {
                    Ok(()) => None,
                    Err(_) => Some((otherwise, None)),
                }
            }
            Then::Forget { why } => {
                tracing::error!(
                    person = prepared.claimed.person.id,
                    "{why}: the letter was not handed over"
                );
                None
            }
        }
    }

    /// The letter this worker carries after the current one, when one already waits for this
    /// relay and no idle worker is there to take it (an idle worker waits holding the queue):
    /// its envelope can go in the same write as the current message. See `Lane::slots`.
    fn waiting_job(&self) -> Option<Job> {
        self.jobs.try_lock().ok()?.try_recv().ok()
    }

    /// A place among the outcomes not yet committed, waited for while the database cannot take
    /// them (another process holds it): the run goes on sending through a short stall, but no
    /// further than [`UNRECORDED_PER_CONNECTION`] letters a connection ahead of the ledger, so
    /// a crash in a long one flags (and sends twice) no more than that. None once halted.
    async fn room_to_record(&self) -> Option<OwnedSemaphorePermit> {
        let mut halted = self.halt.subscribe();
        if *halted.borrow() != Halt::Running {
            return None;
        }
        tokio::select! {
            room = self.unrecorded.clone().acquire_owned() => room.ok(),
            _ = halted.changed() => None,
        }
    }

    /// The last check before a letter goes: the run is not halted, the letter is in this run's
    /// hand-over journal (only a letter so recorded can be flagged as a possible duplicate after
    /// a crash), and, read after that record, the lease has not lapsed, so no other run can
    /// have taken the letter over before the record was written (`handovers`).
    fn may_hand_over(&self, person_id: i64) -> bool {
        if *self.halt.borrow() != Halt::Running {
            return false;
        }
        if let Err(error) = self.handovers.record(person_id) {
            let what = if error.kind() == std::io::ErrorKind::StorageFull {
                "the disk is full"
            } else {
                "the hand-over journal refused the write"
            };
            tracing::error!(%error, "{what}: stopping; the next run sends again what was in flight");
            self.halt
                .send_if_modified(|h| halt_with(h, Halt::WriterFailed));
            return false;
        }
        if !self.lease_clock.valid() {
            tracing::error!(
                "the sender lease lapsed before it could be renewed: handing nothing more over"
            );
            self.halt
                .send_if_modified(|h| halt_with(h, Halt::LeaseLost));
            return false;
        }
        true
    }
}

/// The one writer: records outcomes in batches, so the database sees a few transactions a
/// second however fast the relay. A letter's hand-over is in the run's journal, not here, so no
/// worker waits for this writer before a letter goes.
async fn write_outcomes(
    pool: SqlitePool,
    run_id: i64,
    mut outcomes: mpsc::Receiver<ToRecord>,
    halt: Arc<watch::Sender<Halt>>,
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
            let (person_id, generation) = (record.person_id, record.generation);
            handed_over_before.push(record.handed_over_before);
            batch.push((person_id, generation, record.outcome));
            relays.extend(record.relay.map(|relay| (person_id, generation, relay)));
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
                for ((person_id, _, outcome), before) in batch.iter().zip(&handed_over_before) {
                    if !lost.contains(person_id) {
                        totals.committed(outcome, *before);
                    }
                }
                if !stale.is_empty() {
                    tracing::error!(
                        deliveries = stale.len(),
                        "another run holds deliveries this run had claimed (its lease was taken over): stopping, nothing more is written for them"
                    );
                    halt.send_if_modified(|h| halt_with(h, Halt::LeaseLost));
                }
            }
            Err(error) => {
                halt.send_if_modified(|h| halt_with(h, Halt::WriterFailed));
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
    batch: &[(i64, i64, Outcome)],
    relays: &[(i64, i64, String)],
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
    batch: &[(i64, i64, Outcome)],
    relays: &[(i64, i64, String)],
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

/// What the operator sees while a run goes: a progress bar with the rate and the time left on a
/// terminal, a log line every five seconds elsewhere (cron, systemd, a log collector).
struct Progress {
    started: Instant,
    last: Instant,
    due_at_start: i64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    async fn new(pool: &SqlitePool) -> Progress {
        let due_at_start = ledger::count_still_to_send(pool).await.unwrap_or(0) as i64;
        use std::io::IsTerminal;
        let bar = (std::io::stderr().is_terminal() && tracing::enabled!(tracing::Level::INFO))
            .then(|| {
                let bar = indicatif::ProgressBar::new(due_at_start.max(0) as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} letters  {per_sec}  {msg}  time left {eta}",
                ) {
                    bar.set_style(style);
                }
                bar
            });
        Progress {
            started: Instant::now(),
            last: Instant::now(),
            due_at_start,
            bar,
        }
    }

    fn tick(&mut self, totals: &RunTotals) {
        let every = if self.bar.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let Counts {
            sent,
            deferred,
            failed,
            ..
        } = totals.counts();
        let done = sent + deferred + failed;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{sent} sent, {deferred} deferred, {failed} failed"));
            return;
        }
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let left = (self.due_at_start - done as i64).max(0);
        let eta = if rate > 0.0 {
            left as f64 / rate
        } else {
            f64::INFINITY
        };
        tracing::info!(
            sent,
            deferred,
            failed,
            rate_per_s = format!("{rate:.0}"),
            eta_s = format!("{eta:.0}"),
            "sending"
        );
    }

    fn finish(&self, totals: &RunTotals) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::debug!(
            sent = totals.counts().sent,
            seconds = self.started.elapsed().as_secs_f64(),
            "send finished"
        );
    }
}
