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
//! them as possible duplicates.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::BackoffBuilder;
use governor::{Quota, RateLimiter};
use sqlx::SqlitePool;
use tokio::sync::{Mutex, mpsc, watch};

use crate::Exit;
use crate::cli::SendArgs;
use crate::config::{Config, Retry};
use crate::lease::{HEARTBEAT, Lease};
use crate::ledger::{self, Claimed, Outcome};
use crate::message::{MessageBuilder, Outgoing};
use crate::pacing::Pace;
use crate::render::Letters;
use crate::smtp_reply::{Scope, SmtpReply, Step};
use crate::store::relay::Slowed;
use crate::transport::{Attempt, Relayer};
use lanes::Lanes;

type Limiter = governor::DefaultDirectRateLimiter;

mod lanes;

/// After this many connection failures in a row, with no success between them, the relay is
/// taken as unreachable and the run ends with 75.
const UNREACHABLE_AFTER: u64 = 3;

/// How often one letter may be held back in a run by a relay or domain asking to slow down;
/// after that it is deferred like any temporary failure, with its own retry delay.
const HOLD_BACK_AT_MOST: u32 = 5;

/// What one run did, for the summary line, the runs table and tests.
#[derive(Debug, Default)]
pub struct RunTotals {
    pub sent: AtomicU64,
    pub deferred: AtomicU64,
    pub failed: AtomicU64,
    pub released: AtomicU64,
    pub duplicates_possible: AtomicU64,
    pub render_failures: AtomicU64,
}

impl RunTotals {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
    Misconfigured,
    LeaseLost,
}

pub async fn run(config: &Config, args: &SendArgs) -> anyhow::Result<Exit> {
    let pool = crate::db::open(&config.campaign.database, false).await?;
    let letters = Arc::new(Letters::load(config)?);
    let key = crate::db::signing_key(&pool).await?;
    let builder = Arc::new(MessageBuilder::new(config, &key)?);
    let relayers = Relayer::all(config)?;
    let run_id = crate::db::start_run(&pool, "send").await?;
    let lease = match Lease::acquire(&pool, run_id).await? {
        Ok(lease) => lease,
        Err(holder) => {
            eprintln!(
                "send: another send is running (run {} on {}, pid {}); nothing sent",
                holder.run_id, holder.host, holder.pid
            );
            crate::db::finish_run(&pool, run_id, "lock held", "").await?;
            return Ok(Exit::TryLater);
        }
    };
    let recovered = ledger::recover_abandoned(&pool, run_id).await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "deliveries left in sending by a run that died are sent again (possible duplicates)"
        );
    }
    let stop = StopSignal::install();
    let started = Instant::now();
    let job = SendJob {
        config: config.clone(),
        pool: pool.clone(),
        run_id,
        letters,
        builder,
        relayers,
        limit: args.limit,
        deadline: args.max_duration.map(|d| started + d),
        stop: stop.receiver(),
        totals: Arc::new(RunTotals::default()),
    };
    let result = job.run(&lease).await;
    lease.release().await?;
    let (reason, totals) = result?;
    let elapsed = started.elapsed();
    let summary = format!(
        "send: {} sent, {} deferred, {} failed, {} possible duplicates, {} released; {:.1}s; stopped: {}",
        RunTotals::get(&totals.sent),
        RunTotals::get(&totals.deferred),
        RunTotals::get(&totals.failed),
        RunTotals::get(&totals.duplicates_possible),
        RunTotals::get(&totals.released),
        elapsed.as_secs_f64(),
        describe(reason),
    );
    sqlx::query("UPDATE runs SET sent = ?, deferred = ?, failed = ?, duplicates = ? WHERE id = ?")
        .bind(RunTotals::get(&totals.sent) as i64)
        .bind(RunTotals::get(&totals.deferred) as i64)
        .bind(RunTotals::get(&totals.failed) as i64)
        .bind(RunTotals::get(&totals.duplicates_possible) as i64)
        .bind(run_id)
        .execute(&pool)
        .await?;
    crate::db::finish_run(&pool, run_id, describe(reason), &summary).await?;
    println!("{summary}");
    let render_failures = RunTotals::get(&totals.render_failures);
    if render_failures > 0 {
        eprintln!(
            "send: {render_failures} letters did not render and were not sent; run `breachmail check` to see why"
        );
        return Ok(Exit::Failed);
    }
    Ok(match reason {
        StopReason::Unreachable | StopReason::LeaseLost => Exit::TryLater,
        StopReason::Misconfigured => Exit::Failed,
        _ => Exit::Ok,
    })
}

