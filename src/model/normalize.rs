//! OTLP -> agent model. Pure functions (no I/O, no clock: the receive time is passed in) that keep
//! every span, log record and data point raw and also derive model calls, tool calls, sessions and
//! agents, following the priority table in `semconv.rs`. Records that cannot be stored (bad ids)
//! are counted as rejected with a message, for OTLP partial success.

use std::hash::Hasher;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Metric};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};

use super::attrs::{self, AttrIndex};
use super::fastmap::{FastMap, FastSet};
use super::ids::{SpanId, TraceId};
use super::records::*;
use super::semconv as k;
use super::view::{self, KeyValue, Span, TracesRequest};

/// Bumped whenever the mapping rules change meaning (stored with each migration run).
pub const MAPPING_VERSION: u32 = 1;

/// The result of mapping one export request.
#[derive(Debug, Default)]
pub struct Mapped {
    pub batch: Batch,
    /// Records refused (partial success `rejected_*`).
    pub rejected: u64,
    /// First few reasons, joined, for the partial-success message.
    pub error_message: Option<String>,
}

impl Mapped {
    fn reject(&mut self, what: String) {
        self.rejected += 1;
        const MAX_REASONS: usize = 3;
        let msg = self.error_message.get_or_insert_with(String::new);
        let reasons = if msg.is_empty() { 0 } else { msg.matches("; ").count() + 1 };
        if reasons < MAX_REASONS {
            if !msg.is_empty() {
                msg.push_str("; ");
            }
            msg.push_str(&what);
        }
    }
}

/// Resource-level facts, computed once per resource.
struct Res<'a> {
    idx: AttrIndex<'a>,
    json: Arc<str>,
    service: Option<Arc<str>>,
    claude_code: bool,
    openlit: bool,
}

impl<'a> Res<'a> {
    fn new(kvs: &'a [KeyValue<'a>]) -> Self {
        let idx = AttrIndex::build(kvs);
        let service = idx.str(k::SERVICE_NAME).map(Arc::from);
        let claude_code = service.as_deref().is_some_and(|s: &str| s.starts_with(k::CC_SERVICE_PREFIX));
        let openlit = idx.str(k::TELEMETRY_SDK_NAME).is_some_and(|s| s.eq_ignore_ascii_case("openlit"));
        Self { json: Arc::from(attrs::attrs_json(kvs)), idx, service, claude_code, openlit }
    }
}

struct Scope {
    name: Option<Arc<str>>,
    claude_code: bool,
}

impl Scope {
    fn new(name: Option<&str>) -> Self {
        let name = name.filter(|s| !s.is_empty());
        Self { claude_code: name.is_some_and(|n| n.starts_with(k::CC_SCOPE_PREFIX)), name: name.map(Arc::from) }
    }
}

fn ns_to_us(ns: u64) -> i64 {
    (ns / 1_000) as i64
}

/// Task id: the record, then the resource; the attribute, its baggage copy, or a raw baggage header.
fn task_id<'a>(rec: &AttrIndex<'a>, res: &AttrIndex<'a>) -> Option<std::borrow::Cow<'a, str>> {
    for idx in [rec, res] {
        if let Some(t) = idx.str(k::TASK_ID).or_else(|| idx.str(k::BAGGAGE_TASK_ID)) {
            return Some(t.into());
        }
        if let Some(b) = idx.str(k::BAGGAGE) {
            if let Some(t) = baggage_value(b, k::TASK_ID) {
                return Some(t.into());
            }
        }
    }
    None
}

/// Value of `key` in a W3C baggage header (`k=v;prop,k2=v2`), percent-decoded.
pub fn baggage_value(header: &str, key: &str) -> Option<String> {
    header.split(',').find_map(|member| {
        let kv = member.split(';').next()?;
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| percent_decode(v.trim())).filter(|v| !v.is_empty())
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One shared copy of each distinct context string of an export (`Context`): the rows of an
/// export mostly repeat a few sessions, agents and tasks, so a row's context costs lookups, not
/// allocations. At most `MAX_INTERNED` values are remembered; past that each is its own copy.
#[derive(Default)]
pub struct Interner {
    set: FastSet<Arc<str>>,
}

const MAX_INTERNED: usize = 4096;

impl Interner {
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        if self.set.len() < MAX_INTERNED {
            self.set.insert(a.clone());
        }
        a
    }
}

/// Resolve the shared context of a record. `span_agent` is the agent an agent span names
/// (`agent_span_name`); it comes after the record's own agent keys and before the resource's.
fn context(
    rec: &AttrIndex,
    res: &Res,
    fallback_session: Option<&str>,
    span_agent: Option<&str>,
    ids: &mut Interner,
) -> Context {
    let own_session =
        rec.first_str(k::SESSION_ID).or_else(|| res.idx.first_str(k::SESSION_ID)).map(|(_, v)| ids.get(v));
    let session_fallback = own_session.is_none() && fallback_session.is_some();
    let session_id = own_session.or_else(|| fallback_session.map(|s| ids.get(s)));
    let own_name = match rec.first_str(k::AGENT_NAME).map(|(_, v)| v).or(span_agent) {
        Some(v) => Some(ids.get(v)),
        None => langgraph_agent(rec)
            .map(|v| ids.get(&v))
            .or_else(|| res.idx.first_str(k::AGENT_NAME).map(|(_, v)| ids.get(v))),
    };
    let own_id = rec.first_str(k::AGENT_ID).or_else(|| res.idx.first_str(k::AGENT_ID)).map(|(_, v)| ids.get(v));
    let agent_fallback = own_name.is_none() && own_id.is_none() && res.service.is_some();
    let agent_name = own_name.or_else(|| res.service.clone());
    let agent_id = own_id.or_else(|| agent_name.clone());
    Context {
        session_id,
        agent_id,
        agent_name,
        task_id: task_id(rec, &res.idx).map(|t| ids.get(&t)),
        run_id: rec.first_str(k::RUN_ID).or_else(|| res.idx.first_str(k::RUN_ID)).map(|(_, v)| ids.get(v)),
        service_name: res.service.clone(),
        parent_session_id: rec
            .str(k::PARENT_SESSION_ID)
            .or_else(|| res.idx.str(k::PARENT_SESSION_ID))
            .filter(|p| !p.is_empty())
            .map(|p| ids.get(p)),
        agent_fallback,
        session_fallback,
    }
}

/// The agent an agent span names when no `AGENT_NAME` key does: OpenInference graph nodes,
/// OpenLLMetry's entity name, OpenLIT's role, else the span name's conventional shapes
/// (CrewAI's `X._execute_core`, OpenLLMetry's `X.agent`).
pub fn agent_span_name<'a>(rec: &AttrIndex<'a>, span_name: &'a str) -> Option<&'a str> {
    rec.first_str(k::AGENT_SPAN_NAME).map(|(_, v)| v).or_else(|| agent_from_span_name(span_name))
}

/// LangGraph: a record inside a subgraph (checkpoint namespace `agent:id|node:id`, from
/// OpenLLMetry's association properties or OpenInference's `metadata` JSON) belongs to the agent
/// the outermost node names (the supervisor pattern: one subgraph per agent). A record of the
/// top graph (one segment) names no agent.
pub fn langgraph_agent(rec: &AttrIndex) -> Option<String> {
    let ns = match rec.first_str(k::LANGGRAPH_NS) {
        Some((_, v)) => v.to_string(),
        None => {
            let meta = rec.str(k::OI_METADATA).filter(|m| m.len() <= 65_536 && m.contains("checkpoint_ns"))?;
            let v: serde_json::Value = serde_json::from_str(meta).ok()?;
            v.get("langgraph_checkpoint_ns").or_else(|| v.get("checkpoint_ns"))?.as_str()?.to_string()
        }
    };
    let mut parts = ns.split('|');
    let first = parts.next()?;
    parts.next()?;
    let name = first.split(':').next()?.trim();
    (!name.is_empty() && name.len() <= 200).then(|| name.to_string())
}

/// The agent name in an agent span's name, for the shapes frameworks use. Not GenAI's
/// `invoke_agent X`: a span that follows the convention carries `gen_ai.agent.name`, and OpenLIT's
/// CrewAI spans call executor steps `invoke_agent generate_plan` without one.
pub fn agent_from_span_name(name: &str) -> Option<&str> {
    let n = name.trim();
    let named = n
        .strip_suffix("._execute_core")
        .or_else(|| n.strip_suffix(".agent"))
        .or_else(|| n.strip_prefix("Agent run: "))
        .or_else(|| n.strip_prefix("agent run: "))
        .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"'))?;
    (!named.is_empty() && named.len() <= 200).then_some(named)
}

/// First model name that is not a placeholder.
pub fn pick_model(rec: &AttrIndex) -> Option<String> {
    k::MODEL.iter().find_map(|key| {
        let v = rec.str(key)?;
        (!k::MODEL_PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v))).then(|| v.to_string())
    })
}

