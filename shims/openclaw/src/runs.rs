//! Run counting, the part that decides whether totals come out right. A `sessions.list` row's
//! `inputTokens`, `outputTokens` and `estimatedCostUsd` are the *latest run's* values, overwritten
//! by each run, so a run is counted once, when its `lastRunId` first appears (or its `phase: end`
//! event arrives): never by summing polls, never by treating the row as a session total. The
//! `Ledger` remembers counted run ids (bounded) and the records not yet acknowledged by the
//! collector; it is serialised to the state file so a shim restart neither loses nor repeats a run.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many counted run ids, session statuses and pending records are remembered.
pub const DEFAULT_CAP: usize = 10_000;

/// The fields of a gateway session row the shim uses (optional fields are omitted by the gateway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionRow {
    pub key: String,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub status: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub last_run_id: Option<String>,
    pub active_run_ids: Vec<String>,
    pub ended_at_ms: Option<i64>,
    pub updated_at_ms: Option<i64>,
    pub parent_key: Option<String>,
    pub children: Vec<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn int(v: &Value, k: &str) -> Option<i64> {
    let x = v.get(k)?;
    x.as_i64().or_else(|| x.as_f64().filter(|f| f.is_finite()).map(|f| f.round() as i64))
}

/// Keys out of a list that may hold strings or objects with a `key`.
fn keys(v: Option<&Value>) -> Vec<String> {
    let Some(items) = v.and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .filter_map(|i| i.as_str().map(str::to_string).or_else(|| s(i, "key")).or_else(|| s(i, "sessionKey")))
        .collect()
}

impl SessionRow {
    /// Parse one row; `None` without a `key`.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            key: s(v, "key")?,
            session_id: s(v, "sessionId"),
            agent_id: s(v, "agentId"),
            status: s(v, "status"),
            model: s(v, "model"),
            provider: s(v, "modelProvider"),
            input_tokens: int(v, "inputTokens"),
            output_tokens: int(v, "outputTokens"),
            cost_usd: v.get("estimatedCostUsd").and_then(Value::as_f64),
            last_run_id: s(v, "lastRunId"),
            active_run_ids: keys(v.get("activeRunIds")),
            ended_at_ms: int(v, "endedAt"),
            updated_at_ms: int(v, "updatedAt"),
            parent_key: s(v, "parentSessionKey"),
            children: keys(v.get("childSessions")),
        })
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            key: self.key.clone(),
            session_id: self.session_id.clone(),
            agent_id: self.agent_id.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            parent_key: self.parent_key.clone(),
            children: self.children.clone(),
        }
    }
}

/// Who a record is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub key: String,
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub parent_key: Option<String>,
    #[serde(default)]
    pub children: Vec<String>,
}

/// One finished run's usage: the row's values at the moment its run id appeared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub session: SessionInfo,
    pub run_id: String,
    pub status: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// The run's end (`endedAt`, else `updatedAt`, else when the shim saw it), ms since the epoch.
    pub time_ms: i64,
}

/// A session appeared or changed status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub session: SessionInfo,
    pub status: String,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Status(StatusRecord),
    Run(RunRecord),
}

/// The run a row (or a `phase: end` event for `ended_run`) reports, unless already known.
/// `known(run_id)` says whether the run was counted or is pending already.
pub fn run_to_emit(
    known: impl Fn(&str) -> bool,
    row: &SessionRow,
    ended_run: Option<&str>,
    now_ms: i64,
) -> Option<RunRecord> {
    let run_id = ended_run.or(row.last_run_id.as_deref())?;
    // A run still listed as active has not finished: its values are not final yet.
    if ended_run.is_none() && row.active_run_ids.iter().any(|r| r == run_id) {
        return None;
    }
    if known(run_id) {
        return None;
    }
    Some(RunRecord {
        session: row.info(),
        run_id: run_id.to_string(),
        status: row.status.clone(),
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cost_usd: row.cost_usd,
        time_ms: row.ended_at_ms.or(row.updated_at_ms).unwrap_or(now_ms),
    })
}

/// Counted runs, last status per session and the records waiting for the collector's ack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default = "version")]
    version: u32,
    /// Run ids acknowledged by the collector, oldest first.
    counted: VecDeque<String>,
    /// Last status emitted per session key, oldest session first.
    statuses: VecDeque<(String, String)>,
    /// Records built but not yet acknowledged, in order.
    pending: VecDeque<Record>,
    #[serde(skip, default = "default_cap")]
    cap: usize,
    #[serde(skip)]
    counted_set: HashSet<String>,
    #[serde(skip)]
    status_map: HashMap<String, String>,
    /// Records dropped because `pending` was full (reported, not persisted).
    #[serde(skip)]
    pub dropped: u64,
}

