//! OpenClaw end to end: the real `agent-console-openclaw` binary against an in-test fake gateway
//! that behaves as `shared/reference/openclaw-gateway.md` describes (challenge first, closed
//! connect schema, allowed client ids and modes, scopes, start-up UNAVAILABLE, per-run row values,
//! `sessions.changed` with `phase: end`, token mismatch), and a collector on port 0. Totals in the
//! store must equal the sum of the runs exactly, through shim and gateway restarts and a plugin
//! reporting the same runs.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_console_conventions::openclaw::plugin;
use futures::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "gw-secret";
const DEADLINE: Duration = Duration::from_secs(60);
const CLIENT_IDS: &[&str] = &[
    "gateway-client",
    "cli",
    "openclaw-tui",
    "webchat",
    "openclaw-control-ui",
    "node-host",
    "openclaw-worker",
    "test",
    "openclaw-probe",
];
const MODES: &[&str] = &["webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"];
const CONNECT_KEYS: &[&str] = &["minProtocol", "maxProtocol", "client", "role", "scopes", "auth", "device", "caps"];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Fake gateway

#[derive(Default)]
struct GwState {
    rows: Mutex<Vec<Value>>,
    /// The first connect after each (re)start is answered UNAVAILABLE.
    starting: AtomicBool,
    lists: AtomicUsize,
    hellos: AtomicUsize,
}

struct Gateway {
    state: Arc<GwState>,
    events: broadcast::Sender<Value>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    async fn start() -> Self {
        let (events, _) = broadcast::channel(64);
        let mut g = Gateway { state: Arc::default(), events, addr: "127.0.0.1:0".parse().expect("addr"), server: None };
        g.listen().await;
        g
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("bind gateway");
        self.addr = listener.local_addr().expect("addr");
        self.state.starting.store(true, Ordering::SeqCst);
        let (state, events) = (self.state.clone(), self.events.clone());
        self.server = Some(tokio::spawn(async move {
            // Dropping this task (abort) drops the set, which aborts every connection.
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.spawn(connection(state.clone(), events.subscribe(), s));
            }
        }));
    }

    /// Drop the listener and every connection (a gateway restart's first half).
    async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn upsert(&self, row: Value) -> Value {
        let mut rows = self.state.rows.lock().expect("rows");
        let key = row["key"].clone();
        match rows.iter_mut().find(|r| r["key"] == key) {
            Some(r) => {
                for (k, v) in row.as_object().expect("object") {
                    r[k] = v.clone();
                }
                r.clone()
            }
            None => {
                rows.push(row.clone());
                row
            }
        }
    }

    fn add_session(&self, key: &str, parent: Option<&str>) {
        let mut row = json!({
            "key": key, "sessionId": format!("sid-{key}"), "kind": "direct", "agentId": "main",
            "model": "claude-sonnet-4-5", "modelProvider": "anthropic", "totalTokens": 0,
            "createdAt": now_ms(), "updatedAt": now_ms(), "status": "queued", "hasActiveRun": false,
        });
        if let Some(p) = parent {
            row["parentSessionKey"] = json!(p);
            row["spawnDepth"] = json!(1);
            let mut rows = self.state.rows.lock().expect("rows");
            if let Some(parent_row) = rows.iter_mut().find(|r| r["key"] == p) {
                parent_row["childSessions"] = json!([key]);
            }
        }
        let row = self.upsert(row);
        let _ = self.events.send(json!({"sessionKey": key, "reason": "create", "session": row}));
    }

    fn start_run(&self, key: &str, run: &str) {
        let row = self.upsert(json!({"key": key, "status": "running", "hasActiveRun": true,
                                     "activeRunIds": [run], "startedAt": now_ms(), "updatedAt": now_ms()}));
        let _ = self.events.send(json!({"sessionKey": key, "phase": "start", "runId": run, "session": row}));
    }

    /// The run ends: the row's values become this run's (overwriting the previous run's).
    fn finish_run(&self, key: &str, run: &str, tokens: (i64, i64), cost: f64, event: bool) {
        let t = now_ms();
        let row = self.upsert(json!({
            "key": key, "status": "done", "hasActiveRun": false, "activeRunIds": [], "lastRunId": run,
            "inputTokens": tokens.0, "outputTokens": tokens.1, "estimatedCostUsd": cost,
            "totalTokens": 50_000, "endedAt": t, "runtimeMs": 1200, "updatedAt": t, "lastActivityAt": t,
        }));
        if event {
            let _ = self.events.send(json!({"sessionKey": key, "phase": "end", "runId": run, "session": row}));
        }
    }
}

