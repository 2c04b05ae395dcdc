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
