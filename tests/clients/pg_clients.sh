#!/usr/bin/env bash
# Real Postgres clients against the release binary: psql (\dt, \d, a SELECT, a refused write)
# and Python psycopg 3 / asyncpg (tests/clients/pg_clients.py). Starts agent-console on free
# ports with a temporary data dir and a read token (so every client authenticates with
# SCRAM-SHA-256, the password coming from PGPASSWORD), ingests the captured fixtures
# (tests/fixtures) with curl, installs missing clients (postgresql-client, psycopg[binary],
# asyncpg). Prints `pg_clients: N passed, M failed` and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agent-console/target}"
FIXTURES="${AGENT_CONSOLE_FIXTURES:-tests/fixtures}"

if ! command -v psql >/dev/null 2>&1; then
    echo "pg_clients: installing postgresql-client"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null) \
        || { echo "pg_clients: cannot install psql"; exit 1; }
fi
if ! python3 -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
    echo "pg_clients: installing psycopg and asyncpg"
    python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]' asyncpg >/dev/null 2>&1 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'psycopg[binary]' asyncpg \
        || { echo "pg_clients: cannot install psycopg/asyncpg"; exit 1; }
fi

BIN="$CARGO_TARGET_DIR/release/agent-console"
# `cargo test --release` (run just before by .ci/run) already built it; rebuild only when stale.
if [ ! -x "$BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
    cargo build --release --locked --bin agent-console --quiet
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
PG_PORT=$(free_port)
DATA=$(mktemp -d)
LOG="$DATA/server.log"
TOKEN="pg-clients-$RANDOM$RANDOM"
export PGPASSWORD="$TOKEN"
AGENT_CONSOLE_READ_TOKEN="$TOKEN" "$BIN" serve --data-dir "$DATA/db" --grpc-addr 127.0.0.1:0 \
    --http-addr "127.0.0.1:$HTTP_PORT" --pg-addr "127.0.0.1:$PG_PORT" --log warn >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { echo "pg_clients: server exited"; cat "$LOG"; exit 1; }
    sleep 0.1
done

for f in claude-code/otlp/logs-1.pb claude-code/otlp/logs-2.pb claude-code/otlp/metrics-1.pb \
    langchain-openinference/traces-1.pb; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/x-protobuf' \
        --data-binary "@$FIXTURES/$f" "http://127.0.0.1:$HTTP_PORT/")
    [ "$code" = 200 ] || { echo "pg_clients: ingest $f answered $code"; exit 1; }
done
# Acknowledged is durable, not yet queryable: wait until DuckDB holds everything sent.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$HTTP_PORT/api/flush")
[ "$code" = 200 ] || { echo "pg_clients: flush answered $code"; exit 1; }

passed=0
failed=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; echo "$2" | sed 's/^/     /'; failed=$((failed + 1)); }
PSQL=(psql -X -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$PG_PORT user=grafana dbname=agent_console sslmode=prefer")

if out=$(PGPASSWORD=wrong "${PSQL[@]}" -c 'SELECT 1' 2>&1); then
    fail "psql: a wrong password is refused" "$out"
else
    grep -qi 'password authentication failed for user "grafana"' <<<"$out" && pass "psql: a wrong password is refused" \
        || fail "psql: a wrong password is refused" "$out"
fi
out=$("${PSQL[@]}" -c '\dt' 2>&1) && grep -q 'model_calls' <<<"$out" && grep -q 'tool_calls' <<<"$out" \
    && pass "psql: \\dt lists the tables" || fail "psql: \\dt lists the tables" "$out"
out=$("${PSQL[@]}" -c '\d model_calls' 2>&1) && grep -q 'input_tokens' <<<"$out" && grep -q 'cost_usd' <<<"$out" \
    && pass "psql: \\d model_calls describes the columns" || fail "psql: \\d model_calls describes the columns" "$out"
out=$("${PSQL[@]}" -At -F '|' -c "SELECT model, input_tokens, time FROM model_calls ORDER BY time LIMIT 1" 2>&1) \
    && [ "$out" = "claude-opus-4-8|4200|2026-11-21 14:58:51.967+00" ] \
    && pass "psql: SELECT returns Postgres-formatted values" || fail "psql: SELECT returns Postgres-formatted values" "$out"
if out=$("${PSQL[@]}" -c "DELETE FROM spans" 2>&1); then
    fail "psql: a write is refused" "$out"
else
    grep -q 'read-only' <<<"$out" && pass "psql: a write is refused" || fail "psql: a write is refused" "$out"
fi
out=$("${PSQL[@]}" -At -c "SELECT count(*) FROM spans" 2>&1) && [ "$out" -gt 0 ] \
    && pass "psql: nothing was deleted" || fail "psql: nothing was deleted" "$out"

if out=$(python3 tests/clients/pg_clients.py "$PG_PORT" 2>&1); then py_ok=1; else py_ok=0; fi
echo "$out" | grep -v '^pg_clients.py:'
py_passed=$(sed -n 's/^pg_clients.py: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
py_failed=$(sed -n 's/^pg_clients.py: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
passed=$((passed + ${py_passed:-0}))
failed=$((failed + ${py_failed:-0}))
if [ "$py_ok" = 0 ] && [ "${py_failed:-0}" = 0 ]; then
    fail "python clients ran" "$out"
fi

echo "pg_clients: $passed passed, $failed failed"
[ "$failed" = 0 ]
