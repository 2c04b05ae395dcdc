//! Claude Code delivery: the ONE decision function both transports (the hook binary and `http`
//! hooks) answer with, the evidence rules that move a delivered command to `observed`, and what a
//! Claude Code session can do. Pure: the caller passes the session's state and the time. Follows the
//! measured behaviour of Claude Code 2.1.197 (`shared/reference/claude-code-control.md` §10):
//!
//! | event | inject | pause | kill (sticky) |
//! |---|---|---|---|
//! | SessionStart | `additionalContext` | - | - |
//! | UserPromptSubmit | `additionalContext` | hold | `continue:false` |
//! | PreToolUse | `additionalContext` | hold | deny (+ `continue:false`) |
//! | PostToolUse | `additionalContext` | - | `continue:false` |
//! | PostToolBatch | `additionalContext` | hold | `continue:false` |
//! | Stop | `decision: block` (at most 8 in a row) | hold | - |
//!
//! A hold that must end without an answer (the hook's deadline, a collector shutdown) ends with
//! the *fallback*: deny at PreToolUse, `continue:false` at PostToolBatch / UserPromptSubmit, so a
//! pause never silently becomes "allow". Approval rules hold a matching PreToolUse until an
//! operator answers or the rule's timeout answers with its default.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::adapter::{Adapter, Refusal};
use super::model::{events, Approval, ApprovalStatus, Command, Kind, Mode, SessionCtl, Status, Transport};
use super::policy::Policy;

/// Claude Code's cap of consecutive Stop blocks (`CLAUDE_CODE_STOP_HOOK_BLOCK_CAP`, default 8).
pub const STOP_BLOCK_CAP: u32 = 8;

/// The parts of a hook call the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct HookEvent<'a> {
    pub name: &'a str,
    pub tool_name: Option<&'a str>,
    pub tool_use_id: Option<&'a str>,
    pub tool_input: Option<&'a Value>,
}

impl<'a> HookEvent<'a> {
    pub fn of(ev: &'a agent_console_hook::Event) -> Self {
        HookEvent {
            name: &ev.name,
            tool_name: ev.fields.get("tool_name").and_then(Value::as_str),
            tool_use_id: ev.tool_use_id(),
            tool_input: ev.fields.get("tool_input"),
        }
    }
}

/// What to answer now.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No decision (an empty answer: Claude Code goes on as usual).
    Pass,
    Answer(Value),
    /// Withhold the answer until something changes (or `wake_at_us`); `fallback` is the answer
    /// to give if the hold must end first.
    Hold {
        fallback: Option<Value>,
        wake_at_us: Option<i64>,
    },
}

/// State changes a decision implies (applied and stored before the answer goes out).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Delivered {
        command: String,
        via: String,
    },
    /// A "deny the next tool call" command took this tool call (its evidence follows the id).
    Targeted {
        command: String,
        tool_use_id: String,
    },
    Observed {
        command: String,
        note: String,
    },
    Failed {
        command: String,
        note: String,
    },
    Expired {
        command: String,
        note: String,
    },
    /// Hold this tool call for approval.
    RequestApproval {
        rule: String,
        timeout_secs: u64,
        default_allow: bool,
    },
    /// The approval timed out: answered with its default.
    ExpireApproval {
        approval: String,
    },
    /// The approval's answer reached the agent.
    ApprovalDelivered {
        approval: String,
    },
    StopBlock,
    ResetStopBlocks,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
    /// Hard kill: the hook binary ends the Claude Code process after answering.
    pub signal: bool,
}

/// A session's state as the decision sees it.
pub struct View<'a> {
    pub session_id: &'a str,
    pub ctl: &'a SessionCtl,
    /// Open commands by id.
    pub commands: &'a HashMap<String, Command>,
    /// The approval of this tool call, if one was requested.
    pub approval: Option<&'a Approval>,
    pub transport: Transport,
}

