//! OpenClaw: the shim's call records and the `diagnostics-otel` plugin's usage spans as model
//! calls, and the rule that counts a call once when both report it.
//!
//! What one row is (`model_calls`, OpenClaw sessions):
//! - `agent-console-openclaw` sends one `openclaw.model_call` log record per model call the gateway
//!   served (an assistant `session.message` with usage). It becomes one row, `operation = 'chat'`,
//!   `request_id` = the gateway message id, `run_id` = the OpenClaw run it belongs to (a steered
//!   run has two rows with one run id; a killed call that was never served has none).
//! - `openclaw.usage.reconcile`: calls served while the shim was not listening, as
//!   `sessions.usage` counted them minus what the shim had counted: one row with the difference,
//!   `operation = 'openclaw.reconcile'`, no run id.
//! - Run ends are `openclaw.session.status` log records with the run id and the usage the run
//!   really had (`openclaw.run.*` attributes), never model calls.
//! - Legacy: shims before per-call counting sent one `openclaw.run` record per finished run (the
//!   row's values); it is still one row, `operation = 'openclaw.run'`.
//! - The plugin sends one `openclaw.model.usage` span per model call (`openclaw.tokens.*`, no cost,
//!   and in 2026.9.x no session key). It becomes one model-call row (`operation = 'chat'`), priced
//!   from the price table. Its cumulative metrics stay metric points (`metric_increments`).
//! - Counted once (`RunDedup`, run by the writer's `Deduper`): while a shim is reporting (a shim
//!   record seen within `SHIM_WINDOW_US` before the span), plugin usage spans are kept as spans but
//!   not as model calls: the shim's run rows already hold those calls' tokens and the gateway's
//!   own cost, with session, agent and parent. A run id already counted is not counted again (a
//!   shim retry after a lost acknowledgement). Plugin spans that carry a session key are also
//!   caught by the generic same-session same-usage rule in `dedup.rs`, whatever the order.

use std::collections::VecDeque;

use super::fastmap::{FastMap, FastSet};

use super::view::{AnyValue, KeyValue};
use agent_console_conventions::{attr, openclaw as oc};

use super::attrs::{self, AttrIndex};
use super::normalize::{canonical_provider, pick_model, provider_from_model};
use super::records::{Batch, Context, Id, LogRow, ModelCallRow};
use super::semconv as k;

/// How long after a shim record plugin usage spans are left to the shim (6 h).
pub const SHIM_WINDOW_US: i64 = 6 * 3600 * 1_000_000;

/// Is this span the plugin's per-call usage span?
pub fn is_plugin_usage(span_name: &str) -> bool {
    span_name == oc::plugin::USAGE_SPAN
}

/// Is this log row written by the shim?
pub fn is_shim_record(l: &LogRow) -> bool {
    l.scope_name.as_deref() == Some(oc::SCOPE)
        && matches!(
            l.event_name.as_deref(),
            Some(oc::STATUS_EVENT) | Some(oc::RUN_EVENT) | Some(oc::CALL_EVENT) | Some(oc::RECONCILE_EVENT)
        )
}

/// The dedup key of a shim call or reconcile row (message id / reconcile id).
pub fn shim_call_key(c: &ModelCallRow) -> Option<&str> {
    let op = c.operation.as_deref()?;
    (c.source == "log" && (op == "chat" || op == oc::RECONCILE_OPERATION) && c.token_rule == SHIM_RULE)
        .then_some(c.request_id.as_deref())?
}

/// `token_rule` of shim call rows (input already includes the cache, as the OTel convention).
pub const SHIM_RULE: &str = "openclaw_shim";

/// The shim's run id of a model-call row, when the row is a shim run record.
pub fn shim_run_id(c: &ModelCallRow) -> Option<&str> {
    (c.source == "log" && c.operation.as_deref() == Some(oc::RUN_OPERATION)).then_some(c.ctx.run_id.as_deref())?
}

