//! The control plane's vocabulary: command kinds and statuses, a session's control mode, the
//! in-memory records of commands and approvals, and what the collector has seen of a session's
//! control channel (runtime, transport, events) from which capabilities are derived.

use std::collections::{BTreeSet, HashSet};

use serde_json::{json, Value};

use crate::live::message::rfc3339;

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pause,
    Resume,
    Inject,
    Kill,
    Approve,
    Deny,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Pause, Kind::Resume, Kind::Inject, Kind::Kill, Kind::Approve, Kind::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pause => "pause",
            Kind::Resume => "resume",
            Kind::Inject => "inject",
            Kind::Kill => "kill",
            Kind::Approve => "approve",
            Kind::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a command is in its lifecycle: `accepted -> delivered -> observed`, or one of the ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Delivered,
    Observed,
    Expired,
    Failed,
    Superseded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Delivered => "delivered",
            Status::Observed => "observed",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Status {
        match s {
            "delivered" => Status::Delivered,
            "observed" => Status::Observed,
            "expired" => Status::Expired,
            "failed" => Status::Failed,
            "superseded" => Status::Superseded,
            _ => Status::Accepted,
        }
    }

    /// No further step will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Observed | Status::Expired | Status::Failed | Status::Superseded)
    }
}

/// A session's control mode (sticky: stored, restored at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Running,
    Paused,
    Killed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Paused => "paused",
            Mode::Killed => "killed",
        }
    }

    pub fn parse(s: &str) -> Mode {
        match s {
            "paused" => Mode::Paused,
            "killed" => Mode::Killed,
            _ => Mode::Running,
        }
    }
}

/// How a session's hooks reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The `agent-console-hook` binary (command hooks): every capability, including hard kill
    /// and the inbox.
    Binary,
    /// Claude Code's `http` hooks posting to `/hooks/claude`: no hard kill, no inbox, no
    /// SessionStart, and a hold ends with the hook's timeout.
    Http,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Binary => "hook-binary",
            Transport::Http => "http-hooks",
        }
    }
}

/// One command, as kept in memory while it is not final (and returned by the API).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub session_id: String,
    pub kind: Kind,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub tool_use_id: Option<String>,
    pub hard: bool,
    pub for_session: bool,
    pub by: String,
    pub status: Status,
    pub result: Option<String>,
    pub delivered_via: Option<String>,
    pub accepted_us: i64,
    pub delivered_us: Option<i64>,
    pub observed_us: Option<i64>,
    pub ended_us: Option<i64>,
}

impl Command {
    pub fn to_json(&self) -> Value {
        json!({
            "command_id": self.id,
            "session_id": self.session_id,
            "kind": self.kind.as_str(),
            "message": self.message,
            "reason": self.reason,
            "tool_use_id": self.tool_use_id,
            "hard": self.hard,
            "for_session": self.for_session,
            "issued_by": self.by,
            "status": self.status.as_str(),
            "result": self.result,
            "delivered_via": self.delivered_via,
            "accepted_at": rfc3339(self.accepted_us),
            "delivered_at": self.delivered_us.map(rfc3339),
            "observed_at": self.observed_us.map(rfc3339),
            "ended_at": self.ended_us.map(rfc3339),
        })
    }
}

/// What a held tool call's approval became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    /// Timed out: answered with the rule's default.
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> ApprovalStatus {
        match s {
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            _ => ApprovalStatus::Pending,
        }
    }
}

/// A tool call held by an approval rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub id: String,
    pub session_id: String,
    pub tool_use_id: String,
    pub tool_name: Option<String>,
    pub tool_input: Value,
    pub rule: String,
    pub status: ApprovalStatus,
    /// What a timeout answers: `true` allow, `false` deny.
    pub default_allow: bool,
    pub requested_us: i64,
    pub expires_us: i64,
    pub answered_us: Option<i64>,
    pub answered_by: Option<String>,
    pub reason: Option<String>,
    /// The approve / deny command that answered it (delivered with the hook answer).
    pub command_id: Option<String>,
    /// The answer reached the agent's hook.
    pub delivered: bool,
}

impl Approval {
    /// The answer allows the tool call (approved, or timed out with an allowing default).
    pub fn allows(&self) -> bool {
        match self.status {
            ApprovalStatus::Approved => true,
            ApprovalStatus::Expired => self.default_allow,
            _ => false,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "approval_id": self.id,
            "session_id": self.session_id,
            "tool_use_id": self.tool_use_id,
            "tool_name": self.tool_name,
            "tool_input": self.tool_input,
            "rule": self.rule,
            "status": self.status.as_str(),
            "default": if self.default_allow { "allow" } else { "deny" },
            "requested_at": rfc3339(self.requested_us),
            "expires_at": rfc3339(self.expires_us),
            "answered_at": self.answered_us.map(rfc3339),
            "answered_by": self.answered_by,
            "reason": self.reason,
            "command_id": self.command_id,
        })
    }
}

