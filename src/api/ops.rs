//! Operational endpoints: `/healthz` (a trivial query, the writer's last commit and the ingest
//! log's backlog), `/metrics` (Prometheus text) and `POST /api/flush` (wait until everything
//! acknowledged before the call is queryable; for tests and scripts, under the ingest token).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, ApiState};

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `ok` when a query runs and the writer's last commit succeeded (or nothing was committed yet);
/// `degraded` (503) while commits fail (acknowledged data is safe in the ingest log but not
/// queryable, and the log fills towards its cap) or while the log refuses exports because
/// DuckDB is that far behind.
pub async fn healthz(State(s): State<ApiState>) -> Response {
    let (last_ok_us, failing) = s.store.shared.health.snapshot();
    let log = s.store.log_state();
    let now = wall_us();
    let writer = serde_json::json!({
        "last_commit_age_s": (last_ok_us > 0).then(|| (now - last_ok_us) as f64 / 1e6),
        "failing_since_s": failing.as_ref().map(|(t, _)| (now - t) as f64 / 1e6),
        "last_error": failing.as_ref().map(|(_, e)| e.clone()),
    });
    let ingest_log = serde_json::json!({
        "pending_bytes": log.pending_bytes(),
        "durable_position": log.durable_pos.load(std::sync::atomic::Ordering::Acquire),
        "committed_position": log.committed_pos.load(std::sync::atomic::Ordering::Acquire),
        "duckdb_lag_s": log.lag_seconds(now),
        "refusing_exports": log.refusing(),
    });
    match s.store.query("SELECT 1 AS ok".into()).await {
        Ok(_) if failing.is_none() && !log.refusing() => {
            Json(serde_json::json!({ "status": "ok", "writer": writer, "ingest_log": ingest_log })).into_response()
        }
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "degraded", "writer": writer, "ingest_log": ingest_log })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": e.to_string(), "writer": writer })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(s.store.queue_depth(), Some(s.store.log_state())) + &s.alerts.render_metrics(),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct FlushParams {
    /// Longest wait, in ms (default 30 000).
    pub timeout_ms: Option<u64>,
}

/// `POST /api/flush`: returns once every export acknowledged before the call is committed to
/// DuckDB (visible to SQL): `{"position": N}`. 504 when that takes longer than `timeout_ms`;
/// 503 with Retry-After when the writer stopped for the in-process restart (ask again).
pub async fn flush(State(s): State<ApiState>, Query(p): Query<FlushParams>) -> Result<Response, ApiError> {
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000).clamp(1, 600_000));
    let pos = s.store.flush(Some(timeout)).await?;
    Ok(Json(serde_json::json!({ "position": pos })).into_response())
}
