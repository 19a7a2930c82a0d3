//! The bounce parser on arbitrary bytes: whatever lands in the bounce mailbox (anyone can write
//! to it) must be classified or refused, never crash the run.
//!
//! The target is `breachmail::bounces::parse::parse_bounce`. Until the `bounces` module is public
//! in the library (feature `bounces`, which run.sh turns on by itself), the same source file is
//! compiled in here directly, so the parser is fuzzed either way.
#![no_main]

#[cfg(feature = "bounces")]
use breachmail::bounces::parse::parse_bounce;
#[cfg(not(feature = "bounces"))]
#[allow(dead_code)]
#[path = "../../../src/bounces/parse.rs"]
mod parse;
#[cfg(not(feature = "bounces"))]
use parse::parse_bounce;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_bounce(bytes);
});
