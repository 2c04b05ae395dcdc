//! Delivery adapters, one per agent runtime. An adapter says what a session of its runtime can do
//! now and why not otherwise (the capabilities the API shows and the refusals `issue` returns);
//! the runtime's transport delivers commands from the shared control state. Claude Code
//! (`claude_code.rs`) pulls decisions at its hook boundaries; OpenClaw (`openclaw.rs`) gets them
//! through its shim's inbox long-poll (`openclaw_link.rs`). A new runtime is one new file
//! implementing `Adapter`, chosen in `for_runtime`.

use serde_json::{json, Map, Value};

use super::model::{Kind, SessionCtl};

/// Why a command kind cannot work for a session now.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: String,
}

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Self {
        Refusal { reason: reason.into() }
    }
}

pub trait Adapter: Send + Sync {
    /// The runtime's name as shown in `control.runtime`.
    fn runtime(&self) -> &'static str;
    /// `None` when `kind` (with `hard`, for kill and pause) can work for this session now.
    fn refusal(&self, kind: Kind, hard: bool, ctl: &SessionCtl) -> Option<Refusal>;
    /// A caveat to show next to an available kind.
    fn notes(&self, _kind: Kind, _ctl: &SessionCtl) -> Option<String> {
        None
    }
    /// A caveat to show next to an available `hard` variant.
    fn hard_notes(&self, _kind: Kind, _ctl: &SessionCtl) -> Option<String> {
        None
    }
}

/// Sessions with only OTLP telemetry from a runtime that has no control channel.
pub struct TelemetryOnly;

impl Adapter for TelemetryOnly {
    fn runtime(&self) -> &'static str {
        "otlp"
    }

    fn refusal(&self, _kind: Kind, _hard: bool, _ctl: &SessionCtl) -> Option<Refusal> {
        Some(Refusal::new(
            "no control channel: only OTLP telemetry was seen from this session (Claude Code: install with \
             `agent-console-hook install`)",
        ))
    }
}

/// Pick the adapter for a session from what was seen of it: hook records (Claude Code), OpenClaw
/// records, or the service name of its telemetry.
pub fn for_runtime(ctl: &SessionCtl, service_name: Option<&str>) -> &'static dyn Adapter {
    if ctl.seen.transport.is_some() || ctl.seen.legacy_hooks {
        return &super::claude_code::ClaudeCode;
    }
    if ctl.seen.openclaw || service_name == Some(agent_console_conventions::openclaw::SERVICE) {
        return &super::openclaw::OpenClaw;
    }
    if service_name == Some(agent_console_conventions::hook::SERVICE) {
        return &super::claude_code::ClaudeCode;
    }
    &TelemetryOnly
}

/// `{"pause": {"available": true}, "hard_kill": {"available": false, "reason": "..."}, ...}`.
pub fn capabilities(adapter: &dyn Adapter, ctl: &SessionCtl, pending_approvals: usize) -> Value {
    let mut m = Map::new();
    let mut put = |name: &str, refusal: Option<Refusal>, note: Option<String>| {
        let mut o = Map::new();
        o.insert("available".into(), json!(refusal.is_none()));
        if let Some(r) = refusal {
            o.insert("reason".into(), json!(r.reason));
        } else if let Some(n) = note {
            o.insert("note".into(), json!(n));
        }
        m.insert(name.into(), Value::Object(o));
    };
    for kind in [Kind::Pause, Kind::Resume, Kind::Inject, Kind::Kill] {
        put(kind.as_str(), adapter.refusal(kind, false, ctl), adapter.notes(kind, ctl));
    }
    put("hard_kill", adapter.refusal(Kind::Kill, true, ctl), None);
    put("hard_pause", adapter.refusal(Kind::Pause, true, ctl), adapter.hard_notes(Kind::Pause, ctl));
    let r = adapter.refusal(Kind::Approve, false, ctl).or_else(|| {
        (pending_approvals == 0).then(|| Refusal::new("no tool call is waiting for approval in this session"))
    });
    put(Kind::Approve.as_str(), r, None);
    // Deny answers the waiting tool call, or with none waiting denies the next one.
    let note = (pending_approvals == 0).then(|| adapter.notes(Kind::Deny, ctl)).flatten();
    put(Kind::Deny.as_str(), adapter.refusal(Kind::Deny, false, ctl), note);
    Value::Object(m)
}
