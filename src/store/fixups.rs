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
pub const SKEW_US: i64 = 60_000_000;

pub const STAGE_DDL: &str = "
    CREATE TEMP TABLE IF NOT EXISTS inherit_stage (trace_id VARCHAR, span_id VARCHAR, agent_id VARCHAR,
        agent_name VARCHAR, session_id VARCHAR, task_id VARCHAR, from_agent VARCHAR, from_session VARCHAR);";

/// The rollup change of the staged calls, with `sign` (-1 before the update, +1 after).
fn rollup_sql(sign: i64) -> String {
    let on_conflict = super::rollup::ON_CONFLICT_ADD;
    format!(
        "INSERT INTO cost_hourly
         SELECT date_trunc('hour', m.time), coalesce(m.agent_id, ''), coalesce(m.task_id, ''), coalesce(m.model, ''),
                coalesce(m.provider, ''), {sign} * count(*), {sign} * sum(m.cost_usd),
                {sign} * coalesce(sum(m.input_tokens), 0), {sign} * coalesce(sum(m.output_tokens), 0),
                {sign} * coalesce(sum(m.cache_read_tokens), 0), {sign} * coalesce(sum(m.cache_write_tokens), 0)
         FROM model_calls m JOIN inherit_stage f ON m.trace_id = f.trace_id AND m.span_id = f.span_id
         WHERE m.time >= make_timestamp(?::BIGINT)
         GROUP BY ALL {on_conflict}"
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
    WITH RECURSIVE t AS MATERIALIZED (
        SELECT span_id, parent_span_id, fallback, agent_id, session_id FROM spans
        WHERE trace_id = $1 AND time BETWEEN make_timestamp($3::BIGINT) AND make_timestamp($8::BIGINT)
    ),
    d(span_id, wa, ws, wt, depth) AS (
        SELECT t.span_id,
               $4::VARCHAR IS NOT NULL AND (t.fallback & 1) <> 0,
               $6::VARCHAR IS NOT NULL AND (t.fallback & 2) <> 0,
               $7::VARCHAR IS NOT NULL AND (t.fallback & 4) <> 0,
               1
        FROM t WHERE t.parent_span_id = $2
        UNION ALL
        SELECT t.span_id,
               d.wa AND (t.fallback & 1) <> 0,
               d.ws AND (t.fallback & 2) <> 0,
               d.wt AND (t.fallback & 4) <> 0,
               d.depth + 1
        FROM t JOIN d ON t.parent_span_id = d.span_id
        WHERE d.depth < 128 AND (d.wa OR d.ws OR d.wt)
    ),
    want AS (
        SELECT span_id, bool_or(wa) AS wa, bool_or(ws) AS ws, bool_or(wt) AS wt
        FROM d WHERE wa OR ws OR wt GROUP BY span_id
    )
    SELECT $1::VARCHAR, w.span_id,
           CASE WHEN w.wa THEN $4::VARCHAR END, CASE WHEN w.wa THEN $5::VARCHAR END,
           CASE WHEN w.ws THEN $6::VARCHAR END, CASE WHEN w.wt THEN $7::VARCHAR END,
           any_value(t.agent_id), any_value(t.session_id)
    FROM want w JOIN t ON t.span_id = w.span_id
    GROUP BY ALL)";

/// The writer time adopt lookups may take: each scans the stored spans of a time window, which
/// costs more the faster spans arrive, so they get `SHARE` of the writer's wall time (at most
/// `BURST` seconds at once, e.g. the replay after a restart); past it they are skipped (counted).
#[derive(Debug)]
pub struct AdoptBudget {
    secs: f64,
    last: std::time::Instant,
    /// Adopts not looked up because the budget was spent.
    pub skipped: u64,
    /// Adopts looked up.
    pub looked_up: u64,
}

impl AdoptBudget {
    const SHARE: f64 = 0.1;
    const BURST: f64 = 2.0;

    pub fn new() -> Self {
        Self { secs: Self::BURST, last: std::time::Instant::now(), skipped: 0, looked_up: 0 }
    }

    /// A budget with `secs` left (tests: a negative one stays spent for a while).
    pub fn with_secs(secs: f64) -> Self {
        Self { secs, last: std::time::Instant::now(), skipped: 0, looked_up: 0 }
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        self.secs = (self.secs + now.duration_since(self.last).as_secs_f64() * Self::SHARE).min(Self::BURST);
        self.last = now;
    }
}

impl Default for AdoptBudget {
    fn default() -> Self {
        Self::new()
    }
}

/// When the newest stored span started (µs), for the pipeline's `Inherit::over_store`.
pub fn newest_span_us(conn: &Connection) -> Result<Option<i64>, duckdb::Error> {
    conn.query_row("SELECT epoch_us(max(time)) FROM spans", [], |r| r.get::<_, Option<i64>>(0))
}

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
/// spans of one trace never stage a row twice), while `budget` lasts; returns the rows changed.
pub fn adopt(conn: &Connection, adopts: &[&Adopt], budget: &mut AdoptBudget) -> Result<usize, duckdb::Error> {
    let mut rows = 0;
    budget.refill();
    for a in adopts {
        if budget.secs <= 0.0 {
            budget.skipped += 1;
            continue;
        }
        let started = std::time::Instant::now();
        budget.looked_up += 1;
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
        budget.secs -= started.elapsed().as_secs_f64();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("db");
        crate::store::schema::migrate(&c).expect("migrate");
        c.execute_batch(STAGE_DDL).expect("stage");
        // A chain a -> b -> c stored with fallback values; b names its own agent.
        c.execute_batch(
            "INSERT INTO spans (time, trace_id, span_id, parent_span_id, start_time, end_time, agent_id, session_id, fallback)
             VALUES (make_timestamp(1000000), 't', 'b', 'a', make_timestamp(1000000), make_timestamp(2000000), 'coder', 't', 2),
                    (make_timestamp(1100000), 't', 'c', 'b', make_timestamp(1100000), make_timestamp(1200000), 'svc', 't', 3),
                    (make_timestamp(1100000), 'u', 'c', 'b', make_timestamp(1100000), make_timestamp(1200000), 'svc', 'u', 3)",
        )
        .expect("rows");
        c
    }

    fn a() -> Adopt {
        Adopt {
            trace_id: "t".into(),
            span_id: "a".into(),
            agent_id: Some("researcher".into()),
            agent_name: Some("Researcher".into()),
            session_id: Some("s-1".into()),
            task_id: None,
            start_us: 900_000,
            end_us: 3_000_000,
        }
    }

    fn rows(c: &Connection) -> Vec<(String, String, String, i32)> {
        let mut st = c
            .prepare("SELECT trace_id || '/' || span_id, agent_id, session_id, fallback FROM spans ORDER BY 1")
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn adopt_walks_the_stored_descendants_of_its_trace_only() {
        let c = db();
        let mut budget = AdoptBudget::new();
        assert_eq!(adopt(&c, &[&a()], &mut budget).expect("adopt"), 2);
        assert_eq!((budget.looked_up, budget.skipped), (1, 0));
        // b keeps its own agent and takes the session; c keeps its fallback agent (b, nearer, has
        // one of its own: the path stops giving the agent there) and takes the session; the other
        // trace is untouched.
        assert_eq!(
            rows(&c),
            vec![
                ("t/b".into(), "coder".into(), "s-1".into(), 0),
                ("t/c".into(), "svc".into(), "s-1".into(), 1),
                ("u/c".into(), "svc".into(), "u".into(), 3),
            ]
        );
    }

    #[test]
    fn a_spent_budget_skips_the_lookups() {
        let c = db();
        let mut budget = AdoptBudget::with_secs(-10.0);
        let (x, y) = (a(), a());
        assert_eq!(adopt(&c, &[&x, &y], &mut budget).expect("adopt"), 0);
        assert_eq!((budget.looked_up, budget.skipped), (0, 2));
        assert_eq!(rows(&c)[1], ("t/c".into(), "svc".into(), "t".into(), 3));
    }
}
