//! One WebSocket session with an OpenClaw gateway (protocol 4): wait for `connect.challenge`,
//! answer with `connect` (client `gateway-client`, mode `backend`, role operator, scopes asked for
//! explicitly), then `sessions.subscribe`, reconcile against `sessions.usage`, and poll
//! `sessions.list` every interval, feeding rows, `sessions.changed` and `session.message` events
//! to the `Shim`, sending the console's commands (`control::Link`) as gateway calls and holding
//! paused sessions. Returns why the session ended; the caller decides whether to retry, back off
//! or exit.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::control::Link;
use crate::http::split_url;
use crate::runs::{usage_by_session, SessionRow, Usage};
use crate::Shim;

/// How a session ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// `AUTH_TOKEN_MISMATCH`: the token is wrong; retrying cannot help.
    BadToken(String),
    /// A refusal retrying will not fix (bad URL, protocol or schema mismatch, missing scope).
    Fatal(String),
    /// `UNAVAILABLE` (start-up): retry after the gateway's delay.
    RetryAfter(Duration),
    /// Network error, close or restart. `ready` says whether the handshake had succeeded.
    Disconnected { reason: String, ready: bool },
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn read_json(ws: &mut WebSocket<TcpStream>) -> Result<Option<Value>, WsError> {
    match ws.read() {
        Ok(Message::Text(t)) => Ok(serde_json::from_str(t.as_str()).ok()),
        Ok(Message::Close(_)) => Err(WsError::ConnectionClosed),
        Ok(_) => Ok(None),
        Err(WsError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Err(e) => Err(e),
    }
}

fn send(ws: &mut WebSocket<TcpStream>, v: &Value) -> Result<(), WsError> {
    ws.send(Message::text(v.to_string()))
}

fn disconnected(e: impl std::fmt::Display, ready: bool) -> Outcome {
    Outcome::Disconnected { reason: e.to_string(), ready }
}

/// The `connect` params of the reference's working example.
pub fn connect_params(token: Option<&str>) -> Value {
    let mut p = json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "gateway-client",
            "version": env!("CARGO_PKG_VERSION"),
            "platform": std::env::consts::OS,
            "mode": "backend",
        },
        "role": "operator",
        "scopes": ["operator.read", "operator.write"],
    });
    if let Some(t) = token {
        p["auth"] = json!({ "token": t });
    }
    p
}

/// Classify a failed `connect` answer.
pub fn connect_error(err: &Value) -> Outcome {
    let code = err.get("code").and_then(Value::as_str).unwrap_or("");
    let detail = err.pointer("/details/code").and_then(Value::as_str).unwrap_or("");
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    if detail == "AUTH_TOKEN_MISMATCH" || message.contains("token mismatch") {
        return Outcome::BadToken(message.to_string());
    }
    if code == "UNAVAILABLE" || err.get("retryable").and_then(Value::as_bool) == Some(true) {
        let ms = err.get("retryAfterMs").and_then(Value::as_u64).unwrap_or(1000).clamp(50, 60_000);
        return Outcome::RetryAfter(Duration::from_millis(ms));
    }
    Outcome::Fatal(format!("connect refused: {code} {detail} {message}").trim().to_string())
}

/// `sessions.usage` asks while the gateway answers "not fresh yet", 500 ms apart.
const USAGE_ATTEMPTS: u32 = 20;

fn running(row: &SessionRow) -> bool {
    !row.active_run_ids.is_empty() || row.status.as_deref() == Some("running")
}

/// Run one gateway session until it ends.
pub fn run(shim: &mut Shim, link: &mut Link) -> Outcome {
    let out = session(shim, link);
    link.set_connected(false, Vec::new());
    out
}

/// Connect and shake hands (wait for `connect.challenge`, answer `connect`): the socket, with
/// `tick` as its read timeout, and the gateway's hello.
fn open(url: &str, token: Option<&str>, tick: Duration) -> Result<(WebSocket<TcpStream>, Value), Outcome> {
    if url.starts_with("wss://") {
        return Err(Outcome::Fatal("wss:// is not supported; use ws:// (the gateway binds loopback)".into()));
    }
    let Some((hostport, _)) = split_url(url, "ws", 80) else {
        return Err(Outcome::Fatal(format!("bad gateway URL {url:?} (expected ws://host:port)")));
    };
    let addr = match hostport.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => return Err(disconnected(format!("{hostport}: no address"), false)),
        Err(e) => return Err(disconnected(e, false)),
    };
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| disconnected(e, false))?;
    stream.set_read_timeout(Some(tick)).and_then(|_| stream.set_nodelay(true)).map_err(|e| disconnected(e, false))?;
    let (mut ws, _) = tungstenite::client(url, stream).map_err(|e| disconnected(e, false))?;

    // 1. The server speaks first.
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return Err(disconnected("no connect.challenge from the gateway", false));
        }
        match read_json(&mut ws) {
            Ok(Some(v)) if v["type"] == "event" && v["event"] == "connect.challenge" => break,
            Ok(_) => {}
            Err(e) => return Err(disconnected(e, false)),
        }
    }
    // 2. connect.
    let req = json!({"type": "req", "id": "connect", "method": "connect", "params": connect_params(token)});
    send(&mut ws, &req).map_err(|e| disconnected(e, false))?;
    let hello = loop {
        if Instant::now() > deadline {
            return Err(disconnected("no answer to connect", false));
        }
        match read_json(&mut ws) {
            Ok(Some(v)) if v["type"] == "res" && v["id"] == "connect" => break v,
            Ok(_) => {}
            Err(e) => return Err(disconnected(e, false)),
        }
    };
    if hello["ok"] != Value::Bool(true) {
        let _ = ws.close(None);
        return Err(connect_error(&hello["error"]));
    }
    Ok((ws, hello))
}

