//! Tasks over HTTP. Under the read token: `GET /api/tasks` (cards: `state`, `agent`, `label`,
//! `q` text, `archived=1`, cursor pages like `/api/sessions`), `GET /api/tasks/{id}` (the card,
//! its sessions with children, cost reported / computed / unpriced, tokens, models, tools,
//! errors, elapsed and active time). Under the control token: `POST /api/tasks` (idempotent on
//! source + external_id), `PATCH /api/tasks/{id}`, `POST /api/tasks/{id}/archive`,
//! `PUT` / `DELETE /api/tasks/{id}/sessions/{session}`, and `POST /api/tasks/{id}/dispatch
//! {"session", "message"?}`: the task's text sent to a running session as an ordinary audited
//! `inject` command (Claude Code: at its next hook; OpenClaw: `sessions.send`), and the session
//! linked to the task. Errors are `{"error": "..."}`; a session that cannot take the message is a
//! 409 with the reason and its capabilities, and nothing is linked.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::model::{NewTask, Patch, STATES};
use super::{store, TaskError};
use crate::api::params::{comma_list, decode_cursor, encode_cursor, page_limit};
use crate::api::sessions::now_us;
use crate::api::{ApiError, ApiState};
use crate::auth::{Actor, ANONYMOUS};
use crate::store::StoreError;

impl IntoResponse for TaskError {
    fn into_response(self) -> Response {
        match self {
            TaskError::Invalid(_) | TaskError::Pattern(_) => {
                (StatusCode::BAD_REQUEST, Json(json!({ "error": self.to_string() }))).into_response()
            }
            TaskError::NotFound(_) => {
                (StatusCode::NOT_FOUND, Json(json!({ "error": self.to_string() }))).into_response()
            }
            TaskError::Store(e) => ApiError(e).into_response(),
        }
    }
}

/// Routes under the control tokens.
pub fn control_routes() -> axum::Router<ApiState> {
    use axum::routing::{patch, post, put};
    axum::Router::new()
        .route("/api/tasks", post(create))
        .route("/api/tasks/{id}", patch(patch_task))
        .route("/api/tasks/{id}/archive", post(archive))
        .route("/api/tasks/{id}/sessions/{session}", put(link).delete(unlink))
        .route("/api/tasks/{id}/dispatch", post(dispatch))
}

/// Routes under the read token.
pub fn read_routes() -> axum::Router<ApiState> {
    use axum::routing::get;
    axum::Router::new().route("/api/tasks", get(list)).route("/api/tasks/{id}", get(detail))
}

fn actor(a: Option<Extension<Actor>>) -> String {
    a.map(|Extension(Actor(n))| n).unwrap_or_else(|| ANONYMOUS.to_string())
}

fn clock(s: &ApiState) -> i64 {
    (s.store.clock())()
}

async fn card(s: &ApiState, id: &str) -> Result<Map<String, Value>, TaskError> {
    let mut rows = cards(s, Some(id.to_string()), None, None, None, None, false, None, 1).await?;
    rows.pop().map(|(r, _)| r).ok_or_else(|| TaskError::NotFound(id.to_string()))
}

#[allow(clippy::too_many_arguments)]
async fn cards(
    s: &ApiState,
    id: Option<String>,
    states: Option<String>,
    agent: Option<String>,
    label: Option<String>,
    text: Option<String>,
    archived: bool,
    after: Option<(i64, String)>,
    limit: u32,
) -> Result<Vec<(Map<String, Value>, i64)>, TaskError> {
    let (after_us, after_id) = match after {
        Some((us, id)) => (Some(us.to_string()), Some(id)),
        None => (None, None),
    };
    let params = vec![
        Some(now_us().to_string()),
        id,
        states,
        agent,
        label,
        text,
        Some(if archived { "1" } else { "0" }.to_string()),
        after_us,
        after_id,
        Some(limit.to_string()),
    ];
    let rows = s.store.reader.query_objects(store::CARDS_SQL, params).await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            let us = r.remove("_cursor_us").and_then(|v| v.as_i64()).unwrap_or(0);
            (r, us)
        })
        .collect())
}

async fn create(
    State(s): State<ApiState>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), TaskError> {
    let t = NewTask::parse(&body)?;
    let (by, now) = (actor(who), clock(&s));
    let (id, created) = s.store.apply(move |c| store::create(c, &t, &by, now)).await?;
    s.tasks.touch(&id);
    let task = card(&s, &id).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(Value::Object(task))))
}

