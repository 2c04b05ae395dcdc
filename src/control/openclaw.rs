//! OpenClaw sessions: no delivery yet. The control calls a real gateway answers are recorded in
//! `shared/reference/openclaw-gateway.md` (kill -> `sessions.abort`, inject -> `sessions.send`,
//! pause held by the collector); delivery through the shim's gateway connection plugs in here as
//! this adapter's transport, on the same control state and lifecycle as Claude Code.

use super::adapter::{Adapter, Refusal};
use super::model::{Kind, SessionCtl};

pub struct OpenClaw;

impl Adapter for OpenClaw {
    fn runtime(&self) -> &'static str {
        "openclaw"
    }

    fn refusal(&self, _kind: Kind, _hard: bool, _ctl: &SessionCtl) -> Option<Refusal> {
        Some(Refusal::new("OpenClaw control is not available yet"))
    }
}
