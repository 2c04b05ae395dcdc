//! OpenClaw end to end: the real `agent-console-openclaw` binary against an in-test fake gateway
//! that behaves as `shared/reference/openclaw-gateway.md` describes (challenge first, closed
//! connect schema, allowed client ids and modes, scopes, start-up UNAVAILABLE, per-run row values,
//! `sessions.changed` with `phase: end`, token mismatch), and a collector on port 0. Totals in the
//! store must equal the sum of the runs exactly, through shim and gateway restarts and a plugin
//! reporting the same runs.

mod common;

use std::collections::HashMap;
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

/// Every model call the fake serves: 400 prompt / 40 completion tokens, as the reference's
/// stand-in; the cost is a binary fraction so sums compare exactly.
const CALL: (i64, i64, f64) = (400, 40, 0.0078125);
const WRITE_METHODS: &[&str] = &["sessions.abort", "sessions.send", "sessions.steer", "chat.abort", "sessions.patch"];
const PATCH_KEYS: &[&str] = &["key", "archived", "expectedSessionId", "label", "pinned"];
const ABORT_KEYS: &[&str] = &["key", "runId", "agentId", "clearQueued"];
const SEND_KEYS: &[&str] =
    &["key", "agentId", "message", "mentions", "thinking", "attachments", "timeoutMs", "idempotencyKey"];

#[derive(Default)]
struct GwState {
    rows: Mutex<Vec<Value>>,
    /// The first connect after each (re)start is answered UNAVAILABLE.
    starting: AtomicBool,
    /// The first `sessions.usage` after each (re)start is answered `usage: null` (refreshing).
    usage_fresh: AtomicBool,
    lists: AtomicUsize,
    hellos: AtomicUsize,
    /// Control calls received: (method, params), in order.
    calls: Mutex<Vec<(String, Value)>>,
    /// Usage served per session key (what `sessions.usage` answers): input, output, cost, calls.
    served: Mutex<HashMap<String, (i64, i64, f64, i64)>>,
    /// Usage served per run (a finished run's row values).
    runs: Mutex<HashMap<String, (i64, i64, f64)>>,
    /// `sessions.send` idempotency keys -> the reply given.
    sends: Mutex<HashMap<String, Value>>,
    /// Scopes the gateway grants (None: what the client asked for).
    grant: Mutex<Option<Vec<String>>>,
    /// A session deleted on the gateway while still listed: sends get the gateway's
    /// `session not found` answer.
    gone: Mutex<Option<String>>,
    next_run: AtomicUsize,
    /// When each `sessions.send` arrived, by idempotency key (= command id).
    received: Mutex<HashMap<String, Instant>>,
    events: Option<broadcast::Sender<(String, Value)>>,
}

impl GwState {
    fn emit(&self, event: &str, payload: Value) {
        if let Some(tx) = &self.events {
            let _ = tx.send((event.to_string(), payload));
        }
    }

    fn row(&self, key: &str) -> Option<Value> {
        self.rows.lock().expect("rows").iter().find(|r| r["key"] == key).cloned()
    }

