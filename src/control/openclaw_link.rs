//! OpenClaw delivery: the inbox each `agent-console-openclaw` shim long-polls
//! (`POST /openclaw/inbox`, `receiver/openclaw_inbox.rs`). The collector never dials out.
//!
//! A poll says which gateway the shim serves, whether its gateway connection is up, the scopes
//! the gateway granted and the session keys it lists; it carries the acknowledgements of the
//! commands it delivered (the gateway's replies). The answer holds the accepted commands of those
//! sessions (each handed out once; again after `RESEND_US` without an ack: a shim that died
//! mid-call; inject carries its command id as the gateway's idempotency key) and the sessions the
//! console has paused (the shim aborts every run they start). Several shims for several gateways
//! each get their own sessions' commands.
//!
//! `Links` (memory only, inside the control state) is what capabilities read: a session's commands
//! are available while its gateway's shim is polling (a poll open, or one ended less than
//! `GRACE_US` ago), connected to its gateway, with `operator.write`.
//!
//! Lifecycle, audit and live messages are the control engine's (`Tx::step`): an ack moves a command
//! to `delivered` (or `failed` with the gateway's error); the shim's own status and call records,
//! read from the live stream once durable (`observe_loop`), move it to `observed`
//! (`openclaw::observed_by`). Evidence that arrives before the ack is kept and applied with it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agent_console_conventions::openclaw as oc;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::model::{Kind, Mode, Status};
use super::openclaw::{ack_step, observed_by, Ack, AckStep, Evidence, LinkView};
use super::{now_us, Control, ControlError, Tx};
use crate::live::filter::{Filter, LiveParams};

/// A shim counts as connected this long after its last poll ended (it polls again at once).
pub const GRACE_US: i64 = 5_000_000;
/// A command handed out without an ack is handed out again after this.
pub const RESEND_US: i64 = 15_000_000;
/// Gateways remembered; session keys per gateway.
pub const MAX_GATEWAYS: usize = 1024;
pub const MAX_SESSIONS_PER_GATEWAY: usize = 10_000;
/// Acks per poll, commands per answer.
pub const MAX_ACKS: usize = 1000;
pub const MAX_COMMANDS: usize = 256;
/// Longest gateway name.
pub const MAX_GATEWAY_BYTES: usize = 512;

/// `POST /openclaw/inbox` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    pub gateway: String,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub sessions: Vec<String>,
    #[serde(default)]
    pub acks: Vec<Ack>,
    #[serde(default)]
    pub wait_ms: u64,
}

impl Poll {
    pub fn validate(&self) -> Result<(), ControlError> {
        let bad = |m: String| Err(ControlError::Invalid(m));
        if self.gateway.trim().is_empty() || self.gateway.len() > MAX_GATEWAY_BYTES {
            return bad(format!("\"gateway\" must name the gateway (1 to {MAX_GATEWAY_BYTES} bytes)"));
        }
        if self.sessions.len() > MAX_SESSIONS_PER_GATEWAY {
            return bad(format!("at most {MAX_SESSIONS_PER_GATEWAY} sessions per gateway"));
        }
        if self.acks.len() > MAX_ACKS || self.scopes.len() > 64 {
            return bad(format!("at most {MAX_ACKS} acks and 64 scopes per poll"));
        }
        if self.sessions.iter().any(|s| s.is_empty() || s.len() > 1024) {
            return bad("session keys must be 1 to 1024 bytes".into());
        }
        Ok(())
    }
}

struct Gateway {
    scopes: Vec<String>,
    connected: bool,
    sessions: HashSet<String>,
    polls: u32,
    last_end_us: i64,
    wake: watch::Sender<u64>,
}

/// A command handed to a shim.
struct Handed {
    gateway: String,
    at_us: i64,
}

