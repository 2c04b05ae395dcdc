//! The normalised agent model: one row type per stored table. Times are microseconds since the
//! Unix epoch (UTC), ids are hex strings, raw attributes are JSON text. Produced by
//! `model::normalize`, consumed by `store::writer`.

use std::sync::Arc;

pub use super::ids::Id;

/// What kind of work a span represents, across conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanType {
    Llm,
    Tool,
    Agent,
    Chain,
    Retriever,
    Embedding,
    Other,
}

impl SpanType {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanType::Llm => "llm",
            SpanType::Tool => "tool",
            SpanType::Agent => "agent",
            SpanType::Chain => "chain",
            SpanType::Retriever => "retriever",
            SpanType::Embedding => "embedding",
            SpanType::Other => "other",
        }
    }
}

/// Who/what a record belongs to; shared by every row type.
///
/// The strings are shared (`Arc<str>`): a span's model or tool call row, the pipeline's memory and
/// the live stream take a context by reference count, and mapping makes one of each distinct
/// value per export (`normalize::Interner`) rather than one per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub session_id: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub agent_name: Option<Arc<str>>,
    pub task_id: Option<Arc<str>>,
    /// Framework run / turn id (`gen_ai.task.id`, `prompt.id`, ...): not a task.
    pub run_id: Option<Arc<str>>,
    pub service_name: Option<Arc<str>>,
    /// The session that spawned this record's session (`agent_console.session.parent_id`).
    pub parent_session_id: Option<Arc<str>>,
    /// The agent is only `service.name` (the record named none): an agent span above it in its
    /// trace takes precedence (`pipeline::inherit`).
    pub agent_fallback: bool,
    /// The session is only the trace id (the record named none): inherited the same way.
    pub session_fallback: bool,
}

/// An owned copy of a shared context string (for rows that keep `String`s: `Seen`, `Fixup`, ...).
pub fn owned(s: &Option<Arc<str>>) -> Option<String> {
    s.as_deref().map(str::to_string)
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub time_us: i64,
    pub trace_id: Id,
    pub span_id: Id,
    pub parent_span_id: Option<Id>,
    pub name: String,
    pub kind: &'static str,
    pub start_us: i64,
    pub end_us: i64,
    pub duration_ms: f64,
    pub status_code: &'static str,
    pub status_message: Option<String>,
    pub scope_name: Option<Arc<str>>,
    pub span_type: SpanType,
    pub model: Option<String>,
    pub error: bool,
    pub ctx: Context,
    pub attributes: String,
    pub resource_attributes: Arc<str>,
    pub events: Option<String>,
    pub links: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub time_us: i64,
    pub observed_us: i64,
    pub trace_id: Option<Id>,
    pub span_id: Option<Id>,
    pub severity_number: i32,
    pub severity_text: Option<String>,
    pub event_name: Option<String>,
    pub body: Option<String>,
    pub scope_name: Option<Arc<str>>,
    pub ctx: Context,
    pub attributes: String,
    pub resource_attributes: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PointRow {
    pub time_us: i64,
    pub start_us: Option<i64>,
    pub name: Arc<str>,
    pub description: Option<Arc<str>>,
    pub unit: Option<Arc<str>>,
    /// gauge | sum | histogram | exponential_histogram | summary
    pub kind: &'static str,
    /// delta | cumulative | unspecified (gauges and summaries: unspecified)
    pub temporality: &'static str,
    pub is_monotonic: Option<bool>,
    /// Gauge/sum value; for histograms and summaries the sum when reported.
    pub value: Option<f64>,
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Bucket bounds/counts or quantiles as JSON, for distributions.
    pub distribution: Option<String>,
    /// Stable hash of (resource, scope, name, point attributes): one series.
    pub series_id: String,
    pub ctx: Context,
    pub attributes: String,
    pub resource_attributes: Arc<str>,
}

/// One billable model call, whichever signal carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCallRow {
    pub time_us: i64,
    /// span | log
    pub source: &'static str,
    pub trace_id: Option<Id>,
    pub span_id: Option<Id>,
    pub parent_span_id: Option<Id>,
    pub request_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub operation: Option<String>,
    /// OpenTelemetry convention: includes cache reads and writes.
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// reported (the source sent it) or null until priced.
    pub cost_source: Option<&'static str>,
    pub duration_ms: Option<f64>,
    pub error: bool,
    /// Which token rule was applied: `otel` (input includes cache) or `cache_added`.
    pub token_rule: &'static str,
    pub ctx: Context,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRow {
    pub time_us: i64,
    pub source: &'static str,
    pub trace_id: Option<Id>,
    pub span_id: Option<Id>,
    pub tool_call_id: Option<String>,
    pub tool_name: String,
    pub duration_ms: Option<f64>,
    pub success: Option<bool>,
    pub error: Option<String>,
    pub ctx: Context,
}

/// A session or agent seen in a batch (folded into the `sessions` / `agents` tables).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub id: String,
    pub first_us: i64,
    pub last_us: i64,
    pub agent_id: Option<String>,
    pub display_name: Option<String>,
    pub service_name: Option<Arc<str>>,
    pub task_id: Option<String>,
    /// Sessions only: the parent session, when a record named one.
    pub parent_id: Option<String>,
}

