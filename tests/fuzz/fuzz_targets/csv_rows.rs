//! The import's CSV reader and row validation on arbitrary bytes: a hostile or broken export
//! must give rejections or an error naming the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(verdict) = breachmail::import::validate_csv_bytes(bytes) {
        for rejection in &verdict.rejections {
            assert!(!rejection.reason.is_empty());
        }
    }
});
