//! Commands from the console, delivered through this shim's gateway connection.
//!
//! The collector never dials out: one thread long-polls the collector's inbox
//! (`POST /openclaw/inbox`) saying which gateway it serves, whether that gateway connection is up,
//! the scopes the gateway granted and the session keys it lists; the answer holds the commands for
//! those sessions and the sessions the console has paused. The gateway thread turns each command
//! into a gateway call (`rpc_for`, the rules of `shared/reference/openclaw-gateway.md`):
//! - kill -> `sessions.abort {key, clearQueued: true}` (the row then says `killed`);
//! - inject -> `sessions.send {key, message, idempotencyKey: <command id>}` (steers a running turn or
//!   starts one; a re-delivery after a lost ack is the same idempotency key);
//! - pause -> `sessions.abort {key, clearQueued: true}`, and while the session stays paused every
//!   run it starts is aborted again (`Hold`); OpenClaw has no per-session pause of its own;
//! - resume -> no call: the hold ends.
//! - pause with `hard` -> `sessions.patch {key, archived: true}`, the gateway's archive fence (it
//!   cancels the run and refuses new work from every client, non-main sessions only), and the hold
//!   as above; the resume of a hard pause (`hard` again) -> `sessions.patch {key, archived: false}`.
//!
//! The gateway's reply is the acknowledgement (`Ack`), sent with the next poll; the collector moves
//! the command to `delivered` (or `failed` with the gateway's error) and to `observed` when the
//! shim's status and call records show the effect.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http;

/// Sessions reported per poll (a gateway lists at most this many).
pub const MAX_SESSIONS: usize = 10_000;
/// How long a paused session's new run may live before it is aborted again (rate limit).
const HOLD_RETRY: Duration = Duration::from_millis(500);

/// One command as the inbox hands it out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cmd {
    pub command_id: String,
    pub session_key: String,
    pub kind: String,
    #[serde(default)]
    pub message: Option<String>,
    /// pause: also the archive fence; resume: lift it.
    #[serde(default)]
    pub hard: bool,
}

/// What the gateway answered to a command's call (the collector reads the same type).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ack {
    pub command_id: String,
    pub ok: bool,
    /// The gateway method called (none for resume).
    #[serde(default)]
    pub method: Option<String>,
    /// `status` of the reply (`aborted`, `no-active-run`, `started`).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    /// The gateway's error code and message.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The gateway call a command becomes: `None` for resume (the hold just ends) and unknown kinds
/// (refused by the collector already; acknowledged as failed).
pub fn rpc_for(c: &Cmd) -> Result<Option<(&'static str, Value)>, String> {
    match c.kind.as_str() {
        "pause" | "resume" if c.hard => {
            Ok(Some(("sessions.patch", json!({"key": c.session_key, "archived": c.kind == "pause"}))))
        }
        "kill" | "pause" => Ok(Some(("sessions.abort", json!({"key": c.session_key, "clearQueued": true})))),
        "inject" => match c.message.as_deref().filter(|m| !m.trim().is_empty()) {
            Some(m) => {
                Ok(Some(("sessions.send", json!({"key": c.session_key, "message": m, "idempotencyKey": c.command_id}))))
            }
            None => Err("inject without a message".into()),
        },
        "resume" => Ok(None),
        other => Err(format!("{other} is not a command an OpenClaw gateway can carry")),
    }
}

/// The ack for a gateway reply to `method`.
pub fn ack_for(command_id: &str, method: &str, res: &Value) -> Ack {
    let mut a = Ack {
        command_id: command_id.to_string(),
        ok: res["ok"] == Value::Bool(true),
        method: Some(method.to_string()),
        status: None,
        run_id: None,
        code: None,
        error: None,
    };
    if a.ok {
        let p = &res["payload"];
        a.status = p.get("status").and_then(Value::as_str).map(str::to_string);
        a.run_id = p.get("runId").or_else(|| p.get("abortedRunId")).and_then(Value::as_str).map(str::to_string);
    } else {
        let e = &res["error"];
        a.code = e.get("code").and_then(Value::as_str).map(str::to_string);
        let detail = e.pointer("/details/code").and_then(Value::as_str);
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("gateway error");
        a.error = Some(match detail {
            Some(d) => format!("{msg} ({d})"),
            None => msg.to_string(),
        });
    }
    a
}

