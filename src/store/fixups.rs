//! Applies `Batch::fixups` (`pipeline::inherit`) in the writer's transaction, after the batch's
//! rows and rollup sums: stored model calls, tool calls and spans of a span whose ancestor arrived
//! later get that ancestor's agent / session / task; the `cost_hourly` rollup moves the calls'
//! sums from their old key to the new one (so it still equals `model_calls`); a session whose
//! agent was the fallback the rows had takes the inherited agent.
//!
//! Set-based: the fixups are staged in a temp table and joined, with a lower time bound on the
//! stored rows so DuckDB skips row groups that cannot hold them.
//!
//! `adopt` does the same for `Batch::adopts`, spans whose descendants were stored before the
//! pipeline's memory covered their trace (before a restart): it walks the stored `spans` down from
//! the span (a recursive query, bounded in depth and by the span's start and end) and stages every
//! descendant still holding a fallback (`spans.fallback`: agent only its service, session only its
//! trace, no task) that no nearer span gives a value of its own, then applies them the same way.
//! A span's fallback bits are cleared as its values are applied.

use duckdb::{params, Appender, Connection};

use crate::model::records::{Adopt, Fixup};

/// Clock skew allowed between an adopting span and its descendants (µs).
const SKEW_US: i64 = 60_000_000;

pub const STAGE_DDL: &str = "
    CREATE TEMP TABLE IF NOT EXISTS inherit_stage (trace_id VARCHAR, span_id VARCHAR, agent_id VARCHAR,
        agent_name VARCHAR, session_id VARCHAR, task_id VARCHAR, from_agent VARCHAR, from_session VARCHAR);";

/// The rollup change of the staged calls, with `sign` (-1 before the update, +1 after).
fn rollup_sql(sign: i64) -> String {
    format!(
        "INSERT INTO cost_hourly
         SELECT date_trunc('hour', m.time), coalesce(m.agent_id, ''), coalesce(m.task_id, ''), coalesce(m.model, ''),
                coalesce(m.provider, ''), {sign} * count(*), {sign} * sum(m.cost_usd),
                {sign} * coalesce(sum(m.input_tokens), 0), {sign} * coalesce(sum(m.output_tokens), 0),
                {sign} * coalesce(sum(m.cache_read_tokens), 0), {sign} * coalesce(sum(m.cache_write_tokens), 0)
         FROM model_calls m JOIN inherit_stage f ON m.trace_id = f.trace_id AND m.span_id = f.span_id
         WHERE m.time >= make_timestamp(?::BIGINT)
         GROUP BY ALL
         ON CONFLICT (hour, agent_id, task_id, model, provider) DO UPDATE SET
            calls = cost_hourly.calls + excluded.calls,
            cost_usd = CASE WHEN cost_hourly.cost_usd IS NULL THEN excluded.cost_usd
                            WHEN excluded.cost_usd IS NULL THEN cost_hourly.cost_usd
                            ELSE cost_hourly.cost_usd + excluded.cost_usd END,
            input_tokens = cost_hourly.input_tokens + excluded.input_tokens,
            output_tokens = cost_hourly.output_tokens + excluded.output_tokens,
            cache_read_tokens = cost_hourly.cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens = cost_hourly.cache_write_tokens + excluded.cache_write_tokens"
    )
}

fn update_sql(table: &str) -> String {
    // Spans keep which of their values are still fallbacks: a value applied is one no longer.
    let fallback = if table == "spans" {
        "fallback = (CASE WHEN f.agent_id IS NULL THEN m.fallback & 1 ELSE 0 END)
                 | (CASE WHEN f.session_id IS NULL THEN m.fallback & 2 ELSE 0 END)
                 | (CASE WHEN f.task_id IS NULL THEN m.fallback & 4 ELSE 0 END),"
    } else {
        ""
    };
    format!(
        "UPDATE {table} AS m SET
            {fallback}
            agent_id = coalesce(f.agent_id, m.agent_id),
            agent_name = CASE WHEN f.agent_id IS NULL THEN m.agent_name ELSE f.agent_name END,
            session_id = coalesce(f.session_id, m.session_id),
            task_id = coalesce(f.task_id, m.task_id)
         FROM inherit_stage f
         WHERE m.trace_id = f.trace_id AND m.span_id = f.span_id AND m.time >= make_timestamp(?::BIGINT)"
    )
}

const SESSION_AGENT: &str = "
    UPDATE sessions AS s SET agent_id = f.agent_id
    FROM (SELECT coalesce(session_id, from_session) AS session_id, any_value(agent_id) AS agent_id,
                 any_value(from_agent) AS from_agent
          FROM inherit_stage WHERE agent_id IS NOT NULL GROUP BY 1) f
    WHERE s.session_id = f.session_id AND (s.agent_id IS NULL OR s.agent_id = f.from_agent)";

