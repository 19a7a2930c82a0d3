//! What the operator sees while a run goes.

use std::time::{Duration, Instant};

use sqlx::SqlitePool;

use super::writer::{Counts, RunTotals};
use crate::store::ledger;

/// What the operator sees while a run goes: a progress bar with the rate and the time left on a
/// terminal, a log line every five seconds elsewhere (cron, systemd, a log collector).
pub(super) struct Progress {
    started: Instant,
    last: Instant,
    due_at_start: i64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) async fn new(pool: &SqlitePool) -> Progress {
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

    pub(super) fn tick(&mut self, totals: &RunTotals) {
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

    pub(super) fn finish(&self, totals: &RunTotals) {
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