    fn upsert(&self, row: Value) -> Value {
        let mut rows = self.rows.lock().expect("rows");
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

    fn changed(&self, key: &str, row: &Value, extra: Value) {
        let mut p = json!({"sessionKey": key, "session": row});
        if let (Some(o), Some(x)) = (p.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        self.emit("sessions.changed", p);
    }

    fn start_run(&self, key: &str, run: &str) {
        let row = self.upsert(json!({"key": key, "status": "running", "hasActiveRun": true,
                                     "activeRunIds": [run], "startedAt": now_ms(), "updatedAt": now_ms()}));
        self.changed(key, &row, json!({"phase": "start", "runId": run}));
    }

    /// The gateway serves one model call of `run`: a `session.message` with its usage.
    fn serve_call(&self, key: &str, run: &str, message_id: &str) {
        let (i, o, c) = CALL;
        {
            let mut runs = self.runs.lock().expect("runs");
            let r = runs.entry(run.to_string()).or_default();
            *r = (r.0 + i, r.1 + o, r.2 + c);
            let mut served = self.served.lock().expect("served");
            let s = served.entry(key.to_string()).or_default();
            *s = (s.0 + i, s.1 + o, s.2 + c, s.3 + 1);
        }
        let row = self.row(key).unwrap_or(Value::Null);
        self.emit(
            "session.message",
            json!({"sessionKey": key, "messageId": message_id, "runId": run, "session": row,
                   "message": {"role": "assistant", "provider": "openai", "model": "stand-in",
                               "timestamp": now_ms(), "content": [{"type": "text", "text": "hello"}],
                               "usage": {"input": i, "output": o, "totalTokens": i + o, "cacheRead": 0,
                                         "cacheWrite": 0, "cost": {"input": c / 2.0, "output": c / 2.0, "total": c}},
                               "__openclaw": {"id": message_id, "runId": run}}}),
        );
    }

    /// The run ends: the row's usage becomes this run's total (over all its calls).
    fn finish_run(&self, key: &str, run: &str, event: bool) {
        let t = now_ms();
        let (i, o, c) = self.runs.lock().expect("runs").get(run).copied().unwrap_or_default();
        let row = self.upsert(json!({
            "key": key, "status": "done", "hasActiveRun": false, "activeRunIds": [], "lastRunId": run,
            "abortedLastRun": false, "inputTokens": i, "outputTokens": o, "estimatedCostUsd": c,
            "totalTokens": 50_000, "endedAt": t, "runtimeMs": 1200, "updatedAt": t, "lastActivityAt": t,
        }));
        if event {
            self.changed(key, &row, json!({"phase": "end", "runId": run}));
        }
    }

    /// Kill the session's active run as 2026.9.6 does: `killed`, `lastRunId` = the killed run,
    /// `abortedLastRun`, and the *previous* run's usage left in place (none on a first run).
    fn kill_active(&self, key: &str) -> Option<String> {
        let run = self.row(key)?["activeRunIds"].get(0)?.as_str()?.to_string();
        let t = now_ms();
        let row = self.upsert(json!({"key": key, "status": "killed", "hasActiveRun": false, "activeRunIds": [],
                                     "lastRunId": run, "abortedLastRun": true, "endedAt": t, "updatedAt": t}));
        self.changed(key, &row, json!({"reason": "abort"}));
        self.changed(key, &row, json!({"phase": "end", "runId": run}));
        Some(run)
    }

    /// `sessions.steer`: the active run is interrupted (no end event) and `new` starts; for a
    /// moment the row names the interrupted run with the previous usage.
    fn steer_interrupt(&self, key: &str, new: &str) {
        let Some(old) = self.row(key).and_then(|r| r["activeRunIds"].get(0)?.as_str().map(str::to_string)) else {
            return;
        };
        let row = self.upsert(json!({"key": key, "status": "running", "lastRunId": old, "abortedLastRun": true,
                                     "activeRunIds": [new], "hasActiveRun": true, "updatedAt": now_ms()}));
        self.changed(key, &row, json!({"phase": "error", "runId": old}));
    }

    fn usage_answer(&self) -> Value {
        if !self.usage_fresh.swap(true, Ordering::SeqCst) {
            return json!({"usage": null, "cacheStatus": {"status": "refreshing"}});
        }
        let served = self.served.lock().expect("served");
        let sessions: Vec<Value> = served
            .iter()
            .map(|(k, (i, o, c, n))| {
                json!({"key": k, "usage": {"input": i, "output": o, "cacheRead": 0, "cacheWrite": 0,
                                           "totalTokens": i + o, "totalCost": c, "messages": n}})
            })
            .collect();
        json!({"cacheStatus": {"status": "fresh"}, "usage": {"sessions": sessions}})
    }

    /// A control call as 2026.9.6 answers it: `Ok(payload)` or `Err((code, message, details))`.
    fn control(&self, method: &str, p: &Value) -> Result<Value, (String, String, Value)> {
        let invalid = |m: String| Err(("INVALID_REQUEST".to_string(), m, json!({})));
        let closed =
            |allowed: &[&str]| p.as_object().and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())).cloned());
        self.calls.lock().expect("calls").push((method.to_string(), p.clone()));
        if let Some(k) = p["idempotencyKey"].as_str() {
            self.received.lock().expect("received").insert(k.to_string(), Instant::now());
        }
        match method {
            "sessions.abort" => {
                if let Some(k) = closed(ABORT_KEYS) {
                    return invalid(format!("invalid sessions.abort params: at root: unexpected property '{k}'"));
                }
                let Some(key) = p["key"].as_str() else {
                    let d =
                        json!({"details": {"code": "SESSION_MUTATION_TARGET_REQUIRED", "method": "sessions.abort"}});
                    return Err(("INVALID_REQUEST".into(), "session mutation target is unavailable".into(), d));
                };
                Ok(match self.kill_active(key) {
                    Some(run) => json!({"ok": true, "abortedRunId": run, "status": "aborted"}),
                    None => json!({"ok": true, "abortedRunId": null, "status": "no-active-run"}),
                })
            }
            "sessions.send" => {
                if let Some(k) = closed(SEND_KEYS) {
                    return invalid(format!("invalid sessions.send params: at root: unexpected property '{k}'"));
                }
                let (Some(key), Some(message)) = (p["key"].as_str(), p["message"].as_str()) else {
                    return invalid("invalid sessions.send params: must have required property 'message'".into());
                };
                if let Some(prev) =
                    p["idempotencyKey"].as_str().and_then(|k| self.sends.lock().expect("sends").get(k).cloned())
                {
                    return Ok(prev);
                }
                let gone = self.gone.lock().expect("gone").as_deref() == Some(key);
                let Some(row) = self.row(key).filter(|_| !gone) else {
                    return invalid(format!("session not found: {key}"));
                };
                if row["archived"] == true {
                    return invalid(format!("Session \"{key}\" is archived. Restore it before starting new work."));
                }
                assert!(!message.is_empty());
                let run = format!("send-{}", self.next_run.fetch_add(1, Ordering::SeqCst));
                // Idle: a new run. During a run (queue mode steer): the text joins that run; the
                // reply's runId never exists.
                if row["activeRunIds"].as_array().is_none_or(|a| a.is_empty()) {
                    self.start_run(key, &run);
                }
                let reply = json!({"runId": run, "status": "started"});
                if let Some(k) = p["idempotencyKey"].as_str() {
                    self.sends.lock().expect("sends").insert(k.to_string(), reply.clone());
                }
                Ok(reply)
            }
            // The archive fence (2026.9.6): non-main sessions only; archiving cancels the run.
            "sessions.patch" => {
                if let Some(k) = closed(PATCH_KEYS) {
                    return invalid(format!("invalid sessions.patch params: at root: unexpected property '{k}'"));
                }
                let Some(key) = p["key"].as_str() else {
                    return invalid("invalid sessions.patch params: must have required property 'key'".into());
                };
                let Some(row) = self.row(key) else { return invalid(format!("session not found: {key}")) };
                if let Some(expected) = p["expectedSessionId"].as_str() {
                    if row["sessionId"] != expected {
                        return invalid(format!("session {key} is no longer {expected}"));
                    }
                }
                if let Some(archived) = p["archived"].as_bool() {
                    if archived && key.ends_with(":main") {
                        return invalid("Cannot archive an agent's main session.".into());
                    }
                    if archived {
                        self.kill_active(key);
                    }
                    let row = self.upsert(json!({"key": key, "archived": archived, "updatedAt": now_ms()}));
                    self.changed(key, &row, json!({"reason": "patch"}));
                }
                Ok(json!({"ok": true, "key": key}))
            }
            _ => invalid(format!("unknown method {method}")),
        }
    }

    fn calls_of(&self, method: &str) -> Vec<Value> {
        self.calls.lock().expect("calls").iter().filter(|(m, _)| m == method).map(|(_, p)| p.clone()).collect()
    }
}