/// Descendants of one adopting span (`$1` trace, `$2` span, starting between `$3` and `$8` µs) and
/// what each still needs, per field: a path stops giving a field at the first span that has its own.
const ADOPT_SQL: &str = "
    INSERT INTO inherit_stage SELECT * FROM (
    WITH RECURSIVE d(span_id, wa, ws, wt, depth) AS (
        SELECT s.span_id,
               $4::VARCHAR IS NOT NULL AND (s.fallback & 1) <> 0,
               $6::VARCHAR IS NOT NULL AND (s.fallback & 2) <> 0,
               $7::VARCHAR IS NOT NULL AND (s.fallback & 4) <> 0,
               1
        FROM spans s
        WHERE s.trace_id = $1 AND s.parent_span_id = $2
          AND s.time BETWEEN make_timestamp($3::BIGINT) AND make_timestamp($8::BIGINT)
        UNION ALL
        SELECT s.span_id,
               d.wa AND (s.fallback & 1) <> 0,
               d.ws AND (s.fallback & 2) <> 0,
               d.wt AND (s.fallback & 4) <> 0,
               d.depth + 1
        FROM spans s JOIN d ON s.parent_span_id = d.span_id
        WHERE s.trace_id = $1 AND s.time BETWEEN make_timestamp($3::BIGINT) AND make_timestamp($8::BIGINT)
          AND d.depth < 128
          AND (d.wa OR d.ws OR d.wt)
    ),
    want AS (
        SELECT span_id, bool_or(wa) AS wa, bool_or(ws) AS ws, bool_or(wt) AS wt
        FROM d WHERE wa OR ws OR wt GROUP BY span_id
    )
    SELECT $1::VARCHAR, w.span_id,
           CASE WHEN w.wa THEN $4::VARCHAR END, CASE WHEN w.wa THEN $5::VARCHAR END,
           CASE WHEN w.ws THEN $6::VARCHAR END, CASE WHEN w.wt THEN $7::VARCHAR END,
           any_value(s.agent_id), any_value(s.session_id)
    FROM want w JOIN spans s ON s.trace_id = $1 AND s.span_id = w.span_id
        AND s.time BETWEEN make_timestamp($3::BIGINT) AND make_timestamp($8::BIGINT)
    GROUP BY ALL)";

/// Apply `fixups` inside the caller's transaction.
pub fn apply(conn: &Connection, stage: &mut Appender<'_>, fixups: &[&Fixup]) -> Result<(), duckdb::Error> {
    if fixups.is_empty() {
        return Ok(());
    }
    let mut since = i64::MAX;
    for f in fixups {
        since = since.min(f.time_us);
        stage.append_row(params![
            f.trace_id,
            f.span_id,
            f.agent_id,
            f.agent_name,
            f.session_id,
            f.task_id,
            f.from_agent,
            f.from_session
        ])?;
    }
    stage.flush()?;
    // Span rows start before their call ends: one hour of slack for the spans' start times.
    apply_staged(conn, since.saturating_sub(3_600_000_000))
}

/// Apply `adopts` inside the caller's transaction (after `apply`), one at a time (two adopting
/// spans of one trace never stage a row twice); returns the rows changed.
pub fn adopt(conn: &Connection, adopts: &[&Adopt]) -> Result<usize, duckdb::Error> {
    let mut rows = 0;
    for a in adopts {
        // A minute of slack either side for clocks of different services.
        let (from, to) = (a.start_us.saturating_sub(SKEW_US), a.end_us.max(a.start_us).saturating_add(SKEW_US));
        let staged = conn.execute(
            ADOPT_SQL,
            params![a.trace_id, a.span_id, from, a.agent_id, a.agent_name, a.session_id, a.task_id, to],
        )?;
        if staged > 0 {
            rows += staged;
            apply_staged(conn, from)?;
        }
    }
    Ok(rows)
}

/// The staged rows (stored at or after `since`, µs) take their new values; the rollup and the
/// sessions' agents follow; the stage is emptied.
fn apply_staged(conn: &Connection, since: i64) -> Result<(), duckdb::Error> {
    conn.execute(&rollup_sql(-1), params![since])?;
    for table in ["model_calls", "tool_calls", "spans"] {
        conn.execute(&update_sql(table), params![since])?;
    }
    conn.execute(&rollup_sql(1), params![since])?;
    conn.execute_batch("DELETE FROM cost_hourly WHERE calls = 0")?;
    conn.execute_batch(SESSION_AGENT)?;
    conn.execute_batch("DELETE FROM inherit_stage")?;
    Ok(())
}
