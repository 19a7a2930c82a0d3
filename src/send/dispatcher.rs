//! The dispatcher: claims batches of due deliveries and prepares their messages beside the
//! dispatch, holds them in [`Queues`], and gives each to a free worker of a relay when the rate
//! limiters and the paces allow; then ends the run in order (see [`Dispatcher::run`]).
//!
//! Its rules of order, each kept by the code named:
//! - the reasons to stop are checked in one place and one order ([`Dispatcher::stop_reason`]):
//!   relays down, halt, signal, deadline, limit;
//! - picking a letter is synchronous and waiting happens after it ([`super::queues::Pick`]), and
//!   a letter picked is either given to a worker or comes back to be held again
//!   ([`Dispatcher::hand_out`]'s `NotOut`);
//! - a worker hands a letter back before it frees its connection, so "nothing due" is decided
//!   only once every worker is free and no letter came back (asserted where the loop ends);
//! - what is still held when the loop ends was claimed and never attempted: it is given back,
//!   unless the run lost its claims or cannot write.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::SqlitePool;
use tokio::sync::{Semaphore, mpsc, watch};

use super::decide::{GiveBack, News};
use super::halt::{Halt, RunGuard};
use super::handovers::HandOverLog;
use super::lanes::Lanes;
use super::progress::Progress;
use super::queues::{Pick, Queues};
use super::worker::{Crew, Senders, UNRECORDED_PER_CONNECTION, Worker};
use super::writer::{RunTotals, ToRecord, write_outcomes};
use crate::config::Config;
use crate::domain::Email;
use crate::message::Outgoing;
use crate::pacing::{Limiter, limiter, until_ready_precisely};
use crate::pipeline::Pipeline;
use crate::smtp_reply::Scope;
use crate::store::ledger::{self, Claimed};
use crate::transport::{Refuser, Relayer};
use crate::verp::DeliveryRef;

/// Why the dispatcher stopped claiming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
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

impl StopReason {
    /// For the summary line, the runs table and the letters given back.
    pub(super) fn describe(self) -> &'static str {
        match self {
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
}

/// One run's dispatch: what it sends, through which relays, until when.
pub(super) struct Dispatcher {
    pub(super) config: Config,
    pub(super) pool: SqlitePool,
    pub(super) run_id: i64,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) relayers: Vec<Relayer>,
    pub(super) limit: Option<u64>,
    pub(super) deadline: Option<Instant>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) totals: Arc<RunTotals>,
    pub(super) guard: Arc<RunGuard>,
    pub(super) handovers: Arc<HandOverLog>,
}

/// A claimed delivery with its message built, waiting for the rate limiters.
pub(super) struct Prepared {
    pub(super) delivery: DeliveryRef,
    /// The address the message was built for.
    pub(super) email: Email,
    pub(super) claimed: Claimed,
    pub(super) message: Outgoing,
    /// How often a relay or domain that asked to slow down held it back in this run.
    pub(super) held_back: u32,
}

/// The next batch being claimed and prepared: how many were claimed, and their messages.
type Refill = tokio::task::JoinHandle<anyhow::Result<(usize, Vec<Prepared>)>>;

/// A prepared delivery handed to a free worker, with the permit that says it is free.
pub(super) struct Job {
    pub(super) prepared: Prepared,
    pub(super) _worker_free: tokio::sync::OwnedSemaphorePermit,
}

/// A letter picked that did not go to a worker, back to be held again.
enum NotOut {
    /// Stopped, halted, every relay down, or past the deadline while it waited.
    Wait(Prepared),
    /// The workers stopped: nothing more can be handed out.
    WorkersGone(Prepared),
}

/// What workers tell the dispatcher besides outcomes: what a verdict said about the relay of
/// their lane, or about the recipient's domain.
#[derive(Debug)]
pub(super) struct Signal {
    pub(super) lane: usize,
    pub(super) domain: String,
    pub(super) news: News,
}

