//! The names the collector and the shims agree on, in one place both sides compile, so that what
//! a shim sends and what the collector maps cannot drift: attribute keys (`attr`), Claude Code
//! hook records (`hook`), OpenClaw records (`openclaw`) and session states (`status`).

/// Attribute keys (OTLP `KeyValue` keys) written by the shims and read by the collector.
pub mod attr {
    /// The operator's unit of work (ticket, card). Our own convention.
    pub const TASK_ID: &str = "agent_console.task.id";
    /// Which shim produced a record: `claude-hook` or `openclaw` (see `source`).
    pub const SOURCE: &str = "agent_console.source";
    /// The session that spawned this one (subagent, child session).
    pub const PARENT_SESSION_ID: &str = "agent_console.session.parent_id";
    /// Session identity; both keys are written so GenAI and Claude Code readers agree.
    pub const SESSION_ID: &str = "session.id";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";
    /// Claude Code's prompt id (equals native `prompt.id`).
    pub const PROMPT_ID: &str = "prompt.id";
    /// Tool call id: the GenAI key and Claude Code's native key, both written.
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const TOOL_USE_ID: &str = "tool_use_id";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const AGENT_ID: &str = "gen_ai.agent.id";
    pub const AGENT_NAME: &str = "gen_ai.agent.name";
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const ERROR_TYPE: &str = "error.type";
    pub const MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const PROVIDER: &str = "gen_ai.provider.name";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const CACHE_READ_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const CACHE_WRITE_TOKENS: &str = "gen_ai.usage.cache_creation.input_tokens";
    /// A cost the source reported, in USD.
    pub const COST_USD: &str = "gen_ai.usage.cost";
    pub const SERVICE_NAME: &str = "service.name";
    /// Hook records: the hook event name, the agent type inside a subagent, the working directory,
    /// the whole stdin payload as JSON (truncated to the shim's limit) and whether it was cut.
    pub const HOOK_EVENT: &str = "agent_console.hook.event";
    pub const AGENT_TYPE: &str = "agent_console.agent.type";
    pub const CWD: &str = "agent_console.cwd";
    pub const PAYLOAD: &str = "agent_console.hook.payload";
    pub const PAYLOAD_TRUNCATED: &str = "agent_console.hook.payload_truncated";
    /// How a hook record reached the collector: `hook::TRANSPORT_COMMAND` (the `agent-console-hook`
    /// binary) or `hook::TRANSPORT_HTTP` (Claude Code's `http` hook type). Records without it came
    /// from a hook binary that predates control (OTLP to `/v1/logs`).
    pub const HOOK_TRANSPORT: &str = "agent_console.hook.transport";
    /// The id the hook binary gives each hook call (hex), so a re-sent call is stored once.
    pub const HOOK_RECORD_ID: &str = "agent_console.hook.record_id";
    /// OpenClaw records: the session key, its run id, the session status.
    pub const OPENCLAW_SESSION_KEY: &str = "openclaw.session.key";
    pub const OPENCLAW_RUN_ID: &str = "openclaw.run.id";
    pub const OPENCLAW_STATUS: &str = "openclaw.session.status";
}

/// Values of `attr::SOURCE`.
pub mod source {
    pub const CLAUDE_HOOK: &str = "claude-hook";
    pub const OPENCLAW: &str = "openclaw";
}

/// Claude Code hook records. A hook call becomes one log record whose `event_name` is the hook
/// event name exactly as Claude Code sends it (`SessionStart`, `PreToolUse`, ...; any other name is
/// kept as is), with scope `SCOPE`.
pub mod hook {
    /// Instrumentation scope of hook records and hook tool spans.
    pub const SCOPE: &str = "agent-console-hook";
    /// `service.name` of hook records (Claude Code's own telemetry uses `claude-code` too).
    pub const SERVICE: &str = "claude-code";
    /// Agent name of the main thread (subagents use their `agent_type`).
    pub const MAIN_AGENT: &str = "claude-code";
    pub const SESSION_START: &str = "SessionStart";
    pub const USER_PROMPT_SUBMIT: &str = "UserPromptSubmit";
    pub const PRE_TOOL_USE: &str = "PreToolUse";
    pub const POST_TOOL_USE: &str = "PostToolUse";
    pub const POST_TOOL_USE_FAILURE: &str = "PostToolUseFailure";
    pub const POST_TOOL_BATCH: &str = "PostToolBatch";
    pub const NOTIFICATION: &str = "Notification";
    pub const STOP: &str = "Stop";
    pub const STOP_FAILURE: &str = "StopFailure";
    pub const SUBAGENT_START: &str = "SubagentStart";
    pub const SUBAGENT_STOP: &str = "SubagentStop";
    pub const PRE_COMPACT: &str = "PreCompact";
    pub const POST_COMPACT: &str = "PostCompact";
    pub const SESSION_END: &str = "SessionEnd";
    /// Malformed stdin: recorded as an error event with this name (severity ERROR).
    pub const MALFORMED: &str = "agent_console.hook.malformed_input";
    /// Span name prefix of a tool call span (`execute_tool Bash`).
    pub const TOOL_SPAN_PREFIX: &str = "execute_tool ";
    /// Values of `attr::HOOK_TRANSPORT`.
    pub const TRANSPORT_COMMAND: &str = "command";
    pub const TRANSPORT_HTTP: &str = "http";
    /// Records the shim dropped from a full spool: a WARN log record with this `event_name`,
    /// carrying the count in `DROPPED_COUNT`, sent once the collector is reachable again.
    pub const SPOOL_DROPPED: &str = "agent_console.hook.spool_dropped";
    pub const DROPPED_COUNT: &str = "agent_console.hook.dropped_records";
    /// Spool records found damaged (torn or corrupt) and skipped, reported with `SPOOL_DROPPED`.
    pub const DAMAGED_COUNT: &str = "agent_console.hook.damaged_records";
    /// `error.type` of a failed tool span: the tool failed, or the user interrupted it.
    pub const TOOL_ERROR: &str = "tool_error";
    pub const TOOL_INTERRUPTED: &str = "interrupted";
}