/// Provider, lower-cased and mapped to the `gen_ai.provider.name` vocabulary.
pub fn canonical_provider(raw: &str) -> String {
    let p = raw.trim().to_ascii_lowercase();
    match p.as_str() {
        "xai" | "x_ai" | "x.ai" => "x_ai",
        "mistralai" | "mistral" | "mistral_ai" => "mistral_ai",
        "azure" | "az.ai.openai" | "azure.ai.openai" | "azure_openai" => "azure.ai.openai",
        "az.ai.inference" | "azure.ai.inference" => "azure.ai.inference",
        "aws" | "bedrock" | "aws.bedrock" | "aws_bedrock" => "aws.bedrock",
        "vertexai" | "vertex_ai" | "gcp.vertex_ai" => "gcp.vertex_ai",
        "gemini" | "gcp.gemini" => "gcp.gemini",
        "google" | "gcp.gen_ai" => "gcp.gen_ai",
        _ => return p,
    }
    .to_string()
}

/// Provider inferred from a well-known model family, when no attribute names it.
pub fn provider_from_model(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    let m = m.strip_prefix("anthropic.").unwrap_or(m);
    if m.starts_with("claude") {
        Some("anthropic")
    } else if m.starts_with("gpt-")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("chatgpt")
        || m.starts_with("text-embedding")
    {
        Some("openai")
    } else if m.starts_with("gemini") {
        Some("gcp.gemini")
    } else if m.starts_with("mistral") || m.starts_with("codestral") || m.starts_with("magistral") {
        Some("mistral_ai")
    } else if m.starts_with("deepseek") {
        Some("deepseek")
    } else if m.starts_with("grok") {
        Some("x_ai")
    } else {
        None
    }
}

/// First provider value that names a provider (not a framework placeholder), canonical.
fn pick_provider(idx: &AttrIndex) -> Option<String> {
    k::PROVIDER.iter().find_map(|key| {
        let v = idx.str(key)?;
        (!k::PROVIDER_PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(v))).then(|| canonical_provider(v))
    })
}

fn provider(rec: &AttrIndex, res: &Res, claude_code: bool, model: Option<&str>) -> Option<String> {
    pick_provider(rec)
        .or_else(|| pick_provider(&res.idx))
        .or_else(|| claude_code.then(|| "anthropic".to_string()))
        .or_else(|| model.and_then(provider_from_model).map(str::to_string))
}

/// Span type by the first convention present (semconv.md §8 value maps).
pub fn classify(rec: &AttrIndex, span_name: &str) -> SpanType {
    if let Some(op) = rec.str(k::OPERATION_NAME) {
        let t = match op.to_ascii_lowercase().as_str() {
            "chat" | "text_completion" | "generate_content" | "completion" | "model_request" => Some(SpanType::Llm),
            "embeddings" | "embedding" => Some(SpanType::Embedding),
            "retrieval" | "vectordb" | "vector_db_retrieve" => Some(SpanType::Retriever),
            "execute_tool" => Some(SpanType::Tool),
            "invoke_agent" | "create_agent" | "agent" => Some(SpanType::Agent),
            "invoke_workflow" | "plan" | "execute_task" | "task" | "workflow" => Some(SpanType::Chain),
            _ => None,
        };
        if let Some(t) = t {
            return t;
        }
    }
    if let Some(kind) = rec.str(k::OPENINFERENCE_KIND) {
        return match kind.to_ascii_uppercase().as_str() {
            // LlamaIndex marks the step that builds a tool-calling request as LLM too (no usage):
            // the call is its sibling `astream_chat` / `chat` span.
            "LLM" if span_name.ends_with("._prepare_chat_with_tools") => SpanType::Chain,
            "LLM" => SpanType::Llm,
            "EMBEDDING" => SpanType::Embedding,
            "CHAIN" => SpanType::Chain,
            "RETRIEVER" | "RERANKER" => SpanType::Retriever,
            "TOOL" => SpanType::Tool,
            "AGENT" => SpanType::Agent,
            _ => SpanType::Other,
        };
    }
    if let Some(kind) = rec.str(k::TRACELOOP_KIND) {
        match kind.to_ascii_lowercase().as_str() {
            "workflow" | "task" => return SpanType::Chain,
            "agent" => return SpanType::Agent,
            "tool" => return SpanType::Tool,
            _ => {}
        }
    }
    if let Some(t) = rec.str(k::LLM_REQUEST_TYPE) {
        match t.to_ascii_lowercase().as_str() {
            "chat" | "completion" => return SpanType::Llm,
            "embedding" => return SpanType::Embedding,
            "rerank" => return SpanType::Retriever,
            _ => {}
        }
    }
    let cc_name = rec.str(k::CC_SPAN_TYPE).unwrap_or(span_name);
    match cc_name {
        "claude_code.llm_request" => return SpanType::Llm,
        "claude_code.tool" => return SpanType::Tool,
        "claude_code.interaction" => return SpanType::Agent,
        _ => {}
    }
    let has_tokens = rec.first_i64(k::INPUT_TOKENS).is_some() || rec.first_i64(k::OUTPUT_TOKENS).is_some();
    if has_tokens && pick_model(rec).is_some() {
        return SpanType::Llm;
    }
    if rec.first_str(k::TOOL_NAME).is_some() {
        return SpanType::Tool;
    }
    SpanType::Other
}

