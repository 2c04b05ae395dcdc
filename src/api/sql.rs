//! `POST /api/sql` with `{"sql": "..."}` -> `{"columns":[{"name","type"}],"rows":[[...]],
//! "truncated", "elapsed_ms"}`. Read-only, capped and timed out by `store::reader`.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::{ApiError, ApiState};
use crate::store::{QueryResult, StoreError};

#[derive(Debug, Deserialize)]
pub struct SqlRequest {
    pub sql: String,
}

pub async fn post_sql(
    State(s): State<ApiState>,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<QueryResult>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError(StoreError::Refused(format!("expected {{\"sql\": \"...\"}}: {e}"))))?;
    let sql = req.sql.trim();
    if sql.is_empty() {
        return Err(ApiError(StoreError::Refused("sql is empty".into())));
    }
    Ok(Json(s.store.query(sql.to_string()).await?))
}
