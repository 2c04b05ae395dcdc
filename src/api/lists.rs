//! `GET /api/sessions` and `GET /api/agents`: what was seen, newest activity first, with usage
//! totals. Filters: `agent`, `task`, `limit` (default 100, max 1000).

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, ApiState};

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub agent: Option<String>,
    pub task: Option<String>,
    pub limit: Option<u32>,
}

fn limit(p: &ListParams) -> String {
    p.limit.unwrap_or(100).clamp(1, 1000).to_string()
}

const SESSIONS_SQL: &str = "
    WITH page AS (
        SELECT * FROM sessions
        WHERE (?::VARCHAR IS NULL OR agent_id = ?::VARCHAR) AND (?::VARCHAR IS NULL OR task_id = ?::VARCHAR)
        ORDER BY last_seen DESC LIMIT ?::INTEGER
    ),
    mc AS (
        SELECT session_id, count(*) AS model_calls, sum(cost_usd) AS cost_usd,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens
        FROM model_calls WHERE session_id IN (SELECT session_id FROM page) GROUP BY session_id
    ),
    tc AS (
        SELECT session_id, count(*) AS tool_calls FROM tool_calls
        WHERE session_id IN (SELECT session_id FROM page) GROUP BY session_id
    )
    SELECT p.session_id, p.display_name, p.agent_id, p.service_name, p.task_id, p.first_seen, p.last_seen,
           coalesce(mc.model_calls, 0) AS model_calls, coalesce(tc.tool_calls, 0) AS tool_calls,
           mc.cost_usd, mc.input_tokens, mc.output_tokens, mc.cache_read_tokens, mc.cache_write_tokens
    FROM page p LEFT JOIN mc USING (session_id) LEFT JOIN tc USING (session_id)
    ORDER BY p.last_seen DESC";

const AGENTS_SQL: &str = "
    WITH page AS (
        SELECT * FROM agents WHERE (?::VARCHAR IS NULL OR agent_id = ?::VARCHAR)
        ORDER BY last_seen DESC LIMIT ?::INTEGER
    ),
    mc AS (
        SELECT agent_id, count(*) AS model_calls, sum(cost_usd) AS cost_usd,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
        FROM model_calls WHERE agent_id IN (SELECT agent_id FROM page) GROUP BY agent_id
    ),
    ss AS (
        SELECT agent_id, count(*) AS sessions FROM sessions
        WHERE agent_id IN (SELECT agent_id FROM page) GROUP BY agent_id
    )
    SELECT p.agent_id, p.display_name, p.service_name, p.first_seen, p.last_seen,
           coalesce(ss.sessions, 0) AS sessions, coalesce(mc.model_calls, 0) AS model_calls,
           mc.cost_usd, mc.input_tokens, mc.output_tokens
    FROM page p LEFT JOIN mc USING (agent_id) LEFT JOIN ss USING (agent_id)
    ORDER BY p.last_seen DESC";

pub async fn sessions(
    State(s): State<ApiState>,
    Query(p): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = vec![p.agent.clone(), p.agent.clone(), p.task.clone(), p.task.clone(), Some(limit(&p))];
    let rows = s.store.reader.query_objects(SESSIONS_SQL, params).await?;
    Ok(Json(serde_json::json!({ "sessions": rows })))
}

pub async fn agents(
    State(s): State<ApiState>,
    Query(p): Query<ListParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = vec![p.agent.clone(), p.agent.clone(), Some(limit(&p))];
    let rows = s.store.reader.query_objects(AGENTS_SQL, params).await?;
    Ok(Json(serde_json::json!({ "agents": rows })))
}
