//! Claude Code session transcripts (`~/.claude/projects/<project>/<session>.jsonl`, subagents in
//! `<session>/subagents/agent-<id>.jsonl` with an `agent-<id>.meta.json` next to them) -> the log
//! events Claude Code's own telemetry sends (`claude_code.user_prompt`, `claude_code.api_request`,
//! `claude_code.tool_result`), so an import takes the one ingest path and meets live data on the
//! same keys: a model call by its request id (the live `api_request.request_id`), a tool call by
//! its `tool_use_id`, a prompt by its `prompt.id`.
//!
//! Pure and streaming: `FileReader::line` takes one line at a time; memory is bounded by the
//! messages still streaming in one file (`MAX_PENDING`) and the open tool uses (`MAX_OPEN_TOOLS`).
//! What transcripts do that this handles:
//! - one assistant message is written once per content block while it streams (same
//!   `message.id` and `requestId`, usage repeated, output tokens growing): counted once, with
//!   the largest counts seen;
//! - a resumed or forked session copies earlier lines into a new file: the keys are the same, so
//!   the importer (`seen`) and the pipeline's `imports` stage count them once;
//! - cache writes come as `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`:
//!   both kept as attributes; the total is `cache_creation_input_tokens` (priced as cache writes).

use std::collections::{HashMap, VecDeque};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value as Json;

use agent_console_conventions::{attr, hook};

/// Instrumentation scope of imported records (the pipeline's `imports` stage keys on it).
pub const SCOPE: &str = "agent-console-import";
/// The item key an imported record carries (`call:<request id>`, `tool:<id>`, `prompt:<id>`).
pub const KEY_ATTR: &str = "agent_console.import.key";
/// What produced an imported record (resource attribute `agent_console.source`).
pub const SOURCE_VALUE: &str = "claude-code-transcript";
/// Messages still streaming in one file, tool uses waiting for their result.
pub const MAX_PENDING: usize = 10_000;
pub const MAX_OPEN_TOOLS: usize = 10_000;
/// Tool inputs, outputs and prompts are cut to this many bytes.
pub const MAX_TEXT: usize = 4096;

/// One event from a transcript, ready to become a log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `claude_code.user_prompt` | `claude_code.api_request` | `claude_code.tool_result`, and
    /// `Stop` where a transcript ends.
    pub event: &'static str,
    pub key: String,
    pub time_us: i64,
    pub session_id: String,
    pub attrs: Vec<(String, Attr)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    S(String),
    I(i64),
}

/// Which session a file belongs to: a subagent gets a session of its own, linked to its parent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subagent {
    pub agent_id: String,
    pub agent_type: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Usage {
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    write_5m: i64,
    write_1h: i64,
}

#[derive(Debug)]
struct Pending {
    time_us: i64,
    request_id: String,
    message_id: String,
    model: Option<String>,
    usage: Usage,
    common: Common,
}

#[derive(Debug, Clone, Default)]
struct Common {
    session_id: String,
    parent_session: Option<String>,
    agent_name: String,
    agent_id: Option<String>,
    cwd: Option<String>,
    branch: Option<String>,
    prompt_id: Option<String>,
}

/// Reads one transcript file line by line.
pub struct FileReader {
    sub: Option<Subagent>,
    pending: HashMap<String, Pending>,
    order: VecDeque<String>,
    tools: HashMap<String, (String, String, i64)>,
    tool_order: VecDeque<String>,
    /// The newest line's time and session: where the transcript ends.
    last: Option<(i64, Common)>,
    pub bad_lines: u64,
}

