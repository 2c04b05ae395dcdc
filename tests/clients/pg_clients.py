"""Python Postgres drivers against agent-console's Postgres port: psycopg 3 (text and binary,
server-side parameters) and asyncpg (prepared statements, binary everything). The fixtures in
tests/fixtures must have been ingested. Usage: pg_clients.py PORT. When the server has a read
token, PGPASSWORD holds it (both drivers read it; authentication is SCRAM-SHA-256). Prints one
line per check and `pg_clients.py: N passed, M failed`; exits non-zero on any failure."""

import asyncio
import datetime
import decimal
import os
import sys
import traceback

import asyncpg
import psycopg

PORT = int(sys.argv[1])
SESSION = "f140c7f4-628d-4454-b78d-f488814a62f0"
UTC = datetime.timezone.utc
FIRST_CALL = datetime.datetime(2026, 11, 21, 14, 58, 51, 967000, tzinfo=UTC)
results = []


def check(name):
    def wrap(fn):
        try:
            if asyncio.iscoroutinefunction(fn):
                asyncio.run(fn())
            else:
                fn()
            results.append((name, None))
            print(f"ok   {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            results.append((name, traceback.format_exc()))
            print(f"FAIL {name}\n{traceback.format_exc()}")
        return fn

    return wrap


DSN = f"host=127.0.0.1 port={PORT} user=grafana dbname=agent_console"


if os.environ.get("PGPASSWORD"):

    @check("psycopg and asyncpg: a wrong password is refused (SCRAM-SHA-256)")
    async def _():
        try:
            psycopg.connect(DSN + " password=wrong").close()
            raise AssertionError("psycopg connected with a wrong password")
        except psycopg.OperationalError as e:
            assert 'password authentication failed for user "grafana"' in str(e).lower(), e
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=PORT, user="grafana", database="agent_console", password="wrong"
            )
            await conn.close()
            raise AssertionError("asyncpg connected with a wrong password")
        except asyncpg.InvalidPasswordError:
            pass


@check("psycopg: simple query with literal values (text format)")
def _():
    with psycopg.connect(DSN, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT model, input_tokens, cost_usd, time, error FROM model_calls "
            f"WHERE session_id = '{SESSION}' ORDER BY time"
        ).fetchall()
        assert len(rows) == 2, rows
        assert rows[0] == ("claude-opus-4-8", 4200, 0.014875, FIRST_CALL, False), rows[0]


@check("psycopg: server-side parameters, text and binary results")
def _():
    with psycopg.connect(DSN) as conn:  # not autocommit: psycopg sends BEGIN first
        q = ("SELECT model, input_tokens, time, 1.50::DECIMAL(10,2) AS d, '{\"a\": 1}'::JSON AS j, DATE '2026-01-02' AS day "
             "FROM model_calls WHERE input_tokens > %s AND model = %s AND time > %s ORDER BY time LIMIT %s")
        params = (4000, "claude-opus-4-8", datetime.datetime(2020, 1, 1, tzinfo=UTC), 10)
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            rows = cur.execute(q, params).fetchall()
            assert [r[1] for r in rows] == [4200, 4300], (binary, rows)
            assert rows[0][2] == FIRST_CALL, rows[0]
            assert rows[0][3] == decimal.Decimal("1.50"), rows[0]
            assert rows[0][4] == {"a": 1}, rows[0]
            assert rows[0][5] == datetime.date(2026, 1, 2), rows[0]
        conn.commit()


@check("psycopg: a write is refused with SQLSTATE 25006, the connection survives")
def _():
    with psycopg.connect(DSN) as conn:
        try:
            conn.execute("DELETE FROM spans")
            raise AssertionError("DELETE was accepted")
        except psycopg.errors.ReadOnlySqlTransaction:
            pass
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM model_calls").fetchone()[0] == 4


@check("asyncpg: prepared statements with typed parameters, binary results")
async def _():
    conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="grafana", database="agent_console")
    try:
        rows = await conn.fetch(
            "SELECT model, input_tokens, cost_usd, time, error FROM model_calls "
            "WHERE input_tokens > $1 AND model = $2 AND time BETWEEN $3 AND $4 ORDER BY time",
            4000, "claude-opus-4-8", datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2030, 1, 1, tzinfo=UTC),
        )
        assert [tuple(r) for r in rows][0] == ("claude-opus-4-8", 4200, 0.014875, FIRST_CALL, False), rows
        row = await conn.fetchrow(
            "SELECT sum(input_tokens) AS total, INTERVAL '1 day 2 hours' AS iv, 'x'::BLOB AS b, 1.5::REAL AS r, "
            "7::INTEGER AS i FROM model_calls"
        )
        assert row["total"] == decimal.Decimal(11050), row
        assert row["iv"] == datetime.timedelta(days=1, hours=2), row
        assert (row["b"], row["r"], row["i"]) == (b"x", 1.5, 7), row
        stmt = await conn.prepare("SELECT count(*) FROM tool_calls WHERE tool_name = $1")
        assert await stmt.fetchval("Bash") == 1
        assert await stmt.fetchval("nope") == 0
    finally:
        await conn.close()


@check("asyncpg: refusals keep the connection usable")
async def _():
    conn = await asyncpg.connect(host="127.0.0.1", port=PORT, user="grafana", database="agent_console")
    try:
        for sql, state in [("INSERT INTO spans VALUES (1)", "25006"), ("COPY spans TO STDOUT", "42501"),
                           ("SELECT * FROM read_csv('/etc/passwd')", "42501")]:
            try:
                await conn.execute(sql)
                raise AssertionError(f"{sql} was accepted")
            except asyncpg.PostgresError as e:
                assert e.sqlstate == state, (sql, e.sqlstate, str(e))
        assert await conn.fetchval("SELECT 40 + 2") == 42
    finally:
        await conn.close()


failed = sum(1 for _, err in results if err)
print(f"pg_clients.py: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
