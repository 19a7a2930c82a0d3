//! The lease clock and the halt: what tells every part of a run to stop at once, whatever it is
//! waiting for, and until when the run may hand letters over.
//!
//! The lease is renewed by a task of its own ([`RunGuard::keep_lease`]); a worker asks
//! [`RunGuard::may_commit`] before each hand-over and again immediately before each final dot,
//! so a run frozen past its lease hands nothing more over. The writer halts the run when the
//! database refuses a write or another run holds its deliveries; the first reason wins.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::lease::Lease;

/// Why a run halts, or that it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    Running,
    /// Another run holds this run's deliveries now (its lease was taken over or lapsed).
    LeaseLost,
    /// The database (or the hand-over journal) refused a write.
    WriterFailed,
}

/// How long before the lease's expiry, as this run last renewed it, it stops handing letters
/// over: another run may take the lease over once it has expired. An eighth of a test's
/// shorter lease.
fn lease_margin() -> Duration {
    Duration::from_secs(15).min(crate::lease::ttl() / 8)
}

/// The run's halt and its lease clock, shared by the dispatcher, the workers, the writer and the
/// heartbeat.
pub(super) struct RunGuard {
    halt: watch::Sender<Halt>,
    /// Until when this run may hand letters over, as its last heartbeat says: on the monotonic
    /// clock (a process frozen by SIGSTOP) and on the wall clock too, which, unlike the
    /// monotonic one, goes on while a machine is suspended, and is what another run reads the
    /// lease by.
    valid_until: std::sync::Mutex<(Instant, SystemTime)>,
}

impl RunGuard {
    /// A running run whose lease was just taken.
    pub(super) fn new() -> RunGuard {
        RunGuard {
            halt: watch::Sender::new(Halt::Running),
            valid_until: std::sync::Mutex::new(Self::until(Instant::now())),
        }
    }

    fn until(at: Instant) -> (Instant, SystemTime) {
        let wall = SystemTime::now() - at.elapsed();
        let valid_for = crate::lease::ttl() - lease_margin();
        (at + valid_for, wall + valid_for)
    }

    fn renewed(&self, at: Instant) {
        if let Ok(mut until) = self.valid_until.lock() {
            *until = Self::until(at);
        }
    }

    fn lease_valid(&self) -> bool {
        self.valid_until
            .lock()
            .map(|until| Instant::now() < until.0 && SystemTime::now() < until.1)
            .unwrap_or(false)
    }

    /// Halts the run for `reason`, unless it halted already: the first reason wins.
    pub(super) fn halt(&self, reason: Halt) {
        self.halt.send_if_modified(|current| {
            let first = *current == Halt::Running;
            if first {
                *current = reason;
            }
            first
        });
    }

    pub(super) fn state(&self) -> Halt {
        *self.halt.borrow()
    }

    pub(super) fn is_running(&self) -> bool {
        self.state() == Halt::Running
    }

    /// Wakes when the run halts (`changed()`).
    pub(super) fn subscribe(&self) -> watch::Receiver<Halt> {
        self.halt.subscribe()
    }

    /// Whether the lease lapsed before this run could renew it, which halts the run.
    pub(super) fn lease_lapsed(&self) -> bool {
        if self.lease_valid() {
            return false;
        }
        self.halt(Halt::LeaseLost);
        true
    }

    /// Whether a letter may be committed to the relay now: the run is not halted and its lease
    /// has not lapsed. Asked by the transport immediately before each final dot.
    pub(super) fn may_commit(&self) -> bool {
        self.is_running() && !self.lease_lapsed()
    }

    /// Renews the lease every [`crate::lease::heartbeat_every`], in a task of its own, so a busy
    /// dispatcher or a stalled relay never lets it lapse; halts the run when another run has
    /// taken it.
    pub(super) fn keep_lease(self: &Arc<Self>, lease: Lease) -> tokio::task::JoinHandle<()> {
        let guard = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::lease::heartbeat_every()).await;
                let at = Instant::now();
                match lease.heartbeat().await {
                    Ok(true) => guard.renewed(at),
                    Ok(false) => {
                        tracing::error!("the sender lease was taken over by another run: stopping");
                        guard.halt(Halt::LeaseLost);
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "the sender lease could not be renewed; trying again")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_to_halt_wins() {
        let guard = RunGuard::new();
        assert!(guard.is_running() && guard.may_commit());
        guard.halt(Halt::WriterFailed);
        guard.halt(Halt::LeaseLost);
        assert_eq!(guard.state(), Halt::WriterFailed);
        assert!(!guard.may_commit());
    }
}
