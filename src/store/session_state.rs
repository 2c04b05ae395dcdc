//! Stores the session tracker's changes, inside the writer's transaction: each change is appended
//! to `session_transitions`, and the `sessions` row gets the new state (one set-based UPDATE from
//! a staging table). Also reads the state back at start-up so a restart keeps states and totals.

use duckdb::{params, Appender, Connection};

use super::StoreError;
use crate::model::records::SessionUpdate;
use crate::sessions::tracker::State;
use crate::sessions::Tracker;

pub const STAGE_DDL: &str = "
    CREATE TEMP TABLE IF NOT EXISTS session_state_stage (session_id VARCHAR, status VARCHAR,
        status_since TIMESTAMP, status_reason VARCHAR, stuck BOOLEAN, model VARCHAR,
        last_activity TIMESTAMP, ended_at TIMESTAMP, parent_session_id VARCHAR, waiting BOOLEAN, long_tool BOOLEAN);";

const APPLY: &str = "
    UPDATE sessions SET status = s.status, status_since = s.status_since, status_reason = s.status_reason,
        stuck = s.stuck, model = coalesce(s.model, sessions.model), last_activity = s.last_activity,
        ended_at = s.ended_at, waiting = s.waiting, long_tool = s.long_tool, parent_session_id = coalesce(sessions.parent_session_id, s.parent_session_id)
    FROM session_state_stage s WHERE sessions.session_id = s.session_id;
    DELETE FROM session_state_stage;";

/// A UTC `TIMESTAMP` value from microseconds since the epoch.
fn ts(us: i64) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, us)
}

fn opt_ts(us: Option<i64>) -> duckdb::types::Value {
    us.map_or(duckdb::types::Value::Null, ts)
}

/// Write `updates` in the current transaction: every change is a transition row; the
/// `sessions` row gets each session's last change (a transaction may hold several).
pub fn apply(
    conn: &Connection,
    transitions: &mut Appender,
    stage: &mut Appender,
    updates: &[&SessionUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut last: std::collections::HashMap<&str, &SessionUpdate> = std::collections::HashMap::new();
    for u in updates {
        transitions.append_row(params![
            ts(u.time_us),
            u.session_id,
            u.agent_id,
            u.task_id,
            u.parent_session_id,
            u.from_status,
            u.status,
            u.stuck,
            u.reason,
        ])?;
        last.insert(u.session_id.as_str(), u);
    }
    for u in last.values() {
        stage.append_row(params![
            u.session_id,
            u.status,
            ts(u.status_since_us),
            u.reason,
            u.stuck,
            u.model,
            ts(u.last_activity_us),
            opt_ts(u.ended_at_us),
            u.parent_session_id,
            u.waiting,
            u.long_tool,
        ])?;
    }
    transitions.flush()?;
    stage.flush()?;
    conn.execute_batch(APPLY)?;
    Ok(())
}

/// Sessions not finished, and those finished within `recent_us` of `now_us` (so late records of a
/// just-finished session do not reopen it), with their totals.
const LOAD: &str = "
    WITH s AS (
        SELECT * FROM sessions
        WHERE status IS DISTINCT FROM 'finished' OR status_since >= make_timestamp(?::BIGINT)
        ORDER BY last_seen DESC LIMIT ?::BIGINT
    ),
    mc AS (
        SELECT session_id, count(*) AS calls, coalesce(sum(input_tokens), 0)::BIGINT AS i, coalesce(sum(output_tokens), 0)::BIGINT AS o,
               coalesce(sum(cache_read_tokens), 0)::BIGINT AS cr, coalesce(sum(cache_write_tokens), 0)::BIGINT AS cw,
               coalesce(sum(cost_usd), 0) AS cost, count(*) FILTER (WHERE error) AS errors
        FROM model_calls WHERE session_id IN (SELECT session_id FROM s) GROUP BY session_id
    ),
    tc AS (
        SELECT session_id, count(*) AS calls, count(*) FILTER (WHERE success = false) AS errors
        FROM tool_calls WHERE session_id IN (SELECT session_id FROM s) GROUP BY session_id
    )
    SELECT s.session_id, coalesce(s.status, 'running'), epoch_us(coalesce(s.status_since, s.last_seen)),
           coalesce(s.status_reason, ''), coalesce(s.stuck, false), epoch_us(s.first_seen), epoch_us(s.last_seen),
           epoch_us(s.ended_at), s.agent_id, s.task_id, s.parent_session_id, s.display_name, s.service_name, s.model,
           coalesce(mc.calls, 0), coalesce(tc.calls, 0), (coalesce(mc.errors, 0) + coalesce(tc.errors, 0))::BIGINT,
           coalesce(mc.i, 0), coalesce(mc.o, 0), coalesce(mc.cr, 0), coalesce(mc.cw, 0), coalesce(mc.cost, 0),
           coalesce(s.waiting, false), coalesce(s.long_tool, false)
    FROM s LEFT JOIN mc USING (session_id) LEFT JOIN tc USING (session_id)";

fn status_name(s: &str) -> &'static str {
    use agent_console_conventions::status::*;
    match s {
        IDLE => IDLE,
        PAUSED => PAUSED,
        ERRORED => ERRORED,
        FINISHED => FINISHED,
        _ => RUNNING,
    }
}

/// Fill `tracker` from the store; returns how many sessions were restored.
pub fn load(
    conn: &Connection,
    tracker: &mut Tracker,
    now_us: i64,
    recent_us: i64,
    max: usize,
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare(LOAD)?;
    let mut rows = stmt.query(params![now_us - recent_us, max as i64])?;
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let status: String = r.get(1)?;
        let last_seen_us: i64 = r.get(6)?;
        let status = status_name(&status);
        let finished = status == agent_console_conventions::status::FINISHED;
        let service: Option<String> = r.get(12)?;
        let st = State {
            status,
            since_us: r.get(2)?,
            reason: r.get(3)?,
            stuck: r.get(4)?,
            first_seen_us: r.get(5)?,
            last_seen_us,
            ended_at_us: r.get(7)?,
            ended_event_us: finished.then_some(last_seen_us),
            agent_id: r.get(8)?,
            task_id: r.get(9)?,
            parent_session_id: r.get(10)?,
            display_name: r.get(11)?,
            service_name: service.map(Into::into),
            model: r.get(13)?,
            model_calls: r.get::<_, i64>(14)? as u64,
            tool_calls: r.get::<_, i64>(15)? as u64,
            errors: r.get::<_, i64>(16)? as u64,
            input_tokens: r.get::<_, i64>(17)?,
            output_tokens: r.get::<_, i64>(18)?,
            cache_read_tokens: r.get::<_, i64>(19)?,
            cache_write_tokens: r.get::<_, i64>(20)?,
            cost_usd: r.get(21)?,
            waiting: r.get(22)?,
            long_tool: r.get(23)?,
            ..State::default()
        };
        tracker.restore(id, st, now_us);
        n += 1;
    }
    Ok(n)
}
