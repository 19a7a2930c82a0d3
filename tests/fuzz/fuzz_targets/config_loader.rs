//! The configuration loader on arbitrary text: a mistyped breachmail.toml must be refused with a
//! message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let dir = std::path::Path::new("/nonexistent-campaign");
    let _ = breachmail::config::Config::from_toml(text, dir, &[]);
});
