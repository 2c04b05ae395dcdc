//! Tasks in the database (migration 0009). Two writers, both on the one DuckDB writer thread:
//! `upsert_links` runs inside the pipeline batch's transaction (tasks and links first seen in
//! telemetry); hand changes (`create`, `patch`, `link`, `unlink`) run in `Store::apply`. No
//! primary keys on `tasks` / `task_sessions`: the single writer checks existence itself (DuckDB
//! rewrites updates of list columns as delete + insert, which a unique index can refuse).
//! Reads are SQL over the views `session_tasks` and `task_model_calls`, on reader connections.

use duckdb::{params, Connection};

use super::link::{TaskLink, HAND};
use super::model::{NewTask, Patch};
use super::TaskError;
use crate::store::StoreError;

fn ts(us: i64) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, us)
}

const INSERT_SEEN_TASK: &str = "
    INSERT INTO tasks (task_id, title, created_by, created_at, updated_at)
    SELECT ?1::VARCHAR, ?1::VARCHAR, 'telemetry', ?2, ?2
    WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1::VARCHAR)";

const INSERT_LINK: &str = "
    INSERT INTO task_sessions (task_id, session_id, how, linked_at, linked_by)
    SELECT ?1::VARCHAR, ?2::VARCHAR, ?3::VARCHAR, ?4, ?5
    WHERE NOT EXISTS (SELECT 1 FROM task_sessions WHERE task_id = ?1::VARCHAR AND session_id = ?2::VARCHAR
                      AND how = ?3::VARCHAR)";

/// Writer side: create the tasks and links a batch introduced (idempotent).
pub fn upsert_links(conn: &Connection, links: &[&TaskLink]) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let mut task = conn.prepare_cached(INSERT_SEEN_TASK)?;
    let mut link = conn.prepare_cached(INSERT_LINK)?;
    for l in links {
        task.execute(params![l.task_id, ts(l.time_us)])?;
        if let Some(s) = &l.session_id {
            link.execute(params![l.task_id, s, l.how, ts(l.time_us), "telemetry"])?;
        }
    }
    Ok(())
}

fn exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM tasks WHERE task_id = ?", params![id], |r| r.get(0))?;
    Ok(n > 0)
}

fn new_id(seed: &str, now_us: i64) -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = sha2::Sha256::new();
    h.update(seed.as_bytes());
    h.update(now_us.to_le_bytes());
    h.update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    format!("t-{}", &hex::encode(h.finalize())[..12])
}

/// `POST /api/tasks`: insert, or update the task `source` + `external_id` (or `id`) names.
/// Returns (task id, created?).
pub fn create(conn: &Connection, t: &NewTask, by: &str, now_us: i64) -> Result<(String, bool), StoreError> {
    let found: Option<String> = match (&t.source, &t.external_id) {
        (Some(s), Some(e)) => conn
            .query_row(
                "SELECT task_id FROM tasks WHERE source = ? AND external_id = ? ORDER BY created_at LIMIT 1",
                params![s, e],
                |r| r.get(0),
            )
            .ok(),
        _ => None,
    };
    let found = match (found, &t.id) {
        (Some(f), _) => Some(f),
        (None, Some(id)) if exists(conn, id)? => Some(id.clone()),
        _ => None,
    };
    let labels = t.labels.as_ref().map(|l| super::model::check_labels(l)).transpose().map_err(refused)?;
    if let Some(id) = found {
        let patch = Patch {
            title: t.title.clone().filter(|s| !s.trim().is_empty()),
            description: t.description.clone().map(Some),
            url: t.url.clone().map(Some),
            agent: t.agent.clone().map(Some),
            labels,
            state: t.state.clone().map(Some),
            archived: None,
        };
        apply_patch(conn, &id, &patch, now_us)?;
        if let (Some(s), Some(e)) = (&t.source, &t.external_id) {
            conn.execute(
                "UPDATE tasks SET source = ?, external_id = ? WHERE task_id = ? AND source IS NULL",
                params![s, e, id],
            )?;
        }
        return Ok((id, false));
    }
    let id = t.id.clone().unwrap_or_else(|| new_id(t.title.as_deref().unwrap_or_default(), now_us));
    let title =
        t.title.clone().filter(|s| !s.trim().is_empty()).or_else(|| t.external_id.clone()).unwrap_or(id.clone());
    let labels_json = serde_json::to_string(&labels.unwrap_or_default()).unwrap_or_else(|_| "[]".into());
    let completed = (t.state.as_deref() == Some(super::model::COMPLETE)).then(|| ts(now_us));
    conn.execute(
        "INSERT INTO tasks (task_id, title, description, url, source, external_id, agent_id, labels, state_override,
                            created_by, created_at, updated_at, completed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, from_json(?, '[\"VARCHAR\"]'), ?, ?, ?, ?, ?)",
        params![
            id,
            title,
            t.description,
            t.url,
            t.source,
            t.external_id,
            t.agent,
            labels_json,
            t.state,
            by,
            ts(now_us),
            ts(now_us),
            completed
        ],
    )?;
    Ok((id, true))
}

