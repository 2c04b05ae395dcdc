//! Live messages built from committed rows. A batch becomes an `Entry` (a run of ids); each
//! payload is serialised to JSON at most once, when the first subscriber needs it; SSE and
//! WebSocket subscribers only copy the shared text into their frames.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Map, Value};

use crate::model::records::{Batch, Context, LogRow, ModelCallRow, SessionUpdate, SpanRow, ToolCallRow};

/// Message types, as sent in SSE `event:` and WebSocket `type`.
pub const SPAN: &str = "span";
pub const EVENT: &str = "event";
pub const MODEL_CALL: &str = "model_call";
pub const TOOL_CALL: &str = "tool_call";
pub const SESSION: &str = "session";
pub const HEARTBEAT: &str = "heartbeat";
pub const GAP: &str = "gap";
pub const SNAPSHOT: &str = "snapshot";
/// A control command's step (`control`): accepted, delivered, observed, expired, failed, superseded.
pub const COMMAND: &str = crate::control::LIVE_COMMAND;
/// A tool call held for approval, and its answer (`control`).
pub const APPROVAL: &str = crate::control::LIVE_APPROVAL;

/// Extra fields of a live `session` summary, computed when the message is first serialised
/// (control adds `control` and `capabilities`).
pub type SessionExtra = Arc<dyn Fn(&SessionUpdate) -> Map<String, Value> + Send + Sync>;

/// Extra fields of a live `model_call`, computed when it is first serialised (billing adds
/// `billing`, `cost_is_estimate`, `spend_usd` ...).
pub type CallExtra = Arc<dyn Fn(&ModelCallRow) -> Map<String, Value> + Send + Sync>;

/// The extra-field hooks a batch's messages are made with.
#[derive(Clone, Default)]
pub struct Extras {
    pub session: Option<SessionExtra>,
    pub call: Option<CallExtra>,
}

/// A message before the hub gives it an id.
#[derive(Debug, Clone)]
pub struct Draft {
    pub kind: &'static str,
    pub session_id: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub task_id: Option<Arc<str>>,
    /// The JSON payload, serialised once.
    pub data: Arc<str>,
}

/// One message of the live stream, shared by every subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: u64,
    pub kind: &'static str,
    pub session_id: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub task_id: Option<Arc<str>>,
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
    obj.insert("session_id".into(), json!(c.session_id.as_deref()));
    obj.insert("agent_id".into(), json!(c.agent_id.as_deref()));
    obj.insert("task_id".into(), json!(c.task_id.as_deref()));
    obj.insert("agent_name".into(), json!(c.agent_name.as_deref()));
    obj.insert("run_id".into(), json!(c.run_id.as_deref()));
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
    model_call_with(r, None)
}

