//! Cost provenance: an agent or a session is billed by API (the default) or covered by a
//! subscription, whose cost is an estimate at list price, not spend. Marks live in
//! `billing_marks` (migration 0011), written through `Store::apply` (the one writer); the SQL view
//! `model_call_costs` gives every call `billing`, `cost_is_estimate` and `spend_usd`.
//!
//! HTTP: `PUT /api/billing/{agents|sessions}/{id}` `{"billing": "subscription"|"api", "plan"?}`
//! under the control token; `GET /api/billing` (the marks) and `GET /api/billing/cost` (spend vs
//! estimate totals, `?agent=` / `?session=`) under the read token.
//!
//! `Marks` keeps the marks in memory too (loaded at start, updated after each committed `PUT`),
//! so live `model_call` and `session` messages carry the same `billing` fields as the API.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use duckdb::params;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::ApiState;
use crate::auth::{Actor, ANONYMOUS};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for BillingError {
    fn into_response(self) -> Response {
        let status = match &self {
            BillingError::Invalid(_) => StatusCode::BAD_REQUEST,
            BillingError::Store(StoreError::Overloaded | StoreError::Closed | StoreError::Unavailable(_)) => {
                let mut r =
                    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": self.to_string() }))).into_response();
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
                );
                return r;
            }
            BillingError::Store(e) => e.http_status(),
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A call's billing from the marks (the session's wins over its agent's; none is `api`), over the
/// aliases `bm_s` / `bm_a` of [`billed_calls`].
pub const BILLING_EXPR: &str = "coalesce(bm_s.billing, bm_a.billing, 'api')";

/// `table` (any relation with `session_id` and `agent_id`: `model_calls`, `task_model_calls`) as a
/// subquery whose rows carry `billing` and `billing_plan`, for the cost surfaces that split spend
/// from estimate (`/api/cost`, sessions, tasks).
pub fn billed_calls(table: &str) -> String {
    format!(
        "(SELECT c.*, {BILLING_EXPR} AS billing,
                CASE WHEN bm_s.id IS NOT NULL THEN bm_s.plan ELSE bm_a.plan END AS billing_plan
          FROM {table} c
          LEFT JOIN billing_marks bm_s ON bm_s.kind = 'session' AND bm_s.id = c.session_id
          LEFT JOIN billing_marks bm_a ON bm_a.kind = 'agent' AND bm_a.id = c.agent_id) c"
    )
}

/// A task's cost split by billing (the task detail). $1 task id.
pub const TASK_BILLING_SQL: &str = "
    SELECT coalesce(bm_s.billing, bm_a.billing, 'api') AS billing, count(*) AS calls,
           coalesce(sum(c.cost_usd), 0)::DOUBLE AS cost_usd
    FROM task_model_calls c
    LEFT JOIN billing_marks bm_s ON bm_s.kind = 'session' AND bm_s.id = c.session_id
    LEFT JOIN billing_marks bm_a ON bm_a.kind = 'agent' AND bm_a.id = c.agent_id
    WHERE c.effective_task_id = $1::VARCHAR GROUP BY 1 ORDER BY 1";

/// `{"spend_usd", "estimated_usd", "billing"}` from rows of `(billing, cost_usd)` (pure):
/// `billing` is `api`, `subscription` or `mixed` (both kinds of calls).
pub fn split(rows: impl IntoIterator<Item = (String, f64)>) -> Value {
    let (mut spend, mut estimate, mut api, mut sub) = (0.0, 0.0, false, false);
    for (billing, cost) in rows {
        if billing == "subscription" {
            estimate += cost;
            sub = true;
        } else {
            spend += cost;
            api = true;
        }
    }
    let billing = match (api, sub) {
        (true, true) => "mixed",
        (false, true) => "subscription",
        _ => "api",
    };
    json!({ "spend_usd": spend, "estimated_usd": estimate, "billing": billing })
}

/// Most marks kept (agents and sessions together); a `PUT` of a new id beyond it is refused.
pub const MAX_MARKS: usize = 100_000;

/// One mark: `subscription` or `api`, and the plan.
#[derive(Debug, Clone)]
struct Mark {
    billing: &'static str,
    plan: Option<String>,
}

/// The marks in memory, for the live messages (clone freely).
#[derive(Debug, Clone, Default)]
pub struct Marks(Arc<RwLock<MarkMaps>>);

#[derive(Debug, Default)]
struct MarkMaps {
    agents: HashMap<String, Mark>,
    sessions: HashMap<String, Mark>,
}

impl Marks {
    /// The marks DuckDB holds.
    pub async fn load(store: &crate::store::Store) -> Result<Marks, StoreError> {
        let rows = store
            .reader
            .with_connection(|conn| {
                let mut stmt = conn.prepare("SELECT kind, id, billing, plan FROM billing_marks")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let marks = Marks::default();
        for (kind, id, b, plan) in rows {
            if let Ok(b) = billing(&b) {
                marks.set(if kind == "agent" { "agent" } else { "session" }, id, b, plan);
            }
        }
        Ok(marks)
    }

    fn set(&self, kind: &'static str, id: String, billing: &'static str, plan: Option<String>) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        let map = if kind == "agent" { &mut m.agents } else { &mut m.sessions };
        map.insert(id, Mark { billing, plan });
    }

    /// Whether a mark for a new id would pass `MAX_MARKS`.
    fn full(&self, kind: &'static str, id: &str) -> bool {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        let map = if kind == "agent" { &m.agents } else { &m.sessions };
        !map.contains_key(id) && m.agents.len() + m.sessions.len() >= MAX_MARKS
    }

    /// `(billing, plan)` for work of this session and agent: the session's mark wins over its
    /// agent's; none is `api` (as `BILLING_EXPR`).
    pub fn lookup(&self, session: Option<&str>, agent: Option<&str>) -> (&'static str, Option<String>) {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mark = session.and_then(|s| m.sessions.get(s)).or_else(|| agent.and_then(|a| m.agents.get(a)));
        mark.map_or(("api", None), |k| (k.billing, k.plan.clone()))
    }

    /// The billing fields of a cost: `billing`, `billing_plan`, `cost_is_estimate` and the cost
    /// split into `spend_usd` / `estimated_usd` (as the API and `model_call_costs`).
    pub fn fields(&self, session: Option<&str>, agent: Option<&str>, cost_usd: Option<f64>) -> Map<String, Value> {
        let (b, plan) = self.lookup(session, agent);
        let estimate = b == "subscription";
        let cost = cost_usd.unwrap_or(0.0);
        Map::from_iter([
            ("billing".to_string(), json!(b)),
            ("billing_plan".to_string(), json!(plan)),
            ("cost_is_estimate".to_string(), json!(estimate)),
            ("spend_usd".to_string(), json!(if estimate { 0.0 } else { cost })),
            ("estimated_usd".to_string(), json!(if estimate { cost } else { 0.0 })),
        ])
    }
}

/// Whether any agent or session is marked (a reader's connection).
pub fn any_marks(conn: &duckdb::Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM billing_marks)", [], |r| r.get::<_, bool>(0))?)
}

#[derive(Debug, Deserialize)]
pub struct MarkBody {
    pub billing: String,
    pub plan: Option<String>,
}

/// `agents` / `sessions` (the path segment) -> the stored kind.
fn kind(segment: &str) -> Result<&'static str, BillingError> {
    match segment {
        "agents" | "agent" => Ok("agent"),
        "sessions" | "session" => Ok("session"),
        other => Err(BillingError::Invalid(format!("billing marks are for agents or sessions, not {other:?}"))),
    }
}