async fn patch_task(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, TaskError> {
    let p = Patch::parse(&body)?;
    let (now, tid) = (clock(&s), id.clone());
    s.store.apply(move |c| store::apply_patch(c, &tid, &p, now)).await.map_err(not_found)?;
    s.tasks.touch(&id);
    Ok(Json(Value::Object(card(&s, &id).await?)))
}

async fn archive(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, TaskError> {
    let p = Patch { archived: Some(true), ..Patch::default() };
    let (now, tid) = (clock(&s), id.clone());
    s.store.apply(move |c| store::apply_patch(c, &tid, &p, now)).await.map_err(not_found)?;
    s.tasks.touch(&id);
    Ok(Json(Value::Object(card(&s, &id).await?)))
}

fn not_found(e: StoreError) -> TaskError {
    match e {
        StoreError::NotFound(m) => TaskError::NotFound(m.trim_start_matches("no task ").trim_matches('"').to_string()),
        StoreError::Refused(m) => TaskError::Invalid(m),
        other => TaskError::Store(other),
    }
}

fn check_session(session: &str) -> Result<(), TaskError> {
    if session.is_empty() || session.len() > 512 {
        return Err(TaskError::Invalid("a session id has 1 to 512 bytes".into()));
    }
    Ok(())
}

async fn link(
    State(s): State<ApiState>,
    Path((id, session)): Path<(String, String)>,
    who: Option<Extension<Actor>>,
) -> Result<Json<Value>, TaskError> {
    check_session(&session)?;
    let (by, now, tid, sid) = (actor(who), clock(&s), id.clone(), session.clone());
    let added = s.store.apply(move |c| store::link(c, &tid, &sid, &by, now)).await.map_err(not_found)?;
    s.tasks.touch(&id);
    Ok(Json(json!({ "task_id": id, "session_id": session, "linked": true, "added": added })))
}

async fn unlink(
    State(s): State<ApiState>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Json<Value>, TaskError> {
    check_session(&session)?;
    let (now, tid, sid) = (clock(&s), id.clone(), session.clone());
    let removed = s.store.apply(move |c| store::unlink(c, &tid, &sid, now)).await.map_err(not_found)?;
    s.tasks.touch(&id);
    Ok(Json(json!({ "task_id": id, "session_id": session, "linked": false, "removed": removed })))
}

/// `POST /api/tasks/{id}/dispatch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchBody {
    session: String,
    /// Sent instead of the task's own text.
    #[serde(default)]
    message: Option<String>,
}

/// What a dispatched session is told: the task's id, title, description and url.
pub fn dispatch_text(task: &Map<String, Value>) -> String {
    let field = |k: &str| task.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
    let id = field("task_id").unwrap_or("?");
    let mut text = match field("title") {
        Some(t) if t != id => format!("Task {id}: {t}"),
        _ => format!("Task {id}"),
    };
    if let Some(d) = field("description") {
        text.push_str("\n\n");
        text.push_str(d);
    }
    if let Some(u) = field("url") {
        text.push_str("\n\n");
        text.push_str(u);
    }
    let max = crate::control::MAX_TEXT_BYTES;
    if text.len() > max {
        let mut cut = max - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

async fn dispatch(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Response> {
    let b: DispatchBody =
        serde_json::from_slice(&body).map_err(|e| TaskError::Invalid(format!("dispatch body: {e}")).into_response())?;
    check_session(&b.session).map_err(IntoResponse::into_response)?;
    let task = card(&s, &id).await.map_err(IntoResponse::into_response)?;
    let by = actor(who);
    let mut req = crate::control::CommandRequest::new(crate::control::model::Kind::Inject);
    req.message = Some(b.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| dispatch_text(&task)));
    // Refused commands link nothing: the session never heard of the task.
    let cmd = s.control.issue(&b.session, req, &by).await.map_err(IntoResponse::into_response)?;
    let (now, tid, sid) = (clock(&s), id.clone(), b.session.clone());
    let added =
        s.store.apply(move |c| store::link(c, &tid, &sid, &by, now)).await.map_err(|e| not_found(e).into_response())?;
    s.tasks.touch(&id);
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "task_id": id, "session_id": b.session, "linked": true, "added": added, "command": cmd.to_json() }),
        ),
    ))
}

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    pub state: Option<String>,
    pub agent: Option<String>,
    pub label: Option<String>,
    pub q: Option<String>,
    pub archived: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// `GET /api/tasks?state=&agent=&label=&q=&archived=1&limit=&cursor=`.
