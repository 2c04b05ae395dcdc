//! Run counting, the part that decides whether totals come out right.
//!
//! What a real 2026.9.6 gateway showed (`shared/reference/openclaw-gateway.md`, "Control calls and
//! run counting"): a `sessions.list` row's `inputTokens`, `outputTokens` and `estimatedCostUsd`
//! are the latest *finished-and-accounted* run's totals, not the run `lastRunId` names. After a
//! kill the row keeps the previous run's usage while `lastRunId` names the killed run; a killed
//! first run has no usage at all; a steered run's row can carry stale usage; runs that end while
//! nobody listens are invisible except each session's last. So usage is never read from rows:
//! - **One record per model call served** (`Record::Call`): each assistant `session.message` event
//!   with usage (`__openclaw.id` deduplicates, `__openclaw.runId` groups by run). Killed calls
//!   produce no message, a steered run's second call produces one, injected notes
//!   (`gateway-injected`) are skipped.
//! - **Reconcile** (`Record::Reconcile`): on every connect the gateway's cumulative
//!   `sessions.usage` per session is compared with what was counted, and the difference (calls
//!   served while the shim was down) is one record.
//! - **Run ends are status records** (`StatusRecord` with `run_id` and `run_usage`): the usage the
//!   run really had (the sum of its calls seen; 0 for a killed run whose call was never served).
//!
//! The `Ledger` remembers counted message ids, per-session totals, per-run sums (all bounded) and
//! the records not yet acknowledged by the collector; it is serialised to the state file so a shim
//! restart neither loses nor repeats a call.

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Tokens and cost as the gateway counts them: `input` excludes the cache (pi-ai usage), the
/// cache read / write beside it; `cost` is the gateway's own estimate in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input: i64,
    pub output: i64,
    #[serde(default)]
    pub cache_read: i64,
    #[serde(default)]
    pub cache_write: i64,
    #[serde(default)]
    pub cost: f64,
    /// Model calls summed in.
    #[serde(default)]
    pub calls: i64,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.input += o.input;
        self.output += o.output;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.cost += o.cost;
        self.calls += o.calls;
    }

    /// Input in the OTel convention (cache included).
    pub fn otel_input(&self) -> i64 {
        self.input + self.cache_read + self.cache_write
    }

    /// `usage` of a `session.message` (`{input, output, cacheRead, cacheWrite, cost{total}}`) or
    /// a `sessions.usage` entry (also `inputTokens`-style names, `totalCost`).
    pub fn from_json(u: &Value) -> Option<Usage> {
        if !u.is_object() {
            return None;
        }
        let first = |keys: &[&str]| keys.iter().find_map(|k| int(u, k));
        let cost = u
            .pointer("/cost/total")
            .and_then(Value::as_f64)
            .or_else(|| u.get("cost").and_then(Value::as_f64))
            .or_else(|| ["totalCost", "costUsd", "estimatedCostUsd"].iter().find_map(|k| u.get(*k)?.as_f64()))
            .filter(|c| c.is_finite() && *c >= 0.0)
            .unwrap_or(0.0);
        Some(Usage {
            input: first(&["input", "inputTokens", "input_tokens"]).unwrap_or(0).max(0),
            output: first(&["output", "outputTokens", "output_tokens"]).unwrap_or(0).max(0),
            cache_read: first(&["cacheRead", "cacheReadTokens", "cache_read"]).unwrap_or(0).max(0),
            cache_write: first(&["cacheWrite", "cacheWriteTokens", "cache_write"]).unwrap_or(0).max(0),
            cost,
            calls: first(&["calls", "messages", "count"]).unwrap_or(0).max(0),
        })
    }
}

/// Legacy (state files of earlier shims): one finished run's row values. Still sent if pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub session: SessionInfo,
    pub run_id: String,
    pub status: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub time_ms: i64,
}

/// A session appeared or changed status; when the status ends a run, which run and the usage it
/// really had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub session: SessionInfo,
    pub status: String,
    pub time_ms: i64,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub run_usage: Option<Usage>,
}

/// One model call the gateway served (an assistant `session.message` with usage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub session: SessionInfo,
    pub message_id: String,
    pub run_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub usage: Usage,
    pub time_ms: i64,
}