fn refused(e: TaskError) -> StoreError {
    StoreError::Refused(e.to_string())
}

/// `PATCH /api/tasks/{id}`; `NotFound` when there is no such task.
pub fn apply_patch(conn: &Connection, id: &str, p: &Patch, now_us: i64) -> Result<(), StoreError> {
    if !exists(conn, id)? {
        return Err(StoreError::NotFound(format!("no task {id:?}")));
    }
    let now = ts(now_us);
    if let Some(t) = &p.title {
        conn.execute("UPDATE tasks SET title = ? WHERE task_id = ?", params![t, id])?;
    }
    for (col, v) in [("description", &p.description), ("url", &p.url), ("agent_id", &p.agent)] {
        if let Some(v) = v {
            conn.execute(&format!("UPDATE tasks SET {col} = ? WHERE task_id = ?"), params![v, id])?;
        }
    }
    if let Some(l) = &p.labels {
        let j = serde_json::to_string(l).unwrap_or_else(|_| "[]".into());
        conn.execute("UPDATE tasks SET labels = from_json(?, '[\"VARCHAR\"]') WHERE task_id = ?", params![j, id])?;
    }
    if let Some(s) = &p.state {
        // `complete` by hand also records when; any other state (or clearing) reopens.
        let done = s.as_deref() == Some(super::model::COMPLETE);
        conn.execute(
            "UPDATE tasks SET state_override = ?,
                 completed_at = CASE WHEN ? THEN coalesce(completed_at, ?) ELSE NULL END
             WHERE task_id = ?",
            params![s, done, now.clone(), id],
        )?;
    }
    if let Some(a) = p.archived {
        conn.execute(
            "UPDATE tasks SET archived_at = CASE WHEN ? THEN coalesce(archived_at, ?) ELSE NULL END WHERE task_id = ?",
            params![a, now.clone(), id],
        )?;
    }
    conn.execute("UPDATE tasks SET updated_at = ? WHERE task_id = ?", params![now, id])?;
    Ok(())
}

/// `PUT /api/tasks/{id}/sessions/{session}`: a hand link (the task must exist; the session may
/// not have reported yet). Returns whether a link was added.
pub fn link(conn: &Connection, id: &str, session: &str, by: &str, now_us: i64) -> Result<bool, StoreError> {
    if !exists(conn, id)? {
        return Err(StoreError::NotFound(format!("no task {id:?}")));
    }
    let n = conn.execute(INSERT_LINK, params![id, session, HAND, ts(now_us), by])?;
    conn.execute("UPDATE tasks SET updated_at = ? WHERE task_id = ?", params![ts(now_us), id])?;
    Ok(n > 0)
}

/// `DELETE /api/tasks/{id}/sessions/{session}`: remove every link of the session to the task
/// (telemetry that names the task again links it again). Returns the links removed.
pub fn unlink(conn: &Connection, id: &str, session: &str, now_us: i64) -> Result<usize, StoreError> {
    if !exists(conn, id)? {
        return Err(StoreError::NotFound(format!("no task {id:?}")));
    }
    let n = conn.execute("DELETE FROM task_sessions WHERE task_id = ? AND session_id = ?", params![id, session])?;
    conn.execute("UPDATE tasks SET updated_at = ? WHERE task_id = ?", params![ts(now_us), id])?;
    Ok(n)
}

