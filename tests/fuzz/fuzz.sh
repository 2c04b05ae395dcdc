#!/usr/bin/env bash
# Build one fuzz target with libFuzzer + sancov on our crates only, and run it over its corpus.
#   tests/fuzz/fuzz.sh <target> [seconds] [extra libFuzzer flags...]
# e.g. tests/fuzz/fuzz.sh otlp_protobuf 600. The seed corpus (corpus/<target>/, from `seeds`) is
# read; what the run finds goes to work/<target>/ (not committed), crashes to artifacts/<target>/
# (turn each into a unit test + fix, and keep the input in corpus/<target>/).
# CARGO_TARGET_DIR should be a copy of the main build's target dir, so the dependencies (bundled
# DuckDB) are reused; only our crates are rebuilt (touched below) with instrumentation.
set -euo pipefail
cd "$(dirname "$0")"
target="$1"
secs="${2:-60}"
shift $(( $# >= 2 ? 2 : 1 ))
features=collector
[ "$target" = spool ] && features=spool
export RUSTC_WRAPPER="$PWD/rustc-sancov.sh"
# Our crates must be recompiled to carry the instrumentation (the wrapper is not fingerprinted).
touch ../../src/lib.rs ../../shims/claude-hook/src/lib.rs ../../shims/conventions/src/lib.rs src/lib.rs
cargo build --release --features "$features,libfuzzer" --bin "fuzz_$target"
mkdir -p "corpus/$target" "work/$target" "artifacts/$target"
bin="${CARGO_TARGET_DIR:-target}/release/fuzz_$target"
nice -n 19 "$bin" -max_total_time="$secs" -max_len="${FUZZ_MAX_LEN:-65536}" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" "$@" "work/$target" "corpus/$target"
