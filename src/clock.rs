//! The one clock of the program: every time a run records, compares or prints comes from here.
//!
//! Debug builds read `BREACHMAIL_TEST_NOW` (RFC 3339, e.g. `2026-03-28T23:50:00+01:00`): the
//! clock then starts at that instant and runs forward at the real pace, so the tests can put a
//! run on a Saturday evening, the night of a daylight-saving change or a week later, and check
//! windows and daily caps in seconds. Release builds ignore the variable: a real campaign always
//! runs on the real time.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};

/// The variable the debug build reads; listed so the configuration does not take it for a key.
pub const TEST_NOW_VARIABLE: &str = "BREACHMAIL_TEST_NOW";

/// The fake start and the real instant it was read, when a debug build was given one.
fn fake_start() -> Option<(DateTime<Utc>, Instant)> {
    static START: OnceLock<Option<(DateTime<Utc>, Instant)>> = OnceLock::new();
    *START.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        let text = std::env::var(TEST_NOW_VARIABLE).ok()?;
        // A test that sets a time it cannot read would test the real clock by mistake.
        let at = DateTime::parse_from_rfc3339(text.trim())
            .unwrap_or_else(|e| panic!("{TEST_NOW_VARIABLE}={text:?} is not RFC 3339: {e}"));
        Some((at.with_timezone(&Utc), Instant::now()))
    })
}

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    match fake_start() {
        Some((start, read_at)) => {
            start + chrono::Duration::from_std(read_at.elapsed()).unwrap_or_default()
        }
        None => Utc::now(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now().timestamp_millis()
}
