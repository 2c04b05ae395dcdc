//! The control plane: commands to running agents (pause, resume, inject, kill, approve, deny), each
//! moving `accepted -> delivered -> observed` (or `expired` / `failed` / `superseded`), every step
//! stored and audited (`persist`) and streamed (`command` / `approval` live messages); per-session
//! control state (`running | paused | killed`, queued messages, held tool calls, approvals); the
//! approval policy (`policy`); capabilities per session (`adapter`: one adapter per runtime,
//! `claude_code` and `openclaw`); the HTTP API (`api`).
//!
//! Concurrency: every state change takes the *lane* (an async mutex that serialises changes and
//! their commit), computes on copies under the short `state` lock, commits with `Store::apply`,
//! and only then takes effect in memory, wakes waiters and publishes. Hook calls with nothing
//! pending never take the lane (one short lock, no database work). A hook answer whose only
//! effects are steps of a resume (delivering a resume twice is harmless) goes out before its
//! commit, which finishes in the background still holding the lane; every other answer waits
//! for its commit (a crash must never deliver an inject or a kill twice).
//!
//! `Control::issue` is the in-process API (the HTTP route and alert rules, as `rule:<name>`, use it).

pub mod adapter;
pub mod api;
pub mod args;
pub mod claude_code;
pub mod model;
pub mod openclaw;
pub mod openclaw_link;
pub mod persist;
pub mod policy;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::live::{Draft, Hub};
use crate::store::{Store, StoreError};
use claude_code::{Effect, HookEvent, InboxPlan, Outcome, View};
use model::{events, Approval, ApprovalStatus, Command, Held, Kind, Mode, SessionCtl, Status, Transport};
use persist::{Audit, Op};
use policy::{Policy, PolicyError, PolicySpec};

pub use agent_console_hook::wire::InboxAnswer;

/// Live message kinds added by control.
pub const LIVE_COMMAND: &str = "command";
pub const LIVE_APPROVAL: &str = "approval";

/// Sessions kept in memory; beyond it idle sessions with nothing open are forgotten.
const MAX_SESSIONS: usize = 100_000;
/// Answers remembered by record id, so a re-sent hook call gets the same answer.
const MAX_ANSWERS: usize = 4096;
/// Longest message or reason accepted.
pub const MAX_TEXT_BYTES: usize = 32 * 1024;
/// Longest a command waits for logged telemetry to be committed before its session counts as
/// unknown.
const SESSION_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Settings (from `ControlArgs`).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Key of answer signatures (the ingest token; empty without one).
    pub signing_key: Vec<u8>,
    /// Longest hold of an `http` hook call that does not say its own (`x-agent-console-hold-secs`).
    pub http_hold: Duration,
    /// The same for UserPromptSubmit, whose default Claude Code timeout is 30 s.
    pub http_hold_prompt: Duration,
    /// Longest single long-poll of the hook binary.
    pub max_poll: Duration,
    /// Messages not delivered by then expire.
    pub inject_ttl: Duration,
    /// Approval rules and defaults from `--approval-policy`.
    pub policy_file: PolicySpec,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            signing_key: Vec::new(),
            http_hold: Duration::from_secs(570),
            http_hold_prompt: Duration::from_secs(25),
            max_poll: Duration::from_secs(30),
            inject_ttl: Duration::from_secs(24 * 3600),
            policy_file: PolicySpec::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(String),
    #[error("no session {0:?}")]
    NotFound(String),
    /// The command cannot work for this session now (409).
    #[error("{reason}")]
    Refused { reason: String, capabilities: Value },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// A command as asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub kind: Kind,
    pub message: Option<String>,
    pub reason: Option<String>,
    pub tool_use_id: Option<String>,
    pub hard: bool,
    pub for_session: bool,
}

impl CommandRequest {
    pub fn new(kind: Kind) -> Self {
        CommandRequest { kind, message: None, reason: None, tool_use_id: None, hard: false, for_session: false }
    }

    fn validate(&self) -> Result<(), ControlError> {
        let long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_TEXT_BYTES);
        if long(&self.message) || long(&self.reason) || long(&self.tool_use_id) {
            return Err(ControlError::Invalid(format!(
                "message, reason and tool_use_id are limited to {MAX_TEXT_BYTES} bytes"
            )));
        }
        if self.kind == Kind::Inject && self.message.as_deref().is_none_or(|m| m.trim().is_empty()) {
            return Err(ControlError::Invalid("inject needs a non-empty \"message\"".into()));
        }
        if self.kind != Kind::Inject && self.message.is_some() {
            return Err(ControlError::Invalid("only inject takes a \"message\" (use \"reason\")".into()));
        }
        if self.hard && !matches!(self.kind, Kind::Kill | Kind::Pause) {
            return Err(ControlError::Invalid("\"hard\" applies to kill and pause only".into()));
        }
        if self.for_session && self.kind != Kind::Approve {
            return Err(ControlError::Invalid("\"for_session\" applies to approve only".into()));
        }
        if self.tool_use_id.is_some() && !matches!(self.kind, Kind::Approve | Kind::Deny) {
            return Err(ControlError::Invalid("\"tool_use_id\" applies to approve and deny only".into()));
        }
        Ok(())
    }
}

/// One hook call to decide.
pub struct HookCall<'a> {
    pub event: &'a agent_console_hook::Event,
    pub transport: Transport,
    /// The binary's id of this call: a re-send gets the same answer.
    pub record_id: Option<&'a str>,
    /// How long this request may be held.
    pub hold_for: Duration,
    /// The agent the call's records map to (per-agent approval rules).
    pub agent_id: Option<String>,
}

/// The answer to a hook call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// No decision.
    Pass,
    Answer(Value),
    /// Still held when this request's time ran out: the binary asks again; the value is what to
    /// answer if it has to stop waiting.
    Held(Option<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookReply {
    pub reply: Reply,
    /// Hard kill: end the Claude Code process (the hook binary does it).
    pub signal: bool,
}

/// See `Control::downgrade`.
#[derive(Clone)]
pub struct WeakControl(std::sync::Weak<Inner>);

impl WeakControl {
    pub fn upgrade(&self) -> Option<Control> {
        self.0.upgrade().map(|inner| Control { inner })
    }
}

/// The control plane. Clone freely.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    live: Arc<Hub>,
    cfg: ControlConfig,
    cancel: CancellationToken,
    lane: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
    policy: RwLock<Arc<Policy>>,
    seq: AtomicU64,
}