/// Usage `sessions.usage` reports beyond what the shim counted for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileRecord {
    pub session: SessionInfo,
    pub id: String,
    pub usage: Usage,
    pub time_ms: i64,
    /// The session's cumulative usage as the gateway reported it (the collector reconciles
    /// against what it stored, see `openclaw::SESSION_TOTAL_*`).
    #[serde(default)]
    pub gateway: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Status(StatusRecord),
    Run(RunRecord),
    Call(CallRecord),
    Reconcile(ReconcileRecord),
}

/// A served model call out of a `session.message` event payload: `None` for anything else (user
/// and tool messages, messages without usage, the gateway's injected notes).
pub fn call_from_message(payload: &Value, now_ms: i64) -> Option<(String, CallRecord)> {
    let m = payload.get("message")?;
    if m.get("role").and_then(Value::as_str) != Some("assistant") {
        return None;
    }
    let usage = Usage::from_json(m.get("usage")?)?;
    let model = s(m, "model");
    let provider = s(m, "provider");
    if model.as_deref() == Some("gateway-injected") || provider.as_deref() == Some("openclaw") {
        return None;
    }
    let key = s(payload, "sessionKey")
        .or_else(|| s(payload, "key"))
        .or_else(|| payload.get("session").and_then(|r| s(r, "key")))?;
    let meta = m.get("__openclaw");
    let message_id = meta.and_then(|o| s(o, "id")).or_else(|| s(payload, "messageId")).or_else(|| s(m, "id"))?;
    let run_id = meta.and_then(|o| s(o, "runId")).or_else(|| s(payload, "runId"));
    let time_ms = int(m, "timestamp").or_else(|| int(payload, "ts")).unwrap_or(now_ms);
    let session = SessionInfo { key: key.clone(), ..Default::default() };
    Some((
        key,
        CallRecord { session, message_id, run_id, model, provider, usage: Usage { calls: 1, ..usage }, time_ms },
    ))
}

/// Cumulative usage per session key out of a `sessions.usage` answer. `Err(())` while the gateway
/// is still computing it (`usage: null`, `cacheStatus.status` not `fresh`): ask again.
#[allow(clippy::result_unit_err)]
pub fn usage_by_session(payload: &Value) -> Result<Vec<(String, Usage)>, ()> {
    let fresh = payload.pointer("/cacheStatus/status").and_then(Value::as_str).is_none_or(|s| s == "fresh");
    let root = match payload.get("usage") {
        Some(Value::Null) => return Err(()),
        Some(u) if u.is_object() => u,
        _ => payload,
    };
    if !fresh {
        return Err(());
    }
    let entries: Vec<(String, &Value)> = match root.get("sessions") {
        Some(Value::Array(a)) => {
            a.iter().filter_map(|e| Some((s(e, "key").or_else(|| s(e, "sessionKey"))?, e))).collect()
        }
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => Vec::new(),
    };
    Ok(entries
        .into_iter()
        .filter_map(|(k, e)| {
            let u = ["usage", "totals", "total"].iter().find_map(|f| e.get(*f).filter(|v| v.is_object())).unwrap_or(e);
            Some((k, Usage::from_json(u)?))
        })
        .collect())
}

/// A bounded set of ids, oldest forgotten first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IdSet {
    order: VecDeque<String>,
    #[serde(skip)]
    set: HashSet<String>,
}

impl IdSet {
    fn reindex(&mut self) {
        self.set = self.order.iter().cloned().collect();
    }
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
    fn insert(&mut self, id: &str, cap: usize) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
    fn len(&self) -> usize {
        self.order.len()
    }
}

/// A bounded map, least recently updated forgotten first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UsageMap {
    entries: VecDeque<(String, Usage)>,
    #[serde(skip)]
    index: HashMap<String, Usage>,
    /// Entries forgotten because of the bound.
    #[serde(default)]
    forgot: u64,
}