/// Token counts in the OpenTelemetry convention (input includes cache reads and writes).
struct Usage {
    input: Option<i64>,
    output: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
    rule: &'static str,
}

fn usage(rec: &AttrIndex, claude_code: bool, anthropic_excludes_cache: bool) -> Usage {
    let input = rec.first_i64(k::INPUT_TOKENS);
    let output = rec.first_i64(k::OUTPUT_TOKENS).map(|(_, v)| v);
    let cache_read = rec.first_i64(k::CACHE_READ_TOKENS).map(|(_, v)| v);
    let cache_write = rec.first_i64(k::CACHE_WRITE_TOKENS).map(|(_, v)| v);
    let cache = cache_read.unwrap_or(0) + cache_write.unwrap_or(0);
    let Some((key, raw_input)) = input else {
        return Usage { input: None, output, cache_read, cache_write, rule: "otel" };
    };
    // Sources that report the cache beside the input (Claude Code, raw Anthropic usage,
    // OpenLIT's Anthropic instrumentation) are summed; so is any count that cannot include
    // its own cache (cache > input).
    let excludes_cache = key == k::CC_INPUT_TOKENS || claude_code || anthropic_excludes_cache || cache > raw_input;
    if excludes_cache && cache > 0 {
        Usage { input: Some(raw_input + cache), output, cache_read, cache_write, rule: "cache_added" }
    } else {
        Usage { input: Some(raw_input), output, cache_read, cache_write, rule: "otel" }
    }
}

fn reported_cost(rec: &AttrIndex) -> Option<f64> {
    rec.first_f64(k::COST_USD).or_else(|| rec.f64(k::COST_USD_MICROS).map(|m| m / 1e6)).filter(|c| *c >= 0.0)
}

/// OpenLIT reports `gen_ai.usage.cost = 0` for a model its own price list does not know (any
/// OpenAI-compatible endpoint): with tokens used, that zero means "unknown", so the call is priced.
fn openlit_unknown_cost(cost: Option<f64>, openlit: bool, u: &Usage) -> Option<f64> {
    let used = u.input.unwrap_or(0) > 0 || u.output.unwrap_or(0) > 0;
    cost.filter(|c| !(openlit && *c == 0.0 && used))
}

/// Sessions and agents seen in one request, folded per id.
#[derive(Default)]
struct SeenSet {
    sessions: FastMap<Arc<str>, Seen>,
    agents: FastMap<Arc<str>, Seen>,
    /// The request's context strings (`context`).
    ids: Interner,
}

impl SeenSet {
    fn note(&mut self, ctx: &Context, t_us: i64) {
        if let Some(agent) = &ctx.agent_id {
            if let Some(e) = self.agents.get_mut(agent) {
                e.first_us = e.first_us.min(t_us);
                e.last_us = e.last_us.max(t_us);
            } else {
                self.agents.insert(
                    agent.clone(),
                    Seen {
                        id: agent.to_string(),
                        first_us: t_us,
                        last_us: t_us,
                        agent_id: Some(agent.to_string()),
                        display_name: owned(&ctx.agent_name),
                        service_name: ctx.service_name.clone(),
                        task_id: owned(&ctx.task_id),
                        parent_id: None,
                    },
                );
            }
        }
        if let Some(session) = &ctx.session_id {
            if !self.sessions.contains_key(session) {
                self.sessions.insert(
                    session.clone(),
                    Seen {
                        id: session.to_string(),
                        first_us: t_us,
                        last_us: t_us,
                        agent_id: owned(&ctx.agent_id),
                        display_name: None,
                        service_name: ctx.service_name.clone(),
                        task_id: owned(&ctx.task_id),
                        parent_id: owned(&ctx.parent_session_id),
                    },
                );
            }
            let Some(e) = self.sessions.get_mut(session) else { return };
            e.first_us = e.first_us.min(t_us);
            if t_us >= e.last_us {
                e.last_us = t_us;
                if ctx.task_id.is_some() && e.task_id.as_deref() != ctx.task_id.as_deref() {
                    e.task_id = owned(&ctx.task_id);
                }
            }
            if e.agent_id.is_none() {
                e.agent_id = owned(&ctx.agent_id);
            }
            if e.parent_id.is_none() {
                e.parent_id = owned(&ctx.parent_session_id);
            }
            if e.display_name.is_none() {
                let short: String = session.chars().take(8).collect();
                e.display_name = Some(match (&ctx.agent_name, &ctx.task_id) {
                    (Some(a), Some(t)) => format!("{a} · {t} · {short}"),
                    (Some(a), None) => format!("{a} · {short}"),
                    (None, Some(t)) => format!("{t} · {short}"),
                    (None, None) => short,
                });
            }
        }
    }

    fn into_batch(self, batch: &mut Batch) {
        batch.sessions.extend(self.sessions.into_values());
        batch.agents.extend(self.agents.into_values());
    }
}

/// Sessions and agents of rows (context, time), as mapping notes them (`pipeline::inherit`
/// rebuilds a batch's after changing contexts).
pub fn seen_of<'a>(rows: impl IntoIterator<Item = (&'a Context, i64)>) -> (Vec<Seen>, Vec<Seen>) {
    let mut seen = SeenSet::default();
    for (ctx, t) in rows {
        seen.note(ctx, t);
    }
    (seen.sessions.into_values().collect(), seen.agents.into_values().collect())
}