impl View<'_> {
    fn open(&self, kind: Kind, status: Status) -> impl Iterator<Item = &Command> + '_ {
        self.ctl
            .open
            .iter()
            .filter_map(|id| self.commands.get(id))
            .filter(move |c| c.kind == kind && c.status == status)
    }

    fn mode_command(&self) -> Option<&Command> {
        self.ctl.mode_command.as_ref().and_then(|id| self.commands.get(id))
    }
}

fn via(event: &str, t: Transport) -> String {
    format!("{event} ({})", t.as_str())
}

fn who(ctl: &SessionCtl) -> String {
    let by = ctl.mode_by.as_deref().unwrap_or("the operator");
    match ctl.mode_reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => format!("{by}: {r}"),
        None => by.to_string(),
    }
}

fn deny(reason: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("hookEventName".into(), json!(events::PRE_TOOL_USE));
    m.insert("permissionDecision".into(), json!("deny"));
    m.insert("permissionDecisionReason".into(), json!(reason));
    m
}

/// The answer that stops the agent at this event (kill), if the event can stop it.
fn stop_answer(event: &str, reason: &str) -> Option<Value> {
    match event {
        // `continue:false` next to a deny is ignored by Claude Code but does no harm; the
        // PostToolBatch that follows stops the loop.
        events::PRE_TOOL_USE => {
            Some(json!({ "hookSpecificOutput": deny(reason), "continue": false, "stopReason": reason }))
        }
        events::POST_TOOL_USE | events::POST_TOOL_BATCH | events::USER_PROMPT_SUBMIT => {
            Some(json!({ "continue": false, "stopReason": reason }))
        }
        _ => None,
    }
}

/// What a held call answers if the hold must end while the session is still paused.
pub fn pause_fallback(event: &str, ctl: &SessionCtl) -> Option<Value> {
    let reason = format!(
        "session paused by {} (agent-console); the pause outlasted the hook's deadline, so this step is stopped",
        who(ctl)
    );
    match event {
        events::PRE_TOOL_USE => Some(json!({ "hookSpecificOutput": deny(&reason) })),
        events::POST_TOOL_BATCH | events::USER_PROMPT_SUBMIT => {
            Some(json!({ "continue": false, "stopReason": reason }))
        }
        _ => None,
    }
}

fn approval_wait_fallback(a_rule: &str) -> Value {
    let reason = format!("tool call held for approval (rule {a_rule:?}) and not answered in time");
    json!({ "hookSpecificOutput": deny(&reason) })
}

fn denial_reason(a: &Approval) -> String {
    match (a.status, a.reason.as_deref().filter(|r| !r.is_empty())) {
        (_, Some(r)) => r.to_string(),
        (ApprovalStatus::Expired, None) => format!(
            "tool call held for approval (rule {:?}) was not answered in time; the policy default is deny",
            a.rule
        ),
        (_, None) => format!("denied by {} (agent-console)", a.answered_by.as_deref().unwrap_or("the operator")),
    }
}

/// The reason a "deny the next tool call" answer gives (every such command's, oldest first).
fn next_deny_reason(cmds: &[&Command]) -> String {
    let parts: Vec<String> = cmds
        .iter()
        .map(|c| match c.reason.as_deref().filter(|r| !r.is_empty()) {
            Some(r) => format!("denied by {} (agent-console): {r}", c.by),
            None => format!("denied by {} (agent-console)", c.by),
        })
        .collect();
    parts.join("; ")
}

