//! "Deny its next tool call" (issue 13, Actions) over real HTTP with Claude Code's `http` hook
//! path: a `deny` command with no tool call waiting for approval (from the API, and as an alert
//! rule's action, issued by `rule:<name>`) answers the session's next `PreToolUse` with
//! `permissionDecision: deny` and the reason, once; it is audited and ends `observed` when the
//! tool did not run.

mod common;

use common::{as_i64, spawn, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

async fn hook(app: &TestApp, name: &str) -> Value {
    let r = app.post("/hooks/claude", "application/json", fixture(&format!("claude-code/hooks/{name}.json"))).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("hook answer json")
    }
}

async fn commands(app: &TestApp) -> Vec<Value> {
    let v: Value = app
        .client
        .get(format!("{}/api/sessions/{SESSION}/commands", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    v["commands"].as_array().cloned().unwrap_or_default()
}

fn is_deny(v: &Value) -> bool {
    v["hookSpecificOutput"]["permissionDecision"] == "deny"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_command_denies_the_next_pre_tool_use_once() {
    let app = spawn().await;
    hook(&app, "01-SessionStart").await;
    // Capabilities say what deny does with nothing waiting.
    let d: Value = app
        .client
        .get(format!("{}/api/sessions/{SESSION}", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let deny = &d["session"]["capabilities"]["deny"];
    assert_eq!(deny["available"], true, "{d}");
    assert!(deny["note"].as_str().is_some_and(|n| n.contains("next tool call")), "{deny}");
    assert_eq!(d["session"]["capabilities"]["approve"]["available"], false);

    let r = app
        .client
        .post(format!("{}/api/sessions/{SESSION}/commands", app.http))
        .json(&json!({"kind": "deny", "reason": "DENY-NEXT-1: not now"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    // An approve with nothing waiting is still refused.
    let r = app
        .client
        .post(format!("{}/api/sessions/{SESSION}/commands", app.http))
        .json(&json!({"kind": "approve"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 409);

    assert!(!is_deny(&hook(&app, "02-UserPromptSubmit").await), "not a tool call: passes");
    let a = hook(&app, "03-PreToolUse").await;
    assert!(is_deny(&a), "{a}");
    let reason = a["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap_or("");
    assert!(reason.contains("DENY-NEXT-1: not now"), "{a}");
    let c = commands(&app).await.into_iter().find(|c| c["kind"] == "deny").expect("deny command");
    assert_eq!(c["status"], "delivered", "{c}");
    assert_eq!(c["tool_use_id"], "toolu_6d09c4c13fbb4643bc930833", "{c}");
    // The tool did not run: the batch that follows observes it. One-shot: the next call passes.
    hook(&app, "05-PostToolBatch").await;
    let c = commands(&app).await.into_iter().find(|c| c["kind"] == "deny").expect("deny command");
    assert_eq!(c["status"], "observed", "{c}");
    assert!(!is_deny(&hook(&app, "03-PreToolUse").await));
    let audit = app
        .rows(&format!(
            "SELECT action, actor FROM control_audit WHERE session_id = '{SESSION}' AND kind = 'deny' ORDER BY time"
        ))
        .await;
    assert_eq!(audit.first().map(|r| r[0].clone()), Some(json!("command.accepted")), "{audit:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rule_with_action_deny_denies_the_next_tool_call() {
    let app = spawn().await;
    let rule = json!({"name": "deny-budget", "kind": "budget", "scope": "session", "threshold": 0.02,
                      "tiers": [1.0], "action": "deny"});
    let r = app.client.post(format!("{}/api/alerts/rules", app.http)).json(&rule).send().await.expect("post");
    assert_eq!(r.status(), 201);
    hook(&app, "01-SessionStart").await;
    // The captured session's telemetry: 0.0279 USD crosses the 0.02 budget.
    for p in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        assert_eq!(app.post("/v1/logs", "application/x-protobuf", fixture(p)).await.status(), 200);
    }
    // The action is issued off the runner's task: wait until it is accepted (60 s failure guard).
    let until = Instant::now() + Duration::from_secs(60);
    let c = loop {
        if let Some(c) = commands(&app).await.into_iter().find(|c| c["kind"] == "deny") {
            break c;
        }
        assert!(Instant::now() < until, "no deny command from the rule");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c["issued_by"], "rule:deny-budget", "{c}");
    assert_eq!(c["status"], "accepted");
    let a = hook(&app, "03-PreToolUse").await;
    assert!(is_deny(&a), "{a}");
    let reason = a["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap_or("");
    assert!(reason.contains("rule:deny-budget") && reason.contains("deny-budget firing"), "{a}");
    hook(&app, "06-Stop").await;
    let c = commands(&app).await.into_iter().find(|c| c["kind"] == "deny").expect("deny");
    assert_eq!(c["status"], "observed", "{c}");
    let n = as_i64(
        &app.scalar(
            "SELECT count(*) FROM control_audit WHERE actor = 'rule:deny-budget' AND action = 'command.accepted'",
        )
        .await,
    );
    assert_eq!(n, 1);
    app.shutdown().await;
}