/// Task cards. Parameters: $1 now (µs), $2 task id, $3 state, $4 agent, $5 label, $6 text,
/// $7 include archived ('1'), $8/$9 cursor (created_at µs, task id: rows strictly after it in
/// `created_at DESC, task_id DESC` order), $10 limit. NULL parameters do not filter.
/// A session not yet given a status counts as running when seen in the last 60 s.
pub const CARDS_SQL: &str = "
    WITH k AS (SELECT make_timestamp($1::BIGINT) AS now),
    linked AS (
        SELECT st.task_id, s.session_id,
               coalesce(s.status, CASE WHEN s.last_seen >= k.now - INTERVAL 60 SECOND THEN 'running'
                                       ELSE 'finished' END) AS status,
               coalesce(s.stuck, false) AS stuck, coalesce(s.waiting, false) AS waiting
        FROM session_tasks st JOIN sessions s USING (session_id) CROSS JOIN k
    ),
    agg AS (
        SELECT task_id, count(*) AS sessions,
               count(*) FILTER (WHERE status <> 'finished') AS live,
               coalesce(bool_or(status = 'errored'), false) AS errored,
               coalesce(bool_or(stuck AND status <> 'finished'), false) AS stuck,
               coalesce(bool_or(waiting AND status <> 'finished'), false) AS waiting,
               coalesce(bool_or(status = 'paused'), false) AS paused
        FROM linked GROUP BY task_id
    ),
    cards AS (
        SELECT t.*, coalesce(a.sessions, 0) AS sessions,
               CASE WHEN t.state_override IN ('inbox', 'assigned', 'running', 'complete') THEN t.state_override
                    WHEN t.completed_at IS NOT NULL THEN 'complete'
                    WHEN coalesce(a.live, 0) > 0 THEN 'running'
                    WHEN t.agent_id IS NOT NULL OR coalesce(a.sessions, 0) > 0 THEN 'assigned'
                    ELSE 'inbox' END AS state,
               list_concat(CASE WHEN coalesce(a.errored, false) THEN ['errored'] ELSE []::VARCHAR[] END,
                           CASE WHEN coalesce(a.stuck, false) THEN ['stuck'] ELSE []::VARCHAR[] END,
                           CASE WHEN coalesce(a.waiting, false) THEN ['waiting'] ELSE []::VARCHAR[] END,
                           CASE WHEN coalesce(a.paused, false) THEN ['paused'] ELSE []::VARCHAR[] END) AS flags
        FROM tasks t LEFT JOIN agg a USING (task_id)
    ),
    page AS MATERIALIZED (
        SELECT * FROM cards
        WHERE ($2::VARCHAR IS NULL OR task_id = $2::VARCHAR)
          AND ($3::VARCHAR IS NULL OR list_contains(string_split($3::VARCHAR, ','), state))
          AND ($4::VARCHAR IS NULL OR agent_id = $4::VARCHAR)
          AND ($5::VARCHAR IS NULL OR list_contains(labels, $5::VARCHAR))
          AND ($6::VARCHAR IS NULL OR contains(lower(title), lower($6::VARCHAR))
               OR contains(lower(coalesce(description, '')), lower($6::VARCHAR))
               OR contains(lower(task_id), lower($6::VARCHAR))
               OR contains(lower(coalesce(external_id, '')), lower($6::VARCHAR)))
          AND ($2::VARCHAR IS NOT NULL OR $7::VARCHAR = '1' OR archived_at IS NULL)
          AND ($8::BIGINT IS NULL OR created_at < make_timestamp($8::BIGINT)
               OR (created_at = make_timestamp($8::BIGINT) AND task_id < $9::VARCHAR))
        ORDER BY created_at DESC, task_id DESC
        LIMIT $10::BIGINT
    ),
    cost AS (
        SELECT effective_task_id AS task_id, coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd, count(*) AS model_calls
        FROM task_model_calls WHERE effective_task_id IN (SELECT task_id FROM page) GROUP BY 1
    )
    SELECT p.task_id, p.title, p.description, p.url, p.source, p.external_id, p.agent_id, p.labels, p.state,
           p.state_override, p.flags, p.sessions, coalesce(c.cost_usd, 0)::DOUBLE AS cost_usd,
           coalesce(c.model_calls, 0) AS model_calls, p.created_by, p.created_at, p.updated_at,
           p.completed_at, p.archived_at, epoch_us(p.created_at) AS _cursor_us
    FROM page p LEFT JOIN cost c USING (task_id)
    ORDER BY p.created_at DESC, p.task_id DESC";