/// THE decision for one hook call.
pub fn decide(ev: &HookEvent, v: &View, policy: &Policy, now_us: i64) -> Plan {
    let ctl = v.ctl;
    let mut effects = Vec::new();
    match ctl.mode {
        Mode::Killed => {
            let reason = format!("stopped by {} (agent-console)", who(ctl));
            let answer = stop_answer(ev.name, &reason);
            let signal = ctl.hard_kill && v.transport == Transport::Binary;
            if answer.is_some() || signal {
                if let Some(c) = v.mode_command().filter(|c| c.status == Status::Accepted) {
                    effects.push(Effect::Delivered { command: c.id.clone(), via: via(ev.name, v.transport) });
                }
            }
            let outcome = answer.map_or(Outcome::Pass, Outcome::Answer);
            return Plan { outcome, effects, signal };
        }
        Mode::Paused if events::HOLD.contains(&ev.name) => {
            if let Some(c) = v.mode_command().filter(|c| c.status == Status::Accepted) {
                effects.push(Effect::Delivered { command: c.id.clone(), via: via(ev.name, v.transport) });
                let note = format!("the agent is held at {}: no tool runs and no model call happens", ev.name);
                effects.push(Effect::Observed { command: c.id.clone(), note });
            }
            let outcome = Outcome::Hold { fallback: pause_fallback(ev.name, ctl), wake_at_us: None };
            return Plan { outcome, effects, signal: false };
        }
        _ => {}
    }
    if ctl.mode == Mode::Running {
        for c in v.open(Kind::Resume, Status::Accepted) {
            effects.push(Effect::Delivered { command: c.id.clone(), via: via(ev.name, v.transport) });
        }
    }
    let mut out = Map::new();
    let mut specific = Map::new();
    if ev.name == events::PRE_TOOL_USE {
        match v.approval {
            Some(a) if a.status == ApprovalStatus::Pending && now_us < a.expires_us => {
                let outcome =
                    Outcome::Hold { fallback: Some(approval_wait_fallback(&a.rule)), wake_at_us: Some(a.expires_us) };
                return Plan { outcome, effects, signal: false };
            }
            Some(a) => {
                let mut a = a.clone();
                if a.status == ApprovalStatus::Pending {
                    effects.push(Effect::ExpireApproval { approval: a.id.clone() });
                    a.status = ApprovalStatus::Expired;
                }
                if !a.delivered {
                    effects.push(Effect::ApprovalDelivered { approval: a.id.clone() });
                    if let Some(cmd) = &a.command_id {
                        effects.push(Effect::Delivered { command: cmd.clone(), via: via(ev.name, v.transport) });
                    }
                }
                if !a.allows() {
                    specific = deny(&denial_reason(&a));
                }
            }
            // A deny issued with no tool call waiting denies this one (the session's next).
            None if v.open(Kind::Deny, Status::Accepted).any(|c| c.tool_use_id.is_none()) => {
                let next: Vec<&Command> =
                    v.open(Kind::Deny, Status::Accepted).filter(|c| c.tool_use_id.is_none()).collect();
                let reason = next_deny_reason(&next);
                for c in next {
                    if let Some(t) = ev.tool_use_id {
                        effects.push(Effect::Targeted { command: c.id.clone(), tool_use_id: t.to_string() });
                    }
                    effects.push(Effect::Delivered { command: c.id.clone(), via: via(ev.name, v.transport) });
                }
                specific = deny(&reason);
            }
            None => {
                let input = ev.tool_input.cloned().unwrap_or(Value::Null);
                let agent = ctl.agent_id.as_deref();
                if let (Some(_), Some(m)) = (ev.tool_use_id, policy.matching(ev.tool_name, &input, agent, v.session_id))
                {
                    if !ctl.allowed_rules.contains(&m.rule) {
                        let wake = now_us + (m.timeout_secs as i64).saturating_mul(1_000_000);
                        let fallback = approval_wait_fallback(&m.rule);
                        effects.push(Effect::RequestApproval {
                            rule: m.rule,
                            timeout_secs: m.timeout_secs,
                            default_allow: m.default_allow,
                        });
                        let outcome = Outcome::Hold { fallback: Some(fallback), wake_at_us: Some(wake) };
                        return Plan { outcome, effects, signal: false };
                    }
                }
            }
        }
    }
    let injects: Vec<&Command> = v.open(Kind::Inject, Status::Accepted).collect();
    let mut blocked_stop = false;
    if !injects.is_empty() && events::INJECT.contains(&ev.name) {
        let text = injects.iter().filter_map(|c| c.message.as_deref()).collect::<Vec<_>>().join("\n\n");
        let deliver = if ev.name == events::STOP {
            if ctl.stop_blocks < STOP_BLOCK_CAP {
                out.insert("decision".into(), json!("block"));
                out.insert("reason".into(), json!(text));
                effects.push(Effect::StopBlock);
                blocked_stop = true;
                true
            } else {
                false
            }
        } else {
            specific.insert("hookEventName".into(), json!(ev.name));
            specific.insert("additionalContext".into(), json!(text));
            true
        };
        if deliver {
            for c in injects {
                effects.push(Effect::Delivered { command: c.id.clone(), via: via(ev.name, v.transport) });
            }
        }
    }
    let turn_over = ev.name == events::USER_PROMPT_SUBMIT || (ev.name == events::STOP && !blocked_stop);
    if turn_over && ctl.stop_blocks > 0 {
        effects.push(Effect::ResetStopBlocks);
    }
    if !specific.is_empty() {
        specific.insert("hookEventName".into(), json!(ev.name));
        out.insert("hookSpecificOutput".into(), Value::Object(specific));
    }
    let outcome = if out.is_empty() { Outcome::Pass } else { Outcome::Answer(Value::Object(out)) };
    Plan { outcome, effects, signal: false }
}

