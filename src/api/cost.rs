//! Cost API. `GET /api/cost?group_by=agent|task|model|provider|session&bucket=minute|hour|day|
//! week|month&from=..&to=..&agent=..&task=..&model=..&provider=..&session=..` rolls `model_calls`
//! up into `{"rows":[{bucket, group, cost_usd, calls, input_tokens, output_tokens,
//! cache_read_tokens, cache_write_tokens}], "totals": {..}}` with one grouping-sets query, so
//! rows and totals come from the same snapshot and equal the plain SQL sums. Buckets are UTC.
//! Every row and the totals also split `cost_usd` into `spend_usd` (billed by API) and
//! `estimated_usd` (covered by a subscription: list price, not spend; `billing.rs`), and
//! `group_by=billing` groups by `api` / `subscription`. While no agent or session is marked, the
//! hourly rollup answers as before (all of it spend); once one is, rollups read the calls with
//! their marks (`crate::billing::billed_calls`).
//! `GET /api/cost/unpriced` lists models without a price; `POST /api/cost/reprice` reloads the
//! price files (optionally adding the entries in its body, a price file's TOML) and re-prices
//! stored calls through the writer.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::params::parse_instant;
use super::{ApiError, ApiState};
use crate::store::reader::json_value;
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

/// Which table answers a rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `cost_hourly`, the writer-maintained hourly rollup.
    Hourly,
    /// `model_calls` itself (per session, per minute, or ranges not on whole hours).
    Calls,
}

const HOUR_US: i64 = 3_600_000_000;

/// The SQL and its parameters for a rollup request (pure, unit-tested); `marks`: some agent or
/// session has a billing mark (then spend and estimate need the calls, not the hourly rollup).
pub fn rollup_sql(p: &CostParams, marks: bool) -> Result<(String, Vec<Option<String>>, Source), String> {
    let group = match p.group_by.as_deref().unwrap_or("model") {
        "billing" => "billing",
        "agent" => "agent_id",
        "task" => "task_id",
        "model" => "model",
        "provider" => "provider",
        "session" => "session_id",
        other => {
            return Err(format!("group_by must be agent, task, model, provider, session or billing, not {other:?}"))
        }
    };
    let bucket = match p.bucket.as_deref() {
        None | Some("") | Some("none") => None,
        Some(b @ ("minute" | "hour" | "day" | "week" | "month")) => Some(b),
        Some(other) => return Err(format!("bucket must be minute, hour, day, week or month, not {other:?}")),
    };
    let mut range = Vec::new();
    for (name, value) in [("from", &p.from), ("to", &p.to)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            let us = parse_instant(v).ok_or_else(|| {
                format!("{name} must be RFC 3339 (2026-11-21T10:00:00Z), a date or Unix seconds/ms, not {v:?}")
            })?;
            range.push((name, us));
        }
    }
    // Per task: the task each call counts for (its attribute, else its session's link, hand and
    // pattern links and parent sessions included: `tasks`), from the `task_model_calls` view.
    let by_task = group == "task_id" || p.task.as_deref().is_some_and(|t| !t.is_empty());
    let group = if by_task && group == "task_id" { "effective_task_id" } else { group };
    let billed = marks || group == "billing";
    let source = if !by_task
        && !billed
        && group != "session_id"
        && p.session.as_deref().is_none_or(str::is_empty)
        && bucket != Some("minute")
        && range.iter().all(|(_, us)| us.rem_euclid(HOUR_US) == 0)
    {
        Source::Hourly
    } else {
        Source::Calls
    };
    let (table, time_col) = match source {
        Source::Hourly => ("cost_hourly", "hour"),
        Source::Calls if by_task => ("task_model_calls", "time"),
        Source::Calls => ("model_calls", "time"),
    };
    let bucket_expr = match bucket {
        None => "NULL::TIMESTAMP".to_string(),
        Some(b) => format!("date_trunc('{b}', {time_col})"),
    };
    let group_expr = match source {
        Source::Hourly => format!("nullif({group}, '')"),
        Source::Calls => group.to_string(),
    };
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    for (name, us) in range {
        let op = if name == "from" { ">=" } else { "<" };
        clauses.push(format!("{time_col} {op} make_timestamp(?::BIGINT)"));
        params.push(Some(us.to_string()));
    }
    for (col, value) in [
        ("agent_id", &p.agent),
        (if by_task { "effective_task_id" } else { "task_id" }, &p.task),
        ("model", &p.model),
        ("provider", &p.provider),
        ("session_id", &p.session),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            clauses.push(format!("{col} = ?"));
            params.push(Some(v.to_string()));
        }
    }
    let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let (from, split) = if billed {
        (
            crate::billing::billed_calls(table),
            "coalesce(sum(cost_usd) FILTER (WHERE billing <> 'subscription'), 0)::DOUBLE AS spend_usd,
                coalesce(sum(cost_usd) FILTER (WHERE billing = 'subscription'), 0)::DOUBLE AS estimated_usd",
        )
    } else {
        (table.to_string(), "coalesce(sum(cost_usd), 0)::DOUBLE AS spend_usd, 0::DOUBLE AS estimated_usd")
    };
    let calls = match source {
        Source::Hourly => "coalesce(sum(calls), 0)::BIGINT",
        Source::Calls => "count(*)",
    };
    let sql = format!(
        "SELECT {bucket_expr} AS bucket, {group_expr} AS grp, grouping({group_expr}) AS is_total,
                coalesce(sum(cost_usd), 0)::DOUBLE AS cost_usd, {split}, {calls} AS calls,
                coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
                coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
                coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
                coalesce(sum(cache_write_tokens), 0)::BIGINT AS cache_write_tokens
         FROM {from} {filter}
         GROUP BY GROUPING SETS (({bucket_expr}, {group_expr}), ())
         ORDER BY is_total, bucket NULLS FIRST, cost_usd DESC, grp NULLS LAST"
    );
    Ok((sql, params, source))
}

