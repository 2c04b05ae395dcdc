//! Hook JSON -> OTLP. Pure (the clock and the saved tool start time are passed in): one log record
//! per hook call, plus an `execute_tool <name>` span when a tool call ends. The shim and the
//! collector's `POST /hooks/claude` both call this, so the two paths map identically.

use agent_console_conventions::{attr, hook, source};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::{Map, Value};

/// Default cut-off of `agent_console.hook.payload`.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// What the translation needs besides the hook JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Agent name of the main thread (default `hook::MAIN_AGENT`).
    pub agent_name: Option<String>,
    /// `agent_console.task.id` on the resource.
    pub task_id: Option<String>,
    /// Cut-off of the payload attribute, in bytes (on a char boundary).
    pub max_payload_bytes: usize,
    /// How the call arrived (`hook::TRANSPORT_COMMAND` / `TRANSPORT_HTTP`), set by the collector.
    pub transport: Option<String>,
    /// The binary's id of this call (`attr::HOOK_RECORD_ID`), set by the collector.
    pub record_id: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            agent_name: None,
            task_id: None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            transport: None,
            record_id: None,
        }
    }
}

/// One parsed hook call: a JSON object with a `hook_event_name`, or malformed input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Event(Event),
    Malformed {
        /// Why it was refused.
        error: String,
        /// The input as text (lossy), for the payload attribute.
        raw: String,
    },
}

/// A well-formed hook call.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub fields: Map<String, Value>,
    /// The input as sent, minus insignificant whitespace (key order and number spelling kept, so
    /// both routes store the same text whatever map type serde_json was built with).
    pub compact: String,
}

impl Event {
    fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    pub fn session_id(&self) -> Option<&str> {
        self.str("session_id")
    }

    pub fn tool_use_id(&self) -> Option<&str> {
        self.str("tool_use_id")
    }

    /// `duration_ms` when the event carries it (PostToolUse, PostToolUseFailure).
    pub fn duration_ms(&self) -> Option<u64> {
        let v = self.fields.get("duration_ms")?;
        v.as_u64().or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    }

    /// A tool call ends here (PostToolUse or PostToolUseFailure).
    pub fn ends_tool(&self) -> bool {
        self.name == hook::POST_TOOL_USE || self.name == hook::POST_TOOL_USE_FAILURE
    }

    pub fn starts_tool(&self) -> bool {
        self.name == hook::PRE_TOOL_USE
    }
}

/// Parse stdin / a request body. Never fails: bad input becomes `Input::Malformed`.
pub fn parse(bytes: &[u8]) -> Input {
    let malformed = |error: String| Input::Malformed { error, raw: String::from_utf8_lossy(bytes).into_owned() };
    match serde_json::from_slice::<Value>(bytes) {
        Err(e) => malformed(format!("hook input is not JSON: {e}")),
        Ok(Value::Object(fields)) => match fields.get("hook_event_name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => {
                Input::Event(Event { name: name.to_string(), fields, compact: minify(&String::from_utf8_lossy(bytes)) })
            }
            _ => malformed("hook input has no hook_event_name".to_string()),
        },
        Ok(_) => malformed("hook input is not a JSON object".to_string()),
    }
}

/// Drop whitespace outside strings from valid JSON text.
pub fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_str, mut escaped) = (false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !c.is_ascii_whitespace() {
            in_str = c == '"';
            out.push(c);
        }
    }
    out
}

/// The OTLP requests for one hook call.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub logs: ExportLogsServiceRequest,
    /// The tool span, when a tool call ended.
    pub traces: Option<ExportTraceServiceRequest>,
}