/// What the gateway thread and the inbox thread share.
#[derive(Debug, Default)]
pub struct Shared {
    pub connected: bool,
    pub scopes: Vec<String>,
    pub sessions: BTreeSet<String>,
    /// Sessions the console paused (from the collector's last answer).
    pub paused: HashSet<String>,
    pub acks: Vec<Ack>,
    /// Commands handed to the gateway thread and not acknowledged yet.
    pub inflight: usize,
}

type SharedCell = Arc<(Mutex<Shared>, Condvar)>;

fn lock(s: &SharedCell) -> MutexGuard<'_, Shared> {
    s.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// The gateway thread's end.
pub struct Link {
    shared: SharedCell,
    rx: Option<Receiver<Cmd>>,
    /// Gateway request id -> (command id, method).
    calls: HashMap<String, (String, &'static str)>,
    /// Last hold abort per paused session.
    held: HashMap<String, Instant>,
    /// Each listed session's `sessionId` (the archive fence's `expectedSessionId`).
    session_ids: HashMap<String, String>,
    seq: u64,
}

impl Link {
    /// A link with no inbox (`--no-control`): nothing arrives, nothing is held.
    pub fn disabled() -> Self {
        Link {
            shared: Arc::default(),
            rx: None,
            calls: HashMap::new(),
            held: HashMap::new(),
            session_ids: HashMap::new(),
            seq: 0,
        }
    }

    pub fn set_connected(&self, connected: bool, scopes: Vec<String>) {
        let mut s = lock(&self.shared);
        s.connected = connected;
        if connected {
            s.scopes = scopes;
        }
        if !connected {
            // Calls in flight on the dropped connection get no answer: the collector re-delivers.
            s.inflight = 0;
        }
        drop(s);
        self.shared.1.notify_all();
    }

    pub fn set_sessions(&self, keys: impl Iterator<Item = String>) {
        let mut s = lock(&self.shared);
        s.sessions = keys.take(MAX_SESSIONS).collect();
        drop(s);
        self.shared.1.notify_all();
    }

    /// The session ids of the sessions the gateway lists now.
    pub fn set_session_ids(&mut self, ids: impl Iterator<Item = (String, String)>) {
        self.session_ids = ids.take(MAX_SESSIONS).collect();
    }

    pub fn note_session_id(&mut self, key: &str, id: &str) {
        if self.session_ids.len() < MAX_SESSIONS || self.session_ids.contains_key(key) {
            self.session_ids.insert(key.to_string(), id.to_string());
        }
    }

    pub fn add_session(&self, key: &str) {
        let mut s = lock(&self.shared);
        if s.sessions.len() < MAX_SESSIONS && !s.sessions.contains(key) {
            s.sessions.insert(key.to_string());
        }
    }

    /// Commands that arrived, as gateway requests to send (`id`, method, params), and the acks of
    /// commands that need no call.
    pub fn take_requests(&mut self) -> Vec<Value> {
        let Some(rx) = &self.rx else { return Vec::new() };
        let mut out = Vec::new();
        let mut acks = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match rpc_for(&c) {
                Ok(Some((method, mut params))) => {
                    if method == "sessions.patch" {
                        if let Some(id) = self.session_ids.get(&c.session_key) {
                            params["expectedSessionId"] = json!(id);
                        }
                    }
                    self.seq += 1;
                    let id = format!("ctl-{}-{}", self.seq, c.command_id);
                    self.calls.insert(id.clone(), (c.command_id.clone(), method));
                    out.push(json!({"type": "req", "id": id, "method": method, "params": params}));
                }
                Ok(None) => acks.push(Ack {
                    command_id: c.command_id,
                    ok: true,
                    method: None,
                    status: Some("hold lifted".into()),
                    run_id: None,
                    code: None,
                    error: None,
                }),
                Err(e) => acks.push(Ack {
                    command_id: c.command_id,
                    ok: false,
                    method: None,
                    status: None,
                    run_id: None,
                    code: Some("UNSUPPORTED".into()),
                    error: Some(e),
                }),
            }
        }
        if !acks.is_empty() {
            self.push_acks(acks);
        }
        out
    }

    fn push_acks(&self, acks: Vec<Ack>) {
        let mut s = lock(&self.shared);
        s.inflight = s.inflight.saturating_sub(acks.len());
        s.acks.extend(acks);
        drop(s);
        self.shared.1.notify_all();
    }

