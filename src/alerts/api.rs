//! Alerts over HTTP. Under the read token: `GET /api/alerts/rules`, `GET /api/alerts/rules/{name}`,
//! `GET /api/alerts?state=firing|resolved|all&rule=&limit=`. Under the control token:
//! `POST /api/alerts/rules` (a rule as JSON), `PATCH /api/alerts/rules/{name}` (fields to change),
//! `DELETE /api/alerts/rules/{name}`. Rules from the alerts file are listed but not changeable
//! here (409). Errors are `{"error": "..."}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AlertError, RuleSpec};
use crate::api::{ApiError, ApiState};
use crate::auth::{Actor, ANONYMOUS};

impl IntoResponse for AlertError {
    fn into_response(self) -> Response {
        let status = match &self {
            AlertError::Invalid(_) | AlertError::File { .. } => StatusCode::BAD_REQUEST,
            AlertError::NotFound(_) => StatusCode::NOT_FOUND,
            AlertError::FromFile(_) => StatusCode::CONFLICT,
            AlertError::Store(e) => return ApiError(e.clone()).into_response(),
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

pub fn control_routes() -> axum::Router<ApiState> {
    use axum::routing::{patch, post};
    axum::Router::new()
        .route("/api/alerts/rules", post(create))
        .route("/api/alerts/rules/{name}", patch(update).delete(remove))
}

pub fn read_routes() -> axum::Router<ApiState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/alerts/rules", get(list_rules))
        .route("/api/alerts/rules/{name}", get(get_rule))
        .route("/api/alerts", get(list_alerts))
}

fn actor(a: Option<Extension<Actor>>) -> String {
    a.map(|Extension(Actor(n))| n).unwrap_or_else(|| ANONYMOUS.to_string())
}

async fn list_rules(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({ "rules": s.alerts.list() }))
}

async fn get_rule(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Json<Value>, AlertError> {
    let (r, file) = s.alerts.get(&name).ok_or(AlertError::NotFound(name))?;
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), json!(if file { "file" } else { "api" }));
    }
    Ok(Json(v))
}

async fn create(
    State(s): State<ApiState>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), AlertError> {
    let spec: RuleSpec = serde_json::from_slice(&body).map_err(|e| AlertError::Invalid(format!("bad rule: {e}")))?;
    let name = spec.name.clone();
    s.alerts.put(&s.store, spec, &actor(who), true).await?;
    Ok((StatusCode::CREATED, get_rule(State(s), Path(name)).await?.0.into()))
}

async fn update(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, AlertError> {
    let patch: Value = serde_json::from_slice(&body).map_err(|e| AlertError::Invalid(format!("bad patch: {e}")))?;
    let Value::Object(patch) = patch else { return Err(AlertError::Invalid("a patch is a JSON object".into())) };
    let (current, file) = s.alerts.get(&name).ok_or_else(|| AlertError::NotFound(name.clone()))?;
    if file {
        return Err(AlertError::FromFile(name));
    }
    let mut v = serde_json::to_value(current).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for (k, val) in patch {
            if k == "name" && val != json!(name) {
                return Err(AlertError::Invalid("a rule cannot be renamed".into()));
            }
            m.insert(k, val);
        }
    }
    let spec: RuleSpec = serde_json::from_value(v).map_err(|e| AlertError::Invalid(format!("bad patch: {e}")))?;
    s.alerts.put(&s.store, spec, &actor(who), false).await?;
    get_rule(State(s), Path(name)).await
}

async fn remove(State(s): State<ApiState>, Path(name): Path<String>) -> Result<StatusCode, AlertError> {
    s.alerts.delete(&s.store, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Default)]
struct AlertsParams {
    state: Option<String>,
    rule: Option<String>,
    limit: Option<u32>,
}

async fn list_alerts(State(s): State<ApiState>, Query(p): Query<AlertsParams>) -> Result<Json<Value>, AlertError> {
    let state = match p.state.as_deref().unwrap_or("all") {
        "all" | "" => None,
        st @ ("firing" | "resolved") => Some(st.to_string()),
        other => return Err(AlertError::Invalid(format!("state {other:?}: firing, resolved or all"))),
    };
    let limit = crate::api::params::page_limit(p.limit, 100, 1000);
    let rows = s
        .store
        .reader
        .query_objects(
            "SELECT * FROM alerts WHERE ($1::VARCHAR IS NULL OR state = $1::VARCHAR)
               AND ($2::VARCHAR IS NULL OR rule = $2::VARCHAR)
             ORDER BY fired_at DESC, alert_id LIMIT $3::BIGINT",
            vec![state, p.rule.filter(|r| !r.is_empty()), Some(limit.to_string())],
        )
        .await?;
    Ok(Json(json!({ "alerts": rows })))
}