/// Translate one hook call. `now_ns`: the time of the call; `tool_start_ns`: the time saved by the
/// matching PreToolUse, used when the end event has no `duration_ms`.
pub fn translate(input: &Input, opts: &Options, now_ns: u64, tool_start_ns: Option<u64>) -> Translated {
    match input {
        Input::Malformed { error, raw } => {
            let mut attrs = vec![kv(attr::SOURCE, source::CLAUDE_HOOK), kv(attr::HOOK_EVENT, hook::MALFORMED)];
            push_payload(&mut attrs, raw, opts.max_payload_bytes);
            call_attrs(&mut attrs, opts);
            let rec = log_record(hook::MALFORMED, Severity::Error, Some(error), attrs, now_ns);
            Translated { logs: logs_request(opts, vec![rec]), traces: None }
        }
        Input::Event(ev) if ev.name == hook::SPOOL_DROPPED => {
            let count = |k: &str| ev.fields.get(k).and_then(Value::as_i64).unwrap_or(0);
            let (dropped, damaged) = (count("dropped"), count("damaged"));
            let mut attrs = vec![
                kv(attr::SOURCE, source::CLAUDE_HOOK),
                kv(attr::HOOK_EVENT, hook::SPOOL_DROPPED),
                KeyValue { key: hook::DROPPED_COUNT.into(), value: Some(int_value(dropped)), ..Default::default() },
                KeyValue { key: hook::DAMAGED_COUNT.into(), value: Some(int_value(damaged)), ..Default::default() },
            ];
            call_attrs(&mut attrs, opts);
            let body = format!("{dropped} hook records dropped from a full spool, {damaged} damaged records skipped");
            let rec = log_record(hook::SPOOL_DROPPED, Severity::Warn, Some(&body), attrs, now_ns);
            Translated { logs: logs_request(opts, vec![rec]), traces: None }
        }
        Input::Event(ev) => {
            let mut attrs = common_attrs(ev, opts);
            if ev.name == hook::SESSION_START {
                if let Some(m) = ev.str("model") {
                    attrs.push(kv(attr::MODEL, m));
                }
            }
            push_payload(&mut attrs, &ev.compact, opts.max_payload_bytes);
            let failed = ev.name == hook::POST_TOOL_USE_FAILURE || ev.name == hook::STOP_FAILURE;
            let body = if failed { error_text(ev) } else { None };
            let sev = if failed { Severity::Error } else { Severity::Info };
            let rec = log_record(&ev.name, sev, body.as_deref(), attrs, now_ns);
            let traces = tool_span(ev, opts, now_ns, tool_start_ns).map(|s| traces_request(opts, s));
            Translated { logs: logs_request(opts, vec![rec]), traces }
        }
    }
}

/// The hook JSON of the binary's own report of spool loss (stored as a WARN record with the
/// counts): records a full spool dropped, and damaged records it skipped.
pub fn dropped_event(dropped: u64, damaged: u64) -> Vec<u8> {
    serde_json::json!({ "hook_event_name": hook::SPOOL_DROPPED, "dropped": dropped, "damaged": damaged })
        .to_string()
        .into_bytes()
}

fn call_attrs(a: &mut Vec<KeyValue>, opts: &Options) {
    if let Some(t) = opts.transport.as_deref() {
        a.push(kv(attr::HOOK_TRANSPORT, t));
    }
    if let Some(r) = opts.record_id.as_deref() {
        a.push(kv(attr::HOOK_RECORD_ID, r));
    }
}

fn error_text(ev: &Event) -> Option<String> {
    match ev.fields.get("error")? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn common_attrs(ev: &Event, opts: &Options) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(16);
    if let Some(s) = ev.session_id() {
        a.push(kv(attr::SESSION_ID, s));
        a.push(kv(attr::CONVERSATION_ID, s));
    }
    if let Some(p) = ev.str("prompt_id") {
        a.push(kv(attr::PROMPT_ID, p));
    }
    if let Some(t) = ev.tool_use_id() {
        a.push(kv(attr::TOOL_USE_ID, t));
        a.push(kv(attr::TOOL_CALL_ID, t));
    }
    if let Some(t) = ev.str("tool_name") {
        a.push(kv(attr::TOOL_NAME, t));
    }
    let agent_type = ev.str("agent_type");
    if let Some(id) = ev.str("agent_id") {
        a.push(kv(attr::AGENT_ID, id));
    }
    let name = agent_type.or(opts.agent_name.as_deref()).unwrap_or(hook::MAIN_AGENT);
    a.push(kv(attr::AGENT_NAME, name));
    if let Some(t) = agent_type {
        a.push(kv(attr::AGENT_TYPE, t));
    }
    if let Some(c) = ev.str("cwd") {
        a.push(kv(attr::CWD, c));
    }
    a.push(kv(attr::SOURCE, source::CLAUDE_HOOK));
    a.push(kv(attr::HOOK_EVENT, &ev.name));
    call_attrs(&mut a, opts);
    a
}