struct Gateway {
    state: Arc<GwState>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::ops::Deref for Gateway {
    type Target = GwState;
    fn deref(&self) -> &GwState {
        &self.state
    }
}

impl Gateway {
    async fn start() -> Self {
        let (events, _) = broadcast::channel(256);
        let state = GwState { events: Some(events), ..Default::default() };
        let mut g = Gateway { state: Arc::new(state), addr: "127.0.0.1:0".parse().expect("addr"), server: None };
        g.listen().await;
        g
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("bind gateway");
        self.addr = listener.local_addr().expect("addr");
        self.state.starting.store(true, Ordering::SeqCst);
        self.state.usage_fresh.store(false, Ordering::SeqCst);
        let state = self.state.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropping this task (abort) drops the set, which aborts every connection.
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                let events = state.events.as_ref().expect("events").subscribe();
                conns.spawn(connection(state.clone(), events, s));
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

    fn add_session(&self, key: &str, parent: Option<&str>) {
        let mut row = json!({
            "key": key, "sessionId": format!("sid-{key}"), "kind": "direct", "agentId": "main",
            "model": "claude-sonnet-4-5", "modelProvider": "anthropic", "totalTokens": 0,
            "createdAt": now_ms(), "updatedAt": now_ms(), "status": "queued", "hasActiveRun": false,
        });
        if let Some(p) = parent {
            row["parentSessionKey"] = json!(p);
            row["spawnDepth"] = json!(1);
            let mut rows = self.rows.lock().expect("rows");
            if let Some(parent_row) = rows.iter_mut().find(|r| r["key"] == p) {
                parent_row["childSessions"] = json!([key]);
            }
        }
        let row = self.upsert(row);
        self.changed(key, &row, json!({"reason": "create"}));
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

async fn connection(state: Arc<GwState>, mut events: broadcast::Receiver<(String, Value)>, stream: TcpStream) {
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
    let asked: Vec<String> = p["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let scopes = match state.grant.lock().expect("grant").clone() {
        Some(g) => asked.into_iter().filter(|s| g.contains(s)).collect(),
        None => asked,
    };
    let hello = json!({"type": "res", "id": id, "ok": true, "payload": {
        "type": "hello-ok", "protocol": 4, "server": {"version": "2026.9.6", "connId": "c-1"},
        "features": {"methods": ["sessions.list", "sessions.subscribe", "sessions.usage", "sessions.abort",
                                 "sessions.send"], "events": ["sessions.changed", "session.message"]},
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
                let method = req["method"].as_str().unwrap_or("");
                let need = if WRITE_METHODS.contains(&method) { "operator.write" } else { "operator.read" };
                if !scopes.iter().any(|s| s == need) {
                    let extra = json!({"details": {"code": "MISSING_SCOPE", "missingScope": need,
                                                   "requiredScopes": [need]}});
                    if ws.send(res_err(&id, "FORBIDDEN", &format!("missing scope: {need}"), extra)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let payload = match method {
                    "sessions.list" => {
                        state.lists.fetch_add(1, Ordering::SeqCst);
                        // Archived sessions are listed only when asked for (`archived: "all"`).
                        let all = req["params"]["archived"] == "all" || req["params"]["archived"] == true;
                        let mut rows = state.rows.lock().expect("rows").clone();
                        rows.retain(|r| all || r["archived"] != true);
                        json!({"ts": now_ms(), "count": rows.len(), "totalCount": rows.len(), "hasMore": false,
                               "defaults": {"modelProvider": "anthropic", "model": "claude-sonnet-4-5"},
                               "sessions": rows})
                    }
                    "sessions.subscribe" => {
                        subscribed = true;
                        json!({"subscribed": true})
                    }
                    "sessions.usage" => state.usage_answer(),
                    m => match state.control(m, &req["params"]) {
                        Ok(p) => p,
                        Err((code, message, extra)) => {
                            if ws.send(res_err(&id, &code, &message, extra)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    },
                };
                let res = json!({"type": "res", "id": id, "ok": true, "payload": payload});
                if ws.send(Message::text(res.to_string())).await.is_err() {
                    return;
                }
            }
            ev = events.recv() => {
                let Ok((event, payload)) = ev else { continue };
                if subscribed {
                    let e = json!({"type": "event", "event": event, "payload": payload});
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
        .args(["--gateway", gateway, "--interval", "100ms", "--inbox-wait", "2s", "--state"])
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

/// Wait for `n` more `sessions.list` polls (so repeated polls had every chance to double count).
async fn wait_polls(gw: &Gateway, n: usize) {
    let target = gw.state.lists.load(Ordering::SeqCst) + n;
    wait_until("polls", || async { gw.state.lists.load(Ordering::SeqCst) >= target }).await;
}

const MAIN: &str = "agent:main:main";
const CHILD: &str = "agent:main:subagent:7f3a";

async fn input_sum(app: &common::TestApp) -> i64 {
    common::as_i64(&app.scalar("SELECT coalesce(sum(input_tokens), 0)::BIGINT FROM model_calls").await)
}

/// Wait until the store holds `n` served calls' input tokens.
async fn wait_served(app: &common::TestApp, n: i64) {
    wait_until(&format!("{n} calls in the store"), || async { input_sum(app).await >= n * CALL.0 }).await;
}

/// The store's totals equal `n` model calls served, exactly.
async fn assert_served(app: &common::TestApp, n: i64, what: &str) {
    let rows = app
        .rows(&format!(
            "SELECT sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT, sum(cost_usd), count(*) FROM model_calls \
             WHERE session_id IN ('{MAIN}', '{CHILD}')"
        ))
        .await;
    let r = &rows[0];
    assert_eq!(common::as_i64(&r[0]), n * CALL.0, "{what}: input tokens");
    assert_eq!(common::as_i64(&r[1]), n * CALL.1, "{what}: output tokens");
    assert_eq!(common::as_f64(&r[2]), n as f64 * CALL.2, "{what}: cost, exactly");
    let all = common::as_i64(&app.scalar("SELECT count(*) FROM model_calls").await);
    if all != common::as_i64(&r[3]) {
        // Seen once in a full `cargo test` (4 calls, 3 in these sessions): show what the other is.
        let rows = app.rows("SELECT session_id, source, request_id, input_tokens, time FROM model_calls").await;
        panic!("{what}: no other model calls; stored: {rows:?}");
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// What the `diagnostics-otel` plugin (2026.9.x: no session keys) sends for `n` served calls: one
/// `openclaw.model.usage` span per model call.
fn plugin_spans(n: usize) -> ExportTraceServiceRequest {
    let now = now_ms() as u64 * 1_000_000;
    let spans = (0..n)
        .map(|n| Span {
            trace_id: [n as u8 + 1; 16].to_vec(),
            span_id: [n as u8 + 1; 8].to_vec(),
            name: plugin::USAGE_SPAN.into(),
            start_time_unix_nano: now - 1_000_000_000,
            end_time_unix_nano: now,
            attributes: vec![
                kv(plugin::PROVIDER, any_value::Value::StringValue("openai".into())),
                kv(plugin::MODEL, any_value::Value::StringValue("stand-in".into())),
                kv(plugin::CHANNEL, any_value::Value::StringValue("webchat".into())),
                kv(plugin::TOKENS_INPUT, any_value::Value::IntValue(CALL.0)),
                kv(plugin::TOKENS_OUTPUT, any_value::Value::IntValue(CALL.1)),
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

fn one_call_run(gw: &Gateway, key: &str, run: &str, message: &str) {
    gw.start_run(key, run);
    gw.serve_call(key, run, message);
    gw.finish_run(key, run, true);
}

/// The reference's section 6, case by case, against the real shim: a normal run, a run with a
/// send during it (two calls, one run), a run killed after a finished run (the row keeps the
/// previous run's usage), a killed first run (no usage fields), a run interrupted by steer, runs
/// finished while the shim was down and while the gateway restarted. The store's totals equal the
/// model calls served, exactly, and a plugin reporting the same calls adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_steered_and_missed_runs_total_the_calls_served() {
    let app = common::spawn().await;
    let mut gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    gw.add_session(MAIN, None);

    let mut shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    // The first connect is answered UNAVAILABLE; the shim retries after retryAfterMs.
    wait_until("hello", || async { gw.state.hellos.load(Ordering::SeqCst) >= 1 }).await;
    wait_polls(&gw, 2).await;

    one_call_run(&gw, MAIN, "r1", "m1");
    wait_served(&app, 1).await;
    // A send during the run: one run, two calls; the row ends with the run's 800/80.
    gw.start_run(MAIN, "r2");
    gw.serve_call(MAIN, "r2", "m2");
    gw.serve_call(MAIN, "r2", "m3");
    gw.finish_run(MAIN, "r2", true);
    wait_served(&app, 3).await;
    // Killed after a finished run: `killed`, lastRunId r3, r2's 800/80 still in the row.
    gw.start_run(MAIN, "r3");
    assert_eq!(gw.kill_active(MAIN).as_deref(), Some("r3"));
    assert_eq!(gw.row(MAIN).expect("row")["inputTokens"], 800, "the fake keeps the stale usage");
    // A child's first run killed: no usage fields at all.
    gw.add_session(CHILD, Some(MAIN));
    gw.start_run(CHILD, "rc1");
    gw.kill_active(CHILD);
    let ended = |runs: &'static str| {
        let app = &app;
        async move {
            common::as_i64(
                &app.scalar(&format!(
                    "SELECT count(*) FROM logs WHERE event_name = 'openclaw.session.status' \
                     AND json_extract_string(attributes, '$.\"openclaw.run.id\"') IN ({runs})"
                ))
                .await,
            )
        }
    };
    wait_until("the killed runs' status records", || async { ended("'r3', 'rc1'").await >= 2 }).await;
    // Interrupted by steer: a transient row names r4 with stale usage, then r5 runs one call.
    gw.start_run(MAIN, "r4");
    gw.steer_interrupt(MAIN, "r5");
    gw.serve_call(MAIN, "r5", "m5");
    gw.finish_run(MAIN, "r5", false);
    wait_served(&app, 4).await;
    wait_polls(&gw, 5).await;
    assert_served(&app, 4, "live").await;

    // Shim down: two runs finish unseen; the restarted shim reconciles with sessions.usage.
    drop(shim);
    one_call_run(&gw, MAIN, "r6", "m6");
    one_call_run(&gw, MAIN, "r7", "m7");
    shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    wait_served(&app, 6).await;

    // Gateway restart: a run ends while every connection is down.
    gw.stop().await;
    one_call_run(&gw, MAIN, "r8", "m8");
    let hellos = gw.state.hellos.load(Ordering::SeqCst);
    gw.listen().await;
    wait_until("reconnect", || async { gw.state.hellos.load(Ordering::SeqCst) > hellos }).await;
    wait_served(&app, 7).await;
    wait_polls(&gw, 3).await;
    one_call_run(&gw, CHILD, "rc2", "mc2");
    wait_served(&app, 8).await;
    wait_polls(&gw, 5).await;
    assert_served(&app, 8, "after a shim and a gateway restart").await;

    // What the rows are: one per call seen (run ids kept for grouping), one per reconcile.
    let by_op = app
        .rows(
            "SELECT operation, count(*), sum(input_tokens)::BIGINT, count(DISTINCT request_id) FROM model_calls \
             GROUP BY operation ORDER BY operation",
        )
        .await;
    assert_eq!(by_op.len(), 2, "{by_op:?}");
    assert_eq!((by_op[0][0].clone(), common::as_i64(&by_op[0][1])), (json!("chat"), 5), "{by_op:?}");
    assert_eq!(common::as_i64(&by_op[0][3]), 5, "each message id once");
    assert_eq!(by_op[1][0], json!("openclaw.reconcile"));
    assert_eq!((common::as_i64(&by_op[1][1]), common::as_i64(&by_op[1][2])), (2, 3 * CALL.0), "{by_op:?}");
    let runs = app
        .rows("SELECT run_id, count(*) FROM model_calls WHERE operation = 'chat' GROUP BY run_id ORDER BY run_id")
        .await;
    let runs: Vec<(String, i64)> =
        runs.iter().map(|r| (r[0].as_str().unwrap_or("").to_string(), common::as_i64(&r[1]))).collect();
    let want: Vec<(String, i64)> =
        [("r1", 1), ("r2", 2), ("r5", 1), ("rc2", 1)].iter().map(|(r, n)| (r.to_string(), *n)).collect();
    assert_eq!(runs, want, "calls grouped by run; killed and interrupted runs have none");
    // Killed runs are status records with the usage they really had.
    let ends = app
        .rows(
            "SELECT json_extract_string(attributes, '$.\"openclaw.run.id\"') AS run, body, \
                    json_extract(attributes, '$.\"openclaw.run.input_tokens\"')::BIGINT, \
                    json_extract(attributes, '$.\"openclaw.run.calls\"')::BIGINT \
             FROM logs WHERE event_name = 'openclaw.session.status' \
               AND json_extract_string(attributes, '$.\"openclaw.run.id\"') IN ('r1', 'r2', 'r3', 'rc1') ORDER BY run",
        )
        .await;
    let ends: Vec<(String, String, i64, i64)> = ends
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").into(),
                r[1].as_str().unwrap_or("").into(),
                common::as_i64(&r[2]),
                common::as_i64(&r[3]),
            )
        })
        .collect();
    assert_eq!(
        ends,
        vec![
            ("r1".into(), "done".into(), CALL.0, 1),
            ("r2".into(), "done".into(), 2 * CALL.0, 2),
            ("r3".into(), "killed".into(), 0, 0),
            ("rc1".into(), "killed".into(), 0, 0),
        ]
    );
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
    let task = app.scalar("SELECT count(*) FROM model_calls WHERE task_id = 'OC-1'").await;
    assert_eq!(common::as_i64(&task), 7, "AGENT_CONSOLE_TASK_ID tags the records");
    let cost_source = app.scalar("SELECT count(*) FROM model_calls WHERE cost_source = 'reported'").await;
    assert_eq!(common::as_i64(&cost_source), 7, "the gateway's cost wins");

    // The plugin reports the same calls: kept as spans, not counted again.
    let r = app.post("/v1/traces", "application/x-protobuf", plugin_spans(9).encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let spans = app.scalar("SELECT count(*) FROM spans WHERE name = 'openclaw.model.usage'").await;
    assert_eq!(common::as_i64(&spans), 9);
    assert_served(&app, 8, "shim + plugin").await;

    drop(shim);
    gw.stop().await;
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Control

async fn command(app: &common::TestApp, session: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/api/sessions/{session}/commands", app.http))
        .json(&body)
        .send()
        .await
        .expect("post command");
    let status = r.status().as_u16();
    (status, r.json().await.expect("command json"))
}

async fn capabilities(app: &common::TestApp, session: &str) -> Value {
    let r = app.client.get(format!("{}/api/sessions/{session}", app.http)).send().await.expect("get");
    if r.status() != 200 {
        return Value::Null;
    }
    let v: Value = r.json().await.expect("json");
    v["session"]["capabilities"].clone()
}

async fn wait_available(app: &common::TestApp, session: &str, kind: &str) {
    wait_until(&format!("{kind} available for {session}"), || async {
        capabilities(app, session).await[kind]["available"] == true
    })
    .await;
}

async fn command_row(app: &common::TestApp, session: &str, id: &str) -> Value {
    let v: Value = app
        .client
        .get(format!("{}/api/sessions/{session}/commands", app.http))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    v["commands"].as_array().and_then(|c| c.iter().find(|c| c["command_id"] == id).cloned()).unwrap_or(Value::Null)
}

async fn wait_status(app: &common::TestApp, session: &str, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        last = command_row(app, session, id).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("command {id} never reached {status}: {last}");
}

async fn wait_calls(gw: &Gateway, method: &str, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} {method} calls"), || async { gw.calls_of(method).len() >= n }).await;
    gw.calls_of(method)
}

async fn audit(app: &common::TestApp, id: &str) -> Vec<String> {
    app.rows(&format!("SELECT action FROM control_audit WHERE command_id = '{id}' ORDER BY time, action"))
        .await
        .iter()
        .map(|r| r[0].as_str().unwrap_or("").to_string())
        .collect()
}

/// kill, inject and pause/resume through the real shim: the right gateway calls with the right
/// params, each command `accepted -> delivered -> observed` in the audit, a paused session's new
/// runs aborted by the shim until resume, and the totals still the calls served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_inject_and_pause_make_the_reference_calls() {
    let app = common::spawn().await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    gw.add_session(MAIN, None);
    let _shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::inherit()));
    wait_available(&app, MAIN, "kill").await;
    let caps = capabilities(&app, MAIN).await;
    assert_eq!(caps["resume"]["available"], false, "{caps}");
    assert_eq!(caps["approve"]["available"], false, "{caps}");
    assert_eq!(caps["hard_kill"]["available"], false, "{caps}");

    // kill: a run in its second model call (the first was served).
    gw.start_run(MAIN, "r1");
    gw.serve_call(MAIN, "r1", "m1");
    let (st, kill) = command(&app, MAIN, json!({"kind": "kill", "reason": "runaway"})).await;
    assert_eq!(st, 201, "{kill}");
    let kill_id = kill["command_id"].as_str().expect("id").to_string();
    let aborts = wait_calls(&gw, "sessions.abort", 1).await;
    assert_eq!(aborts[0], json!({"key": MAIN, "clearQueued": true}));
    let done = wait_status(&app, MAIN, &kill_id, "observed").await;
    assert!(done["delivered_via"].as_str().is_some_and(|v| v.contains("sessions.abort (aborted, run r1)")), "{done}");
    assert!(done["result"].as_str().is_some_and(|r| r.contains("killed")), "{done}");
    assert_eq!(audit(&app, &kill_id).await, vec!["command.accepted", "command.delivered", "command.observed"]);
    assert_eq!(gw.row(MAIN).expect("row")["status"], "killed");

    // inject to the idle (killed) session: sessions.send starts a run; observed at its next call.
    let (st, inject) = command(&app, MAIN, json!({"kind": "inject", "message": "check the logs first"})).await;
    assert_eq!(st, 201, "{inject}");
    let inject_id = inject["command_id"].as_str().expect("id").to_string();
    let sends = wait_calls(&gw, "sessions.send", 1).await;
    assert_eq!(sends[0], json!({"key": MAIN, "message": "check the logs first", "idempotencyKey": inject_id}));
    wait_status(&app, MAIN, &inject_id, "delivered").await;
    let run = gw.row(MAIN).expect("row")["activeRunIds"][0].as_str().expect("the started run").to_string();
    gw.serve_call(MAIN, &run, "m2");
    gw.finish_run(MAIN, &run, true);
    let done = wait_status(&app, MAIN, &inject_id, "observed").await;
    assert!(done["delivered_via"].as_str().is_some_and(|v| v.contains("sessions.send (started")), "{done}");

    // pause during a run: aborted; every new run is aborted by the shim; sends refused.
    gw.start_run(MAIN, "r3");
    let (st, pause) = command(&app, MAIN, json!({"kind": "pause", "reason": "budget"})).await;
    assert_eq!(st, 201, "{pause}");
    let pause_id = pause["command_id"].as_str().expect("id").to_string();
    let aborts = wait_calls(&gw, "sessions.abort", 2).await;
    assert_eq!(aborts[1], json!({"key": MAIN, "clearQueued": true}));
    wait_status(&app, MAIN, &pause_id, "observed").await;
    assert_eq!(gw.row(MAIN).expect("row")["lastRunId"], "r3");
    gw.start_run(MAIN, "r4"); // another client starts a run on the paused session
    wait_calls(&gw, "sessions.abort", 3).await;
    wait_until("r4 aborted", || async { gw.row(MAIN).expect("row")["status"] == "killed" }).await;
    assert_eq!(gw.row(MAIN).expect("row")["lastRunId"], "r4");
    let (st, refused) = command(&app, MAIN, json!({"kind": "inject", "message": "hello?"})).await;
    assert_eq!(st, 409, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("paused")), "{refused}");
    let detail: Value = app
        .client
        .get(format!("{}/api/sessions/{MAIN}", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["session"]["control"]["state"], "paused", "{detail}");
    assert_eq!(detail["session"]["control"]["runtime"], "openclaw", "{detail}");

    // resume: the hold ends; a new run is left alone.
    let (st, resume) = command(&app, MAIN, json!({"kind": "resume"})).await;
    assert_eq!(st, 201, "{resume}");
    let resume_id = resume["command_id"].as_str().expect("id").to_string();
    wait_status(&app, MAIN, &resume_id, "observed").await;
    let aborts_before = gw.calls_of("sessions.abort").len();
    gw.start_run(MAIN, "r5");
    wait_polls(&gw, 5).await;
    assert_eq!(gw.calls_of("sessions.abort").len(), aborts_before, "no abort after resume");
    gw.serve_call(MAIN, "r5", "m5");
    gw.finish_run(MAIN, "r5", true);
    wait_served(&app, 3).await;
    assert_served(&app, 3, "m1, m2 and m5 were served; r3 and r4 were killed before serving").await;
    for id in [&pause_id, &resume_id, &inject_id] {
        let a = audit(&app, id).await;
        assert_eq!(a, vec!["command.accepted", "command.delivered", "command.observed"], "{id}");
    }
    app.shutdown().await;
}

/// A hard pause of a non-main session is the gateway's archive fence: `sessions.patch {archived:
/// true, expectedSessionId}` cancels its run and the gateway refuses sends from every client, the
/// archived session stays listed (the shim asks for `archived: "all"`), and the resume restores it.
/// An agent's main session cannot be archived: the hard pause is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_pause_is_the_archive_fence_for_non_main_sessions() {
    let app = common::spawn().await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    gw.add_session(MAIN, None);
    gw.add_session(CHILD, Some(MAIN));
    let _shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::inherit()));
    wait_available(&app, CHILD, "hard_pause").await;
    let caps = capabilities(&app, MAIN).await;
    assert_eq!(caps["hard_pause"]["available"], false, "{caps}");
    let (st, refused) = command(&app, MAIN, json!({"kind": "pause", "hard": true})).await;
    assert_eq!(st, 409, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("main session")), "{refused}");
    let (st, bad) = command(&app, CHILD, json!({"kind": "inject", "message": "x", "hard": true})).await;
    assert_eq!(st, 400, "{bad}");

    gw.start_run(CHILD, "c1");
    let (st, pause) = command(&app, CHILD, json!({"kind": "pause", "hard": true, "reason": "incident"})).await;
    assert_eq!(st, 201, "{pause}");
    let pause_id = pause["command_id"].as_str().expect("id").to_string();
    let patches = wait_calls(&gw, "sessions.patch", 1).await;
    assert_eq!(patches[0], json!({"key": CHILD, "archived": true, "expectedSessionId": format!("sid-{CHILD}")}));
    let done = wait_status(&app, CHILD, &pause_id, "observed").await;
    assert!(done["result"].as_str().is_some_and(|r| r.contains("archived")), "{done}");
    let row = gw.row(CHILD).expect("row");
    assert_eq!((row["status"].clone(), row["archived"].clone()), (json!("killed"), json!(true)), "{row}");
    // Another client's send is refused by the gateway itself, not only the console's.
    let other = gw.control("sessions.send", &json!({"key": CHILD, "message": "from the TUI"}));
    assert!(other.as_ref().is_err_and(|e| e.1.contains("is archived")), "{other:?}");
    let detail: Value = app
        .client
        .get(format!("{}/api/sessions/{CHILD}", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["session"]["control"]["hard_pause"], true, "{detail}");
    // Still listed (archived: "all"), so the resume reaches this gateway and lifts the fence.
    wait_polls(&gw, 2).await;
    let (st, resume) = command(&app, CHILD, json!({"kind": "resume"})).await;
    assert_eq!(st, 201, "{resume}");
    let resume_id = resume["command_id"].as_str().expect("id").to_string();
    let patches = wait_calls(&gw, "sessions.patch", 2).await;
    assert_eq!(patches[1], json!({"key": CHILD, "archived": false, "expectedSessionId": format!("sid-{CHILD}")}));
    let done = wait_status(&app, CHILD, &resume_id, "observed").await;
    assert!(done["result"].as_str().is_some_and(|r| r.contains("restored")), "{done}");
    assert_eq!(done["hard"], true, "the resume of a hard pause lifts the fence: {done}");
    assert_eq!(gw.row(CHILD).expect("row")["archived"], false);
    let again = gw.control("sessions.send", &json!({"key": CHILD, "message": "carry on"}));
    assert!(again.is_ok(), "{again:?}");
    for id in [&pause_id, &resume_id] {
        assert_eq!(audit(&app, id).await, vec!["command.accepted", "command.delivered", "command.observed"], "{id}");
    }
    app.shutdown().await;
}

/// A shim whose gateway grants only `operator.read` cannot carry commands (refused with the
/// reason), an unknown session is a 404, a gateway error fails the command with the gateway's
/// reason, and a session whose shim is gone says "OpenClaw shim not connected".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scope_unknown_sessions_and_gone_shims_give_clear_errors() {
    let app = common::spawn().await;
    let gw = Gateway::start().await;
    *gw.grant.lock().expect("grant") = Some(vec!["operator.read".into()]);
    let state_dir = tempfile::tempdir().expect("tempdir");
    gw.add_session(MAIN, None);
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::inherit()));
    wait_until("the shim's session in the store", || async {
        capabilities(&app, MAIN).await["kill"]["reason"].as_str().is_some_and(|r| r.contains("operator.write"))
    })
    .await;
    let (st, body) = command(&app, MAIN, json!({"kind": "kill"})).await;
    assert_eq!(st, 409, "{body}");
    let e = body["error"].as_str().expect("error");
    assert!(e.contains("granted operator.read without operator.write"), "{e}");
    assert_eq!(body["capabilities"]["inject"]["available"], false);
    assert!(gw.calls_of("sessions.abort").is_empty(), "nothing reached the gateway");
    let (st, body) = command(&app, "agent:main:nosuch", json!({"kind": "kill"})).await;
    assert_eq!(st, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("agent:main:nosuch")), "{body}");

    // With write granted: the gateway's own refusal fails the command with its reason.
    drop(shim);
    *gw.grant.lock().expect("grant") = None;
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::inherit()));
    wait_available(&app, MAIN, "inject").await;
    *gw.gone.lock().expect("gone") = Some(MAIN.into()); // deleted on the gateway meanwhile
    let (st, inject) = command(&app, MAIN, json!({"kind": "inject", "message": "still there?"})).await;
    assert_eq!(st, 201, "{inject}");
    let id = inject["command_id"].as_str().expect("id");
    let failed = wait_status(&app, MAIN, id, "failed").await;
    let r = failed["result"].as_str().expect("result");
    assert!(r.contains("sessions.send") && r.contains("session not found: agent:main:main"), "{r}");

    // The shim goes away: after the grace period the session says so.
    drop(shim);
    wait_until("not connected", || async {
        capabilities(&app, MAIN).await["kill"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("OpenClaw shim not connected"))
    })
    .await;
    let (st, body) = command(&app, MAIN, json!({"kind": "pause"})).await;
    assert_eq!(st, 409, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("OpenClaw shim not connected")), "{body}");
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
/// collector, and a call was served while both were down. The shim starts its ledger empty and
/// reconciles each session from zero against `sessions.usage`; the collector counts only what its
/// store is missing for the session (its per-session totals are restored from the store), so the
/// call served while down is counted once and the calls already stored are not counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row16_corrupt_shim_state_after_a_collector_restart_counts_calls_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_path_buf();
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.json");
    gw.add_session(MAIN, None);
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    wait_until("hello", || async { gw.state.hellos.load(Ordering::SeqCst) >= 1 }).await;
    wait_polls(&gw, 2).await;
    one_call_run(&gw, MAIN, "run-1", "m1");
    wait_served(&app, 1).await;
    wait_polls(&gw, 3).await;
    drop(shim);
    assert!(state.exists(), "the shim saved its state");
    app.shutdown().await;

    // While both are down a call is served; then both restart and the shim's state is garbage.
    one_call_run(&gw, MAIN, "run-2", "m2");
    std::fs::write(&state, b"{\"version\": 2, \"sess").expect("corrupt the state file");
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state, Stdio::inherit()));
    let q = "SELECT count(*) FROM logs WHERE event_name = 'openclaw.usage.reconcile'";
    wait_until("the shim reconciles from an empty ledger", || async { common::as_i64(&app.scalar(q).await) >= 1 })
        .await;
    wait_polls(&gw, 3).await;
    app.flush().await;
    assert_served(&app, 2, "a corrupt shim ledger after a collector restart").await;
    // Calls after that are counted as usual.
    one_call_run(&gw, MAIN, "run-3", "m3");
    wait_served(&app, 3).await;
    wait_polls(&gw, 2).await;
    app.flush().await;
    assert_served(&app, 3, "the next call").await;
    drop(shim);
    app.shutdown().await;
}

