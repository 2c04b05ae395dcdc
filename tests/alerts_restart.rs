//! Alerts across a restart (issue 13): the evaluator is seeded from the store, so a session budget
//! that had spent 90% does not start again at zero, and an alert firing before the restart stays
//! firing (no second firing, its gauge still shown) until it resolves once. Real HTTP, the same
//! data directory opened twice in process (`app::start`).

mod common;

use agent_console::app;
use agent_console::config::ServeArgs;
use common::TestApp;
use serde_json::{json, Value};

const SESSION: &str = "restart-s1";

async fn start(dir: tempfile::TempDir) -> TestApp {
    let mut args = ServeArgs::defaults();
    args.data_dir = dir.path().to_path_buf();
    args.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    args.http_addr = "127.0.0.1:0".parse().expect("addr");
    args.pg_addr = "127.0.0.1:0".parse().expect("addr");
    args.duckdb_memory_limit = "512MB".into();
    let running = app::start(args).await.expect("start app");
    TestApp {
        ingest_token: None,
        http: format!("http://{}", running.http_addr),
        grpc: format!("http://{}", running.grpc_addr),
        pg: running.pg_addr,
        running: Some(running),
        client: reqwest::Client::new(),
        dir,
    }
}

/// Stop the collector, keep its data directory.
async fn stop(mut app: TestApp) -> tempfile::TempDir {
    app.running.take().expect("running").shutdown().await;
    app.dir
}

/// One LLM span of the session with a reported cost.
fn call(cost: f64, id: u64) -> Vec<u8> {
    let t = 1_795_257_000_000_000_000u64 + id * 1_000_000;
    let attrs = json!([
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}},
        {"key": "gen_ai.conversation.id", "value": {"stringValue": SESSION}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 100}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 10}},
        {"key": "gen_ai.usage.cost", "value": {"doubleValue": cost}},
    ]);
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "restart-test"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": format!("{:032x}", 0xbee000 + id), "spanId": format!("{:016x}", 0xbee000 + id),
            "name": "chat", "kind": 3, "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + 1000).to_string(),
            "attributes": attrs }]}]}]}))
    .expect("json")
}

/// Stored alerts (tier, state, value) in firing order, once `n` are there (the runner stores
/// each event a moment after the commit; a 60 s failure guard, no assertion depends on time).
async fn alerts(app: &TestApp, n: usize) -> Vec<(f64, String, f64, String)> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = app.rows("SELECT tier, state, value, alert_id FROM alerts ORDER BY fired_at, tier").await;
        if rows.len() >= n {
            return rows
                .iter()
                .map(|r| {
                    (
                        common::as_f64(&r[0]),
                        r[1].as_str().unwrap_or("").to_string(),
                        common::as_f64(&r[2]),
                        r[3].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
        }
        assert!(std::time::Instant::now() < until, "timed out waiting for {n} alerts: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn metrics(app: &TestApp) -> String {
    app.client.get(format!("{}/metrics", app.http)).send().await.expect("metrics").text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_survives_a_restart_and_fires_each_tier_once() {
    let app = start(tempfile::tempdir().expect("tempdir")).await;
    let rule = json!({"name": "restart-budget", "kind": "budget", "scope": "session", "threshold": 1.0,
                      "tiers": [0.5, 1.0], "cooldown_secs": 0});
    let r = app.client.post(format!("{}/api/alerts/rules", app.http)).json(&rule).send().await.expect("post");
    assert_eq!(r.status(), 201);
    // 90% of the budget: the 50% tier fires.
    for (i, cost) in [0.4, 0.5].into_iter().enumerate() {
        assert_eq!(app.post("/v1/traces", "application/json", call(cost, i as u64)).await.status(), 200);
    }
    let before = alerts(&app, 1).await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!((before[0].0, before[0].1.as_str()), (0.5, "firing"));
    let gauge = format!("agent_console_alert_firing{{rule=\"restart-budget\",scope=\"session:{SESSION}\"}} 1");
    assert!(metrics(&app).await.contains(&gauge));

    let dir = stop(app).await;
    let app = start(dir).await;
    // The restored alert still shows as firing.
    assert!(metrics(&app).await.contains(&gauge), "{}", metrics(&app).await);
    // 20% more: 110% of the budget. Only the 100% tier fires, exactly once, on the seeded sum.
    assert_eq!(app.post("/v1/traces", "application/json", call(0.2, 2)).await.status(), 200);
    let after = alerts(&app, 2).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0], before[0], "the 50% alert is the same row, still firing");
    assert_eq!((after[1].0, after[1].1.as_str()), (1.0, "firing"));
    assert!((after[1].2 - 1.1).abs() < 1e-9, "{after:?}");
    // More spend fires nothing more.
    assert_eq!(app.post("/v1/traces", "application/json", call(0.3, 3)).await.status(), 200);
    let v: Value = app
        .client
        .get(format!("{}/api/alerts?state=all", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["alerts"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(metrics(&app)
        .await
        .contains(&format!("agent_console_alert_firing{{rule=\"restart-budget\",scope=\"session:{SESSION}\"}} 2")));

    // Deleting the rule resolves both once, the restored one under its stored id.
    let r = app.client.delete(format!("{}/api/alerts/rules/restart-budget", app.http)).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = app.scalar("SELECT count(*) FROM alerts WHERE state = 'resolved'").await;
        if common::as_i64(&n) == 2 {
            break;
        }
        assert!(std::time::Instant::now() < until, "timed out waiting for the resolutions");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(common::as_i64(&app.scalar("SELECT count(*) FROM alerts").await), 2);
    assert!(!metrics(&app).await.contains("agent_console_alert_firing{"));
    app.shutdown().await;
}