fn res_err(id: &Value, code: &str, message: &str, extra: Value) -> Message {
    let mut error = json!({"code": code, "message": message});
    if let (Some(e), Some(x)) = (error.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    Message::text(json!({"type": "res", "id": id, "ok": false, "error": error}).to_string())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }))
}

async fn connection(state: Arc<GwState>, mut events: broadcast::Receiver<Value>, stream: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let challenge = json!({"type": "event", "event": "connect.challenge",
                           "payload": {"nonce": "n-1", "ts": now_ms(), "capabilities": []}});
    if ws.send(Message::text(challenge.to_string())).await.is_err() {
        return;
    }
    let Some(Ok(Message::Text(first))) = ws.next().await else { return };
    let req: Value = serde_json::from_str(first.as_str()).unwrap_or(Value::Null);
    let id = req["id"].clone();
    let p = &req["params"];
    let unknown_key = p.as_object().map(|o| o.keys().any(|k| !CONNECT_KEYS.contains(&k.as_str()))).unwrap_or(true);
    let valid = req["type"] == "req"
        && req["method"] == "connect"
        && !unknown_key
        && p["minProtocol"] == 4
        && p["maxProtocol"] == 4
        && p["client"]["version"].is_string()
        && p["client"]["platform"].is_string()
        && CLIENT_IDS.iter().any(|c| p["client"]["id"] == *c)
        && MODES.iter().any(|m| p["client"]["mode"] == *m);
    if !valid {
        let _ = ws.send(res_err(&id, "INVALID_REQUEST", "invalid connect params", json!({}))).await;
        let _ = ws.send(close(1008, "invalid connect params")).await;
        return;
    }
    if state.starting.swap(false, Ordering::SeqCst) {
        let extra = json!({"retryable": true, "retryAfterMs": 200});
        let _ = ws.send(res_err(&id, "UNAVAILABLE", "gateway starting", extra)).await;
        let _ = ws.send(close(1013, "starting")).await;
        return;
    }
    if p["auth"]["token"] != TOKEN {
        let extra = json!({"details": {"code": "AUTH_TOKEN_MISMATCH"}});
        let _ = ws.send(res_err(&id, "INVALID_REQUEST", "unauthorized: gateway token mismatch", extra)).await;
        let _ = ws.send(close(1008, "unauthorized")).await;
        return;
    }
    let scopes: Vec<String> = p["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let hello = json!({"type": "res", "id": id, "ok": true, "payload": {
        "type": "hello-ok", "protocol": 4, "server": {"version": "2026.9.6", "connId": "c-1"},
        "features": {"methods": ["sessions.list", "sessions.subscribe"], "events": ["sessions.changed"]},
        "snapshot": {}, "auth": {"method": "token", "role": "operator", "scopes": scopes},
        "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 15000}}});
    if ws.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    state.hellos.fetch_add(1, Ordering::SeqCst);
    let mut subscribed = false;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(Message::Text(t))) = msg else { return };
                let req: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                let id = req["id"].clone();
                if !scopes.iter().any(|s| s == "operator.read") {
                    let extra = json!({"details": {"code": "MISSING_SCOPE"}});
                    if ws.send(res_err(&id, "FORBIDDEN", "missing scope: operator.read", extra)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let payload = match req["method"].as_str() {
                    Some("sessions.list") => {
                        state.lists.fetch_add(1, Ordering::SeqCst);
                        let rows = state.rows.lock().expect("rows").clone();
                        json!({"ts": now_ms(), "count": rows.len(), "totalCount": rows.len(), "hasMore": false,
                               "defaults": {"modelProvider": "anthropic", "model": "claude-sonnet-4-5"},
                               "sessions": rows})
                    }
                    Some("sessions.subscribe") => {
                        subscribed = true;
                        json!({"subscribed": true})
                    }
                    _ => {
                        if ws.send(res_err(&id, "INVALID_REQUEST", "unknown method", json!({}))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let res = json!({"type": "res", "id": id, "ok": true, "payload": payload});
                if ws.send(Message::text(res.to_string())).await.is_err() {
                    return;
                }
            }
            ev = events.recv() => {
                let Ok(payload) = ev else { continue };
                if subscribed {
                    let e = json!({"type": "event", "event": "sessions.changed", "payload": payload});
                    if ws.send(Message::text(e.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real shim binary

fn shim_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "agent-console-openclaw"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the shim failed");
        let dir = std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("release")).unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            exe.parent().and_then(|p| p.parent()).expect("target/release").to_path_buf()
        });
        let bin = dir.join("agent-console-openclaw");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

fn spawn_shim(gateway: &str, token: &str, endpoint: &str, state: &std::path::Path, stderr: Stdio) -> Child {
    Command::new(shim_binary())
        .args(["--gateway", gateway, "--interval", "100ms", "--state"])
        .arg(state)
        .env("OPENCLAW_GATEWAY_TOKEN", token)
        .env("AGENT_CONSOLE_ENDPOINT", endpoint)
        .env("AGENT_CONSOLE_TASK_ID", "OC-1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn shim")
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_count(app: &common::TestApp, run: &str) -> i64 {
    common::as_i64(&app.scalar(&format!("SELECT count(*) FROM model_calls WHERE run_id = '{run}'")).await)
}

async fn wait_run(app: &common::TestApp, run: &str) {
    wait_until(run, || async { run_count(app, run).await >= 1 }).await;
}

/// Wait for `n` more `sessions.list` polls (so repeated polls had every chance to double count).
async fn wait_polls(gw: &Gateway, n: usize) {
    let target = gw.state.lists.load(Ordering::SeqCst) + n;
    wait_until("polls", || async { gw.state.lists.load(Ordering::SeqCst) >= target }).await;
}

const MAIN: &str = "agent:main:main";
const CHILD: &str = "agent:main:subagent:7f3a";

/// (session, run id, input, output, cost): costs are binary fractions so sums compare exactly.
const RUNS: &[(&str, &str, i64, i64, f64)] = &[
    (MAIN, "run-1", 1000, 200, 0.015625),
    (CHILD, "run-c1", 300, 50, 0.0078125),
    (MAIN, "run-2", 2000, 400, 0.03125),
    (MAIN, "run-3", 1500, 100, 0.046875),
    (MAIN, "run-4", 800, 80, 0.0625),
    (MAIN, "run-5", 100, 10, 0.125),
];

fn run(id: &str) -> (&'static str, &'static str, i64, i64, f64) {
    *RUNS.iter().find(|r| r.1 == id).expect("run")
}

fn finish(gw: &Gateway, id: &str, event: bool) {
    let (key, run_id, i, o, c) = run(id);
    gw.start_run(key, run_id);
    gw.finish_run(key, run_id, (i, o), c, event);
}

async fn assert_totals(app: &common::TestApp, what: &str) {
    let rows = app
        .rows(&format!(
            "SELECT sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT, sum(cost_usd), count(*), \
                    count(DISTINCT run_id) FROM model_calls WHERE session_id IN ('{MAIN}', '{CHILD}')"
        ))
        .await;
    let r = &rows[0];
    let (i, o, c): (i64, i64, f64) = RUNS.iter().fold((0, 0, 0.0), |a, r| (a.0 + r.2, a.1 + r.3, a.2 + r.4));
    assert_eq!(common::as_i64(&r[0]), i, "{what}: input tokens");
    assert_eq!(common::as_i64(&r[1]), o, "{what}: output tokens");
    assert_eq!(common::as_f64(&r[2]), c, "{what}: cost, exactly");
    assert_eq!(common::as_i64(&r[3]), RUNS.len() as i64, "{what}: one row per run");
    assert_eq!(common::as_i64(&r[4]), RUNS.len() as i64, "{what}: each run id once");
    let all = common::as_i64(&app.scalar("SELECT count(*) FROM model_calls").await);
    assert_eq!(all, RUNS.len() as i64, "{what}: no other model calls");
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// What the `diagnostics-otel` plugin (2026.9.x: no session keys) sends for the same runs: one
/// `openclaw.model.usage` span per model call; run-3 took two calls.
fn plugin_spans() -> ExportTraceServiceRequest {
    let now = now_ms() as u64 * 1_000_000;
    let calls: Vec<(i64, i64)> =
        RUNS.iter().flat_map(|r| if r.1 == "run-3" { vec![(1000, 60), (500, 40)] } else { vec![(r.2, r.3)] }).collect();
    let spans = calls
        .iter()
        .enumerate()
        .map(|(n, (i, o))| Span {
            trace_id: [n as u8 + 1; 16].to_vec(),
            span_id: [n as u8 + 1; 8].to_vec(),
            name: plugin::USAGE_SPAN.into(),
            start_time_unix_nano: now - 1_000_000_000,
            end_time_unix_nano: now,
            attributes: vec![
                kv(plugin::PROVIDER, any_value::Value::StringValue("anthropic".into())),
                kv(plugin::MODEL, any_value::Value::StringValue("claude-sonnet-4-5".into())),
                kv(plugin::CHANNEL, any_value::Value::StringValue("webchat".into())),
                kv(plugin::TOKENS_INPUT, any_value::Value::IntValue(*i)),
                kv(plugin::TOKENS_OUTPUT, any_value::Value::IntValue(*o)),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue("openclaw-gateway".into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "openclaw".into(), ..Default::default() }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_counted_once_through_restarts_and_a_plugin() {
    let app = common::spawn().await;
    let mut gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    gw.add_session(MAIN, None);

    let mut shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    // The first connect is answered UNAVAILABLE; the shim retries after retryAfterMs.
    wait_until("hello", || async { gw.state.hellos.load(Ordering::SeqCst) >= 1 }).await;
    wait_polls(&gw, 2).await;

    finish(&gw, "run-1", false); // seen by polling only
    wait_run(&app, "run-1").await;
    gw.add_session(CHILD, Some(MAIN));
    finish(&gw, "run-c1", true); // seen by the end event (and by every later poll)
    wait_run(&app, "run-c1").await;
    wait_polls(&gw, 5).await;

    // Shim restart: a run ends while the shim is down.
    drop(shim);
    finish(&gw, "run-2", false);
    shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    wait_run(&app, "run-2").await;
    finish(&gw, "run-3", true);
    wait_run(&app, "run-3").await;

    // Gateway restart: drop every connection, a run ends meanwhile, re-listen on the same port.
    gw.stop().await;
    finish(&gw, "run-4", false);
    let hellos = gw.state.hellos.load(Ordering::SeqCst);
    gw.listen().await;
    wait_until("reconnect", || async { gw.state.hellos.load(Ordering::SeqCst) > hellos }).await;
    wait_run(&app, "run-4").await;
    finish(&gw, "run-5", true);
    wait_run(&app, "run-5").await;
    wait_polls(&gw, 5).await;

    assert_totals(&app, "shim").await;
    let parent = app
        .scalar(&format!(
            "SELECT count(*) FROM logs WHERE session_id = '{CHILD}' AND event_name = 'openclaw.session.status' \
             AND json_extract_string(attributes, '$.\"agent_console.session.parent_id\"') = '{MAIN}'"
        ))
        .await;
    assert!(common::as_i64(&parent) >= 1, "child status records carry the parent");
    let statuses = app
        .rows(&format!(
            "SELECT body FROM logs WHERE session_id = '{MAIN}' AND event_name = 'openclaw.session.status' ORDER BY time"
        ))
        .await;
    assert_eq!(statuses.first().map(|r| r[0].clone()), Some(json!("queued")), "first appearance");
    assert!(statuses.iter().any(|r| r[0] == "running") && statuses.iter().any(|r| r[0] == "done"));
    let task = app.scalar("SELECT count(DISTINCT task_id) FROM model_calls WHERE task_id = 'OC-1'").await;
    assert_eq!(common::as_i64(&task), 1, "AGENT_CONSOLE_TASK_ID tags the records");
    let cost_source = app.scalar("SELECT count(*) FROM model_calls WHERE cost_source = 'reported'").await;
    assert_eq!(common::as_i64(&cost_source), RUNS.len() as i64, "the gateway's cost wins");

    // The plugin reports the same runs per model call: kept as spans, not counted again.
    let r = app.post("/v1/traces", "application/x-protobuf", plugin_spans().encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let spans = app.scalar("SELECT count(*) FROM spans WHERE name = 'openclaw.model.usage'").await;
    assert_eq!(common::as_i64(&spans), RUNS.len() as i64 + 1);
    assert_totals(&app, "shim + plugin").await;

    drop(shim);
    gw.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_exits_non_zero_with_a_clear_message() {
    let app = common::spawn().await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_shim(&gw.url(), "wrong-token", &app.http, &state_dir.path().join("s.json"), Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the shim kept running with a bad token");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("token")).collect();
    assert_eq!(lines.len(), 1, "one clear line: {err}");
    assert!(lines[0].contains("rejected the token") && lines[0].contains("OPENCLAW_GATEWAY_TOKEN"), "{err}");
    app.shutdown().await;
}

/// The fake gateway itself follows the reference (so the shim is tested against the real rules).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gateway_enforces_the_reference_rules() {
    let gw = Gateway::start().await;
    gw.state.starting.store(false, Ordering::SeqCst);
    async fn connect(url: &str, params: Value) -> (Value, Option<Value>) {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
        let Some(Ok(Message::Text(ch))) = ws.next().await else { panic!("no challenge") };
        assert_eq!(serde_json::from_str::<Value>(ch.as_str()).expect("json")["event"], "connect.challenge");
        let req = json!({"type": "req", "id": "1", "method": "connect", "params": params});
        ws.send(Message::text(req.to_string())).await.expect("send");
        let Some(Ok(Message::Text(res))) = ws.next().await else { panic!("no answer") };
        let res: Value = serde_json::from_str(res.as_str()).expect("json");
        if res["ok"] != true {
            return (res, None);
        }
        let list = json!({"type": "req", "id": "2", "method": "sessions.list", "params": {}});
        ws.send(Message::text(list.to_string())).await.expect("send");
        let Some(Ok(Message::Text(l))) = ws.next().await else { panic!("no list answer") };
        (res, Some(serde_json::from_str(l.as_str()).expect("json")))
    }
    let base = |id: &str, mode: &str, scopes: Option<Value>| {
        let mut p = json!({"minProtocol": 4, "maxProtocol": 4, "role": "operator", "auth": {"token": TOKEN},
                           "client": {"id": id, "version": "1", "platform": "linux", "mode": mode}});
        if let Some(s) = scopes {
            p["scopes"] = s;
        }
        p
    };
    let (res, _) = connect(&gw.url(), base("gateway-client", "operator", None)).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "operator mode is rejected");
    let (res, _) = connect(&gw.url(), base("my-shim", "backend", None)).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "unknown client id is rejected");
    let (res, list) = connect(&gw.url(), base("gateway-client", "backend", None)).await;
    assert_eq!(res["ok"], true);
    assert_eq!(list.expect("list")["error"]["code"], "FORBIDDEN", "no scopes: calls are forbidden");
    let (_, list) = connect(&gw.url(), base("gateway-client", "backend", Some(json!(["operator.read"])))).await;
    assert_eq!(list.expect("list")["ok"], true);
}

fn cumulative(name: &str, value: f64, start_ns: u64, time_ns: u64) -> ExportMetricsServiceRequest {
    let point = NumberDataPoint {
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        attributes: vec![
            kv("openclaw.token", any_value::Value::StringValue("input".into())),
            kv("openclaw.model", any_value::Value::StringValue("claude-sonnet-4-5".into())),
        ],
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue("openclaw-gateway".into()))],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "openclaw".into(), ..Default::default() }),
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The plugin re-sends its cumulative sums on every export: increments sum to the latest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_cumulative_metrics_are_never_summed_across_exports() {
    let app = common::spawn().await;
    let start = (now_ms() as u64 - 60_000) * 1_000_000;
    for (n, (tokens, cost)) in [(1000.0, 0.5), (2500.0, 1.25), (4000.0, 2.0)].into_iter().enumerate() {
        let t = start + (n as u64 + 1) * 10_000_000_000;
        for req in
            [cumulative(plugin::TOKENS_METRIC, tokens, start, t), cumulative(plugin::COST_METRIC, cost, start, t)]
        {
            let r = app.post("/v1/metrics", "application/x-protobuf", req.encode_to_vec()).await;
            assert_eq!(r.status(), 200);
        }
    }
    let rows = app
        .rows(
            "SELECT name, sum(increment), count(*) FROM metric_increments \
             WHERE name IN ('openclaw.tokens', 'openclaw.cost.usd') GROUP BY name ORDER BY name",
        )
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0][0].clone(), common::as_f64(&rows[0][1])), (json!("openclaw.cost.usd"), 2.0));
    assert_eq!((rows[1][0].clone(), common::as_f64(&rows[1][1])), (json!("openclaw.tokens"), 4000.0));
    assert_eq!(common::as_i64(&rows[1][2]), 3, "three exports of one series");
    let raw = app.scalar("SELECT sum(value) FROM metric_points WHERE name = 'openclaw.tokens'").await;
    assert_eq!(common::as_f64(&raw), 7500.0, "summing the raw points would over-count");
    let calls = app.scalar("SELECT count(*) FROM model_calls").await;
    assert_eq!(common::as_i64(&calls), 0, "cumulative metrics are points, not model calls");
    app.shutdown().await;
}

/// Issue 10, row 16: the shim's state file is corrupt after a restart of both the shim and the
/// collector; the shim starts its ledger empty and re-emits each session's latest run. The
/// collector's run-id memory is restored from the store, so the run is still counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row16_corrupt_shim_state_after_a_collector_restart_counts_runs_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_path_buf();
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    gw.add_session(MAIN, None);
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    wait_until("hello", || async { gw.state.hellos.load(Ordering::SeqCst) >= 1 }).await;
    finish(&gw, "run-1", true);
    wait_run(&app, "run-1").await;
    wait_polls(&gw, 3).await;
    drop(shim);
    assert!(state.exists(), "the shim saved its state");
    app.shutdown().await;

    // Both restart; the shim's state file is garbage.
    std::fs::write(&state, b"{\"version\": 1, \"sess").expect("corrupt the state file");
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    let q = "SELECT count(*) FROM logs WHERE event_name = 'openclaw.run' \
             AND json_extract_string(attributes, '$.\"openclaw.run.id\"') = 'run-1'";
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    wait_until("the shim re-sends run-1", || async { common::as_i64(&app.scalar(q).await) >= 2 }).await;
    wait_polls(&gw, 3).await;
    assert_eq!(run_count(&app, "run-1").await, 1, "a re-sent run is counted once after a collector restart");
    let tokens = app.scalar("SELECT sum(input_tokens) FROM model_calls WHERE run_id = 'run-1'").await;
    assert_eq!(common::as_i64(&tokens), run("run-1").2);
    drop(shim);
    app.shutdown().await;
}