/// What `fetch_usage` read: the session rows and `sessions.usage` per session key.
pub type Snapshot = (Vec<SessionRow>, Vec<(String, Usage)>);

/// One-shot, for `agent-console import openclaw`: connect, list every session (archived ones
/// too), read `sessions.usage` (asked again while the gateway says it is not fresh), close.
pub fn fetch_usage(url: &str, token: Option<&str>, timeout: Duration) -> Result<Snapshot, Outcome> {
    let (mut ws, _) = open(url, token, Duration::from_millis(20))?;
    let deadline = Instant::now() + timeout;
    let list = json!({"type": "req", "id": "list", "method": "sessions.list",
                      "params": {"limit": 1000, "archived": "all"}});
    let usage = |n: u32| json!({"type": "req", "id": format!("usage-{n}"), "method": "sessions.usage", "params": {"agentScope": "all"}});
    send(&mut ws, &list).and_then(|_| send(&mut ws, &usage(1))).map_err(|e| disconnected(e, true))?;
    let (mut rows, mut got, mut attempts, mut again) = (None, None, 1u32, None::<Instant>);
    while rows.is_none() || got.is_none() {
        if Instant::now() > deadline {
            let _ = ws.close(None);
            return Err(Outcome::Fatal("no answer from the gateway in time".into()));
        }
        if again.is_some_and(|t| Instant::now() >= t) {
            again = None;
            attempts += 1;
            send(&mut ws, &usage(attempts)).map_err(|e| disconnected(e, true))?;
        }
        let Some(v) = read_json(&mut ws).map_err(|e| disconnected(e, true))? else {
            ws.flush().map_err(|e| disconnected(e, true))?;
            continue;
        };
        if v["type"] != "res" {
            continue;
        }
        if v["ok"] != Value::Bool(true) {
            let _ = ws.close(None);
            return Err(Outcome::Fatal(format!("{} failed: {}", v["id"], v["error"])));
        }
        match v["id"].as_str() {
            Some("list") => {
                let a = v.pointer("/payload/sessions").and_then(Value::as_array).cloned().unwrap_or_default();
                rows = Some(a.iter().filter_map(SessionRow::from_json).collect::<Vec<_>>());
            }
            Some(id) if id.starts_with("usage-") => match usage_by_session(&v["payload"]) {
                Ok(u) => got = Some(u),
                Err(()) if attempts < USAGE_ATTEMPTS => again = Some(Instant::now() + Duration::from_millis(500)),
                Err(()) => {
                    let _ = ws.close(None);
                    return Err(Outcome::Fatal("sessions.usage never fresh".into()));
                }
            },
            _ => {}
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    Ok((rows.unwrap_or_default(), got.unwrap_or_default()))
}

fn session(shim: &mut Shim, link: &mut Link) -> Outcome {
    let url = shim.cfg.gateway.clone();
    // The read timeout is the loop's tick: commands from the inbox thread wait at most this long
    // for the gateway thread (20 ms: 50 wake-ups a second, next to nothing).
    let tick = shim.cfg.interval.min(Duration::from_millis(20)).max(Duration::from_millis(5));
    let (mut ws, hello) = match open(&url, shim.cfg.token.as_deref(), tick) {
        Ok(x) => x,
        Err(o) => return o,
    };
    let version = hello.pointer("/payload/server/version").and_then(Value::as_str).unwrap_or("?");
    eprintln!("agent-console-openclaw: connected to {url} (gateway {version})");
    let scopes: Vec<String> = hello
        .pointer("/payload/auth/scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    link.set_connected(true, scopes);

    // 3. subscribe, then poll.
    let sub = json!({"type": "req", "id": "subscribe", "method": "sessions.subscribe", "params": {}});
    if let Err(e) = send(&mut ws, &sub) {
        return disconnected(e, true);
    }
    // Reconcile: what the gateway counted per session vs what was counted here (calls served
    // while this shim was not listening).
    let mut usage_attempts = 0u32;
    let mut next_usage = Some(Instant::now());
    let mut seq: u64 = 0;
    let mut next_poll = Instant::now();
    loop {
        for req in link.take_requests() {
            if let Err(e) = send(&mut ws, &req) {
                return disconnected(e, true);
            }
        }
        if next_usage.is_some_and(|t| Instant::now() >= t) {
            usage_attempts += 1;
            next_usage = None;
            let req = json!({"type": "req", "id": format!("usage-{usage_attempts}"), "method": "sessions.usage",
                             "params": {"agentScope": "all"}});
            if let Err(e) = send(&mut ws, &req) {
                return disconnected(e, true);
            }
        }
        if Instant::now() >= next_poll {
            seq += 1;
            let list = json!({"type": "req", "id": format!("list-{seq}"), "method": "sessions.list",
                              "params": {"limit": 1000, "archived": "all"}});
            if let Err(e) = send(&mut ws, &list) {
                return disconnected(e, true);
            }
            next_poll = Instant::now() + shim.cfg.interval;
            shim.flush(false);
        }
        let v = match read_json(&mut ws) {
            Ok(Some(v)) => v,
            Ok(None) => {
                // Answer pings queued by tungstenite.
                if let Err(e) = ws.flush() {
                    return disconnected(e, true);
                }
                continue;
            }
            Err(e) => return disconnected(e, true),
        };
        match v["type"].as_str() {
            Some("res") => {
                if link.response(&v) {
                    continue;
                }
                let id = v["id"].as_str().unwrap_or("");
                if id.starts_with("usage-") {
                    if v["ok"] != Value::Bool(true) {
                        eprintln!("agent-console-openclaw: sessions.usage failed, not reconciled: {}", v["error"]);
                        continue;
                    }
                    match usage_by_session(&v["payload"]) {
                        Ok(usage) => {
                            let n = shim.reconcile(&usage);
                            if n > 0 {
                                eprintln!("agent-console-openclaw: reconciled {n} sessions with sessions.usage");
                            }
                        }
                        Err(()) if usage_attempts < USAGE_ATTEMPTS => {
                            next_usage = Some(Instant::now() + Duration::from_millis(500));
                        }
                        Err(()) => eprintln!("agent-console-openclaw: sessions.usage never fresh, not reconciled"),
                    }
                    continue;
                }
                if v["ok"] != Value::Bool(true) {
                    let err = &v["error"];
                    if err["code"] == "FORBIDDEN" {
                        return Outcome::Fatal(format!("{id} forbidden: {err}"));
                    }
                    eprintln!("agent-console-openclaw: {id} failed: {err}");
                    continue;
                }
                if id.starts_with("list-") {
                    let rows = v.pointer("/payload/sessions").and_then(Value::as_array).cloned().unwrap_or_default();
                    let rows: Vec<SessionRow> = rows.iter().filter_map(SessionRow::from_json).collect();
                    link.set_sessions(rows.iter().map(|r| r.key.clone()));
                    link.set_session_ids(rows.iter().filter_map(|r| Some((r.key.clone(), r.session_id.clone()?))));
                    for row in &rows {
                        if let Some(abort) = link.hold(&row.key, running(row)) {
                            if let Err(e) = send(&mut ws, &abort) {
                                return disconnected(e, true);
                            }
                        }
                        shim.observe(row, None);
                    }
                }
            }
            Some("event") if v["event"] == "sessions.changed" => {
                let p = &v["payload"];
                let ended = (p["phase"] == "end").then(|| p["runId"].as_str()).flatten();
                match p.get("session").and_then(SessionRow::from_json) {
                    Some(row) => {
                        link.add_session(&row.key);
                        if let Some(id) = &row.session_id {
                            link.note_session_id(&row.key, id);
                        }
                        if let Some(abort) = link.hold(&row.key, running(&row)) {
                            if let Err(e) = send(&mut ws, &abort) {
                                return disconnected(e, true);
                            }
                        }
                        shim.observe(&row, ended)
                    }
                    // No row in the event: poll now.
                    None => next_poll = Instant::now(),
                }
            }
            Some("event") if v["event"] == "session.message" => shim.message(&v["payload"]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_classified() {
        let bad = json!({"code": "INVALID_REQUEST", "message": "unauthorized: gateway token mismatch",
                         "details": {"code": "AUTH_TOKEN_MISMATCH"}});
        assert!(matches!(connect_error(&bad), Outcome::BadToken(_)));
        let busy = json!({"code": "UNAVAILABLE", "message": "starting", "retryable": true, "retryAfterMs": 500});
        assert_eq!(connect_error(&busy), Outcome::RetryAfter(Duration::from_millis(500)));
        assert!(matches!(connect_error(&json!({"code": "INVALID_REQUEST"})), Outcome::Fatal(_)));
    }

    #[test]
    fn connect_asks_for_scopes() {
        let p = connect_params(Some("t"));
        assert_eq!(p["client"]["id"], "gateway-client");
        assert_eq!(p["client"]["mode"], "backend");
        assert_eq!(p["scopes"], json!(["operator.read", "operator.write"]));
        assert_eq!(p["auth"]["token"], "t");
    }
}
