//! Task API bodies and the board: the derived state (`inbox` / `assigned` / `running` /
//! `complete`, overridable by hand) and the card flags (errored, stuck, waiting, paused). Pure;
//! the list and detail SQL (`store.rs`) compute the same rule, tested together below and in
//! `tests/tasks.rs`.

use serde::Deserialize;
use serde_json::Value;

use super::TaskError;

pub const INBOX: &str = "inbox";
pub const ASSIGNED: &str = "assigned";
pub const RUNNING: &str = "running";
pub const COMPLETE: &str = "complete";
/// Board states, in board order.
pub const STATES: &[&str] = &[INBOX, ASSIGNED, RUNNING, COMPLETE];

pub const MAX_TITLE: usize = 500;
pub const MAX_TEXT: usize = 20_000;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL: usize = 100;

/// What a task's sessions are doing (one per linked session, children included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFacts {
    pub status: String,
    pub stuck: bool,
    pub waiting: bool,
}

/// The derived board state: an override wins; a completed task is complete; a linked session
/// that is not finished (running, waiting, idle, paused, errored) makes it running; an agent or
/// any linked session makes it assigned; otherwise inbox. A session ending never completes it.
pub fn board_state(
    override_state: Option<&str>,
    completed: bool,
    agent: bool,
    sessions: &[SessionFacts],
) -> &'static str {
    if let Some(s) = override_state.and_then(|o| STATES.iter().find(|s| **s == o)) {
        return s;
    }
    if completed {
        COMPLETE
    } else if sessions.iter().any(|s| s.status != "finished") {
        RUNNING
    } else if agent || !sessions.is_empty() {
        ASSIGNED
    } else {
        INBOX
    }
}

/// Card flags: any live session errored / stuck / waiting for a human / paused.
pub fn flags(sessions: &[SessionFacts]) -> Vec<&'static str> {
    let live = || sessions.iter().filter(|s| s.status != "finished");
    let mut out = Vec::new();
    if live().any(|s| s.status == "errored") {
        out.push("errored");
    }
    if live().any(|s| s.stuck) {
        out.push("stuck");
    }
    if live().any(|s| s.waiting) {
        out.push("waiting");
    }
    if live().any(|s| s.status == "paused") {
        out.push("paused");
    }
    out
}

/// `POST /api/tasks` body.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Our id; generated when absent (`t-...`), unless `source` + `external_id` name a task
    /// that exists (then that task is updated: idempotent upsert).
    pub id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub source: Option<String>,
    pub external_id: Option<String>,
    pub agent: Option<String>,
    pub labels: Option<Vec<String>>,
    /// A board state override.
    pub state: Option<String>,
}

/// `PATCH /api/tasks/{id}` body: absent fields stay; `null` clears (title cannot be cleared).
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub url: Option<Option<String>>,
    pub agent: Option<Option<String>>,
    pub labels: Option<Vec<String>>,
    /// `Some(None)` clears the override (derived again).
    pub state: Option<Option<String>>,
    pub archived: Option<bool>,
}

fn text(name: &str, v: &Value, max: usize) -> Result<Option<String>, TaskError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= max => Ok(Some(s.clone())),
        Value::String(_) => Err(TaskError::Invalid(format!("{name} is longer than {max} bytes"))),
        _ => Err(TaskError::Invalid(format!("{name} must be a string or null"))),
    }
}

pub fn check_state(s: &str) -> Result<(), TaskError> {
    if STATES.contains(&s) {
        Ok(())
    } else {
        Err(TaskError::Invalid(format!("state must be one of {}, not {s:?}", STATES.join(", "))))
    }
}

