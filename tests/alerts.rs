//! Alerts end to end over real HTTP: a budget rule made through the API fires once on the captured
//! Claude Code session's reported cost, is stored and streamed, shows as a `/metrics` gauge,
//! pauses the session through the control plane (its next `PreToolUse` hook is held until a
//! resume), and notifies a webhook receiver on port 0 exactly once per firing and resolution with
//! a valid HMAC-SHA256 signature; a dead receiver gets retries, then a recorded failure, while
//! ingest goes on. The per-kind firing / resolving rules are unit-tested in `alerts::engine`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_console::alerts::webhook::{signature, SIGNATURE_HEADER};
use common::{spawn_with, TestApp};
use serde_json::{json, Value};

const SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";
const SECRET: &str = "hook-secret";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// Poll until `check` gives Some (a failure guard of 60 s; no assertion depends on time).
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(app: &TestApp, path: &str) -> Value {
    let r = app.client.get(format!("{}{path}", app.http)).send().await.expect("get");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

/// A webhook receiver on port 0: every request's signature header and body.
type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let sig = h.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                g.lock().expect("lock").push((sig, body.to_vec()));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await.expect("serve") });
    (url, got)
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app.client.post(format!("{}{path}", app.http)).json(&body).send().await.expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_pauses_the_session_and_notifies_once_each_way() {
    let (url, got) = receiver().await;
    let app = spawn_with(|a| a.alert_webhook_secret = Some(SECRET.into())).await;
    let rule = json!({"name": "session-budget", "kind": "budget", "scope": "session", "threshold": 0.02,
                      "tiers": [1.0], "action": "pause", "webhook": url, "cooldown_secs": 0});
    let (s, v) = post_json(&app, "/api/alerts/rules", rule).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["source"], "api");
    let (s, v) = post_json(&app, "/api/alerts/rules", json!({"name": "bad", "kind": "budget"})).await;
    assert_eq!(s, 400, "{v}");

    // The session's hooks go to the collector (so it can be paused), then its telemetry: 0.0279 USD.
    let r = app.post("/hooks/claude", "application/json", fixture("claude-code/hooks/01-SessionStart.json")).await;
    assert_eq!(r.status(), 200);
    for p in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        assert_eq!(app.post("/v1/logs", "application/x-protobuf", fixture(p)).await.status(), 200);
    }
    let alert = wait_for("the alert", || async {
        let v = get(&app, "/api/alerts?state=firing").await;
        v["alerts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(alert["rule"], "session-budget");
    assert_eq!(alert["scope"], format!("session:{SESSION}"));
    assert!((alert["value"].as_f64().expect("value") - 0.0279).abs() < 1e-9, "{alert}");
    assert_eq!(alert["threshold"], 0.02);
    let metrics = app.client.get(format!("{}/metrics", app.http)).send().await.expect("m").text().await.expect("t");
    assert!(
        metrics
            .contains(&format!("agent_console_alert_firing{{rule=\"session-budget\",scope=\"session:{SESSION}\"}} 1")),
        "{metrics}"
    );

    // The action is an ordinary audited command by `rule:session-budget`.
    let cmd = wait_for("the pause", || async {
        let v = get(&app, &format!("/api/sessions/{SESSION}/commands")).await;
        v["commands"].as_array()?.iter().find(|c| c["kind"] == "pause").cloned()
    })
    .await;
    assert_eq!(cmd["issued_by"], "rule:session-budget", "{cmd}");
    // The command is stored before it takes effect (`Control::commit`): a hook sent between the
    // two would pass, so wait for the pause to be the session's control state.
    wait_for("the pause in force", || async {
        let v = get(&app, &format!("/api/sessions/{SESSION}")).await;
        (v["session"]["control"]["state"] == "paused").then_some(())
    })
    .await;
    // The next PreToolUse is held until a resume.
    let hook = {
        let (client, url) = (app.client.clone(), format!("{}/hooks/claude", app.http));
        let body = fixture("claude-code/hooks/03-PreToolUse.json");
        tokio::spawn(async move {
            let r = client.post(url).header("content-type", "application/json").body(body).send().await.expect("hook");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    wait_for("the held hook", || async {
        let v = get(&app, &format!("/api/sessions/{SESSION}/commands")).await;
        let c = v["commands"].as_array()?.iter().find(|c| c["kind"] == "pause")?.clone();
        (c["status"] != "accepted").then_some(())
    })
    .await;
    assert!(!hook.is_finished(), "the hook waits while the session is paused");
    let (s, v) = post_json(&app, &format!("/api/sessions/{SESSION}/commands"), json!({"kind": "resume"})).await;
    assert_eq!(s, 201, "{v}");
    let (status, _) = tokio::time::timeout(Duration::from_secs(60), hook).await.expect("hook answered").expect("join");
    assert_eq!(status, 200);

    // Deleting the rule resolves its alert.
    let r = app.client.delete(format!("{}/api/alerts/rules/session-budget", app.http)).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    wait_for("the resolution", || async {
        let v = get(&app, "/api/alerts?state=resolved").await;
        v["alerts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    // Exactly one firing and one resolution reached the receiver, both signed.
    let bodies = wait_for("two deliveries", || async {
        let g = got.lock().expect("lock").clone();
        (g.len() >= 2).then_some(g)
    })
    .await;
    // Each delivery's row is written after the receiver answered it, so it may trail the body.
    wait_for("two recorded deliveries", || async {
        let ok = app.scalar("SELECT count(*) FROM alert_deliveries WHERE ok AND final").await.as_i64()?;
        assert!(ok <= 2, "{ok} successful deliveries recorded");
        (ok == 2).then_some(())
    })
    .await;
    assert_eq!(got.lock().expect("lock").len(), 2, "exactly one notification each way");
    let mut events = Vec::new();
    for (sig, body) in bodies {
        assert_eq!(sig.as_deref(), Some(signature(SECRET, &body).as_str()), "valid signature");
        let v: Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(v["alert_id"], alert["alert_id"]);
        events.push(v["event"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(events, ["firing", "resolved"]);
    let metrics = app.client.get(format!("{}/metrics", app.http)).send().await.expect("m").text().await.expect("t");
    assert!(!metrics.contains("agent_console_alert_firing{"), "{metrics}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_gets_retries_then_a_recorded_failure_while_ingest_goes_on() {
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", l.local_addr().expect("addr"))
    };
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[rule]]\nname = \"all-spend\"\nkind = \"budget\"\nscope = \"all\"\nthreshold = 0.01\ntiers = [1.0]\n\
             webhook = \"{dead}\"\nwebhook_format = \"slack\"\n"
        ),
    )
    .expect("write");
    let app = spawn_with(|a| a.alerts_file = Some(file.clone())).await;
    let v = get(&app, "/api/alerts/rules").await;
    assert_eq!(v["rules"][0]["source"], "file");
    let r = app.client.delete(format!("{}/api/alerts/rules/all-spend", app.http)).send().await.expect("delete");
    assert_eq!(r.status(), 409, "file rules change in the file");
    assert_eq!(
        app.post("/v1/logs", "application/x-protobuf", fixture("claude-code/otlp/logs-1.pb")).await.status(),
        200
    );
    wait_for("the alert", || async {
        let v = get(&app, "/api/alerts?state=firing").await;
        v["alerts"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    // Ingest goes on while deliveries fail and back off.
    assert_eq!(
        app.post("/v1/logs", "application/x-protobuf", fixture("claude-code/otlp/logs-2.pb")).await.status(),
        200
    );
    assert_eq!(app.scalar("SELECT count(*) FROM model_calls").await, 2);
    let attempts = wait_for("the last attempt", || async {
        let rows = app.rows("SELECT attempt, ok, final, status FROM alert_deliveries ORDER BY attempt").await;
        rows.iter().any(|r| r[2] == true).then_some(rows)
    })
    .await;
    let n = agent_console::alerts::webhook::MAX_ATTEMPTS as usize;
    assert_eq!(attempts.len(), n, "{attempts:?}");
    assert!(attempts.iter().all(|r| r[1] == false && r[3].is_null()), "{attempts:?}");
    // The alert's own state is intact.
    assert_eq!(app.scalar("SELECT count(*) FROM alerts WHERE state = 'firing'").await, 1);
    app.shutdown().await;
}
