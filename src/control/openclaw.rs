//! OpenClaw sessions: what a command can do and the evidence rules, delivered through the
//! `agent-console-openclaw` shim's gateway connection (`openclaw_link.rs`: the per-gateway inbox
//! the shim long-polls). The control calls a real 2026.9.6 gateway answers are recorded in
//! `shared/reference/openclaw-gateway.md`:
//! - kill -> `sessions.abort {key, clearQueued: true}`: delivered when the gateway answers,
//!   observed when the shim's status record says the session's run was `killed` (or at once when
//!   the gateway answers `no-active-run`: nothing was running). Not sticky: the session can be
//!   sent to again.
//! - inject -> `sessions.send {key, message, idempotencyKey}` (steers a running turn or starts
//!   one; `chat.inject` is an admin-only note the model never sees): observed at the next model
//!   call the gateway serves for the session.
//! - pause -> held by us (OpenClaw has no per-session pause): the shim aborts the current run and
//!   every run the session starts until resume; console sends are refused meanwhile. Observed when
//!   the session's run has stopped (or no run was active).
//! - resume -> the shim lifts its hold (observed when it acknowledges).
//! - pause with `hard: true` -> also the gateway's archive fence, `sessions.patch {key, archived:
//!   true}`: the gateway cancels the run and refuses new work from every client (not only the
//!   console) until the resume restores it (`archived: false`). Non-main sessions only: the
//!   gateway refuses to archive an agent's main session, and so do we, with the reason.
//!
//! Available only while the session's gateway has a shim polling the inbox, connected to its
//! gateway, with scope `operator.write`; otherwise refused with the reason.

use agent_console_conventions::openclaw as oc;

use super::adapter::{Adapter, Refusal};
use super::model::{Kind, Mode, SessionCtl};

pub struct OpenClaw;

/// What the collector knows of the shim serving a session's gateway (`openclaw_link::Links`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    /// The session's key.
    pub session: String,
    pub gateway: String,
    /// A long-poll is open, or ended moments ago.
    pub shim_polling: bool,
    /// The shim says its gateway connection is up.
    pub gateway_up: bool,
    pub scopes: Vec<String>,
    /// Seconds since the shim last polled.
    pub idle_secs: i64,
}

pub const WRITE_SCOPE: &str = "operator.write";

impl Adapter for OpenClaw {
    fn runtime(&self) -> &'static str {
        "openclaw"
    }

    fn refusal(&self, kind: Kind, hard: bool, ctl: &SessionCtl) -> Option<Refusal> {
        if kind == Kind::Approve {
            return Some(Refusal::new("OpenClaw tool calls are not held for approval through the gateway connection"));
        }
        if kind == Kind::Deny {
            return Some(Refusal::new(
                "OpenClaw has no per-tool-call deny through the gateway connection (no approval hold, no way to \
                 refuse its next tool call): pause or kill the session instead",
            ));
        }
        if kind == Kind::Kill && hard {
            return Some(Refusal::new(
                "hard kill ends a Claude Code process from its hook binary; an OpenClaw run is killed with \
                 sessions.abort (kill without hard)",
            ));
        }
        let Some(link) = &ctl.seen.openclaw_link else {
            return Some(Refusal::new(
                "OpenClaw shim not connected: no agent-console-openclaw shim serving this session polls the \
                 collector (start it with --endpoint pointing here)",
            ));
        };
        if !link.shim_polling {
            return Some(Refusal::new(format!(
                "OpenClaw shim not connected: the shim of gateway {} last polled {} s ago",
                link.gateway, link.idle_secs
            )));
        }
        if !link.gateway_up {
            return Some(Refusal::new(format!(
                "OpenClaw shim not connected to its gateway {}: it is reconnecting",
                link.gateway
            )));
        }
        if !link.scopes.iter().any(|s| s == WRITE_SCOPE) {
            return Some(Refusal::new(format!(
                "the OpenClaw shim of gateway {} was granted {} without {WRITE_SCOPE}: commands need {WRITE_SCOPE} \
                 (connect with a token that grants it)",
                link.gateway,
                if link.scopes.is_empty() { "no scopes".to_string() } else { link.scopes.join(", ") }
            )));
        }
        if kind == Kind::Pause && hard && is_main_key(&link.session) {
            return Some(Refusal::new(
                "hard pause archives the session, and OpenClaw cannot archive an agent's main session: pause \
                 without hard (the shim aborts every run it starts until resume)",
            ));
        }
        let r = match kind {
            Kind::Pause if ctl.mode == Mode::Paused => Some("the session is already paused"),
            Kind::Resume if ctl.mode != Mode::Paused => Some("the session is not paused"),
            Kind::Inject if ctl.mode == Mode::Paused => {
                Some("the session is paused: console sends are refused until resume")
            }
            _ => None,
        };
        r.map(Refusal::new)
    }

    fn notes(&self, kind: Kind, _ctl: &SessionCtl) -> Option<String> {
        match kind {
            Kind::Kill => {
                Some("aborts the session's current run (sessions.abort); the session can be sent to again".into())
            }
            Kind::Pause => Some("aborts the current run and every run the session starts until resume".into()),
            Kind::Inject => Some("sessions.send: steers the running turn or starts one".into()),
            _ => None,
        }
    }

    fn hard_notes(&self, kind: Kind, _ctl: &SessionCtl) -> Option<String> {
        (kind == Kind::Pause).then(|| {
            "also archives the session (sessions.patch archived): the gateway refuses new work from every client \
             until resume restores it"
                .into()
        })
    }
}

