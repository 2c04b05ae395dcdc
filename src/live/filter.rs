//! Query-parameter filters of the live endpoints: `session`, `agent`, `task` (exact match on the
//! payload's ids), `type` (comma list: span, event, model_call, tool_call, session, and control's
//! command and approval), plus `since` (resume point) and `snapshot`.

use serde::Deserialize;

use super::message::{Header, Message};

/// `GET /api/live?session=&agent=&task=&type=a,b&since=ID&snapshot=true`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct LiveParams {
    pub session: Option<String>,
    pub agent: Option<String>,
    pub task: Option<String>,
    #[serde(rename = "type")]
    pub types: Option<String>,
    pub since: Option<u64>,
    #[serde(default)]
    pub snapshot: bool,
}

/// Which messages a subscriber wants.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    session: Option<String>,
    agent: Option<String>,
    task: Option<String>,
    types: Option<Vec<String>>,
}

impl Filter {
    pub fn new(p: &LiveParams) -> Self {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        let types = p
            .types
            .as_ref()
            .map(|t| t.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>());
        Filter {
            session: nonempty(&p.session),
            agent: nonempty(&p.agent),
            task: nonempty(&p.task),
            types: types.filter(|t| !t.is_empty()),
        }
    }

    /// Data messages must match every given filter; `gap` messages always pass.
    pub fn matches(&self, m: &Message) -> bool {
        self.matches_header(&Header {
            kind: m.kind,
            session_id: m.session_id.as_deref(),
            agent_id: m.agent_id.as_deref(),
            task_id: m.task_id.as_deref(),
        })
    }

    /// The same test on a not yet serialised message.
    /// False when no message of `e` can match (its index names none of the session, agent or
    /// task asked for): the subscriber skips the entry whole.
    pub fn may_match_entry(&self, e: &super::message::Entry) -> bool {
        if self.session.is_none() && self.agent.is_none() && self.task.is_none() {
            return true;
        }
        let Some(ix) = e.index() else { return true };
        fn has(want: &Option<String>, set: &[Box<str>]) -> bool {
            want.as_ref().is_none_or(|w| set.iter().any(|s| **s == **w))
        }
        has(&self.session, &ix.sessions) && has(&self.agent, &ix.agents) && has(&self.task, &ix.tasks)
    }

    pub fn matches_header(&self, h: &Header<'_>) -> bool {
        if h.kind == super::message::GAP {
            return true;
        }
        fn eq(want: &Option<String>, got: Option<&str>) -> bool {
            want.as_ref().is_none_or(|w| got == Some(w.as_str()))
        }
        eq(&self.session, h.session_id)
            && eq(&self.agent, h.agent_id)
            && eq(&self.task, h.task_id)
            && self.types.as_ref().is_none_or(|t| t.iter().any(|k| k == h.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::message::{Message, GAP, MODEL_CALL, SPAN};

    fn msg(kind: &'static str, agent: &str) -> Message {
        Message {
            id: 1,
            kind,
            session_id: Some("s".into()),
            agent_id: Some(agent.into()),
            task_id: None,
            data: "{}".into(),
        }
    }

    #[test]
    fn filters_by_type_and_ids() {
        let f = Filter::new(&LiveParams {
            types: Some("model_call, tool_call".into()),
            agent: Some("a".into()),
            ..Default::default()
        });
        assert!(f.matches(&msg(MODEL_CALL, "a")));
        assert!(!f.matches(&msg(MODEL_CALL, "b")));
        assert!(!f.matches(&msg(SPAN, "a")));
        assert!(f.matches(&msg(GAP, "b")));
        let c = Filter::new(&LiveParams {
            types: Some("command,approval".into()),
            session: Some("s".into()),
            ..Default::default()
        });
        assert!(c.matches(&msg(crate::live::message::COMMAND, "a")));
        assert!(c.matches(&msg(crate::live::message::APPROVAL, "b")));
        assert!(!c.matches(&msg(SPAN, "a")));
        let t = Filter::new(&LiveParams { task: Some("t".into()), ..Default::default() });
        assert!(!t.matches(&msg(SPAN, "a")));
        assert!(Filter::default().matches(&msg(SPAN, "a")));
    }
}
