//! `POST /hooks/claude`: every Claude Code hook call, from Claude Code's own `http` hooks or from
//! the `agent-console-hook` binary (which says so in `x-agent-console-client`). The body is the
//! hook JSON; it is translated by the shim's own library (`agent_console_hook::translate`) and
//! stored through the one ingest path, then the control plane decides (`control::Control::hook`,
//! the one decision function for both transports), holding the request while a pause or an
//! approval lasts. `http` hooks get the hook output JSON (or an empty 200); the binary gets a
//! signed `wire::Answer` envelope. `POST /hooks/claude/inbox` is the binary's `--inbox` waiter.
//!
//! A hook call from the binary carries a record id: a re-send (after a spool, a retry, a lost
//! answer) is answered the same (`control`) and stored once (the pipeline's `hook_records` stage
//! drops a logged repeat). Decisions never depend on storing: a paused
//! session stays held even when the store refuses the record (the binary then spools it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_console_hook::translate::{self, Input, Options};
use agent_console_hook::wire::{self, Answer, InboxAnswer};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::decode::Encoding;
use super::http::{error_response, read_body, HttpReceiver};
use super::ingest::{Export, IngestError, Payload};
use crate::control::model::Transport;
use crate::control::{Control, HookCall, Reply};

/// PreToolUse times by `tool_use_id`, for tool spans whose end event has no `duration_ms`.
/// Bounded: the oldest entry goes when full (a tool that never ended).
struct ToolStarts {
    at: HashMap<String, u64>,
    order: VecDeque<String>,
    cap: usize,
}

impl ToolStarts {
    fn new(cap: usize) -> Self {
        Self { at: HashMap::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    fn insert(&mut self, id: &str, t: u64) {
        if self.at.insert(id.to_string(), t).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.at.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.at.remove(&old);
                }
                None => break,
            }
        }
    }

    fn take(&mut self, id: &str) -> Option<u64> {
        let t = self.at.remove(id)?;
        if let Some(i) = self.order.iter().position(|o| o == id) {
            self.order.remove(i);
        }
        Some(t)
    }
}

/// Entries kept for tool calls in flight.
pub const MAX_PENDING_TOOLS: usize = 10_000;

#[derive(Clone)]
pub struct HookReceiver {
    http: HttpReceiver,
    options: Options,
    tool_starts: Arc<Mutex<ToolStarts>>,
    control: Option<Control>,
}

impl HookReceiver {
    /// Hook calls stored and, with `control`, decided.
    pub fn new(http: HttpReceiver, control: Option<Control>) -> Self {
        Self {
            http,
            options: Options::default(),
            tool_starts: Arc::new(Mutex::new(ToolStarts::new(MAX_PENDING_TOOLS))),
            control,
        }
    }

    fn tool_start(&self, input: &Input, now: u64) -> Option<u64> {
        let Input::Event(ev) = input else { return None };
        let id = ev.tool_use_id()?;
        let mut starts = self.tool_starts.lock().unwrap_or_else(|p| p.into_inner());
        if ev.starts_tool() {
            starts.insert(id, now);
            None
        } else if ev.ends_tool() {
            starts.take(id)
        } else {
            None
        }
    }
}

