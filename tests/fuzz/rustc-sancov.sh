#!/bin/sh
# RUSTC_WRAPPER for fuzzing builds: adds sanitizer-coverage instrumentation (libFuzzer's inline
# 8-bit counters, PC table and comparison tracing), overflow checks and debug assertions to our
# own crates only. Wrapper arguments are not part of cargo's fingerprints, so every dependency
# (bundled DuckDB above all) is reused as compiled; our crates must be rebuilt (fuzz.sh touches
# them) so they carry the instrumentation.
rustc="$1"
shift
case " $* " in
*" --crate-name agent_console "* | *" --crate-name agent_console_hook "* | *" --crate-name agent_console_conventions "* | *" --crate-name fuzz_"* | *" --crate-name agent_console_fuzz "*)
    exec "$rustc" "$@" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=3 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares -Coverflow-checks=on -Cdebug-assertions=on
    ;;
esac
exec "$rustc" "$@"
