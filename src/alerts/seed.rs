//! The evaluator's state at start, read back from the store (issue 13: a restart must neither
//! forget spend nor fire an alert twice). One read, on its own connection in `spawn_blocking`,
//! while the evaluator is locked and everything it observed is committed (`runner::Alerts::seed`):
//! - budgets: cumulative cost per (rule, scope) over every stored call (a day budget: today's);
//! - runaway spend and error rate: the rule's window of calls, in per-second buckets;
//! - stuck / waiting since-times and the session -> agent / task membership of live sessions;
//! - open alerts (they stay firing under their ids) and recently resolved ones (still cooling).
//!
//! Scopes are resolved as the evaluator does: the call's own agent / task, else its session's.

use std::collections::HashMap;
use std::sync::Arc;

use duckdb::{params, Connection};

use super::engine::day;
use super::{Kind, RuleSpec, Scope};

/// Most rows of any one part of the seed.
const MAX_ROWS: usize = 200_000;

/// A stored alert (firing, or resolved and maybe still cooling).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredAlert {
    pub alert_id: String,
    pub rule: String,
    pub kind: String,
    pub scope: String,
    pub tier: Option<f64>,
    pub value: f64,
    pub threshold: f64,
    pub pending_us: i64,
    pub fired_us: i64,
    pub resolved_us: Option<i64>,
}

/// A window's entries: (time, value sum, count).
pub type Window = Vec<(i64, f64, u32)>;

/// (scope, time, value sum, count).
type Bucket = (String, i64, f64, u32);

/// What the evaluator starts from (`Engine::seed`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seed {
    /// (rule, scope, cumulative cost).
    pub sums: Vec<(String, String, f64)>,
    /// (rule, scope, [(time, value sum, count)]).
    pub windows: Vec<(String, String, Window)>,
    /// (session, stuck since, waiting since).
    pub flags: Vec<(String, Option<i64>, Option<i64>)>,
    /// (session, agent, task) of live sessions.
    pub members: Vec<(String, Option<String>, Option<String>)>,
    pub open: Vec<StoredAlert>,
    pub cooling: Vec<StoredAlert>,
}

/// Calls with the scope columns the evaluator would use.
const CALLS: &str = "
    SELECT c.time, c.cost_usd AS cost, CASE WHEN c.error THEN 1 ELSE 0 END AS failed, c.session_id,
           coalesce(c.agent_id, s.agent_id) AS agent_id, coalesce(c.task_id, st.task_id) AS task_id
    FROM model_calls c
    LEFT JOIN sessions s ON s.session_id = c.session_id
    LEFT JOIN session_tasks st ON st.session_id = c.session_id";

const TOOLS: &str = "
    SELECT c.time, 0.0 AS cost, CASE WHEN c.success = false THEN 1 ELSE 0 END AS failed, c.session_id,
           coalesce(c.agent_id, s.agent_id) AS agent_id, coalesce(c.task_id, st.task_id) AS task_id
    FROM tool_calls c
    LEFT JOIN sessions s ON s.session_id = c.session_id
    LEFT JOIN session_tasks st ON st.session_id = c.session_id";

/// The scope key column and how it becomes a scope string.
fn key_sql(scope: Scope) -> &'static str {
    match scope {
        Scope::Session => "session_id",
        Scope::Agent => "agent_id",
        Scope::Task => "task_id",
        Scope::All => "'all'",
        Scope::Day => "CAST(epoch_us(time) // 86400000000 AS VARCHAR)",
    }
}

fn scope_name(scope: Scope, key: &str) -> Option<String> {
    Some(match scope {
        Scope::Session => format!("session:{key}"),
        Scope::Agent => format!("agent:{key}"),
        Scope::Task => format!("task:{key}"),
        Scope::All => "all".into(),
        Scope::Day => format!("day:{}", day(key.parse::<i64>().ok()?.checked_mul(86_400_000_000)?)),
    })
}

