//! Attribute names this collector understands, in one place, grouped by concept and listed in
//! priority order (first match wins). The table mirrors `shared/reference/semconv.md` §8 with two
//! deliberate changes documented in ARCHITECTURE.md: a *task* is only `agent_console.task.id`, and
//! framework run ids (`gen_ai.task.id`, `prompt.id`, ...) are kept as `run_id`.

use agent_console_conventions::attr as shared;

/// Our own convention: the operator's unit of work (ticket, Kanban card).
pub const TASK_ID: &str = shared::TASK_ID;
/// Our own convention: the session that spawned this one (subagents, child sessions).
pub const PARENT_SESSION_ID: &str = shared::PARENT_SESSION_ID;
/// The same key as carried by W3C baggage copied onto spans by a baggage span processor.
pub const BAGGAGE_TASK_ID: &str = "baggage.agent_console.task.id";
/// A raw W3C `baggage` header value some SDKs attach as an attribute.
pub const BAGGAGE: &str = "baggage";

pub const SERVICE_NAME: &str = "service.name";
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";

pub const SESSION_ID: &[&str] = &[
    "gen_ai.conversation.id",
    "session.id",
    "session_id",
    "traceloop.association.properties.session_id",
    "langfuse.session.id",
    "coding_agent.session.id",
];
pub const AGENT_ID: &[&str] = &["gen_ai.agent.id", "agent_id", "coding_agent.agent.id"];
pub const AGENT_NAME: &[&str] = &["gen_ai.agent.name", "agent.name", "agent_type"];
/// On an agent span only (span type `Agent`), in priority order after `AGENT_NAME`: OpenInference
/// graph nodes (CrewAI, LangGraph, OpenAI Agents), OpenLLMetry's entity name, OpenLIT's agent role.
/// The span name is the last source (`agent_from_span_name`).
pub const AGENT_SPAN_NAME: &[&str] = &[
    "graph.node.name",
    "graph.node.id",
    TRACELOOP_ENTITY_NAME,
    "gen_ai.agent.role",
    "crewai.agent.role",
    "crewai.task.agent",
];
pub const RUN_ID: &[&str] = &[
    "gen_ai.task.id",
    "gen_ai.agent.task.id",
    "task_id",
    "workflow.run_id",
    "prompt.id",
    "prompt_id",
    agent_console_conventions::attr::OPENCLAW_RUN_ID,
];
pub const MODEL: &[&str] = &[
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model_name",
    "llm.model_name",
    "llm.request.model_name",
    "model",
    "embedding.model_name",
    // LangChain metadata OpenLLMetry forwards as association properties (LangChain's own names).
    "traceloop.association.properties.ls_model_name",
];
pub const PROVIDER: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "traceloop.association.properties.ls_provider",
];
/// LangGraph's checkpoint namespace (`parent_node:id|node:id`), as OpenLLMetry forwards it; a call
/// inside a subgraph belongs to the agent its outermost node names (`normalize::langgraph_agent`).
pub const LANGGRAPH_NS: &[&str] =
    &["traceloop.association.properties.langgraph_checkpoint_ns", "traceloop.association.properties.checkpoint_ns"];
/// OpenInference's LangChain metadata (JSON text holding `langgraph_checkpoint_ns`).
pub const OI_METADATA: &str = "metadata";

/// Provider values that name a framework, not a model provider (OpenLLMetry's LangChain spans say
/// `gen_ai.system = Langchain`); the next source is used.
pub const PROVIDER_PLACEHOLDERS: &[&str] = &["", "unknown", "none", "langchain", "crewai", "llamaindex", "langgraph"];
pub const INPUT_TOKENS: &[&str] =
    &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt", CC_INPUT_TOKENS];
/// Claude Code's own key: Anthropic usage semantics, cache tokens *excluded*.
pub const CC_INPUT_TOKENS: &str = "input_tokens";
pub const OUTPUT_TOKENS: &[&str] =
    &["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion", "output_tokens"];
pub const CACHE_READ_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
    "cache_read_tokens",
];
pub const CACHE_WRITE_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.prompt_tokens_details.cache_creation_tokens",
    "cache_creation_tokens",
];
pub const COST_USD: &[&str] = &["gen_ai.usage.cost", "llm.cost.total", "cost_usd"];
pub const COST_USD_MICROS: &str = "cost_usd_micros";
pub const TOOL_NAME: &[&str] = &["gen_ai.tool.name", "tool.name", "tool_name"];
pub const TOOL_CALL_ID: &[&str] = &["gen_ai.tool.call.id", "tool_use_id", "tool.id", "tool_call.id"];
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
pub const OPENINFERENCE_KIND: &str = "openinference.span.kind";
pub const TRACELOOP_KIND: &str = "traceloop.span.kind";
pub const TRACELOOP_ENTITY_NAME: &str = "traceloop.entity.name";
pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
/// Claude Code beta traces put the span name here.
pub const CC_SPAN_TYPE: &str = "span.type";
pub const HOOK_EVENT_NAME: &str = "hook_event_name";
pub const ERROR_TYPE: &str = "error.type";
pub const SUCCESS: &str = "success";
pub const DURATION_MS: &str = "duration_ms";
pub const EVENT_NAME: &str = "event.name";
pub const ERROR: &str = "error";
pub const REQUEST_ID: &[&str] = &["gen_ai.response.id", "request_id"];