fn tool_span(ev: &Event, opts: &Options, now_ns: u64, tool_start_ns: Option<u64>) -> Option<Span> {
    if !ev.ends_tool() {
        return None;
    }
    let tool_use_id = ev.tool_use_id()?;
    let tool_name = ev.str("tool_name").unwrap_or("unknown");
    let start = match (ev.duration_ms(), tool_start_ns) {
        (Some(ms), _) => now_ns.saturating_sub(ms.saturating_mul(1_000_000)),
        (None, Some(t)) if t <= now_ns => t,
        _ => now_ns,
    };
    let mut attributes = common_attrs(ev, opts);
    attributes.push(kv(attr::OPERATION_NAME, "execute_tool"));
    let failed = ev.name == hook::POST_TOOL_USE_FAILURE;
    let status = if failed {
        let interrupted = ev.fields.get("is_interrupt").and_then(Value::as_bool) == Some(true);
        attributes.push(kv(attr::ERROR_TYPE, if interrupted { hook::TOOL_INTERRUPTED } else { hook::TOOL_ERROR }));
        Some(Status { message: error_text(ev).unwrap_or_default(), code: StatusCode::Error as i32 })
    } else {
        None
    };
    Some(Span {
        trace_id: trace_id(ev.session_id().unwrap_or(tool_use_id)).to_vec(),
        span_id: span_id(tool_use_id).to_vec(),
        name: format!("{}{tool_name}", hook::TOOL_SPAN_PREFIX),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: now_ns,
        attributes,
        status,
        ..Default::default()
    })
}

/// FNV-1a 64 with a seed mixed in first; stable across versions and platforms.
fn fnv64(seed: u64, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in seed.to_le_bytes().iter().chain(s.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Deterministic trace id of a session: hooks are separate processes with no shared context.
pub fn trace_id(session_id: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv64(1, session_id).to_be_bytes());
    id[8..].copy_from_slice(&fnv64(2, session_id).to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// Deterministic span id of a tool call.
pub fn span_id(tool_use_id: &str) -> [u8; 8] {
    match fnv64(3, tool_use_id) {
        0 => 1u64.to_be_bytes(),
        h => h.to_be_bytes(),
    }
}

/// Cut `s` to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn push_payload(attrs: &mut Vec<KeyValue>, payload: &str, max: usize) {
    let (text, cut) = truncate(payload, max);
    attrs.push(kv(attr::PAYLOAD, text));
    if cut {
        attrs.push(KeyValue {
            key: attr::PAYLOAD_TRUNCATED.into(),
            value: Some(bool_value(true)),
            ..Default::default()
        });
    }
}

#[derive(Clone, Copy)]
enum Severity {
    Info,
    Warn,
    Error,
}

fn log_record(event: &str, sev: Severity, body: Option<&str>, attributes: Vec<KeyValue>, now_ns: u64) -> LogRecord {
    let (number, text) = match sev {
        Severity::Info => (SeverityNumber::Info, "INFO"),
        Severity::Warn => (SeverityNumber::Warn, "WARN"),
        Severity::Error => (SeverityNumber::Error, "ERROR"),
    };
    LogRecord {
        time_unix_nano: now_ns,
        observed_time_unix_nano: now_ns,
        severity_number: number as i32,
        severity_text: text.into(),
        body: body.map(str_value),
        attributes,
        event_name: event.into(),
        ..Default::default()
    }
}

fn resource(opts: &Options) -> Resource {
    let mut attributes = vec![kv(attr::SERVICE_NAME, hook::SERVICE)];
    if let Some(t) = opts.task_id.as_deref().filter(|t| !t.is_empty()) {
        attributes.push(kv(attr::TASK_ID, t));
    }
    Resource { attributes, ..Default::default() }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: hook::SCOPE.into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }
}

fn logs_request(opts: &Options, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(opts)),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn traces_request(opts: &Options, span: Span) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(opts)),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn str_value(s: &str) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s.to_string())) }
}

fn int_value(i: i64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::IntValue(i)) }
}

