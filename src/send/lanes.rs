//! The relays a run sends through, one lane each: its workers' queue, its free connections, its
//! own pace and rate, and what its sessions said about it.
//!
//! Each letter goes to a relay that is up and whose pace allows it, by smooth weighted round
//! robin among those (a relay of weight 3 takes three letters for one of weight 1), and waits
//! for a free connection of that relay. A relay that cannot be reached
//! three times in a row, or refuses the configuration, is down for the rest of the run: the
//! letters it did not take go back to the dispatcher and to the others, none lost and none
//! sent twice, since a letter is only ever handed back when its message was not complete.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};

use super::dispatcher::Job;
use crate::domain::RelayNotifications;
use crate::pacing::{Limiter, Pace, limiter, until_ready_precisely};
use crate::transport::{Connection, Relayer};

/// After this many connection failures in a row, with no success between them, the relay is
/// taken as unreachable and the run ends with 75.
const UNREACHABLE_AFTER: u64 = 3;

/// One relay's lane.
struct Lane {
    relayer: Relayer,
    weight: i64,
    credit: i64,
    connections: usize,
    jobs: mpsc::Sender<Job>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// Letters dispatched to this relay and not finished: [`Lane::slots`].
    free: Arc<Semaphore>,
    limiter: Option<Limiter>,
    /// The relay's own pace: slowed by its 421s, not by anyone else's.
    pace: Pace,
    /// Sessions that could not be opened since the last message this relay took.
    failures_in_a_row: u64,
    /// Why this relay cannot be used as configured, and whose refusal it is.
    misconfigured: Option<(String, crate::tls::Refuser)>,
    down: bool,
}

/// Letters a relay holds a connection: the one on the wire, the next, whose envelope goes
/// behind its message (`Worker::waiting_job`), and one waiting, so that a next is there when the
/// message goes (with two, every other letter found none: the dispatcher hears of a free slot
/// only when a letter is finished).
const LETTERS_A_CONNECTION: usize = 3;

impl Lane {
    fn slots(&self) -> usize {
        LETTERS_A_CONNECTION * self.connections
    }
}

pub(super) struct Lanes {
    lanes: Vec<Lane>,
}

/// What a worker needs of its lane: its place, the relay's name, a session of its own and the
/// lane's queue.
pub(super) struct WorkerSeat {
    pub(super) lane: usize,
    pub(super) relay_name: String,
    pub(super) connection: Connection,
    pub(super) jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl Lanes {
    pub(super) fn new(
        relayers: Vec<Relayer>,
        config: &crate::config::Config,
        now: Instant,
    ) -> Lanes {
        let lanes = relayers
            .into_iter()
            .zip(&config.relays)
            .map(|(relayer, entry)| {
                let slots = LETTERS_A_CONNECTION * entry.max_connections;
                let (jobs, receiver) = mpsc::channel(slots);
                Lane {
                    relayer,
                    weight: i64::from(entry.weight),
                    credit: 0,
                    connections: entry.max_connections,
                    jobs,
                    receiver: Arc::new(Mutex::new(receiver)),
                    free: Arc::new(Semaphore::new(slots)),
                    limiter: NonZeroU32::new(entry.per_second).map(limiter),
                    pace: Pace::new(entry.per_second, now),
                    failures_in_a_row: 0,
                    misconfigured: None,
                    down: false,
                }
            })
            .collect();
        Lanes { lanes }
    }

    /// How many relays.
    pub(super) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// One seat for each of a relay's connections, for its workers.
    pub(super) fn seats(&self) -> Vec<WorkerSeat> {
        self.lanes
            .iter()
            .enumerate()
            .flat_map(|(lane, l)| {
                (0..l.connections).map(move |_| WorkerSeat {
                    lane,
                    relay_name: l.relayer.name().to_owned(),
                    connection: l.relayer.connection(),
                    jobs: l.receiver.clone(),
                })
            })
            .collect()
    }

    /// Hands a letter to a worker of `lane`; the job comes back when its workers have stopped.
    pub(super) async fn dispatch(&self, lane: usize, job: Job) -> Result<(), Job> {
        self.lanes[lane]
            .jobs
            .send(job)
            .await
            .map_err(|unsent| unsent.0)
    }

    /// Closes every lane's queue, which lets its workers end.
    pub(super) fn close(&mut self) {
        for lane in &mut self.lanes {
            let (closed, _) = mpsc::channel(1);
            drop(std::mem::replace(&mut lane.jobs, closed));
        }
    }

    /// The relay of `lane` took a letter: its pace may give a step back.
    pub(super) fn accepted(&mut self, lane: usize, now: Instant) {
        self.lanes[lane].pace.accepted(now);
    }

    /// The relay of `lane` asked to slow down: the whole run's pace through it goes down.
    pub(super) fn slow_down(&mut self, lane: usize, now: Instant, reason: &str) {
        let relay = &mut self.lanes[lane];
        if let Some(rate) = relay.pace.slow_down(now, reason) {
            tracing::warn!(
                scope = "relay",
                relay = %relay.relayer.name(),
                rate_per_s = format!("{rate:.1}"),
                %reason,
                "the relay asks to slow down: lowering the rate of the whole run"
            );
        }
    }

    /// Which relays offered delivery status notifications in this run, by name.
    pub(super) fn notifications(&self) -> Vec<(String, RelayNotifications)> {
        self.lanes
            .iter()
            .filter_map(|lane| {
                let seen = lane.relayer.notifications()?;
                Some((lane.relayer.name().to_owned(), seen))
            })
            .collect()
    }

    pub(super) fn all_down(&self) -> bool {
        self.lanes.iter().all(|l| l.down)
    }

    /// No letter in flight on any relay.
    pub(super) fn all_free(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| l.free.available_permits() == l.slots())
    }

