//! `GET /api/sessions` (session summaries, newest activity first, cursor-paginated) and
//! `GET /api/sessions/{id}` (one summary with its children, state transitions and per-model usage).
//! A summary carries the same field names as the live `session` message. Sessions the state
//! tracker has not written a status for yet (`status` NULL) are reported as `running` when seen in
//! the last 60 s, else `finished` (ended at `last_seen`). Each summary also carries `control` (the
//! control state) and `capabilities` (which commands can work now, and why not otherwise).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::params::{comma_list, decode_cursor, encode_cursor, page_limit};
use super::{ApiError, ApiState};
use crate::store::StoreError;
use agent_console_conventions::status;

/// Every session status, as accepted by `?status=`.
pub const STATUSES: &[&str] = &[status::RUNNING, status::IDLE, status::PAUSED, status::ERRORED, status::FINISHED];

/// Most children and transitions returned with one session.
const DETAIL_MAX: u32 = 1000;

/// Session summaries. Parameters: $1 now (µs, UTC), $2 session id, $3 agent, $4 task, $5 parent,
/// $6 statuses (comma list), $7/$8 cursor (last_seen µs, session id: rows strictly after it in
/// `last_seen DESC, session_id DESC` order), $9 limit. NULL parameters do not filter.
/// `errors` = failed model calls + failed tool calls + error log records (severity >= 17,
/// `claude_code.api_error`, hook `StopFailure`, and hook `PostToolUseFailure` unless that tool call
/// is already a failed `tool_calls` row) + error spans that are neither LLM nor tool spans.
const SUMMARY_SQL: &str = "
    WITH k AS (SELECT make_timestamp($1::BIGINT) AS now),
    base AS (
        SELECT s.*, k.now,
               coalesce(s.status, CASE WHEN s.last_seen >= k.now - INTERVAL 60 SECOND THEN 'running'
                                       ELSE 'finished' END) AS eff_status
        FROM sessions s CROSS JOIN k
    ),
    -- Materialized: referenced by every aggregate below (measured 89 -> 67 ms on a small store).
    page AS MATERIALIZED (
        SELECT * FROM base
        WHERE ($2::VARCHAR IS NULL OR session_id = $2::VARCHAR)
          AND ($3::VARCHAR IS NULL OR agent_id = $3::VARCHAR)
          AND ($4::VARCHAR IS NULL OR task_id = $4::VARCHAR)
          AND ($5::VARCHAR IS NULL OR parent_session_id = $5::VARCHAR)
          AND ($6::VARCHAR IS NULL OR list_contains(string_split($6::VARCHAR, ','), eff_status))
          AND ($7::BIGINT IS NULL OR last_seen < make_timestamp($7::BIGINT)
               OR (last_seen = make_timestamp($7::BIGINT) AND session_id < $8::VARCHAR))
        ORDER BY last_seen DESC, session_id DESC
        LIMIT $9::BIGINT
    ),
    mc AS (
        SELECT session_id, count(*) AS model_calls, count(*) FILTER (WHERE error) AS failed,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
               sum(cost_usd) AS cost_usd, arg_max(model, time) FILTER (WHERE model IS NOT NULL) AS model,
               sum(cost_usd) FILTER (WHERE billing <> 'subscription') AS spend_usd,
               sum(cost_usd) FILTER (WHERE billing = 'subscription') AS estimated_usd
        FROM model_call_costs WHERE session_id IN (SELECT session_id FROM page) GROUP BY session_id
    ),
    tc AS (
        SELECT session_id, count(*) AS tool_calls, count(*) FILTER (WHERE success = false) AS failed
        FROM tool_calls WHERE session_id IN (SELECT session_id FROM page) GROUP BY session_id
    ),
    lg AS (
        SELECT l.session_id, count(*) AS failed FROM logs l
        WHERE l.session_id IN (SELECT session_id FROM page)
          AND (l.severity_number >= 17
               OR l.event_name IN ('claude_code.api_error', 'StopFailure', 'PostToolUseFailure'))
          AND NOT (l.event_name = 'PostToolUseFailure' AND EXISTS (
                SELECT 1 FROM tool_calls t
                WHERE t.session_id = l.session_id AND t.success = false
                  AND t.tool_call_id = l.attributes->>'tool_use_id'))
        GROUP BY l.session_id
    ),
    sp AS (
        SELECT session_id, count(*) AS failed FROM spans
        WHERE session_id IN (SELECT session_id FROM page) AND (error OR status_code = 'error')
          AND coalesce(span_type, '') NOT IN ('llm', 'tool')
        GROUP BY session_id
    ),
    done AS (
        SELECT *, CASE WHEN status IS NULL AND eff_status = 'finished' THEN last_seen ELSE ended_at END AS end_time
        FROM page
    )
    SELECT p.session_id, p.display_name, p.agent_id, p.service_name, coalesce(stk.task_id, p.task_id) AS task_id, p.parent_session_id,
           p.eff_status AS status, coalesce(p.stuck, false) AS stuck,
           coalesce(p.waiting, false) AND p.eff_status <> 'finished' AS waiting,
           coalesce(p.long_tool, false) AND p.eff_status <> 'finished' AS long_tool, p.status_since, p.status_reason,
           p.first_seen, p.last_seen, coalesce(p.last_activity, p.last_seen) AS last_activity,
           p.end_time AS ended_at,
           greatest(epoch_us(coalesce(p.end_time, p.now)) - epoch_us(p.first_seen), 0) / 1e6 AS elapsed_s,
           coalesce(p.model, mc.model) AS model,
           coalesce(mc.model_calls, 0) AS model_calls, coalesce(tc.tool_calls, 0) AS tool_calls,
           (coalesce(mc.failed, 0) + coalesce(tc.failed, 0) + coalesce(lg.failed, 0) + coalesce(sp.failed, 0))::BIGINT
               AS errors,
           coalesce(mc.input_tokens, 0)::BIGINT AS input_tokens, coalesce(mc.output_tokens, 0)::BIGINT AS output_tokens,
           coalesce(mc.cache_read_tokens, 0)::BIGINT AS cache_read_tokens,
           coalesce(mc.cache_write_tokens, 0)::BIGINT AS cache_write_tokens,
           coalesce(mc.cost_usd, 0)::DOUBLE AS cost_usd,
           -- Cost provenance (billing.rs): the session's mark, else its agent's, else api; the
           -- calls' cost split into spend (API-billed) and estimate (subscription, list price).
           coalesce(bs.billing, ba.billing, 'api') AS billing,
           CASE WHEN bs.id IS NOT NULL THEN bs.plan ELSE ba.plan END AS billing_plan,
           coalesce(mc.spend_usd, 0)::DOUBLE AS spend_usd, coalesce(mc.estimated_usd, 0)::DOUBLE AS estimated_usd,
           epoch_us(p.last_seen) AS _cursor_us
    FROM done p LEFT JOIN mc USING (session_id) LEFT JOIN tc USING (session_id)
         LEFT JOIN billing_marks bs ON bs.kind = 'session' AND bs.id = p.session_id
         LEFT JOIN billing_marks ba ON ba.kind = 'agent' AND ba.id = p.agent_id
         LEFT JOIN lg USING (session_id) LEFT JOIN sp USING (session_id)
         LEFT JOIN (SELECT * FROM session_tasks WHERE session_id IN (SELECT session_id FROM page)) stk
             USING (session_id)
    ORDER BY p.last_seen DESC, p.session_id DESC";