/// Takes one signal in: the relay's health and pace in its lane, a domain's pace in its queue.
fn note(signal: Signal, lanes: &mut Lanes, queues: &mut Queues) {
    let Signal { lane, domain, news } = signal;
    let now = Instant::now();
    match news {
        News::Reached { accepted } => {
            lanes.reached(lane);
            if accepted {
                lanes.accepted(lane, now);
                queues.accepted(&domain);
            }
        }
        News::Unreachable { reason } => lanes.unreachable(lane, &reason),
        News::Misconfigured { reason, by } => lanes.misconfigured(lane, reason, by),
        News::SlowDown { scope, reason } => {
            lanes.reached(lane);
            match scope {
                Scope::Relay => lanes.slow_down(lane, now, &reason),
                Scope::Domain => queues.slow_down(&domain, &reason),
                Scope::Recipient => {}
            }
        }
    }
}

impl Dispatcher {
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

    /// Gives a picked letter to a free worker. A relay with a free worker (by weight, at its own
    /// pace) first, then the global ceiling: the message leaves the moment the limiter allows
    /// it, so the relay sees the configured spacing. Waiting for a worker watches the stop
    /// signal and the halt, so neither a stuck relay nor a failed writer can hold the run here.
    /// A letter that did not leave comes back to the caller, to be held again: none is lost.
    async fn hand_out(
        &self,
        prepared: Prepared,
        lanes: &mut Lanes,
        global: Option<&Limiter>,
        stop: &mut watch::Receiver<bool>,
        halted: &mut watch::Receiver<Halt>,
    ) -> Result<(), NotOut> {
        let next = tokio::select! {
            next = lanes.next() => next,
            _ = stop.changed() => return Err(NotOut::Wait(prepared)),
            _ = halted.changed() => return Err(NotOut::Wait(prepared)),
        };
        // None: every relay went down while this letter waited (it is given back at the end).
        let Some((lane, worker_free)) = next else {
            return Err(NotOut::Wait(prepared));
        };
        if let Some(global) = global {
            until_ready_precisely(global).await;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            // The wait ran past the deadline (a sending window's end): hold the letter back,
            // to be given back at the end, rather than let it leave late.
            return Err(NotOut::Wait(prepared));
        }
        let job = Job {
            prepared,
            _worker_free: worker_free,
        };
        lanes
            .dispatch(lane, job)
            .await
            .map_err(|unsent| NotOut::WorkersGone(unsent.prepared))
    }

    /// Why the dispatch must stop now, if it must, checked in this order: every relay down (a
    /// refused configuration says more than an unreachable relay), the run halted, a signal,
    /// the deadline, the limit.
    fn stop_reason(&self, lanes: &Lanes, signalled: bool, dispatched: u64) -> Option<StopReason> {
        if lanes.all_down() {
            if let Some((reason, by)) = lanes.first_misconfigured() {
                tracing::error!(%reason, "stopping: the relay cannot be used as configured");
                return Some(StopReason::Misconfigured(by));
            }
            return Some(StopReason::Unreachable);
        }
        match self.guard.state() {
            Halt::Running => {}
            Halt::LeaseLost => return Some(StopReason::LeaseLost),
            Halt::WriterFailed => return Some(StopReason::WriterFailed),
        }
        if signalled {
            return Some(StopReason::Signal);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(StopReason::Deadline);
        }
        if self.limit.is_some_and(|l| dispatched >= l) {
            return Some(StopReason::Limit);
        }
        None
    }