/// The shims polling, the sessions they serve, the commands handed out (memory only).
#[derive(Default)]
pub struct Links {
    gateways: HashMap<String, Gateway>,
    by_session: HashMap<String, String>,
    handed: HashMap<String, Handed>,
    /// Evidence that arrived before the command's ack: command id -> observed note.
    early: HashMap<String, String>,
    /// Sessions whose records a watcher reads (`watch_session`).
    watching: HashSet<String>,
}

impl Links {
    /// The link of `session`, as capabilities read it.
    pub fn view(&self, session: &str, now: i64) -> Option<LinkView> {
        let name = self.by_session.get(session)?;
        let g = self.gateways.get(name)?;
        Some(LinkView {
            session: session.to_string(),
            gateway: name.clone(),
            shim_polling: g.polls > 0 || now - g.last_end_us < GRACE_US,
            gateway_up: g.connected,
            scopes: g.scopes.clone(),
            idle_secs: if g.polls > 0 { 0 } else { ((now - g.last_end_us) / 1_000_000).max(0) },
        })
    }

    /// Wake the long-poll of the gateway serving `session`.
    pub fn wake(&self, session: &str) {
        if let Some(g) = self.by_session.get(session).and_then(|n| self.gateways.get(n)) {
            g.wake.send_modify(|v| *v += 1);
        }
    }

    fn gateway_of(&self, session: &str) -> Option<&str> {
        self.by_session.get(session).map(String::as_str)
    }

    /// A poll begins: record what it says; returns its wake-up receiver.
    fn begin(&mut self, p: &Poll, now: i64) -> watch::Receiver<u64> {
        if !self.gateways.contains_key(&p.gateway) && self.gateways.len() >= MAX_GATEWAYS {
            // Forget the longest idle gateway without an open poll.
            let idle = self
                .gateways
                .iter()
                .filter(|(_, g)| g.polls == 0)
                .min_by_key(|(_, g)| g.last_end_us)
                .map(|(k, _)| k.clone());
            if let Some(k) = idle {
                self.forget(&k);
            }
        }
        let g = self.gateways.entry(p.gateway.clone()).or_insert_with(|| Gateway {
            scopes: Vec::new(),
            connected: false,
            sessions: HashSet::new(),
            polls: 0,
            last_end_us: now,
            wake: watch::channel(0).0,
        });
        g.scopes = p.scopes.clone();
        g.connected = p.connected;
        g.polls += 1;
        let new: HashSet<String> = p.sessions.iter().cloned().collect();
        let gone: Vec<String> = g.sessions.difference(&new).cloned().collect();
        g.sessions = new;
        let rx = g.wake.subscribe();
        for s in gone {
            if self.by_session.get(&s) == Some(&p.gateway) {
                self.by_session.remove(&s);
            }
        }
        for s in &p.sessions {
            if self.by_session.get(s) != Some(&p.gateway) {
                self.by_session.insert(s.clone(), p.gateway.clone());
            }
        }
        rx
    }

    fn end(&mut self, gateway: &str, now: i64) {
        if let Some(g) = self.gateways.get_mut(gateway) {
            g.polls = g.polls.saturating_sub(1);
            g.last_end_us = now;
        }
    }

    fn forget(&mut self, gateway: &str) {
        if let Some(g) = self.gateways.remove(gateway) {
            for s in g.sessions {
                if self.by_session.get(&s).map(String::as_str) == Some(gateway) {
                    self.by_session.remove(&s);
                }
            }
        }
        self.handed.retain(|_, h| h.gateway != gateway);
    }
}

/// Kinds the shim carries.
fn carried(kind: Kind) -> bool {
    matches!(kind, Kind::Kill | Kind::Pause | Kind::Resume | Kind::Inject)
}

/// Ends a poll when dropped (also when the request is dropped mid-wait).
struct PollGuard<'a> {
    control: &'a Control,
    gateway: String,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.control.lock().openclaw.end(&self.gateway, now_us());
    }
}