/// OpenClaw records written by `agent-console-openclaw`.
pub mod openclaw {
    /// Instrumentation scope of shim records.
    pub const SCOPE: &str = "agent-console-openclaw";
    pub const SERVICE: &str = "openclaw";
    /// A session appeared or changed status: `event_name`; the body is the status string
    /// (`queued`, `running`, `done`, `failed`, `killed`, `timeout`).
    pub const STATUS_EVENT: &str = "openclaw.session.status";
    /// One finished run's usage: `event_name` of the model-call record.
    pub const RUN_EVENT: &str = "openclaw.run";
    /// Statuses that end a session.
    pub const END_STATUSES: &[&str] = &["done", "failed", "killed", "timeout"];
    /// OpenClaw's own `sessionId` (the key is `attr::OPENCLAW_SESSION_KEY`).
    pub const SESSION_ID_ATTR: &str = "openclaw.session.id";
    /// A parent session's `childSessions` keys (string array).
    pub const CHILD_SESSIONS: &str = "openclaw.session.children";
    /// `gen_ai.operation.name` of a run record, and the `operation` of its model-call row: one
    /// row per finished run (its totals), not one per model call.
    pub const RUN_OPERATION: &str = "openclaw.run";
    /// One model call the gateway served (an assistant `session.message` with usage): the
    /// `event_name` of the shim's per-call record. One model-call row each, `operation = 'chat'`,
    /// `request_id` = the message id, `run_id` = the run it belongs to.
    pub const CALL_EVENT: &str = "openclaw.model_call";
    /// The gateway message id of a call record (the dedup key).
    pub const MESSAGE_ID_ATTR: &str = "openclaw.message.id";
    /// `sessions.usage` said a session used more than the calls the shim saw (calls served while
    /// it was disconnected): one model-call row with the difference, `operation =
    /// 'openclaw.reconcile'`, no run id.
    pub const RECONCILE_EVENT: &str = "openclaw.usage.reconcile";
    pub const RECONCILE_OPERATION: &str = "openclaw.reconcile";
    /// The reconcile record's id (the dedup key), `reconcile:<session key>:<counted input>:<output>`.
    pub const RECONCILE_ID_ATTR: &str = "openclaw.reconcile.id";
    /// On a reconcile record: the session's cumulative usage as `sessions.usage` reported it (input
    /// includes the cache). The collector turns the record into the difference from what it has
    /// stored for the session, so a shim that lost its ledger (corrupt state file) cannot count a
    /// session twice.
    pub const SESSION_TOTAL_INPUT_TOKENS: &str = "openclaw.session.total.input_tokens";
    pub const SESSION_TOTAL_OUTPUT_TOKENS: &str = "openclaw.session.total.output_tokens";
    pub const SESSION_TOTAL_CACHE_READ_TOKENS: &str = "openclaw.session.total.cache_read_tokens";
    pub const SESSION_TOTAL_CACHE_WRITE_TOKENS: &str = "openclaw.session.total.cache_write_tokens";
    pub const SESSION_TOTAL_COST_USD: &str = "openclaw.session.total.cost_usd";
    /// On a status record that ends a run: the usage the run really had (the sum of its served
    /// calls; 0 for a killed run whose calls were never served). Not `gen_ai.usage.*`: a status
    /// record is never a model call.
    pub const RUN_INPUT_TOKENS: &str = "openclaw.run.input_tokens";
    pub const RUN_OUTPUT_TOKENS: &str = "openclaw.run.output_tokens";
    pub const RUN_COST_USD: &str = "openclaw.run.cost_usd";
    pub const RUN_CALLS: &str = "openclaw.run.calls";
    /// The collector's inbox the shim long-polls for its sessions' commands.
    pub const INBOX_PATH: &str = "/openclaw/inbox";

    /// The `diagnostics-otel` plugin's per-model-call span and its attributes.
    pub mod plugin {
        pub const USAGE_SPAN: &str = "openclaw.model.usage";
        pub const PROVIDER: &str = "openclaw.provider";
        pub const MODEL: &str = "openclaw.model";
        pub const CHANNEL: &str = "openclaw.channel";
        pub const TOKENS_INPUT: &str = "openclaw.tokens.input";
        pub const TOKENS_OUTPUT: &str = "openclaw.tokens.output";
        pub const TOKENS_CACHE_READ: &str = "openclaw.tokens.cache_read";
        pub const TOKENS_CACHE_WRITE: &str = "openclaw.tokens.cache_write";
        /// Older plugin versions only; 2026.9.x leaves session keys out.
        pub const SESSION_KEY: &str = "openclaw.sessionKey";
        pub const SESSION_ID: &str = "openclaw.sessionId";
        /// Cumulative metrics (re-sent on every export: never summed as points).
        pub const TOKENS_METRIC: &str = "openclaw.tokens";
        pub const COST_METRIC: &str = "openclaw.cost.usd";
    }
}

/// Session states (the `sessions.status` column and live `session` messages).
pub mod status {
    pub const RUNNING: &str = "running";
    pub const IDLE: &str = "idle";
    pub const PAUSED: &str = "paused";
    pub const ERRORED: &str = "errored";
    pub const FINISHED: &str = "finished";
}