const FIELDS: &[&str] = &[
    "cost_usd",
    "spend_usd",
    "estimated_usd",
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
];

pub async fn rollup(State(s): State<ApiState>, Query(p): Query<CostParams>) -> Result<Response, ApiError> {
    // Validate before touching the store (a bad request is a 400 whatever the marks).
    rollup_sql(&p, false).map_err(refused)?;
    // Query and serialise on the blocking thread: a per-agent daily rollup can be thousands of rows.
    let body = s
        .store
        .reader
        .with_connection(move |conn| {
            let marks = crate::billing::any_marks(conn)?;
            let (sql, params, source) = rollup_sql(&p, marks).map_err(StoreError::Refused)?;
            let head = json!({
                "group_by": p.group_by.as_deref().unwrap_or("model"),
                "bucket": p.bucket,
                "source": match source { Source::Hourly => "cost_hourly", Source::Calls => "model_calls" },
                "note": "estimated_usd: calls covered by a subscription, at list price (not spend)",
            });
            let mut stmt = conn.prepare(&sql)?;
            let arrow = stmt.query_arrow(duckdb::params_from_iter(params.iter()))?;
            let schema = arrow.get_schema();
            let col = |name: &str| schema.index_of(name).map_err(|e| StoreError::Query(e.to_string()));
            let (bucket, grp, is_total) = (col("bucket")?, col("grp")?, col("is_total")?);
            let fields = FIELDS.iter().map(|f| col(f)).collect::<Result<Vec<_>, _>>()?;
            let mut rows = Vec::with_capacity(64 * 1024);
            let mut totals = None;
            let mut first = true;
            let object = |batch: &duckdb::arrow::record_batch::RecordBatch, i: usize, with_keys: bool| {
                let mut o = Map::new();
                if with_keys {
                    o.insert("bucket".into(), json_value(batch.column(bucket).as_ref(), i));
                    o.insert("group".into(), json_value(batch.column(grp).as_ref(), i));
                }
                for (name, c) in FIELDS.iter().zip(&fields) {
                    o.insert((*name).into(), json_value(batch.column(*c).as_ref(), i));
                }
                Value::Object(o)
            };
            rows.push(b'[');
            for batch in arrow {
                for i in 0..batch.num_rows() {
                    if json_value(batch.column(is_total).as_ref(), i).as_i64().unwrap_or(0) != 0 {
                        totals = Some(object(&batch, i, false));
                        continue;
                    }
                    if !first {
                        rows.push(b',');
                    }
                    first = false;
                    serde_json::to_writer(&mut rows, &object(&batch, i, true))
                        .map_err(|e| StoreError::Query(e.to_string()))?;
                }
            }
            rows.push(b']');
            let totals =
                totals.unwrap_or_else(|| Value::Object(FIELDS.iter().map(|f| ((*f).into(), json!(0))).collect()));
            let mut head = head;
            head["totals"] = totals;
            // `head` is a small object: splice the rows array in before its closing brace.
            let mut out = serde_json::to_vec(&head).map_err(|e| StoreError::Query(e.to_string()))?;
            out.pop();
            out.extend_from_slice(b",\"rows\":");
            out.extend_from_slice(&rows);
            out.push(b'}');
            Ok(out)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
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
        let (sql, _, source) = rollup_sql(&p, false).expect("sql");
        assert_eq!(source, Source::Hourly);
        assert!(sql.contains("0::DOUBLE AS estimated_usd"), "{sql}");
        // Once anything is marked, or grouped by billing, the calls answer, with their marks.
        for (p, marks) in [(p, true), (CostParams { group_by: Some("billing".into()), ..Default::default() }, false)] {
            let (sql, _, source) = rollup_sql(&p, marks).expect("sql");
            assert_eq!(source, Source::Calls);
            assert!(sql.contains("billing_marks") && sql.contains("FILTER (WHERE billing = 'subscription')"), "{sql}");
        }
        let p = CostParams { group_by: Some("agent".into()), bucket: Some("day".into()), ..Default::default() };
        let (sql, params, _) = rollup_sql(&p, false).expect("sql");
        assert!(sql.contains("date_trunc('day', hour)") && sql.contains("nullif(agent_id, '') AS grp"), "{sql}");
        assert!(params.is_empty() && !sql.contains("WHERE"));
        for (p, want) in [
            (CostParams { group_by: Some("session".into()), ..Default::default() }, Source::Calls),
            (CostParams { bucket: Some("minute".into()), ..Default::default() }, Source::Calls),
            (CostParams { session: Some("s".into()), ..Default::default() }, Source::Calls),
            (CostParams { from: Some("2026-11-21T10:30:00Z".into()), ..Default::default() }, Source::Calls),
            (CostParams { from: Some("2026-11-21T10:00:00Z".into()), ..Default::default() }, Source::Hourly),
        ] {
            assert_eq!(rollup_sql(&p, false).expect("sql").2, want, "{p:?}");
        }
        let p = CostParams {
            from: Some("2026-11-21".into()),
            to: Some("2026-11-22T00:00:00Z".into()),
            task: Some("T-1".into()),
            ..Default::default()
        };
        let (sql, params, _) = rollup_sql(&p, false).expect("sql");
        assert!(
            sql.contains(
                "WHERE time >= make_timestamp(?::BIGINT) AND time < make_timestamp(?::BIGINT) AND effective_task_id = ?"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 3);
        assert_eq!(params[0].as_deref(), Some("1795219200000000"));
        for bad in [
            CostParams { group_by: Some("color".into()), ..Default::default() },
            CostParams { bucket: Some("fortnight".into()), ..Default::default() },
            CostParams { from: Some("last tuesday".into()), ..Default::default() },
        ] {
            assert!(rollup_sql(&bad, false).is_err());
        }
    }
}