/// A task's sessions (children included) with their states and what they cost this task.
/// $1 now (µs), $2 task id.
pub const SESSIONS_SQL: &str = "
    WITH k AS (SELECT make_timestamp($1::BIGINT) AS now)
    SELECT s.session_id, st.how AS linked_by, s.parent_session_id, s.agent_id, s.display_name, s.service_name,
           coalesce(s.status, CASE WHEN s.last_seen >= k.now - INTERVAL 60 SECOND THEN 'running' ELSE 'finished' END)
               AS status,
           coalesce(s.stuck, false) AS stuck, coalesce(s.waiting, false) AS waiting,
           coalesce(s.long_tool, false) AS long_tool, s.status_reason, s.first_seen, s.last_seen, s.ended_at,
           (SELECT coalesce(sum(cost_usd), 0)::DOUBLE FROM task_model_calls m
             WHERE m.session_id = s.session_id AND m.effective_task_id = $2::VARCHAR) AS cost_usd
    FROM session_tasks st JOIN sessions s USING (session_id) CROSS JOIN k
    WHERE st.task_id = $2::VARCHAR
    ORDER BY s.first_seen, s.session_id
    LIMIT 1000";

/// A task's cost by source (reported / computed / unpriced). $1 task id.
pub const COST_SQL: &str = "
    SELECT coalesce(cost_source, 'unpriced') AS cost_source, count(*) AS calls,
           coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd
    FROM task_model_calls WHERE effective_task_id = $1::VARCHAR GROUP BY 1 ORDER BY 1";

/// A task's usage per model. $1 task id.
pub const MODELS_SQL: &str = "
    SELECT model, provider, count(*) AS calls, count(*) FILTER (WHERE error) AS errors,
           coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
           coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
           coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
           coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd,
           coalesce(sum(duration_ms), 0)::DOUBLE AS duration_ms,
           min(time) AS first_call, max(time) AS last_call
    FROM task_model_calls WHERE effective_task_id = $1::VARCHAR
    GROUP BY ALL ORDER BY cost_usd DESC, calls DESC, model NULLS LAST";

/// A task's tool calls per tool (the call's task attribute, else its session's task). $1 task id.
pub const TOOLS_SQL: &str = "
    SELECT tc.tool_name, count(*) AS calls, count(*) FILTER (WHERE tc.success = false) AS errors,
           coalesce(sum(tc.duration_ms), 0)::DOUBLE AS duration_ms
    FROM tool_calls tc LEFT JOIN session_tasks st ON st.session_id = tc.session_id
    WHERE coalesce(tc.task_id, st.task_id) = $1::VARCHAR
    GROUP BY ALL ORDER BY calls DESC, tc.tool_name";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::link::{ATTRIBUTE, PATTERN};

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("db");
        crate::store::schema::migrate(&c).expect("migrate");
        c
    }

    #[test]
    fn upserts_are_idempotent_and_hand_edits_stick() {
        let c = db();
        let l = TaskLink { task_id: "T-1".into(), session_id: Some("s1".into()), how: ATTRIBUTE, time_us: 1_000_000 };
        let p = TaskLink { task_id: "T-1".into(), session_id: Some("s1".into()), how: PATTERN, time_us: 2_000_000 };
        upsert_links(&c, &[&l, &l, &p]).expect("links");
        upsert_links(&c, &[&l]).expect("again");
        let n: i64 = c.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0)).expect("n");
        let links: i64 = c.query_row("SELECT count(*) FROM task_sessions", [], |r| r.get(0)).expect("links");
        assert_eq!((n, links), (1, 2));
        let t = NewTask {
            source: Some("gh".into()),
            external_id: Some("42".into()),
            title: Some("Fix".into()),
            ..Default::default()
        };
        let (id, created) = create(&c, &t, "alice", 5).expect("create");
        assert!(created);
        let t2 = NewTask { title: Some("Fix it".into()), labels: Some(vec!["bug".into()]), ..t.clone() };
        assert_eq!(create(&c, &t2, "alice", 6).expect("upsert"), (id.clone(), false));
        let (title, labels): (String, String) = c
            .query_row("SELECT title, labels::VARCHAR FROM tasks WHERE task_id = ?", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert_eq!((title.as_str(), labels.as_str()), ("Fix it", "[bug]"));
        // Naming a telemetry task keeps its id.
        let named = NewTask { id: Some("T-1".into()), title: Some("Real title".into()), ..Default::default() };
        assert_eq!(create(&c, &named, "alice", 7).expect("name"), ("T-1".to_string(), false));
        assert!(matches!(apply_patch(&c, "nope", &Patch::default(), 1), Err(StoreError::NotFound(_))));
    }
}