/// The hook events that can carry each kind of answer.
pub mod events {
    pub const SESSION_START: &str = "SessionStart";
    pub const USER_PROMPT_SUBMIT: &str = "UserPromptSubmit";
    pub const PRE_TOOL_USE: &str = "PreToolUse";
    pub const POST_TOOL_USE: &str = "PostToolUse";
    pub const POST_TOOL_USE_FAILURE: &str = "PostToolUseFailure";
    pub const POST_TOOL_BATCH: &str = "PostToolBatch";
    pub const STOP: &str = "Stop";
    pub const SESSION_END: &str = "SessionEnd";

    /// Where a pause holds the agent (the answer is withheld).
    pub const HOLD: &[&str] = &[PRE_TOOL_USE, POST_TOOL_BATCH, USER_PROMPT_SUBMIT, STOP];
    /// Where an inject can ride as `additionalContext` (Stop: `decision: block`).
    pub const INJECT: &[&str] =
        &[POST_TOOL_BATCH, PRE_TOOL_USE, POST_TOOL_USE, USER_PROMPT_SUBMIT, SESSION_START, STOP];
    /// Events that open or continue a turn.
    pub const IN_TURN: &[&str] =
        &[USER_PROMPT_SUBMIT, PRE_TOOL_USE, POST_TOOL_USE, POST_TOOL_USE_FAILURE, POST_TOOL_BATCH];
}

/// What the collector has seen of one session's control channel.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub transport: Option<Transport>,
    /// Hook records from a binary without control support (OTLP to `/v1/logs`).
    pub legacy_hooks: bool,
    /// OpenClaw records (shim or plugin).
    pub openclaw: bool,
    /// The shim serving this OpenClaw session's gateway, as it stands now (filled in from
    /// `openclaw_link::Links` when capabilities are computed; never stored).
    pub openclaw_link: Option<super::openclaw::LinkView>,
    /// Hook event names seen (bounded: Claude Code has a few dozen).
    pub events: BTreeSet<String>,
    /// An `--inbox` waiter has registered (interactive session with the inbox hook installed).
    pub inbox: bool,
    /// SessionEnd arrived: the process is gone.
    pub ended: bool,
    /// A turn is under way (a prompt or tool event without the Stop that ends it).
    pub in_turn: bool,
    pub last_event_us: i64,
}

/// A hook answer being held right now (shown to the operator).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub token: u64,
    pub event: String,
    pub tool_name: Option<String>,
    pub tool_use_id: Option<String>,
    pub tool_input: Option<Value>,
    pub since_us: i64,
    pub transport: Transport,
}

impl Held {
    pub fn to_json(&self) -> Value {
        json!({
            "event": self.event,
            "tool_name": self.tool_name,
            "tool_use_id": self.tool_use_id,
            "tool_input": self.tool_input,
            "since": rfc3339(self.since_us),
            "transport": self.transport.as_str(),
        })
    }
}

/// One session's control state.
#[derive(Debug, Clone, Default)]
pub struct SessionCtl {
    pub mode: Mode,
    /// The pause / kill command that set the mode.
    pub mode_command: Option<String>,
    pub mode_since_us: i64,
    pub mode_by: Option<String>,
    pub mode_reason: Option<String>,
    /// The kill or pause that set the mode was `hard` (Claude Code: the hook binary signals the
    /// process; OpenClaw pause: the gateway's archive fence, lifted by the resume).
    pub hard_kill: bool,
    /// Approval rules approved for the rest of the session.
    pub allowed_rules: HashSet<String>,
    /// Commands of this session that are not final, oldest first.
    pub open: Vec<String>,
    /// Consecutive Stop blocks (Claude Code caps them at 8).
    pub stop_blocks: u32,
    pub seen: Seen,
    pub held: Vec<Held>,
    /// The registered inbox waiter's id (newest wins; older ones are released).
    pub inbox_id: Option<String>,
    /// Agent id as the hook records map it (for per-agent approval rules).
    pub agent_id: Option<String>,
}

impl SessionCtl {
    /// The registered inbox waiter's id, if any.
    pub fn inbox_waiter_id(&self) -> Option<&str> {
        self.inbox_id.as_deref()
    }
}