    /// Waits until no letter is in flight anywhere.
    pub(super) async fn wait_all_free(&self) -> anyhow::Result<()> {
        for lane in &self.lanes {
            let all = lane
                .free
                .acquire_many(lane.slots() as u32)
                .await
                .map_err(|_| anyhow::anyhow!("the send workers stopped"))?;
            drop(all);
        }
        Ok(())
    }

    pub(super) fn reached(&mut self, lane: usize) {
        self.lanes[lane].failures_in_a_row = 0;
    }

    /// A session could not be opened; three in a row and the relay is down for this run.
    pub(super) fn unreachable(&mut self, lane: usize, reason: &str) {
        let lane = &mut self.lanes[lane];
        lane.failures_in_a_row += 1;
        tracing::warn!(relay = %lane.relayer.name(), %reason, "relay not reached");
        if lane.failures_in_a_row >= UNREACHABLE_AFTER && !lane.down {
            lane.down = true;
            tracing::warn!(relay = %lane.relayer.name(), "relay down for this run: its letters go to the others");
        }
    }

    pub(super) fn misconfigured(&mut self, lane: usize, reason: String, by: crate::tls::Refuser) {
        let lane = &mut self.lanes[lane];
        tracing::error!(relay = %lane.relayer.name(), %reason, "the relay cannot be used as configured");
        lane.misconfigured = Some((reason, by));
        lane.down = true;
    }

    /// Whether the run ended with some relay unreached since its last success.
    pub(super) fn any_failing(&self) -> bool {
        self.lanes.iter().any(|l| l.failures_in_a_row > 0)
    }

    pub(super) fn first_misconfigured(&self) -> Option<(&str, crate::tls::Refuser)> {
        self.lanes
            .iter()
            .find_map(|l| l.misconfigured.as_ref().map(|(r, by)| (r.as_str(), *by)))
    }

    /// The relay for the next letter, with the connection it will use: None when every relay
    /// is down. The relay is chosen by weight among those whose pace allows a letter now, then
    /// its next free connection is awaited, so the shares follow the weights.
    pub(super) async fn next(&mut self) -> Option<(usize, OwnedSemaphorePermit)> {
        loop {
            let now = Instant::now();
            let up: Vec<usize> = (0..self.lanes.len())
                .filter(|&i| !self.lanes[i].down)
                .collect();
            if up.is_empty() {
                return None;
            }
            let ready: Vec<usize> = up
                .iter()
                .copied()
                .filter(|&i| self.lanes[i].pace.wait(now).is_zero())
                .collect();
            let Some(chosen) = self.by_weight(&ready) else {
                let wait = up.iter().map(|&i| self.lanes[i].pace.wait(now)).min();
                tokio::time::sleep(wait.unwrap_or_default()).await;
                continue;
            };
            let lane = &mut self.lanes[chosen];
            let Ok(permit) = lane.free.clone().acquire_owned().await else {
                return None;
            };
            if let Some(limiter) = &lane.limiter {
                until_ready_precisely(limiter).await;
            }
            lane.pace.take(Instant::now());
            return Some((chosen, permit));
        }
    }

    /// Smooth weighted round robin among `candidates`.
    fn by_weight(&mut self, candidates: &[usize]) -> Option<usize> {
        let total: i64 = candidates.iter().map(|&i| self.lanes[i].weight).sum();
        for &i in candidates {
            self.lanes[i].credit += self.lanes[i].weight;
        }
        let chosen = candidates
            .iter()
            .copied()
            .max_by_key(|&i| (self.lanes[i].credit, std::cmp::Reverse(i)))?;
        self.lanes[chosen].credit -= total;
        Some(chosen)
    }

    /// The relays that were slowed during the run, for the summary and the log.
    pub(super) fn slowed(&self) -> impl Iterator<Item = (&str, &Pace)> {
        self.lanes
            .iter()
            .filter(|l| l.pace.decreases() > 0)
            .map(|l| (l.relayer.name(), &l.pace))
    }
}
