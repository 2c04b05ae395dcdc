//! Queries out, over HTTP: `sql` (read-only SQL as JSON, CSV or Arrow), `sessions` (session list
//! and one session), `timeline` (a session's story), `agents` (the roster), `cost` (rollups, unpriced models, re-pricing), `export` (Parquet), `ops` (health
//! and Prometheus metrics), `live` (SSE / WebSocket stream, in `crate::live`); `params` parses
//! shared query parameters. All reads go through `store::reader`.

pub mod agents;
pub mod cost;
pub mod export;
pub mod ops;
pub mod params;
pub mod sessions;
pub mod sql;
pub mod timeline;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Token;
use crate::cost::pricing::Pricing;
use crate::live::Hub;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// State shared by the query API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub read_token: Arc<Token>,
    /// Guards state-changing routes (commands, tasks, alert rules, re-pricing).
    pub control_token: Arc<Token>,
    /// Guards `POST /api/flush` (a writer-side wait, for whoever sends the data).
    pub ingest_token: Arc<Token>,
    pub pricing: Arc<Pricing>,
    /// The live stream hub (`/api/live`, `/api/live/ws`).
    pub live: Arc<Hub>,
    /// The control plane (commands, approvals; capabilities in the session summaries).
    pub control: crate::control::Control,
    /// Tasks touched by hand (for the coalesced live `task` message).
    pub tasks: crate::tasks::live::TaskWatch,
    /// Alert rules and the firing gauges.
    pub alerts: crate::alerts::runner::Alerts,
    /// Billing marks in memory (the live messages' `billing` fields).
    pub billing: crate::billing::Marks,
}

/// A JSON error body `{"error": "..."}` with the status from `crate::error`.
pub struct ApiError(pub StoreError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.http_status();
        let mut response = (status, Json(serde_json::json!({ "error": self.0.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(e)
    }
}

/// Middleware: the read token guards every `/api` route when configured.
pub async fn require_read_token(
    axum::extract::State(token): axum::extract::State<Arc<Token>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token.allows(auth) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "missing or invalid bearer token" })),
        )
            .into_response()
    }
}

/// Middleware: the control tokens guard every state-changing route when configured; the name of
/// the token used goes into the request's extensions as `auth::Actor` (who, for the audit trail).
pub async fn require_control_token(
    axum::extract::State(token): axum::extract::State<Arc<Token>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(who) = token.who(auth).map(str::to_string) {
        req.extensions_mut().insert(crate::auth::Actor(who));
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({ "error": "missing or invalid control token" })),
        )
            .into_response()
    }
}

/// All query API routes.
pub fn routes(state: ApiState) -> axum::Router {
    use axum::routing::{get, post};
    let guarded = axum::Router::new()
        .route("/api/sql", post(sql::post_sql))
        .route("/api/sessions", get(sessions::list))
        .route("/api/sessions/{id}", get(sessions::detail))
        .route("/api/sessions/{id}/timeline", get(timeline::timeline))
        .route("/api/agents", get(agents::list))
        .route("/api/cost", get(cost::rollup))
        .route("/api/cost/unpriced", get(cost::unpriced))
        .route("/api/export", get(export::export))
        .route("/api/live", get(crate::live::sse::live))
        .route("/api/live/ws", get(crate::live::ws::live_ws))
        .merge(crate::control::api::read_routes())
        .merge(crate::tasks::api::read_routes())
        .merge(crate::alerts::api::read_routes())
        .merge(crate::billing::read_routes())
        .route_layer(axum::middleware::from_fn_with_state(state.read_token.clone(), require_read_token))
        .with_state(state.clone());
    // Every state-changing route is under the control tokens (issue 10, row 12), never the read
    // token that dashboards hold.
    let control = crate::control::api::control_routes()
        .route("/api/cost/reprice", post(cost::reprice))
        .merge(crate::tasks::api::control_routes())
        .merge(crate::alerts::api::control_routes())
        .merge(crate::billing::control_routes())
        .route_layer(axum::middleware::from_fn_with_state(state.control_token.clone(), require_control_token))
        .with_state(state.clone());
    let flush = axum::Router::new()
        .route("/api/flush", post(ops::flush))
        .route_layer(axum::middleware::from_fn_with_state(state.ingest_token.clone(), require_read_token))
        .with_state(state.clone());
    axum::Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .with_state(state)
        .merge(guarded)
        .merge(control)
        .merge(flush)
}
