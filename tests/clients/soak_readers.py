#!/usr/bin/env python3
"""Readers for the soak (`tests/clients/soak.sh`): live subscribers, SQL readers (normal and
hostile), stalled exports and Postgres readers (psql), against a collector that is killed with
-9 and restarted every few minutes. Every client reconnects after a failure with a short
back-off. Standard library only (asyncio sockets, psql as a subprocess).

Runs until --seconds have passed, then prints one JSON line of counts to stdout.

What it checks on its own: a normal query that the collector answers must answer 200 with rows,
a hostile one must answer a 4xx/5xx error with a JSON body (never a 200 with a result, never a
hang beyond the client timeout). Connection errors (the collector is down) are counted apart.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time

NORMAL = [
    "SELECT count(*) FROM spans",
    "SELECT service_name, count(*) FROM spans GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
    "SELECT session_id, count(*) FROM spans GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
    "SELECT " + "+".join(["1"] * 52),
    "SELECT " + "abs(" * 400 + "-7" + ")" * 400,
]

# Hostile queries from issue 10: deep nesting, the sandbox escape, huge results and unbounded
# work. Each must come back as an error (or a capped answer), never crash or hang the collector.
HOSTILE = [
    ("deep_parens", "SELECT " + "(" * 5000 + "1" + ")" * 5000),
    ("deep_extract", "SELECT " + "extract(epoch from " * 5000 + "now()" + ")" * 5000),
    ("deep_struct_type", "SELECT NULL::" + "STRUCT(a " * 3000 + "INTEGER" + ")" * 3000),
    ("json_execute_serialized_sql",
     "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM checkpoint()'))"),
    ("json_execute_scalar",
     "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))"),
    ("huge_sum", "SELECT sum(i * i) FROM range(20000000000) t(i)"),
    ("cross_join", "SELECT count(*) FROM range(20000000000) a, range(10) b"),
    ("read_file", "SELECT * FROM read_text('/etc/passwd')"),
    ("settings", "SELECT * FROM duckdb_settings()"),
]

# Capped results (must answer, bounded).
CAPPED = [
    ("capped_rows", "SELECT range FROM range(10000000)"),
    ("huge_result", "SELECT range, repeat('x', 1000) FROM range(100000000)"),
]

PG_QUERIES = [
    ("pg_count", "SELECT count(*) FROM spans", True),
    ("pg_extract", "SELECT extract(epoch from now())", True),
    ("pg_deep_extract", "SELECT " + "extract(epoch from " * 5000 + "now()" + ")" * 5000, False),
    ("pg_deep_date_trunc", "SELECT " + "date_trunc('hour', " * 5000 + "now()" + ")" * 5000, False),
    ("pg_json_exec",
     "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))", False),
    ("pg_huge", "SELECT range FROM range(100000000)", None),
]


class Stats:
    def __init__(self):
        self.c = {}

    def add(self, key, n=1):
        self.c[key] = self.c.get(key, 0) + n


async def http_request(host, port, method, path, body=b"", ctype="application/json", timeout=60.0):
    """One HTTP/1.1 request, Connection: close; returns (status, body bytes)."""
    async def go():
        r, w = await asyncio.open_connection(host, port)
        try:
            head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            w.write(head + body)
            await w.drain()
            data = await r.read()
        finally:
            w.close()
        line, _, rest = data.partition(b"\r\n")
        parts = line.split()
        status = int(parts[1]) if len(parts) > 1 else 0
        _, _, payload = rest.partition(b"\r\n\r\n")
        return status, payload
    return await asyncio.wait_for(go(), timeout)


async def subscriber(args, stats, idx, slow, until):
    """An SSE subscriber on /api/live. A slow one sends its request and never reads."""
    host, port = args.host, args.http_port
    while time.time() < until:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            # Slow ones and two others take the whole span stream; the others follow one session.
            q = "type=span" if slow or idx % 40 == 0 else "session=sess-%08x" % (idx * 7)
            w.write(f"GET /api/live?{q} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            await w.drain()
            stats.add("sse_connects")
            if slow:
                # Never read: the collector must drop or gap us, not buffer without bound.
                while time.time() < until:
                    await asyncio.sleep(1)
                    if r.at_eof():
                        break
                    # Only check whether the socket was closed, without consuming the stream.
                    if w.transport.is_closing():
                        break
                w.close()
                stats.add("sse_slow_closed_by_server" if time.time() < until else "sse_slow_held")
                continue
            while time.time() < until:
                chunk = await asyncio.wait_for(r.read(65536), 30)
                if not chunk:
                    stats.add("sse_eof")
                    break
                stats.add("sse_bytes", len(chunk))
            w.close()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            stats.add("sse_errors")
        await asyncio.sleep(0.5 + random.random())


def expect_error(status, body):
    try:
        j = json.loads(body)
        return 400 <= status < 600 and isinstance(j, dict) and "error" in j
    except ValueError:
        return False


async def sql_reader(args, stats, idx, until):
    host, port = args.host, args.http_port
    rng = random.Random(idx)
    while time.time() < until:
        roll = rng.random()
        if roll < 0.5:
            name, sql, kind = "normal", rng.choice(NORMAL), "normal"
        elif roll < 0.9:
            name, sql = rng.choice(HOSTILE)
            kind = "hostile"
        else:
            name, sql = rng.choice(CAPPED)
            kind = "capped"
        started = time.time()
        try:
            status, body = await http_request(host, port, "POST", "/api/sql", json.dumps({"sql": sql}).encode())
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            stats.add("sql_conn_errors" if not isinstance(e, asyncio.TimeoutError) else "sql_client_timeouts")
            await asyncio.sleep(0.5)
            continue
        took = time.time() - started
        stats.add(f"sql_{kind}")
        if kind == "normal":
            ok = status == 200 and b"rows" in body
            # 503 while the collector is replaying after a restart is allowed (Retry-After).
            stats.add("sql_normal_ok" if ok else f"sql_normal_status_{status}")
        elif kind == "hostile":
            if status == 200 and name not in ("settings",):
                stats.add(f"hostile_answered_200_{name}")
            elif status == 200:
                stats.add("hostile_settings_200")
            elif expect_error(status, body):
                stats.add("hostile_refused")
            else:
                stats.add(f"hostile_bad_answer_{status}")
        else:
            stats.add("capped_ok" if status == 200 else f"capped_status_{status}")
        stats.c["sql_max_s"] = max(stats.c.get("sql_max_s", 0), round(took, 2))
        await asyncio.sleep(0.2)


async def stalled_export(args, stats, until):
    """Starts an export of the spans table and reads nothing: the collector must cancel it after its
    send timeout and close the transaction (checkpoints keep working)."""
    host, port = args.host, args.http_port
    while time.time() < until:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            fmt = random.choice(["csv", "arrow", "parquet"])
            w.write(f"GET /api/export?table=spans&format={fmt} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await w.drain()
            stats.add("stalled_exports")
            t0 = time.time()
            # Hold it unread for up to 90 s (longer than the send timeout).
            while time.time() - t0 < 90 and time.time() < until and not w.transport.is_closing() and not r.at_eof():
                await asyncio.sleep(1)
            w.close()
        except (OSError, asyncio.TimeoutError):
            stats.add("stalled_export_errors")
        await asyncio.sleep(1)


def psql(args, sql, timeout=60):
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    return subprocess.run(
        ["psql", "-h", args.host, "-p", str(args.pg_port), "-U", "agent", "-d", "agent_console",
         "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


async def pg_reader(args, stats, until):
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    while time.time() < until:
        name, sql, should_pass = rng.choice(PG_QUERIES)
        try:
            p = await loop.run_in_executor(None, psql, args, sql)
        except subprocess.TimeoutExpired:
            stats.add("pg_client_timeouts")
            continue
        err = p.stderr.decode(errors="replace")
        if p.returncode != 0 and ("connect" in err or "server closed" in err or "Connection refused" in err):
            stats.add("pg_conn_errors")
            await asyncio.sleep(1)
            continue
        if should_pass is True:
            stats.add("pg_ok" if p.returncode == 0 else "pg_normal_failed")
            if p.returncode != 0:
                stats.c.setdefault("pg_normal_failed_last", err[:200])
        elif should_pass is False:
            stats.add("pg_hostile_refused" if p.returncode != 0 else f"pg_hostile_passed_{name}")
        else:
            stats.add("pg_capped_done")
        await asyncio.sleep(0.5)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--sql-readers", type=int, default=4)
    args = ap.parse_args()
    until = time.time() + args.seconds
    stats = Stats()
    tasks = [subscriber(args, stats, i, i < args.slow, until) for i in range(args.subscribers)]
    tasks += [sql_reader(args, stats, i, until) for i in range(args.sql_readers)]
    tasks += [stalled_export(args, stats, until), stalled_export(args, stats, until)]
    tasks += [pg_reader(args, stats, until)]

    async def report():
        while time.time() < until:
            await asyncio.sleep(60)
            print(json.dumps({"t": int(time.time()), **stats.c}), file=sys.stderr, flush=True)
    await asyncio.gather(*tasks, report())
    print(json.dumps(stats.c, sort_keys=True), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
