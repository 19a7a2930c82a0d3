//! The workers: each owns one relay session, hands over the letters the dispatcher gives it, and
//! passes each verdict, decided ([`super::decide`]), to the writer and the dispatcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};

use super::decide::{self, At, Decision, GiveBack, Letter, Then};
use super::dispatcher::{Job, Prepared, Signal};
use super::halt::{Halt, RunGuard};
use super::handovers::HandOverLog;
use super::writer::ToRecord;
use crate::config::Retry;
use crate::message::Outgoing;
use crate::store::ledger::Outcome;
use crate::transport::Connection;
use crate::verp::DeliveryRef;

/// How many letters a connection may have handed over whose outcome is not yet committed.
pub(super) const UNRECORDED_PER_CONNECTION: usize = 32;

/// What every worker of a run shares.
pub(super) struct Crew {
    /// The letters' fingerprint, recorded with each sent letter.
    pub(super) fingerprint: String,
    pub(super) retry: Retry,
    /// Set when claimed work must be given back instead of sent (every relay is down).
    pub(super) draining: AtomicBool,
    pub(super) handovers: Arc<HandOverLog>,
    /// Places among the outcomes not yet committed (see [`Worker::room_to_record`]).
    pub(super) unrecorded: Arc<Semaphore>,
    pub(super) guard: Arc<RunGuard>,
}

/// Where a worker's results go: outcomes to the writer; news and letters held back to the
/// dispatcher.
#[derive(Clone)]
pub(super) struct Senders {
    pub(super) outcomes: mpsc::Sender<ToRecord>,
    pub(super) signals: mpsc::UnboundedSender<Signal>,
    /// Letters held back by a relay or domain that asked to slow down, back to the dispatcher.
    pub(super) requeue: mpsc::UnboundedSender<Prepared>,
}

/// One relay session: hands each letter over and says what came of it.
pub(super) struct Worker {
    /// The lane (relay) this worker's session goes to, and its name.
    pub(super) lane: usize,
    pub(super) relay_name: String,
    pub(super) connection: Connection,
    pub(super) jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    pub(super) to: Senders,
    pub(super) crew: Arc<Crew>,
}

impl Worker {
    pub(super) async fn run(mut self) {
        let mut next: Option<Job> = None;
        loop {
            let job = match next.take() {
                Some(job) => Some(job),
                None => self.jobs.lock().await.recv().await,
            };
            let Some(job) = job else { break };
            let delivery = job.prepared.delivery;
            let handed_over_before = job.prepared.claimed.possible_duplicate;
            let Some(room) = self.room_to_record().await else {
                // Halted while the writer could not keep up: left `sending` for the next run.
                continue;
            };
            next = self.waiting_job();
            let after = next.as_ref().map(|job| &job.prepared.message);
            let Some((outcome, relay)) = self.attempt(job.prepared, after).await else {
                // Handed back to the dispatcher, or no longer this run's to record.
                continue;
            };
            let record = ToRecord {
                delivery,
                outcome,
                relay,
                place: Some(room),
                handed_over_before,
            };
            if self.to.outcomes.send(record).await.is_err() {
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
        if self.crew.draining.load(Ordering::Relaxed) {
            let why = GiveBack::NotAttempted(&"the relay is unreachable");
            return Some((decide::give_back(why), None));
        }
        if !self.may_hand_over(prepared.delivery) {
            return None;
        }
        // Asked again immediately before the bytes that commit each letter to the relay (its
        // final dot, or BDAT LAST): the session may have waited for the relay's replies, or the
        // process may have been frozen, since the check above.
        let guard = self.crew.guard.clone();
        let may_commit = move || guard.may_commit();
        let attempt = self
            .connection
            .deliver(&prepared.message, next, &may_commit)
            .await;
        let letter = Letter {
            message: &prepared.message,
            email: &prepared.email,
            fingerprint: &self.crew.fingerprint,
            attempts: prepared.claimed.attempts,
            first_attempt_at: prepared.claimed.first_attempt_at,
            held_back: prepared.held_back,
        };
        let at = At {
            now: crate::db::now_ms(),
            jitter: rand::random(),
        };
        let Decision { news, then } = decide::decide(attempt, &letter, &self.crew.retry, at);
        let domain = &prepared.claimed.email_domain;
        if let Some(news) = news {
            let lane = self.lane;
            let domain = domain.clone();
            let _ = self.to.signals.send(Signal { lane, domain, news });
        }
        match then {
            Then::Record { outcome, answered } => {
                Some((outcome, answered.then(|| self.relay_name.clone())))
            }
            Then::HandBack { otherwise } => {
                tracing::debug!(%domain, relay = %self.relay_name, "handed back to the dispatcher");
                match self.to.requeue.send(prepared) {
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
        let mut halted = self.crew.guard.subscribe();
        if *halted.borrow() != Halt::Running {
            return None;
        }
        tokio::select! {
            room = self.crew.unrecorded.clone().acquire_owned() => room.ok(),
            _ = halted.changed() => None,
        }
    }

    /// The last check before a letter goes: the run is not halted, the letter is in this run's
    /// hand-over journal (only a letter so recorded can be flagged as a possible duplicate after
    /// a crash), and, read after that record, the lease has not lapsed, so no other run can
    /// have taken the letter over before the record was written (`handovers`).
    fn may_hand_over(&self, delivery: DeliveryRef) -> bool {
        let guard = &self.crew.guard;
        if !guard.is_running() {
            return false;
        }
        if let Err(error) = self.crew.handovers.record(delivery.person_id) {
            let what = if error.kind() == std::io::ErrorKind::StorageFull {
                "the disk is full"
            } else {
                "the hand-over journal refused the write"
            };
            tracing::error!(%error, "{what}: stopping; the next run sends again what was in flight");
            guard.halt(Halt::WriterFailed);
            return false;
        }
        if guard.lease_lapsed() {
            tracing::error!(
                "the sender lease lapsed before it could be renewed: handing nothing more over"
            );
            return false;
        }
        true
    }
}
