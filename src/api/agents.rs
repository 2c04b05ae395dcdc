//! `GET /api/agents?agent=&status=&limit=`: the roster, newest activity first. Each agent has a
//! `status` from its sessions (running if any is running, else errored, idle or paused if any, in
//! that order, else finished), `status_counts`, `current_session` (its most recent session that is
//! not finished), `current_model` (the model of its latest model call), `tokens_today` (input +
//! output) and `cost_today` (UTC day so far, from the `cost_hourly` rollup), `last_activity` and
//! its number of `sessions`. Session status follows `sessions.rs` (NULL: running when seen in the
//! last 60 s, else finished).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::params::{comma_list, page_limit};
use super::sessions::{now_us, refused, STATUSES};
use super::{ApiError, ApiState};

/// Parameters: $1 now (µs, UTC), $2 agent, $3 statuses (comma list), $4 limit.
/// `current_model`: the latest model call within a day of the page's oldest `last_seen` (keeps the
/// scan of `model_calls` short), else the model of the agent's newest session that has one.
const AGENTS_SQL: &str = "
    WITH k AS (SELECT make_timestamp($1::BIGINT) AS now),
    ss AS (
        SELECT s.agent_id, s.session_id, s.last_seen, coalesce(s.last_activity, s.last_seen) AS activity, s.model,
               coalesce(s.status, CASE WHEN s.last_seen >= k.now - INTERVAL 60 SECOND THEN 'running'
                                       ELSE 'finished' END) AS st
        FROM sessions s CROSS JOIN k WHERE s.agent_id IS NOT NULL
    ),
    per AS (
        SELECT agent_id, count(*) AS sessions,
               count(*) FILTER (WHERE st = 'running') AS running, count(*) FILTER (WHERE st = 'idle') AS idle,
               count(*) FILTER (WHERE st = 'paused') AS paused, count(*) FILTER (WHERE st = 'errored') AS errored,
               count(*) FILTER (WHERE st = 'finished') AS finished,
               arg_max(session_id, (last_seen, session_id)) FILTER (WHERE st <> 'finished') AS current_session,
               arg_max(model, last_seen) FILTER (WHERE model IS NOT NULL) AS session_model,
               max(activity) AS activity
        FROM ss GROUP BY agent_id
    ),
    ag AS (
        SELECT a.agent_id, a.display_name, a.service_name, a.first_seen, a.last_seen,
               CASE WHEN per.running > 0 THEN 'running' WHEN per.errored > 0 THEN 'errored'
                    WHEN per.idle > 0 THEN 'idle' WHEN per.paused > 0 THEN 'paused' ELSE 'finished' END AS status,
               {'running': coalesce(per.running, 0), 'idle': coalesce(per.idle, 0),
                'paused': coalesce(per.paused, 0), 'errored': coalesce(per.errored, 0),
                'finished': coalesce(per.finished, 0)} AS status_counts,
               per.current_session, per.session_model,
               CASE WHEN per.activity > a.last_seen THEN per.activity ELSE a.last_seen END AS last_activity,
               coalesce(per.sessions, 0) AS sessions
        FROM agents a LEFT JOIN per USING (agent_id)
    ),
    page AS (
        SELECT * FROM ag
        WHERE ($2::VARCHAR IS NULL OR agent_id = $2::VARCHAR)
          AND ($3::VARCHAR IS NULL OR list_contains(string_split($3::VARCHAR, ','), status))
        ORDER BY last_activity DESC, agent_id
        LIMIT $4::BIGINT
    ),
    lm AS (
        SELECT agent_id, arg_max(model, time) AS model FROM model_calls
        WHERE agent_id IN (SELECT agent_id FROM page) AND model IS NOT NULL
          AND time >= (SELECT min(last_seen) FROM page) - INTERVAL 1 DAY
        GROUP BY agent_id
    ),
    today AS (
        SELECT h.agent_id, sum(h.input_tokens + h.output_tokens) AS tokens, sum(h.cost_usd) AS cost
        FROM cost_hourly h CROSS JOIN k
        WHERE h.hour >= date_trunc('day', k.now) AND h.agent_id IN (SELECT agent_id FROM page)
        GROUP BY h.agent_id
    )
    SELECT p.agent_id, p.display_name, p.service_name, p.status, p.status_counts, p.current_session,
           coalesce(lm.model, p.session_model) AS current_model,
           coalesce(today.tokens, 0)::BIGINT AS tokens_today, coalesce(today.cost, 0)::DOUBLE AS cost_today,
           p.first_seen, p.last_seen, p.last_activity, p.sessions
    FROM page p LEFT JOIN lm USING (agent_id) LEFT JOIN today USING (agent_id)
    ORDER BY p.last_activity DESC, p.agent_id";

#[derive(Debug, Deserialize, Default)]
pub struct AgentsParams {
    pub agent: Option<String>,
    pub status: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /api/agents`: `{"agents": [...]}`.
pub async fn list(State(s): State<ApiState>, Query(p): Query<AgentsParams>) -> Result<Json<Value>, ApiError> {
    let statuses = comma_list("status", p.status.as_deref(), STATUSES).map_err(refused)?;
    let agent = p.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_string);
    let limit = page_limit(p.limit, 100, 1000);
    let params = vec![Some(now_us().to_string()), agent, statuses, Some(limit.to_string())];
    let rows = s.store.reader.query_objects(AGENTS_SQL, params).await?;
    Ok(Json(json!({ "agents": rows })))
}
