//! How fast to send to one scope (the relay, or one recipient domain), learnt from what it says.
//!
//! Additive increase, multiplicative decrease, as TCP does: every window without a slow-down
//! signal adds a fixed step to the rate, and a signal takes the rate down by a factor, **once per
//! window** however many letters in flight meet it (the eight letters already on their way when
//! a relay starts answering 421 are one signal, not eight). The rate never goes under a floor,
//! and never over the configured rate, which stays the ceiling. A scope that was never slowed is
//! not paced at all: its configured rate (or none) applies as before.
//!
//! With a decrease of 15 % and a step of 5 % of the ceiling a window, a scope held by a limit of
//! its own oscillates between about 85 % and 105 % of it: it follows the limit instead of
//! collapsing under it.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};

/// Where a scope without a ceiling starts when it is slowed before it took anything.
const UNKNOWN_START: f64 = 10.0;

/// How long one decrease holds: signals within it are the same signal.
pub const WINDOW: Duration = Duration::from_secs(1);

/// What a slow-down keeps of the rate.
const DECREASE: f64 = 0.85;

/// The additive step, as a share of the reference rate (the ceiling, or the best throughput
/// seen when there is no ceiling).
const STEP_SHARE: f64 = 0.05;

/// Letters per second under which no scope is slowed: the run must still progress, and the
/// retries of the letters themselves take care of a relay that refuses everything.
pub const FLOOR: f64 = 1.0;

/// The pace of one scope.
#[derive(Debug, Clone)]
pub struct Pace {
    ceiling: Option<f64>,
    /// The current rate while slowed; None while not paced.
    rate: Option<f64>,
    last_decrease: Option<Instant>,
    last_increase: Instant,
    /// The earliest departure of the next letter while paced.
    next: Instant,
    /// Letters accepted in the current window and in the one before, to start from when a scope
    /// without a ceiling is first slowed.
    window_start: Instant,
    accepted_now: u64,
    accepted_before: u64,
    best_throughput: f64,
    /// The reply that caused the last decrease, for the log and `status`.
    reason: Option<String>,
    decreases: u64,
}

impl Pace {
    /// `ceiling`: the configured letters per second, 0 for none.
    pub fn new(ceiling: u32, now: Instant) -> Pace {
        Pace {
            ceiling: (ceiling > 0).then_some(f64::from(ceiling)),
            rate: None,
            last_decrease: None,
            last_increase: now,
            next: now,
            window_start: now,
            accepted_now: 0,
            accepted_before: 0,
            best_throughput: 0.0,
            reason: None,
            decreases: 0,
        }
    }

    /// The current rate while slowed.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// How many times this scope was slowed down.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    fn roll_window(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        self.accepted_before = if elapsed < WINDOW * 2 {
            self.accepted_now
        } else {
            0
        };
        let throughput = self.accepted_before as f64 / WINDOW.as_secs_f64();
        self.best_throughput = self.best_throughput.max(throughput);
        self.accepted_now = 0;
        self.window_start = now;
    }

    /// The rate at which letters were accepted lately (the last full window).
    fn throughput(&self) -> f64 {
        self.accepted_before.max(self.accepted_now) as f64 / WINDOW.as_secs_f64()
    }

    fn step(&self) -> f64 {
        let reference = self.ceiling.unwrap_or(self.best_throughput);
        (reference * STEP_SHARE).max(FLOOR)
    }

    /// A letter of this scope was accepted: counts toward the throughput, and gives the rate
    /// back step by step, one step a quiet window.
    pub fn accepted(&mut self, now: Instant) {
        self.roll_window(now);
        self.accepted_now += 1;
        let Some(rate) = self.rate else { return };
        let quiet = self
            .last_decrease
            .is_none_or(|at| now.saturating_duration_since(at) >= WINDOW);
        if !quiet || now.saturating_duration_since(self.last_increase) < WINDOW {
            return;
        }
        self.last_increase = now;
        let faster = rate + self.step();
        self.rate = match self.ceiling {
            Some(ceiling) if faster >= ceiling => None,
            // Without a ceiling, pacing ends once it is well above what the scope takes.
            None if faster > 2.0 * self.best_throughput.max(self.throughput()) => None,
            _ => Some(faster),
        };
        if self.rate.is_none() {
            tracing::info!("back to the full rate after a slow-down");
        }
    }

    /// A slow-down signal. Returns the new rate when it decreased, None when the signal fell
    /// within the window of an earlier decrease.
    pub fn slow_down(&mut self, now: Instant, reason: &str) -> Option<f64> {
        self.roll_window(now);
        if self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < WINDOW)
        {
            return None;
        }
        // From the rate while slowed, else from what the scope took lately (under its
        // ceiling), else, before anything was taken, from the ceiling or a modest guess.
        let throughput = self.throughput();
        let current = match (self.rate, self.ceiling) {
            (Some(rate), _) => rate,
            (None, ceiling) if throughput > 0.0 => {
                ceiling.map_or(throughput, |c| c.min(throughput))
            }
            (None, Some(ceiling)) => ceiling,
            (None, None) => UNKNOWN_START,
        };
        let slower = (current * DECREASE).max(FLOOR);
        self.rate = Some(slower);
        self.last_decrease = Some(now);
        self.last_increase = now;
        self.reason = Some(reason.chars().take(200).collect());
        self.decreases += 1;
        Some(slower)
    }

    /// How long until the next letter may go (zero when it may go now, or when not paced).
    pub fn wait(&self, now: Instant) -> Duration {
        match self.rate {
            Some(_) => self.next.saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// A letter goes now: the next one waits one interval.
    pub fn take(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let interval = Duration::from_secs_f64(1.0 / rate.max(FLOOR));
            // A timer that woke a little late keeps the schedule (one letter of catching up at
            // most), so the lateness of tokio's millisecond ticks is not lost for good.
            let start = if now.saturating_duration_since(self.next) > interval {
                now
            } else {
                self.next
            };
            self.next = start + interval;
        }
    }
}

