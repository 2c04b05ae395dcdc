//! `POST /api/sql` with `{"sql": "..."}`. JSON by default: `{"columns":[{"name","type"}],
//! "rows":[[...]], "truncated", "elapsed_ms"}`. CSV (`Accept: text/csv`) and Arrow IPC stream
//! (`Accept: application/vnd.apache.arrow.stream`), or `?format=json|csv|arrow`. Every format
//! streams batch by batch (`store::stream`), JSON too: the answer is never held whole. Read-only,
//! capped (rows; a JSON answer also in bytes) and timed out. An error before the first rows is a
//! plain 4xx/5xx with a JSON body; a streamed answer that fails after the 200 ends with an aborted
//! body (CSV: a last `#ERROR:` line first).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::formats::Format;
use crate::store::stream::StreamSpec;
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
pub struct SqlRequest {
    pub sql: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct SqlParams {
    pub format: Option<String>,
}

/// The requested format: `?format=` wins over `Accept`.
pub fn negotiate(format: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    match format {
        Some(f) => Format::from_name(f).map_err(|e| ApiError(StoreError::Refused(e.to_string()))),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(Format::from_accept)
            .unwrap_or(Format::Json)),
    }
}

/// A streamed body with its content type. A query that fails after the 200 aborts the body (and
/// CSV gets a last `#ERROR:` line first), see `store::stream`.
pub fn streamed(format: Format, chunks: crate::store::stream::Chunks, filename: Option<String>) -> Response {
    let body = Body::from_stream(chunks);
    let mut resp = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if let Some(name) = filename {
        if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

pub async fn post_sql(
    State(s): State<ApiState>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(StoreError::Refused(format!("expected {{\"sql\": \"...\"}}: {e}"))))?;
    let sql = req.sql.trim();
    if sql.is_empty() {
        return Err(ApiError(StoreError::Refused("sql is empty".into())));
    }
    let format = negotiate(params.format.as_deref(), &headers)?;
    // Every format streams: a JSON answer is written as DuckDB's chunks arrive, so even a
    // capped answer of `--query-max-bytes` is never held whole (`store::stream::JsonAnswer`).
    let limits = s.store.reader.limits().clone();
    let spec = StreamSpec {
        sql: sql.to_string(),
        params: Vec::new(),
        vet: true,
        max_rows: Some(limits.max_rows),
        max_bytes: (format == Format::Json).then_some(limits.max_result_bytes),
        timeout: limits.timeout,
        format,
    };
    let chunks = s.store.reader.stream(spec).await?;
    Ok(streamed(format, chunks, None))
}