/// Read the seed for `rules` at collector time `now_us`.
pub fn read(conn: &Connection, rules: &[Arc<RuleSpec>], now_us: i64) -> Result<Seed, duckdb::Error> {
    let mut seed = Seed::default();
    let rules: Vec<&Arc<RuleSpec>> = rules.iter().filter(|r| r.enabled).collect();
    // Budgets: one query per scope, shared by every budget rule of that scope.
    let mut budget: HashMap<Scope, Vec<(String, f64)>> = HashMap::new();
    for r in rules.iter().filter(|r| r.kind == Kind::Budget) {
        if let std::collections::hash_map::Entry::Vacant(slot) = budget.entry(r.scope) {
            let since =
                if r.scope == Scope::Day { now_us.div_euclid(86_400_000_000) * 86_400_000_000 } else { i64::MIN };
            let sql = format!(
                "SELECT {k} AS k, sum(cost)::DOUBLE FROM ({CALLS}) WHERE cost IS NOT NULL AND cost <> 0
                 AND epoch_us(time) >= ? AND {k} IS NOT NULL GROUP BY k LIMIT {MAX_ROWS}",
                k = key_sql(r.scope)
            );
            let mut st = conn.prepare(&sql)?;
            let rows = st.query_map(params![since], |row| Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?)))?;
            let mut v = Vec::new();
            for row in rows {
                let (k, sum) = row?;
                if let Some(scope) = scope_name(r.scope, &k) {
                    v.push((scope, sum));
                }
            }
            slot.insert(v);
        }
        for (scope, sum) in budget.get(&r.scope).into_iter().flatten() {
            seed.sums.push((r.name.clone(), scope.clone(), *sum));
        }
    }
    // Windows: per (kind, scope) the longest window, in per-second buckets; each rule its own.
    let mut windows: HashMap<(Kind, Scope), Vec<Bucket>> = HashMap::new();
    for kind in [Kind::RunawaySpend, Kind::ErrorRate] {
        for scope in [Scope::Session, Scope::Agent, Scope::Task, Scope::All, Scope::Day] {
            let longest = rules.iter().filter(|r| r.kind == kind && r.scope == scope).map(|r| r.window_secs).max();
            let Some(longest) = longest else { continue };
            let since = now_us - longest as i64 * 1_000_000;
            let (from, value, filter) = match kind {
                Kind::RunawaySpend => (CALLS.to_string(), "sum(cost)::DOUBLE", "cost IS NOT NULL AND cost <> 0"),
                _ => (format!("{CALLS} UNION ALL {TOOLS}"), "sum(failed)::DOUBLE", "true"),
            };
            let sql = format!(
                "SELECT {k} AS k, epoch_us(time) // 1000000 AS sec, {value}, count(*)
                 FROM ({from}) WHERE {filter} AND epoch_us(time) > ? AND {k} IS NOT NULL
                 GROUP BY k, sec ORDER BY sec LIMIT {MAX_ROWS}",
                k = key_sql(scope)
            );
            let mut st = conn.prepare(&sql)?;
            let rows = st.query_map(params![since], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, f64>(2)?, row.get::<_, i64>(3)?))
            })?;
            let mut v = Vec::new();
            for row in rows {
                let (k, sec, sum, n) = row?;
                if let Some(scope) = scope_name(scope, &k) {
                    // Bucket times never ahead of the collector clock (window slides from now).
                    v.push((scope, (sec * 1_000_000).min(now_us), sum, n.clamp(0, u32::MAX as i64) as u32));
                }
            }
            windows.insert((kind, scope), v);
        }
    }
    for r in rules.iter().filter(|r| matches!(r.kind, Kind::RunawaySpend | Kind::ErrorRate)) {
        let from = now_us - r.window_secs as i64 * 1_000_000;
        let mut per: HashMap<&str, Vec<(i64, f64, u32)>> = HashMap::new();
        for (scope, t, v, n) in windows.get(&(r.kind, r.scope)).into_iter().flatten() {
            if *t > from {
                per.entry(scope.as_str()).or_default().push((*t, *v, *n));
            }
        }
        for (scope, w) in per {
            seed.windows.push((r.name.clone(), scope.to_string(), w));
        }
    }
    // Live sessions: stuck / waiting since, agent and task.
    let mut st = conn.prepare(&format!(
        "SELECT s.session_id, s.agent_id, st.task_id, coalesce(s.stuck, false), coalesce(s.waiting, false),
                epoch_us(coalesce(s.status_since, s.last_seen))
         FROM sessions s LEFT JOIN session_tasks st ON st.session_id = s.session_id
         WHERE coalesce(s.status, '') <> 'finished' LIMIT {MAX_ROWS}"
    ))?;
    let rows = st.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, Option<String>>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, bool>(3)?,
            row.get::<_, bool>(4)?,
            row.get::<_, Option<i64>>(5)?,
        ))
    })?;
    for row in rows {
        let (session, agent, task, stuck, waiting, since) = row?;
        if stuck || waiting {
            let since = since.unwrap_or(now_us).min(now_us);
            seed.flags.push((session.clone(), stuck.then_some(since), waiting.then_some(since)));
        }
        seed.members.push((session, agent, task));
    }
    // Open alerts, and those resolved within the longest cooldown.
    let cooldown = rules.iter().map(|r| r.cooldown_secs).max().unwrap_or(0) as i64 * 1_000_000;
    let mut st = conn.prepare(&format!(
        "SELECT alert_id, rule, kind, scope, tier, coalesce(value, 0)::DOUBLE, coalesce(threshold, 0)::DOUBLE,
                epoch_us(coalesce(pending_at, fired_at)), epoch_us(fired_at), epoch_us(resolved_at), state
         FROM alerts WHERE state = 'firing' OR (state = 'resolved' AND epoch_us(resolved_at) > ?)
         ORDER BY fired_at LIMIT {MAX_ROWS}"
    ))?;
    let rows = st.query_map(params![now_us - cooldown], |row| {
        Ok((
            StoredAlert {
                alert_id: row.get(0)?,
                rule: row.get(1)?,
                kind: row.get(2)?,
                scope: row.get(3)?,
                tier: row.get(4)?,
                value: row.get(5)?,
                threshold: row.get(6)?,
                pending_us: row.get(7)?,
                fired_us: row.get(8)?,
                resolved_us: row.get(9)?,
            },
            row.get::<_, String>(10)?,
        ))
    })?;
    for row in rows {
        let (a, state) = row?;
        if state == "firing" {
            seed.open.push(a);
        } else {
            seed.cooling.push(a);
        }
    }
    Ok(seed)
}
