//! Cost provenance: marking an agent or a session as subscription-covered (control token, through
//! the writer) turns its cost into an estimate at list price everywhere it is read: the SQL view
//! `model_call_costs` (`billing`, `cost_is_estimate`, `spend_usd`) and `GET /api/billing/cost`;
//! a session's mark wins over its agent's; bad input is a 400, no token a 401.

mod common;
use common::*;
use serde_json::{json, Value};

/// Two sessions of agent `coder`, one of `reviewer`; gpt-4o (priced by the embedded table).
fn payload() -> Value {
    let calls = [("coder", "s1", 1000), ("coder", "s2", 2000), ("reviewer", "s3", 4000)];
    let spans: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (agent, session, input))| {
            json!({
                "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1), "name": "chat gpt-4o",
                "kind": 3, "startTimeUnixNano": "1790000000000000000", "endTimeUnixNano": "1790000001000000000",
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                    {"key": "gen_ai.agent.name", "value": {"stringValue": agent}},
                    {"key": "gen_ai.conversation.id", "value": {"stringValue": session}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": input}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 100}},
                ]
            })
        })
        .collect();
    json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
           "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]})
}

async fn put(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.put(format!("{}{path}", app.http)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("put");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn billing_cost(app: &TestApp, q: &str) -> Value {
    let r = app.client.get(format!("{}/api/billing/cost{q}", app.http)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_cost_is_an_estimate_everywhere() {
    let app = spawn_with(|a| a.control_token = Some("ctl".into())).await;
    let r = app.post("/v1/traces", "application/json", serde_json::to_vec(&payload()).expect("json")).await;
    assert_eq!(r.status(), 200);
    let total = as_f64(&app.scalar("SELECT sum(cost_usd) FROM model_calls").await);
    assert!(total > 0.0);
    // Nothing marked: everything is spend.
    let v = billing_cost(&app, "").await;
    assert!((as_f64(&v["spend_usd"]) - total).abs() < 1e-12, "{v}");
    assert_eq!(as_f64(&v["estimated_usd"]), 0.0);

    // Refusals: no token, a bad value, a bad kind.
    assert_eq!(put(&app, "/api/billing/agents/coder", None, json!({"billing": "subscription"})).await.0, 401);
    assert_eq!(put(&app, "/api/billing/agents/coder", Some("ctl"), json!({"billing": "free"})).await.0, 400);
    assert_eq!(put(&app, "/api/billing/tasks/x", Some("ctl"), json!({"billing": "api"})).await.0, 400);

    // The coder agent is on a subscription, except session s2, billed by API.
    let (status, v) =
        put(&app, "/api/billing/agents/coder", Some("ctl"), json!({"billing": "subscription", "plan": "claude-max"}))
            .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(put(&app, "/api/billing/sessions/s2", Some("ctl"), json!({"billing": "api"})).await.0, 200);

    let rows = app
        .rows("SELECT session_id, billing, billing_plan, cost_is_estimate, spend_usd IS NULL FROM model_call_costs ORDER BY 1")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!("s1"), json!("subscription"), json!("claude-max"), json!(true), json!(true)],
            vec![json!("s2"), json!("api"), Value::Null, json!(false), json!(false)],
            vec![json!("s3"), json!("api"), Value::Null, json!(false), json!(false)],
        ]
    );
    let s1 = as_f64(&app.scalar("SELECT cost_usd FROM model_calls WHERE session_id = 's1'").await);
    let v = billing_cost(&app, "").await;
    assert!((as_f64(&v["estimated_usd"]) - s1).abs() < 1e-12, "{v}");
    assert!((as_f64(&v["spend_usd"]) - (total - s1)).abs() < 1e-12, "{v}");
    assert_eq!(as_i64(&v["subscription_calls"]), 1);
    assert_eq!(as_i64(&v["api_calls"]), 2);
    let v = billing_cost(&app, "?agent=coder").await;
    assert_eq!((as_i64(&v["subscription_calls"]), as_i64(&v["api_calls"])), (1, 1));

    let r = app.client.get(format!("{}/api/billing", app.http)).send().await.expect("list");
    let marks: Value = r.json().await.expect("json");
    assert_eq!(marks["marks"].as_array().map(Vec::len), Some(2), "{marks}");
    assert_eq!(marks["marks"][0]["who"], "control");
    app.shutdown().await;
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let r = app.client.get(format!("{}{path}", app.http)).send().await.expect("get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

fn close(a: &Value, b: f64) -> bool {
    (as_f64(a) - b).abs() < 1e-12
}

/// Every cost surface says which cost is spend and which an estimate: `/api/cost` (rows and
/// totals split, `group_by=billing`; the hourly rollup gives way to the marked calls), the session
/// list and detail (`billing`, `spend_usd`, `estimated_usd`, per model too) and the task detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cost_surface_splits_spend_from_estimate() {
    let app = spawn().await;
    let mut body = payload();
    body["resourceSpans"][0]["resource"]["attributes"]
        .as_array_mut()
        .expect("attributes")
        .push(json!({"key": "agent_console.task.id", "value": {"stringValue": "T-9"}}));
    let r = app.post("/v1/traces", "application/json", serde_json::to_vec(&body).expect("json")).await;
    assert_eq!(r.status(), 200);
    let cost = |s: &'static str| {
        let app = &app;
        async move { as_f64(&app.scalar(&format!("SELECT cost_usd FROM model_calls WHERE session_id = '{s}'")).await) }
    };
    let (s1, s2, s3) = (cost("s1").await, cost("s2").await, cost("s3").await);
    assert!(s1 > 0.0 && s2 > 0.0 && s3 > 0.0);

    // Before any mark: the hourly rollup answers, all of it spend.
    let v = get_json(&app, "/api/cost?group_by=agent").await;
    assert_eq!(v["source"], "cost_hourly", "{v}");
    assert!(close(&v["totals"]["spend_usd"], s1 + s2 + s3) && close(&v["totals"]["estimated_usd"], 0.0), "{v}");

    assert_eq!(
        put(&app, "/api/billing/agents/coder", None, json!({"billing": "subscription", "plan": "max"})).await.0,
        200
    );
    assert_eq!(put(&app, "/api/billing/sessions/s2", None, json!({"billing": "api"})).await.0, 200);

    // /api/cost by agent: coder's s1 is an estimate, its s2 spend; reviewer all spend.
    let v = get_json(&app, "/api/cost?group_by=agent").await;
    assert_eq!(v["source"], "model_calls", "{v}");
    let row = |g: &str| v["rows"].as_array().expect("rows").iter().find(|r| r["group"] == g).cloned().expect("row");
    let coder = row("coder");
    assert!(close(&coder["cost_usd"], s1 + s2), "{coder}");
    assert!(close(&coder["spend_usd"], s2) && close(&coder["estimated_usd"], s1), "{coder}");
    let reviewer = row("reviewer");
    assert!(close(&reviewer["spend_usd"], s3) && close(&reviewer["estimated_usd"], 0.0), "{reviewer}");
    let t = &v["totals"];
    assert!(close(&t["spend_usd"], s2 + s3) && close(&t["estimated_usd"], s1) && close(&t["cost_usd"], s1 + s2 + s3));
    assert_eq!((as_i64(&t["input_tokens"]), as_i64(&coder["input_tokens"])), (7000, 3000), "token sums intact: {v}");
    // ... by billing.
    let v = get_json(&app, "/api/cost?group_by=billing").await;
    let by: Vec<(String, f64, i64)> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["group"].as_str().expect("group").to_string(), as_f64(&r["cost_usd"]), as_i64(&r["calls"])))
        .collect();
    assert_eq!(by.len(), 2, "{v}");
    let sub = by.iter().find(|b| b.0 == "subscription").expect("subscription row");
    let api = by.iter().find(|b| b.0 == "api").expect("api row");
    assert!((sub.1 - s1).abs() < 1e-12 && sub.2 == 1, "{v}");
    assert!((api.1 - (s2 + s3)).abs() < 1e-12 && api.2 == 2, "{v}");
    assert_eq!(get_status(&app, "/api/cost?group_by=colour").await, 400);

    // Sessions: the list and the detail.
    let v = get_json(&app, "/api/sessions?agent=coder").await;
    let sessions = v["sessions"].as_array().expect("sessions");
    let s = |id: &str| sessions.iter().find(|s| s["session_id"] == id).cloned().expect("session");
    let one = s("s1");
    assert_eq!((&one["billing"], &one["billing_plan"]), (&json!("subscription"), &json!("max")), "{one}");
    assert!(close(&one["estimated_usd"], s1) && close(&one["spend_usd"], 0.0) && close(&one["cost_usd"], s1));
    let two = s("s2");
    assert_eq!((&two["billing"], &two["billing_plan"]), (&json!("api"), &Value::Null), "{two}");
    assert!(close(&two["spend_usd"], s2) && close(&two["estimated_usd"], 0.0), "{two}");
    let d = get_json(&app, "/api/sessions/s1").await;
    assert_eq!(d["session"]["billing"], "subscription");
    assert!(close(&d["models"][0]["estimated_usd"], s1) && close(&d["models"][0]["spend_usd"], 0.0), "{d}");
    assert_eq!(as_i64(&d["models"][0]["input_tokens"]), 1000, "{d}");
    assert_eq!(as_i64(&one["input_tokens"]), 1000, "{one}");

    // The task detail: all three calls are task T-9's.
    let d = get_json(&app, "/api/tasks/T-9").await;
    let c = &d["cost"];
    assert!(close(&c["total_usd"], s1 + s2 + s3), "{d}");
    assert!(close(&c["spend_usd"], s2 + s3) && close(&c["estimated_usd"], s1), "{c}");
    assert_eq!(c["billing"], "mixed");
    app.shutdown().await;
}

async fn get_status(app: &TestApp, path: &str) -> u16 {
    app.client.get(format!("{}{path}", app.http)).send().await.expect("get").status().as_u16()
}