/// Claude Code's native log events (body / `event.name`, with or without the prefix).
pub const CC_API_REQUEST: &str = "claude_code.api_request";
pub const CC_API_ERROR: &str = "claude_code.api_error";
pub const CC_TOOL_RESULT: &str = "claude_code.tool_result";
pub const CC_SERVICE_PREFIX: &str = "claude-code";
pub const CC_SCOPE_PREFIX: &str = "com.anthropic.claude_code";

/// Model-name values that name nothing; normalisation falls through to the next source.
pub const MODEL_PLACEHOLDERS: &[&str] = &["", "unknown", "none", "null", "n/a", "undefined", "default"];

/// Every key the normaliser looks up, for the one-pass attribute index.
pub fn all_keys() -> impl Iterator<Item = &'static str> {
    [
        SESSION_ID,
        AGENT_ID,
        AGENT_NAME,
        RUN_ID,
        MODEL,
        PROVIDER,
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        CACHE_READ_TOKENS,
        CACHE_WRITE_TOKENS,
        COST_USD,
        TOOL_NAME,
        TOOL_CALL_ID,
        REQUEST_ID,
        AGENT_SPAN_NAME,
        LANGGRAPH_NS,
    ]
    .into_iter()
    .flatten()
    .copied()
    .chain([
        TASK_ID,
        PARENT_SESSION_ID,
        BAGGAGE_TASK_ID,
        BAGGAGE,
        SERVICE_NAME,
        TELEMETRY_SDK_NAME,
        OI_METADATA,
        COST_USD_MICROS,
        OPERATION_NAME,
        OPENINFERENCE_KIND,
        TRACELOOP_KIND,
        TRACELOOP_ENTITY_NAME,
        LLM_REQUEST_TYPE,
        CC_SPAN_TYPE,
        HOOK_EVENT_NAME,
        ERROR_TYPE,
        SUCCESS,
        DURATION_MS,
        EVENT_NAME,
        ERROR,
        // OpenClaw shim call records: the dedup keys.
        agent_console_conventions::openclaw::MESSAGE_ID_ATTR,
        agent_console_conventions::openclaw::RECONCILE_ID_ATTR,
    ])
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use crate::model::normalize::traces;
    use crate::model::records::SpanType;

    fn s(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }
    fn i(k: &str, v: i64) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::IntValue(v)) }), ..Default::default() }
    }
    fn one(resource: Vec<KeyValue>, attrs: Vec<KeyValue>, name: &str) -> ExportTraceServiceRequest {
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

    /// (case, span attrs, span name) -> (span type, agent id, agent is only the service name)
    #[test]
    fn agent_identity_table() {
        let svc = || vec![s("service.name", "svc")];
        type Case = (&'static str, Vec<KeyValue>, &'static str, SpanType, &'static str, bool);
        let cases: Vec<Case> = vec![
            ("genai agent name", vec![s("gen_ai.agent.name", "planner")], "chat", SpanType::Other, "planner", false),
            (
                "genai agent id wins over name",
                vec![s("gen_ai.agent.id", "ag-1"), s("gen_ai.agent.name", "planner")],
                "x",
                SpanType::Other,
                "ag-1",
                false,
            ),
            (
                "genai invoke_agent span",
                vec![s("gen_ai.operation.name", "invoke_agent"), s("gen_ai.agent.name", "Triage")],
                "invoke_agent Triage",
                SpanType::Agent,
                "Triage",
                false,
            ),
            (
                "openlit executor step named like an agent is not one",
                vec![s("gen_ai.operation.name", "invoke_agent"), s("gen_ai.provider.name", "crewai")],
                "invoke_agent generate_plan",
                SpanType::Agent,
                "svc",
                true,
            ),
            (
                "openinference crewai agent span",
                vec![s("openinference.span.kind", "AGENT"), s("graph.node.id", "Researcher")],
                "Researcher._execute_core",
                SpanType::Agent,
                "Researcher",
                false,
            ),
            (
                "openinference graph.node.name before id",
                vec![s("openinference.span.kind", "AGENT"), s("graph.node.id", "n1"), s("graph.node.name", "Writer")],
                "x",
                SpanType::Agent,
                "Writer",
                false,
            ),
            (
                "openinference agent span name only",
                vec![s("openinference.span.kind", "AGENT")],
                "Writer._execute_core",
                SpanType::Agent,
                "Writer",
                false,
            ),
            (
                "openinference agent.name",
                vec![s("openinference.span.kind", "LLM"), s("agent.name", "coder"), s("llm.model_name", "gpt-4o")],
                "ChatOpenAI",
                SpanType::Llm,
                "coder",
                false,
            ),
            (
                "openllmetry agent span",
                vec![s("traceloop.span.kind", "agent"), s("traceloop.entity.name", "Analyst")],
                "Analyst.agent",
                SpanType::Agent,
                "Analyst",
                false,
            ),
            (
                "openlit agent role",
                vec![s("gen_ai.operation.name", "invoke_agent"), s("gen_ai.agent.role", "Editor")],
                "invoke_agent",
                SpanType::Agent,
                "Editor",
                false,
            ),
            (
                "graph node on a chain span names no agent",
                vec![s("openinference.span.kind", "CHAIN"), s("graph.node.id", "tools")],
                "tools",
                SpanType::Chain,
                "svc",
                true,
            ),
            (
                "llm span without an agent falls back to the service",
                vec![s("openinference.span.kind", "LLM"), s("llm.model_name", "gpt-4o")],
                "ChatCompletion",
                SpanType::Llm,
                "svc",
                true,
            ),
            (
                "agent span with no name falls back",
                vec![s("openinference.span.kind", "AGENT")],
                "run",
                SpanType::Agent,
                "svc",
                true,
            ),
        ];
        for (name, attrs, span_name, ty, agent, fallback) in cases {
            let m = traces(&one(svc(), attrs, span_name), 0);
            let sp = &m.batch.spans[0];
            assert_eq!(sp.span_type, ty, "{name}: type");
            assert_eq!(sp.ctx.agent_id.as_deref(), Some(agent), "{name}: agent");
            assert_eq!(sp.ctx.agent_fallback, fallback, "{name}: fallback");
            assert!(sp.ctx.session_fallback, "{name}: no session named");
        }
        // A resource agent name is the record's own agent too.
        let m = traces(&one(vec![s("service.name", "svc"), s("gen_ai.agent.name", "res-agent")], vec![], "x"), 0);
        assert_eq!(m.batch.spans[0].ctx.agent_id.as_deref(), Some("res-agent"));
        assert!(!m.batch.spans[0].ctx.agent_fallback);
    }

    /// A placeholder model never wins over a real name from any source; framework names are not providers.
    #[test]
    fn model_and_provider_table() {
        type Case = (&'static str, Vec<KeyValue>, Option<&'static str>, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "openllmetry langchain: placeholder request model, association properties",
                vec![
                    s("llm.request.type", "chat"),
                    s("gen_ai.system", "Langchain"),
                    s("gen_ai.request.model", "unknown"),
                    s("traceloop.association.properties.ls_model_name", "gpt-4o-mini"),
                    s("traceloop.association.properties.ls_provider", "openai"),
                    i("gen_ai.usage.input_tokens", 10),
                ],
                Some("gpt-4o-mini"),
                Some("openai"),
            ),
            (
                "response model beats a placeholder request model",
                vec![
                    s("llm.request.type", "chat"),
                    s("gen_ai.request.model", "unknown"),
                    s("gen_ai.response.model", "gpt-4o-2024-08-06"),
                    s("traceloop.association.properties.ls_model_name", "gpt-4o"),
                    i("gen_ai.usage.input_tokens", 10),
                ],
                Some("gpt-4o-2024-08-06"),
                Some("openai"),
            ),
            (
                "every placeholder falls through",
                vec![
                    s("gen_ai.operation.name", "chat"),
                    s("gen_ai.response.model", "default"),
                    s("gen_ai.request.model", "none"),
                    s("llm.model_name", ""),
                    s("model", "unknown"),
                    s("traceloop.association.properties.ls_model_name", "claude-sonnet-4-5"),
                    i("gen_ai.usage.input_tokens", 10),
                ],
                Some("claude-sonnet-4-5"),
                Some("anthropic"),
            ),
            (
                "only placeholders: no model",
                vec![
                    s("gen_ai.operation.name", "chat"),
                    s("gen_ai.request.model", "unknown"),
                    i("gen_ai.usage.input_tokens", 1),
                ],
                None,
                None,
            ),
        ];
        for (name, attrs, model, provider) in cases {
            let m = traces(&one(vec![], attrs, "call"), 0);
            let c = m.batch.model_calls.first().unwrap_or_else(|| panic!("{name}: no call"));
            assert_eq!(c.model.as_deref(), model, "{name}: model");
            assert_eq!(c.provider.as_deref(), provider, "{name}: provider");
        }
    }
}
