#!/usr/bin/env bash
# Replay every fuzz target over its corpus (and any crash files kept in artifacts/) without
# instrumentation: the cheap regression check. Builds the targets without the sancov wrapper
# (our crates are touched so an instrumented build in the same target dir is replaced).
set -euo pipefail
cd "$(dirname "$0")"
unset RUSTC_WRAPPER
touch ../../src/lib.rs ../../shims/claude-hook/src/lib.rs ../../shims/conventions/src/lib.rs src/lib.rs
cargo build --release --features collector --bins
cargo build --release --features spool --bin fuzz_spool
bin="${CARGO_TARGET_DIR:-target}/release"
for t in otlp_protobuf otlp_json hook pgwire_sql sql_vet spool; do
    dirs=("corpus/$t")
    [ -d "artifacts/$t" ] && [ -n "$(ls -A "artifacts/$t")" ] && dirs+=("artifacts/$t")
    "$bin/fuzz_$t" "${dirs[@]}" 2>/dev/null
done