fn find<'a>(kvs: &'a [KeyValue<'a>], key: &str) -> Option<&'a AnyValue<'a>> {
    kvs.iter().rev().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

fn find_str<'a>(kvs: &'a [KeyValue<'a>], key: &str) -> Option<&'a str> {
    find(kvs, key).and_then(attrs::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn find_i64(kvs: &[KeyValue], key: &str) -> Option<i64> {
    find(kvs, key).and_then(attrs::as_i64)
}

/// Session of a plugin span: `openclaw.sessionKey` (older plugins) replaces the trace fallback.
pub fn plugin_context(kvs: &[KeyValue], ctx: &mut Context) {
    if let Some(key) = find_str(kvs, oc::plugin::SESSION_KEY) {
        ctx.session_id = Some(key.into());
        ctx.session_fallback = false;
    }
}

/// Model named by a plugin span.
pub fn plugin_model(kvs: &[KeyValue], idx: &AttrIndex) -> Option<String> {
    find_str(kvs, oc::plugin::MODEL).map(str::to_string).or_else(|| pick_model(idx))
}

/// One span's identity and timing, for `plugin_usage_call`.
pub struct SpanFacts<'a> {
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub parent_span_id: Option<&'a Id>,
    pub end_us: i64,
    pub duration_ms: f64,
    pub error: bool,
}

/// A plugin `openclaw.model.usage` span as a model call. `openclaw.tokens.input` is the uncached
/// input (cache read/write beside it), so the cache is added to follow the OTel convention;
/// without `openclaw.tokens.*` the `gen_ai.usage.*` attributes are read as usual.
pub fn plugin_usage_call(kvs: &[KeyValue], idx: &AttrIndex, span: SpanFacts, ctx: &Context) -> ModelCallRow {
    let model = plugin_model(kvs, idx);
    let provider = find_str(kvs, oc::plugin::PROVIDER)
        .map(canonical_provider)
        .or_else(|| idx.first_str(k::PROVIDER).map(|(_, v)| canonical_provider(v)))
        .or_else(|| model.as_deref().and_then(provider_from_model).map(str::to_string));
    let oc_input = find_i64(kvs, oc::plugin::TOKENS_INPUT);
    let cache_read =
        find_i64(kvs, oc::plugin::TOKENS_CACHE_READ).or_else(|| idx.first_i64(k::CACHE_READ_TOKENS).map(|v| v.1));
    let cache_write =
        find_i64(kvs, oc::plugin::TOKENS_CACHE_WRITE).or_else(|| idx.first_i64(k::CACHE_WRITE_TOKENS).map(|v| v.1));
    let cache = cache_read.unwrap_or(0) + cache_write.unwrap_or(0);
    let (input, rule) = match oc_input {
        Some(i) if cache > 0 => (Some(i + cache), "cache_added"),
        Some(i) => (Some(i), "otel"),
        None => (idx.i64(attr::INPUT_TOKENS), "otel"),
    };
    let output = find_i64(kvs, oc::plugin::TOKENS_OUTPUT).or_else(|| idx.i64(attr::OUTPUT_TOKENS));
    let cost = idx.first_f64(k::COST_USD).filter(|c| *c >= 0.0);
    ModelCallRow {
        time_us: span.end_us,
        source: "span",
        trace_id: Some(Id::new(span.trace_id)),
        span_id: Some(Id::new(span.span_id)),
        parent_span_id: span.parent_span_id.cloned(),
        request_id: None,
        model,
        provider,
        operation: Some("chat".into()),
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        cost_usd: cost,
        cost_source: cost.map(|_| "reported"),
        duration_ms: Some(span.duration_ms),
        error: span.error,
        token_rule: rule,
        ctx: ctx.clone(),
    }
}

/// A shim `openclaw.run` log record as one model-call row: the run's totals, the gateway's
/// `estimatedCostUsd` as the reported cost (it wins over the price table), run id as `run_id`.
pub fn shim_run_call(
    idx: &AttrIndex,
    time_us: i64,
    trace_id: &Option<Id>,
    span_id: &Option<Id>,
    ctx: &Context,
) -> ModelCallRow {
    let model = pick_model(idx);
    let provider = idx
        .first_str(k::PROVIDER)
        .map(|(_, v)| canonical_provider(v))
        .or_else(|| model.as_deref().and_then(provider_from_model).map(str::to_string));
    let cost = idx.first_f64(k::COST_USD).filter(|c| *c >= 0.0);
    ModelCallRow {
        time_us,
        source: "log",
        trace_id: trace_id.clone(),
        span_id: span_id.clone(),
        parent_span_id: None,
        request_id: None,
        model,
        provider,
        operation: Some(oc::RUN_OPERATION.into()),
        input_tokens: idx.i64(attr::INPUT_TOKENS),
        output_tokens: idx.i64(attr::OUTPUT_TOKENS),
        cache_read_tokens: idx.i64(attr::CACHE_READ_TOKENS),
        cache_write_tokens: idx.i64(attr::CACHE_WRITE_TOKENS),
        cost_usd: cost,
        cost_source: cost.map(|_| "reported"),
        duration_ms: None,
        error: false,
        token_rule: "otel",
        ctx: ctx.clone(),
    }
}

/// A shim `openclaw.model_call` (or `openclaw.usage.reconcile`) record as one model-call row:
/// the call's tokens (input includes the cache), the gateway's cost as the reported cost,
/// `request_id` = the message id (reconcile id), `run_id` from the record.
pub fn shim_call(
    idx: &AttrIndex,
    time_us: i64,
    trace_id: &Option<Id>,
    span_id: &Option<Id>,
    ctx: &Context,
    reconcile: bool,
) -> ModelCallRow {
    let mut row = shim_run_call(idx, time_us, trace_id, span_id, ctx);
    row.operation = Some(if reconcile { oc::RECONCILE_OPERATION.into() } else { "chat".into() });
    row.request_id = idx.str(if reconcile { oc::RECONCILE_ID_ATTR } else { oc::MESSAGE_ID_ATTR }).map(str::to_string);
    row.token_rule = SHIM_RULE;
    if reconcile {
        row.ctx.run_id = None;
    }
    row
}

/// Usage stored for one OpenClaw session by the shim's rows (input includes the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionTotals {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub cost: f64,
}

impl SessionTotals {
    fn of(c: &ModelCallRow) -> Self {
        Self {
            input: c.input_tokens.unwrap_or(0),
            output: c.output_tokens.unwrap_or(0),
            cache_read: c.cache_read_tokens.unwrap_or(0),
            cache_write: c.cache_write_tokens.unwrap_or(0),
            cost: c.cost_usd.unwrap_or(0.0),
        }
    }

    fn add(&mut self, o: &Self) {
        self.input = self.input.saturating_add(o.input);
        self.output = self.output.saturating_add(o.output);
        self.cache_read = self.cache_read.saturating_add(o.cache_read);
        self.cache_write = self.cache_write.saturating_add(o.cache_write);
        self.cost += o.cost;
    }

    /// The gateway's cumulative `gateway` minus what is stored, never negative.
    fn missing(gateway: &Self, have: &Self) -> Self {
        let cost = gateway.cost - have.cost;
        Self {
            input: (gateway.input - have.input).max(0),
            output: (gateway.output - have.output).max(0),
            cache_read: (gateway.cache_read - have.cache_read).max(0),
            cache_write: (gateway.cache_write - have.cache_write).max(0),
            cost: if cost > 1e-9 { cost } else { 0.0 },
        }
    }

    fn is_zero(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cache_read == 0 && self.cache_write == 0
    }

    /// The `openclaw.session.total.*` attributes of a reconcile log record.
    fn from_attributes(json: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let int = |k: &str| v.get(k).and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())));
        Some(Self {
            input: int(oc::SESSION_TOTAL_INPUT_TOKENS)?,
            output: int(oc::SESSION_TOTAL_OUTPUT_TOKENS).unwrap_or(0),
            cache_read: int(oc::SESSION_TOTAL_CACHE_READ_TOKENS).unwrap_or(0),
            cache_write: int(oc::SESSION_TOTAL_CACHE_WRITE_TOKENS).unwrap_or(0),
            cost: v.get(oc::SESSION_TOTAL_COST_USD).and_then(serde_json::Value::as_f64).unwrap_or(0.0),
        })
    }
}