impl UsageMap {
    fn reindex(&mut self) {
        self.index = self.entries.iter().cloned().collect();
    }
    fn get(&self, k: &str) -> Option<&Usage> {
        self.index.get(k)
    }
    fn add(&mut self, k: &str, u: &Usage, cap: usize) {
        let mut total = self.index.get(k).copied().unwrap_or_default();
        total.add(u);
        if self.index.insert(k.to_string(), total).is_some() {
            if let Some(i) = self.entries.iter().position(|(e, _)| e == k) {
                self.entries.remove(i);
            }
        }
        self.entries.push_back((k.to_string(), total));
        while self.entries.len() > cap {
            if let Some((old, _)) = self.entries.pop_front() {
                self.index.remove(&old);
                self.forgot += 1;
            }
        }
    }
}

/// Counted calls, per-session totals, last status per session and the records waiting for the
/// collector's ack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default = "version")]
    version: u32,
    /// Run ids whose end was reported, oldest first.
    counted: VecDeque<String>,
    /// Last status emitted per session key, oldest session first.
    statuses: VecDeque<(String, String)>,
    /// Records built but not yet acknowledged, in order.
    pending: VecDeque<Record>,
    /// Message ids of calls counted (queued or acknowledged).
    #[serde(default)]
    messages: IdSet,
    /// What was counted per session key (calls + reconciled differences): the baseline
    /// `sessions.usage` is compared with.
    #[serde(default)]
    totals: UsageMap,
    /// Usage per run id (sum of its calls), for the status record that ends the run.
    #[serde(default)]
    runs: UsageMap,
    #[serde(skip, default = "default_cap")]
    cap: usize,
    #[serde(skip)]
    counted_set: HashSet<String>,
    #[serde(skip)]
    status_map: HashMap<String, String>,
    /// Session details from the latest rows (for call records, whose events carry only the key).
    #[serde(skip)]
    infos: HashMap<String, SessionInfo>,
    /// Runs this process saw active: their calls were listened to, so their end can say the usage
    /// they had (a run that ran while the shim was away ends with its usage unknown).
    #[serde(skip)]
    live_runs: IdSet,
    /// Records dropped because `pending` was full (reported, not persisted).
    #[serde(skip)]
    pub dropped: u64,
}