pub fn check_labels(labels: &[String]) -> Result<Vec<String>, TaskError> {
    if labels.len() > MAX_LABELS {
        return Err(TaskError::Invalid(format!("at most {MAX_LABELS} labels")));
    }
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        let l = l.trim();
        if l.is_empty() || l.len() > MAX_LABEL {
            return Err(TaskError::Invalid(format!("a label must have 1 to {MAX_LABEL} bytes")));
        }
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

pub fn check_id(id: &str) -> Result<(), TaskError> {
    if id.is_empty() || id.len() > super::link::MAX_ID || id.chars().any(char::is_control) {
        return Err(TaskError::Invalid(format!("a task id must have 1 to {} printable bytes", super::link::MAX_ID)));
    }
    Ok(())
}

impl NewTask {
    pub fn parse(body: &[u8]) -> Result<Self, TaskError> {
        let t: NewTask = serde_json::from_slice(body).map_err(|e| TaskError::Invalid(format!("bad task: {e}")))?;
        if let Some(id) = &t.id {
            check_id(id)?;
        }
        if t.title.as_ref().is_some_and(|s| s.len() > MAX_TITLE) {
            return Err(TaskError::Invalid(format!("title is longer than {MAX_TITLE} bytes")));
        }
        for (n, v) in [
            ("description", &t.description),
            ("url", &t.url),
            ("source", &t.source),
            ("external_id", &t.external_id),
            ("agent", &t.agent),
        ] {
            if v.as_ref().is_some_and(|s| s.len() > MAX_TEXT) {
                return Err(TaskError::Invalid(format!("{n} is longer than {MAX_TEXT} bytes")));
            }
        }
        if t.source.is_some() != t.external_id.is_some() {
            return Err(TaskError::Invalid("source and external_id go together".into()));
        }
        if t.id.is_none() && t.title.as_deref().is_none_or(|s| s.trim().is_empty()) && t.external_id.is_none() {
            return Err(TaskError::Invalid("a task needs a title (or an id, or source + external_id)".into()));
        }
        if let Some(s) = &t.state {
            check_state(s)?;
        }
        Ok(t)
    }
}

impl Patch {
    pub fn parse(body: &[u8]) -> Result<Self, TaskError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| TaskError::Invalid(format!("bad patch: {e}")))?;
        let Value::Object(m) = v else { return Err(TaskError::Invalid("a patch is a JSON object".into())) };
        let mut p = Patch::default();
        for (k, v) in &m {
            match k.as_str() {
                "title" => {
                    p.title = Some(
                        text("title", v, MAX_TITLE)?
                            .filter(|t| !t.trim().is_empty())
                            .ok_or_else(|| TaskError::Invalid("title cannot be empty".into()))?,
                    )
                }
                "description" => p.description = Some(text(k, v, MAX_TEXT)?),
                "url" => p.url = Some(text(k, v, MAX_TEXT)?),
                "agent" => p.agent = Some(text(k, v, MAX_TEXT)?),
                "state" => {
                    let s = text(k, v, 32)?;
                    if let Some(s) = &s {
                        check_state(s)?;
                    }
                    p.state = Some(s);
                }
                "labels" => {
                    let labels: Vec<String> = serde_json::from_value(v.clone())
                        .map_err(|_| TaskError::Invalid("labels must be a list of strings".into()))?;
                    p.labels = Some(check_labels(&labels)?);
                }
                "archived" => {
                    p.archived =
                        Some(v.as_bool().ok_or_else(|| TaskError::Invalid("archived must be true or false".into()))?)
                }
                other => return Err(TaskError::Invalid(format!("unknown field {other:?}"))),
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(status: &str, stuck: bool, waiting: bool) -> SessionFacts {
        SessionFacts { status: status.into(), stuck, waiting }
    }

    type Case = (Option<&'static str>, bool, bool, Vec<SessionFacts>, &'static str);

    #[test]
    fn board_states() {
        let cases: &[Case] = &[
            (None, false, false, vec![], INBOX),
            (None, false, true, vec![], ASSIGNED),
            (None, false, false, vec![s("finished", false, false)], ASSIGNED),
            (None, false, false, vec![s("running", false, false)], RUNNING),
            (None, false, false, vec![s("idle", false, false), s("finished", false, false)], RUNNING),
            (None, false, false, vec![s("paused", false, false)], RUNNING),
            (None, true, false, vec![s("running", false, false)], COMPLETE),
            (Some("complete"), false, false, vec![s("running", false, false)], COMPLETE),
            (Some("inbox"), false, true, vec![], INBOX),
            (Some("bogus"), false, true, vec![], ASSIGNED),
        ];
        for (o, done, agent, sessions, want) in cases {
            assert_eq!(board_state(*o, *done, *agent, sessions), *want, "{o:?} {done} {agent} {sessions:?}");
        }
    }

    #[test]
    fn card_flags() {
        assert!(flags(&[]).is_empty());
        assert_eq!(
            flags(&[s("errored", false, false), s("running", true, true), s("paused", false, false)]),
            vec!["errored", "stuck", "waiting", "paused"]
        );
        assert!(flags(&[s("finished", true, true)]).is_empty(), "a finished session flags nothing");
    }

    #[test]
    fn bodies() {
        assert!(NewTask::parse(br#"{"title":"x"}"#).is_ok());
        assert!(NewTask::parse(br#"{}"#).is_err());
        assert!(NewTask::parse(br#"{"title":"x","source":"gh"}"#).is_err());
        assert!(NewTask::parse(br#"{"title":"x","state":"done"}"#).is_err());
        assert!(NewTask::parse(br#"{"title":"x","extra":1}"#).is_err());
        let p = Patch::parse(br#"{"state":null,"agent":"a1","labels":["x","x","y"]}"#).expect("patch");
        assert_eq!(p.state, Some(None));
        assert_eq!(p.agent, Some(Some("a1".into())));
        assert_eq!(p.labels, Some(vec!["x".into(), "y".into()]));
        assert!(Patch::parse(br#"{"title":""}"#).is_err());
        assert!(Patch::parse(br#"{"nope":1}"#).is_err());
    }
}