/// A held hook answer, by (session, event, tool_use_id).
type HeldKey = (String, String, Option<String>);

#[derive(Default)]
struct State {
    sessions: HashMap<String, SessionCtl>,
    /// Commands not final.
    commands: HashMap<String, Command>,
    /// Approvals by id (pending, and answered ones until delivered or old).
    approvals: HashMap<String, Approval>,
    /// (session, tool_use_id) -> approval id.
    by_tool: HashMap<(String, String), String>,
    watchers: HashMap<String, watch::Sender<u64>>,
    answers: HashMap<String, HookReply>,
    answer_order: VecDeque<String>,
    /// Held hook calls with the time they last asked.
    held: HashMap<HeldKey, (Held, i64)>,
    next_token: u64,
    /// OpenClaw shims polling their inbox (`openclaw_link`).
    openclaw: openclaw_link::Links,
}

fn now_us() -> i64 {
    crate::api::sessions::now_us()
}

/// Changes computed under the state lock and committed together.
struct Tx {
    now_us: i64,
    sessions: HashMap<String, SessionCtl>,
    commands: HashMap<String, Command>,
    approvals: HashMap<String, Approval>,
    persist_sessions: HashSet<String>,
    ops: Vec<Op>,
    drafts: Vec<Draft>,
    wake: HashSet<String>,
    tracker: Vec<(String, bool, String)>,
}

impl Tx {
    fn new(now_us: i64) -> Self {
        Tx {
            now_us,
            sessions: HashMap::new(),
            commands: HashMap::new(),
            approvals: HashMap::new(),
            persist_sessions: HashSet::new(),
            ops: Vec::new(),
            drafts: Vec::new(),
            wake: HashSet::new(),
            tracker: Vec::new(),
        }
    }

    fn session(&mut self, st: &State, id: &str) -> &mut SessionCtl {
        self.sessions.entry(id.to_string()).or_insert_with(|| st.sessions.get(id).cloned().unwrap_or_default())
    }

    fn command(&mut self, st: &State, id: &str) -> Option<&mut Command> {
        if !self.commands.contains_key(id) {
            let c = st.commands.get(id)?.clone();
            self.commands.insert(id.to_string(), c);
        }
        self.commands.get_mut(id)
    }

    fn approval(&mut self, st: &State, id: &str) -> Option<&mut Approval> {
        if !self.approvals.contains_key(id) {
            let a = st.approvals.get(id)?.clone();
            self.approvals.insert(id.to_string(), a);
        }
        self.approvals.get_mut(id)
    }

    fn audit(&mut self, a: Audit) {
        self.ops.push(Op::Audit(a));
    }

    fn publish_command(&mut self, c: &Command, agent: Option<&str>, step: &str) {
        let mut data = c.to_json();
        if let Some(o) = data.as_object_mut() {
            o.insert("step".into(), json!(step));
        }
        self.drafts.push(Draft {
            kind: LIVE_COMMAND,
            session_id: Some(c.session_id.as_str().into()),
            agent_id: agent.map(Arc::from),
            task_id: None,
            data: data.to_string().into(),
        });
    }

    fn publish_approval(&mut self, a: &Approval, agent: Option<&str>) {
        self.drafts.push(Draft {
            kind: LIVE_APPROVAL,
            session_id: Some(a.session_id.as_str().into()),
            agent_id: agent.map(Arc::from),
            task_id: None,
            data: a.to_json().to_string().into(),
        });
    }

    /// Move a command to `to` (ignored when it is final already).
    fn step(&mut self, st: &State, id: &str, to: Status, note: Option<String>, via: Option<String>) {
        let now = self.now_us;
        let Some(c) = self.command(st, id) else { return };
        if c.status.is_final() || c.status == to {
            return;
        }
        match to {
            Status::Delivered => {
                c.delivered_us = Some(now);
                c.delivered_via = via.clone();
            }
            Status::Observed => {
                if c.delivered_us.is_none() {
                    c.delivered_us = Some(now);
                }
                c.observed_us = Some(now);
            }
            Status::Expired | Status::Failed | Status::Superseded => c.ended_us = Some(now),
            Status::Accepted => {}
        }
        c.status = to;
        if note.is_some() {
            c.result = note.clone();
        }
        let c = c.clone();
        let action = match to {
            Status::Delivered => "command.delivered",
            Status::Observed => "command.observed",
            Status::Expired => "command.expired",
            Status::Failed => "command.failed",
            Status::Superseded => "command.superseded",
            Status::Accepted => "command.accepted",
        };
        self.ops.push(Op::Command(c.clone()));
        self.audit(Audit {
            time_us: now,
            actor: c.by.clone(),
            action,
            session_id: Some(c.session_id.clone()),
            command_id: Some(c.id.clone()),
            approval_id: None,
            kind: Some(c.kind.as_str()),
            result: note.or(via),
            detail: None,
        });
        let agent = st.sessions.get(&c.session_id).and_then(|s| s.agent_id.clone());
        self.publish_command(&c, agent.as_deref(), to.as_str());
        self.wake.insert(c.session_id.clone());
    }
}

