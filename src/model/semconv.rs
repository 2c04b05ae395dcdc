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
];
pub const PROVIDER: &[&str] = &["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"];
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
