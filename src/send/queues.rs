//! The letters claimed and prepared, waiting in queues for their domain's rate and pace: one
//! queue per domain with a rate of its own (`rate.per_domain`) or that asked to slow down during
//! the run, one for everyone else.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::dispatcher::Prepared;
use super::lanes::Lanes;
use crate::config::Config;
use crate::pacing::{Limiter, Pace, limiter};
use crate::store::relay::Slowed;

/// What [`Queues::pick`] found: picking is synchronous and any waiting happens after it, so a
/// letter picked is never lost to a cancelled future.
pub(super) enum Pick {
    Ready(Box<Prepared>),
    Wait(Duration),
    Empty,
}

/// Holds claimed deliveries until the rate limiters and the pace of their scope let them go.
pub(super) struct Queues {
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

impl Queues {
    pub(super) fn new(config: &Config) -> Queues {
        let now = Instant::now();
        let domains = config
            .rate
            .per_domain
            .iter()
            .filter(|(_, rate)| **rate > 0)
            .map(|(domain, rate)| (domain.clone(), DomainQueue::new(*rate, now)))
            .collect();
        Queues {
            domains,
            general: VecDeque::new(),
            // 64 letters a connection: half as many claims and preparations as with 32, which
            // left the cores idle between batches (an RSA-signed send of 49,008 letters to
            // smtp-sink took 9.1–9.3 s instead of 9.4–9.5 s; unsigned, no change).
            batch: (config
                .relays
                .iter()
                .map(|r| r.max_connections)
                .sum::<usize>() as i64
                * 64)
                .clamp(64, 1000),
        }
    }

    pub(super) fn batch_size(&self) -> i64 {
        self.batch
    }

    pub(super) fn held(&self) -> usize {
        self.general.len() + self.domains.values().map(|d| d.queue.len()).sum::<usize>()
    }

    /// The next claim starts while a whole batch is still waiting: a claim waits its turn
    /// behind the outcomes for the one connection, and with half a batch left the workers ran
    /// dry before it came back (18 s instead of 15.5 s for 49,047 letters to `smtp-sink`).
    pub(super) fn needs_more(&self) -> bool {
        self.general.len() < self.batch as usize
    }

    /// Domains whose queue is full: the next claim leaves their people in the database.
    pub(super) fn full_domains(&self) -> Vec<String> {
        let batch = self.batch as usize;
        self.domains
            .iter()
            .filter(|(_, d)| d.queue.len() >= d.cap(batch))
            .map(|(domain, _)| domain.clone())
            .collect()
    }

    pub(super) fn hold(&mut self, prepared: Vec<Prepared>) {
        for item in prepared {
            match self.domains.get_mut(&item.claimed.email_domain) {
                Some(domain) => domain.queue.push_back(item),
                None => self.general.push_back(item),
            }
        }
    }

    /// A letter held back by its relay or domain goes behind those already waiting: the same
    /// letter tried again at once would meet the same refusal, within the same window.
    pub(super) fn hold_again(&mut self, mut item: Prepared) {
        item.held_back += 1;
        match self.domains.get_mut(&item.claimed.email_domain) {
            Some(domain) => domain.queue.push_back(item),
            None => self.general.push_back(item),
        }
    }

    /// The relay took a letter to this domain: its pace may give a step back.
    pub(super) fn accepted(&mut self, domain: &str) {
        if let Some(domain) = self.domains.get_mut(domain) {
            domain.pace.accepted(Instant::now());
        }
    }

    /// Slows a domain that asked for it, once per window, and only that domain.
    pub(super) fn slow_down(&mut self, domain: &str, reason: &str) {
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
    pub(super) fn slowed(&self, lanes: &Lanes) -> Vec<Slowed> {
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
    pub(super) fn pick(&mut self) -> Pick {
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

    pub(super) fn drain(&mut self) -> Vec<Prepared> {
        let mut all: Vec<Prepared> = self.general.drain(..).collect();
        for domain in self.domains.values_mut() {
            all.extend(domain.queue.drain(..));
        }
        all
    }
}
