//! Control over HTTP. Under the control tokens (state changes, audited with the token's name):
//! `POST /api/sessions/{id}/commands`, `PUT /api/approvals/policy`. Under the read token:
//! `GET /api/sessions/{id}/commands`, `GET /api/approvals`, `GET /api/approvals/policy`.
//! Errors are `{"error": "..."}`: 400 bad request, 404 unknown session, 409 a command that cannot
//! work now (with the session's `capabilities`), 503 when the store is unavailable.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::model::Kind;
use super::policy::PolicySpec;
use super::{persist, CommandRequest, ControlError};
use crate::api::ApiState;
use crate::auth::{Actor, ANONYMOUS};
use crate::store::StoreError;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ControlError::Invalid(_) | ControlError::Policy(_) => {
                (StatusCode::BAD_REQUEST, json!({ "error": self.to_string() }))
            }
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, json!({ "error": self.to_string() })),
            ControlError::Refused { reason, capabilities } => {
                (StatusCode::CONFLICT, json!({ "error": reason, "capabilities": capabilities }))
            }
            ControlError::Store(StoreError::Overloaded | StoreError::Closed | StoreError::Unavailable(_)) => {
                let mut r =
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": self.to_string() }))).into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
                );
                return r;
            }
            ControlError::Store(e) => (e.http_status(), json!({ "error": self.to_string() })),
        };
        (status, Json(body)).into_response()
    }
}

/// Routes under the control tokens.
pub fn control_routes() -> axum::Router<ApiState> {
    use axum::routing::{post, put};
    axum::Router::new()
        .route("/api/sessions/{id}/commands", post(post_command))
        .route("/api/approvals/policy", put(put_policy))
}

/// Routes under the read token.
pub fn read_routes() -> axum::Router<ApiState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/sessions/{id}/commands", get(list_commands))
        .route("/api/approvals", get(list_approvals))
        .route("/api/approvals/policy", get(get_policy))
}

/// `POST /api/sessions/{id}/commands` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub kind: String,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub tool_use_id: Option<String>,
    #[serde(default)]
    pub hard: bool,
    #[serde(default)]
    pub for_session: bool,
}

impl CommandBody {
    pub fn request(self) -> Result<CommandRequest, ControlError> {
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            ControlError::Invalid(format!("unknown kind {:?}: pause, resume, inject, kill, approve or deny", self.kind))
        })?;
        Ok(CommandRequest {
            kind,
            message: self.message,
            reason: self.reason,
            tool_use_id: self.tool_use_id,
            hard: self.hard,
            for_session: self.for_session,
        })
    }
}

fn actor(a: Option<Extension<Actor>>) -> String {
    a.map(|Extension(Actor(n))| n).unwrap_or_else(|| ANONYMOUS.to_string())
}

async fn post_command(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let body: CommandBody =
        serde_json::from_slice(&body).map_err(|e| ControlError::Invalid(format!("bad command body: {e}")))?;
    let cmd = s.control.issue(&id, body.request()?, &actor(who)).await?;
    Ok((StatusCode::CREATED, Json(cmd.to_json())))
}

#[derive(Debug, Deserialize, Default)]
struct ListParams {
    limit: Option<u32>,
    session: Option<String>,
    status: Option<String>,
}

async fn list_commands(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ControlError> {
    let limit = crate::api::params::page_limit(p.limit, 200, 1000);
    let rows = s
        .store
        .reader
        .query_objects(persist::SESSION_COMMANDS_SQL, vec![Some(id.clone()), Some(limit.to_string())])
        .await?;
    if rows.is_empty() && !crate::api::sessions::exists(&s, &id).await.map_err(|e| e.0)? {
        return Err(ControlError::NotFound(id));
    }
    Ok(Json(json!({ "commands": rows })))
}

/// `GET /api/approvals?session=&status=pending|approved|denied|expired|all&limit=`: pending ones
/// from memory (default), others from the store.
async fn list_approvals(State(s): State<ApiState>, Query(p): Query<ListParams>) -> Result<Json<Value>, ControlError> {
    let session = p.session.filter(|v| !v.is_empty());
    match p.status.as_deref().unwrap_or("pending") {
        "pending" => Ok(Json(json!({ "approvals": s.control.pending_approvals(session.as_deref()) }))),
        st @ ("approved" | "denied" | "expired" | "all") => {
            let limit = crate::api::params::page_limit(p.limit, 100, 1000);
            let status = (st != "all").then(|| st.to_string());
            let rows = s
                .store
                .reader
                .query_objects(persist::APPROVALS_SQL, vec![session, status, Some(limit.to_string())])
                .await?;
            Ok(Json(json!({ "approvals": rows })))
        }
        other => Err(ControlError::Invalid(format!("status {other:?}: pending, approved, denied, expired or all"))),
    }
}

async fn get_policy(State(s): State<ApiState>) -> Json<Value> {
    Json(s.control.policy().to_json())
}

async fn put_policy(
    State(s): State<ApiState>,
    who: Option<Extension<Actor>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ControlError> {
    let spec: PolicySpec =
        serde_json::from_slice(&body).map_err(|e| ControlError::Invalid(format!("bad policy: {e}")))?;
    Ok(Json(s.control.set_policy(spec, &actor(who)).await?))
}
