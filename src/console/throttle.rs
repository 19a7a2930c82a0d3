//! Wrong passwords slow down whoever makes them, by login and by address, with delays that grow
//! and then stop growing: never a lock. A lock per login would let anyone lock a named adviser
//! out with ten wrong passwords; a delay of at most [`MAX_DELAY`] costs the adviser half a
//! minute at worst, and an attacker at most two guesses a minute at one login. The delay per
//! address slows the spraying of one password over many logins.
//!
//! Kept in memory: a restart forgets it, which costs an attacker nothing they could not get by
//! waiting, and the console needs no write for a refused login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords allowed without any delay.
const FREE_FAILURES: u32 = 3;
/// The delay after the first failure beyond the free ones; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The delays stop growing here.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Failures are forgotten after this long without a new one.
const MEMORY: Duration = Duration::from_secs(15 * 60);
/// Beyond this many keys, forgotten failures are swept out.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// When the next attempt is allowed.
    fn next_allowed(&self) -> Instant {
        if self.count < FREE_FAILURES {
            return self.last;
        }
        let doublings = (self.count - FREE_FAILURES).min(10);
        self.last + (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
    }
}

/// The failures by login and by address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn keys(login: &str, address: std::net::IpAddr) -> [String; 2] {
        [
            format!("login:{}", login.to_lowercase()),
            format!("address:{address}"),
        ]
    }

    /// How long to wait before this login may be tried from this address; None: now.
    pub fn wait(&self, login: &str, address: std::net::IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(login, address)
            .iter()
            .filter_map(|key| failures.get(key))
            .filter(|f| now.duration_since(f.last) < MEMORY)
            .map(|f| f.next_allowed().saturating_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max()
    }

    pub fn failed(&self, login: &str, address: std::net::IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, f| now.duration_since(f.last) < MEMORY);
        }
        for key in Self::keys(login, address) {
            let entry = failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(entry.last) >= MEMORY {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    /// The right password: this login and this address start afresh.
    pub fn succeeded(&self, login: &str, address: std::net::IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(login, address) {
            failures.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stop_growing() {
        let now = Instant::now();
        let delay = |count| {
            Failures { count, last: now }
                .next_allowed()
                .duration_since(now)
        };
        assert_eq!(delay(1), Duration::ZERO);
        assert_eq!(delay(3), Duration::from_secs(1));
        assert_eq!(delay(4), Duration::from_secs(2));
        assert_eq!(delay(6), Duration::from_secs(8));
        assert_eq!(delay(100), MAX_DELAY);
    }

    #[test]
    fn a_login_and_an_address_are_slowed_apart() {
        let throttle = LoginThrottle::default();
        let here: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let there: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            throttle.failed("alice", here);
        }
        assert!(
            throttle.wait("alice", there).is_some(),
            "the login is slowed"
        );
        assert!(
            throttle.wait("bob", here).is_some(),
            "the address is slowed"
        );
        assert!(throttle.wait("bob", there).is_none(), "nobody else");
        throttle.succeeded("alice", here);
        assert!(throttle.wait("alice", here).is_none());
    }
}