/// An agent's main session key, `agent:<agent id>:main` (the gateway's default main key).
pub fn is_main_key(key: &str) -> bool {
    let mut parts = key.split(':');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()), (Some("agent"), Some(_), Some("main"), None))
}

/// What the gateway answered to a command's call, as the shim acknowledges it (the shim's type).
pub use agent_console_openclaw::control::Ack;

/// Where an acknowledged command goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AckStep {
    /// `delivered` (via), then `observed` with the note when the reply itself is the evidence.
    Delivered {
        via: String,
        observed: Option<String>,
    },
    Failed(String),
}

/// The step an ack makes (pure).
pub fn ack_step(kind: Kind, gateway: &str, a: &Ack) -> AckStep {
    let method = a.method.as_deref().unwrap_or("no gateway call");
    if !a.ok {
        let code = a.code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
        return AckStep::Failed(format!(
            "gateway {gateway} refused {method}: {code}{}",
            a.error.as_deref().unwrap_or("no reason given")
        ));
    }
    let via = match (&a.status, &a.run_id) {
        (Some(s), Some(r)) => format!("openclaw gateway {gateway}: {method} ({s}, run {r})"),
        (Some(s), None) => format!("openclaw gateway {gateway}: {method} ({s})"),
        _ => format!("openclaw gateway {gateway}: {method}"),
    };
    let idle = a.status.as_deref() == Some("no-active-run");
    let fence = a.method.as_deref() == Some("sessions.patch");
    let observed = match kind {
        Kind::Pause if fence => Some(
            "the gateway archived the session: its run was cancelled and it refuses new work from every client \
             until resume"
                .to_string(),
        ),
        Kind::Resume if fence => {
            Some("the gateway restored the session (archived: false) and the shim lifted its hold".to_string())
        }
        Kind::Kill if idle => Some("no run was active: nothing left to stop".to_string()),
        Kind::Pause if idle => Some("no run was active; new runs are aborted until resume".to_string()),
        Kind::Resume => Some("the shim lifted its hold: new runs are no longer aborted".to_string()),
        _ => None,
    };
    AckStep::Delivered { via, observed }
}

/// What a shim record shows about a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// An `openclaw.session.status` record.
    Status { status: String, run_id: Option<String> },
    /// A model call the gateway served (`openclaw.model_call`).
    Call,
}