impl Control {
    /// Load the stored state and start the background sweeper (ends with `cancel`).
    pub async fn start(
        store: Store,
        live: Arc<Hub>,
        cfg: ControlConfig,
        cancel: CancellationToken,
    ) -> Result<Control, ControlError> {
        let since = now_us() - 2 * 86_400_000_000;
        let loaded = store.apply(move |conn| persist::load(conn, since)).await?;
        let policy = Policy::build(cfg.policy_file.clone(), loaded.policy.clone().unwrap_or_default())?;
        let mut st = State::default();
        for (id, ctl) in loaded.sessions {
            st.sessions.insert(id, ctl);
        }
        for row in loaded.seen {
            let c = st.sessions.entry(row.session_id).or_default();
            c.seen.transport = row.transport;
            c.seen.legacy_hooks = row.legacy;
            c.seen.openclaw = row.openclaw;
            c.seen.ended = row.ended;
            c.seen.events = row.events.into_iter().collect();
            c.agent_id = row.agent_id;
        }
        for c in loaded.commands {
            st.sessions.entry(c.session_id.clone()).or_default().open.push(c.id.clone());
            st.commands.insert(c.id.clone(), c);
        }
        for a in loaded.approvals {
            st.by_tool.insert((a.session_id.clone(), a.tool_use_id.clone()), a.id.clone());
            st.approvals.insert(a.id.clone(), a);
        }
        // (session, paused, reason) for every session control knows: the session tracker is
        // restored from DuckDB's last checkpoint, which may predate the last pause or resume.
        let modes: Vec<(String, bool, String)> = st
            .sessions
            .iter()
            .map(|(id, c)| {
                let paused = c.mode == Mode::Paused;
                let reason = if paused { pause_reason(c) } else { "resumed".to_string() };
                (id.clone(), paused, reason)
            })
            .collect();
        tracing::info!(
            sessions = st.sessions.len(),
            open_commands = st.commands.len(),
            approvals = st.approvals.len(),
            "control state restored"
        );
        let control = Control {
            inner: Arc::new(Inner {
                store,
                live,
                cfg,
                cancel,
                lane: Arc::new(tokio::sync::Mutex::new(())),
                state: Mutex::new(st),
                policy: RwLock::new(Arc::new(policy)),
                seq: AtomicU64::new(0),
            }),
        };
        // A pause stays a pause and a resume a resume: the session tracker shows it again (a
        // no-op when it does).
        for (id, paused, reason) in modes {
            let _ = control.inner.store.set_paused(id, paused, reason).await;
        }
        let sweeper = control.clone();
        tokio::spawn(async move { sweeper.sweep_loop().await });
        Ok(control)
    }

