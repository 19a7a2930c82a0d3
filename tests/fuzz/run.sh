#!/usr/bin/env bash
# Runs each fuzz target for N minutes (default 2): `tests/fuzz/run.sh [MINUTES] [TARGET...]`.
# For long runs only: the same properties are checked on every `cargo test` by
# tests/properties.rs (random and mutated inputs, no sanitizer build).
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler (or RUSTC_BOOTSTRAP=1 on
# stable, which this script sets when no nightly toolchain is installed). A crash leaves its input
# in tests/fuzz/artifacts/TARGET/: turn it into a regression test, then delete it.
# The first build compiles the whole library with AddressSanitizer: about 25 minutes on a 2-core
# machine shared with other builds (installing cargo-fuzz itself: about 9 minutes).
set -euo pipefail

cd "$(dirname "$0")/../.."

minutes="${1:-2}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csv_rows config_loader bounce_parser)
fi

features=()
# Through the library's public path once `breachmail::bounces` is public (see Cargo.toml).
if grep -q '^pub mod bounces' src/lib.rs; then
    features=(--features bounces)
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "tests/fuzz/corpus/$target"
    echo "==> $target: ${minutes} minute(s)"
    start=$(date +%s)
    if ! cargo "${toolchain[@]}" fuzz run --fuzz-dir tests/fuzz "${features[@]}" "$target" \
        "tests/fuzz/corpus/$target" -- \
        -max_total_time=$((minutes * 60)) -max_len=65536 -print_final_stats=1; then
        echo "==> $target: FAILED (see tests/fuzz/artifacts/$target/)"
        status=1
    fi
    echo "==> $target: $(( $(date +%s) - start ))s"
done
exit $status