async fn list(State(s): State<ApiState>, Query(p): Query<ListParams>) -> Result<Json<Value>, TaskError> {
    let limit = page_limit(p.limit, 100, 1000);
    let bad = |c: &str| TaskError::Invalid(format!("cursor {c:?} is not a tasks cursor"));
    let after = match non_empty(&p.cursor) {
        None => None,
        Some(c) => {
            let parts = decode_cursor(&c, 2).ok_or_else(|| bad(&c))?;
            Some((parts[0].parse::<i64>().map_err(|_| bad(&c))?, parts[1].clone()))
        }
    };
    let states = comma_list("state", p.state.as_deref(), STATES).map_err(TaskError::Invalid)?;
    let archived = matches!(p.archived.as_deref(), Some("1" | "true"));
    let mut rows =
        cards(&s, None, states, non_empty(&p.agent), non_empty(&p.label), non_empty(&p.q), archived, after, limit + 1)
            .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = match rows.last() {
        Some((r, us)) if more => {
            let id = r.get("task_id").and_then(Value::as_str).unwrap_or_default();
            Some(encode_cursor(&[&us.to_string(), id]))
        }
        _ => None,
    };
    let tasks: Vec<Value> = rows.into_iter().map(|(r, _)| Value::Object(r)).collect();
    Ok(Json(json!({ "tasks": tasks, "next_cursor": next_cursor })))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn time_us(v: &Value) -> Option<i64> {
    v.as_str().and_then(crate::api::params::parse_instant)
}

/// `GET /api/tasks/{id}`.
async fn detail(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, TaskError> {
    let reader = &s.store.reader;
    let now = now_us();
    let q = |sql: &'static str, params: Vec<Option<String>>| async move {
        reader.query_objects(sql, params).await.map_err(TaskError::Store)
    };
    let (task, sessions, cost, models, tools, billed) = tokio::try_join!(
        card(&s, &id),
        q(store::SESSIONS_SQL, vec![Some(now.to_string()), Some(id.clone())]),
        q(store::COST_SQL, vec![Some(id.clone())]),
        q(store::MODELS_SQL, vec![Some(id.clone())]),
        q(store::TOOLS_SQL, vec![Some(id.clone())]),
        q(crate::billing::TASK_BILLING_SQL, vec![Some(id.clone())]),
    )?;
    // Cost provenance: spend (API-billed) vs estimate (subscription, list price).
    let billing = crate::billing::split(billed.iter().map(|r| {
        (
            r.get("billing").and_then(Value::as_str).unwrap_or("api").to_string(),
            r.get("cost_usd").map(num).unwrap_or(0.0),
        )
    }));
    let mut split = Map::new();
    for k in ["reported", "computed", "unpriced"] {
        split.insert(k.into(), json!({ "cost_usd": 0.0, "calls": 0 }));
    }
    let mut total = 0.0;
    for r in &cost {
        let k = r.get("cost_source").and_then(Value::as_str).unwrap_or("unpriced").to_string();
        let c = r.get("cost_usd").map(num).unwrap_or(0.0);
        total += c;
        split.insert(k, json!({ "cost_usd": c, "calls": r.get("calls").map(int).unwrap_or(0) }));
    }
    let sum = |rows: &[Map<String, Value>], k: &str| rows.iter().map(|r| r.get(k).map(int).unwrap_or(0)).sum::<i64>();
    let fsum =
        |rows: &[Map<String, Value>], k: &str| rows.iter().map(|r| r.get(k).map(num).unwrap_or(0.0)).sum::<f64>();
    let tokens = json!({
        "input": sum(&models, "input_tokens"),
        "output": sum(&models, "output_tokens"),
        "cache_read": sum(&models, "cache_read_tokens"),
        "cache_write": sum(&models, "cache_write_tokens"),
    });
    let errors = sum(&models, "errors") + sum(&tools, "errors");
    // Elapsed: first session start to the last session end (now while one is live). Active:
    // time spent in model and tool calls.
    let first = sessions.iter().filter_map(|r| r.get("first_seen").and_then(time_us)).min();
    let live = sessions.iter().any(|r| r.get("status").and_then(Value::as_str) != Some("finished"));
    let last = if live {
        Some(now)
    } else {
        sessions.iter().filter_map(|r| r.get("ended_at").or(r.get("last_seen")).and_then(time_us)).max()
    };
    let elapsed_s = match (first, last) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
        _ => 0.0,
    };
    let active_s = (fsum(&models, "duration_ms") + fsum(&tools, "duration_ms")) / 1e3;
    Ok(Json(json!({
        "task": task,
        "sessions": sessions,
        "cost": {
            "total_usd": total, "by_source": split,
            "spend_usd": billing["spend_usd"], "estimated_usd": billing["estimated_usd"], "billing": billing["billing"],
        },
        "tokens": tokens,
        "models": models,
        "model_calls": sum(&models, "calls"),
        "tools": tools,
        "tool_calls": sum(&tools, "calls"),
        "errors": errors,
        "elapsed_s": elapsed_s,
        "active_s": active_s,
    })))
}
