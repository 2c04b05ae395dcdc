//! Live messages built from committed rows. Each payload is serialised to JSON exactly once, when
//! the message is made; SSE and WebSocket subscribers only copy the shared text into their frames.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::model::records::{Batch, Context, LogRow, ModelCallRow, Seen, SpanRow, ToolCallRow};

/// Message types, as sent in SSE `event:` and WebSocket `type`.
pub const SPAN: &str = "span";
pub const EVENT: &str = "event";
pub const MODEL_CALL: &str = "model_call";
pub const TOOL_CALL: &str = "tool_call";
pub const SESSION: &str = "session";
pub const HEARTBEAT: &str = "heartbeat";
pub const GAP: &str = "gap";
pub const SNAPSHOT: &str = "snapshot";

/// A message before the hub gives it an id.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: &'static str,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    /// The JSON payload, serialised once.
    pub data: Arc<str>,
}

/// One message of the live stream, shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub kind: &'static str,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub data: Arc<str>,
}

impl Message {
    pub fn from_draft(id: u64, d: Draft) -> Self {
        Message { id, kind: d.kind, session_id: d.session_id, agent_id: d.agent_id, task_id: d.task_id, data: d.data }
    }

    /// A per-subscriber control message (`gap`, `heartbeat`, `snapshot`): not stored, not filtered.
    pub fn control(id: u64, kind: &'static str, data: &Value) -> Self {
        Message { id, kind, session_id: None, agent_id: None, task_id: None, data: data.to_string().into() }
    }

    /// The WebSocket text frame `{"id":..,"type":..,"data":{..}}` (the payload is pasted in, not re-serialised).
    pub fn ws_frame(&self) -> String {
        let mut s = String::with_capacity(self.data.len() + 48);
        s.push_str("{\"id\":");
        s.push_str(&self.id.to_string());
        s.push_str(",\"type\":\"");
        s.push_str(self.kind);
        s.push_str("\",\"data\":");
        s.push_str(&self.data);
        s.push('}');
        s
    }
}

/// Microseconds since the epoch as an RFC 3339 UTC string (`2026-01-02T03:04:05.123456Z`).
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = crate::civil::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
}

fn ctx_fields(obj: &mut Map<String, Value>, c: &Context) {
    obj.insert("session_id".into(), json!(c.session_id));
    obj.insert("agent_id".into(), json!(c.agent_id));
    obj.insert("task_id".into(), json!(c.task_id));
    obj.insert("agent_name".into(), json!(c.agent_name));
    obj.insert("run_id".into(), json!(c.run_id));
    obj.insert("service_name".into(), json!(c.service_name.as_deref()));
}

fn draft(kind: &'static str, c: &Context, mut obj: Map<String, Value>) -> Draft {
    ctx_fields(&mut obj, c);
    Draft {
        kind,
        session_id: c.session_id.clone(),
        agent_id: c.agent_id.clone(),
        task_id: c.task_id.clone(),
        data: Value::Object(obj).to_string().into(),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Raw JSON text columns go out as JSON, not as strings holding JSON.
fn raw_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

pub fn span(r: &SpanRow) -> Draft {
    let obj = object(json!({
        "time": rfc3339(r.time_us),
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "parent_span_id": r.parent_span_id,
        "name": r.name,
        "kind": r.kind,
        "start_time": rfc3339(r.start_us),
        "end_time": rfc3339(r.end_us),
        "duration_ms": r.duration_ms,
        "status_code": r.status_code,
        "status_message": r.status_message,
        "scope_name": r.scope_name.as_deref(),
        "span_type": r.span_type.as_str(),
        "model": r.model,
        "error": r.error,
        "attributes": raw_json(&r.attributes),
    }));
    draft(SPAN, &r.ctx, obj)
}

pub fn event(r: &LogRow) -> Draft {
    let obj = object(json!({
        "time": rfc3339(r.time_us),
        "observed_time": rfc3339(r.observed_us),
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "severity_number": r.severity_number,
        "severity_text": r.severity_text,
        "event_name": r.event_name,
        "body": r.body,
        "scope_name": r.scope_name.as_deref(),
        "attributes": raw_json(&r.attributes),
    }));
    draft(EVENT, &r.ctx, obj)
}

pub fn model_call(r: &ModelCallRow) -> Draft {
    let obj = object(json!({
        "time": rfc3339(r.time_us),
        "source": r.source,
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "request_id": r.request_id,
        "model": r.model,
        "provider": r.provider,
        "operation": r.operation,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cache_read_tokens": r.cache_read_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "cost_usd": r.cost_usd,
        "cost_source": r.cost_source,
        "duration_ms": r.duration_ms,
        "error": r.error,
        "token_rule": r.token_rule,
    }));
    draft(MODEL_CALL, &r.ctx, obj)
}

pub fn tool_call(r: &ToolCallRow) -> Draft {
    let obj = object(json!({
        "time": rfc3339(r.time_us),
        "source": r.source,
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "tool_call_id": r.tool_call_id,
        "tool_name": r.tool_name,
        "duration_ms": r.duration_ms,
        "success": r.success,
        "error": r.error,
    }));
    draft(TOOL_CALL, &r.ctx, obj)
}

/// A session whose stored row changed in this batch. The design point for the session state
/// machine: today the summary is the `sessions` row fields known to the writer (`Seen`); a richer
/// summary replaces this function's body, the message type and routing stay.
pub fn session(r: &Seen) -> Draft {
    let obj = object(json!({
        "session_id": r.id,
        "agent_id": r.agent_id,
        "task_id": r.task_id,
        "first_seen": rfc3339(r.first_us),
        "last_seen": rfc3339(r.last_us),
        "display_name": r.display_name,
        "service_name": r.service_name.as_deref(),
    }));
    Draft {
        kind: SESSION,
        session_id: Some(r.id.clone()),
        agent_id: r.agent_id.clone(),
        task_id: r.task_id.clone(),
        data: Value::Object(obj).to_string().into(),
    }
}

/// Every message a committed batch produces, in a fixed order: spans, events, model calls, tool
/// calls, then session changes. Metric points are not streamed.
pub fn from_batch(b: &Batch) -> Vec<Draft> {
    let mut out = Vec::with_capacity(b.spans.len() + b.logs.len() + b.model_calls.len() + b.tool_calls.len());
    out.extend(b.spans.iter().map(span));
    out.extend(b.logs.iter().map(event));
    out.extend(b.model_calls.iter().map(model_call));
    out.extend(b.tool_calls.iter().map(tool_call));
    out.extend(b.sessions.iter().map(session));
    out
}

/// Rows a batch would have produced (counted when the batch is dropped before the publisher).
pub fn count(b: &Batch) -> u64 {
    (b.spans.len() + b.logs.len() + b.model_calls.len() + b.tool_calls.len() + b.sessions.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_frames() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        let m = Message::control(7, GAP, &json!({"missed": 3}));
        let v: Value = serde_json::from_str(&m.ws_frame()).expect("json");
        assert_eq!(v, json!({"id": 7, "type": "gap", "data": {"missed": 3}}));
    }
}