pub fn routes(state: HookReceiver) -> Router {
    Router::new().route(wire::HOOK_PATH, post(claude)).route(wire::INBOX_PATH, post(inbox)).with_state(state)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")))
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Record ids and nonces: 8 to 64 hex digits (anything else is ignored).
fn hex_id(v: Option<&str>) -> Option<&str> {
    v.filter(|s| (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn json_response(status: StatusCode, body: Vec<u8>, signature: Option<String>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(sig) = signature.and_then(|s| HeaderValue::from_str(&s).ok()) {
        r.headers_mut().insert(wire::HDR_SIGNATURE, sig);
    }
    r
}

/// A signed envelope for the binary.
fn signed(s: &HookReceiver, nonce: Option<&str>, body: serde_json::Value) -> Response {
    let bytes = body.to_string().into_bytes();
    let key = s.http.token.secret().unwrap_or("").as_bytes().to_vec();
    let sig = wire::sign::signature(&key, nonce.unwrap_or(""), &bytes);
    json_response(StatusCode::OK, bytes, Some(sig))
}

async fn claude(State(s): State<HookReceiver>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if !s.http.token.allows(hdr(h, header::AUTHORIZATION.as_str())) {
        return error_response(Encoding::Json, &IngestError::Unauthorized);
    }
    if !is_json(hdr(h, header::CONTENT_TYPE.as_str())) {
        let e = IngestError::UnsupportedMediaType("POST /hooks/claude takes Content-Type: application/json".into());
        return error_response(Encoding::Json, &e);
    }
    let bytes = match read_body(body, s.http.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(Encoding::Json, &e),
    };
    let binary = hdr(h, wire::HDR_CLIENT).is_some();
    let transport = if binary { Transport::Binary } else { Transport::Http };
    let record_id = hex_id(hdr(h, wire::HDR_RECORD_ID));
    let nonce = hex_id(hdr(h, wire::HDR_NONCE));
    let replay_ns = hdr(h, wire::HDR_REPLAY_TIME_NS).and_then(|v| v.parse::<u64>().ok());
    let input = translate::parse(&bytes);
    let mut opts = s.options.clone();
    opts.agent_name = hdr(h, wire::HDR_AGENT_NAME).map(str::to_string);
    opts.task_id = hdr(h, wire::HDR_TASK_ID).map(str::to_string);
    if let Some(n) = hdr(h, wire::HDR_MAX_PAYLOAD_BYTES).and_then(|v| v.parse::<usize>().ok()) {
        opts.max_payload_bytes = n.clamp(256, 1024 * 1024);
    }
    opts.transport = Some(
        if binary {
            agent_console_conventions::hook::TRANSPORT_COMMAND
        } else {
            agent_console_conventions::hook::TRANSPORT_HTTP
        }
        .to_string(),
    );
    opts.record_id = record_id.map(str::to_string);
    let now = replay_ns.unwrap_or_else(now_ns);
    let start = s.tool_start(&input, now);
    let t = translate::translate(&input, &opts, now, start);
    // The log record and the tool span are one export: one transaction, so a retry after a
    // failure never stores half of it twice.
    let mut payloads = vec![Export::decoded(Payload::Logs(t.logs))];
    if let Some(tr) = t.traces {
        payloads.push(Export::decoded(Payload::Traces(tr)));
    }
    // A re-send of a record id already logged is dropped by the pipeline (`hook_records`).
    let stored = s.http.ingest.export_all(payloads).await;
    let ev = match &input {
        // Stored as the malformed-input error event above; the caller still learns it was bad.
        Input::Malformed { error, .. } => return error_response(Encoding::Json, &IngestError::Decode(error.clone())),
        Input::Event(ev) => ev,
    };
    if let Err(e) = &stored {
        if !binary && s.control.is_none() {
            return error_response(Encoding::Json, e);
        }
        tracing::warn!(error = %e, event = %ev.name, "hook call not stored; deciding anyway");
    }
    let agent_id = ev
        .fields
        .get("agent_id")
        .and_then(|v| v.as_str())
        .or(ev.fields.get("agent_type").and_then(|v| v.as_str()))
        .or(opts.agent_name.as_deref())
        .unwrap_or(agent_console_conventions::hook::MAIN_AGENT)
        .to_string();
    let reply: Result<Option<crate::control::HookReply>, ()> = match (&s.control, replay_ns) {
        (Some(c), None) => {
            let cfg = c.config();
            let hold_for = if binary {
                let ms = hdr(h, wire::HDR_WAIT_MS).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                Duration::from_millis(ms).min(cfg.max_poll)
            } else {
                let default = if ev.name == agent_console_conventions::hook::USER_PROMPT_SUBMIT {
                    cfg.http_hold_prompt
                } else {
                    cfg.http_hold
                };
                hdr(h, wire::HDR_HOLD_SECS)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs.min(7 * 86_400)))
                    .unwrap_or(default)
            };
            let call = HookCall { event: ev, transport, record_id, hold_for, agent_id: Some(agent_id) };
            match c.hook(call).await {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    tracing::error!(error = %e, "hook decision failed");
                    Err(())
                }
            }
        }
        // A replay (stored late) or no control plane: nothing to decide.
        _ => Ok(None),
    };
    if binary {
        let (hold, output, signal) = match reply {
            Ok(Some(r)) => match r.reply {
                Reply::Pass => (false, None, r.signal),
                Reply::Answer(v) => (false, Some(v), r.signal),
                Reply::Held(f) => (true, f, false),
            },
            Ok(None) => (false, None, false),
            // No decision could be made: a retryable refusal, so the binary keeps the call and a
            // hold it knows about stays a hold.
            Err(()) => return error_response(Encoding::Json, &IngestError::Unavailable("decision failed".into())),
        };
        let answer = Answer { stored: stored.is_ok(), hold, output, signal: signal.then(|| "TERM".to_string()) };
        return signed(&s, nonce, answer.to_json());
    }
    match reply.ok().flatten().map(|r| r.reply) {
        Some(Reply::Answer(v)) | Some(Reply::Held(Some(v))) => {
            json_response(StatusCode::OK, v.to_string().into_bytes(), None)
        }
        _ => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
    }
}

/// `POST /hooks/claude/inbox`: the binary's `--inbox` waiter (hook JSON of the SessionStart or
/// Stop that started it; `x-agent-console-record-id` = the waiter's id, newest wins).
async fn inbox(State(s): State<HookReceiver>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if !s.http.token.allows(hdr(h, header::AUTHORIZATION.as_str())) {
        return error_response(Encoding::Json, &IngestError::Unauthorized);
    }
    let bytes = match read_body(body, s.http.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(Encoding::Json, &e),
    };
    let nonce = hex_id(hdr(h, wire::HDR_NONCE));
    let Some(waiter) = hex_id(hdr(h, wire::HDR_RECORD_ID)) else {
        return error_response(
            Encoding::Json,
            &IngestError::Decode("the inbox needs x-agent-console-record-id".into()),
        );
    };
    let Input::Event(ev) = translate::parse(&bytes) else {
        return error_response(Encoding::Json, &IngestError::Decode("hook input is not a hook event".into()));
    };
    let answer = match &s.control {
        Some(c) => {
            let ms = hdr(h, wire::HDR_WAIT_MS).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let wait = Duration::from_millis(ms).min(c.config().max_poll);
            match c.inbox(&ev, waiter, wait).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "inbox failed");
                    InboxAnswer::Wait
                }
            }
        }
        None => InboxAnswer::Release,
    };
    signed(&s, nonce, answer.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_starts_are_bounded_and_taken_once() {
        let mut t = ToolStarts::new(2);
        t.insert("a", 1);
        t.insert("b", 2);
        t.insert("c", 3);
        assert_eq!(t.take("a"), None, "oldest evicted");
        assert_eq!(t.take("b"), Some(2));
        assert_eq!(t.take("b"), None);
        assert_eq!(t.take("c"), Some(3));
        assert!(t.order.is_empty());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/vnd.x+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }

    #[test]
    fn hex_ids() {
        assert_eq!(hex_id(Some("0123abcd")), Some("0123abcd"));
        assert_eq!(hex_id(Some("xyz12345")), None);
        assert_eq!(hex_id(Some("abc")), None);
    }
}
