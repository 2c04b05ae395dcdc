#!/usr/bin/env bash
# The web console in a real browser: Debian's chromium + chromium-driver driven by Python
# selenium (tests/clients/console_browser.py) against the release binary on free ports with the
# captured fixtures (tests/fixtures) and fresh GenAI traffic. Installs what is missing (never a
# browser download: Debian packages and PyPI only). Screenshots go to
# $CARGO_TARGET_DIR/console-shots (printed). Prints `console_browser: N passed, M failed` and
# exits non-zero on any failure. `--bench` runs the benchmark in BENCHMARKS.md instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agent-console/target}"
FIXTURES="${AGENT_CONSOLE_FIXTURES:-tests/fixtures}"
SHOTS="${AGENT_CONSOLE_SHOTS:-$CARGO_TARGET_DIR/console-shots}"

if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "console_browser: installing chromium and chromium-driver (Debian packages)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || { echo "console_browser: cannot install chromium"; echo "console_browser: 0 passed, 1 failed"; exit 1; }
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
    echo "console_browser: installing selenium"
    python3 -m pip install --quiet --disable-pip-version-check selenium >/dev/null 2>&1 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages selenium \
        || { echo "console_browser: cannot install selenium"; echo "console_browser: 0 passed, 1 failed"; exit 1; }
fi

BIN="$CARGO_TARGET_DIR/release/agent-console"
# `cargo test --release` (run just before by .ci/run) already built it; rebuild only when stale.
if [ ! -x "$BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
    cargo build --release --locked --bin agent-console --quiet
fi

HOOK="$CARGO_TARGET_DIR/release/agent-console-hook"
if [ ! -x "$HOOK" ] || [ -n "$(find shims Cargo.lock -newer "$HOOK" -print -quit)" ]; then
    cargo build --release --locked -p agent-console-hook --quiet
fi

mkdir -p "$SHOTS"
echo "console_browser: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1); selenium $(python3 -c 'import selenium; print(selenium.__version__)')"
echo "console_browser: screenshots in $SHOTS"
python3 tests/clients/console_browser.py --bin "$BIN" --hook-bin "$HOOK" --fixtures "$FIXTURES" --shots "$SHOTS" "$@"