/// A session's state changes, oldest first. $1 session id, $2 limit.
const TRANSITIONS_SQL: &str = "
    SELECT time, from_status, to_status, stuck, reason
    FROM session_transitions WHERE session_id = $1::VARCHAR
    ORDER BY time, rowid LIMIT $2::BIGINT";

/// A session's usage per model and provider, most expensive first. $1 session id.
const MODELS_SQL: &str = "
    SELECT model, provider, count(*) AS calls,
           coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
           coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
           coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
           coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd,
           min(time) AS first_call, max(time) AS last_call
    FROM model_calls WHERE session_id = $1::VARCHAR
    GROUP BY ALL ORDER BY cost_usd DESC, calls DESC, model NULLS LAST, provider NULLS LAST";

/// A session's cost per model, provider and billing (merged into `MODELS_SQL`'s rows as
/// `spend_usd` / `estimated_usd`; a separate query: with the marks joined into `MODELS_SQL`,
/// DuckDB returned its BIGINT token sums truncated to 8 bits). $1 session id.
const MODEL_BILLING_SQL: &str = "
    SELECT model, provider, billing, coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd
    FROM model_call_costs WHERE session_id = $1::VARCHAR GROUP BY ALL";

#[derive(Debug, Deserialize, Default)]
pub struct SessionsParams {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub task: Option<String>,
    pub parent: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// What to select with `SUMMARY_SQL`.
#[derive(Debug, Default)]
struct Filter {
    session: Option<String>,
    agent: Option<String>,
    task: Option<String>,
    parent: Option<String>,
    statuses: Option<String>,
    after: Option<(i64, String)>,
    limit: u32,
}

/// The current time in microseconds since the epoch (UTC).
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

pub(crate) fn refused(msg: String) -> ApiError {
    ApiError(StoreError::Refused(msg))
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Summaries matching `f`, each with its cursor (`last_seen` µs) taken out of the row.
async fn summaries(s: &ApiState, f: Filter) -> Result<Vec<(Map<String, Value>, i64)>, ApiError> {
    let (after_us, after_id) = match f.after {
        Some((us, id)) => (Some(us.to_string()), Some(id)),
        None => (None, None),
    };
    let params = vec![
        Some(now_us().to_string()),
        f.session,
        f.agent,
        f.task,
        f.parent,
        f.statuses,
        after_us,
        after_id,
        Some(f.limit.to_string()),
    ];
    let rows = s.store.reader.query_objects(SUMMARY_SQL, params).await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let us = r.remove("_cursor_us").and_then(|v| v.as_i64()).unwrap_or(0);
            add_control(s, &mut r);
            (r, us)
        })
        .collect())
}

