//! Operational endpoints: `/healthz` (liveness plus a trivial query) and `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ApiState;

pub async fn healthz(State(s): State<ApiState>) -> Response {
    match s.store.query("SELECT 1 AS ok".into()).await {
        Ok(_) => Json(serde_json::json!({ "status": "ok", "queue_depth": s.store.queue_depth() })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render(s.store.queue_depth()))
        .into_response()
}