/// What an `--inbox` waiter does now.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxPlan {
    Wait,
    Release,
    Kill { command: Option<String> },
    Deliver { text: String, commands: Vec<String> },
}

/// The inbox decision: wake an idle session with queued messages; release superseded waiters.
pub fn decide_inbox(v: &View, waiter: &str) -> InboxPlan {
    let ctl = v.ctl;
    if ctl.seen.ended || ctl.inbox_waiter_id().is_some_and(|w| w != waiter) {
        return InboxPlan::Release;
    }
    match ctl.mode {
        Mode::Killed if ctl.hard_kill => {
            InboxPlan::Kill { command: v.mode_command().filter(|c| c.status == Status::Accepted).map(|c| c.id.clone()) }
        }
        Mode::Killed => InboxPlan::Release,
        Mode::Paused => InboxPlan::Wait,
        Mode::Running => {
            let injects: Vec<&Command> = v.open(Kind::Inject, Status::Accepted).collect();
            if injects.is_empty() || ctl.seen.in_turn {
                return InboxPlan::Wait;
            }
            let text = injects.iter().filter_map(|c| c.message.as_deref()).collect::<Vec<_>>().join("\n\n");
            InboxPlan::Deliver { text, commands: injects.iter().map(|c| c.id.clone()).collect() }
        }
    }
}

/// Evidence: what a hook call arriving now says about this session's delivered commands (and,
/// for SessionEnd, about those never delivered).
pub fn observe(ev: &HookEvent, v: &View) -> Vec<Effect> {
    let mut out = Vec::new();
    for c in v.ctl.open.iter().filter_map(|id| v.commands.get(id)) {
        let id = c.id.clone();
        if ev.name == events::SESSION_END && c.status == Status::Accepted {
            out.push(Effect::Expired { command: id, note: "the session ended before delivery".into() });
            continue;
        }
        if c.status != Status::Delivered {
            continue;
        }
        let same_tool = ev.tool_use_id.is_some() && ev.tool_use_id == c.tool_use_id.as_deref();
        let tool_ran = (ev.name == events::POST_TOOL_USE || ev.name == events::POST_TOOL_USE_FAILURE) && same_tool;
        let seen = |note: String| Effect::Observed { command: c.id.clone(), note };
        match c.kind {
            Kind::Kill => match ev.name {
                events::SESSION_END => out.push(seen("the session ended".into())),
                events::STOP => out.push(seen("the turn ended".into())),
                events::USER_PROMPT_SUBMIT => out.push(seen("the turn ended; the next prompt is stopped too".into())),
                _ => {}
            },
            Kind::Inject => {
                if ev.name == events::PRE_TOOL_USE || ev.name == events::STOP {
                    out.push(seen(format!("the agent made its next model call after delivery ({} followed)", ev.name)));
                }
            }
            Kind::Resume => out.push(seen(format!("the agent went on ({} followed)", ev.name))),
            Kind::Approve => {
                if tool_ran {
                    out.push(seen("the tool ran".into()));
                }
            }
            Kind::Deny => {
                if tool_ran {
                    out.push(Effect::Failed { command: id, note: "the tool ran although it was denied".into() });
                } else if [events::POST_TOOL_BATCH, events::PRE_TOOL_USE, events::STOP, events::SESSION_END]
                    .contains(&ev.name)
                {
                    out.push(seen(format!("the tool did not run ({} followed)", ev.name)));
                }
            }
            Kind::Pause => {}
        }
    }
    out
}