    /// A handle that does not keep the control plane (and its store) alive: for the live hub,
    /// which outlives the writer's drain at shutdown.
    pub fn downgrade(&self) -> WeakControl {
        WeakControl(Arc::downgrade(&self.inner))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key answers are signed with.
    pub fn signing_key(&self) -> &[u8] {
        &self.inner.cfg.signing_key
    }

    pub fn config(&self) -> &ControlConfig {
        &self.inner.cfg
    }

    fn new_id(&self, prefix: &str, now: i64) -> String {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_{now:x}{n:04x}")
    }

    /// Commit `tx`: store it, then make it take effect, wake waiters and publish.
    async fn commit(&self, mut tx: Tx) -> Result<(), ControlError> {
        for id in std::mem::take(&mut tx.persist_sessions) {
            if let Some(ctl) = tx.sessions.get(&id) {
                tx.ops.push(Op::Session { session_id: id.clone(), ctl: ctl.clone() });
            }
        }
        persist::write(&self.inner.store, std::mem::take(&mut tx.ops)).await?;
        {
            let mut st = self.lock();
            let st = &mut *st;
            for (id, c) in tx.commands {
                if c.status.is_final() {
                    st.commands.remove(&id);
                } else {
                    st.commands.insert(id, c);
                }
            }
            for (id, w) in tx.sessions {
                let s = st.sessions.entry(id).or_default();
                s.mode = w.mode;
                s.mode_command = w.mode_command;
                s.mode_since_us = w.mode_since_us;
                s.mode_by = w.mode_by;
                s.mode_reason = w.mode_reason;
                s.hard_kill = w.hard_kill;
                s.allowed_rules = w.allowed_rules;
                s.stop_blocks = w.stop_blocks;
                s.open = w.open;
            }
            for s in st.sessions.values_mut() {
                if !s.open.is_empty() {
                    s.open.retain(|c| st.commands.contains_key(c));
                }
            }
            for (id, a) in tx.approvals {
                st.by_tool.insert((a.session_id.clone(), a.tool_use_id.clone()), id.clone());
                st.approvals.insert(id, a);
            }
            for s in &tx.wake {
                if let Some(w) = st.watchers.get(s) {
                    w.send_modify(|v| *v += 1);
                }
                st.openclaw.wake(s);
            }
        }
        for d in tx.drafts {
            self.inner.live.publish(d);
        }
        for (id, paused, reason) in tx.tracker {
            let store = self.inner.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.set_paused(id, paused, reason).await {
                    tracing::warn!(error = %e, "control: session tracker not updated");
                }
            });
        }
        Ok(())
    }

    /// Issue a command for a session as `by` (a token name, or `rule:<name>` for alert rules).
    /// Refused (`ControlError::Refused`, with the reason and the session's capabilities) when it
    /// cannot work for this session now: never accepted and silently lost.
    pub async fn issue(&self, session_id: &str, req: CommandRequest, by: &str) -> Result<Command, ControlError> {
        req.validate()?;
        let service = self.session_service(session_id).await?;
        let _lane = self.inner.lane.lock().await;
        let now = now_us();
        let mut tx = Tx::new(now);
        let mut new_id = None;
        let refused = {
            let st = self.lock();
            let mut ctl = st.sessions.get(session_id).cloned().unwrap_or_default();
            ctl.seen.openclaw_link = st.openclaw.view(session_id, now);
            let adapter = adapter::for_runtime(&ctl, service.as_deref());
            let pending: Vec<&Approval> = st
                .approvals
                .values()
                .filter(|a| a.session_id == session_id && a.status == ApprovalStatus::Pending)
                .collect();
            let mut refusal = adapter.refusal(req.kind, req.hard, &ctl).map(|r| r.reason);
            let mut target: Option<String> = None;
            if refusal.is_none() && matches!(req.kind, Kind::Approve | Kind::Deny) {
                let found: Vec<&&Approval> = match &req.tool_use_id {
                    Some(t) => pending.iter().filter(|a| &a.tool_use_id == t).collect(),
                    None => pending.iter().collect(),
                };
                match found.as_slice() {
                    [a] => target = Some(a.id.clone()),
                    [] if req.tool_use_id.is_some() => {
                        refusal = Some("no tool call with this tool_use_id is waiting for approval".into())
                    }
                    // Nothing waiting: a deny means "deny the session's next tool call" (one-shot).
                    [] if req.kind == Kind::Deny => {}
                    [] => refusal = Some("no tool call is waiting for approval in this session".into()),
                    many => {
                        refusal = Some(format!("{} tool calls are waiting for approval: give tool_use_id", many.len()))
                    }
                }
            }
            match refusal {
                Some(reason) => {
                    let caps = adapter::capabilities(adapter, &ctl, pending.len());
                    tx.audit(Audit {
                        time_us: now,
                        actor: by.to_string(),
                        action: "command.refused",
                        session_id: Some(session_id.to_string()),
                        command_id: None,
                        approval_id: None,
                        kind: Some(req.kind.as_str()),
                        result: Some(reason.clone()),
                        detail: Some(request_json(&req)),
                    });
                    Some((reason, caps))
                }
                None => {
                    new_id = Some(self.accept(&st, &mut tx, session_id, &req, by, target));
                    None
                }
            }
        };
        let id = new_id;
        self.commit(tx).await?;
        if let Some((reason, capabilities)) = refused {
            return Err(ControlError::Refused { reason, capabilities });
        }
        let st = self.lock();
        id.and_then(|id| st.commands.get(&id).cloned())
            .ok_or_else(|| ControlError::Store(StoreError::Unavailable("command not recorded".into())))
    }

    /// The accepted command's effects (under the lane and the state lock).
    fn accept(
        &self,
        st: &State,
        tx: &mut Tx,
        sid: &str,
        req: &CommandRequest,
        by: &str,
        target: Option<String>,
    ) -> String {
        let now = tx.now_us;
        let id = self.new_id("cmd", now);
        let mut cmd = Command {
            id: id.clone(),
            session_id: sid.to_string(),
            kind: req.kind,
            message: req.message.clone(),
            reason: req.reason.clone(),
            tool_use_id: req.tool_use_id.clone(),
            hard: req.hard,
            for_session: req.for_session,
            by: by.to_string(),
            status: Status::Accepted,
            result: None,
            delivered_via: None,
            accepted_us: now,
            delivered_us: None,
            observed_us: None,
            ended_us: None,
        };
        let open: Vec<Command> = tx
            .session(st, sid)
            .open
            .clone()
            .iter()
            .filter_map(|c| tx.commands.get(c).cloned().or_else(|| st.commands.get(c).cloned()))
            .collect();
        let supersede = |tx: &mut Tx, kinds: &[Kind], why: String| {
            for c in open.iter().filter(|c| kinds.contains(&c.kind) && c.status == Status::Accepted) {
                tx.step(st, &c.id, Status::Superseded, Some(why.clone()), None);
            }
        };
        let reason_text = |verb: &str| match req.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => format!("{verb} by {by}: {r}"),
            None => format!("{verb} by {by}"),
        };
        match req.kind {
            Kind::Pause => {
                supersede(tx, &[Kind::Resume], format!("superseded by pause {id}"));
                let c = tx.session(st, sid);
                c.hard_kill = req.hard;
                c.mode = Mode::Paused;
                c.mode_command = Some(id.clone());
                c.mode_since_us = now;
                c.mode_by = Some(by.to_string());
                c.mode_reason = req.reason.clone();
                tx.persist_sessions.insert(sid.to_string());
                tx.tracker.push((sid.to_string(), true, reason_text("paused")));
            }
            Kind::Resume => {
                let pause = tx.session(st, sid).mode_command.clone();
                if let Some(p) = pause {
                    tx.step(
                        st,
                        &p,
                        Status::Superseded,
                        Some(format!("resumed by {id} before it reached the agent")),
                        None,
                    );
                }
                let c = tx.session(st, sid);
                // The resume of a hard pause lifts its fence (OpenClaw: the session is restored).
                cmd.hard = std::mem::take(&mut c.hard_kill);
                c.mode = Mode::Running;
                c.mode_command = None;
                c.mode_since_us = now;
                c.mode_by = Some(by.to_string());
                c.mode_reason = req.reason.clone();
                tx.persist_sessions.insert(sid.to_string());
                tx.tracker.push((sid.to_string(), false, reason_text("resumed")));
            }
            Kind::Kill => {
                supersede(tx, &[Kind::Pause, Kind::Resume, Kind::Inject], format!("superseded by kill {id}"));
                let pending: Vec<String> = st
                    .approvals
                    .values()
                    .filter(|a| a.session_id == sid && a.status == ApprovalStatus::Pending)
                    .map(|a| a.id.clone())
                    .collect();
                for a in pending {
                    self.answer_approval(st, tx, &a, false, by, Some("the session was killed".into()), &id);
                }
                let was_paused = tx.session(st, sid).mode == Mode::Paused;
                let c = tx.session(st, sid);
                c.hard_kill = req.hard || (c.mode == Mode::Killed && c.hard_kill);
                c.mode = Mode::Killed;
                c.mode_command = Some(id.clone());
                c.mode_since_us = now;
                c.mode_by = Some(by.to_string());
                c.mode_reason = req.reason.clone();
                tx.persist_sessions.insert(sid.to_string());
                if was_paused {
                    tx.tracker.push((sid.to_string(), false, reason_text("killed")));
                }
            }
            Kind::Inject => {}
            Kind::Approve | Kind::Deny => {
                if let Some(a) = target {
                    let allow = req.kind == Kind::Approve;
                    if let Some(t) = st.approvals.get(&a) {
                        cmd.tool_use_id = Some(t.tool_use_id.clone());
                        if allow && req.for_session {
                            let rule = t.rule.clone();
                            tx.session(st, sid).allowed_rules.insert(rule);
                            tx.persist_sessions.insert(sid.to_string());
                        }
                    }
                    self.answer_approval(st, tx, &a, allow, by, req.reason.clone(), &id);
                }
            }
        }
        tx.session(st, sid).open.push(id.clone());
        tx.ops.push(Op::Command(cmd.clone()));
        tx.audit(Audit {
            time_us: now,
            actor: by.to_string(),
            action: "command.accepted",
            session_id: Some(sid.to_string()),
            command_id: Some(id.clone()),
            approval_id: None,
            kind: Some(req.kind.as_str()),
            result: None,
            detail: Some(request_json(req)),
        });
        let agent = st.sessions.get(sid).and_then(|s| s.agent_id.clone());
        tx.publish_command(&cmd, agent.as_deref(), "accepted");
        tx.commands.insert(id.clone(), cmd);
        tx.wake.insert(sid.to_string());
        id
    }

    #[allow(clippy::too_many_arguments)]
    fn answer_approval(
        &self,
        st: &State,
        tx: &mut Tx,
        approval: &str,
        allow: bool,
        by: &str,
        reason: Option<String>,
        command: &str,
    ) {
        let now = tx.now_us;
        let Some(a) = tx.approval(st, approval) else { return };
        a.status = if allow { ApprovalStatus::Approved } else { ApprovalStatus::Denied };
        a.answered_us = Some(now);
        a.answered_by = Some(by.to_string());
        a.reason = reason;
        a.command_id = Some(command.to_string());
        let a = a.clone();
        tx.ops.push(Op::Approval(a.clone()));
        tx.audit(Audit {
            time_us: now,
            actor: by.to_string(),
            action: if allow { "approval.approved" } else { "approval.denied" },
            session_id: Some(a.session_id.clone()),
            command_id: Some(command.to_string()),
            approval_id: Some(a.id.clone()),
            kind: None,
            result: a.reason.clone(),
            detail: None,
        });
        let agent = st.sessions.get(&a.session_id).and_then(|s| s.agent_id.clone());
        tx.publish_approval(&a, agent.as_deref());
        tx.wake.insert(a.session_id.clone());
    }

    /// The session's service name from the store (404 when the collector has never seen it).
    /// Sessions whose control channel was seen need no lookup (their adapter is known).
    async fn session_service(&self, session_id: &str) -> Result<Option<String>, ControlError> {
        let known = self
            .lock()
            .sessions
            .get(session_id)
            .is_some_and(|c| c.seen.transport.is_some() || c.seen.legacy_hooks || c.seen.openclaw);
        if known {
            return Ok(None);
        }
        let query = || {
            self.inner.store.reader.query_objects(
                "SELECT service_name FROM sessions WHERE session_id = $1::VARCHAR",
                vec![Some(session_id.to_string())],
            )
        };
        let mut rows = query().await?;
        if rows.is_empty() {
            // Acknowledged telemetry is queryable once committed (~250 ms): a session that just
            // started is not unknown. Commit what is logged, then look again.
            self.inner.store.flush(Some(SESSION_FLUSH_WAIT)).await?;
            rows = query().await?;
        }
        match rows.first() {
            Some(r) => Ok(r.get("service_name").and_then(Value::as_str).map(str::to_string)),
            None if self.lock().sessions.contains_key(session_id) => Ok(None),
            None => Err(ControlError::NotFound(session_id.to_string())),
        }
    }

    /// Record what a hook call shows about its session (memory only). True when the session has
    /// open commands or approvals the call may be evidence for.
    fn note_seen(&self, sid: &str, ev: &HookEvent, transport: Transport, agent: Option<String>) -> bool {
        let now = now_us();
        let mut st = self.lock();
        let c = st.sessions.entry(sid.to_string()).or_default();
        c.seen.transport = Some(transport);
        if c.seen.events.len() < 64 {
            c.seen.events.insert(ev.name.to_string());
        }
        c.seen.last_event_us = now;
        if events::IN_TURN.contains(&ev.name) {
            c.seen.in_turn = true;
        }
        match ev.name {
            events::STOP | events::SESSION_START => c.seen.in_turn = false,
            events::SESSION_END => {
                c.seen.in_turn = false;
                c.seen.ended = true;
            }
            _ => {}
        }
        if ev.name == events::SESSION_START {
            c.seen.ended = false;
        }
        if c.agent_id.is_none() {
            c.agent_id = agent;
        }
        let open = !c.open.is_empty();
        open || (ev.name == events::SESSION_END
            && st.approvals.values().any(|a| a.session_id == sid && a.status == ApprovalStatus::Pending))
    }

    /// Apply the evidence a hook call carries (delivered -> observed, undelivered -> expired).
    async fn observe(&self, sid: &str, ev: &HookEvent<'_>, transport: Transport) -> Result<(), ControlError> {
        let _lane = self.inner.lane.lock().await;
        let mut tx = Tx::new(now_us());
        {
            let st = self.lock();
            let Some(ctl) = st.sessions.get(sid) else { return Ok(()) };
            let view = View { session_id: sid, ctl, commands: &st.commands, approval: None, transport };
            let effects = claude_code::observe(ev, &view);
            self.apply_effects(&st, &mut tx, sid, ev, &effects);
            if ev.name == events::SESSION_END {
                let pending: Vec<String> = st
                    .approvals
                    .values()
                    .filter(|a| a.session_id == sid && a.status == ApprovalStatus::Pending)
                    .map(|a| a.id.clone())
                    .collect();
                for a in pending {
                    self.expire_approval(&st, &mut tx, &a, "the session ended");
                }
            }
        }
        self.commit(tx).await
    }

    fn expire_approval(&self, st: &State, tx: &mut Tx, id: &str, why: &str) {
        let now = tx.now_us;
        let Some(a) = tx.approval(st, id) else { return };
        if a.status != ApprovalStatus::Pending {
            return;
        }
        a.status = ApprovalStatus::Expired;
        a.answered_us = Some(now);
        a.answered_by = Some("policy".into());
        let a = a.clone();
        tx.ops.push(Op::Approval(a.clone()));
        tx.audit(Audit {
            time_us: now,
            actor: "policy".into(),
            action: "approval.expired",
            session_id: Some(a.session_id.clone()),
            command_id: None,
            approval_id: Some(a.id.clone()),
            kind: None,
            result: Some(format!(
                "{why}; answered with the default: {}",
                if a.default_allow { "allow" } else { "deny" }
            )),
            detail: None,
        });
        let agent = st.sessions.get(&a.session_id).and_then(|s| s.agent_id.clone());
        tx.publish_approval(&a, agent.as_deref());
        tx.wake.insert(a.session_id.clone());
    }

    fn apply_effects(&self, st: &State, tx: &mut Tx, sid: &str, ev: &HookEvent, effects: &[Effect]) {
        let now = tx.now_us;
        for e in effects {
            match e {
                Effect::Delivered { command, via } => tx.step(st, command, Status::Delivered, None, Some(via.clone())),
                Effect::Targeted { command, tool_use_id } => {
                    if let Some(c) = tx.command(st, command) {
                        c.tool_use_id = Some(tool_use_id.clone());
                    }
                }
                Effect::Observed { command, note } => tx.step(st, command, Status::Observed, Some(note.clone()), None),
                Effect::Failed { command, note } => tx.step(st, command, Status::Failed, Some(note.clone()), None),
                Effect::Expired { command, note } => tx.step(st, command, Status::Expired, Some(note.clone()), None),
                Effect::RequestApproval { rule, timeout_secs, default_allow } => {
                    let Some(tool_use_id) = ev.tool_use_id else { continue };
                    let a = Approval {
                        id: self.new_id("apr", now),
                        session_id: sid.to_string(),
                        tool_use_id: tool_use_id.to_string(),
                        tool_name: ev.tool_name.map(str::to_string),
                        tool_input: ev.tool_input.cloned().unwrap_or(Value::Null),
                        rule: rule.clone(),
                        status: ApprovalStatus::Pending,
                        default_allow: *default_allow,
                        requested_us: now,
                        expires_us: now + (*timeout_secs as i64).saturating_mul(1_000_000),
                        answered_us: None,
                        answered_by: None,
                        reason: None,
                        command_id: None,
                        delivered: false,
                    };
                    tx.ops.push(Op::Approval(a.clone()));
                    tx.audit(Audit {
                        time_us: now,
                        actor: format!("rule:{rule}"),
                        action: "approval.requested",
                        session_id: Some(sid.to_string()),
                        command_id: None,
                        approval_id: Some(a.id.clone()),
                        kind: None,
                        result: None,
                        detail: Some(json!({ "tool_name": a.tool_name, "tool_use_id": a.tool_use_id })),
                    });
                    let agent = st.sessions.get(sid).and_then(|s| s.agent_id.clone());
                    tx.publish_approval(&a, agent.as_deref());
                    tx.approvals.insert(a.id.clone(), a);
                }
                Effect::ExpireApproval { approval } => self.expire_approval(st, tx, approval, "not answered in time"),
                Effect::ApprovalDelivered { approval } => {
                    if let Some(a) = tx.approval(st, approval) {
                        a.delivered = true;
                    }
                }
                Effect::StopBlock => tx.session(st, sid).stop_blocks += 1,
                Effect::ResetStopBlocks => tx.session(st, sid).stop_blocks = 0,
            }
        }
    }

    /// Does this call need the decision (anything but a plain pass)?
    fn needs_decision(&self, sid: &str, ev: &HookEvent) -> bool {
        let rules = !self.policy().rules.is_empty();
        let st = self.lock();
        let tool_rules = ev.name == events::PRE_TOOL_USE
            && (rules || ev.tool_use_id.is_some_and(|t| st.by_tool.contains_key(&(sid.to_string(), t.to_string()))));
        match st.sessions.get(sid) {
            None => tool_rules,
            Some(c) => c.mode != Mode::Running || !c.open.is_empty() || c.stop_blocks > 0 || tool_rules,
        }
    }

    fn cached(&self, record_id: &str) -> Option<HookReply> {
        self.lock().answers.get(record_id).cloned()
    }

    fn remember(&self, record_id: Option<&str>, reply: &HookReply) {
        let Some(r) = record_id else { return };
        let mut st = self.lock();
        if st.answers.insert(r.to_string(), reply.clone()).is_none() {
            st.answer_order.push_back(r.to_string());
        }
        while st.answer_order.len() > MAX_ANSWERS {
            if let Some(old) = st.answer_order.pop_front() {
                st.answers.remove(&old);
            }
        }
    }

    fn watcher(st: &mut State, sid: &str) -> watch::Receiver<u64> {
        st.watchers.entry(sid.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Decide a hook call (the one path for both transports); holds while a pause or an approval
    /// lasts, up to `hold_for`.
    pub async fn hook(&self, call: HookCall<'_>) -> Result<HookReply, ControlError> {
        let pass = HookReply { reply: Reply::Pass, signal: false };
        let Some(sid) = call.event.session_id() else { return Ok(pass) };
        let ev = HookEvent::of(call.event);
        if self.note_seen(sid, &ev, call.transport, call.agent_id.clone()) {
            self.observe(sid, &ev, call.transport).await?;
        }
        if let Some(c) = call.record_id.and_then(|r| self.cached(r)) {
            return Ok(c);
        }
        let deadline = tokio::time::Instant::now() + call.hold_for;
        let key: HeldKey = (sid.to_string(), ev.name.to_string(), ev.tool_use_id.map(str::to_string));
        loop {
            if !self.needs_decision(sid, &ev) {
                self.unhold(&key);
                return Ok(pass);
            }
            let lane = self.inner.lane.clone().lock_owned().await;
            let now = now_us();
            let mut tx = Tx::new(now);
            let policy = self.policy();
            let (plan, mut rx, harmless) = {
                let mut st = self.lock();
                let rx = Self::watcher(&mut st, sid);
                let st = &*st;
                let ctl = st.sessions.get(sid).cloned().unwrap_or_default();
                let approval = ev
                    .tool_use_id
                    .and_then(|t| st.by_tool.get(&(sid.to_string(), t.to_string())))
                    .and_then(|id| st.approvals.get(id));
                let view =
                    View { session_id: sid, ctl: &ctl, commands: &st.commands, approval, transport: call.transport };
                let plan = claude_code::decide(&ev, &view, &policy, now);
                self.apply_effects(st, &mut tx, sid, &ev, &plan.effects);
                let harmless = !plan.signal
                    && matches!(plan.outcome, Outcome::Pass | Outcome::Answer(_))
                    && plan.effects.iter().all(|e| match e {
                        Effect::Delivered { command, .. } | Effect::Observed { command, .. } => {
                            st.commands.get(command).is_some_and(|c| c.kind == Kind::Resume)
                        }
                        Effect::ResetStopBlocks => true,
                        _ => false,
                    });
                (plan, rx, harmless)
            };
            let had_effects = !plan.effects.is_empty();
            if harmless && had_effects {
                // A resume reaching a held call: answer now, record the step behind it.
                let me = self.clone();
                tokio::spawn(async move {
                    let _lane = lane;
                    if let Err(e) = me.commit(tx).await {
                        tracing::warn!(error = %e, "control: a resume's delivery step was not recorded");
                    }
                });
            } else {
                self.commit(tx).await?;
                drop(lane);
            }
            match plan.outcome {
                Outcome::Pass | Outcome::Answer(_) => {
                    self.unhold(&key);
                    let reply = match plan.outcome {
                        Outcome::Answer(v) => Reply::Answer(v),
                        _ => Reply::Pass,
                    };
                    let out = HookReply { reply, signal: plan.signal };
                    if had_effects || plan.signal {
                        self.remember(call.record_id, &out);
                    }
                    return Ok(out);
                }
                Outcome::Hold { fallback, wake_at_us } => {
                    self.hold(&key, &ev, call.transport, now);
                    let wake = wake_at_us.map(|w| {
                        tokio::time::Instant::now() + Duration::from_micros(w.saturating_sub(now).max(0) as u64)
                    });
                    let until = wake.map_or(deadline, |w| w.min(deadline));
                    let timed_out = tokio::select! {
                        _ = rx.changed() => false,
                        _ = tokio::time::sleep_until(until) => until >= deadline && wake.is_none_or(|w| w > deadline),
                        _ = self.inner.cancel.cancelled() => true,
                    };
                    if timed_out {
                        return Ok(HookReply { reply: Reply::Held(fallback), signal: false });
                    }
                }
            }
        }
    }

    fn hold(&self, key: &HeldKey, ev: &HookEvent, transport: Transport, now: i64) {
        let mut st = self.lock();
        let st = &mut *st;
        let since = st.held.get(key).map(|(h, _)| h.since_us).unwrap_or(now);
        st.next_token += 1;
        let held = Held {
            token: st.next_token,
            event: ev.name.to_string(),
            tool_name: ev.tool_name.map(str::to_string),
            tool_use_id: ev.tool_use_id.map(str::to_string),
            tool_input: ev.tool_input.cloned(),
            since_us: since,
            transport,
        };
        st.held.insert(key.clone(), (held, now));
    }

    fn unhold(&self, key: &HeldKey) {
        let mut st = self.lock();
        if !st.held.is_empty() {
            st.held.remove(key);
        }
    }

    /// The `--inbox` waiter of a session: long-poll for a message that wakes it when idle.
    pub async fn inbox(
        &self,
        event: &agent_console_hook::Event,
        waiter: &str,
        wait: Duration,
    ) -> Result<InboxAnswer, ControlError> {
        let Some(sid) = event.session_id() else { return Ok(InboxAnswer::Release) };
        let deadline = tokio::time::Instant::now() + wait;
        {
            let mut st = self.lock();
            let c = st.sessions.entry(sid.to_string()).or_default();
            c.seen.inbox = true;
            c.seen.transport = Some(Transport::Binary);
            if c.inbox_id.as_deref().is_none_or(|cur| waiter > cur) {
                c.inbox_id = Some(waiter.to_string());
                if let Some(w) = st.watchers.get(sid) {
                    w.send_modify(|v| *v += 1);
                }
            }
        }
        loop {
            let (plan, mut rx) = {
                let mut st = self.lock();
                let rx = Self::watcher(&mut st, sid);
                let ctl = st.sessions.get(sid).cloned().unwrap_or_default();
                let view = View {
                    session_id: sid,
                    ctl: &ctl,
                    commands: &st.commands,
                    approval: None,
                    transport: Transport::Binary,
                };
                (claude_code::decide_inbox(&view, waiter), rx)
            };
            match plan {
                InboxPlan::Release => return Ok(InboxAnswer::Release),
                InboxPlan::Wait => {
                    let timed_out = tokio::select! {
                        _ = rx.changed() => false,
                        _ = tokio::time::sleep_until(deadline) => true,
                        _ = self.inner.cancel.cancelled() => true,
                    };
                    if timed_out {
                        return Ok(InboxAnswer::Wait);
                    }
                }
                InboxPlan::Kill { .. } | InboxPlan::Deliver { .. } => {
                    let _lane = self.inner.lane.lock().await;
                    let mut tx = Tx::new(now_us());
                    let plan = {
                        let st = self.lock();
                        let ctl = st.sessions.get(sid).cloned().unwrap_or_default();
                        let view = View {
                            session_id: sid,
                            ctl: &ctl,
                            commands: &st.commands,
                            approval: None,
                            transport: Transport::Binary,
                        };
                        let plan = claude_code::decide_inbox(&view, waiter);
                        let via = Some("inbox (asyncRewake hook)".to_string());
                        match &plan {
                            InboxPlan::Kill { command: Some(c) } => tx.step(&st, c, Status::Delivered, None, via),
                            InboxPlan::Deliver { commands, .. } => {
                                for c in commands {
                                    tx.step(&st, c, Status::Delivered, None, via.clone());
                                }
                            }
                            _ => {}
                        }
                        plan
                    };
                    self.commit(tx).await?;
                    match plan {
                        InboxPlan::Kill { .. } => return Ok(InboxAnswer::Kill),
                        InboxPlan::Deliver { text, .. } => return Ok(InboxAnswer::Deliver(text)),
                        InboxPlan::Release => return Ok(InboxAnswer::Release),
                        InboxPlan::Wait => {}
                    }
                }
            }
        }
    }

    /// `control` and `capabilities` of a session for the API and the live `session` summary.
    pub fn session_view(&self, sid: &str, service_name: Option<&str>) -> (Value, Value) {
        let st = self.lock();
        let mut ctl = st.sessions.get(sid).cloned().unwrap_or_default();
        ctl.seen.openclaw_link = st.openclaw.view(sid, now_us());
        let ctl = &ctl;
        let pending =
            st.approvals.values().filter(|a| a.session_id == sid && a.status == ApprovalStatus::Pending).count();
        let adapter = adapter::for_runtime(ctl, service_name);
        let held: Vec<Value> = st.held.iter().filter(|(k, _)| k.0 == sid).map(|(_, (h, _))| h.to_json()).collect();
        let mut rules: Vec<&String> = ctl.allowed_rules.iter().collect();
        rules.sort();
        let control = json!({
            "state": ctl.mode.as_str(),
            "since": (ctl.mode_since_us > 0).then(|| crate::live::message::rfc3339(ctl.mode_since_us)),
            "by": ctl.mode_by,
            "reason": ctl.mode_reason,
            "hard_kill": ctl.hard_kill && ctl.mode == Mode::Killed,
            "hard_pause": ctl.hard_kill && ctl.mode == Mode::Paused,
            "runtime": adapter.runtime(),
            "transport": ctl.seen.transport.map(Transport::as_str),
            "inbox": ctl.seen.inbox,
            "held": held,
            "open_commands": ctl.open.len(),
            "pending_approvals": pending,
            "approved_rules": rules,
        });
        (control, adapter::capabilities(adapter, ctl, pending))
    }

    /// Pending approvals (memory), newest first, optionally of one session.
    pub fn pending_approvals(&self, session: Option<&str>) -> Vec<Value> {
        let st = self.lock();
        let mut v: Vec<&Approval> = st
            .approvals
            .values()
            .filter(|a| a.status == ApprovalStatus::Pending && session.is_none_or(|s| s == a.session_id))
            .collect();
        v.sort_by(|a, b| b.requested_us.cmp(&a.requested_us).then_with(|| b.id.cmp(&a.id)));
        v.into_iter().map(Approval::to_json).collect()
    }

    /// Replace the API part of the approval policy (`PUT /api/approvals/policy`).
    pub async fn set_policy(&self, spec: PolicySpec, by: &str) -> Result<Value, ControlError> {
        let _lane = self.inner.lane.lock().await;
        let now = now_us();
        let built = Policy::build(self.inner.cfg.policy_file.clone(), spec.clone())?;
        let mut tx = Tx::new(now);
        tx.ops.push(Op::Policy { spec: spec.clone(), at_us: now, by: by.to_string() });
        tx.audit(Audit {
            time_us: now,
            actor: by.to_string(),
            action: "policy.updated",
            session_id: None,
            command_id: None,
            approval_id: None,
            kind: None,
            result: Some(format!("{} rules in force", built.rules.len())),
            detail: serde_json::to_value(&spec).ok(),
        });
        self.commit(tx).await?;
        let json = built.to_json();
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(built);
        Ok(json)
    }

    async fn sweep_loop(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "control sweep failed");
                    }
                }
            }
        }
    }

    /// Time-driven changes: approvals nobody waits for any more expire, undelivered messages
    /// expire after their time to live, and memory stays bounded.
    async fn sweep(&self) -> Result<(), ControlError> {
        let now = now_us();
        let ttl = self.inner.cfg.inject_ttl.as_micros() as i64;
        let (overdue, stale): (Vec<String>, Vec<String>) = {
            let mut st = self.lock();
            st.held.retain(|_, (_, at)| now - *at < 120_000_000);
            let held: HashSet<(String, String)> =
                st.held.keys().filter_map(|k| k.2.clone().map(|t| (k.0.clone(), t))).collect();
            let overdue = st
                .approvals
                .values()
                .filter(|a| a.status == ApprovalStatus::Pending && a.expires_us + 2_000_000 < now)
                .filter(|a| !held.contains(&(a.session_id.clone(), a.tool_use_id.clone())))
                .map(|a| a.id.clone())
                .collect();
            let stale = st
                .commands
                .values()
                .filter(|c| c.kind == Kind::Inject && c.status == Status::Accepted && now - c.accepted_us > ttl)
                .map(|c| c.id.clone())
                .collect();
            // Forget answered approvals after an hour, and idle sessions beyond the bound.
            let old: Vec<String> = st
                .approvals
                .values()
                .filter(|a| {
                    a.status != ApprovalStatus::Pending && a.answered_us.is_some_and(|t| now - t > 3_600_000_000)
                })
                .map(|a| a.id.clone())
                .collect();
            for id in old {
                if let Some(a) = st.approvals.remove(&id) {
                    st.by_tool.remove(&(a.session_id, a.tool_use_id));
                }
            }
            if st.sessions.len() > MAX_SESSIONS {
                let mut idle: Vec<(i64, String)> = st
                    .sessions
                    .iter()
                    .filter(|(_, c)| c.mode == Mode::Running && c.open.is_empty())
                    .map(|(k, c)| (c.seen.last_event_us, k.clone()))
                    .collect();
                idle.sort_unstable();
                let excess = st.sessions.len() - MAX_SESSIONS * 9 / 10;
                for (_, k) in idle.into_iter().take(excess) {
                    st.sessions.remove(&k);
                    st.watchers.remove(&k);
                }
            }
            st.watchers.retain(|_, w| w.receiver_count() > 0);
            (overdue, stale)
        };
        if overdue.is_empty() && stale.is_empty() {
            return Ok(());
        }
        let _lane = self.inner.lane.lock().await;
        let mut tx = Tx::new(now);
        {
            let st = self.lock();
            for a in &overdue {
                self.expire_approval(&st, &mut tx, a, "not answered in time and no hook is waiting for it");
            }
            let note = format!("not delivered within {} s: no hook event of the session", ttl / 1_000_000);
            for c in &stale {
                tx.step(&st, c, Status::Expired, Some(note.clone()), None);
            }
        }
        self.commit(tx).await
    }
}

fn pause_reason(c: &SessionCtl) -> String {
    match (c.mode_by.as_deref(), c.mode_reason.as_deref().filter(|r| !r.is_empty())) {
        (Some(by), Some(r)) => format!("paused by {by}: {r}"),
        (Some(by), None) => format!("paused by {by}"),
        _ => "paused".into(),
    }
}

fn request_json(r: &CommandRequest) -> Value {
    json!({
        "kind": r.kind.as_str(),
        "message": r.message,
        "reason": r.reason,
        "tool_use_id": r.tool_use_id,
        "hard": r.hard,
        "for_session": r.for_session,
    })
}