/// Microseconds since the epoch of an RFC 3339 UTC time (`2026-12-03T09:33:10.576Z`, offsets too).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    let day = crate::civil::parse_ymd(s.get(..10)?)?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut frac_us = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
        rest = &r[digits.len()..];
        let six: String = digits.chars().chain(std::iter::repeat('0')).take(6).collect();
        frac_us = six.parse().ok()?;
    }
    let offset_s = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let v = o.get(1..3)?.parse::<i64>().ok()? * 3600 + o.get(4..6)?.parse::<i64>().ok()? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    Some(((day * 86_400 + h * 3600 + m * 60 + sec - offset_s) * 1_000_000) + frac_us)
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn text_of(content: &Json) -> String {
    match content {
        Json::String(s) => s.clone(),
        Json::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Json::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

fn i(v: &Json, k: &str) -> i64 {
    v.get(k).and_then(Json::as_i64).unwrap_or(0)
}

impl FileReader {
    pub fn new(sub: Option<Subagent>) -> Self {
        Self {
            sub,
            pending: HashMap::new(),
            order: VecDeque::new(),
            tools: HashMap::new(),
            tool_order: VecDeque::new(),
            last: None,
            bad_lines: 0,
        }
    }

    fn common(&self, v: &Json) -> Option<Common> {
        let sid = v.get("sessionId").and_then(Json::as_str)?.to_string();
        let agent_id = v.get("agentId").and_then(Json::as_str).map(str::to_string);
        let side = v.get("isSidechain").and_then(Json::as_bool).unwrap_or(false);
        let sub = match (&self.sub, agent_id) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(id)) if side => Some(Subagent { agent_id: id, agent_type: None }),
            _ => None,
        };
        let (session_id, parent_session, agent_name, agent_id) = match sub {
            Some(s) => {
                let name = s
                    .agent_type
                    .clone()
                    .or_else(|| v.get("attributionAgent").and_then(Json::as_str).map(str::to_string))
                    .unwrap_or_else(|| "subagent".into());
                (format!("{sid}/agent-{}", s.agent_id), Some(sid), name, Some(s.agent_id))
            }
            None => (sid, None, hook::MAIN_AGENT.to_string(), None),
        };
        Some(Common {
            session_id,
            parent_session,
            agent_name,
            agent_id,
            cwd: v.get("cwd").and_then(Json::as_str).map(str::to_string),
            branch: v.get("gitBranch").and_then(Json::as_str).filter(|b| !b.is_empty()).map(str::to_string),
            prompt_id: v.get("promptId").and_then(Json::as_str).map(str::to_string),
        })
    }

    /// Take one line; finished items are pushed to `out`.
    pub fn line(&mut self, line: &str, out: &mut Vec<Item>) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Json>(line) else {
            self.bad_lines += 1;
            return;
        };
        let Some(ty) = v.get("type").and_then(Json::as_str) else { return };
        let Some(time_us) = v.get("timestamp").and_then(Json::as_str).and_then(parse_time) else { return };
        let Some(common) = self.common(&v) else { return };
        let Some(msg) = v.get("message") else { return };
        if self.last.as_ref().is_none_or(|(t, _)| time_us >= *t) {
            self.last = Some((time_us, common.clone()));
        }
        match ty {
            "assistant" => self.assistant(&v, msg, time_us, common, out),
            "user" => self.user(&v, msg, time_us, common, out),
            _ => {}
        }
    }

    fn assistant(&mut self, v: &Json, msg: &Json, time_us: i64, common: Common, out: &mut Vec<Item>) {
        let model = msg.get("model").and_then(Json::as_str).map(str::to_string);
        if model.as_deref() == Some("<synthetic>") || v.get("isApiErrorMessage").and_then(Json::as_bool) == Some(true) {
            return;
        }
        if let Some(blocks) = msg.get("content").and_then(Json::as_array) {
            for b in blocks.iter().filter(|b| b.get("type").and_then(Json::as_str) == Some("tool_use")) {
                let (Some(id), Some(name)) = (b.get("id").and_then(Json::as_str), b.get("name").and_then(Json::as_str))
                else {
                    continue;
                };
                let input = b.get("input").map(|i| cut(&i.to_string())).unwrap_or_default();
                if self.tools.insert(id.to_string(), (name.to_string(), input, time_us)).is_none() {
                    self.tool_order.push_back(id.to_string());
                    while self.tool_order.len() > MAX_OPEN_TOOLS {
                        if let Some(old) = self.tool_order.pop_front() {
                            self.tools.remove(&old);
                        }
                    }
                }
            }
        }
        let Some(usage) = msg.get("usage") else { return };
        let message_id = msg.get("id").and_then(Json::as_str).unwrap_or_default().to_string();
        let request_id =
            v.get("requestId").and_then(Json::as_str).map(str::to_string).unwrap_or_else(|| message_id.clone());
        if request_id.is_empty() {
            return;
        }
        let cc = usage.get("cache_creation").cloned().unwrap_or(Json::Null);
        let u = Usage {
            input: i(usage, "input_tokens"),
            output: i(usage, "output_tokens"),
            cache_read: i(usage, "cache_read_input_tokens"),
            cache_write: i(usage, "cache_creation_input_tokens"),
            write_5m: i(&cc, "ephemeral_5m_input_tokens"),
            write_1h: i(&cc, "ephemeral_1h_input_tokens"),
        };
        match self.pending.get_mut(&request_id) {
            Some(p) => {
                // The same message written again while streaming: the largest counts win.
                p.usage.input = p.usage.input.max(u.input);
                p.usage.output = p.usage.output.max(u.output);
                p.usage.cache_read = p.usage.cache_read.max(u.cache_read);
                p.usage.cache_write = p.usage.cache_write.max(u.cache_write);
                p.usage.write_5m = p.usage.write_5m.max(u.write_5m);
                p.usage.write_1h = p.usage.write_1h.max(u.write_1h);
            }
            None => {
                self.pending.insert(
                    request_id.clone(),
                    Pending { time_us, request_id: request_id.clone(), message_id, model, usage: u, common },
                );
                self.order.push_back(request_id);
                while self.order.len() > MAX_PENDING {
                    if let Some(old) = self.order.pop_front() {
                        if let Some(p) = self.pending.remove(&old) {
                            out.push(call_item(p));
                        }
                    }
                }
            }
        }
    }

    fn user(&mut self, v: &Json, msg: &Json, time_us: i64, common: Common, out: &mut Vec<Item>) {
        let content = msg.get("content").unwrap_or(&Json::Null);
        let results: Vec<&Json> = content
            .as_array()
            .map(|a| a.iter().filter(|b| b.get("type").and_then(Json::as_str) == Some("tool_result")).collect())
            .unwrap_or_default();
        if results.is_empty() {
            let meta = v.get("isMeta").and_then(Json::as_bool).unwrap_or(false)
                || v.get("isCompactSummary").and_then(Json::as_bool).unwrap_or(false);
            let text = text_of(content);
            if meta || text.is_empty() {
                return;
            }
            let Some(prompt_id) = common.prompt_id.clone() else { return };
            let uuid = v.get("uuid").and_then(Json::as_str).unwrap_or_default().to_string();
            let mut attrs = base_attrs(&common);
            attrs.push((attr::PROMPT_ID.into(), Attr::S(prompt_id.clone())));
            attrs.push(("prompt".into(), Attr::S(cut(&text))));
            attrs.push(("prompt_length".into(), Attr::I(text.len() as i64)));
            attrs.push(("message.uuid".into(), Attr::S(uuid)));
            out.push(Item {
                event: "claude_code.user_prompt",
                key: format!("prompt:{prompt_id}"),
                time_us,
                session_id: common.session_id.clone(),
                attrs,
            });
            return;
        }
        for r in results {
            let Some(id) = r.get("tool_use_id").and_then(Json::as_str) else { continue };
            let (name, input, started) =
                self.tools.remove(id).unwrap_or_else(|| ("unknown".into(), String::new(), time_us));
            let is_error = r.get("is_error").and_then(Json::as_bool).unwrap_or(false);
            let output = text_of(r.get("content").unwrap_or(&Json::Null));
            let mut attrs = base_attrs(&common);
            attrs.push(("tool_name".into(), Attr::S(name)));
            attrs.push((attr::TOOL_USE_ID.into(), Attr::S(id.to_string())));
            attrs.push(("success".into(), Attr::S((!is_error).to_string())));
            attrs.push(("duration_ms".into(), Attr::I((time_us - started).max(0) / 1000)));
            if !input.is_empty() {
                attrs.push(("tool_input".into(), Attr::S(input)));
            }
            attrs.push(("tool_output".into(), Attr::S(cut(&output))));
            if is_error {
                attrs.push(("error".into(), Attr::S(cut(&output))));
            }
            if let Some(p) = &common.prompt_id {
                attrs.push((attr::PROMPT_ID.into(), Attr::S(p.clone())));
            }
            out.push(Item {
                event: "claude_code.tool_result",
                key: format!("tool:{id}"),
                time_us,
                session_id: common.session_id.clone(),
                attrs,
            });
        }
    }

    /// End of file: the messages still pending are complete, and the session ends where its
    /// transcript does (a `Stop` record, so the session tracker shows it finished, not running).
    pub fn finish(mut self, out: &mut Vec<Item>) {
        while let Some(k) = self.order.pop_front() {
            if let Some(p) = self.pending.remove(&k) {
                out.push(call_item(p));
            }
        }
        if let Some((time_us, c)) = self.last.take() {
            out.push(Item {
                event: hook::STOP,
                key: format!("end:{}@{time_us}", c.session_id),
                time_us,
                session_id: c.session_id.clone(),
                attrs: base_attrs(&c),
            });
        }
    }
}