    /// The dispatch loop, then the run's end: what is still held is given back, the workers
    /// finish, the writer records the last outcomes, and what the relays said is kept.
    pub(super) async fn run(self) -> anyhow::Result<(StopReason, Arc<RunTotals>)> {
        let mut lanes = Lanes::new(self.relayers.clone(), &self.config, Instant::now());
        let (outcome_sender, outcome_receiver) = mpsc::channel::<ToRecord>(4096);
        let (signal_sender, mut signal_receiver) = mpsc::unbounded_channel::<Signal>();
        let (requeue_sender, mut requeue_receiver) = mpsc::unbounded_channel::<Prepared>();
        let seats = lanes.seats();
        let crew = Arc::new(Crew {
            fingerprint: self.pipeline.letters().fingerprint().to_owned(),
            retry: self.config.retry.clone(),
            draining: AtomicBool::new(false),
            handovers: self.handovers.clone(),
            unrecorded: Arc::new(Semaphore::new(
                seats.len().max(1) * UNRECORDED_PER_CONNECTION,
            )),
            guard: self.guard.clone(),
        });
        let writer = tokio::spawn(write_outcomes(
            self.pool.clone(),
            self.run_id,
            outcome_receiver,
            self.guard.clone(),
            self.totals.clone(),
        ));
        let mut halted = self.guard.subscribe();
        let global = NonZeroU32::new(self.config.rate.per_second).map(limiter);
        let to = Senders {
            outcomes: outcome_sender.clone(),
            signals: signal_sender,
            requeue: requeue_sender,
        };
        let worker_handles: Vec<_> = seats
            .into_iter()
            .map(|seat| {
                let worker = Worker {
                    lane: seat.lane,
                    relay_name: seat.relay_name,
                    connection: seat.connection,
                    jobs: seat.jobs,
                    to: to.clone(),
                    crew: crew.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect();
        // Only the workers hold these now: once they end, the receivers see everything sent.
        drop(to);
        // A claim or preparation that failed for a reason other than a busy database: returned
        // once what is in flight has been recorded.
        let mut failure: Option<anyhow::Error> = None;

        let mut queues = Queues::new(&self.config);
        let mut dispatched: u64 = 0;
        let mut progress = Progress::new(&self.pool).await;
        let mut stop = self.stop.clone();
        let mut refill: Option<Refill> = None;
        let mut last_claim_empty = false;
        let reason = loop {
            while let Ok(signal) = signal_receiver.try_recv() {
                note(signal, &mut lanes, &mut queues);
            }
            // Letters the relay or their domain asked to hold: back in their queue, to go when
            // the pace allows, without an attempt counted.
            while let Ok(held_back) = requeue_receiver.try_recv() {
                dispatched = dispatched.saturating_sub(1);
                queues.hold_again(held_back);
            }
            if let Some(reason) = self.stop_reason(&lanes, *stop.borrow(), dispatched) {
                break reason;
            }
            progress.tick(&self.totals);
            // Claiming and rendering the next batch run beside the dispatch, so the limiter's
            // slots are never missed while a batch is prepared (with a burst of one, a missed
            // slot is lost for good: 5 % of the rate, measured).
            if let Some(task) = refill.take_if(|t| t.is_finished() || queues.held() == 0) {
                match task.await.context("the claiming task failed") {
                    Ok(Ok((claimed, prepared))) => {
                        last_claim_empty = claimed == 0;
                        // A batch in which no letter rendered: what is due now is letters that
                        // do not render, given back each time and claimed again. Stop (exit 1,
                        // `check` says why) rather than claim them in a loop.
                        let unrenderable = claimed > 0 && prepared.is_empty();
                        queues.hold(prepared);
                        if unrenderable && queues.held() == 0 {
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
            if refill.is_none() && queues.held() == 0 && last_claim_empty {
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
                    queues.hold_again(held_back);
                    continue;
                }
                debug_assert!(
                    refill.is_none()
                        && queues.held() == 0
                        && lanes.all_free()
                        && requeue_receiver.is_empty(),
                    "nothing is due only once nothing is claimed, held, in flight or handed back"
                );
                break StopReason::NothingDue;
            }
            if refill.is_none() && queues.needs_more() && !last_claim_empty {
                let room = self
                    .limit
                    .map_or(i64::MAX, |l| (l - dispatched) as i64 - queues.held() as i64);
                if room > 0 {
                    refill = Some(self.refill(
                        room.min(queues.batch_size()),
                        queues.full_domains(),
                        &outcome_sender,
                    ));
                }
            }
            if queues.held() == 0 {
                // The batch being prepared is awaited at the top of the next turn.
                continue;
            }
            // Picking is synchronous and waiting happens after it, so nothing picked can be
            // lost to a cancelled future.
            let prepared = match queues.pick() {
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
            match self
                .hand_out(
                    prepared,
                    &mut lanes,
                    global.as_ref(),
                    &mut stop,
                    &mut halted,
                )
                .await
            {
                Ok(()) => {}
                Err(NotOut::Wait(prepared)) => {
                    queues.hold_again(prepared);
                    continue;
                }
                Err(NotOut::WorkersGone(prepared)) => {
                    queues.hold_again(prepared);
                    failure = Some(anyhow::anyhow!("every send worker stopped"));
                    break StopReason::WriterFailed;
                }
            }
            dispatched += 1;
            debug_assert!(
                self.limit.is_none_or(|limit| dispatched <= limit),
                "--limit is checked before each letter goes"
            );
        };
        // A batch still being prepared was claimed too: hold it, to give it back below.
        if let Some(task) = refill.take()
            && let Ok(Ok((_, prepared))) = task.await
        {
            queues.hold(prepared);
        }
        // Whatever is still held was claimed but never attempted: give it back.
        if matches!(
            reason,
            StopReason::Unreachable | StopReason::Misconfigured(_)
        ) {
            crew.draining.store(true, Ordering::Relaxed);
        }
        // A run that lost its claims, or cannot write, leaves what it holds as it is: the
        // deliveries are another run's now, or stay `sending` (not handed over) for the next.
        let held = queues.drain();
        let give_back = !matches!(reason, StopReason::LeaseLost | StopReason::WriterFailed);
        for prepared in held.into_iter().filter(|_| give_back) {
            let why = GiveBack::NotAttempted(&reason.describe());
            let released = ToRecord::released(prepared.delivery, why);
            outcome_sender.send(released).await.ok();
        }
        lanes.close();
        for handle in worker_handles {
            if let Err(error) = handle.await {
                tracing::error!(%error, "a send worker failed");
            }
        }
        // Held back by the last replies, after the dispatch ended: given back too.
        while let Ok(prepared) = requeue_receiver.try_recv() {
            let why = GiveBack::NotAttempted(&reason.describe());
            let released = ToRecord::released(prepared.delivery, why);
            outcome_sender.send(released).await.ok();
        }
        drop(outcome_sender);
        writer.await.context("the outcome writer failed")??;
        if let Some(error) = failure {
            return Err(error);
        }
        let reason = match (reason, self.guard.state()) {
            (_, Halt::LeaseLost) => StopReason::LeaseLost,
            (reason, _) => reason,
        };
        // Signals from the last messages: a relay that failed every session after the last
        // success was not reached, even when fewer people were due than it takes to notice.
        let mut reason = reason;
        while let Ok(signal) = signal_receiver.try_recv() {
            note(signal, &mut lanes, &mut queues);
        }
        let slowed = queues.slowed(&lanes);
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
        let notifications = lanes.notifications();
        crate::store::relay::record_notifications(&self.pool, self.run_id, &notifications)
            .await
            .context("while recording which relays offered delivery status notifications")?;
        // With one relay, a failure since its last success ends the run as unreachable; with
        // several, only when every one of them is down.
        if reason == StopReason::NothingDue && (lanes.len() == 1 || lanes.all_down()) {
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
        let delivery = DeliveryRef {
            person_id: claimed.person.id,
            generation: claimed.person.generation,
        };
        // The builder refuses a person without an address: a message built has one.
        let built = built.map_err(|e| e.to_string()).and_then(|message| {
            let email = claimed.person.email.clone();
            email
                .map(|email| (email, message))
                .ok_or_else(|| "no e-mail address".to_owned())
        });
        match built {
            Ok((email, message)) => prepared.push(Prepared {
                delivery,
                email,
                claimed,
                message,
                held_back: 0,
            }),
            Err(error) => {
                let person = &claimed.person;
                tracing::error!(person = %person.person_ref, %error, "the letter did not render");
                totals.did_not_render();
                outcomes
                    .send(ToRecord::released(delivery, GiveBack::DidNotRender(&error)))
                    .await
                    .context("the outcome writer stopped")?;
            }
        }
    }
    Ok(prepared)
}