/// The billing value, validated (pure).
pub fn billing(v: &str) -> Result<&'static str, BillingError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "subscription" => Ok("subscription"),
        "api" => Ok("api"),
        other => Err(BillingError::Invalid(format!("billing must be \"subscription\" or \"api\", not {other:?}"))),
    }
}

pub fn control_routes() -> axum::Router<ApiState> {
    axum::Router::new().route("/api/billing/{kind}/{id}", axum::routing::put(put_mark))
}

pub fn read_routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/api/billing", axum::routing::get(list_marks))
        .route("/api/billing/cost", axum::routing::get(cost))
}

async fn put_mark(
    State(s): State<ApiState>,
    actor: Option<Extension<Actor>>,
    Path((segment, id)): Path<(String, String)>,
    Json(body): Json<MarkBody>,
) -> Result<Json<Value>, BillingError> {
    let kind = kind(&segment)?;
    let billing = billing(&body.billing)?;
    if id.is_empty() || id.len() > 512 {
        return Err(BillingError::Invalid("id must be 1..512 bytes".into()));
    }
    let plan = body.plan.filter(|p| !p.trim().is_empty());
    if plan.as_ref().is_some_and(|p| p.len() > 200) {
        return Err(BillingError::Invalid("plan must be at most 200 bytes".into()));
    }
    if s.billing.full(kind, &id) {
        return Err(BillingError::Invalid(format!("at most {MAX_MARKS} billing marks")));
    }
    let who = actor.map(|Extension(a)| a.0).unwrap_or_else(|| ANONYMOUS.to_string());
    let (id2, plan2) = (id.clone(), plan.clone());
    s.store
        .apply(move |conn| {
            conn.execute(
                "INSERT INTO billing_marks (kind, id, billing, plan, time, who) VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?)
                 ON CONFLICT (kind, id) DO UPDATE SET billing = excluded.billing, plan = excluded.plan,
                     time = excluded.time, who = excluded.who",
                params![kind, id2, billing, plan2, who],
            )?;
            Ok(())
        })
        .await?;
    s.billing.set(kind, id.clone(), billing, plan.clone());
    Ok(Json(json!({ "kind": kind, "id": id, "billing": billing, "plan": plan })))
}