/// BENCHMARKS.md "OpenClaw control": from `POST .../commands` to the shim having it, measured at
/// the gateway (the shim's `sessions.send` arriving: inbox long-poll wake + answer + the shim's
/// call on its open WebSocket), 200 injects one after another.
/// `cargo test --release --test openclaw_shim -- --ignored --nocapture control_delivery_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run explicitly"]
async fn control_delivery_latency() {
    const N: usize = 200;
    let app = common::spawn().await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    gw.add_session(MAIN, None);
    let _shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::null()));
    wait_available(&app, MAIN, "inject").await;
    let (mut to_shim, mut to_201) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for n in 0..N {
        let t0 = Instant::now();
        let (st, c) = command(&app, MAIN, json!({"kind": "inject", "message": format!("message {n}")})).await;
        to_201.push(t0.elapsed());
        assert_eq!(st, 201, "{c}");
        let id = c["command_id"].as_str().expect("id").to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        let at = loop {
            if let Some(t) = gw.received.lock().expect("received").get(&id).copied() {
                break t;
            }
            assert!(Instant::now() < deadline, "command {n} never reached the gateway");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        to_shim.push(at.duration_since(t0));
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    for (what, v) in [("POST -> shim's sessions.send at the gateway", &mut to_shim), ("POST answered 201", &mut to_201)]
    {
        println!(
            "{what}: p50 {:?} p90 {:?} p99 {:?} max {:?} ({} samples)",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 1.0),
            v.len()
        );
    }
    assert_eq!(gw.calls_of("sessions.send").len(), N, "each command delivered once");
    app.shutdown().await;
}