impl Control {
    /// One long-poll of a shim: record what it serves, apply its acks, then answer with its
    /// sessions' commands (waiting up to `wait`, capped by the configured long-poll) and the
    /// paused sessions it must hold.
    pub async fn openclaw_poll(&self, poll: Poll) -> Result<Value, ControlError> {
        poll.validate()?;
        let now = now_us();
        let mut rx = {
            let mut st = self.lock();
            let st = &mut *st;
            let rx = st.openclaw.begin(&poll, now);
            for s in &poll.sessions {
                let c = st.sessions.entry(s.clone()).or_default();
                c.seen.openclaw = true;
            }
            rx
        };
        let _guard = PollGuard { control: self, gateway: poll.gateway.clone() };
        if !poll.acks.is_empty() {
            self.openclaw_acks(&poll.gateway, &poll.acks).await?;
        }
        let wait = Duration::from_millis(poll.wait_ms).min(self.config().max_poll);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            let (commands, paused) = self.openclaw_take(&poll.gateway);
            if !commands.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(json!({ "commands": commands, "paused": paused }));
            }
            let woken = tokio::select! {
                r = rx.changed() => r.is_ok(),
                _ = tokio::time::sleep_until(deadline) => false,
                _ = self.inner.cancel.cancelled() => false,
            };
            if !woken {
                let (commands, paused) = self.openclaw_take(&poll.gateway);
                return Ok(json!({ "commands": commands, "paused": paused }));
            }
        }
    }

    /// The commands to hand to `gateway`'s shim now (marked handed out) and its paused sessions.
    fn openclaw_take(&self, gateway: &str) -> (Vec<Value>, Vec<String>) {
        let now = now_us();
        let mut st = self.lock();
        let st = &mut *st;
        // Commands that ended meanwhile (superseded, expired) need no hand-out record.
        let commands = &st.commands;
        st.openclaw.handed.retain(|id, _| commands.contains_key(id));
        st.openclaw.early.retain(|id, _| commands.contains_key(id));
        let mut out: Vec<(i64, Value, String)> = Vec::new();
        for c in st.commands.values() {
            if c.status != Status::Accepted || !carried(c.kind) {
                continue;
            }
            if st.openclaw.gateway_of(&c.session_id) != Some(gateway) {
                continue;
            }
            if st.openclaw.handed.get(&c.id).is_some_and(|h| h.gateway == gateway && now - h.at_us < RESEND_US) {
                continue;
            }
            out.push((
                c.accepted_us,
                json!({
                    "command_id": c.id,
                    "session_key": c.session_id,
                    "kind": c.kind.as_str(),
                    "message": c.message,
                    "hard": c.hard,
                }),
                c.id.clone(),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        out.truncate(MAX_COMMANDS);
        let mut watch = Vec::new();
        for (_, v, id) in &out {
            st.openclaw.handed.insert(id.clone(), Handed { gateway: gateway.to_string(), at_us: now });
            if let Some(s) = v["session_key"].as_str() {
                if st.openclaw.watching.insert(s.to_string()) {
                    watch.push(s.to_string());
                }
            }
        }
        // Subscribed before the shim has the command: no record showing its effect is missed.
        for s in watch {
            let sub = self.inner.live.subscribe(
                None,
                Filter::new(&LiveParams {
                    session: Some(s.clone()),
                    types: Some("event,model_call".into()),
                    ..Default::default()
                }),
            );
            tokio::spawn(self.clone().watch_session(s, sub));
        }
        let paused = st
            .openclaw
            .gateways
            .get(gateway)
            .map(|g| {
                g.sessions
                    .iter()
                    .filter(|s| st.sessions.get(*s).is_some_and(|c| c.mode == Mode::Paused))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        (out.into_iter().map(|(_, v, _)| v).collect(), paused)
    }

    /// Apply a shim's acks: `delivered` (then `observed` when the reply or earlier evidence shows
    /// the effect) or `failed`. Acks for commands this gateway was not handed are ignored.
    async fn openclaw_acks(&self, gateway: &str, acks: &[Ack]) -> Result<(), ControlError> {
        let _lane = self.inner.lane.lock().await;
        let mut tx = Tx::new(now_us());
        {
            let mut st = self.lock();
            let st = &mut *st;
            let mut done = Vec::new();
            for a in acks {
                let ours = st.openclaw.handed.get(&a.command_id).is_some_and(|h| h.gateway == gateway);
                let Some(c) = st.commands.get(&a.command_id) else { continue };
                if !ours {
                    tracing::warn!(gateway, command = %a.command_id, "OpenClaw ack for a command not handed to this gateway");
                    continue;
                }
                let kind = c.kind;
                match ack_step(kind, gateway, a) {
                    AckStep::Failed(note) => tx.step(st, &a.command_id, Status::Failed, Some(note), None),
                    AckStep::Delivered { via, observed } => {
                        tx.step(st, &a.command_id, Status::Delivered, None, Some(via));
                        if let Some(note) = observed.or_else(|| st.openclaw.early.get(&a.command_id).cloned()) {
                            tx.step(st, &a.command_id, Status::Observed, Some(note), None);
                        }
                    }
                }
                done.push(a.command_id.clone());
            }
            for id in done {
                st.openclaw.handed.remove(&id);
                st.openclaw.early.remove(&id);
            }
        }
        self.commit(tx).await
    }

    /// Does `session` have a command a shim record may be evidence for? If not, its watcher
    /// stops (under the same lock, so a command handed out meanwhile starts a new one).
    fn openclaw_still_watching(&self, session: &str) -> bool {
        let mut st = self.lock();
        let w = watching(&st, session);
        if !w {
            st.openclaw.watching.remove(session);
        }
        w
    }
}

fn watching(st: &super::State, session: &str) -> bool {
    st.sessions.get(session).is_some_and(|c| {
        c.open.iter().any(|id| {
            st.commands.get(id).is_some_and(|c| {
                matches!(c.kind, Kind::Kill | Kind::Pause | Kind::Inject)
                    && (c.status == Status::Delivered
                        || (c.status == Status::Accepted && st.openclaw.handed.contains_key(id)))
            })
        })
    })
}

impl Control {
    /// A shim record of `session` (durable): move the commands it shows the effect of to
    /// `observed` (or keep the note until their ack).
    pub async fn openclaw_evidence(&self, session: &str, ev: Evidence) -> Result<(), ControlError> {
        let _lane = self.inner.lane.lock().await;
        let mut tx = Tx::new(now_us());
        {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(ctl) = st.sessions.get(session) else { return Ok(()) };
            let open = ctl.open.clone();
            for id in open {
                let Some(c) = st.commands.get(&id) else { continue };
                let Some(note) = observed_by(c.kind, &ev) else { continue };
                match c.status {
                    Status::Delivered => tx.step(st, &id, Status::Observed, Some(note), None),
                    Status::Accepted
                        if st.openclaw.handed.contains_key(&id) && st.openclaw.early.len() < MAX_COMMANDS * 16 =>
                    {
                        st.openclaw.early.insert(id, note);
                    }
                    _ => {}
                }
            }
        }
        self.commit(tx).await
    }

    /// Read one session's shim records from the live stream (each once durable) while it has a
    /// command under way, and turn them into evidence. Only this session's messages are
    /// serialised for it (the hub filters on headers). Ends when nothing is under way (checked
    /// every few seconds), after an hour, or at shutdown.
    async fn watch_session(self, session: String, mut sub: crate::live::Subscription) {
        let started = tokio::time::Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(5));
        check.tick().await;
        loop {
            tokio::select! {
                m = sub.next() => {
                    let Some(m) = m else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&m.data) else { continue };
                    let Some(ev) = evidence_of(m.kind, &v) else { continue };
                    if let Err(e) = self.openclaw_evidence(&session, ev).await {
                        tracing::warn!(error = %e, "OpenClaw command evidence not recorded");
                    }
                }
                _ = check.tick() => {
                    if started.elapsed() > Duration::from_secs(3600) {
                        self.lock().openclaw.watching.remove(&session);
                        break;
                    }
                    if !self.openclaw_still_watching(&session) {
                        break;
                    }
                }
            }
        }
    }
}

/// What a live message (an `event` or `model_call` payload) of a shim record shows.
pub fn evidence_of(kind: &str, v: &Value) -> Option<Evidence> {
    match kind {
        crate::live::message::EVENT if v["scope_name"] == oc::SCOPE && v["event_name"] == oc::STATUS_EVENT => {
            let status = v["body"].as_str().or_else(|| v["attributes"][oc_status()].as_str())?;
            let run_id = v["attributes"][agent_console_conventions::attr::OPENCLAW_RUN_ID].as_str().map(str::to_string);
            Some(Evidence::Status { status: status.to_string(), run_id })
        }
        crate::live::message::MODEL_CALL
            if v["token_rule"] == crate::model::openclaw::SHIM_RULE && v["operation"] == "chat" =>
        {
            Some(Evidence::Call)
        }
        _ => None,
    }
}

fn oc_status() -> &'static str {
    agent_console_conventions::attr::OPENCLAW_STATUS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(gw: &str, sessions: &[&str], scopes: &[&str]) -> Poll {
        Poll {
            gateway: gw.into(),
            connected: true,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            sessions: sessions.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sessions_belong_to_the_gateway_that_lists_them() {
        let mut l = Links::default();
        let _a = l.begin(&poll("gw-a", &["s1", "s2"], &["operator.write"]), 0);
        let _b = l.begin(&poll("gw-b", &["s3"], &["operator.read"]), 0);
        assert_eq!(l.gateway_of("s1"), Some("gw-a"));
        assert_eq!(l.gateway_of("s3"), Some("gw-b"));
        let v = l.view("s3", 0).expect("view");
        assert_eq!(
            (v.gateway.as_str(), v.shim_polling, v.scopes.clone()),
            ("gw-b", true, vec!["operator.read".into()])
        );
        // gw-a no longer lists s2.
        let _a2 = l.begin(&poll("gw-a", &["s1"], &["operator.write"]), 0);
        assert_eq!(l.gateway_of("s2"), None);
        // After its polls end, a shim is connected for GRACE_US only.
        l.end("gw-b", 10);
        assert!(l.view("s3", 10 + GRACE_US - 1).expect("view").shim_polling);
        let gone = l.view("s3", 10 + GRACE_US + 3_000_000).expect("view");
        assert!(!gone.shim_polling);
        assert_eq!(gone.idle_secs, 8);
        assert!(l.view("nobody", 0).is_none());
    }

    #[test]
    fn polls_are_validated() {
        assert!(poll("", &[], &[]).validate().is_err());
        assert!(poll("gw", &[""], &[]).validate().is_err());
        let many: Vec<String> = (0..MAX_SESSIONS_PER_GATEWAY + 1).map(|i| format!("s{i}")).collect();
        let p = Poll { sessions: many, ..poll("gw", &[], &[]) };
        assert!(p.validate().is_err());
        assert!(poll("gw", &["agent:main:main"], &["operator.write"]).validate().is_ok());
    }

    #[test]
    fn live_payloads_become_evidence() {
        let status = json!({"scope_name": oc::SCOPE, "event_name": oc::STATUS_EVENT, "body": "killed",
                            "attributes": {"openclaw.run.id": "r9"}});
        assert_eq!(
            evidence_of("event", &status),
            Some(Evidence::Status { status: "killed".into(), run_id: Some("r9".into()) })
        );
        let other = json!({"scope_name": "claude_code", "event_name": oc::STATUS_EVENT, "body": "killed"});
        assert_eq!(evidence_of("event", &other), None);
        let call = json!({"token_rule": crate::model::openclaw::SHIM_RULE, "operation": "chat"});
        assert_eq!(evidence_of("model_call", &call), Some(Evidence::Call));
        assert_eq!(evidence_of("model_call", &json!({"token_rule": "otel", "operation": "chat"})), None);
    }
}