/// A rate limiter with a fixed rate (`rate.per_second`, a relay's or a domain's own), beside
/// the learnt [`Pace`].
pub type Limiter = governor::DefaultDirectRateLimiter;

/// A rate of N per second with a burst of one: messages are spaced just over 1/N apart (1 %
/// more, to absorb scheduling jitter), so no one-second window ever holds more than N.
pub fn limiter(rate: NonZeroU32) -> Limiter {
    let period = Duration::from_secs_f64(1.01 / f64::from(rate.get()));
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(rate))
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// Waits for the limiter's next slot to the microsecond. tokio's timer fires on millisecond
/// ticks, so a plain sleep wakes up to 1 ms late, and with a burst of one the lateness is lost
/// for good (at 200/s: 187/s measured). Sleep until 2 ms before the slot, then yield until it.
pub async fn until_ready_precisely(limiter: &Limiter) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay that takes at most `limit` letters a second and refuses the others: sends as fast
    /// as the pace allows for `seconds`, and returns how many it took.
    fn follow(limit: u32, ceiling: u32, seconds: u64) -> u64 {
        let start = Instant::now();
        let mut pace = Pace::new(ceiling, start);
        let mut now = start;
        let mut taken = 0;
        let mut this_second = (0u64, 0u32);
        let end = start + Duration::from_secs(seconds);
        // A sender that would go at 1,000/s when nothing holds it back.
        while now < end {
            let wait = pace.wait(now).max(Duration::from_millis(1));
            now += wait;
            pace.take(now);
            let second = now.duration_since(start).as_secs();
            if this_second.0 != second {
                this_second = (second, 0);
            }
            if this_second.1 < limit {
                this_second.1 += 1;
                taken += 1;
                pace.accepted(now);
            } else {
                pace.slow_down(now, "421 4.7.0 rate limit exceeded");
            }
        }
        taken
    }

    #[test]
    fn a_relay_limit_is_followed_closely_without_a_ceiling() {
        let taken = follow(150, 0, 60);
        let rate = taken as f64 / 60.0;
        assert!(rate >= 0.9 * 150.0, "{rate}/s");
        assert!(rate <= 150.0, "{rate}/s");
    }

    #[test]
    fn a_relay_limit_is_followed_under_a_higher_ceiling() {
        let rate = follow(150, 400, 60) as f64 / 60.0;
        assert!(rate >= 0.9 * 150.0, "{rate}/s");
    }

    #[test]
    fn many_signals_in_one_window_decrease_once() {
        let now = Instant::now();
        let mut pace = Pace::new(100, now);
        assert_eq!(pace.slow_down(now, "421"), Some(85.0));
        for i in 1..8 {
            assert_eq!(
                pace.slow_down(now + Duration::from_millis(i * 10), "421"),
                None
            );
        }
        assert_eq!(pace.decreases(), 1);
        let later = now + WINDOW;
        assert_eq!(pace.slow_down(later, "421"), Some(85.0 * DECREASE));
    }

    #[test]
    fn the_floor_holds_and_the_ceiling_ends_the_pacing() {
        let mut now = Instant::now();
        let mut pace = Pace::new(10, now);
        for _ in 0..100 {
            now += WINDOW;
            pace.slow_down(now, "421");
        }
        assert_eq!(pace.rate(), Some(FLOOR));
        for _ in 0..100 {
            now += WINDOW;
            pace.accepted(now);
        }
        assert_eq!(pace.rate(), None, "back to the configured rate");
        assert_eq!(pace.wait(now), Duration::ZERO);
    }

    #[test]
    fn letters_are_spaced_at_the_rate_while_slowed() {
        let now = Instant::now();
        let mut pace = Pace::new(20, now);
        pace.slow_down(now, "421");
        let rate = pace.rate().unwrap();
        pace.take(now);
        let wait = pace.wait(now);
        assert!((wait.as_secs_f64() - 1.0 / rate).abs() < 1e-6, "{wait:?}");
    }
}