async fn list_marks(State(s): State<ApiState>) -> Result<Json<Value>, BillingError> {
    let rows = s
        .store
        .reader
        .with_connection(|conn| {
            let mut stmt = conn.prepare(
                "SELECT kind, id, billing, plan, strftime(time, '%Y-%m-%dT%H:%M:%SZ'), who FROM billing_marks
                 ORDER BY kind, id LIMIT 10000",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(json!({
                    "kind": r.get::<_, String>(0)?, "id": r.get::<_, String>(1)?, "billing": r.get::<_, String>(2)?,
                    "plan": r.get::<_, Option<String>>(3)?, "time": r.get::<_, String>(4)?, "who": r.get::<_, Option<String>>(5)?,
                }))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(Json(json!({ "marks": rows })))
}

#[derive(Debug, Deserialize, Default)]
pub struct CostQuery {
    pub agent: Option<String>,
    pub session: Option<String>,
}

/// Spend (API-billed cost) and the list-price estimate of subscription-covered calls.
async fn cost(State(s): State<ApiState>, Query(q): Query<CostQuery>) -> Result<Json<Value>, BillingError> {
    let v = s
        .store
        .reader
        .with_connection(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT billing, count(*), coalesce(sum(cost_usd), 0), coalesce(sum(spend_usd), 0)
                 FROM model_call_costs
                 WHERE (?::VARCHAR IS NULL OR agent_id = ?::VARCHAR) AND (?::VARCHAR IS NULL OR session_id = ?::VARCHAR)
                 GROUP BY billing",
            )?;
            let mut out = json!({
                "spend_usd": 0.0, "estimated_usd": 0.0, "api_calls": 0, "subscription_calls": 0,
                "note": "subscription cost is an estimate at list price, not spend",
            });
            let rows = stmt.query_map(params![q.agent, q.agent, q.session, q.session], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, f64>(3)?))
            })?;
            for row in rows {
                let (billing, calls, cost, spend) = row?;
                if billing == "subscription" {
                    out["estimated_usd"] = json!(cost);
                    out["subscription_calls"] = json!(calls);
                } else {
                    out["spend_usd"] = json!(spend);
                    out["api_calls"] = json!(calls);
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_validated() {
        assert_eq!(billing("Subscription").ok(), Some("subscription"));
        assert_eq!(billing(" api ").ok(), Some("api"));
        assert!(billing("free").is_err());
        assert_eq!(kind("agents").ok(), Some("agent"));
        assert_eq!(kind("sessions").ok(), Some("session"));
        assert!(kind("tasks").is_err());
    }

    #[test]
    fn spend_and_estimate_split() {
        for (rows, want) in [
            (vec![], json!({"spend_usd": 0.0, "estimated_usd": 0.0, "billing": "api"})),
            (vec![("api", 1.5)], json!({"spend_usd": 1.5, "estimated_usd": 0.0, "billing": "api"})),
            (vec![("subscription", 2.0)], json!({"spend_usd": 0.0, "estimated_usd": 2.0, "billing": "subscription"})),
            (
                vec![("api", 0.25), ("subscription", 0.5)],
                json!({"spend_usd": 0.25, "estimated_usd": 0.5, "billing": "mixed"}),
            ),
        ] {
            let got = split(rows.into_iter().map(|(b, c)| (b.to_string(), c)));
            assert_eq!(got, want);
        }
        let sql = billed_calls("model_calls");
        assert!(sql.contains("FROM model_calls c") && sql.contains(BILLING_EXPR), "{sql}");
    }
}
