//! `POST /hooks/claude`: Claude Code's `http` hook type, for users who configure a URL instead of
//! the `agent-console-hook` binary. The body (hook JSON) is translated by the shim's own library
//! (`agent_console_hook::translate`) and handed to the one ingest path as OTLP logs (+ the tool
//! span), so both routes store the same rows. Answers 200 with an empty body, or with a hook
//! decision from the `HookDecider` seam (none today; the control issue plugs in there).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use agent_console_hook::translate::{self, Event, Input, Options};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use super::decode::Encoding;
use super::http::{error_response, read_body, HttpReceiver};
use super::ingest::{Export, IngestError, Payload};

/// Where a hook decision comes from: the hook output JSON to answer with, or `None` for "no
/// decision" (empty 200). Called after the event is stored.
pub trait HookDecider: Send + Sync {
    fn decide(&self, event: &Event) -> Option<serde_json::Value>;
}

/// Today's decider: observe only.
pub struct NoDecision;

impl HookDecider for NoDecision {
    fn decide(&self, _event: &Event) -> Option<serde_json::Value> {
        None
    }
}

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
    decider: Arc<dyn HookDecider>,
}

impl HookReceiver {
    pub fn new(http: HttpReceiver, decider: Arc<dyn HookDecider>) -> Self {
        Self {
            http,
            options: Options::default(),
            tool_starts: Arc::new(Mutex::new(ToolStarts::new(MAX_PENDING_TOOLS))),
            decider,
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
    Router::new().route("/hooks/claude", post(claude)).with_state(state)
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

async fn claude(State(s): State<HookReceiver>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let header = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if !s.http.token.allows(header(header::AUTHORIZATION)) {
        return error_response(Encoding::Json, &IngestError::Unauthorized);
    }
    if !is_json(header(header::CONTENT_TYPE)) {
        let e = IngestError::UnsupportedMediaType("POST /hooks/claude takes Content-Type: application/json".into());
        return error_response(Encoding::Json, &e);
    }
    let bytes = match read_body(body, s.http.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(Encoding::Json, &e),
    };
    let input = translate::parse(&bytes);
    let now = now_ns();
    let start = s.tool_start(&input, now);
    let t = translate::translate(&input, &s.options, now, start);
    // The log record and the tool span are one export: one transaction, so a retry after a
    // failure never stores half of it twice.
    let mut payloads = vec![Export::decoded(Payload::Logs(t.logs))];
    if let Some(tr) = t.traces {
        payloads.push(Export::decoded(Payload::Traces(tr)));
    }
    if let Err(e) = s.http.ingest.export_all(payloads).await {
        return error_response(Encoding::Json, &e);
    }
    let decision = match &input {
        // Stored as the malformed-input error event above; the caller still learns it was bad.
        Input::Malformed { error, .. } => return error_response(Encoding::Json, &IngestError::Decode(error.clone())),
        Input::Event(ev) => s.decider.decide(ev),
    };
    let mut r = match decision {
        Some(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => Response::new(Body::empty()),
    };
    *r.status_mut() = StatusCode::OK;
    r
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
}
