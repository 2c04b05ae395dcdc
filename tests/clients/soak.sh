#!/usr/bin/env bash
# The soak (issue 10): the release collector on loopback for SOAK_SECONDS (default 1800) under
# - mixed ingest: loadgen over OTLP/gRPC and over OTLP/HTTP protobuf, together SOAK_RATE spans/s
#   (default 20000: half the ~40k spans/s persisted maximum measured in BENCHMARKS.md);
# - 100 live subscribers on /api/live (20 of them never read), SQL readers over /api/sql (normal
#   queries and the hostile ones from issue 10: nesting 5,000 deep, json_execute_serialized_sql,
#   huge results and unbounded work), two stalled exports that never read, a psql reader with
#   deep pgwire rewrites (tests/clients/soak_readers.py);
# - a kill -9 and restart every SOAK_KILL_EVERY seconds (default 300), stopped a minute before the
#   end so the load generators can count.
# Sampled each second: the collector's RSS (VmRSS). At the end (summary.txt in SOAK_OUT):
#   peak RSS vs SOAK_RSS_BOUND_MIB, deaths that were not our kills (crashes), acknowledged spans
#   (both load generators) vs spans stored (`SELECT count(*) FROM spans` after `POST /api/flush`).
# Exit status 0 only if RSS stayed under its bound, nothing crashed and stored == acked
# (stored may exceed acked only by exports in flight at a kill, which were never acknowledged).
#
#   cargo build --release --bins && nice -n 10 tests/clients/soak.sh
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN_DIR="${SOAK_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
OUT="${SOAK_OUT:-/tmp/agent-console-soak}"
SECONDS_TOTAL="${SOAK_SECONDS:-1800}"
RATE="${SOAK_RATE:-20000}"
KILL_EVERY="${SOAK_KILL_EVERY:-300}"
RSS_BOUND_MIB="${SOAK_RSS_BOUND_MIB:-1536}"
DUCKDB_MEM="${SOAK_DUCKDB_MEMORY_LIMIT:-512MB}"
GRPC_PORT="${SOAK_GRPC_PORT:-24317}"
HTTP_PORT="${SOAK_HTTP_PORT:-24318}"
PG_PORT="${SOAK_PG_PORT:-25433}"

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/data"
# Own copies: a rebuild during the soak must not swap the binaries under it.
cp "$BIN_DIR/agent-console" "$BIN_DIR/loadgen" "$OUT/bin/" || { echo "soak: build the release binaries first"; exit 2; }
COLLECTOR="$OUT/bin/agent-console"
PIDFILE="$OUT/collector.pid"
: >"$OUT/events.log"
event() { echo "$(date -u +%FT%TZ) $*" | tee -a "$OUT/events.log"; }

start_collector() {
    "$COLLECTOR" serve --data-dir "$OUT/data" \
        --grpc-addr "127.0.0.1:$GRPC_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --pg-addr "127.0.0.1:$PG_PORT" \
        --duckdb-memory-limit "$DUCKDB_MEM" --query-timeout-ms 5000 --query-send-timeout-secs 20 \
        --shutdown-timeout-secs 5 --log warn >>"$OUT/collector.log" 2>&1 &
    echo $! >"$PIDFILE"
    local t0=$SECONDS
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/healthz"; then
            event "collector $(cat "$PIDFILE") listening after $((SECONDS - t0)) s"
            return 0
        fi
        sleep 0.1
    done
    event "collector did not come up"
    return 1
}

T_START=$SECONDS
END=$((T_START + SECONDS_TOTAL))

# Gone or a zombie (not reaped yet)?
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st:0:1}" != Z ]; }

# Supervisor: starts the collector, kill -9 every KILL_EVERY s (until a minute before the end);
# any other death is a crash (restarted too, and counted).
(
    start_collector || exit 1
    touch "$OUT/ready"
    kills=0
    crashes=0
    next_kill=$((SECONDS + KILL_EVERY))
    while [ $SECONDS -lt $((END - 60)) ]; do
        pid=$(cat "$PIDFILE")
        if ! alive "$pid"; then
            wait "$pid" 2>/dev/null
            crashes=$((crashes + 1))
            event "CRASH: collector $pid died on its own (see collector.log)"
            start_collector
        elif [ $SECONDS -ge $next_kill ]; then
            kill -9 "$pid"
            wait "$pid" 2>/dev/null
            kills=$((kills + 1))
            event "kill -9 $pid (#$kills)"
            start_collector
            next_kill=$((SECONDS + KILL_EVERY))
        fi
        sleep 1
    done
    echo "$kills $crashes" >"$OUT/supervisor.txt"
    # The last collector stays up for the final account; the main shell stops it.
) &
SUPERVISOR=$!
for _ in $(seq 1 600); do [ -e "$OUT/ready" ] && break; sleep 0.1; done
[ -e "$OUT/ready" ] || { echo "soak: the collector did not start"; exit 1; }