/// `model_call`, with the fields `extra` adds.
pub fn model_call_with(r: &ModelCallRow, extra: Option<&CallExtra>) -> Draft {
    let mut obj = object(json!({
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
    if let Some(f) = extra {
        obj.extend(f(r));
    }
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

/// A session state change with the session's new summary (field names as `GET /api/sessions`).
pub fn session(u: &SessionUpdate) -> Draft {
    session_with(u, None)
}

/// `session`, with the fields `extra` adds.
pub fn session_with(u: &SessionUpdate, extra: Option<&SessionExtra>) -> Draft {
    let mut obj = object(json!({
        "time": rfc3339(u.time_us),
        "session_id": u.session_id,
        "agent_id": u.agent_id,
        "task_id": u.task_id,
        "parent_session_id": u.parent_session_id,
        "display_name": u.display_name,
        "service_name": u.service_name.as_deref(),
        "previous_status": u.from_status,
        "status": u.status,
        "stuck": u.stuck,
        "waiting": u.waiting,
        "long_tool": u.long_tool,
        "status_reason": u.reason,
        "status_since": rfc3339(u.status_since_us),
        "first_seen": rfc3339(u.first_seen_us),
        "last_seen": rfc3339(u.last_seen_us),
        "last_activity": rfc3339(u.last_activity_us),
        "ended_at": u.ended_at_us.map(rfc3339),
        "elapsed_s": (u.ended_at_us.unwrap_or(u.time_us) - u.first_seen_us).max(0) as f64 / 1e6,
        "model": u.model,
        "model_calls": u.model_calls,
        "tool_calls": u.tool_calls,
        "errors": u.errors,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "cost_usd": u.cost_usd,
    }));
    if let Some(f) = extra {
        obj.extend(f(u));
    }
    Draft {
        kind: SESSION,
        session_id: Some(u.session_id.as_str().into()),
        agent_id: u.agent_id.as_deref().map(Arc::from),
        task_id: u.task_id.as_deref().map(Arc::from),
        data: Value::Object(obj).to_string().into(),
    }
}

/// What a filter looks at, read from a row without serialising it.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub kind: &'static str,
    pub session_id: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

impl<'a> Header<'a> {
    fn of(kind: &'static str, c: &'a Context) -> Self {
        Header {
            kind,
            session_id: c.session_id.as_deref(),
            agent_id: c.agent_id.as_deref(),
            task_id: c.task_id.as_deref(),
        }
    }
}

/// The messages a committed batch makes, in a fixed order: spans, events, model calls, tool
/// calls, then session changes (metric points are not streamed). Nothing is serialised until a
/// subscriber asks for a message, and then once for all subscribers (`Entry`).
pub fn count(b: &Batch) -> u64 {
    (b.spans.len() + b.logs.len() + b.model_calls.len() + b.tool_calls.len() + b.session_updates.len()) as u64
}

fn locate(b: &Batch, mut i: usize) -> Option<(usize, usize)> {
    for (part, len) in [b.spans.len(), b.logs.len(), b.model_calls.len(), b.tool_calls.len(), b.session_updates.len()]
        .into_iter()
        .enumerate()
    {
        if i < len {
            return Some((part, i));
        }
        i -= len;
    }
    None
}

fn header_at(b: &Batch, i: usize) -> Option<Header<'_>> {
    Some(match locate(b, i)? {
        (0, j) => Header::of(SPAN, &b.spans[j].ctx),
        (1, j) => Header::of(EVENT, &b.logs[j].ctx),
        (2, j) => Header::of(MODEL_CALL, &b.model_calls[j].ctx),
        (3, j) => Header::of(TOOL_CALL, &b.tool_calls[j].ctx),
        (_, j) => {
            let u = &b.session_updates[j];
            Header {
                kind: SESSION,
                session_id: Some(&u.session_id),
                agent_id: u.agent_id.as_deref(),
                task_id: u.task_id.as_deref(),
            }
        }
    })
}

fn draft_at(b: &Batch, i: usize, extra: &Extras) -> Option<Draft> {
    Some(match locate(b, i)? {
        (0, j) => span(&b.spans[j]),
        (1, j) => event(&b.logs[j]),
        (2, j) => model_call_with(&b.model_calls[j], extra.call.as_ref()),
        (3, j) => tool_call(&b.tool_calls[j]),
        (_, j) => session_with(&b.session_updates[j], extra.session.as_ref()),
    })
}

enum Source {
    Batch(Arc<Batch>, Extras),
    One(Draft),
}

/// A run of consecutive message ids: one committed batch (or one hub-made message). The hub
/// retains and broadcasts entries, not messages, so publishing costs the same whether anyone
/// listens or not; a message's JSON is made the first time a subscriber needs it and shared.
pub struct Entry {
    pub first_id: u64,
    pub len: u64,
    /// Messages published before this entry in this run (dense, unlike ids, which follow log
    /// positions): gaps are counted from it.
    pub seq: u64,
    /// What retaining this entry costs in memory, roughly (rows, plus their JSON once made).
    pub bytes: u64,
    source: Source,
    cache: OnceLock<Box<[OnceLock<Arc<Message>>]>>,
    /// The sessions, agents and tasks the entry's messages name, made on first use: a filtered
    /// subscriber skips an entry that cannot match in one look instead of one per message.
    index: OnceLock<Option<EntryIndex>>,
}

/// What a batch entry's messages name (`Entry::index`).
#[derive(Debug, Default)]
pub struct EntryIndex {
    pub sessions: Vec<Box<str>>,
    pub agents: Vec<Box<str>>,
    pub tasks: Vec<Box<str>>,
}

/// Distinct values an index keeps per field; an entry naming more is not indexed (every
/// subscriber looks at its messages one by one, as without an index).
const INDEX_MAX: usize = 64;

impl EntryIndex {
    fn of(e: &Entry) -> Option<Self> {
        let mut ix = EntryIndex::default();
        fn add(set: &mut Vec<Box<str>>, v: Option<&str>) -> bool {
            match v {
                Some(v) if !set.iter().any(|s| &**s == v) => {
                    set.push(v.into());
                    set.len() <= INDEX_MAX
                }
                _ => true,
            }
        }
        for i in 0..e.len as usize {
            let h = e.header(i)?;
            if !(add(&mut ix.sessions, h.session_id)
                && add(&mut ix.agents, h.agent_id)
                && add(&mut ix.tasks, h.task_id))
            {
                return None;
            }
        }
        Some(ix)
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("first_id", &self.first_id).field("len", &self.len).finish()
    }
}

impl Entry {
    pub fn batch(first_id: u64, b: Arc<Batch>) -> Self {
        Self::batch_with(first_id, b, Extras::default())
    }

    /// A batch whose `session` and `model_call` messages get `extra`'s fields.
    pub fn batch_with(first_id: u64, b: Arc<Batch>, extra: Extras) -> Self {
        let len = count(&b);
        let bytes = retained_bytes(&b, len);
        Entry {
            first_id,
            len,
            seq: 0,
            bytes,
            source: Source::Batch(b, extra),
            cache: OnceLock::new(),
            index: OnceLock::new(),
        }
    }

    pub fn one(id: u64, d: Draft) -> Self {
        let bytes = d.data.len() as u64 * 2 + 256;
        Entry {
            first_id: id,
            len: 1,
            seq: 0,
            bytes,
            source: Source::One(d),
            cache: OnceLock::new(),
            index: OnceLock::new(),
        }
    }

    /// Id of the last message in this entry.
    pub fn last_id(&self) -> u64 {
        self.first_id + self.len.saturating_sub(1)
    }

    /// What a batch entry's messages name (made once, by the first subscriber that asks); None
    /// for a hub-made message and for an entry naming too many to index.
    pub fn index(&self) -> Option<&EntryIndex> {
        match &self.source {
            Source::Batch(..) => self.index.get_or_init(|| EntryIndex::of(self)).as_ref(),
            Source::One(_) => None,
        }
    }

    /// The filter view of message `i` (0-based within the entry).
    pub fn header(&self, i: usize) -> Option<Header<'_>> {
        match &self.source {
            Source::Batch(b, _) => header_at(b, i),
            Source::One(d) if i == 0 => Some(Header {
                kind: d.kind,
                session_id: d.session_id.as_deref(),
                agent_id: d.agent_id.as_deref(),
                task_id: d.task_id.as_deref(),
            }),
            Source::One(_) => None,
        }
    }

    /// Message `i`, serialised on first use and shared by every subscriber afterwards.
    pub fn message(&self, i: usize) -> Option<Arc<Message>> {
        if i as u64 >= self.len {
            return None;
        }
        let slots = self.cache.get_or_init(|| (0..self.len).map(|_| OnceLock::new()).collect());
        let slot = slots.get(i)?;
        if let Some(m) = slot.get() {
            return Some(m.clone());
        }
        let draft = match &self.source {
            Source::Batch(b, extra) => draft_at(b, i, extra)?,
            Source::One(d) => d.clone(),
        };
        Some(slot.get_or_init(|| Arc::new(Message::from_draft(self.first_id + i as u64, draft))).clone())
    }
}

/// What keeping a batch in the resume ring costs, roughly: its rows (fixed part and the text they
/// carry; resource attributes are shared) and as much again for the messages' JSON, which is
/// made on first use and kept with the entry.
fn retained_bytes(b: &Batch, messages: u64) -> u64 {
    // The rows (text included) plus their JSON, made once and kept with them.
    crate::pipeline::batch_bytes(b).saturating_mul(2) + messages * 64
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