    /// A gateway response: `true` when it answered one of our control calls.
    pub fn response(&mut self, res: &Value) -> bool {
        let Some(id) = res["id"].as_str() else { return false };
        if id.starts_with("hold-") {
            if res["ok"] != Value::Bool(true) {
                eprintln!("agent-console-openclaw: holding a paused session failed: {}", res["error"]);
            }
            return true;
        }
        let Some((command_id, method)) = self.calls.remove(id) else { return false };
        self.push_acks(vec![ack_for(&command_id, method, res)]);
        true
    }

    /// A row or event shows `key` with a run: if the console paused it, the abort to send.
    pub fn hold(&mut self, key: &str, running: bool) -> Option<Value> {
        if !running || !lock(&self.shared).paused.contains(key) {
            return None;
        }
        let now = Instant::now();
        if self.held.get(key).is_some_and(|t| now.duration_since(*t) < HOLD_RETRY) {
            return None;
        }
        if self.held.len() > MAX_SESSIONS {
            self.held.clear();
        }
        self.held.insert(key.to_string(), now);
        self.seq += 1;
        Some(json!({"type": "req", "id": format!("hold-{}", self.seq), "method": "sessions.abort",
                    "params": {"key": key, "clearQueued": true}}))
    }
}

/// The inbox thread's settings.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    pub endpoint: String,
    pub token: Option<String>,
    pub gateway_id: String,
    /// Longest single long-poll.
    pub wait: Duration,
}

/// Start the inbox thread; returns the gateway thread's end.
pub fn start(cfg: InboxConfig) -> Link {
    let shared: SharedCell = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = shared.clone();
    let spawned = std::thread::Builder::new().name("inbox".into()).spawn(move || inbox_loop(cfg, s, tx));
    if let Err(e) = spawned {
        eprintln!("agent-console-openclaw: cannot start the control inbox thread: {e}");
        return Link::disabled();
    }
    Link { shared, rx: Some(rx), ..Link::disabled() }
}

/// The inbox's answer.
#[derive(Debug, Default, Deserialize)]
pub struct InboxAnswer {
    #[serde(default)]
    pub commands: Vec<Cmd>,
    #[serde(default)]
    pub paused: Vec<String>,
}