/// The writer-side memory for counting OpenClaw runs once (see the module doc).
pub struct RunDedup {
    shim_last_us: Option<i64>,
    runs: FastSet<String>,
    order: VecDeque<String>,
    cap: usize,
    /// What the shim's rows stored per session (restored from the store at start), so a reconcile
    /// record counts only what the store is missing, whatever the shim's own ledger remembers.
    totals: FastMap<String, SessionTotals>,
    totals_order: VecDeque<String>,
    /// Reconcile id -> the gateway's cumulative session usage, from this batch's log records.
    gateway_totals: FastMap<String, SessionTotals>,
}

impl RunDedup {
    pub fn new(cap: usize) -> Self {
        Self {
            shim_last_us: None,
            runs: FastSet::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            totals: FastMap::default(),
            totals_order: VecDeque::new(),
            gateway_totals: FastMap::default(),
        }
    }

    /// Seed the per-session totals with what the store holds (`pipeline::openclaw_runs`).
    pub fn restore_totals(&mut self, totals: impl IntoIterator<Item = (String, SessionTotals)>) {
        for (session, t) in totals {
            self.add_totals(&session, &t);
        }
    }

    fn add_totals(&mut self, session: &str, t: &SessionTotals) {
        if let Some(have) = self.totals.get_mut(session) {
            have.add(t);
            return;
        }
        self.totals.insert(session.to_string(), *t);
        self.totals_order.push_back(session.to_string());
        while self.totals_order.len() > self.cap {
            if let Some(old) = self.totals_order.pop_front() {
                self.totals.remove(&old);
            }
        }
    }