fn base_attrs(c: &Common) -> Vec<(String, Attr)> {
    let mut a = vec![
        (attr::SESSION_ID.to_string(), Attr::S(c.session_id.clone())),
        (attr::AGENT_NAME.to_string(), Attr::S(c.agent_name.clone())),
    ];
    if let Some(id) = &c.agent_id {
        a.push((attr::AGENT_ID.into(), Attr::S(id.clone())));
    }
    if let Some(p) = &c.parent_session {
        a.push((attr::PARENT_SESSION_ID.into(), Attr::S(p.clone())));
    }
    if let Some(cwd) = &c.cwd {
        a.push((attr::CWD.into(), Attr::S(cwd.clone())));
    }
    if let Some(b) = &c.branch {
        a.push(("git.branch".into(), Attr::S(b.clone())));
    }
    a
}

fn call_item(p: Pending) -> Item {
    let mut attrs = base_attrs(&p.common);
    if let Some(m) = p.model {
        attrs.push(("model".into(), Attr::S(m)));
    }
    if let Some(pid) = &p.common.prompt_id {
        attrs.push((attr::PROMPT_ID.into(), Attr::S(pid.clone())));
    }
    let u = p.usage;
    attrs.extend([
        ("request_id".to_string(), Attr::S(p.request_id.clone())),
        ("message.id".to_string(), Attr::S(p.message_id)),
        ("input_tokens".to_string(), Attr::I(u.input)),
        ("output_tokens".to_string(), Attr::I(u.output)),
        ("cache_read_tokens".to_string(), Attr::I(u.cache_read)),
        ("cache_creation_tokens".to_string(), Attr::I(u.cache_write)),
        ("cache_creation.ephemeral_5m_input_tokens".to_string(), Attr::I(u.write_5m)),
        ("cache_creation.ephemeral_1h_input_tokens".to_string(), Attr::I(u.write_1h)),
    ]);
    Item {
        event: "claude_code.api_request",
        key: format!("call:{}", p.request_id),
        time_us: p.time_us,
        session_id: p.common.session_id,
        attrs,
    }
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// One OTLP logs export of `items` (Claude Code's resource and event shape, our scope).
pub fn to_otlp(items: &[Item]) -> ExportLogsServiceRequest {
    let records = items
        .iter()
        .map(|it| {
            let mut attributes: Vec<KeyValue> = it
                .attrs
                .iter()
                .map(|(k, v)| {
                    kv(
                        k,
                        match v {
                            Attr::S(s) => Value::StringValue(s.clone()),
                            Attr::I(n) => Value::IntValue(*n),
                        },
                    )
                })
                .collect();
            attributes.push(kv("event.name", Value::StringValue(it.event.trim_start_matches("claude_code.").into())));
            attributes.push(kv(KEY_ATTR, Value::StringValue(it.key.clone())));
            let ns = u64::try_from(it.time_us).unwrap_or(0).saturating_mul(1000);
            LogRecord {
                time_unix_nano: ns,
                observed_time_unix_nano: ns,
                event_name: it.event.to_string(),
                body: Some(AnyValue { value: Some(Value::StringValue(it.event.to_string())) }),
                attributes,
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv(attr::SERVICE_NAME, Value::StringValue(hook::SERVICE.into())),
                    kv(attr::SOURCE, Value::StringValue(SOURCE_VALUE.into())),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: SCOPE.into(), ..Default::default() }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(it: &'a Item, k: &str) -> Option<&'a Attr> {
        it.attrs.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }

    const A1: &str = r#"{"isSidechain":false,"requestId":"req_1","type":"assistant","uuid":"u2","timestamp":"2026-12-03T09:33:10.635Z","sessionId":"s1","cwd":"/w","gitBranch":"main","promptId":"p1","message":{"id":"msg_1","model":"claude-opus-4-8","content":[{"type":"text","text":"Running"}],"usage":{"input_tokens":2100,"cache_creation_input_tokens":300,"cache_read_input_tokens":1800,"output_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":100}}}}"#;
    const A2: &str = r#"{"isSidechain":false,"requestId":"req_1","type":"assistant","uuid":"u3","timestamp":"2026-12-03T09:33:10.638Z","sessionId":"s1","cwd":"/w","gitBranch":"main","message":{"id":"msg_1","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo hi"}}],"usage":{"input_tokens":2100,"cache_creation_input_tokens":300,"cache_read_input_tokens":1800,"output_tokens":64,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":100}}}}"#;
    const U1: &str = r#"{"parentUuid":null,"isSidechain":false,"promptId":"p1","type":"user","message":{"role":"user","content":"Run it"},"uuid":"u1","timestamp":"2026-12-03T09:33:10.576Z","cwd":"/w","sessionId":"s1","gitBranch":"main"}"#;
    const R1: &str = r#"{"isSidechain":false,"promptId":"p1","type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"boom","is_error":true}]},"uuid":"u4","timestamp":"2026-12-03T09:33:10.745Z","sessionId":"s1"}"#;
    const SUB: &str = r#"{"isSidechain":true,"agentId":"abc","requestId":"req_9","attributionAgent":"general-purpose","type":"assistant","uuid":"x","timestamp":"2026-12-03T09:33:14.571Z","sessionId":"s2","message":{"id":"msg_9","model":"claude-opus-4-8","content":[],"usage":{"input_tokens":10,"output_tokens":2}}}"#;
    const SYNTH: &str = r#"{"type":"assistant","timestamp":"2026-12-03T09:33:14.571Z","sessionId":"s2","isApiErrorMessage":true,"message":{"id":"m","model":"<synthetic>","content":[],"usage":{"input_tokens":0,"output_tokens":0}}}"#;

    fn read(sub: Option<Subagent>, lines: &[&str]) -> Vec<Item> {
        let mut r = FileReader::new(sub);
        let mut out = Vec::new();
        for l in lines {
            r.line(l, &mut out);
        }
        r.finish(&mut out);
        out
    }

    #[test]
    fn table() {
        // (lines, expected (event, key, session) in order)
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str, &'a str)]);
        let cases: &[Case] = &[
            (&[U1], &[("claude_code.user_prompt", "prompt:p1", "s1")]),
            // streamed twice: one call
            (&[A1, A2], &[("claude_code.api_request", "call:req_1", "s1")]),
            (
                &[U1, A1, A2, R1],
                &[
                    ("claude_code.user_prompt", "prompt:p1", "s1"),
                    ("claude_code.tool_result", "tool:toolu_1", "s1"),
                    ("claude_code.api_request", "call:req_1", "s1"),
                ],
            ),
            (&[SUB], &[("claude_code.api_request", "call:req_9", "s2/agent-abc")]),
            (&[SYNTH, "not json", "", r#"{"type":"mode"}"#], &[]),
        ];
        for (lines, want) in cases {
            let got = read(None, lines);
            let got: Vec<(&str, &str, &str)> = got
                .iter()
                .filter(|i| i.event != hook::STOP)
                .map(|i| (i.event, i.key.as_str(), i.session_id.as_str()))
                .collect();
            assert_eq!(&got, want, "{lines:?}");
        }
    }

    #[test]
    fn streamed_message_takes_largest_usage_and_both_cache_kinds() {
        let items = read(None, &[A1, A2]);
        let c = &items[0];
        assert_eq!(get(c, "output_tokens"), Some(&Attr::I(64)));
        assert_eq!(get(c, "input_tokens"), Some(&Attr::I(2100)));
        assert_eq!(get(c, "cache_creation_tokens"), Some(&Attr::I(300)));
        assert_eq!(get(c, "cache_creation.ephemeral_5m_input_tokens"), Some(&Attr::I(200)));
        assert_eq!(get(c, "cache_creation.ephemeral_1h_input_tokens"), Some(&Attr::I(100)));
        assert_eq!(get(c, "git.branch"), Some(&Attr::S("main".into())));
        assert_eq!(get(c, attr::CWD), Some(&Attr::S("/w".into())));
        assert_eq!(c.time_us, parse_time("2026-12-03T09:33:10.635Z").unwrap());
    }

    #[test]
    fn tool_result_error_input_and_duration() {
        let items = read(None, &[A1, A2, R1]);
        let t = items.iter().find(|i| i.event == "claude_code.tool_result").unwrap();
        assert_eq!(get(t, "tool_name"), Some(&Attr::S("Bash".into())));
        assert_eq!(get(t, "success"), Some(&Attr::S("false".into())));
        assert_eq!(get(t, "error"), Some(&Attr::S("boom".into())));
        assert_eq!(get(t, "tool_input"), Some(&Attr::S(r#"{"command":"echo hi"}"#.into())));
        assert_eq!(get(t, "duration_ms"), Some(&Attr::I(107)));
    }

    #[test]
    fn subagent_file_links_parent_and_names_agent() {
        let items = read(Some(Subagent { agent_id: "abc".into(), agent_type: Some("Explore".into()) }), &[SUB]);
        let c = &items[0];
        assert_eq!(get(c, attr::PARENT_SESSION_ID), Some(&Attr::S("s2".into())));
        assert_eq!(get(c, attr::AGENT_NAME), Some(&Attr::S("Explore".into())));
        assert_eq!(get(c, attr::AGENT_ID), Some(&Attr::S("abc".into())));
    }

    #[test]
    fn transcript_end_is_a_stop_at_the_newest_line() {
        let items = read(None, &[U1, A1, A2, R1]);
        let end = items.last().expect("items");
        assert_eq!(end.event, "Stop");
        assert_eq!(end.time_us, parse_time("2026-12-03T09:33:10.745Z").unwrap());
        assert_eq!(end.key, format!("end:s1@{}", end.time_us));
        assert!(read(None, &["", "not json"]).is_empty());
    }

    #[test]
    fn times() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:01.5Z", Some(1_500_000)),
            ("2026-12-03T09:33:10.576Z", Some(1_796_290_390_576_000)),
            ("1970-01-01T01:00:00+01:00", Some(0)),
            ("nope", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s), want, "{s}");
        }
    }
}
