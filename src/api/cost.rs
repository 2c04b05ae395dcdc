//! Cost API. `GET /api/cost?group_by=agent|task|model|provider|session&bucket=minute|hour|day|
//! week|month&from=..&to=..&agent=..&task=..&model=..&provider=..&session=..` rolls `model_calls`
//! up into `{"rows":[{bucket, group, cost_usd, calls, input_tokens, output_tokens,
//! cache_read_tokens, cache_write_tokens}], "totals": {..}}` with one grouping-sets query, so
//! rows and totals come from the same snapshot and equal the plain SQL sums. Buckets are UTC.
//! `GET /api/cost/unpriced` lists models without a price; `POST /api/cost/reprice` reloads the
//! price files (optionally adding the entries in its body, a price file's TOML) and re-prices
//! stored calls through the writer.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::params::parse_instant;
use super::{ApiError, ApiState};
use crate::store::StoreError;

#[derive(Debug, Deserialize, Default)]
pub struct CostParams {
    pub group_by: Option<String>,
    pub bucket: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub agent: Option<String>,
    pub task: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub session: Option<String>,
}

fn refused(msg: String) -> ApiError {
    ApiError(StoreError::Refused(msg))
}

/// The SQL and its parameters for a rollup request (pure, unit-tested).
pub fn rollup_sql(p: &CostParams) -> Result<(String, Vec<Option<String>>), String> {
    let group = match p.group_by.as_deref().unwrap_or("model") {
        "agent" => "agent_id",
        "task" => "task_id",
        "model" => "model",
        "provider" => "provider",
        "session" => "session_id",
        other => return Err(format!("group_by must be agent, task, model, provider or session, not {other:?}")),
    };
    let bucket = match p.bucket.as_deref() {
        None | Some("") | Some("none") => "NULL::TIMESTAMP".to_string(),
        Some(b @ ("minute" | "hour" | "day" | "week" | "month")) => format!("date_trunc('{b}', time)"),
        Some(other) => return Err(format!("bucket must be minute, hour, day, week or month, not {other:?}")),
    };
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    for (name, value) in [("from", &p.from), ("to", &p.to)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let us = parse_instant(v).ok_or_else(|| {
                format!("{name} must be RFC 3339 (2026-11-21T10:00:00Z), a date or Unix seconds/ms, not {v:?}")
            })?;
            clauses.push(if name == "from" {
                "time >= make_timestamp(?::BIGINT)"
            } else {
                "time < make_timestamp(?::BIGINT)"
            });
            params.push(Some(us.to_string()));
        }
    }
    for (col, value) in [
        ("agent_id", &p.agent),
        ("task_id", &p.task),
        ("model", &p.model),
        ("provider", &p.provider),
        ("session_id", &p.session),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            clauses.push(match col {
                "agent_id" => "agent_id = ?",
                "task_id" => "task_id = ?",
                "model" => "model = ?",
                "provider" => "provider = ?",
                _ => "session_id = ?",
            });
            params.push(Some(v.to_string()));
        }
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let sql = format!(
        "SELECT {bucket} AS bucket, {group} AS grp, grouping({group}) AS is_total,
                coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd, count(*) AS calls,
                coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
                coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
                coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
                coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens
         FROM model_calls {filter}
         GROUP BY GROUPING SETS (({bucket}, {group}), ())
         ORDER BY is_total, bucket NULLS FIRST, cost_usd DESC, grp NULLS LAST"
    );
    Ok((sql, params))
}

const FIELDS: &[&str] =
    &["cost_usd", "calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"];

pub async fn rollup(State(s): State<ApiState>, Query(p): Query<CostParams>) -> Result<Json<Value>, ApiError> {
    let (sql, params) = rollup_sql(&p).map_err(refused)?;
    let rows = s.store.reader.query_objects(sql, params).await?;
    let mut out = Vec::new();
    let mut totals = Map::new();
    for r in rows {
        let pick = |r: &Map<String, Value>| -> Map<String, Value> {
            FIELDS.iter().map(|f| (f.to_string(), r.get(*f).cloned().unwrap_or(Value::Null))).collect()
        };
        if r.get("is_total").and_then(Value::as_i64).unwrap_or(0) != 0 {
            totals = pick(&r);
        } else {
            let mut o = Map::new();
            o.insert("bucket".into(), r.get("bucket").cloned().unwrap_or(Value::Null));
            o.insert("group".into(), r.get("grp").cloned().unwrap_or(Value::Null));
            o.extend(pick(&r));
            out.push(Value::Object(o));
        }
    }
    if totals.is_empty() {
        totals = FIELDS.iter().map(|f| (f.to_string(), json!(0))).collect();
    }
    Ok(Json(json!({
        "group_by": p.group_by.as_deref().unwrap_or("model"),
        "bucket": p.bucket,
        "rows": out,
        "totals": totals,
    })))
}

const UNPRICED_SQL: &str = "
    SELECT model, provider, count(*) AS calls,
           coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
           coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
           coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens,
           min(time) AS first_seen, max(time) AS last_seen
    FROM model_calls WHERE cost_source = 'unpriced'
    GROUP BY model, provider ORDER BY calls DESC, model NULLS LAST";

pub async fn unpriced(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let rows = s.store.reader.query_objects(UNPRICED_SQL, Vec::new()).await?;
    Ok(Json(json!({ "models": rows })))
}

/// `POST /api/cost/reprice`: body empty, or a price file (TOML) whose entries are added.
pub async fn reprice(State(s): State<ApiState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| refused("the body must be UTF-8 TOML".into()))?;
    let added = Some(text).filter(|t| !t.trim().is_empty());
    let pricing = s.pricing.clone();
    let added_owned = added.map(str::to_string);
    let table = tokio::task::spawn_blocking(move || pricing.reload(added_owned.as_deref()))
        .await
        .map_err(|e| ApiError(StoreError::Unavailable(e.to_string())))?
        .map_err(|e| refused(e.to_string()))?;
    let report = s.store.reprice(table).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_sql_shapes() {
        let p = CostParams { group_by: Some("agent".into()), bucket: Some("day".into()), ..Default::default() };
        let (sql, params) = rollup_sql(&p).expect("sql");
        assert!(sql.contains("date_trunc('day', time)") && sql.contains("agent_id AS grp"), "{sql}");
        assert!(params.is_empty() && !sql.contains("WHERE"));
        let p = CostParams {
            from: Some("2026-11-21".into()),
            to: Some("2026-11-22T00:00:00Z".into()),
            task: Some("T-1".into()),
            ..Default::default()
        };
        let (sql, params) = rollup_sql(&p).expect("sql");
        assert!(sql
            .contains("WHERE time >= make_timestamp(?::BIGINT) AND time < make_timestamp(?::BIGINT) AND task_id = ?"));
        assert_eq!(params.len(), 3);
        assert_eq!(params[0].as_deref(), Some("1795219200000000"));
        for bad in [
            CostParams { group_by: Some("color".into()), ..Default::default() },
            CostParams { bucket: Some("fortnight".into()), ..Default::default() },
            CostParams { from: Some("last tuesday".into()), ..Default::default() },
        ] {
            assert!(rollup_sql(&bad).is_err());
        }
    }
}