    /// Seed with what the store holds (after a restart): keys already counted (shim run ids and
    /// `msg:<message id>` of shim calls), oldest first, and the time of the newest shim record
    /// (`pipeline::openclaw_runs`).
    pub fn restore(&mut self, keys: impl IntoIterator<Item = String>, shim_last_us: Option<i64>) {
        for key in keys {
            if !self.runs.contains(&key) {
                self.remember(key);
            }
        }
        if let Some(t) = shim_last_us {
            self.shim_last_us = Some(self.shim_last_us.map_or(t, |s| s.max(t)));
        }
    }

    fn remember(&mut self, key: String) {
        self.runs.insert(key.clone());
        self.order.push_back(key);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.runs.remove(&old);
            }
        }
    }

    /// Note shim activity in `batch`; returns the (trace, span) keys of its plugin usage spans.
    pub fn note_batch(&mut self, batch: &Batch) -> FastSet<(Id, Id)> {
        self.gateway_totals.clear();
        for l in batch.logs.iter().filter(|l| is_shim_record(l)) {
            self.shim_last_us = Some(self.shim_last_us.map_or(l.time_us, |t| t.max(l.time_us)));
            if l.event_name.as_deref() == Some(oc::RECONCILE_EVENT) {
                let v: Option<serde_json::Value> = serde_json::from_str(&l.attributes).ok();
                let id = v.as_ref().and_then(|v| v.get(oc::RECONCILE_ID_ATTR)).and_then(serde_json::Value::as_str);
                if let (Some(id), Some(t)) = (id, SessionTotals::from_attributes(&l.attributes)) {
                    self.gateway_totals.insert(id.to_string(), t);
                }
            }
        }
        batch
            .spans
            .iter()
            .filter(|s| is_plugin_usage(&s.name))
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect()
    }

    /// Whether `c` is an OpenClaw call already counted; remembers shim run ids it lets through.
    pub fn drop_call(&mut self, c: &mut ModelCallRow, plugin_spans: &FastSet<(Id, Id)>) -> bool {
        // A call (message id) or reconcile record the shim re-sent after a lost ack.
        if let Some(id) = shim_call_key(c).map(str::to_string) {
            let key = format!("msg:{id}");
            if self.runs.contains(&key) {
                return true;
            }
            self.remember(key);
            let session = c.ctx.session_id.as_deref().unwrap_or_default().to_string();
            if c.operation.as_deref() == Some(oc::RECONCILE_OPERATION) {
                // Count only what the store is missing for the session: a shim whose ledger was
                // lost (corrupt state file) reconciles from zero and would count it all again.
                if let Some(g) = self.gateway_totals.get(&id) {
                    let have = self.totals.get(&session).copied().unwrap_or_default();
                    let missing = SessionTotals::missing(g, &have);
                    if missing.is_zero() {
                        return true;
                    }
                    c.input_tokens = Some(missing.input);
                    c.output_tokens = Some(missing.output);
                    c.cache_read_tokens = Some(missing.cache_read);
                    c.cache_write_tokens = Some(missing.cache_write);
                    c.cost_usd = Some(missing.cost);
                    c.cost_source = Some("reported");
                }
            }
            self.add_totals(&session, &SessionTotals::of(c));
            return false;
        }
        if let Some(run) = shim_run_id(c) {
            if self.runs.contains(run) {
                return true;
            }
            self.remember(run.to_string());
            return false;
        }
        if c.source != "span" {
            return false;
        }
        let (Some(t), Some(s)) = (&c.trace_id, &c.span_id) else { return false };
        if !plugin_spans.contains(&(t.clone(), s.clone())) {
            return false;
        }
        self.shim_last_us.is_some_and(|shim| c.time_us >= shim - SHIM_WINDOW_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(key: &str, v: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }
    fn s(key: &str, v: &str) -> KeyValue {
        kv(key, Value::StringValue(v.into()))
    }
    fn i(key: &str, v: i64) -> KeyValue {
        kv(key, Value::IntValue(v))
    }

    pub fn plugin_trace(span_id: u8, end_s: u64, attrs: Vec<KeyValue>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![s("service.name", "openclaw-gateway")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "openclaw".into(), ..Default::default() }),
                    spans: vec![Span {
                        trace_id: vec![7; 16],
                        span_id: vec![span_id; 8],
                        name: oc::plugin::USAGE_SPAN.into(),
                        start_time_unix_nano: (end_s - 1) * 1_000_000_000,
                        end_time_unix_nano: end_s * 1_000_000_000,
                        attributes: attrs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn shim_run(run: &str, end_s: u64, tokens: (i64, i64), cost: f64) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![s("service.name", oc::SERVICE)], ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope { name: oc::SCOPE.into(), ..Default::default() }),
                    log_records: vec![LogRecord {
                        time_unix_nano: end_s * 1_000_000_000,
                        event_name: oc::RUN_EVENT.into(),
                        attributes: vec![
                            s(attr::SESSION_ID, "agent:main:main"),
                            s(attr::CONVERSATION_ID, "agent:main:main"),
                            s(attr::AGENT_ID, "main"),
                            s(attr::OPENCLAW_RUN_ID, run),
                            s(attr::OPERATION_NAME, oc::RUN_OPERATION),
                            s(attr::MODEL, "claude-sonnet-4-5"),
                            s(attr::PROVIDER, "Anthropic"),
                            i(attr::INPUT_TOKENS, tokens.0),
                            i(attr::OUTPUT_TOKENS, tokens.1),
                            kv(attr::COST_USD, Value::DoubleValue(cost)),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn shim_log(event: &str, attrs: Vec<KeyValue>) -> ExportLogsServiceRequest {
        let mut req = shim_run("unused", 1_700_000_000, (0, 0), 0.0);
        let r = &mut req.resource_logs[0].scope_logs[0].log_records[0];
        r.event_name = event.into();
        r.attributes = attrs;
        req
    }

    fn call_attrs(message: &str, run: &str, input: i64) -> Vec<KeyValue> {
        vec![
            s(attr::SESSION_ID, "agent:main:main"),
            s(oc::MESSAGE_ID_ATTR, message),
            s(attr::OPENCLAW_RUN_ID, run),
            s(attr::OPERATION_NAME, "chat"),
            s(attr::MODEL, "stand-in"),
            i(attr::INPUT_TOKENS, input),
            i(attr::OUTPUT_TOKENS, 40),
            kv(attr::COST_USD, Value::DoubleValue(0.0078125)),
        ]
    }

    #[test]
    fn shim_call_and_reconcile_records_are_rows_counted_once() {
        let mut d = crate::model::dedup::Deduper::default();
        // (event, attributes, rows kept, operation, request id, run id)
        type Case = (&'static str, Vec<KeyValue>, usize, &'static str, &'static str, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (oc::CALL_EVENT, call_attrs("m1", "r1", 400), 1, "chat", "m1", Some("r1")),
            // A steered run's second call: same run, same usage, another message.
            (oc::CALL_EVENT, call_attrs("m2", "r1", 400), 1, "chat", "m2", Some("r1")),
            // The shim re-sent m1 after a lost ack.
            (oc::CALL_EVENT, call_attrs("m1", "r1", 400), 0, "", "", None),
            (
                oc::RECONCILE_EVENT,
                vec![
                    s(attr::SESSION_ID, "agent:main:main"),
                    s(oc::RECONCILE_ID_ATTR, "reconcile:agent:main:main:800:80:0"),
                    s(attr::OPERATION_NAME, oc::RECONCILE_OPERATION),
                    i(attr::INPUT_TOKENS, 800),
                    i(attr::OUTPUT_TOKENS, 80),
                ],
                1,
                oc::RECONCILE_OPERATION,
                "reconcile:agent:main:main:800:80:0",
                None,
            ),
            // A status record that ends a run is never a model call.
            (
                oc::STATUS_EVENT,
                vec![
                    s(attr::SESSION_ID, "agent:main:main"),
                    s(attr::OPENCLAW_RUN_ID, "r3"),
                    i(oc::RUN_INPUT_TOKENS, 0),
                    i(oc::RUN_OUTPUT_TOKENS, 0),
                ],
                0,
                "",
                "",
                None,
            ),
        ];
        for (event, attrs, kept, op, req, run) in cases {
            let mut b = normalize::logs(&shim_log(event, attrs), 0).batch;
            d.filter(&mut b);
            assert_eq!(b.model_calls.len(), kept, "{event} {req}");
            if let Some(c) = b.model_calls.first() {
                assert_eq!(c.operation.as_deref(), Some(op));
                assert_eq!(c.request_id.as_deref(), Some(req));
                assert_eq!(c.ctx.run_id.as_deref(), run);
                assert_eq!(c.token_rule, SHIM_RULE);
                assert_eq!(shim_call_key(c), Some(req));
                assert!(shim_run_id(c).is_none(), "never the legacy run-id rule");
            }
        }
    }

    #[test]
    fn shim_run_record_is_one_model_call() {
        let m = normalize::logs(&shim_run("run-1", 1_700_000_000, (1200, 300), 0.015625), 0);
        assert_eq!(m.batch.model_calls.len(), 1);
        let c = &m.batch.model_calls[0];
        assert_eq!((c.input_tokens, c.output_tokens), (Some(1200), Some(300)));
        assert_eq!((c.cost_usd, c.cost_source), (Some(0.015625), Some("reported")));
        assert_eq!(c.provider.as_deref(), Some("anthropic"), "canonicalised");
        assert_eq!(c.ctx.run_id.as_deref(), Some("run-1"));
        assert_eq!(c.ctx.session_id.as_deref(), Some("agent:main:main"));
        assert_eq!(c.time_us, 1_700_000_000_000_000);
        assert_eq!(shim_run_id(c), Some("run-1"));
    }

    #[test]
    fn plugin_usage_span_is_a_model_call_with_cache_added() {
        let req = plugin_trace(
            1,
            1_700_000_000,
            vec![
                s(oc::plugin::PROVIDER, "google"),
                s(oc::plugin::MODEL, "gemini-2.5-pro"),
                i(oc::plugin::TOKENS_INPUT, 100),
                i(oc::plugin::TOKENS_OUTPUT, 40),
                i(oc::plugin::TOKENS_CACHE_READ, 900),
                i(oc::plugin::TOKENS_CACHE_WRITE, 0),
                s(oc::plugin::SESSION_KEY, "agent:main:main"),
            ],
        );
        let m = normalize::traces(&req, 0);
        assert_eq!(m.batch.model_calls.len(), 1);
        let c = &m.batch.model_calls[0];
        assert_eq!((c.input_tokens, c.output_tokens, c.cache_read_tokens), (Some(1000), Some(40), Some(900)));
        assert_eq!((c.token_rule, c.provider.as_deref()), ("cache_added", Some("gcp.gen_ai")));
        assert_eq!(c.model.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(c.ctx.session_id.as_deref(), Some("agent:main:main"), "older plugins' session key");
        assert_eq!(m.batch.spans[0].span_type, crate::model::records::SpanType::Llm);
        assert!(shim_run_id(c).is_none());
    }

    #[test]
    fn plugin_spans_are_left_to_the_shim_and_runs_count_once() {
        let mut d = crate::model::dedup::Deduper::default();
        let usage = |id: u8, inp: i64| {
            plugin_trace(
                id,
                1_700_000_010,
                vec![
                    s(oc::plugin::MODEL, "claude-sonnet-4-5"),
                    i(oc::plugin::TOKENS_INPUT, inp),
                    i(oc::plugin::TOKENS_OUTPUT, 5),
                ],
            )
        };
        // No shim yet: the plugin span is the only report, so it is a model call.
        let mut b = normalize::traces(&usage(1, 10), 0).batch;
        d.filter(&mut b);
        assert_eq!(b.model_calls.len(), 1);
        // The shim reports a run; a retry of the same run id is dropped.
        let mut b = normalize::logs(&shim_run("run-1", 1_700_000_020, (30, 10), 0.25), 0).batch;
        d.filter(&mut b);
        assert_eq!(b.model_calls.len(), 1);
        let mut b = normalize::logs(&shim_run("run-1", 1_700_000_020, (30, 10), 0.25), 0).batch;
        d.filter(&mut b);
        assert!(b.model_calls.is_empty(), "a run id is counted once");
        // While the shim reports, the plugin's per-call spans stay spans only.
        let mut b = normalize::traces(&usage(2, 20), 0).batch;
        d.filter(&mut b);
        assert!(b.model_calls.is_empty());
        assert_eq!(b.spans.len(), 1, "the span itself is kept");
    }
}