fn version() -> u32 {
    1
}
fn default_cap() -> usize {
    DEFAULT_CAP
}

impl Default for Ledger {
    fn default() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }
}

impl Ledger {
    pub fn with_cap(cap: usize) -> Self {
        Self {
            version: 1,
            counted: VecDeque::new(),
            statuses: VecDeque::new(),
            pending: VecDeque::new(),
            cap: cap.max(1),
            counted_set: HashSet::new(),
            status_map: HashMap::new(),
            dropped: 0,
        }
    }

    /// Rebuild the indexes after deserialising.
    pub fn reindex(&mut self) {
        self.counted_set = self.counted.iter().cloned().collect();
        self.status_map = self.statuses.iter().cloned().collect();
    }

    pub fn knows_run(&self, run_id: &str) -> bool {
        self.counted_set.contains(run_id)
            || self.pending.iter().any(|r| matches!(r, Record::Run(run) if run.run_id == run_id))
    }

    pub fn pending(&self) -> impl Iterator<Item = &Record> {
        self.pending.iter()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn counted_len(&self) -> usize {
        self.counted.len()
    }

    /// Queue what `row` reports (status change, finished run). Returns how many records were queued.
    pub fn observe(&mut self, row: &SessionRow, ended_run: Option<&str>, now_ms: i64) -> usize {
        let mut queued = 0;
        if let Some(status) = row.status.as_deref() {
            if self.status_map.get(&row.key).map(String::as_str) != Some(status) {
                let time_ms = if ended_run.is_some() || is_end(status) {
                    row.ended_at_ms.or(row.updated_at_ms).unwrap_or(now_ms)
                } else {
                    row.updated_at_ms.unwrap_or(now_ms)
                };
                self.set_status(&row.key, status);
                self.push(Record::Status(StatusRecord { session: row.info(), status: status.to_string(), time_ms }));
                queued += 1;
            }
        }
        if let Some(run) = run_to_emit(|r| self.knows_run(r), row, ended_run, now_ms) {
            self.push(Record::Run(run));
            queued += 1;
        }
        queued
    }

    fn set_status(&mut self, key: &str, status: &str) {
        if self.status_map.insert(key.to_string(), status.to_string()).is_some() {
            if let Some(e) = self.statuses.iter_mut().find(|(k, _)| k == key) {
                e.1 = status.to_string();
            }
        } else {
            self.statuses.push_back((key.to_string(), status.to_string()));
            while self.statuses.len() > self.cap {
                if let Some((k, _)) = self.statuses.pop_front() {
                    self.status_map.remove(&k);
                }
            }
        }
    }

    fn push(&mut self, r: Record) {
        self.pending.push_back(r);
        while self.pending.len() > self.cap {
            // Statuses are dropped before runs: a lost status is re-learned at the next change.
            let i = self.pending.iter().position(|r| matches!(r, Record::Status(_))).unwrap_or(0);
            self.pending.remove(i);
            self.dropped += 1;
        }
    }

    /// The first `n` pending records were acknowledged by the collector.
    pub fn acked(&mut self, n: usize) {
        for _ in 0..n.min(self.pending.len()) {
            if let Some(Record::Run(run)) = self.pending.pop_front() {
                if self.counted_set.insert(run.run_id.clone()) {
                    self.counted.push_back(run.run_id);
                }
                while self.counted.len() > self.cap {
                    if let Some(old) = self.counted.pop_front() {
                        self.counted_set.remove(&old);
                    }
                }
            }
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn from_json(text: &str, cap: usize) -> Result<Self, serde_json::Error> {
        let mut l: Ledger = serde_json::from_str(text)?;
        l.cap = cap.max(1);
        l.reindex();
        Ok(l)
    }
}

pub fn is_end(status: &str) -> bool {
    agent_console_conventions::openclaw::END_STATUSES.contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(run: Option<&str>, status: &str, tokens: (i64, i64), cost: f64) -> SessionRow {
        SessionRow::from_json(&json!({
            "key": "agent:main:main", "sessionId": "s-1", "agentId": "main", "status": status,
            "model": "claude-sonnet-4-5", "modelProvider": "anthropic",
            "inputTokens": tokens.0, "outputTokens": tokens.1, "estimatedCostUsd": cost,
            "lastRunId": run, "endedAt": 1_700_000_000_000_i64, "updatedAt": 1_700_000_000_500_i64,
        }))
        .expect("row")
    }

    fn runs(l: &Ledger) -> Vec<(String, Option<i64>)> {
        l.pending()
            .filter_map(|r| match r {
                Record::Run(r) => Some((r.run_id.clone(), r.input_tokens)),
                Record::Status(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_new_last_run_id_is_one_run_with_the_rows_values() {
        let r = row(Some("run-1"), "done", (100, 20), 0.5);
        let got = run_to_emit(|_| false, &r, None, 9).expect("a run");
        assert_eq!((got.run_id.as_str(), got.input_tokens, got.output_tokens), ("run-1", Some(100), Some(20)));
        assert_eq!((got.cost_usd, got.time_ms), (Some(0.5), 1_700_000_000_000));
        assert!(run_to_emit(|id| id == "run-1", &r, None, 9).is_none(), "a known run is not repeated");
    }

    #[test]
    fn no_run_yet_or_still_active_emits_nothing() {
        let mut fresh = row(None, "queued", (0, 0), 0.0);
        fresh.input_tokens = None;
        assert!(run_to_emit(|_| false, &fresh, None, 0).is_none());
        let mut active = row(Some("run-2"), "running", (1, 1), 0.0);
        active.active_run_ids = vec!["run-2".into()];
        assert!(run_to_emit(|_| false, &active, None, 0).is_none());
        // The end event names the run explicitly: its values are final.
        assert!(run_to_emit(|_| false, &active, Some("run-2"), 0).is_some());
    }

    #[test]
    fn repeated_polls_count_each_run_once() {
        let mut l = Ledger::default();
        for _ in 0..3 {
            l.observe(&row(Some("run-1"), "done", (100, 20), 0.5), None, 0);
        }
        l.observe(&row(Some("run-1"), "running", (100, 20), 0.5), None, 0);
        for _ in 0..2 {
            l.observe(&row(Some("run-2"), "done", (7, 3), 0.25), Some("run-2"), 0);
        }
        assert_eq!(runs(&l), vec![("run-1".to_string(), Some(100)), ("run-2".to_string(), Some(7))]);
        let statuses = l.pending().filter(|r| matches!(r, Record::Status(_))).count();
        assert_eq!(statuses, 3, "done, running, done");
    }

    #[test]
    fn pending_survives_a_restart_and_acked_runs_are_not_repeated() {
        let mut l = Ledger::default();
        l.observe(&row(Some("run-1"), "done", (1, 2), 0.5), None, 0);
        l.acked(l.pending_len());
        l.observe(&row(Some("run-2"), "done", (3, 4), 0.25), None, 0);
        let text = l.to_json().expect("json");
        let mut back = Ledger::from_json(&text, DEFAULT_CAP).expect("parse");
        assert_eq!(runs(&back), vec![("run-2".to_string(), Some(3))], "unacknowledged run kept pending");
        back.observe(&row(Some("run-2"), "done", (3, 4), 0.25), None, 0);
        back.observe(&row(Some("run-1"), "done", (1, 2), 0.5), None, 0);
        assert_eq!(back.pending_len(), 1, "run-1 counted, run-2 already pending, status unchanged");
        back.acked(1);
        assert_eq!((back.counted_len(), back.pending_len()), (2, 0));
        assert!(back.knows_run("run-1") && back.knows_run("run-2"));
    }

    #[test]
    fn counted_ids_are_bounded() {
        let mut l = Ledger::with_cap(3);
        for i in 0..5 {
            l.observe(&row(Some(&format!("r{i}")), "done", (i, i), 0.0), None, 0);
            l.acked(l.pending_len());
        }
        assert_eq!(l.counted_len(), 3);
        assert!(!l.knows_run("r0") && l.knows_run("r4"));
    }

    #[test]
    fn child_rows_keep_the_parent_and_children() {
        let child = SessionRow::from_json(&json!({
            "key": "agent:main:subagent:u1", "parentSessionKey": "agent:main:main", "lastRunId": "c1",
        }))
        .expect("row");
        assert_eq!(child.parent_key.as_deref(), Some("agent:main:main"));
        let parent = SessionRow::from_json(&json!({"key": "p", "childSessions": ["a", {"key": "b"}]})).expect("row");
        assert_eq!(parent.children, vec!["a".to_string(), "b".to_string()]);
        assert!(SessionRow::from_json(&json!({"sessionId": "no key"})).is_none());
    }
}