fn inbox_loop(cfg: InboxConfig, shared: SharedCell, tx: Sender<Cmd>) {
    let mut last_error: Option<String> = None;
    let mut first = true;
    loop {
        // Before the first poll, wait briefly for the gateway's session list (so the collector
        // learns the sessions at once rather than after a whole long-poll).
        if first {
            let g = lock(&shared);
            let _ = shared.1.wait_timeout_while(g, Duration::from_secs(3), |s| !s.connected || s.sessions.is_empty());
            first = false;
        }
        let (body, acks) = {
            let mut s = lock(&shared);
            let acks = std::mem::take(&mut s.acks);
            let body = json!({
                "gateway": cfg.gateway_id,
                "connected": s.connected,
                "scopes": s.scopes,
                "sessions": s.sessions,
                "acks": acks,
                "wait_ms": if acks.is_empty() { cfg.wait.as_millis() as u64 } else { 0 },
            });
            (body, acks)
        };
        let timeout = cfg.wait + Duration::from_secs(10);
        let res = http::post_json(
            &cfg.endpoint,
            agent_console_conventions::openclaw::INBOX_PATH,
            cfg.token.as_deref(),
            body.to_string().as_bytes(),
            timeout,
        );
        let failure = match res {
            Ok((200, bytes)) => match serde_json::from_slice::<InboxAnswer>(&bytes) {
                Ok(answer) => {
                    if last_error.take().is_some() {
                        eprintln!("agent-console-openclaw: control inbox reachable again");
                    }
                    let n = answer.commands.len();
                    {
                        let mut s = lock(&shared);
                        s.paused = answer.paused.into_iter().collect();
                        s.inflight += n;
                    }
                    for c in answer.commands {
                        if tx.send(c).is_err() {
                            return;
                        }
                    }
                    if n > 0 {
                        // Send the acks as soon as the gateway answered (bounded wait).
                        let g = lock(&shared);
                        let _ = shared.1.wait_timeout_while(g, Duration::from_secs(5), |s| {
                            s.inflight > 0 && s.acks.len() < n && s.connected
                        });
                    }
                    None
                }
                Err(e) => Some((format!("unreadable inbox answer: {e}"), Duration::from_secs(1))),
            },
            Ok((404 | 405, _)) => {
                Some(("the collector has no OpenClaw inbox (older version?)".into(), Duration::from_secs(30)))
            }
            Ok((code, bytes)) => {
                let text: String =
                    String::from_utf8_lossy(&bytes).chars().filter(|c| !c.is_control()).take(200).collect();
                Some((format!("inbox answered {code}: {text}"), Duration::from_secs(if code == 401 { 10 } else { 1 })))
            }
            Err(e) => Some((e.to_string(), Duration::from_secs(1))),
        };
        if let Some((msg, pause)) = failure {
            // Keep the acks for the next poll.
            lock(&shared).acks.splice(0..0, acks);
            if last_error.as_deref() != Some(msg.as_str()) {
                eprintln!("agent-console-openclaw: control inbox {}: {msg}", cfg.endpoint);
            }
            last_error = Some(msg);
            std::thread::sleep(pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(kind: &str, message: Option<&str>) -> Cmd {
        Cmd {
            command_id: "cmd_1".into(),
            session_key: "agent:main:main".into(),
            kind: kind.into(),
            message: message.map(str::to_string),
            hard: false,
        }
    }

    #[test]
    fn commands_become_the_reference_calls() {
        let abort = json!({"key": "agent:main:main", "clearQueued": true});
        assert_eq!(rpc_for(&cmd("kill", None)), Ok(Some(("sessions.abort", abort.clone()))));
        assert_eq!(rpc_for(&cmd("pause", None)), Ok(Some(("sessions.abort", abort))));
        assert_eq!(
            rpc_for(&cmd("inject", Some("look at the logs"))),
            Ok(Some((
                "sessions.send",
                json!({"key": "agent:main:main", "message": "look at the logs", "idempotencyKey": "cmd_1"})
            )))
        );
        assert_eq!(rpc_for(&cmd("resume", None)), Ok(None));
        let fence = |kind: &str| rpc_for(&Cmd { hard: true, ..cmd(kind, None) });
        assert_eq!(fence("pause"), Ok(Some(("sessions.patch", json!({"key": "agent:main:main", "archived": true})))));
        assert_eq!(fence("resume"), Ok(Some(("sessions.patch", json!({"key": "agent:main:main", "archived": false})))));
        assert!(rpc_for(&cmd("inject", Some("  "))).is_err());
        assert!(rpc_for(&cmd("approve", None)).is_err());
    }

    #[test]
    fn replies_become_acks() {
        let ok = json!({"type": "res", "id": "x", "ok": true,
                        "payload": {"ok": true, "abortedRunId": null, "status": "no-active-run"}});
        let a = ack_for("cmd_1", "sessions.abort", &ok);
        assert!(a.ok);
        assert_eq!((a.status.as_deref(), a.run_id.as_deref()), (Some("no-active-run"), None));
        let forbidden = json!({"type": "res", "id": "x", "ok": false, "error": {"code": "FORBIDDEN",
            "message": "missing scope: operator.write", "details": {"code": "MISSING_SCOPE"}}});
        let a = ack_for("cmd_1", "sessions.send", &forbidden);
        assert!(!a.ok);
        assert_eq!(a.code.as_deref(), Some("FORBIDDEN"));
        assert_eq!(a.error.as_deref(), Some("missing scope: operator.write (MISSING_SCOPE)"));
    }

    #[test]
    fn link_routes_replies_and_holds_paused_sessions() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut link = Link { rx: Some(rx), ..Link::disabled() };
        tx.send(cmd("kill", None)).expect("send");
        tx.send(cmd("resume", None)).expect("send");
        let reqs = link.take_requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0]["method"], "sessions.abort");
        let res = json!({"type": "res", "id": reqs[0]["id"], "ok": true,
                         "payload": {"ok": true, "abortedRunId": "r1", "status": "aborted"}});
        assert!(link.response(&res));
        assert!(!link.response(&json!({"type": "res", "id": "list-1", "ok": true})), "not ours");
        let acks = std::mem::take(&mut lock(&link.shared).acks);
        assert_eq!(acks.len(), 2);
        assert_eq!(acks[0].status.as_deref(), Some("hold lifted"));
        assert_eq!((acks[1].status.as_deref(), acks[1].run_id.as_deref()), (Some("aborted"), Some("r1")));
        // Holds: only paused sessions, only with a run, rate limited.
        assert!(link.hold("agent:main:main", true).is_none());
        lock(&link.shared).paused.insert("agent:main:main".into());
        assert!(link.hold("agent:main:main", false).is_none());
        let h = link.hold("agent:main:main", true).expect("abort the new run");
        assert_eq!(h["params"], json!({"key": "agent:main:main", "clearQueued": true}));
        assert!(link.hold("agent:main:main", true).is_none(), "once per HOLD_RETRY");
    }
}