/// The Claude Code adapter: capabilities from what was seen of the session.
pub struct ClaudeCode;

impl Adapter for ClaudeCode {
    fn runtime(&self) -> &'static str {
        "claude-code"
    }

    fn refusal(&self, kind: Kind, hard: bool, ctl: &SessionCtl) -> Option<Refusal> {
        let seen = &ctl.seen;
        if seen.ended {
            return Some(Refusal::new("the session ended (SessionEnd): its Claude Code process is gone"));
        }
        let Some(transport) = seen.transport else {
            return Some(Refusal::new(if seen.legacy_hooks {
                "hook records came from an agent-console-hook without control support: update it and run \
                 `agent-console-hook install`"
            } else {
                "no control hook seen: install with `agent-console-hook install` (or point Claude Code's http \
                 hooks at /hooks/claude)"
            }));
        };
        let killed = ctl.mode == Mode::Killed;
        let r = match kind {
            Kind::Pause if ctl.mode == Mode::Paused => Some("the session is already paused"),
            Kind::Pause | Kind::Inject if killed => Some("the session was killed"),
            Kind::Pause if hard => Some(
                "hard pause is OpenClaw's archive fence; a Claude Code pause already holds every control hook \
                 (pause without hard)",
            ),
            Kind::Resume if ctl.mode != Mode::Paused => Some("the session is not paused"),
            Kind::Kill if hard && transport == Transport::Http => {
                Some("http hooks cannot hard-kill: only the hook binary can signal the Claude Code process")
            }
            Kind::Kill if killed && (ctl.hard_kill || !hard) => Some("the session was already killed"),
            _ => None,
        };
        r.map(Refusal::new)
    }

    fn notes(&self, kind: Kind, ctl: &SessionCtl) -> Option<String> {
        match kind {
            Kind::Inject if ctl.seen.transport.is_some() && !ctl.seen.in_turn && !ctl.seen.inbox => Some(
                "the session is between turns and no inbox hook was seen: the message is delivered at its next \
                 hook event (install with `agent-console-hook install` for the inbox)"
                    .into(),
            ),
            Kind::Pause | Kind::Kill => {
                Some("takes effect at the agent's next hook event (a running tool or model call finishes first)".into())
            }
            Kind::Deny => Some(
                "with no tool call waiting for approval, denies the session's next tool call (its next PreToolUse)"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::policy::{PolicySpec, RuleSpec};

    fn cmd(id: &str, kind: Kind, status: Status, msg: Option<&str>) -> Command {
        Command {
            id: id.into(),
            session_id: "s".into(),
            kind,
            message: msg.map(Into::into),
            reason: None,
            tool_use_id: None,
            hard: false,
            for_session: false,
            by: "alice".into(),
            status,
            result: None,
            delivered_via: None,
            accepted_us: 1,
            delivered_us: None,
            observed_us: None,
            ended_us: None,
        }
    }

    fn ev(name: &str) -> HookEvent<'_> {
        HookEvent { name, tool_name: Some("Bash"), tool_use_id: Some("toolu_1"), tool_input: None }
    }

    fn plan(name: &str, ctl: &SessionCtl, cmds: &HashMap<String, Command>, t: Transport) -> Plan {
        let v = View { session_id: "s", ctl, commands: cmds, approval: None, transport: t };
        decide(&ev(name), &v, &Policy::default(), 10)
    }

    fn with(cmds: &[Command]) -> (SessionCtl, HashMap<String, Command>) {
        let mut ctl = SessionCtl::default();
        ctl.seen.transport = Some(Transport::Binary);
        ctl.open = cmds.iter().map(|c| c.id.clone()).collect();
        (ctl, cmds.iter().map(|c| (c.id.clone(), c.clone())).collect())
    }

    #[test]
    fn running_with_nothing_pending_passes() {
        let (ctl, cmds) = with(&[]);
        for e in ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolBatch", "Stop"] {
            assert_eq!(
                plan(e, &ctl, &cmds, Transport::Http),
                Plan { outcome: Outcome::Pass, effects: vec![], signal: false }
            );
        }
    }

    #[test]
    fn the_kill_protocol_deny_then_continue_false() {
        let (mut ctl, cmds) = with(&[cmd("k", Kind::Kill, Status::Accepted, None)]);
        ctl.mode = Mode::Killed;
        ctl.mode_command = Some("k".into());
        ctl.mode_by = Some("alice".into());
        let p = plan("PreToolUse", &ctl, &cmds, Transport::Http);
        let Outcome::Answer(a) = &p.outcome else { panic!("{p:?}") };
        assert_eq!(a["hookSpecificOutput"]["permissionDecision"], "deny");
        assert_eq!(a["continue"], false);
        assert_eq!(p.effects, vec![Effect::Delivered { command: "k".into(), via: "PreToolUse (http-hooks)".into() }]);
        assert!(!p.signal);
        for e in ["PostToolBatch", "UserPromptSubmit", "PostToolUse"] {
            let Outcome::Answer(a) = plan(e, &ctl, &cmds, Transport::Http).outcome else { panic!("{e}") };
            assert_eq!(a, json!({"continue": false, "stopReason": "stopped by alice (agent-console)"}));
        }
        assert_eq!(plan("Stop", &ctl, &cmds, Transport::Http).outcome, Outcome::Pass);
        ctl.hard_kill = true;
        assert!(plan("Stop", &ctl, &cmds, Transport::Binary).signal, "hard kill through the binary");
    }

    #[test]
    fn pause_holds_the_four_boundaries_with_a_stopping_fallback() {
        let (mut ctl, cmds) = with(&[cmd("p", Kind::Pause, Status::Accepted, None)]);
        ctl.mode = Mode::Paused;
        ctl.mode_command = Some("p".into());
        for e in ["PreToolUse", "PostToolBatch", "UserPromptSubmit", "Stop"] {
            let p = plan(e, &ctl, &cmds, Transport::Binary);
            let Outcome::Hold { fallback, .. } = &p.outcome else { panic!("{e}: {p:?}") };
            match e {
                "PreToolUse" => assert_eq!(
                    fallback.as_ref().map(|f| &f["hookSpecificOutput"]["permissionDecision"]),
                    Some(&json!("deny"))
                ),
                "Stop" => assert!(fallback.is_none()),
                _ => assert_eq!(fallback.as_ref().map(|f| &f["continue"]), Some(&json!(false))),
            }
            assert!(matches!(p.effects[..], [Effect::Delivered { .. }, Effect::Observed { .. }]));
        }
        assert_eq!(plan("PostToolUse", &ctl, &cmds, Transport::Binary).outcome, Outcome::Pass, "the tool already ran");
    }

    #[test]
    fn inject_rides_the_next_event_and_stop_blocks_up_to_the_cap() {
        let (mut ctl, cmds) = with(&[
            cmd("i1", Kind::Inject, Status::Accepted, Some("one")),
            cmd("i2", Kind::Inject, Status::Accepted, Some("two")),
        ]);
        let p = plan("PostToolBatch", &ctl, &cmds, Transport::Binary);
        assert_eq!(
            p.outcome,
            Outcome::Answer(
                json!({"hookSpecificOutput": {"hookEventName": "PostToolBatch", "additionalContext": "one\n\ntwo"}})
            )
        );
        assert_eq!(p.effects.len(), 2);
        let p = plan("Stop", &ctl, &cmds, Transport::Binary);
        assert_eq!(p.outcome, Outcome::Answer(json!({"decision": "block", "reason": "one\n\ntwo"})));
        assert!(p.effects.contains(&Effect::StopBlock));
        ctl.stop_blocks = STOP_BLOCK_CAP;
        let p = plan("Stop", &ctl, &cmds, Transport::Binary);
        assert_eq!((p.outcome, p.effects), (Outcome::Pass, vec![Effect::ResetStopBlocks]), "cap reached: left queued");
        assert_eq!(plan("Notification", &ctl, &cmds, Transport::Binary).outcome, Outcome::Pass);
    }

    #[test]
    fn approval_rules_hold_until_answered_or_timed_out() {
        let spec = PolicySpec {
            rules: vec![RuleSpec {
                name: "push".into(),
                tool: Some("Bash".into()),
                input: Some("git push".into()),
                agent: None,
                session: None,
                timeout_secs: Some(5),
                default: None,
            }],
            ..Default::default()
        };
        let policy = Policy::build(spec, PolicySpec::default()).expect("policy");
        let (mut ctl, cmds) = with(&[]);
        let input = json!({"command": "git push origin main"});
        let e = HookEvent {
            name: "PreToolUse",
            tool_name: Some("Bash"),
            tool_use_id: Some("t1"),
            tool_input: Some(&input),
        };
        let v = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: None, transport: Transport::Http };
        let p = decide(&e, &v, &policy, 0);
        assert_eq!(
            p.effects,
            vec![Effect::RequestApproval { rule: "push".into(), timeout_secs: 5, default_allow: false }]
        );
        assert!(matches!(p.outcome, Outcome::Hold { wake_at_us: Some(5_000_000), .. }));
        let mut a = Approval {
            id: "a1".into(),
            session_id: "s".into(),
            tool_use_id: "t1".into(),
            tool_name: Some("Bash".into()),
            tool_input: input.clone(),
            rule: "push".into(),
            status: ApprovalStatus::Pending,
            default_allow: false,
            requested_us: 0,
            expires_us: 5_000_000,
            answered_us: None,
            answered_by: None,
            reason: None,
            command_id: None,
            delivered: false,
        };
        let v = View { approval: Some(&a), ..v };
        assert!(matches!(decide(&e, &v, &policy, 1).outcome, Outcome::Hold { .. }));
        // Timed out: the default (deny) answers.
        let p = decide(&e, &v, &policy, 5_000_000);
        let Outcome::Answer(ans) = &p.outcome else { panic!("{p:?}") };
        assert_eq!(ans["hookSpecificOutput"]["permissionDecision"], "deny");
        assert!(p.effects.contains(&Effect::ExpireApproval { approval: "a1".into() }));
        // Denied with a reason: exactly that reason.
        a.status = ApprovalStatus::Denied;
        a.reason = Some("not on Fridays".into());
        a.command_id = Some("c9".into());
        let v2 = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: Some(&a), transport: Transport::Http };
        let p = decide(&e, &v2, &policy, 2);
        let Outcome::Answer(ans) = &p.outcome else { panic!("{p:?}") };
        assert_eq!(ans["hookSpecificOutput"]["permissionDecisionReason"], "not on Fridays");
        assert!(p.effects.contains(&Effect::Delivered { command: "c9".into(), via: "PreToolUse (http-hooks)".into() }));
        // Approved for the session: the next matching call is not held.
        a.status = ApprovalStatus::Approved;
        let v3 = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: Some(&a), transport: Transport::Http };
        assert_eq!(decide(&e, &v3, &policy, 2).outcome, Outcome::Pass);
        ctl.allowed_rules.insert("push".into());
        let v4 = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: None, transport: Transport::Http };
        assert_eq!(decide(&e, &v4, &policy, 2).outcome, Outcome::Pass);
    }

    #[test]
    fn evidence_moves_delivered_commands_on() {
        let mut deny = cmd("d", Kind::Deny, Status::Delivered, None);
        deny.tool_use_id = Some("toolu_1".into());
        let (ctl, cmds) = with(&[
            cmd("i", Kind::Inject, Status::Delivered, Some("x")),
            deny,
            cmd("k", Kind::Kill, Status::Delivered, None),
            cmd("q", Kind::Inject, Status::Accepted, Some("y")),
        ]);
        let v = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: None, transport: Transport::Binary };
        let got = observe(&ev("PostToolUse"), &v);
        assert_eq!(
            got,
            vec![Effect::Failed { command: "d".into(), note: "the tool ran although it was denied".into() }]
        );
        let got = observe(&ev("Stop"), &v);
        assert_eq!(got.len(), 3, "{got:?}");
        let got = observe(&ev("SessionEnd"), &v);
        assert!(
            got.contains(&Effect::Expired { command: "q".into(), note: "the session ended before delivery".into() })
        );
    }

    #[test]
    fn capabilities_say_why_not() {
        let a = ClaudeCode;
        let mut ctl = SessionCtl::default();
        let r = a.refusal(Kind::Pause, false, &ctl).expect("no hooks");
        assert!(r.reason.contains("agent-console-hook install"), "{}", r.reason);
        ctl.seen.transport = Some(Transport::Http);
        assert!(a.refusal(Kind::Pause, false, &ctl).is_none());
        assert!(a.refusal(Kind::Kill, true, &ctl).expect("http").reason.contains("http hooks cannot hard-kill"));
        assert!(a.refusal(Kind::Resume, false, &ctl).is_some());
        ctl.mode = Mode::Paused;
        assert!(a.refusal(Kind::Resume, false, &ctl).is_none());
        ctl.seen.ended = true;
        assert!(a.refusal(Kind::Inject, false, &ctl).is_some());
    }

    #[test]
    fn a_deny_with_nothing_waiting_denies_the_next_tool_call_once() {
        let mut d = cmd("d", Kind::Deny, Status::Accepted, None);
        d.reason = Some("budget spent".into());
        d.by = "rule:budget".into();
        let (ctl, cmds) = with(&[d.clone()]);
        // Other events pass it by; the next PreToolUse is denied with the reason.
        assert_eq!(plan("UserPromptSubmit", &ctl, &cmds, Transport::Http).outcome, Outcome::Pass);
        let p = plan("PreToolUse", &ctl, &cmds, Transport::Http);
        let Outcome::Answer(a) = &p.outcome else { panic!("{p:?}") };
        assert_eq!(a["hookSpecificOutput"]["permissionDecision"], "deny");
        assert_eq!(
            a["hookSpecificOutput"]["permissionDecisionReason"],
            "denied by rule:budget (agent-console): budget spent"
        );
        assert_eq!(
            p.effects,
            vec![
                Effect::Targeted { command: "d".into(), tool_use_id: "toolu_1".into() },
                Effect::Delivered { command: "d".into(), via: "PreToolUse (http-hooks)".into() },
            ]
        );
        // Delivered for toolu_1: observed when the tool did not run, failed when it did.
        d.status = Status::Delivered;
        d.tool_use_id = Some("toolu_1".into());
        let (ctl, cmds) = with(&[d]);
        let v = View { session_id: "s", ctl: &ctl, commands: &cmds, approval: None, transport: Transport::Http };
        assert!(matches!(observe(&ev("PostToolBatch"), &v).as_slice(), [Effect::Observed { .. }]));
        assert!(matches!(observe(&ev("PostToolUse"), &v).as_slice(), [Effect::Failed { .. }]));
        // Once delivered it no longer denies.
        assert_eq!(plan("PreToolUse", &ctl, &cmds, Transport::Http).outcome, Outcome::Pass);
        // OpenClaw has no per-tool deny: refused with the reason.
        let r = crate::control::openclaw::OpenClaw.refusal(Kind::Deny, false, &SessionCtl::default());
        assert!(r.is_some_and(|r| r.reason.contains("no per-tool-call deny")));
    }
}
