//! What a committed batch says about each session, read from the mapped rows (pure, no I/O):
//! activity, errors and successes, explicit ends (Claude Code `SessionEnd` / `Stop` hook records,
//! OpenClaw end statuses, a root agent span ending), turns and tool calls opened and closed, the
//! latest model, and usage to add to the session's totals. The tracker turns these into states.

use agent_console_conventions::{hook, openclaw};

use crate::model::fastmap::FastMap;
use crate::model::records::{Batch, Context, SpanType};

/// Log severity from which a record counts as an error (OTLP `SEVERITY_NUMBER_ERROR`).
const ERROR_SEVERITY: i32 = 17;

/// Log events that are bookkeeping, not work: they never wake a finished or idle session (Claude
/// Code reports its own hook runs, including the `Stop` / `SessionEnd` hooks, after the fact).
const HOUSEKEEPING_EVENTS: &[&str] =
    &["claude_code.hook_registered", "claude_code.hook_execution_start", "claude_code.hook_execution_complete"];

/// Log events that are errors whatever their severity.
const ERROR_EVENTS: &[&str] = &["claude_code.api_error", hook::STOP_FAILURE, hook::MALFORMED];

/// Per-session facts of one batch. Times are the records' own (microseconds since the epoch).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    /// Newest time of a record that is work (not housekeeping, not the end record itself).
    pub last_work_us: Option<i64>,
    /// Oldest and newest time of any record.
    pub first_us: i64,
    pub last_us: i64,
    /// Newest explicit end: (time, reason).
    pub end: Option<(i64, String)>,
    /// Newest error: (time, reason).
    pub error: Option<(i64, String)>,
    /// Newest successful model or tool call.
    pub ok_us: Option<i64>,
    /// Newest turn signal: (time, open?) from `UserPromptSubmit` (open) / `Stop` (closed).
    pub turn: Option<(i64, bool)>,
    /// Newest `Notification` hook (a permission / idle prompt: waiting for a human).
    pub waiting_us: Option<i64>,
    pub tools_opened: u32,
    pub tools_closed: u32,
    /// Newest model called: (time, model).
    pub model: Option<(i64, String)>,
    pub model_calls: u64,
    pub tool_calls: u64,
    pub errors: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
}

impl Signals {
    fn new(t: i64) -> Self {
        Signals { first_us: t, last_us: t, ..Default::default() }
    }

    fn seen(&mut self, t: i64, ctx: &Context) {
        self.first_us = self.first_us.min(t);
        if t >= self.last_us {
            self.last_us = t;
            if let Some(t) = ctx.task_id.as_deref().filter(|t| self.task_id.as_deref() != Some(*t)) {
                self.task_id = Some(t.to_string());
            }
        }
        if self.agent_id.is_none() {
            self.agent_id = ctx.agent_id.as_deref().map(str::to_string);
        }
    }

    fn work(&mut self, t: i64) {
        self.last_work_us = Some(self.last_work_us.map_or(t, |w| w.max(t)));
    }

    fn error(&mut self, t: i64, reason: impl FnOnce() -> String) {
        self.errors += 1;
        self.error_state(t, reason);
    }

    /// An error that decides the state but is counted elsewhere.
    fn error_state(&mut self, t: i64, reason: impl FnOnce() -> String) {
        if self.error.as_ref().is_none_or(|(e, _)| t >= *e) {
            self.error = Some((t, reason()));
        }
    }

    fn ok(&mut self, t: i64) {
        self.ok_us = Some(self.ok_us.map_or(t, |o| o.max(t)));
    }

    fn end(&mut self, t: i64, reason: impl FnOnce() -> String) {
        if self.end.as_ref().is_none_or(|(e, _)| t >= *e) {
            self.end = Some((t, reason()));
        }
    }

    fn turn(&mut self, t: i64, open: bool) {
        if self.turn.is_none_or(|(e, _)| t >= e) {
            self.turn = Some((t, open));
        }
    }
}

