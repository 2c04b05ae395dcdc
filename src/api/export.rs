//! `GET /api/export?table=model_calls&from=..&to=..&format=parquet|csv|arrow`: one table (or a
//! time range of it) as a file for users' own pipelines, Parquet by default, streamed batch by
//! batch. The `agent-console export` command writes the same files (see `export_sql`).

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::params::parse_instant;
use super::sql::{negotiate, streamed};
use super::{ApiError, ApiState};
use crate::formats::Format;
use crate::store::stream::StreamSpec;
use crate::store::StoreError;

/// Tables that can be exported.
pub const TABLES: &[&str] =
    &["spans", "logs", "metric_points", "model_calls", "tool_calls", "sessions", "agents", "prices"];

/// How long an export may run (much longer than an interactive query).
pub const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Deserialize, Default)]
pub struct ExportParams {
    pub table: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

/// The query for one table and optional range (UTC microseconds); pure.
pub fn export_sql(
    table: &str,
    from_us: Option<i64>,
    to_us: Option<i64>,
) -> Result<(String, Vec<Option<String>>), String> {
    if !TABLES.contains(&table) {
        return Err(format!("table must be one of {}, not {table:?}", TABLES.join(", ")));
    }
    let time_col = if table == "prices" { "effective" } else { "time" };
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    if let Some(f) = from_us {
        clauses.push(format!("{time_col} >= make_timestamp(?::BIGINT)"));
        params.push(Some(f.to_string()));
    }
    if let Some(t) = to_us {
        clauses.push(format!("{time_col} < make_timestamp(?::BIGINT)"));
        params.push(Some(t.to_string()));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    Ok((format!("SELECT * FROM {table}{filter} ORDER BY {time_col}"), params))
}

/// A parsed optional instant parameter.
pub fn instant(name: &str, v: Option<&str>) -> Result<Option<i64>, String> {
    match v.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_instant(v)
            .map(Some)
            .ok_or_else(|| format!("{name} must be RFC 3339, a date or Unix seconds/ms, not {v:?}")),
    }
}

pub async fn export(
    State(s): State<ApiState>,
    Query(p): Query<ExportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let refused = |m: String| ApiError(StoreError::Refused(m));
    let table = p.table.as_deref().ok_or_else(|| refused("table is required".into()))?;
    let from = instant("from", p.from.as_deref()).map_err(refused)?;
    let to = instant("to", p.to.as_deref()).map_err(refused)?;
    let format = match p.format.as_deref() {
        None if headers.get(axum::http::header::ACCEPT).is_none() => Format::Parquet,
        f => match negotiate(f, &headers)? {
            Format::Json => Format::Parquet,
            other => other,
        },
    };
    let (sql, params) = export_sql(table, from, to).map_err(refused)?;
    let spec = StreamSpec { sql, params, vet: false, max_rows: None, max_bytes: None, timeout: EXPORT_TIMEOUT, format };
    let chunks = s.store.reader.stream(spec).await?;
    Ok(streamed(format, chunks, Some(format!("{table}.{}", format.extension()))))
}