/// The note that moves a delivered command of `kind` to `observed`, if `ev` shows its effect.
pub fn observed_by(kind: Kind, ev: &Evidence) -> Option<String> {
    let run = |r: &Option<String>| r.as_deref().map(|r| format!(" (run {r})")).unwrap_or_default();
    match (kind, ev) {
        (Kind::Kill, Evidence::Status { status, run_id }) if status == "killed" => {
            Some(format!("the session's run was killed{}", run(run_id)))
        }
        (Kind::Pause, Evidence::Status { status, run_id }) if oc::END_STATUSES.contains(&status.as_str()) => {
            Some(format!("the session's run stopped ({status}){}; new runs are aborted until resume", run(run_id)))
        }
        (Kind::Inject, Evidence::Call) => Some("the gateway served a model call after the message was sent".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl(link: Option<LinkView>) -> SessionCtl {
        let mut c = SessionCtl::default();
        c.seen.openclaw = true;
        c.seen.openclaw_link = link;
        c
    }

    fn link(scopes: &[&str]) -> LinkView {
        LinkView {
            session: "agent:main:main".into(),
            gateway: "gw1".into(),
            shim_polling: true,
            gateway_up: true,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            idle_secs: 0,
        }
    }

    fn reason(c: &SessionCtl, kind: Kind) -> Option<String> {
        OpenClaw.refusal(kind, false, c).map(|r| r.reason)
    }

    #[test]
    fn capabilities_follow_the_shim() {
        let cases: Vec<(Option<LinkView>, Kind, Option<&str>)> = vec![
            (None, Kind::Kill, Some("OpenClaw shim not connected")),
            (
                Some(LinkView { shim_polling: false, idle_secs: 40, ..link(&["operator.write"]) }),
                Kind::Kill,
                Some("last polled 40 s ago"),
            ),
            (
                Some(LinkView { gateway_up: false, ..link(&["operator.write"]) }),
                Kind::Inject,
                Some("not connected to its gateway"),
            ),
            (Some(link(&["operator.read"])), Kind::Kill, Some("granted operator.read without operator.write")),
            (Some(link(&[])), Kind::Pause, Some("granted no scopes")),
            (Some(link(&["operator.read", "operator.write"])), Kind::Kill, None),
            (Some(link(&["operator.read", "operator.write"])), Kind::Inject, None),
            (Some(link(&["operator.read", "operator.write"])), Kind::Pause, None),
            (Some(link(&["operator.read", "operator.write"])), Kind::Resume, Some("not paused")),
            (Some(link(&["operator.read", "operator.write"])), Kind::Approve, Some("not held for approval")),
        ];
        for (l, kind, want) in cases {
            let got = reason(&ctl(l.clone()), kind);
            match want {
                None => assert_eq!(got, None, "{kind:?} {l:?}"),
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.contains(w)), "{kind:?} {l:?}: {got:?}"),
            }
        }
        let mut paused = ctl(Some(link(&["operator.write"])));
        paused.mode = Mode::Paused;
        assert!(reason(&paused, Kind::Inject).is_some_and(|r| r.contains("console sends are refused")));
        assert_eq!(reason(&paused, Kind::Resume), None);
        assert!(OpenClaw.refusal(Kind::Kill, true, &paused).is_some(), "no hard kill");
        // Kill is not sticky: a later run can be killed again.
        let mut killed = ctl(Some(link(&["operator.write"])));
        killed.mode = Mode::Killed;
        assert_eq!(reason(&killed, Kind::Kill), None);
        // The archive fence: non-main sessions only.
        let main = ctl(Some(link(&["operator.write"])));
        let hard = OpenClaw.refusal(Kind::Pause, true, &main).map(|r| r.reason);
        assert!(hard.is_some_and(|r| r.contains("main session")));
        let child = ctl(Some(LinkView { session: "agent:main:dashboard:7f3a".into(), ..link(&["operator.write"]) }));
        assert_eq!(OpenClaw.refusal(Kind::Pause, true, &child).map(|r| r.reason), None);
        for (key, main) in [
            ("agent:main:main", true),
            ("agent:ops:main", true),
            ("agent:main:dashboard:1", false),
            ("agent:main:mainly", false),
            ("main", false),
        ] {
            assert_eq!(is_main_key(key), main, "{key}");
        }
    }

    #[test]
    fn acks_make_steps() {
        let ok = |status: &str| Ack {
            command_id: "c".into(),
            ok: true,
            method: Some("sessions.abort".into()),
            status: Some(status.into()),
            ..Default::default()
        };
        let cases: Vec<(Kind, Ack, AckStep)> = vec![
            (
                Kind::Kill,
                ok("aborted"),
                AckStep::Delivered { via: "openclaw gateway g: sessions.abort (aborted)".into(), observed: None },
            ),
            (
                Kind::Kill,
                ok("no-active-run"),
                AckStep::Delivered {
                    via: "openclaw gateway g: sessions.abort (no-active-run)".into(),
                    observed: Some("no run was active: nothing left to stop".into()),
                },
            ),
            (
                Kind::Pause,
                ok("no-active-run"),
                AckStep::Delivered {
                    via: "openclaw gateway g: sessions.abort (no-active-run)".into(),
                    observed: Some("no run was active; new runs are aborted until resume".into()),
                },
            ),
            (
                Kind::Inject,
                Ack {
                    command_id: "c".into(),
                    ok: false,
                    method: Some("sessions.send".into()),
                    code: Some("INVALID_REQUEST".into()),
                    error: Some("session not found: agent:main:nosuch".into()),
                    ..Default::default()
                },
                AckStep::Failed(
                    "gateway g refused sessions.send: INVALID_REQUEST: session not found: agent:main:nosuch".into(),
                ),
            ),
        ];
        for (kind, ack, want) in cases {
            assert_eq!(ack_step(kind, "g", &ack), want, "{kind:?}");
        }
    }

    #[test]
    fn evidence_rules() {
        let status = |s: &str| Evidence::Status { status: s.into(), run_id: Some("r1".into()) };
        assert_eq!(
            observed_by(Kind::Kill, &status("killed")).as_deref(),
            Some("the session's run was killed (run r1)")
        );
        assert_eq!(observed_by(Kind::Kill, &status("done")), None, "only a killed row shows a kill");
        assert_eq!(observed_by(Kind::Kill, &Evidence::Call), None);
        assert!(observed_by(Kind::Pause, &status("killed")).is_some());
        assert_eq!(observed_by(Kind::Pause, &status("running")), None);
        assert!(observed_by(Kind::Inject, &Evidence::Call).is_some());
        assert_eq!(observed_by(Kind::Inject, &status("running")), None);
        assert_eq!(observed_by(Kind::Resume, &status("running")), None);
    }
}