/// Group a batch's rows by session. Rows without a session id say nothing about sessions.
pub fn from_batch(b: &Batch) -> FastMap<String, Signals> {
    let mut out: FastMap<String, Signals> = FastMap::default();
    fn entry<'m>(out: &'m mut FastMap<String, Signals>, ctx: &Context, t: i64) -> Option<&'m mut Signals> {
        let id = ctx.session_id.as_deref()?;
        if !out.contains_key(id) {
            out.insert(id.to_owned(), Signals::new(t));
        }
        let s = out.get_mut(id)?;
        s.seen(t, ctx);
        Some(s)
    }
    for r in &b.spans {
        let Some(s) = entry(&mut out, &r.ctx, r.end_us) else { continue };
        let root_agent = r.span_type == SpanType::Agent && r.parent_span_id.is_none();
        if root_agent {
            s.end(r.end_us, || format!("root agent span ended: {}", r.name));
            // A root agent span also covers work up to its start.
            s.work(r.start_us);
        } else {
            s.work(r.end_us);
        }
        if r.error && !matches!(r.span_type, SpanType::Llm | SpanType::Tool) {
            // Model and tool spans are counted through their model_calls / tool_calls rows.
            s.error(r.end_us, || format!("span failed: {}", r.name));
        }
    }
    for r in &b.logs {
        let Some(s) = entry(&mut out, &r.ctx, r.time_us) else { continue };
        let name = r.event_name.as_deref().unwrap_or("");
        match name {
            hook::SESSION_END => s.end(r.time_us, || hook::SESSION_END.to_owned()),
            hook::STOP => {
                s.turn(r.time_us, false);
                s.end(r.time_us, || hook::STOP.to_owned());
            }
            hook::STOP_FAILURE => {
                s.turn(r.time_us, false);
                s.work(r.time_us);
            }
            hook::USER_PROMPT_SUBMIT => {
                s.turn(r.time_us, true);
                s.work(r.time_us);
            }
            // A prompt for the human (permission / idle prompt): waiting until newer work.
            hook::NOTIFICATION => {
                s.waiting_us = Some(s.waiting_us.map_or(r.time_us, |w| w.max(r.time_us)));
                s.work(r.time_us);
            }
            hook::PRE_TOOL_USE => {
                s.tools_opened += 1;
                s.work(r.time_us);
            }
            hook::POST_TOOL_USE => {
                s.tools_closed += 1;
                s.work(r.time_us);
            }
            hook::POST_TOOL_USE_FAILURE => {
                s.tools_closed += 1;
                s.work(r.time_us);
                // Counted by its tool_calls row (the hook's tool span); the state changes here too,
                // in case that row arrives in another batch.
                s.error_state(r.time_us, || "tool call failed (PostToolUseFailure)".to_owned());
            }
            openclaw::STATUS_EVENT => {
                let status = r.body.as_deref().unwrap_or("");
                if openclaw::END_STATUSES.contains(&status) {
                    s.end(r.time_us, || format!("openclaw status {status}"));
                } else {
                    s.work(r.time_us);
                }
            }
            n if HOUSEKEEPING_EVENTS.contains(&n) => {}
            _ => s.work(r.time_us),
        }
        // A failed tool is counted once, by its tool_calls row (the hook shim also sends a span).
        let tool_failure = name == hook::POST_TOOL_USE_FAILURE;
        if !tool_failure && (r.severity_number >= ERROR_SEVERITY || ERROR_EVENTS.contains(&name)) {
            s.error(r.time_us, || format!("error event: {}", if name.is_empty() { "log" } else { name }));
        }
    }
    for r in &b.model_calls {
        let Some(s) = entry(&mut out, &r.ctx, r.time_us) else { continue };
        s.work(r.time_us);
        s.model_calls += 1;
        s.input_tokens += r.input_tokens.unwrap_or(0);
        s.output_tokens += r.output_tokens.unwrap_or(0);
        s.cache_read_tokens += r.cache_read_tokens.unwrap_or(0);
        s.cache_write_tokens += r.cache_write_tokens.unwrap_or(0);
        s.cost_usd += r.cost_usd.unwrap_or(0.0);
        if let Some(m) = &r.model {
            if s.model.as_ref().is_none_or(|(t, _)| r.time_us >= *t) {
                s.model = Some((r.time_us, m.clone()));
            }
        }
        if r.error {
            s.error(r.time_us, || format!("model call failed: {}", r.model.as_deref().unwrap_or("unknown model")));
        } else {
            s.ok(r.time_us);
        }
    }
    for r in &b.tool_calls {
        let Some(s) = entry(&mut out, &r.ctx, r.time_us) else { continue };
        s.work(r.time_us);
        s.tool_calls += 1;
        if r.success == Some(false) {
            s.error(r.time_us, || format!("tool call failed: {}", r.tool_name));
        } else {
            s.ok(r.time_us);
        }
    }
    out
}