/// The session's `control` state and `capabilities` (what each command kind can do now, and why
/// not otherwise), from the control plane.
fn add_control(s: &ApiState, r: &mut Map<String, Value>) {
    let Some(id) = r.get("session_id").and_then(Value::as_str).map(str::to_string) else { return };
    let id = id.as_str();
    let (control, capabilities) = s.control.session_view(id, r.get("service_name").and_then(Value::as_str));
    // A tool call held for approval is the session waiting for a human.
    if !s.control.pending_approvals(Some(id)).is_empty() {
        r.insert("waiting".into(), Value::Bool(true));
    }
    r.insert("control".into(), control);
    r.insert("capabilities".into(), capabilities);
}

/// `GET /api/sessions?status=&agent=&task=&parent=&limit=&cursor=`.
pub async fn list(State(s): State<ApiState>, Query(p): Query<SessionsParams>) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(p.limit, 100, 1000);
    let after = match non_empty(&p.cursor) {
        None => None,
        Some(c) => {
            let parts =
                decode_cursor(&c, 2).ok_or_else(|| refused(format!("cursor {c:?} is not a sessions cursor")))?;
            let us = parts[0].parse::<i64>().map_err(|_| refused(format!("cursor {c:?} is not a sessions cursor")))?;
            Some((us, parts[1].clone()))
        }
    };
    let filter = Filter {
        session: None,
        agent: non_empty(&p.agent),
        task: non_empty(&p.task),
        parent: non_empty(&p.parent),
        statuses: comma_list("status", p.status.as_deref(), STATUSES).map_err(refused)?,
        after,
        // One more than asked, to know whether another page follows.
        limit: limit + 1,
    };
    let mut rows = summaries(&s, filter).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = match rows.last() {
        Some((r, us)) if more => {
            let id = r.get("session_id").and_then(Value::as_str).unwrap_or_default();
            Some(encode_cursor(&[&us.to_string(), id]))
        }
        _ => None,
    };
    let sessions: Vec<Value> = rows.into_iter().map(|(r, _)| Value::Object(r)).collect();
    Ok(Json(json!({ "sessions": sessions, "next_cursor": next_cursor })))
}

/// `GET /api/sessions/{id}`: `{"session", "children", "transitions", "models"}`; 404 when unknown.
pub async fn detail(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let one = Filter { session: Some(id.clone()), limit: 1, ..Filter::default() };
    let kids = Filter { parent: Some(id.clone()), limit: DETAIL_MAX, ..Filter::default() };
    let reader = &s.store.reader;
    let (mut one, kids, transitions, models, billed) = tokio::try_join!(
        summaries(&s, one),
        summaries(&s, kids),
        async {
            reader
                .query_objects(TRANSITIONS_SQL, vec![Some(id.clone()), Some(DETAIL_MAX.to_string())])
                .await
                .map_err(ApiError)
        },
        async { reader.query_objects(MODELS_SQL, vec![Some(id.clone())]).await.map_err(ApiError) },
        async { reader.query_objects(MODEL_BILLING_SQL, vec![Some(id.clone())]).await.map_err(ApiError) },
    )?;
    let models: Vec<Map<String, Value>> = models
        .into_iter()
        .map(|mut m| {
            let same =
                |b: &Map<String, Value>| b.get("model") == m.get("model") && b.get("provider") == m.get("provider");
            let split = crate::billing::split(billed.iter().filter(|b| same(b)).map(|b| {
                (
                    b.get("billing").and_then(Value::as_str).unwrap_or("api").to_string(),
                    b.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0),
                )
            }));
            m.insert("spend_usd".into(), split["spend_usd"].clone());
            m.insert("estimated_usd".into(), split["estimated_usd"].clone());
            m
        })
        .collect();
    let Some((session, _)) = one.pop() else {
        return Err(ApiError(StoreError::NotFound(format!("no session {id:?}"))));
    };
    let children: Vec<Value> = kids.into_iter().map(|(r, _)| Value::Object(r)).collect();
    Ok(Json(json!({
        "session": session,
        "children": children,
        "transitions": transitions,
        "models": models,
    })))
}

/// Whether a session exists (for the 404 of sub-resources).
pub(crate) async fn exists(s: &ApiState, id: &str) -> Result<bool, ApiError> {
    let rows = s
        .store
        .reader
        .query_objects("SELECT 1 AS one FROM sessions WHERE session_id = $1::VARCHAR", vec![Some(id.to_string())])
        .await?;
    Ok(!rows.is_empty())
}