fn describe(reason: StopReason) -> &'static str {
    match reason {
        StopReason::NothingDue => "nothing more due",
        StopReason::Limit => "--limit reached",
        StopReason::Deadline => "--max-duration reached",
        StopReason::Signal => "signal",
        StopReason::Unreachable => "relay unreachable",
        StopReason::Misconfigured => "relay refuses this configuration",
        StopReason::LeaseLost => "sender lease lost",
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
                    eprintln!(
                        "send: second signal: aborting; the next run sends what was in flight again"
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
    letters: Arc<Letters>,
    builder: Arc<MessageBuilder>,
    relayers: Vec<Relayer>,
    limit: Option<u64>,
    deadline: Option<Instant>,
    stop: watch::Receiver<bool>,
    totals: Arc<RunTotals>,
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

/// What workers tell the dispatcher besides outcomes, each about the relay of its lane.
#[derive(Debug)]
enum Signal {
    /// The relay answered; `accepted` when it took the letter (to the recipient's domain).
    Reached {
        lane: usize,
        domain: String,
        accepted: bool,
    },
    Unreachable {
        lane: usize,
        reason: String,
    },
    Misconfigured {
        lane: usize,
        reason: String,
    },
    /// A reply that asks the relay or a domain to slow down (see `smtp_reply::Scope`).
    SlowDown {
        lane: usize,
        scope: Scope,
        domain: String,
        reason: String,
    },
}

/// Takes one signal in: the relay's health and pace in its lane, a domain's pace in the
/// dispatcher.
fn note(signal: Signal, lanes: &mut Lanes, dispatcher: &mut Dispatcher) {
    match signal {
        Signal::Reached {
            lane,
            domain,
            accepted,
        } => {
            lanes.reached(lane);
            if accepted {
                lanes.lanes[lane].pace.accepted(Instant::now());
                dispatcher.accepted(&domain);
            }
        }
        Signal::Unreachable { lane, reason } => lanes.unreachable(lane, &reason),
        Signal::Misconfigured { lane, reason } => lanes.misconfigured(lane, reason),
        Signal::SlowDown {
            lane,
            scope,
            domain,
            reason,
        } => {
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
        outcomes: &mpsc::Sender<(i64, i64, Outcome)>,
    ) -> Refill {
        let pool = self.pool.clone();
        let run_id = self.run_id;
        let letters = self.letters.clone();
        let builder = self.builder.clone();
        let totals = self.totals.clone();
        let outcomes = outcomes.clone();
        tokio::spawn(async move {
            let claimed = ledger::claim(&pool, run_id, limit, crate::db::now_ms(), &exclude)
                .await
                .context("while claiming due deliveries")?;
            let count = claimed.len();
            let prepared = prepare(letters, builder, totals, claimed, &outcomes).await?;
            Ok((count, prepared))
        })
    }

    async fn run(self, lease: &Lease) -> anyhow::Result<(StopReason, Arc<RunTotals>)> {
        let mut lanes = Lanes::new(self.relayers.clone(), &self.config, Instant::now());
        let (outcome_sender, outcome_receiver) = mpsc::channel::<(i64, i64, Outcome)>(4096);
        let (signal_sender, mut signal_receiver) = mpsc::unbounded_channel::<Signal>();
        let (requeue_sender, mut requeue_receiver) = mpsc::unbounded_channel::<Prepared>();
        // Set when claimed work must be given back instead of sent.
        let draining = Arc::new(AtomicBool::new(false));

        let writer = tokio::spawn(write_outcomes(
            self.pool.clone(),
            self.run_id,
            outcome_receiver,
        ));
        let global = NonZeroU32::new(self.config.rate.per_second).map(limiter);
        let (relay_sender, relay_receiver) = mpsc::unbounded_channel::<(i64, i64, String)>();
        let relay_writer = tokio::spawn(write_relays(self.pool.clone(), relay_receiver));
        let mut worker_handles = Vec::new();
        for (lane, worker) in (0..lanes.lanes.len())
            .flat_map(|lane| (0..lanes.connections(lane)).map(move |_| lane))
            .map(|lane| (lane, &lanes.lanes[lane]))
        {
            let worker = Worker {
                lane,
                relay_name: worker.relayer.name().to_owned(),
                relays: relay_sender.clone(),
                connection: worker.relayer.connection(),
                jobs: worker.receiver.clone(),
                outcomes: outcome_sender.clone(),
                signals: signal_sender.clone(),
                requeue: requeue_sender.clone(),
                fingerprint: self.letters.fingerprint().to_owned(),
                retry: self.config.retry.clone(),
                draining: draining.clone(),
                totals: self.totals.clone(),
            };
            worker_handles.push(tokio::spawn(worker.run()));
        }
        drop(signal_sender);
        drop(requeue_sender);
        drop(relay_sender);

        let mut dispatcher = Dispatcher::new(&self.config);
        let mut dispatched: u64 = 0;
        let mut last_heartbeat = Instant::now();
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
                if let Some(reason) = lanes.first_misconfigured() {
                    tracing::error!(%reason, "stopping: the relay cannot be used as configured");
                    break StopReason::Misconfigured;
                }
                break StopReason::Unreachable;
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
            if last_heartbeat.elapsed() >= HEARTBEAT {
                if !lease.heartbeat().await? {
                    break StopReason::LeaseLost;
                }
                last_heartbeat = Instant::now();
            }
            progress.tick(&self.totals);
            // Claiming and rendering the next batch run beside the dispatch, so the limiter's
            // slots are never missed while a batch is prepared (with a burst of one, a missed
            // slot is lost for good: 5 % of the rate, measured).
            if let Some(task) = refill.take_if(|t| t.is_finished() || dispatcher.held() == 0) {
                let (claimed, prepared) = task.await.context("the claiming task failed")??;
                last_claim_empty = claimed == 0;
                dispatcher.hold(prepared);
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
            // the configured spacing.
            let Some((lane, worker_free)) = lanes.next().await else {
                // Every relay went down while this letter waited: given back below.
                dispatcher.hold_again(prepared);
                continue;
            };
            if let Some(global) = &global {
                until_ready_precisely(global).await;
            }
            let job = Job {
                prepared,
                _worker_free: worker_free,
            };
            if lanes.lanes[lane].jobs.send(job).await.is_err() {
                anyhow::bail!("every send worker stopped");
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
        if matches!(reason, StopReason::Unreachable | StopReason::Misconfigured) {
            draining.store(true, Ordering::Relaxed);
        }
        for prepared in dispatcher.drain() {
            let person = &prepared.claimed.person;
            outcome_sender
                .send((
                    person.id,
                    person.generation,
                    Outcome::Released {
                        reason: format!("not attempted: {}", describe(reason)),
                    },
                ))
                .await
                .ok();
            self.totals.released.fetch_add(1, Ordering::Relaxed);
        }
        for lane in &mut lanes.lanes {
            // Closing each lane's queue lets its workers end.
            let (closed, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut lane.jobs, closed));
        }
        for handle in worker_handles {
            handle.await.context("a send worker failed")?;
        }
        // Held back by the last replies, after the dispatch ended: given back too.
        while let Ok(prepared) = requeue_receiver.try_recv() {
            let person = &prepared.claimed.person;
            outcome_sender
                .send((
                    person.id,
                    person.generation,
                    Outcome::Released {
                        reason: format!("not attempted: {}", describe(reason)),
                    },
                ))
                .await
                .ok();
            self.totals.released.fetch_add(1, Ordering::Relaxed);
        }
        drop(outcome_sender);
        writer.await.context("the outcome writer failed")??;
        relay_writer
            .await
            .context("the relay writer failed")?
            .context("while recording which relay took each letter")?;
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
        // With one relay, a failure since its last success ends the run as unreachable; with
        // several, only when every one of them is down.
        if reason == StopReason::NothingDue && (lanes.lanes.len() == 1 || lanes.all_down()) {
            if let Some(why) = lanes.first_misconfigured() {
                tracing::error!(reason = %why, "the relay cannot be used as configured");
                reason = StopReason::Misconfigured;
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

/// Renders and builds the messages of a claimed batch, on both cores, off the I/O threads.
/// A letter that does not render is released (no attempt counted) and makes the run end
/// with exit 1, so `check` is run before anything else goes.
async fn prepare(
    letters: Arc<Letters>,
    builder: Arc<MessageBuilder>,
    totals: Arc<RunTotals>,
    claimed: Vec<Claimed>,
    outcomes: &mpsc::Sender<(i64, i64, Outcome)>,
) -> anyhow::Result<Vec<Prepared>> {
    let halves = claimed.len().div_ceil(2).max(1);
    let mut chunks = Vec::new();
    let mut rest = claimed;
    while !rest.is_empty() {
        let tail = rest.split_off(halves.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let mut tasks = Vec::new();
    for chunk in chunks {
        let letters = letters.clone();
        let builder = builder.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now();
            chunk
                .into_iter()
                .map(|claimed| {
                    let built = letters
                        .render(&claimed.person)
                        .and_then(|letter| builder.build(&claimed.person, &letter, now));
                    (claimed, built)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut prepared = Vec::new();
    for task in tasks {
        for (claimed, built) in task.await.context("a rendering task failed")? {
            match built {
                Ok(message) => prepared.push(Prepared {
                    claimed,
                    message,
                    held_back: 0,
                }),
                Err(error) => {
                    let person = &claimed.person;
                    tracing::error!(person = %person.person_ref, %error, "the letter did not render");
                    totals.render_failures.fetch_add(1, Ordering::Relaxed);
                    totals.released.fetch_add(1, Ordering::Relaxed);
                    let released = Outcome::Released {
                        reason: format!("the letter did not render: {error}"),
                    };
                    outcomes
                        .send((person.id, person.generation, released))
                        .await
                        .context("the outcome writer stopped")?;
                }
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

    fn needs_more(&self) -> bool {
        self.general.len() < (self.batch as usize / 2).max(1)
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
    /// Which relay answered for each letter, to the database.
    relays: mpsc::UnboundedSender<(i64, i64, String)>,
    connection: crate::transport::Connection,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    outcomes: mpsc::Sender<(i64, i64, Outcome)>,
    signals: mpsc::UnboundedSender<Signal>,
    /// Letters held back by a relay or domain that asked to slow down, back to the dispatcher.
    requeue: mpsc::UnboundedSender<Prepared>,
    fingerprint: String,
    retry: Retry,
    draining: Arc<AtomicBool>,
    totals: Arc<RunTotals>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let job = { self.jobs.lock().await.recv().await };
            let Some(job) = job else { break };
            let person_id = job.prepared.claimed.person.id;
            let generation = job.prepared.claimed.person.generation;
            let Some(outcome) = self.attempt(job.prepared).await else {
                continue;
            };
            if self
                .outcomes
                .send((person_id, generation, outcome))
                .await
                .is_err()
            {
                break;
            }
        }
        self.connection.close().await;
    }

    /// The outcome to record, or None when the letter went back to the dispatcher to wait for
    /// the pace of its scope (nothing reached the recipient; no attempt is counted).
    async fn attempt(&mut self, prepared: Prepared) -> Option<Outcome> {
        if self.draining.load(Ordering::Relaxed) {
            self.totals.released.fetch_add(1, Ordering::Relaxed);
            return Some(Outcome::Released {
                reason: "not attempted: the relay is unreachable".into(),
            });
        }
        let attempt = self.connection.deliver(&prepared.message).await;
        let domain = prepared.claimed.email_domain.clone();
        let lane = self.lane;
        let signal = match &attempt {
            Attempt::Unreachable { reason } => Signal::Unreachable {
                lane,
                reason: reason.clone(),
            },
            Attempt::Misconfigured { reason } => Signal::Misconfigured {
                lane,
                reason: reason.clone(),
            },
            Attempt::Deferred { scope, reply } if *scope != Scope::Recipient => Signal::SlowDown {
                lane,
                scope: *scope,
                domain: domain.clone(),
                reason: reply.clone(),
            },
            Attempt::Accepted { .. } => Signal::Reached {
                lane,
                domain: domain.clone(),
                accepted: true,
            },
            _ => Signal::Reached {
                lane,
                domain: domain.clone(),
                accepted: false,
            },
        };
        let _ = self.signals.send(signal);
        // Nothing reached the person when a relay could not be used, or when a relay or a
        // domain that asks to slow down refused the letter before its message was complete: it
        // goes back to the dispatcher (to another relay, or to wait for the lower pace), a few
        // times at most, instead of waiting for its retry delay.
        let hand_back = match &attempt {
            Attempt::Unreachable { .. } | Attempt::Misconfigured { .. } => true,
            Attempt::Deferred { scope, .. } => *scope != Scope::Recipient,
            _ => false,
        };
        if hand_back && prepared.held_back < HOLD_BACK_AT_MOST {
            tracing::debug!(%domain, relay = %self.relay_name, "handed back to the dispatcher");
            match self.requeue.send(prepared) {
                Ok(()) => return None,
                Err(returned) => return Some(self.outcome(attempt, returned.0)),
            }
        }
        if matches!(
            attempt,
            Attempt::Accepted { .. }
                | Attempt::Rejected { .. }
                | Attempt::Deferred { .. }
                | Attempt::Unknown { .. }
        ) {
            let person = &prepared.claimed.person;
            let _ = self
                .relays
                .send((person.id, person.generation, self.relay_name.clone()));
        }
        Some(self.outcome(attempt, prepared))
    }

    fn outcome(&self, attempt: Attempt, prepared: Prepared) -> Outcome {
        outcome_of(
            attempt,
            &prepared.claimed,
            prepared.message,
            self.fingerprint.clone(),
            &self.retry,
            &self.totals,
        )
    }
}

/// Turns what the relay said into the delivery's next state, applying the retry rules.
fn outcome_of(
    attempt: Attempt,
    claimed: &Claimed,
    message: Outgoing,
    fingerprint: String,
    retry: &Retry,
    totals: &RunTotals,
) -> Outcome {
    let now = crate::db::now_ms();
    let (reason, possible_duplicate) = match attempt {
        Attempt::Accepted { reply } => {
            totals.sent.fetch_add(1, Ordering::Relaxed);
            let sha256 = message.sha256();
            return Outcome::Sent {
                reply,
                message_id: message.message_id,
                fingerprint,
                sha256,
                email: message.recipient,
            };
        }
        Attempt::Rejected { reply } => {
            totals.failed.fetch_add(1, Ordering::Relaxed);
            return Outcome::Failed {
                smtp_code: recorded_code(&reply),
                reason: reply,
                message_id: Some(message.message_id),
                possible_duplicate: false,
            };
        }
        Attempt::Unreachable { reason } | Attempt::Misconfigured { reason } => {
            totals.released.fetch_add(1, Ordering::Relaxed);
            return Outcome::Released {
                reason: format!("not attempted: {reason}"),
            };
        }
        Attempt::Deferred { reply, .. } => (reply, false),
        Attempt::Unknown { reason } => {
            totals.duplicates_possible.fetch_add(1, Ordering::Relaxed);
            (reason, true)
        }
    };
    let attempts = claimed.attempts + 1;
    let first = claimed.first_attempt_at.unwrap_or(now);
    let given_up = attempts >= i64::from(retry.max_attempts)
        || now - first >= retry.give_up_after.as_millis() as i64;
    if given_up {
        totals.failed.fetch_add(1, Ordering::Relaxed);
        return Outcome::Failed {
            reason: format!("gave up after {attempts} attempts: {reason}"),
            smtp_code: recorded_code(&reason),
            message_id: Some(message.message_id),
            possible_duplicate,
        };
    }
    totals.deferred.fetch_add(1, Ordering::Relaxed);
    Outcome::Deferred {
        next_attempt_at: now + retry_delay(retry, attempts).as_millis() as i64,
        reason,
        possible_duplicate,
        message_id: message.message_id,
    }
}

/// The code of a reply as the transport recorded it, read back by the one reply type.
fn recorded_code(reply: &str) -> Option<i64> {
    SmtpReply::parse(Step::Message, reply).map(|reply| i64::from(reply.code()))
}

/// Exponential from `first_delay`, doubling, with jitter, capped at `max_delay`.
pub fn retry_delay(retry: &Retry, attempts: i64) -> Duration {
    let delay = backon::ExponentialBuilder::default()
        .with_min_delay(retry.first_delay)
        .with_max_delay(retry.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1).max(0) as usize)
        .unwrap_or(retry.max_delay);
    delay.min(retry.max_delay)
}

/// The one writer: records outcomes in batches, so the database sees a few transactions a
/// second however fast the relay is.
async fn write_outcomes(
    pool: SqlitePool,
    run_id: i64,
    mut outcomes: mpsc::Receiver<(i64, i64, Outcome)>,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(512);
    loop {
        let Some(first) = outcomes.recv().await else {
            break;
        };
        batch.push(first);
        // Take whatever else is already waiting, up to a batch, without waiting for more.
        while batch.len() < 512 {
            match outcomes.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        ledger::record_outcomes(&pool, run_id, &batch)
            .await
            .context("while recording delivery outcomes")?;
        batch.clear();
    }
    Ok(())
}

/// Records which relay answered for each letter, in batches, beside the outcomes.
async fn write_relays(
    pool: SqlitePool,
    mut relays: mpsc::UnboundedReceiver<(i64, i64, String)>,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(512);
    while let Some(first) = relays.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match relays.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        crate::store::relay::record_relays(&pool, &batch).await?;
        batch.clear();
    }
    Ok(())
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
        let due_at_start: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'deferred', 'sending')",
        )
        .fetch_one(pool)
        .await
        .unwrap_or(0);
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
        let sent = RunTotals::get(&totals.sent);
        let deferred = RunTotals::get(&totals.deferred);
        let failed = RunTotals::get(&totals.failed);
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
            sent = RunTotals::get(&totals.sent),
            seconds = self.started.elapsed().as_secs_f64(),
            "send finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_within_the_cap() {
        let retry = Retry {
            max_attempts: 8,
            first_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(6 * 3600),
            give_up_after: Duration::from_secs(5 * 86400),
        };
        let first = retry_delay(&retry, 1);
        assert!(first >= Duration::from_secs(300) && first <= Duration::from_secs(600));
        let third = retry_delay(&retry, 3);
        assert!(third >= Duration::from_secs(1200), "{third:?}");
        for attempts in 1..40 {
            assert!(retry_delay(&retry, attempts) <= retry.max_delay);
        }
    }
}
