//! `POST /openclaw/inbox`: the `agent-console-openclaw` shim's long-poll for its gateway's
//! commands (the collector never dials out). Same token and body cap as the OTLP routes; the
//! logic is the control plane's (`control::openclaw_link`). Errors are `{"error": "..."}`: 400 bad
//! body, 401 token, 413 too large, 503 with Retry-After when the store cannot record a step.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::decode::Encoding;
use super::http::{error_response, read_body, HttpReceiver};
use super::ingest::IngestError;
use crate::control::openclaw_link::Poll;
use crate::control::Control;

#[derive(Clone)]
pub struct InboxState {
    http: HttpReceiver,
    control: Control,
}

pub fn routes(http: HttpReceiver, control: Control) -> Router {
    Router::new()
        .route(agent_console_conventions::openclaw::INBOX_PATH, post(inbox))
        .with_state(InboxState { http, control })
}

async fn inbox(State(s): State<InboxState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let auth = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !s.http.token.allows(auth) {
        return error_response(Encoding::Json, &IngestError::Unauthorized);
    }
    let bytes = match read_body(body, s.http.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(Encoding::Json, &e),
    };
    let poll: Poll = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": format!("bad inbox poll: {e}") }))).into_response()
        }
    };
    match s.control.openclaw_poll(poll).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}