#[path = "common/tls_proxy.rs"]
mod tls_proxy;

/// The shim pointed at an https collector with a token and a CA file.
fn spawn_shim_https(gateway: &str, endpoint: &str, ca_file: &str, state: &std::path::Path, stderr: Stdio) -> Child {
    Command::new(shim_binary())
        .args(["--gateway", gateway, "--interval", "100ms", "--inbox-wait", "2s", "--ca-file", ca_file, "--state"])
        .arg(state)
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .env("AGENT_CONSOLE_ENDPOINT", endpoint)
        .env("AGENT_CONSOLE_TOKEN", "s3cret")
        .env("AGENT_CONSOLE_TASK_ID", "OC-1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn shim")
}

/// A remote collector over `https://` (a TLS-terminating proxy with a private CA in front of a
/// real collector that requires the token): with the wrong CA the shim says why on stderr and
/// delivers nothing (the proxy sees every handshake refused); restarted with the right CA
/// (`--ca-file`) its inbox long-poll reaches the collector (commands work: a kill arrives as
/// `sessions.abort`) and its `/v1/logs` exports total the calls served, the run from the wrong-CA
/// time included, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_collector_behind_a_tls_proxy_with_a_private_ca() {
    let app = common::spawn_with(|a| a.ingest_token = Some("s3cret".into())).await;
    let proxy = tls_proxy::TlsProxy::start(&app.http).await;
    let gw = Gateway::start().await;
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("s.json");
    gw.add_session(MAIN, None);

    let mut wrong = Killer(spawn_shim_https(&gw.url(), &proxy.url, &proxy.wrong_ca(), &state, Stdio::piped()));
    let stderr = wrong.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    one_call_run(&gw, MAIN, "r1", "m1");
    let said = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.contains("UnknownIssuer") {
                return line;
            }
            seen.push(line);
        }
        panic!("no TLS error on stderr: {seen:?}");
    })
    .await
    .expect("join");
    assert!(said.contains("TLS handshake failed") && said.contains(&proxy.url), "{said}");
    wait_polls(&gw, 3).await;
    assert_eq!(proxy.proxied.load(Ordering::SeqCst), 0, "nothing got past the handshake");
    assert!(!proxy.refusals().await.is_empty(), "the proxy saw the client refuse its certificate");
    assert_eq!(input_sum(&app).await, 0);
    drop(wrong);

    let _right = Killer(spawn_shim_https(&gw.url(), &proxy.url, &proxy.ca(), &state, Stdio::inherit()));
    wait_available(&app, MAIN, "kill").await;
    gw.start_run(MAIN, "r2");
    gw.serve_call(MAIN, "r2", "m2");
    let (st, kill) = command(&app, MAIN, json!({"kind": "kill", "reason": "over https"})).await;
    assert_eq!(st, 201, "{kill}");
    let aborts = wait_calls(&gw, "sessions.abort", 1).await;
    assert_eq!(aborts[0], json!({"key": MAIN, "clearQueued": true}));
    let kill_id = kill["command_id"].as_str().expect("id").to_string();
    wait_status(&app, MAIN, &kill_id, "observed").await;
    wait_served(&app, 2).await;
    assert_served(&app, 2, "r1 (sent once the CA was right) and r2, over https").await;
    assert!(proxy.proxied.load(Ordering::SeqCst) > 0);
    app.shutdown().await;
}