fn bool_value(b: bool) -> AnyValue {
    AnyValue { value: Some(any_value::Value::BoolValue(b)) }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(str_value(value)), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs_of(r: &LogRecord) -> std::collections::HashMap<String, AnyValue> {
        r.attributes.iter().map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect()
    }

    fn s(v: &AnyValue) -> &str {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => s,
            _ => "",
        }
    }

    fn record(t: &Translated) -> &LogRecord {
        &t.logs.resource_logs[0].scope_logs[0].log_records[0]
    }

    const PRE: &str = r#"{"session_id":"s1","prompt_id":"p1","cwd":"/w","hook_event_name":"PreToolUse",
        "tool_name":"Bash","tool_input":{"command":"ls"},"tool_use_id":"toolu_1"}"#;

    #[test]
    fn event_attributes_and_no_span_before_the_end() {
        let opts = Options { task_id: Some("T-1".into()), ..Options::default() };
        let t = translate(&parse(PRE.as_bytes()), &opts, 1_000, None);
        assert!(t.traces.is_none());
        let r = record(&t);
        assert_eq!(r.event_name, "PreToolUse");
        assert_eq!(r.severity_number, SeverityNumber::Info as i32);
        let a = attrs_of(r);
        for (k, v) in [
            (attr::SESSION_ID, "s1"),
            (attr::CONVERSATION_ID, "s1"),
            (attr::PROMPT_ID, "p1"),
            (attr::TOOL_USE_ID, "toolu_1"),
            (attr::TOOL_CALL_ID, "toolu_1"),
            (attr::TOOL_NAME, "Bash"),
            (attr::AGENT_NAME, hook::MAIN_AGENT),
            (attr::CWD, "/w"),
            (attr::SOURCE, source::CLAUDE_HOOK),
            (attr::HOOK_EVENT, "PreToolUse"),
        ] {
            assert_eq!(a.get(k).map(s), Some(v), "{k}");
        }
        assert!(!a.contains_key(attr::AGENT_ID));
        let payload: Value = serde_json::from_str(s(&a[attr::PAYLOAD])).expect("payload is JSON");
        assert_eq!(payload["tool_input"]["command"], "ls");
        let res = t.logs.resource_logs[0].resource.as_ref().expect("resource");
        let ra: Vec<(&str, &str)> =
            res.attributes.iter().map(|k| (k.key.as_str(), s(k.value.as_ref().expect("v")))).collect();
        assert_eq!(ra, vec![(attr::SERVICE_NAME, hook::SERVICE), (attr::TASK_ID, "T-1")]);
    }

    #[test]
    fn subagent_and_configured_agent_names() {
        let sub = r#"{"session_id":"s","hook_event_name":"SubagentStop","agent_id":"a-7","agent_type":"Explore"}"#;
        let opts = Options { agent_name: Some("reviewer".into()), ..Options::default() };
        let a = attrs_of(record(&translate(&parse(sub.as_bytes()), &opts, 1, None)));
        assert_eq!((s(&a[attr::AGENT_ID]), s(&a[attr::AGENT_NAME])), ("a-7", "Explore"));
        assert_eq!(s(&a[attr::AGENT_TYPE]), "Explore");
        let main = r#"{"session_id":"s","hook_event_name":"Stop"}"#;
        let a = attrs_of(record(&translate(&parse(main.as_bytes()), &opts, 1, None)));
        assert_eq!(s(&a[attr::AGENT_NAME]), "reviewer");
    }

    #[test]
    fn session_start_model_and_unknown_events() {
        let ss = r#"{"session_id":"s","hook_event_name":"SessionStart","model":"claude-opus-4-8"}"#;
        let a = attrs_of(record(&translate(&parse(ss.as_bytes()), &Options::default(), 1, None)));
        assert_eq!(s(&a[attr::MODEL]), "claude-opus-4-8");
        let other = r#"{"session_id":"s","hook_event_name":"SomethingNew","x":1}"#;
        let t = translate(&parse(other.as_bytes()), &Options::default(), 1, None);
        assert_eq!(record(&t).event_name, "SomethingNew");
    }

    #[test]
    fn tool_span_timing_ids_and_failure() {
        let post = r#"{"session_id":"s1","hook_event_name":"PostToolUse","tool_name":"Bash","tool_use_id":"toolu_1",
            "duration_ms":82}"#;
        let now = 10_000_000_000;
        let t = translate(&parse(post.as_bytes()), &Options::default(), now, Some(1));
        let span = &t.traces.as_ref().expect("span").resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "execute_tool Bash");
        assert_eq!(now - span.start_time_unix_nano, 82_000_000, "duration_ms wins over the saved start");
        assert_eq!(span.trace_id, trace_id("s1").to_vec());
        assert_eq!(span.span_id, span_id("toolu_1").to_vec());
        assert!(span.status.is_none());

        let fail = r#"{"session_id":"s1","hook_event_name":"PostToolUseFailure","tool_name":"Bash",
            "tool_use_id":"toolu_2","error":"exit 1"}"#;
        let t = translate(&parse(fail.as_bytes()), &Options::default(), now, Some(now - 5_000));
        assert_eq!(record(&t).severity_number, SeverityNumber::Error as i32);
        assert_eq!(record(&t).body, Some(str_value("exit 1")));
        let span = &t.traces.as_ref().expect("span").resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.start_time_unix_nano, now - 5_000, "saved PreToolUse start");
        assert_eq!(span.status.as_ref().map(|s| (s.code, s.message.as_str())), Some((2, "exit 1")));
        let a: Vec<_> = span.attributes.iter().map(|k| (k.key.as_str(), s(k.value.as_ref().expect("v")))).collect();
        assert!(a.contains(&(attr::ERROR_TYPE, hook::TOOL_ERROR)));
        assert!(a.contains(&(attr::OPERATION_NAME, "execute_tool")));

        let bare = r#"{"session_id":"s1","hook_event_name":"PostToolUse","tool_name":"X","tool_use_id":"t3"}"#;
        let t = translate(&parse(bare.as_bytes()), &Options::default(), now, None);
        let span = &t.traces.as_ref().expect("span").resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.start_time_unix_nano, span.end_time_unix_nano, "zero-length without any start");
    }

    #[test]
    fn minify_keeps_strings_and_order() {
        let raw = "{\n  \"b\": \"a  \\\" x\",\n  \"a\": [1, 2.50]\n}";
        assert_eq!(minify(raw), r#"{"b":"a  \" x","a":[1,2.50]}"#);
        let Input::Event(ev) = parse(raw.replace("\"b\"", "\"hook_event_name\"").as_bytes()) else { panic!("event") };
        assert_eq!(ev.compact, r#"{"hook_event_name":"a  \" x","a":[1,2.50]}"#);
    }

    #[test]
    fn ids_are_stable_distinct_and_never_zero() {
        assert_eq!(trace_id("abc"), trace_id("abc"));
        assert_ne!(trace_id("abc"), trace_id("abd"));
        assert_ne!(span_id("a"), span_id("b"));
        assert_ne!(trace_id(""), [0; 16]);
        assert_ne!(span_id(""), [0; 8]);
    }

    #[test]
    fn payload_truncated_on_a_char_boundary() {
        assert_eq!(truncate("héllo", 2), ("h", true));
        assert_eq!(truncate("héllo", 3), ("hé", true));
        assert_eq!(truncate("abc", 3), ("abc", false));
        let big = format!(r#"{{"session_id":"s","hook_event_name":"Stop","m":"{}"}}"#, "é".repeat(100));
        let opts = Options { max_payload_bytes: 51, ..Options::default() };
        let a = attrs_of(record(&translate(&parse(big.as_bytes()), &opts, 1, None)));
        assert!(s(&a[attr::PAYLOAD]).len() <= 51);
        assert_eq!(a[attr::PAYLOAD_TRUNCATED], bool_value(true));
    }

    #[test]
    fn malformed_input_is_an_error_event() {
        for bad in [&b"{not json"[..], b"[1,2]", b"{\"session_id\":\"s\"}", b"\xff\xfe"] {
            let t = translate(&parse(bad), &Options::default(), 1, None);
            let r = record(&t);
            assert_eq!(r.event_name, hook::MALFORMED);
            assert_eq!(r.severity_number, SeverityNumber::Error as i32);
            assert!(r.body.is_some());
            assert!(t.traces.is_none());
        }
    }
}