/// A session's state after a change, decided by the writer's session tracker
/// (`sessions::tracker`): stored in `sessions` / `session_transitions` and streamed as `session`.
/// `*_us` are microseconds since the epoch; `time_us`, `status_since_us` and `last_activity_us`
/// are the collector's clock, `first_seen_us` / `last_seen_us` the records' own times.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionUpdate {
    pub time_us: i64,
    pub session_id: String,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub parent_session_id: Option<String>,
    pub display_name: Option<String>,
    pub service_name: Option<Arc<str>>,
    /// None for a session seen for the first time.
    pub from_status: Option<&'static str>,
    pub status: &'static str,
    pub stuck: bool,
    /// Waiting for a human (a permission / idle prompt, a pending approval).
    pub waiting: bool,
    /// A tool call started and not finished past the stuck threshold (busy, not stuck).
    pub long_tool: bool,
    pub reason: String,
    pub status_since_us: i64,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub last_activity_us: i64,
    pub ended_at_us: Option<i64>,
    pub model: Option<String>,
    pub model_calls: u64,
    pub tool_calls: u64,
    pub errors: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
}

/// A correction of rows already stored for one span (model call, tool call, span): the values an
/// ancestor span carries, applied where `Some` (`store::fixups`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fixup {
    pub trace_id: String,
    pub span_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub session_id: Option<String>,
    pub task_id: Option<String>,
    /// The agent the rows were stored with (the session's agent is moved only from this one).
    pub from_agent: Option<String>,
    /// The session the rows were stored with.
    pub from_session: Option<String>,
    /// The stored rows' time (lower bound for the scan).
    pub time_us: i64,
}

/// A span naming an agent / session / task that may be the late parent of rows stored before the
/// pipeline's memory covered its trace (before a restart, or in a trace it had forgotten): the
/// writer finds its descendants among the stored spans (`store::fixups::adopt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Adopt {
    pub trace_id: String,
    pub span_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub session_id: Option<String>,
    pub task_id: Option<String>,
    /// The span's start and end: its descendants start between them (bounds for the scan).
    pub start_us: i64,
    pub end_us: i64,
}

/// Everything one export request maps to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    pub spans: Vec<SpanRow>,
    pub logs: Vec<LogRow>,
    pub points: Vec<PointRow>,
    pub model_calls: Vec<ModelCallRow>,
    pub tool_calls: Vec<ToolCallRow>,
    pub sessions: Vec<Seen>,
    pub agents: Vec<Seen>,
    /// Session state changes (filled by the pipeline after mapping; empty out of `normalize`).
    pub session_updates: Vec<SessionUpdate>,
    /// Tasks and session links first seen in these rows (the pipeline's `tasks` stage).
    pub task_links: Vec<crate::tasks::link::TaskLink>,
    /// Rows stored by earlier records that get the agent / session / task of an ancestor span that
    /// arrived later (`pipeline::inherit`); the writer applies them in this batch's transaction.
    pub fixups: Vec<Fixup>,
    /// Spans whose stored descendants the writer looks up (`pipeline::inherit`, after a restart).
    pub adopts: Vec<Adopt>,
    /// The ingest-log position these rows came from (0: not from a record, e.g. a timer's
    /// session changes). Live message ids derive from it, so a replay keeps them.
    pub log_pos: u64,
    /// The thread that made the rows, where they are freed (`local_free`).
    pub origin: crate::local_free::Origin,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.logs.is_empty() && self.points.is_empty()
    }
    /// Rows that will be written (for metrics and queue accounting).
    pub fn row_count(&self) -> usize {
        self.spans.len() + self.logs.len() + self.points.len() + self.model_calls.len() + self.tool_calls.len()
    }
    pub fn append(&mut self, mut other: Batch) {
        // Merged into an empty batch (made elsewhere), the rows are `other`'s: so is their home.
        if self.row_count() == 0 {
            self.origin = other.origin;
        }
        /// `other`'s rows at the end of `into`; an empty `into` takes `other`'s vector whole (an
        /// export is usually merged into an empty batch: no copy of ~0.3 KB a row, no new pages).
        fn take<T>(into: &mut Vec<T>, other: &mut Vec<T>) {
            if into.is_empty() {
                std::mem::swap(into, other);
            } else {
                into.append(other);
            }
        }
        take(&mut self.spans, &mut other.spans);
        take(&mut self.logs, &mut other.logs);
        take(&mut self.points, &mut other.points);
        take(&mut self.model_calls, &mut other.model_calls);
        take(&mut self.tool_calls, &mut other.tool_calls);
        take(&mut self.sessions, &mut other.sessions);
        take(&mut self.agents, &mut other.agents);
        take(&mut self.session_updates, &mut other.session_updates);
        take(&mut self.task_links, &mut other.task_links);
        take(&mut self.fixups, &mut other.fixups);
        take(&mut self.adopts, &mut other.adopts);
        self.log_pos = self.log_pos.max(other.log_pos);
    }
}