/// `agent-console import openclaw` (issue 15): a shim counted one call live; two more calls were
/// served with no shim listening. The import (the real subcommand, against the collector's HTTP
/// API) backfills them from `sessions.usage` with the session's agent and model; importing again
/// adds nothing; a call served after that is backfilled by the next import; and a shim that
/// starts afterwards with an empty ledger adds nothing either. Then the same import into a stopped
/// data dir (no collector) is a no-op too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_openclaw_backfills_what_no_shim_saw_once() {
    use agent_console::import::{self, ImportArgs, ImportWhat};
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_path_buf();
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    let gw = Gateway::start().await;
    gw.add_session(MAIN, None);
    let state_dir = tempfile::tempdir().expect("tempdir");
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state_dir.path().join("s.json"), Stdio::inherit()));
    wait_until("hello", || async { gw.state.hellos.load(Ordering::SeqCst) >= 1 }).await;
    wait_polls(&gw, 2).await;
    one_call_run(&gw, MAIN, "run-1", "m1");
    wait_served(&app, 1).await;
    drop(shim);
    one_call_run(&gw, MAIN, "run-2", "m2");
    one_call_run(&gw, MAIN, "run-3", "m3");

    let args = |url: Option<String>, dir: &std::path::Path| ImportArgs {
        what: ImportWhat::Openclaw(import::openclaw::OpenclawArgs {
            gateway: gw.url(),
            gateway_token: Some(TOKEN.into()),
            task: None,
            target: import::ImportTarget { url, token: None, data_dir: dir.to_path_buf() },
            timeout_secs: 30,
        }),
    };
    let done = import::run(args(Some(app.http.clone()), &data_dir)).await.expect("import");
    assert_eq!(done.events, 1, "one session with usage");
    app.flush().await;
    assert_served(&app, 3, "after the import").await;
    let r = app.rows("SELECT agent_id, model, operation FROM model_calls WHERE operation = 'openclaw.reconcile'").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0][0].as_str(), r[0][1].as_str()), (Some("main"), Some("claude-sonnet-4-5")), "{r:?}");

    import::run(args(Some(app.http.clone()), &data_dir)).await.expect("import again");
    app.flush().await;
    assert_served(&app, 3, "imported twice").await;

    one_call_run(&gw, MAIN, "run-4", "m4");
    import::run(args(Some(app.http.clone()), &data_dir)).await.expect("import after one more call");
    app.flush().await;
    assert_served(&app, 4, "the next import").await;

    // A shim starting with an empty ledger reconciles from zero: nothing is missing.
    let q = "SELECT count(*) FROM logs WHERE event_name = 'openclaw.usage.reconcile'";
    let before = common::as_i64(&app.scalar(q).await);
    let state2 = tempfile::tempdir().expect("tempdir");
    let shim = Killer(spawn_shim(&gw.url(), TOKEN, &app.http, &state2.path().join("s.json"), Stdio::inherit()));
    wait_until("the fresh shim reconciles", || async { common::as_i64(&app.scalar(q).await) > before }).await;
    wait_polls(&gw, 2).await;
    app.flush().await;
    assert_served(&app, 4, "a fresh shim after the import").await;
    drop(shim);
    app.shutdown().await;

    // A stopped data dir: opened by the import itself; nothing is missing.
    let done = import::run(args(None, &data_dir)).await.expect("import into the data dir");
    assert_eq!(done.events, 1);
    let app = common::spawn_with(|a| a.data_dir = data_dir.clone()).await;
    assert_served(&app, 4, "the stopped data dir").await;
    app.shutdown().await;
}