fn span_kind(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// Map a trace export prost decoded or built (OTLP/JSON, a hook's tool span, imports, tests),
/// through a view of it.
pub fn traces(req: &ExportTraceServiceRequest, received_us: i64) -> Mapped {
    traces_view(&TracesRequest::of(req), received_us)
}

/// Map a protobuf traces export straight from its bytes (`view::decode_traces`: no copy of its
/// strings). What the ingest path and replay run.
pub fn traces_pb(bytes: &[u8], received_us: i64) -> Result<Mapped, view::DecodeError> {
    Ok(traces_view(&view::decode_traces(bytes)?, received_us))
}

/// Map a traces export.
pub fn traces_view(req: &TracesRequest<'_>, received_us: i64) -> Mapped {
    let mut out = Mapped::default();
    // One allocation for the span rows rather than ~10 doublings that copy every row so far.
    let spans: usize = req.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
    out.batch.spans.reserve(spans);
    // A span is at most one model call or one tool call: the model calls' rows never grow, the
    // tool calls' (fewer in every mix we see) at most once (each doubling copied every row so
    // far, ~0.5 KB each, into fresh pages).
    out.batch.model_calls.reserve(spans);
    out.batch.tool_calls.reserve(spans / 2);
    let mut seen = SeenSet::default();
    for rs in &req.resource_spans {
        let res = Res::new(rs.resource.as_deref().unwrap_or(&[]));
        for ss in &rs.scope_spans {
            let scope = Scope::new(ss.scope);
            for span in &ss.spans {
                let mark = super::validate::Mark::of(&out.batch);
                if let Err(e) = map_span(span, &res, &scope, received_us, &mut out.batch, &mut seen) {
                    out.reject(format!("span {:?}: {e}", span.name));
                } else if let Some(why) = super::validate::check_since(&out.batch, &mark) {
                    mark.truncate(&mut out.batch);
                    out.reject(format!("span {:?}: {why}", span.name));
                }
            }
        }
    }
    seen.into_batch(&mut out.batch);
    fit_rows(&mut out.batch);
    out
}

/// The row vectors of a mapped batch, each in an allocation of its size: the calls' rows were
/// reserved for the worst case (or grew by doubling), and the batch may wait in the pipeline's
/// queues and the live stream's ring for seconds, so it keeps only what it holds.
fn fit_rows(b: &mut Batch) {
    fit(&mut b.spans);
    fit(&mut b.logs);
    fit(&mut b.points);
    fit(&mut b.model_calls);
    fit(&mut b.tool_calls);
}

/// Move `v`'s rows into an allocation of their size when more than an eighth of it is unused
/// (`shrink_to_fit` would not do: mimalloc keeps a block in place when it shrinks to half or
/// more, so the unused part stays taken). A copy of the rows, once per batch.
fn fit<T>(v: &mut Vec<T>) {
    if v.capacity() - v.len() > v.len() / 8 {
        let mut exact = Vec::with_capacity(v.len());
        exact.append(v);
        *v = exact;
    }
}

fn map_span(
    span: &Span,
    res: &Res,
    scope: &Scope,
    received_us: i64,
    batch: &mut Batch,
    seen: &mut SeenSet,
) -> Result<(), super::ids::IdError> {
    let trace_id = TraceId::parse(span.trace_id)?.to_id();
    let span_id = SpanId::parse(span.span_id)?.to_id();
    let parent_span_id = SpanId::parse_optional(span.parent_span_id)?.map(|p| p.to_id());
    let idx = AttrIndex::build(&span.attributes);
    let mut start_us = ns_to_us(span.start_time_unix_nano);
    let mut end_us = ns_to_us(span.end_time_unix_nano);
    if start_us == 0 {
        start_us = if end_us > 0 { end_us } else { received_us };
    }
    if end_us < start_us {
        end_us = start_us;
    }
    let openclaw_usage = super::openclaw::is_plugin_usage(span.name);
    let span_type = if openclaw_usage { SpanType::Llm } else { classify(&idx, span.name) };
    let claude_code = res.claude_code || scope.claude_code;
    let model = if openclaw_usage { super::openclaw::plugin_model(&span.attributes, &idx) } else { pick_model(&idx) };
    let status = span.status.as_ref();
    let status_code = match status.map(|s| StatusCode::try_from(s.code).unwrap_or(StatusCode::Unset)) {
        Some(StatusCode::Ok) => "ok",
        Some(StatusCode::Error) => "error",
        _ => "unset",
    };
    let error_type = idx.str(k::ERROR_TYPE);
    let error = status_code == "error" || error_type.is_some() || idx.bool(k::SUCCESS) == Some(false);
    let span_agent = (span_type == SpanType::Agent && !claude_code).then(|| agent_span_name(&idx, span.name)).flatten();
    let mut ctx = context(&idx, res, Some(&trace_id), span_agent, &mut seen.ids);
    let duration_ms = (end_us - start_us) as f64 / 1000.0;

    if openclaw_usage {
        super::openclaw::plugin_context(&span.attributes, &mut ctx);
        let facts = super::openclaw::SpanFacts {
            trace_id: &trace_id,
            span_id: &span_id,
            parent_span_id: parent_span_id.as_ref(),
            end_us,
            duration_ms,
            error,
        };
        batch.model_calls.push(super::openclaw::plugin_usage_call(&span.attributes, &idx, facts, &ctx));
    } else if matches!(span_type, SpanType::Llm | SpanType::Embedding) {
        let prov = provider(&idx, res, claude_code, model.as_deref());
        let u = usage(&idx, claude_code, res.openlit && prov.as_deref() == Some("anthropic"));
        let cost = openlit_unknown_cost(reported_cost(&idx), res.openlit, &u);
        batch.model_calls.push(ModelCallRow {
            time_us: end_us,
            source: "span",
            trace_id: Some(trace_id.clone()),
            span_id: Some(span_id.clone()),
            parent_span_id: parent_span_id.clone(),
            request_id: idx.first_str(k::REQUEST_ID).map(|(_, v)| v.to_string()),
            model: model.clone(),
            provider: prov,
            operation: idx
                .str(k::OPERATION_NAME)
                .map(str::to_string)
                .or_else(|| Some(if span_type == SpanType::Embedding { "embeddings" } else { "chat" }.to_string())),
            input_tokens: u.input,
            output_tokens: u.output,
            cache_read_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
            cost_usd: cost,
            cost_source: cost.map(|_| "reported"),
            duration_ms: Some(duration_ms),
            error,
            token_rule: u.rule,
            ctx: ctx.clone(),
        });
    }
    if span_type == SpanType::Tool {
        let tool_name = idx
            .first_str(k::TOOL_NAME)
            .map(|(_, v)| v)
            .or_else(|| idx.str(k::TRACELOOP_ENTITY_NAME))
            .unwrap_or(span.name)
            .to_string();
        batch.tool_calls.push(ToolCallRow {
            time_us: end_us,
            source: "span",
            trace_id: Some(trace_id.clone()),
            span_id: Some(span_id.clone()),
            tool_call_id: idx.first_str(k::TOOL_CALL_ID).map(|(_, v)| v.to_string()),
            tool_name,
            duration_ms: Some(duration_ms),
            success: Some(!error),
            error: if error {
                Some(status.map(|s| s.message).filter(|m| !m.is_empty()).or(error_type).unwrap_or("error").to_string())
            } else {
                None
            },
            ctx: ctx.clone(),
        });
    }
    seen.note(&ctx, end_us);
    batch.spans.push(SpanRow {
        time_us: start_us,
        trace_id,
        span_id,
        parent_span_id,
        name: span.name.to_string(),
        kind: span_kind(span.kind),
        start_us,
        end_us,
        duration_ms,
        status_code,
        status_message: status.map(|s| s.message.to_string()).filter(|m| !m.is_empty()),
        scope_name: scope.name.clone(),
        span_type,
        model,
        error,
        ctx,
        attributes: attrs::attrs_json(&span.attributes),
        resource_attributes: res.json.clone(),
        events: (!span.events.is_empty()).then(|| span_events_json(span)),
        links: (!span.links.is_empty()).then(|| span_links_json(span)),
    });
    Ok(())
}

fn span_events_json(span: &Span) -> String {
    let mut out = String::from("[");
    for (i, e) in span.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"time_unix_nano\":");
        out.push_str(&e.time_unix_nano.to_string());
        out.push_str(",\"name\":");
        attrs::write_json_str(e.name, &mut out);
        out.push_str(",\"attributes\":");
        out.push_str(&attrs::attrs_json(&e.attributes));
        out.push('}');
    }
    out.push(']');
    out
}