# RSS sampler: one line per second, "epoch pid rss_kib".
(
    while [ $SECONDS -lt $END ]; do
        pid=$(cat "$PIDFILE" 2>/dev/null)
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        echo "$(date +%s) $pid ${rss:-0}" >>"$OUT/rss.txt"
        sleep 1
    done
) &
SAMPLER=$!

LOAD_SECONDS=$((SECONDS_TOTAL - 30))
"$OUT/bin/loadgen" --protocol grpc --grpc "127.0.0.1:$GRPC_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --clients 2 --batch 256 --rate $((RATE / 2)) --seconds "$LOAD_SECONDS" >"$OUT/loadgen-grpc.txt" 2>&1 &
LG_GRPC=$!
"$OUT/bin/loadgen" --protocol http --grpc "127.0.0.1:$GRPC_PORT" --http "127.0.0.1:$HTTP_PORT" \
    --clients 2 --batch 256 --rate $((RATE / 2)) --seconds "$LOAD_SECONDS" >"$OUT/loadgen-http.txt" 2>&1 &
LG_HTTP=$!
python3 "$ROOT/tests/clients/soak_readers.py" --http-port "$HTTP_PORT" --pg-port "$PG_PORT" \
    --seconds "$LOAD_SECONDS" >"$OUT/readers.json" 2>"$OUT/readers.log" &
READERS=$!

wait $LG_GRPC
wait $LG_HTTP
wait $READERS
wait $SUPERVISOR
wait $SAMPLER

# Final account on the last collector (never killed).
# Replay after the last kill may take minutes: wait for DuckDB to catch up (30 min at most).
curl -s -X POST "http://127.0.0.1:$HTTP_PORT/api/flush?timeout_ms=1800000" >/dev/null
stored=$(curl -s -X POST -H 'content-type: application/json' -d '{"sql":"SELECT count(*) FROM spans"}' \
    "http://127.0.0.1:$HTTP_PORT/api/sql" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0][0])')
acked() { awk '/^acknowledged \(before count\):/ {print $4}' "$1"; }
sent() { awk '/^sent \(before count\):/ {print $4}' "$1"; }
a_grpc=$(acked "$OUT/loadgen-grpc.txt"); a_http=$(acked "$OUT/loadgen-http.txt")
s_grpc=$(sent "$OUT/loadgen-grpc.txt"); s_http=$(sent "$OUT/loadgen-http.txt")
acked_total=$(( ${a_grpc:-0} + ${a_http:-0} ))
sent_total=$(( ${s_grpc:-0} + ${s_http:-0} ))
read -r kills crashes <"$OUT/supervisor.txt"
peak_kib=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}' "$OUT/rss.txt")
samples=$(wc -l <"$OUT/rss.txt")
peak_mib=$((peak_kib / 1024))
last=$(cat "$PIDFILE")
kill -TERM "$last"
for _ in $(seq 1 300); do alive "$last" || break; sleep 0.1; done
panics=$(grep -c "panicked" "$OUT/collector.log")

{
    echo "duration_s=$SECONDS_TOTAL rate=$RATE kill_every_s=$KILL_EVERY duckdb_memory_limit=$DUCKDB_MEM"
    echo "kills=$kills crashes=$crashes panics_logged=$panics"
    echo "rss_samples=$samples peak_rss_mib=$peak_mib bound_mib=$RSS_BOUND_MIB"
    echo "sent_spans=$sent_total acked_spans=$acked_total (grpc $a_grpc, http $a_http) stored_spans=$stored"
    echo "readers=$(cat "$OUT/readers.json")"
    grep -h "errors:\|refused" "$OUT/loadgen-grpc.txt" "$OUT/loadgen-http.txt" | sed 's/^/loadgen: /'
} | tee "$OUT/summary.txt"

ok=1
[ "$crashes" -eq 0 ] || { echo "FAIL: $crashes crash(es)"; ok=0; }
[ "$panics" -eq 0 ] || { echo "FAIL: panics in the collector log"; ok=0; }
[ "$peak_mib" -lt "$RSS_BOUND_MIB" ] || { echo "FAIL: RSS $peak_mib MiB >= bound $RSS_BOUND_MIB MiB"; ok=0; }
[ "${stored:-0}" -ge "$acked_total" ] || { echo "FAIL: acknowledged spans lost: acked $acked_total, stored $stored"; ok=0; }
[ "${stored:-0}" -le "$sent_total" ] || { echo "FAIL: more stored than sent: $stored > $sent_total"; ok=0; }
[ "$acked_total" -gt 0 ] || { echo "FAIL: nothing acknowledged"; ok=0; }
[ $ok -eq 1 ] && echo "soak: PASS" || echo "soak: FAIL"
[ $ok -eq 1 ]