fn version() -> u32 {
    2
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
            version: version(),
            counted: VecDeque::new(),
            statuses: VecDeque::new(),
            pending: VecDeque::new(),
            messages: IdSet::default(),
            totals: UsageMap::default(),
            runs: UsageMap::default(),
            cap: cap.max(1),
            counted_set: HashSet::new(),
            status_map: HashMap::new(),
            infos: HashMap::new(),
            live_runs: IdSet::default(),
            dropped: 0,
        }
    }

    /// Rebuild the indexes after deserialising.
    pub fn reindex(&mut self) {
        self.counted_set = self.counted.iter().cloned().collect();
        self.status_map = self.statuses.iter().cloned().collect();
        self.messages.reindex();
        self.totals.reindex();
        self.runs.reindex();
    }

    /// Whether the end of `run_id` was reported (or is pending).
    pub fn knows_run(&self, run_id: &str) -> bool {
        self.counted_set.contains(run_id)
            || self.pending.iter().any(|r| match r {
                Record::Run(run) => run.run_id == run_id,
                Record::Status(st) => st.run_id.as_deref() == Some(run_id),
                _ => false,
            })
    }

    pub fn knows_message(&self, id: &str) -> bool {
        self.messages.contains(id)
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

    pub fn messages_len(&self) -> usize {
        self.messages.len()
    }

    /// What was counted for a session (calls + reconciled differences).
    pub fn session_total(&self, key: &str) -> Usage {
        self.totals.get(key).copied().unwrap_or_default()
    }

    /// Usage of the calls of `run_id` seen so far.
    pub fn run_usage(&self, run_id: &str) -> Usage {
        self.runs.get(run_id).copied().unwrap_or_default()
    }

    fn info(&self, key: &str) -> SessionInfo {
        self.infos.get(key).cloned().unwrap_or_else(|| SessionInfo { key: key.to_string(), ..Default::default() })
    }

    fn remember_info(&mut self, row: &SessionRow) {
        if self.infos.len() >= self.cap && !self.infos.contains_key(&row.key) {
            self.infos.clear();
        }
        self.infos.insert(row.key.clone(), row.info());
    }

    /// Queue what `row` reports: a status change, and the end of its last run (with the usage of
    /// the calls that run really had; the row's own usage fields are never read). A `phase: end`
    /// event names `ended_run`. Returns how many records were queued.
    pub fn observe(&mut self, row: &SessionRow, ended_run: Option<&str>, now_ms: i64) -> usize {
        self.remember_info(row);
        for r in &row.active_run_ids {
            self.live_runs.insert(r, self.cap);
        }
        let Some(status) = row.status.as_deref() else { return 0 };
        // The run the row says ended: named by the end event, or `lastRunId` once it is no
        // longer active and the row has left `running`.
        let ended = ended_run.map(str::to_string).or_else(|| {
            let run = row.last_run_id.as_deref()?;
            (is_end(status) && !row.active_run_ids.iter().any(|r| r == run)).then(|| run.to_string())
        });
        let new_end = ended.as_deref().filter(|r| !self.knows_run(r)).map(str::to_string);
        let changed = self.status_map.get(&row.key).map(String::as_str) != Some(status);
        if !changed && new_end.is_none() {
            return 0;
        }
        let time_ms = if new_end.is_some() || is_end(status) {
            row.ended_at_ms.or(row.updated_at_ms).unwrap_or(now_ms)
        } else {
            row.updated_at_ms.unwrap_or(now_ms)
        };
        self.set_status(&row.key, status);
        let run_usage = new_end.as_deref().filter(|r| self.live_runs.contains(r)).map(|r| self.run_usage(r));
        self.push(Record::Status(StatusRecord {
            session: row.info(),
            status: status.to_string(),
            time_ms,
            run_id: new_end,
            run_usage,
        }));
        1
    }

    /// Queue the model call a `session.message` event reports (once per message id). Returns how
    /// many records were queued.
    pub fn message(&mut self, payload: &Value, now_ms: i64) -> usize {
        let Some((key, mut call)) = call_from_message(payload, now_ms) else { return 0 };
        if self.messages.contains(&call.message_id) {
            return 0;
        }
        if let Some(row) = payload.get("session").and_then(SessionRow::from_json) {
            self.remember_info(&row);
        }
        call.session = self.info(&key);
        self.messages.insert(&call.message_id, self.cap.saturating_mul(10));
        self.totals.add(&key, &call.usage, self.cap);
        if let Some(run) = &call.run_id {
            self.runs.add(run, &call.usage, self.cap);
        }
        self.push(Record::Call(call));
        1
    }

    /// Compare the gateway's cumulative usage per session with what was counted and queue the
    /// difference (calls served while the shim was not listening). Sessions whose baseline was
    /// forgotten (beyond the bound) are skipped rather than counted twice. Returns how many
    /// records were queued.
    pub fn reconcile(&mut self, gateway: &[(String, Usage)], now_ms: i64) -> usize {
        let mut queued = 0;
        for (key, g) in gateway {
            let have = self.totals.get(key).copied();
            if have.is_none() && self.totals.forgot > 0 {
                continue;
            }
            let have = have.unwrap_or_default();
            let diff = Usage {
                input: (g.input - have.input).max(0),
                output: (g.output - have.output).max(0),
                cache_read: (g.cache_read - have.cache_read).max(0),
                cache_write: (g.cache_write - have.cache_write).max(0),
                cost: if g.cost - have.cost > 1e-9 { g.cost - have.cost } else { 0.0 },
                calls: (g.calls - have.calls).max(0),
            };
            if diff.input == 0 && diff.output == 0 && diff.cache_read == 0 && diff.cache_write == 0 {
                continue;
            }
            let id = format!("reconcile:{key}:{}:{}:{}", have.input, have.output, have.cache_read);
            self.totals.add(key, &diff, self.cap);
            let session = self.info(key);
            self.push(Record::Reconcile(ReconcileRecord {
                session,
                id,
                usage: diff,
                time_ms: now_ms,
                gateway: Some(*g),
            }));
            queued += 1;
        }
        queued
    }

    /// `agent-console import openclaw`: one reconcile record per session with the gateway's whole
    /// usage, keyed by that usage. Whatever this ledger counted, the collector counts only what
    /// its store is missing for the session, and drops the same key sent again, so an import can
    /// be repeated and run beside a live shim. `rows` name each session's agent, model and parent.
    pub fn import(&mut self, rows: &[SessionRow], gateway: &[(String, Usage)], now_ms: i64) -> usize {
        for row in rows {
            self.remember_info(row);
        }
        let mut queued = 0;
        for (key, g) in gateway {
            if g.input == 0 && g.output == 0 && g.cache_read == 0 && g.cache_write == 0 {
                continue;
            }
            let id = format!("import:{key}:{}:{}:{}:{}", g.input, g.output, g.cache_read, g.cache_write);
            let session = self.info(key);
            self.push(Record::Reconcile(ReconcileRecord {
                session,
                id,
                usage: *g,
                time_ms: now_ms,
                gateway: Some(*g),
            }));
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
            // Statuses without a run end go first: one is re-learned at the next change.
            let i = self.pending.iter().position(|r| matches!(r, Record::Status(s) if s.run_id.is_none())).unwrap_or(0);
            self.pending.remove(i);
            self.dropped += 1;
        }
    }

    /// The first `n` pending records were acknowledged by the collector.
    pub fn acked(&mut self, n: usize) {
        for _ in 0..n.min(self.pending.len()) {
            let run = match self.pending.pop_front() {
                Some(Record::Run(run)) => Some(run.run_id),
                Some(Record::Status(st)) => st.run_id,
                _ => None,
            };
            if let Some(run) = run {
                if self.counted_set.insert(run.clone()) {
                    self.counted.push_back(run);
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

    const KEY: &str = "agent:main:main";

    /// A row as `sessions.list` shows it; `usage` are the row's (possibly stale) values.
    fn row(run: Option<&str>, status: &str, usage: Option<(i64, i64, f64)>, active: &[&str]) -> SessionRow {
        let mut v = json!({
            "key": KEY, "sessionId": "s-1", "agentId": "main", "status": status,
            "model": "claude-sonnet-4-5", "modelProvider": "anthropic",
            "lastRunId": run, "activeRunIds": active, "endedAt": 1_700_000_000_000_i64,
            "updatedAt": 1_700_000_000_500_i64,
        });
        if let Some((i, o, c)) = usage {
            v["inputTokens"] = json!(i);
            v["outputTokens"] = json!(o);
            v["estimatedCostUsd"] = json!(c);
        }
        SessionRow::from_json(&v).expect("row")
    }

    /// A `session.message` event payload for one served call (400/40, 0.0018 USD as the reference).
    fn message(id: &str, run: &str) -> Value {
        json!({"sessionKey": KEY, "messageId": id, "runId": run, "message": {
            "role": "assistant", "provider": "openai", "model": "stand-in", "timestamp": 1_700_000_000_100_i64,
            "usage": {"input": 400, "output": 40, "totalTokens": 440, "cacheRead": 0, "cacheWrite": 0,
                      "cost": {"input": 0.001, "output": 0.0008, "total": 0.0018}},
            "__openclaw": {"id": id, "runId": run}}})
    }

    fn calls(l: &Ledger) -> Vec<(String, Option<String>)> {
        l.pending()
            .filter_map(|r| match r {
                Record::Call(c) => Some((c.message_id.clone(), c.run_id.clone())),
                _ => None,
            })
            .collect()
    }

    fn ends(l: &Ledger) -> Vec<(String, String, Usage)> {
        l.pending()
            .filter_map(|r| match r {
                Record::Status(s) => {
                    Some((s.status.clone(), s.run_id.clone()?, s.run_usage.expect("usage with the run")))
                }
                _ => None,
            })
            .collect()
    }

    fn total(l: &Ledger) -> (i64, i64) {
        let u = l.session_total(KEY);
        (u.input, u.output)
    }

    #[test]
    fn one_call_per_message_id_with_its_run() {
        let mut l = Ledger::default();
        assert_eq!(l.message(&message("m1", "run-1"), 0), 1);
        assert_eq!(l.message(&message("m1", "run-1"), 0), 0, "the same message again");
        assert_eq!(calls(&l), vec![("m1".to_string(), Some("run-1".to_string()))]);
        let Some(Record::Call(c)) = l.pending().next() else { panic!("a call") };
        assert_eq!((c.usage.input, c.usage.output, c.usage.cost, c.usage.calls), (400, 40, 0.0018, 1));
        assert_eq!((c.time_ms, c.model.as_deref()), (1_700_000_000_100, Some("stand-in")));
    }

    #[test]
    fn messages_that_are_not_served_calls_are_skipped() {
        let mut l = Ledger::default();
        let mut user = message("u1", "run-1");
        user["message"]["role"] = json!("user");
        let mut note = message("n1", "inject-n1");
        note["message"]["model"] = json!("gateway-injected");
        note["message"]["provider"] = json!("openclaw");
        let mut no_usage = message("x1", "run-1");
        no_usage["message"].as_object_mut().expect("obj").remove("usage");
        for m in [user, note, no_usage] {
            assert_eq!(l.message(&m, 0), 0, "{m}");
        }
        assert_eq!(l.pending_len(), 0);
    }

    /// The reference's section 6, row by row: totals follow the calls served, never the row.
    #[test]
    fn the_reference_cases_count_the_calls_served() {
        let mut l = Ledger::default();
        // Normal run: one call, row done 400/40.
        l.observe(&row(None, "running", None, &["r1"]), None, 0);
        l.message(&message("m1", "r1"), 0);
        l.observe(&row(Some("r1"), "done", Some((400, 40, 0.0018)), &[]), None, 0);
        // Run with a send during it (steered): two calls, one run, row 800/80.
        l.observe(&row(Some("r1"), "running", Some((400, 40, 0.0018)), &["r2"]), None, 0);
        l.message(&message("m2", "r2"), 0);
        l.message(&message("m3", "r2"), 0);
        l.observe(&row(Some("r2"), "done", Some((800, 80, 0.0036)), &[]), Some("r2"), 0);
        // Killed run after a finished run: the row keeps r2's 800/80, abortedLastRun.
        l.observe(&row(Some("r2"), "running", Some((800, 80, 0.0036)), &["r3"]), None, 0);
        l.observe(&row(Some("r3"), "killed", Some((800, 80, 0.0036)), &[]), None, 0);
        l.observe(&row(Some("r3"), "killed", Some((800, 80, 0.0036)), &[]), Some("r3"), 0);
        // Interrupted by steer: transient running row naming the interrupted run, stale usage.
        l.observe(&row(Some("r4"), "running", Some((800, 80, 0.0036)), &["r5"]), None, 0);
        l.message(&message("m5", "r5"), 0);
        l.observe(&row(Some("r5"), "done", Some((400, 40, 0.0018)), &[]), None, 0);
        assert_eq!(total(&l), (1600, 160), "4 calls served");
        let ends = ends(&l);
        let got: Vec<(&str, &str, i64, i64)> =
            ends.iter().map(|(s, r, u)| (s.as_str(), r.as_str(), u.input, u.calls)).collect();
        assert_eq!(
            got,
            vec![("done", "r1", 400, 1), ("done", "r2", 800, 2), ("killed", "r3", 0, 0), ("done", "r5", 400, 1)],
            "each run ends once, with the usage it really had"
        );
    }

    #[test]
    fn a_run_not_seen_active_ends_with_its_usage_unknown() {
        let mut l = Ledger::default();
        l.observe(&row(Some("away"), "done", Some((400, 40, 0.0018)), &[]), None, 0);
        let Some(Record::Status(s)) = l.pending().next() else { panic!("status") };
        assert_eq!((s.run_id.as_deref(), s.run_usage), (Some("away"), None));
    }

    #[test]
    fn a_killed_first_run_has_no_usage() {
        let mut l = Ledger::default();
        l.observe(&row(None, "running", None, &["k1"]), None, 0);
        l.observe(&row(Some("k1"), "killed", None, &[]), None, 0);
        assert_eq!(ends(&l), vec![("killed".to_string(), "k1".to_string(), Usage::default())]);
        assert_eq!(total(&l), (0, 0));
    }

    #[test]
    fn reconcile_emits_the_difference_once() {
        let mut l = Ledger::default();
        l.message(&message("m1", "r1"), 0);
        // Two runs finished while the shim was down: the gateway counts 3 calls.
        let g =
            vec![(KEY.to_string(), Usage { input: 1200, output: 120, cost: 0.0054, calls: 3, ..Default::default() })];
        assert_eq!(l.reconcile(&g, 7), 1);
        let Some(Record::Reconcile(r)) = l.pending().last() else { panic!("reconcile") };
        assert_eq!((r.usage.input, r.usage.output, r.usage.calls, r.time_ms), (800, 80, 2, 7));
        assert!((r.usage.cost - 0.0036).abs() < 1e-12);
        assert_eq!(l.reconcile(&g, 8), 0, "nothing left on the next connect");
        assert_eq!(total(&l), (1200, 120));
        // The gateway behind what was counted (a message seen before its usage was): no record.
        let behind = vec![(KEY.to_string(), Usage { input: 800, output: 80, ..Default::default() })];
        assert_eq!(l.reconcile(&behind, 9), 0);
    }

    #[test]
    fn usage_answers_are_parsed_and_stale_ones_refused() {
        assert_eq!(usage_by_session(&json!({"usage": null, "cacheStatus": {"status": "refreshing"}})), Err(()));
        let fresh = json!({"cacheStatus": {"status": "fresh"}, "usage": {"sessions": [
            {"key": KEY, "usage": {"input": 2400, "output": 240, "cacheRead": 10, "totalCost": 0.0108}},
            {"sessionKey": "cron:1", "inputTokens": 5, "outputTokens": 1}]}});
        let got = usage_by_session(&fresh).expect("fresh");
        assert_eq!(got[0].0, KEY);
        assert_eq!((got[0].1.input, got[0].1.output, got[0].1.cache_read, got[0].1.cost), (2400, 240, 10, 0.0108));
        assert_eq!((got[1].0.as_str(), got[1].1.input, got[1].1.output), ("cron:1", 5, 1));
    }

    #[test]
    fn state_survives_a_restart_without_repeating() {
        let mut l = Ledger::default();
        l.message(&message("m1", "r1"), 0);
        l.observe(&row(Some("r1"), "done", Some((400, 40, 0.0018)), &[]), None, 0);
        l.acked(l.pending_len());
        l.message(&message("m2", "r2"), 0);
        let text = l.to_json().expect("json");
        let mut back = Ledger::from_json(&text, DEFAULT_CAP).expect("parse");
        assert_eq!(calls(&back), vec![("m2".to_string(), Some("r2".to_string()))], "unacknowledged call kept");
        assert_eq!(back.message(&message("m1", "r1"), 0) + back.message(&message("m2", "r2"), 0), 0);
        assert_eq!(back.observe(&row(Some("r1"), "done", Some((400, 40, 0.0018)), &[]), None, 0), 0);
        assert_eq!(back.session_total(KEY).input, 800, "the reconcile baseline is kept");
        assert!(back.knows_run("r1"));
    }

    #[test]
    fn old_state_files_still_load() {
        let old = json!({"version": 1, "counted": ["run-1"], "statuses": [[KEY, "done"]], "pending": [
            {"Run": {"session": {"key": KEY, "session_id": null, "agent_id": null, "model": null,
                     "provider": null, "parent_key": null}, "run_id": "run-2", "status": "done",
                     "input_tokens": 1, "output_tokens": 2, "cost_usd": 0.5, "time_ms": 5}}]});
        let l = Ledger::from_json(&old.to_string(), DEFAULT_CAP).expect("v1 state");
        assert!(l.knows_run("run-1") && l.knows_run("run-2"));
        assert_eq!(l.pending_len(), 1);
    }

    #[test]
    fn bounds_hold() {
        let mut l = Ledger::with_cap(3);
        for i in 0..5 {
            l.observe(&row(Some(&format!("r{i}")), "done", None, &[]), None, 0);
            l.acked(l.pending_len());
        }
        assert_eq!(l.counted_len(), 3);
        assert!(!l.knows_run("r0") && l.knows_run("r4"));
        for i in 0..50 {
            l.message(&message(&format!("m{i}"), "r"), 0);
        }
        assert!(l.messages_len() <= 30 && l.pending_len() <= 3);
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