fn span_links_json(span: &Span) -> String {
    let mut out = String::from("[");
    for (i, l) in span.links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"trace_id\":");
        attrs::write_json_str(&super::ids::hex_lower(l.trace_id), &mut out);
        out.push_str(",\"span_id\":");
        attrs::write_json_str(&super::ids::hex_lower(l.span_id), &mut out);
        out.push_str(",\"attributes\":");
        out.push_str(&attrs::attrs_json(&l.attributes));
        out.push('}');
    }
    out.push(']');
    out
}

/// The event name of a log record: the OTLP field, else Claude Code's body / `event.name`.
fn log_event_name(event_name: &str, body: Option<&str>, idx: &AttrIndex, claude_code: bool) -> Option<String> {
    if !event_name.is_empty() {
        return Some(event_name.to_string());
    }
    if let Some(b) = body.filter(|b| b.starts_with("claude_code.") && !b.contains(char::is_whitespace)) {
        return Some(b.to_string());
    }
    let name = idx.str(k::EVENT_NAME)?;
    if claude_code && !name.starts_with("claude_code.") {
        Some(format!("claude_code.{name}"))
    } else {
        Some(name.to_string())
    }
}

/// Map a logs export.
pub fn logs(req: &ExportLogsServiceRequest, received_us: i64) -> Mapped {
    let mut out = Mapped::default();
    let mut seen = SeenSet::default();
    for rl in &req.resource_logs {
        let res_kvs = view::kvs_of(rl.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let res = Res::new(&res_kvs);
        for sl in &rl.scope_logs {
            let scope = Scope::new(sl.scope.as_ref().map(|s| s.name.as_str()));
            let claude_code = res.claude_code || scope.claude_code;
            for rec in &sl.log_records {
                let trace_id = match TraceId::parse_optional(&rec.trace_id) {
                    Ok(t) => t.map(|t| t.to_id()),
                    Err(e) => {
                        out.reject(format!("log record: {e}"));
                        continue;
                    }
                };
                let span_id = match SpanId::parse_optional(&rec.span_id) {
                    Ok(s) => s.map(|s| s.to_id()),
                    Err(e) => {
                        out.reject(format!("log record: {e}"));
                        continue;
                    }
                };
                let rec_kvs = view::kvs_of(&rec.attributes);
                let idx = AttrIndex::build(&rec_kvs);
                let observed_us = match ns_to_us(rec.observed_time_unix_nano) {
                    0 => received_us,
                    t => t,
                };
                let time_us = match ns_to_us(rec.time_unix_nano) {
                    0 => observed_us,
                    t => t,
                };
                let body_view = rec.body.as_ref().map(view::any_of);
                let body_str = body_view.as_ref().and_then(attrs::as_str);
                let body = body_view.as_ref().map(attrs::display_text).filter(|b| !b.is_empty());
                let event_name = log_event_name(&rec.event_name, body_str, &idx, claude_code);
                let ctx = context(&idx, &res, trace_id.as_deref(), None, &mut seen.ids);
                let mark = super::validate::Mark::of(&out.batch);
                map_log_derived(&idx, &res, event_name.as_deref(), time_us, &trace_id, &span_id, &ctx, &mut out.batch);
                if let Some(why) = super::validate::check_since(&out.batch, &mark) {
                    mark.truncate(&mut out.batch);
                    out.reject(format!("log record: {why}"));
                    continue;
                }
                seen.note(&ctx, time_us);
                out.batch.logs.push(LogRow {
                    time_us,
                    observed_us,
                    trace_id,
                    span_id,
                    severity_number: rec.severity_number,
                    severity_text: Some(rec.severity_text.clone()).filter(|s| !s.is_empty()),
                    event_name,
                    body,
                    scope_name: scope.name.clone(),
                    ctx,
                    attributes: attrs::attrs_json(&rec_kvs),
                    resource_attributes: res.json.clone(),
                });
            }
        }
    }
    seen.into_batch(&mut out.batch);
    fit_rows(&mut out.batch);
    out
}

/// Model and tool calls carried by log events (Claude Code's `api_request` and `tool_result`).
#[allow(clippy::too_many_arguments)]
fn map_log_derived(
    idx: &AttrIndex,
    res: &Res,
    event_name: Option<&str>,
    time_us: i64,
    trace_id: &Option<Id>,
    span_id: &Option<Id>,
    ctx: &Context,
    batch: &mut Batch,
) {
    match event_name {
        Some(k::CC_API_REQUEST) => {
            let model = pick_model(idx);
            let prov = provider(idx, res, true, model.as_deref());
            let u = usage(idx, true, false);
            let cost = reported_cost(idx);
            batch.model_calls.push(ModelCallRow {
                time_us,
                source: "log",
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                parent_span_id: None,
                request_id: idx.first_str(k::REQUEST_ID).map(|(_, v)| v.to_string()),
                model,
                provider: prov,
                operation: Some("chat".into()),
                input_tokens: u.input,
                output_tokens: u.output,
                cache_read_tokens: u.cache_read,
                cache_write_tokens: u.cache_write,
                cost_usd: cost,
                cost_source: cost.map(|_| "reported"),
                duration_ms: idx.f64(k::DURATION_MS),
                error: false,
                token_rule: u.rule,
                ctx: ctx.clone(),
            });
        }
        Some(agent_console_conventions::openclaw::RUN_EVENT) => {
            batch.model_calls.push(super::openclaw::shim_run_call(idx, time_us, trace_id, span_id, ctx));
        }
        Some(agent_console_conventions::openclaw::CALL_EVENT) => {
            batch.model_calls.push(super::openclaw::shim_call(idx, time_us, trace_id, span_id, ctx, false));
        }
        Some(agent_console_conventions::openclaw::RECONCILE_EVENT) => {
            batch.model_calls.push(super::openclaw::shim_call(idx, time_us, trace_id, span_id, ctx, true));
        }
        Some(k::CC_TOOL_RESULT) => {
            let success = idx.bool(k::SUCCESS);
            batch.tool_calls.push(ToolCallRow {
                time_us,
                source: "log",
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                tool_call_id: idx.first_str(k::TOOL_CALL_ID).map(|(_, v)| v.to_string()),
                tool_name: idx.first_str(k::TOOL_NAME).map(|(_, v)| v).unwrap_or("unknown").to_string(),
                duration_ms: idx.f64(k::DURATION_MS),
                success,
                error: idx.str(k::ERROR).map(str::to_string).filter(|_| success == Some(false)),
                ctx: ctx.clone(),
            });
        }
        _ => {}
    }
}

/// Map a metrics export: every data point is kept with its temporality and start time.
pub fn metrics(req: &ExportMetricsServiceRequest, received_us: i64) -> Mapped {
    let mut out = Mapped::default();
    let mut seen = SeenSet::default();
    for rm in &req.resource_metrics {
        let res_kvs = view::kvs_of(rm.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let res = Res::new(&res_kvs);
        for sm in &rm.scope_metrics {
            let scope = Scope::new(sm.scope.as_ref().map(|s| s.name.as_str()));
            for metric in &sm.metrics {
                map_metric(metric, &res, &scope, received_us, &mut out, &mut seen);
            }
        }
    }
    seen.into_batch(&mut out.batch);
    fit_rows(&mut out.batch);
    out
}

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

fn series_id(res: &Res, scope: &Scope, name: &str, attrs_json: &str) -> String {
    let mut h = attrs::Fnv::default();
    h.write(res.json.as_bytes());
    h.write(&[0]);
    h.write(scope.name.as_deref().unwrap_or("").as_bytes());
    h.write(&[0]);
    h.write(name.as_bytes());
    h.write(&[0]);
    h.write(attrs_json.as_bytes());
    format!("{:016x}", h.finish())
}

struct PointCommon<'a> {
    attributes: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    start_ns: u64,
    time_ns: u64,
}

fn map_metric(metric: &Metric, res: &Res, scope: &Scope, received_us: i64, out: &mut Mapped, seen: &mut SeenSet) {
    let name: Arc<str> = Arc::from(metric.name.as_str());
    let description = Some(metric.description.as_str()).filter(|d| !d.is_empty()).map(Arc::from);
    let unit = Some(metric.unit.as_str()).filter(|d| !d.is_empty()).map(Arc::from);
    let mut push = |common: PointCommon,
                    kind: &'static str,
                    temp: &'static str,
                    is_monotonic: Option<bool>,
                    value: Option<f64>,
                    count: Option<u64>,
                    sum: Option<f64>,
                    min: Option<f64>,
                    max: Option<f64>,
                    distribution: Option<String>| {
        let kvs = view::kvs_of(common.attributes);
        let idx = AttrIndex::build(&kvs);
        let ctx = context(&idx, res, None, None, &mut seen.ids);
        let time_us = match ns_to_us(common.time_ns) {
            0 => received_us,
            t => t,
        };
        let attributes = attrs::attrs_json(&kvs);
        seen.note(&ctx, time_us);
        out.batch.points.push(PointRow {
            time_us,
            start_us: Some(ns_to_us(common.start_ns)).filter(|t| *t > 0),
            name: name.clone(),
            description: description.clone(),
            unit: unit.clone(),
            kind,
            temporality: temp,
            is_monotonic,
            value,
            count,
            sum,
            min,
            max,
            distribution,
            series_id: series_id(res, scope, &name, &attributes),
            ctx,
            attributes,
            resource_attributes: res.json.clone(),
        });
    };
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d).filter(|d| d.is_finite()),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    };
    match metric.data.as_ref() {
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                let c = PointCommon {
                    attributes: &p.attributes,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                };
                push(c, "gauge", "unspecified", None, number(&p.value), None, None, None, None, None);
            }
        }
        Some(Data::Sum(s)) => {
            for p in &s.data_points {
                let c = PointCommon {
                    attributes: &p.attributes,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                };
                let temp = temporality(s.aggregation_temporality);
                push(c, "sum", temp, Some(s.is_monotonic), number(&p.value), None, None, None, None, None);
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &h.data_points {
                let c = PointCommon {
                    attributes: &p.attributes,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                };
                let dist = serde_json::json!({"bounds": p.explicit_bounds, "counts": p.bucket_counts}).to_string();
                let temp = temporality(h.aggregation_temporality);
                push(c, "histogram", temp, None, p.sum, Some(p.count), p.sum, p.min, p.max, Some(dist));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            for p in &h.data_points {
                let c = PointCommon {
                    attributes: &p.attributes,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                };
                let buckets =
                    |b: &Option<opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets>| {
                        b.as_ref().map(|b| serde_json::json!({"offset": b.offset, "counts": b.bucket_counts}))
                    };
                let dist = serde_json::json!({
                    "scale": p.scale, "zero_count": p.zero_count, "zero_threshold": p.zero_threshold,
                    "positive": buckets(&p.positive), "negative": buckets(&p.negative),
                })
                .to_string();
                let temp = temporality(h.aggregation_temporality);
                push(c, "exponential_histogram", temp, None, p.sum, Some(p.count), p.sum, p.min, p.max, Some(dist));
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                let c = PointCommon {
                    attributes: &p.attributes,
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                };
                let q: Vec<[f64; 2]> = p.quantile_values.iter().map(|q| [q.quantile, q.value]).collect();
                let dist = serde_json::json!({ "quantiles": q }).to_string();
                push(
                    c,
                    "summary",
                    "unspecified",
                    None,
                    Some(p.sum),
                    Some(p.count),
                    Some(p.sum),
                    None,
                    None,
                    Some(dist),
                );
            }
        }
        // A metric without data carries no points: nothing to store, nothing rejected.
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{kv, kv_int, kv_str, shared_fixture};
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    const NOW: i64 = 1_800_000_000_000_000;

    fn decode<M: Message + Default>(rel: &str) -> M {
        let bytes = shared_fixture(rel).unwrap_or_else(|e| panic!("fixture {rel}: {e}"));
        M::decode(&bytes[..]).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
    }

    fn one_span(resource: Vec<KeyValue>, attrs: Vec<KeyValue>, name: &str) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: resource, ..Default::default() }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![7; 16],
                        span_id: vec![3; 8],
                        name: name.into(),
                        start_time_unix_nano: 1_000_000_000,
                        end_time_unix_nano: 3_000_000_000,
                        attributes: attrs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn an_exports_context_strings_are_one_copy_per_value() {
        let mut rng = crate::fixtures::Rng::new(7);
        let req = crate::fixtures::genai_traces(64, 1, &mut rng, 1_800_000_000_000_000_000);
        let b = traces(&req, NOW).batch;
        assert_eq!(b.spans.len(), 64);
        assert!(!b.model_calls.is_empty() && !b.tool_calls.is_empty());
        let session = b.spans[0].ctx.session_id.clone().expect("a session");
        let task = b.spans[0].ctx.task_id.clone().expect("a task (from the resource)");
        assert!(session.starts_with("sess-") && task.starts_with("TASK-"), "{session} {task}");
        let ctxs = b.spans.iter().map(|s| &s.ctx).chain(b.model_calls.iter().map(|c| &c.ctx));
        for c in ctxs.chain(b.tool_calls.iter().map(|c| &c.ctx)) {
            let (s, t) = (c.session_id.as_ref().expect("session"), c.task_id.as_ref().expect("task"));
            assert!(Arc::ptr_eq(s, &session) && Arc::ptr_eq(t, &task), "one shared copy per value");
            assert!(!c.session_fallback && !c.agent_fallback);
        }
        assert_eq!(b.sessions.len(), 1);
        assert_eq!(b.sessions[0].id, *session);
    }

    #[test]
    fn langchain_openinference_fixture() {
        let req: ExportTraceServiceRequest = decode("langchain-openinference/traces-1.pb");
        let m = traces(&req, NOW);
        assert_eq!(m.rejected, 0);
        let b = &m.batch;
        assert_eq!(b.spans.len(), 7);
        let count = |t: SpanType| b.spans.iter().filter(|s| s.span_type == t).count();
        assert_eq!(
            (count(SpanType::Llm), count(SpanType::Tool), count(SpanType::Chain), count(SpanType::Other)),
            (2, 1, 2, 2)
        );
        assert_eq!(b.model_calls.len(), 2);
        assert!(b.model_calls.iter().all(|c| c.model.as_deref() == Some("gpt-4o-mini")));
        let sum = |f: fn(&ModelCallRow) -> Option<i64>| b.model_calls.iter().filter_map(f).sum::<i64>();
        assert_eq!(sum(|c| c.input_tokens), 2550);
        assert_eq!(sum(|c| c.output_tokens), 125);
        assert_eq!(sum(|c| c.cache_read_tokens), 400);
        assert!(b.model_calls.iter().all(|c| c.token_rule == "otel"));
        assert_eq!(b.tool_calls.len(), 1);
        assert_eq!(b.tool_calls[0].tool_name, "lookup_weather");
        assert_eq!(b.tool_calls[0].success, Some(true));
        assert!(b.spans.iter().all(|s| s.ctx.task_id.as_deref() == Some("TASK-42")));
        assert!(b.spans.iter().all(|s| s.ctx.agent_id.as_deref() == Some("research-agent")));
        assert!(b.model_calls.iter().all(|c| c.ctx.task_id.as_deref() == Some("TASK-42")));
        // No session attribute: each trace is its own session.
        assert_eq!(b.sessions.len(), 3);
    }

    #[test]
    fn claude_code_logs_fixture() {
        let mut calls = Vec::new();
        let mut tools = Vec::new();
        let mut logs_n = 0;
        for f in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
            let req: ExportLogsServiceRequest = decode(f);
            let m = logs(&req, NOW);
            assert_eq!(m.rejected, 0);
            logs_n += m.batch.logs.len();
            calls.extend(m.batch.model_calls);
            tools.extend(m.batch.tool_calls);
        }
        assert!(logs_n > 20);
        assert_eq!(calls.len(), 2);
        let session = "f140c7f4-628d-4454-b78d-f488814a62f0";
        for c in &calls {
            assert_eq!(c.model.as_deref(), Some("claude-opus-4-8"));
            assert_eq!(c.provider.as_deref(), Some("anthropic"));
            assert_eq!(c.ctx.session_id.as_deref(), Some(session));
            assert_eq!(c.ctx.run_id.as_deref(), Some("053d7d52-e7cd-48a2-9015-69b1c1b88f52"));
            assert_eq!(c.ctx.task_id, None, "prompt.id is a run id, not a task");
            assert_eq!(c.cost_source, Some("reported"));
            assert_eq!(c.token_rule, "cache_added");
        }
        let got: Vec<_> = calls
            .iter()
            .map(|c| (c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens))
            .collect();
        assert_eq!(
            got,
            vec![(Some(4200), Some(64), Some(1800), Some(300)), (Some(4300), Some(21), Some(2000), Some(0))]
        );
        let cost: f64 = calls.iter().filter_map(|c| c.cost_usd).sum();
        assert!((cost - 0.0279).abs() < 1e-9, "{cost}");
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].tool_name, "Bash");
        assert_eq!(tools[0].tool_call_id.as_deref(), Some("toolu_6d09c4c13fbb4643bc930833"));
        assert_eq!(tools[0].success, Some(true));
        assert_eq!(tools[0].duration_ms, Some(82.0));
    }

    #[test]
    fn claude_code_metrics_fixture_keeps_points_not_calls() {
        let req: ExportMetricsServiceRequest = decode("claude-code/otlp/metrics-1.pb");
        let m = metrics(&req, NOW);
        assert!(m.batch.model_calls.is_empty(), "cost metrics must not become model calls");
        let cost: Vec<_> = m.batch.points.iter().filter(|p| &*p.name == "claude_code.cost.usage").collect();
        assert_eq!(cost.len(), 1);
        assert_eq!(cost[0].temporality, "delta");
        assert_eq!(cost[0].is_monotonic, Some(true));
        assert!((cost[0].value.unwrap_or(0.0) - 0.0279).abs() < 1e-9);
        assert!(cost[0].start_us.is_some());
        let tokens: f64 =
            m.batch.points.iter().filter(|p| &*p.name == "claude_code.token.usage").filter_map(|p| p.value).sum();
        assert_eq!(tokens, 4400.0 + 85.0 + 3800.0 + 300.0);
        assert!(m
            .batch
            .points
            .iter()
            .all(|p| p.ctx.session_id.as_deref() == Some("f140c7f4-628d-4454-b78d-f488814a62f0")));
    }

    /// (name, resource attrs, span attrs, span name) -> (type, model, provider, input, output, cache read, cache write)
    #[test]
    fn conventions_table() {
        type Exp =
            (SpanType, Option<&'static str>, Option<&'static str>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
        type Case = (&'static str, Vec<KeyValue>, Vec<KeyValue>, &'static str, Exp);
        let cases: Vec<Case> = vec![
            (
                "otel genai current",
                vec![],
                vec![
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.provider.name", "openai"),
                    kv_str("gen_ai.request.model", "gpt-4o"),
                    kv_str("gen_ai.response.model", "gpt-4o-2024-08-06"),
                    kv_int("gen_ai.usage.input_tokens", 100),
                    kv_int("gen_ai.usage.output_tokens", 10),
                    kv_int("gen_ai.usage.cache_read.input_tokens", 40),
                ],
                "chat gpt-4o",
                (SpanType::Llm, Some("gpt-4o-2024-08-06"), Some("openai"), Some(100), Some(10), Some(40), None),
            ),
            (
                "otel genai deprecated names",
                vec![],
                vec![
                    kv_str("gen_ai.system", "Anthropic"),
                    kv_str("llm.request.type", "chat"),
                    kv_str("gen_ai.request.model", "claude-3-5-sonnet"),
                    kv_int("gen_ai.usage.prompt_tokens", 50),
                    kv_int("gen_ai.usage.completion_tokens", 5),
                    kv_int("gen_ai.usage.cache_read_input_tokens", 20),
                    kv_int("gen_ai.usage.cache_creation_input_tokens", 10),
                ],
                "anthropic.chat",
                (SpanType::Llm, Some("claude-3-5-sonnet"), Some("anthropic"), Some(50), Some(5), Some(20), Some(10)),
            ),
            (
                "genai-repo cache_write name",
                vec![],
                vec![
                    kv_str("gen_ai.operation.name", "generate_content"),
                    kv_str("gen_ai.provider.name", "gcp.gemini"),
                    kv_str("gen_ai.response.model", "unknown"),
                    kv_str("gen_ai.request.model", "gemini-2.5-pro"),
                    kv_int("gen_ai.usage.input_tokens", 300),
                    kv_int("gen_ai.usage.output_tokens", 30),
                    kv_int("gen_ai.usage.cache_write.input_tokens", 100),
                ],
                "generate_content gemini",
                (SpanType::Llm, Some("gemini-2.5-pro"), Some("gcp.gemini"), Some(300), Some(30), None, Some(100)),
            ),
            (
                "openlit anthropic excludes cache",
                vec![kv_str("telemetry.sdk.name", "openlit")],
                vec![
                    kv_str("gen_ai.operation.name", "chat"),
                    kv_str("gen_ai.system", "anthropic"),
                    kv_str("gen_ai.request.model", "claude-sonnet-4-5"),
                    kv_int("gen_ai.usage.input_tokens", 10),
                    kv_int("gen_ai.usage.output_tokens", 7),
                    kv_int("gen_ai.usage.cache_read.input_tokens", 5),
                    kv_int("gen_ai.usage.cache_creation.input_tokens", 1),
                ],
                "chat claude",
                (SpanType::Llm, Some("claude-sonnet-4-5"), Some("anthropic"), Some(16), Some(7), Some(5), Some(1)),
            ),
            (
                "traceloop tool",
                vec![],
                vec![kv_str("traceloop.span.kind", "tool"), kv_str("traceloop.entity.name", "search_docs")],
                "search_docs.tool",
                (SpanType::Tool, None, None, None, None, None, None),
            ),
            (
                "traceloop workflow",
                vec![],
                vec![kv_str("traceloop.span.kind", "workflow"), kv_str("traceloop.workflow.name", "w")],
                "w.workflow",
                (SpanType::Chain, None, None, None, None, None, None),
            ),
            (
                "openinference embedding",
                vec![],
                vec![
                    kv_str("openinference.span.kind", "EMBEDDING"),
                    kv_str("embedding.model_name", "text-embedding-3-small"),
                    kv_int("llm.token_count.prompt", 12),
                ],
                "embed",
                (SpanType::Embedding, Some("text-embedding-3-small"), Some("openai"), Some(12), None, None, None),
            ),
            (
                "claude code beta llm_request span",
                vec![kv_str("service.name", "claude-code")],
                vec![
                    kv_str("span.type", "claude_code.llm_request"),
                    kv_str("gen_ai.system", "anthropic"),
                    kv_str("model", "claude-opus-4-8"),
                    kv_int("input_tokens", 5),
                    kv_int("output_tokens", 9),
                    kv_int("cache_read_tokens", 100),
                    kv_int("cache_creation_tokens", 20),
                ],
                "claude_code.llm_request",
                (SpanType::Llm, Some("claude-opus-4-8"), Some("anthropic"), Some(125), Some(9), Some(100), Some(20)),
            ),
            (
                "invoke_agent is not a model call",
                vec![],
                vec![
                    kv_str("gen_ai.operation.name", "invoke_agent"),
                    kv_str("gen_ai.request.model", "gpt-4o"),
                    kv_int("gen_ai.usage.input_tokens", 1000),
                ],
                "invoke_agent x",
                (SpanType::Agent, Some("gpt-4o"), None, None, None, None, None),
            ),
            (
                "bare model + tokens infers llm",
                vec![],
                vec![kv_str("llm.model_name", "mistral-large-latest"), kv_str("llm.token_count.completion", "3")],
                "call",
                (SpanType::Llm, Some("mistral-large-latest"), Some("mistral_ai"), None, Some(3), None, None),
            ),
        ];
        for (name, res, attrs, span_name, exp) in cases {
            let m = traces(&one_span(res, attrs, span_name), NOW);
            assert_eq!(m.rejected, 0, "{name}");
            let s = &m.batch.spans[0];
            assert_eq!(s.span_type, exp.0, "{name}: type");
            assert_eq!(s.model.as_deref(), exp.1, "{name}: model");
            let call = m.batch.model_calls.first();
            if matches!(exp.0, SpanType::Llm | SpanType::Embedding) {
                let c = call.unwrap_or_else(|| panic!("{name}: no model call"));
                assert_eq!(c.provider.as_deref(), exp.2, "{name}: provider");
                assert_eq!(
                    (c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens),
                    (exp.3, exp.4, exp.5, exp.6),
                    "{name}: tokens"
                );
            } else {
                assert!(call.is_none(), "{name}: unexpected model call");
            }
            if exp.0 == SpanType::Tool {
                assert_eq!(m.batch.tool_calls.len(), 1, "{name}");
            }
        }
    }

    #[test]
    fn task_id_sources_and_run_ids() {
        let m = traces(
            &one_span(vec![], vec![kv_str("agent_console.task.id", "KAN-1"), kv_str("gen_ai.task.id", "run-9")], "x"),
            NOW,
        );
        assert_eq!(m.batch.spans[0].ctx.task_id.as_deref(), Some("KAN-1"));
        assert_eq!(m.batch.spans[0].ctx.run_id.as_deref(), Some("run-9"));
        let m = traces(&one_span(vec![kv_str("agent_console.task.id", "RES-2")], vec![], "x"), NOW);
        assert_eq!(m.batch.spans[0].ctx.task_id.as_deref(), Some("RES-2"));
        let m = traces(&one_span(vec![], vec![kv_str("baggage", "a=b,agent_console.task.id=T%2D3;p=1")], "x"), NOW);
        assert_eq!(m.batch.spans[0].ctx.task_id.as_deref(), Some("T-3"));
        let m = traces(&one_span(vec![], vec![kv_str("gen_ai.task.id", "only-run")], "x"), NOW);
        assert_eq!(m.batch.spans[0].ctx.task_id, None);
    }

    #[test]
    fn bad_ids_are_rejected_not_stored() {
        let mut req = one_span(vec![], vec![], "ok");
        let mut bad = req.resource_spans[0].scope_spans[0].spans[0].clone();
        bad.trace_id = vec![1; 5];
        let mut zero = bad.clone();
        zero.trace_id = vec![0; 16];
        let mut bad_parent = req.resource_spans[0].scope_spans[0].spans[0].clone();
        bad_parent.parent_span_id = vec![1; 3];
        req.resource_spans[0].scope_spans[0].spans.extend([bad, zero, bad_parent]);
        let m = traces(&req, NOW);
        assert_eq!(m.rejected, 3);
        assert_eq!(m.batch.spans.len(), 1);
        let msg = m.error_message.unwrap_or_default();
        assert!(msg.contains("16 bytes") && msg.contains("zero"), "{msg}");
    }

    #[test]
    fn span_status_error_marks_tool_failure() {
        let mut req = one_span(
            vec![],
            vec![kv_str("gen_ai.operation.name", "execute_tool"), kv_str("gen_ai.tool.name", "sh")],
            "t",
        );
        req.resource_spans[0].scope_spans[0].spans[0].status = Some(Status { code: 2, message: "exit 1".into() });
        let m = traces(&req, NOW);
        assert_eq!(m.batch.tool_calls[0].success, Some(false));
        assert_eq!(m.batch.tool_calls[0].error.as_deref(), Some("exit 1"));
        assert!(m.batch.spans[0].error);
    }

    #[test]
    fn log_event_name_and_time_fallbacks() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        event_name: "gen_ai.evaluation.result".into(),
                        body: Some(AnyValue { value: Some(Value::StringValue("hi".into())) }),
                        attributes: vec![kv("session.id", Value::StringValue("s".into()))],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let m = logs(&req, NOW);
        let l = &m.batch.logs[0];
        assert_eq!(l.event_name.as_deref(), Some("gen_ai.evaluation.result"));
        assert_eq!(l.time_us, NOW);
        assert_eq!(l.body.as_deref(), Some("hi"));
        assert_eq!(l.ctx.session_id.as_deref(), Some("s"));
    }
}
