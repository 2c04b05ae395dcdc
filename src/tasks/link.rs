//! The pipeline's `tasks` stage: which tasks and session links a batch introduces. Pure per
//! batch except for a bounded memory of what was already handed to the writer (forgetting only
//! costs an idempotent upsert). The writer upserts the result in the same transaction as the
//! batch's rows (`tasks::store::upsert_links`).

use std::collections::HashSet;

use regex::Regex;

use super::TaskError;
use crate::model::records::Batch;

/// How a session got linked to a task.
pub const ATTRIBUTE: &str = "attribute";
pub const HAND: &str = "hand";
pub const PATTERN: &str = "pattern";

/// Attributes the pattern looks at (git branch first, then the working directory).
pub const PATTERN_KEYS: &[&str] = &[
    "vcs.ref.head.name",
    "git.branch",
    "agent_console.git.branch",
    agent_console_conventions::attr::CWD,
    "process.cwd",
];

/// A task first seen in telemetry, optionally with a session it links (`how` = attribute or
/// pattern). Handed to the writer in `Batch::task_links`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLink {
    pub task_id: String,
    pub session_id: Option<String>,
    pub how: &'static str,
    pub time_us: i64,
}

/// Longest task id taken from telemetry or a pattern.
pub const MAX_ID: usize = 200;

/// A compiled link pattern.
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn new(p: &str) -> Result<Self, TaskError> {
        regex::RegexBuilder::new(p)
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| TaskError::Pattern(e.to_string()))
    }

    /// The task id in `text`: the first capture group, else the whole match.
    pub fn extract(&self, text: &str) -> Option<String> {
        let c = self.0.captures(text)?;
        let m = c.get(1).or_else(|| c.get(0))?;
        let id = m.as_str().trim();
        (!id.is_empty() && id.len() <= MAX_ID).then(|| id.to_string())
    }
}

/// Values of `PATTERN_KEYS` in an attributes JSON object (strings only).
fn pattern_values(attributes: &str) -> Vec<String> {
    if !PATTERN_KEYS.iter().any(|k| attributes.contains(k)) {
        return Vec::new();
    }
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(attributes) else {
        return Vec::new();
    };
    PATTERN_KEYS.iter().filter_map(|k| m.get(*k).and_then(|v| v.as_str()).map(str::to_string)).collect()
}

/// Bounded memory of links already handed to the writer.
pub struct Linker {
    pattern: Option<Pattern>,
    seen: HashSet<(String, Option<String>, &'static str)>,
    cap: usize,
}

impl Linker {
    pub fn new(pattern: Option<Pattern>) -> Self {
        Linker { pattern, seen: HashSet::new(), cap: 100_000 }
    }

    /// The links `batch` introduces that were not handed over before.
    pub fn links(&mut self, batch: &Batch) -> Vec<TaskLink> {
        let mut out = Vec::new();
        for s in &batch.sessions {
            if let Some(t) = s.task_id.as_deref().filter(|t| !t.is_empty() && t.len() <= MAX_ID) {
                self.push(&mut out, t, Some(&s.id), ATTRIBUTE, s.last_us);
            }
        }
        // Task ids on rows without a session still create the task.
        let ctxs = batch
            .model_calls
            .iter()
            .map(|r| (&r.ctx, r.time_us))
            .chain(batch.spans.iter().map(|r| (&r.ctx, r.time_us)))
            .chain(batch.logs.iter().map(|r| (&r.ctx, r.time_us)));
        for (ctx, t) in ctxs {
            if ctx.session_id.is_none() {
                if let Some(task) = ctx.task_id.as_deref().filter(|t| !t.is_empty() && t.len() <= MAX_ID) {
                    self.push(&mut out, task, None, ATTRIBUTE, t);
                }
            }
        }
        if let Some(p) = self.pattern.clone() {
            let rows = batch
                .logs
                .iter()
                .map(|r| (&r.ctx, r.time_us, r.attributes.as_str(), r.resource_attributes.as_ref()))
                .chain(
                    batch
                        .spans
                        .iter()
                        .map(|r| (&r.ctx, r.time_us, r.attributes.as_str(), r.resource_attributes.as_ref())),
                );
            for (ctx, t, attrs, res) in rows {
                let (Some(sid), None) = (ctx.session_id.as_deref(), ctx.task_id.as_deref()) else { continue };
                let found = pattern_values(attrs).into_iter().chain(pattern_values(res)).find_map(|v| p.extract(&v));
                if let Some(task) = found {
                    self.push(&mut out, &task, Some(sid), PATTERN, t);
                }
            }
        }
        out
    }

    fn push(&mut self, out: &mut Vec<TaskLink>, task: &str, session: Option<&str>, how: &'static str, t: i64) {
        let key = (task.to_string(), session.map(str::to_string), how);
        if self.seen.contains(&key) {
            return;
        }
        if self.seen.len() >= self.cap {
            self.seen.clear();
        }
        self.seen.insert(key);
        out.push(TaskLink { task_id: task.to_string(), session_id: session.map(str::to_string), how, time_us: t });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_extracts_the_ticket() {
        let p = Pattern::new(r"([A-Z][A-Z0-9]+-\d+)").expect("pattern");
        let cases: &[(&str, Option<&str>)] = &[
            ("feature/TICKET-123-x", Some("TICKET-123")),
            ("/home/me/src/ABC-9-fix", Some("ABC-9")),
            ("main", None),
            ("feature/lowercase-12", None),
        ];
        for (text, want) in cases {
            assert_eq!(p.extract(text).as_deref(), *want, "{text}");
        }
        let whole = Pattern::new(r"TICKET-\d+").expect("pattern");
        assert_eq!(whole.extract("feature/TICKET-7-y").as_deref(), Some("TICKET-7"));
        assert!(Pattern::new("(").is_err());
    }

    #[test]
    fn pattern_values_read_branch_and_cwd() {
        let v = pattern_values(r#"{"agent_console.cwd":"/w/PROJ-4-a","other":"x","git.branch":"feature/PROJ-5"}"#);
        assert_eq!(v, vec!["feature/PROJ-5".to_string(), "/w/PROJ-4-a".to_string()]);
        assert!(pattern_values(r#"{"a":"b"}"#).is_empty());
        assert!(pattern_values("not json git.branch").is_empty());
    }

    #[test]
    fn links_once_per_task_and_session() {
        use crate::model::records::Seen;
        let seen = |id: &str, task: Option<&str>| Seen {
            id: id.into(),
            first_us: 1,
            last_us: 2,
            agent_id: None,
            display_name: None,
            service_name: None,
            task_id: task.map(str::to_string),
            parent_id: None,
        };
        let b = Batch { sessions: vec![seen("s1", Some("T-1")), seen("s2", None)], ..Batch::default() };
        let mut l = Linker::new(None);
        let first = l.links(&b);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].task_id.as_str(), first[0].session_id.as_deref(), first[0].how),
            ("T-1", Some("s1"), ATTRIBUTE)
        );
        assert!(l.links(&b).is_empty(), "already handed over");
    }
}
