//! The alert evaluator (no I/O, no blocking): `observe` takes each committed batch in order (the
//! pipeline's publish stage calls it through a commit hook), `tick` the time-driven checks (once
//! a second); both on the collector clock and both return `Event`s (firing / resolved).
//!
//! Built to cost little per batch with thousands of rules and sessions (issue 13's benchmark):
//! - Values are kept per *source* and scope, not per rule: a budget's running sum per scope
//!   (every budget rule of that scope kind reads the same sum), a sliding window per (kind,
//!   window length, scope), since-times per session and source. A call updates each source
//!   once, whatever the number of rules reading it.
//! - Rules are grouped by source and sorted by the value at which they can first hold (a
//!   budget's lowest tier, a threshold, an `after_secs`): a changed value evaluates only the
//!   rules it can cross (a binary search), plus the rules whose phase for that scope is not
//!   `Ok` (pending, firing, cooling: they may resolve or move on), found through an index.
//! - Only non-`Ok` phases are stored; `tick` walks the windows, the flagged sessions, the
//!   sources and the open phases, never rules x keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::{Action, Kind, RuleSpec, Scope};
use crate::model::records::Batch;

/// A scope's phase for one rule (and budget tier).
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Ok,
    Pending {
        since_us: i64,
    },
    Firing {
        id: String,
        since_us: i64,
        pending_us: i64,
    },
    /// Resolved; no new firing before `until_us`.
    Cooling {
        until_us: i64,
    },
}

/// What a step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    None,
    Fire { pending_us: i64 },
    Resolve { id: String, fired_us: i64 },
}

/// One phase step (pure): `cond` is whether the condition holds at `now_us`.
pub fn step(phase: &Phase, cond: bool, now_us: i64, for_us: i64, cooldown_us: i64) -> (Phase, Step) {
    match phase {
        Phase::Cooling { until_us } if now_us < *until_us => (phase.clone(), Step::None),
        Phase::Ok | Phase::Cooling { .. } => match (cond, for_us) {
            (false, _) => (Phase::Ok, Step::None),
            (true, 0) => (
                Phase::Firing { id: String::new(), since_us: now_us, pending_us: now_us },
                Step::Fire { pending_us: now_us },
            ),
            (true, _) => (Phase::Pending { since_us: now_us }, Step::None),
        },
        Phase::Pending { since_us } => {
            if !cond {
                (Phase::Ok, Step::None)
            } else if now_us - since_us >= for_us {
                (
                    Phase::Firing { id: String::new(), since_us: now_us, pending_us: *since_us },
                    Step::Fire { pending_us: *since_us },
                )
            } else {
                (phase.clone(), Step::None)
            }
        }
        Phase::Firing { id, since_us, .. } => {
            if cond {
                (phase.clone(), Step::None)
            } else {
                (
                    Phase::Cooling { until_us: now_us + cooldown_us },
                    Step::Resolve { id: id.clone(), fired_us: *since_us },
                )
            }
        }
    }
}

/// A firing or a resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub alert_id: String,
    pub rule: Arc<RuleSpec>,
    /// `session:<id>`, `agent:<id>`, `task:<id>`, `all`, `day:<YYYY-MM-DD>`, `source:<service>`.
    pub scope: String,
    pub tier: Option<f64>,
    pub value: f64,
    pub threshold: f64,
    pub firing: bool,
    pub at_us: i64,
    pub pending_us: i64,
    pub fired_us: i64,
    /// Sessions the rule's action applies to.
    pub sessions: Vec<String>,
}

/// The rules in force, shared with the API (which swaps them) and the evaluator.
#[derive(Clone, Default)]
pub struct RuleSet(Arc<Mutex<(u64, Rules)>>);

/// The rules in force (shared, swapped whole).
pub type Rules = Arc<Vec<Arc<RuleSpec>>>;

impl RuleSet {
    pub fn get(&self) -> (u64, Rules) {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.clone())
    }

    pub fn set(&self, rules: Vec<RuleSpec>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        g.1 = Arc::new(rules.into_iter().map(Arc::new).collect());
    }
}

/// Bounds.
const MAX_KEYS: usize = 200_000;
const MAX_WINDOW: usize = 100_000;
const MAX_MEMBERS: usize = 10_000;
const SECOND: i64 = 1_000_000;

/// Where a rule's value comes from; rules with the same source share its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Src {
    /// Cumulative cost per scope.
    Budget(Scope),
    /// Cost in a sliding window of `.1` seconds.
    Spend(Scope, u64),
    /// Failed / all calls in a sliding window of `.1` seconds.
    Errors(Scope, u64),
    Stuck,
    Waiting,
    Silent,
}

impl Src {
    fn of(r: &RuleSpec) -> Src {
        match r.kind {
            Kind::Budget => Src::Budget(r.scope),
            Kind::RunawaySpend => Src::Spend(r.scope, r.window_secs),
            Kind::ErrorRate => Src::Errors(r.scope, r.window_secs),
            Kind::Stuck => Src::Stuck,
            Kind::Waiting => Src::Waiting,
            Kind::SourceSilent => Src::Silent,
        }
    }
}

/// A source's value for one scope now.
#[derive(Debug, Clone, Copy, Default)]
struct Val {
    /// Cost, percent failed, or seconds.
    value: f64,
    /// Calls in the window (error rate).
    count: u64,
    /// Elapsed time (stuck, waiting, silent).
    elapsed_us: i64,
    /// False: cannot hold (a past day's budget, a session no longer flagged).
    live: bool,
}

/// The values at which a rule starts to hold: each budget tier, else one threshold.
fn crossings(r: &RuleSpec) -> Vec<f64> {
    match r.kind {
        Kind::Budget => r.tiers.iter().map(|t| r.threshold * t).collect(),
        Kind::RunawaySpend | Kind::ErrorRate => vec![r.threshold],
        Kind::Stuck | Kind::Waiting | Kind::SourceSilent => vec![r.after_secs as f64],
    }
}

/// The enabled rules, grouped by source and sorted by crossing.
#[derive(Default)]
struct Compiled {
    groups: HashMap<Src, Vec<(f64, usize)>>,
    by_name: HashMap<Arc<str>, usize>,
    names: Vec<Arc<str>>,
    /// Scope kinds that budgets, spend and error windows are kept for.
    budget_scopes: Vec<Scope>,
    windows: Vec<Src>,
    /// Scope kinds calls are summed over (budgets, spend and error windows together).
    call_scopes: Vec<Scope>,
}

impl Compiled {
    fn new(rules: &[Arc<RuleSpec>]) -> Compiled {
        let mut c = Compiled::default();
        for (i, r) in rules.iter().enumerate() {
            let name: Arc<str> = Arc::from(r.name.as_str());
            c.names.push(name.clone());
            if !r.enabled {
                continue;
            }
            c.by_name.insert(name, i);
            let src = Src::of(r);
            // A budget is reachable at each tier (a value may cross the next one later).
            c.groups.entry(src).or_default().extend(crossings(r).into_iter().map(|x| (x, i)));
            match src {
                Src::Budget(s) if !c.budget_scopes.contains(&s) => c.budget_scopes.push(s),
                Src::Spend(..) | Src::Errors(..) if !c.windows.contains(&src) => c.windows.push(src),
                _ => {}
            }
            if let Src::Budget(s) | Src::Spend(s, _) | Src::Errors(s, _) = src {
                if !c.call_scopes.contains(&s) {
                    c.call_scopes.push(s);
                }
            }
        }
        for g in c.groups.values_mut() {
            g.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        c
    }

    /// The rules of `src` that `value` reaches (crossing <= value; a budget once per tier).
    fn crossable(&self, src: Src, value: f64) -> &[(f64, usize)] {
        match self.groups.get(&src) {
            Some(g) => &g[..g.partition_point(|(c, _)| *c <= value)],
            None => &[],
        }
    }

    /// How many crossings of `src` lie at or below `value`.
    fn reached(&self, src: Src, value: f64) -> usize {
        self.crossable(src, value).len()
    }
}

/// A sliding window: (time, value sum, count) entries (merged per second) and their totals.
#[derive(Default)]
struct Window {
    q: VecDeque<(i64, f64, u32)>,
    sum: f64,
    n: u64,
}

impl Window {
    fn push(&mut self, t: i64, v: f64, n: u32) {
        let same_second = self.q.back().is_some_and(|b| b.0.div_euclid(SECOND) == t.div_euclid(SECOND));
        if same_second {
            if let Some(b) = self.q.back_mut() {
                b.1 += v;
                b.2 = b.2.saturating_add(n);
            }
        } else if self.q.len() >= MAX_WINDOW {
            return;
        } else {
            self.q.push_back((t, v, n));
        }
        self.sum += v;
        self.n += u64::from(n);
    }

    fn prune(&mut self, from_us: i64) {
        while let Some(&(t, v, n)) = self.q.front() {
            if t > from_us {
                break;
            }
            self.q.pop_front();
            self.sum -= v;
            self.n -= u64::from(n);
        }
        if self.q.is_empty() {
            self.sum = 0.0;
            self.n = 0;
        }
    }
}

/// A call's key for a scope kind, borrowed from the batch (or the membership maps).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum RawKey<'a> {
    Str(&'a str),
    All,
    Day(i64),
}

impl RawKey<'_> {
    fn owned(self) -> OwnedKey {
        match self {
            RawKey::Str(s) => OwnedKey::Str(s.to_string()),
            RawKey::All => OwnedKey::All,
            RawKey::Day(d) => OwnedKey::Day(d),
        }
    }
}

enum OwnedKey {
    Str(String),
    All,
    Day(i64),
}

/// What a batch's calls add to one scope.
#[derive(Default, Clone, Copy)]
struct Sums {
    cost: f64,
    /// Calls with a cost.
    costed: u32,
    calls: u32,
    failed: u32,
}

/// A batch's calls summed per (scope kind, key): runs of one key (the common case) hit the last
/// row; others a short scan, then a map.
#[derive(Default)]
struct Agg<'a> {
    rows: Vec<(Scope, RawKey<'a>, Sums)>,
    index: HashMap<(Scope, RawKey<'a>), usize>,
    last: [Option<usize>; 5],
}

impl<'a> Agg<'a> {
    fn add(&mut self, scope: Scope, raw: RawKey<'a>, cost: f64, failed: bool) {
        let slot = scope as usize;
        let i = match self.last[slot] {
            Some(i) if self.rows[i].1 == raw => i,
            _ => {
                let n = self.rows.len();
                let i = *self.index.entry((scope, raw)).or_insert(n);
                if i == n {
                    self.rows.push((scope, raw, Sums::default()));
                }
                self.last[slot] = Some(i);
                i
            }
        };
        let s = &mut self.rows[i].2;
        if cost != 0.0 {
            s.cost += cost;
            s.costed += 1;
        }
        s.calls += 1;
        s.failed += u32::from(failed);
    }
}

/// (rule, tier).
type RuleTier = (Arc<str>, u8);

/// (rule, scope, tier) of a phase that is not `Ok`.
type Key = (Arc<str>, Arc<str>, u8);

#[derive(Default)]
pub struct Engine {
    rules: RuleSet,
    generation: u64,
    active: Rules,
    compiled: Compiled,
    /// Non-`Ok` phases and the value they last saw.
    phases: HashMap<Key, (Phase, f64)>,
    /// (source, scope) -> (rule, tier) of its non-`Ok` phases.
    open: HashMap<(Src, Arc<str>), Vec<RuleTier>>,
    /// (source, scope) -> how many of its phases are pending or cooling (time moves them on;
    /// a firing phase only changes with its value).
    unsettled: HashMap<(Src, Arc<str>), u32>,
    /// The previous tick (time-driven values are compared with where they were then).
    last_tick_us: Option<i64>,
    /// Rules changed: the next tick evaluates every budget once (a new rule may already hold).
    full_pass: bool,
    /// Budgets: cumulative cost per scope (`session:s`, `agent:a`, `task:t`, `all`, `day:d`).
    sums: HashMap<Arc<str>, f64>,
    windows: HashMap<(Src, Arc<str>), Window>,
    /// Per session: (stuck since, waiting since).
    flags: HashMap<Arc<str>, (Option<i64>, Option<i64>)>,
    sources: HashMap<Arc<str>, i64>,
    session_agent: HashMap<String, String>,
    session_task: HashMap<String, String>,
    agent_sessions: HashMap<String, HashSet<String>>,
    task_sessions: HashMap<String, HashSet<String>>,
    seq: u64,
    /// False until `seed` (restart): batches are taken in but nothing is evaluated.
    seeded: bool,
    /// The newest log position observed.
    last_pos: u64,
    /// The last day number and its `day:` scope (a call's day is formatted once per day).
    day_cache: (i64, Arc<str>),
}

pub(crate) fn day(us: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(us.div_euclid(86_400_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The scope kind of a scope string.
fn scope_kind(scope: &str) -> Option<Scope> {
    match scope.split_once(':').map_or(scope, |(k, _)| k) {
        "session" => Some(Scope::Session),
        "agent" => Some(Scope::Agent),
        "task" => Some(Scope::Task),
        "all" => Some(Scope::All),
        "day" => Some(Scope::Day),
        _ => None,
    }
}

impl Engine {
    pub fn new(rules: RuleSet) -> Self {
        Engine { rules, seeded: true, ..Engine::default() }
    }

    /// An engine that evaluates nothing until `seed` gave it what the store holds (the
    /// collector's start: replayed batches are taken in meanwhile, none fires twice).
    pub fn unseeded(rules: RuleSet) -> Self {
        Engine { rules, ..Engine::default() }
    }

    /// The newest log position observed (0: none).
    pub fn last_pos(&self) -> u64 {
        self.last_pos
    }

    /// The rules in force now (resolution events of rules removed meanwhile go to `out`).
    pub fn active_rules(&mut self, now_us: i64, out: &mut Vec<Event>) -> Rules {
        self.refresh(out, now_us);
        self.active.clone()
    }

    /// (rule, scope) of every alert firing now (one entry per firing tier).
    pub fn firing(&self) -> Vec<(String, String)> {
        self.phases
            .iter()
            .filter(|(_, (p, _))| matches!(p, Phase::Firing { .. }))
            .map(|(k, _)| (k.0.to_string(), k.1.to_string()))
            .collect()
    }

    /// Sizes of the evaluator's state: (open phases, open (source, scope) keys, budget sums,
    /// windows, flagged sessions, sources).
    pub fn sizes(&self) -> [usize; 6] {
        [self.phases.len(), self.open.len(), self.sums.len(), self.windows.len(), self.flags.len(), self.sources.len()]
    }

    /// Start evaluating without a seed (the store could not be read).
    pub fn mark_seeded(&mut self) {
        self.seeded = true;
    }

    fn refresh(&mut self, out: &mut Vec<Event>, now_us: i64) {
        let (g, rules) = self.rules.get();
        if g == self.generation {
            return;
        }
        self.generation = g;
        let old = std::mem::replace(&mut self.active, rules);
        self.compiled = Compiled::new(&self.active);
        self.full_pass = true;
        // A rule removed, changed or disabled: its firing alerts resolve, its phases go.
        let gone: Vec<Arc<RuleSpec>> = old
            .iter()
            .filter(|o| !self.active.iter().any(|n| n.as_ref() == o.as_ref() && n.enabled))
            .cloned()
            .collect();
        for r in gone {
            let keys: Vec<Key> = self.phases.keys().filter(|k| *k.0 == *r.name).cloned().collect();
            for k in keys {
                let was = self.phases.get(&k).cloned();
                self.set_phase(Src::of(&r), k.clone(), Phase::Ok, 0.0);
                if let Some((Phase::Firing { id, since_us, pending_us }, v)) = was {
                    out.push(self.event(&r, &k.1, k.2, v, false, now_us, pending_us, since_us, id));
                }
            }
        }
        // State no rule reads any more goes.
        let c = &self.compiled;
        self.sums.retain(|k, _| scope_kind(k).is_some_and(|s| c.budget_scopes.contains(&s)));
        self.windows.retain(|k, _| c.windows.contains(&k.0));
    }

    fn unindex(&mut self, src: Src, k: &Key) {
        let ok = (src, k.1.clone());
        if let Some(v) = self.open.get_mut(&ok) {
            v.retain(|(r, t)| !(*r == k.0 && *t == k.2));
            if v.is_empty() {
                self.open.remove(&ok);
            }
        }
    }

    fn remember(&mut self, session: &str, agent: Option<&str>, task: Option<&str>) {
        if self.session_agent.len() > MAX_KEYS {
            self.session_agent.clear();
            self.session_task.clear();
            self.agent_sessions.clear();
            self.task_sessions.clear();
        }
        if let Some(a) = agent {
            if self.session_agent.get(session).map(String::as_str) != Some(a) {
                self.session_agent.insert(session.to_string(), a.to_string());
                let m = self.agent_sessions.entry(a.to_string()).or_default();
                if m.len() < MAX_MEMBERS {
                    m.insert(session.to_string());
                }
            }
        }
        if let Some(t) = task {
            if self.session_task.get(session).map(String::as_str) != Some(t) {
                self.session_task.insert(session.to_string(), t.to_string());
                let m = self.task_sessions.entry(t.to_string()).or_default();
                if m.len() < MAX_MEMBERS {
                    m.insert(session.to_string());
                }
            }
        }
    }

    /// One committed batch at collector time `now_us`.
    pub fn observe(&mut self, b: &Batch, now_us: i64) -> Vec<Event> {
        let mut out = Vec::new();
        self.refresh(&mut out, now_us);
        self.last_pos = self.last_pos.max(b.log_pos);
        for s in &b.sessions {
            self.remember(&s.id, s.agent_id.as_deref(), s.task_id.as_deref());
        }
        for l in &b.task_links {
            if let Some(s) = &l.session_id {
                self.remember(s, None, Some(&l.task_id));
            }
        }
        // Sources reporting.
        if self.compiled.groups.contains_key(&Src::Silent) {
            let names = b
                .spans
                .iter()
                .map(|r| &r.ctx)
                .chain(b.logs.iter().map(|r| &r.ctx))
                .chain(b.points.iter().map(|r| &r.ctx))
                .filter_map(|c| c.service_name.as_ref());
            for n in names {
                if let Some(t) = self.sources.get_mut(n) {
                    *t = now_us;
                } else if self.sources.len() < MAX_KEYS {
                    self.sources.insert(n.clone(), now_us);
                }
            }
        }
        // (source, scope) -> a budget's sum before this batch (None: evaluate in full).
        let mut touched: HashMap<(Src, Arc<str>), Option<f64>> = HashMap::new();
        // Calls first summed per scope (a batch is mostly one session's), then each source
        // updated once per scope it touched, whatever the number of rules reading it.
        let kinds = self.compiled.call_scopes.clone();
        if !kinds.is_empty() {
            let mut agg = Agg::default();
            let costs = b.model_calls.iter().map(|c| (&c.ctx, c.time_us, c.cost_usd.unwrap_or(0.0), c.error));
            let tools = b.tool_calls.iter().map(|t| (&t.ctx, t.time_us, 0.0, t.success == Some(false)));
            for (ctx, t_us, cost, failed) in costs.chain(tools) {
                let (s, a, t) = (ctx.session_id.as_deref(), ctx.agent_id.as_deref(), ctx.task_id.as_deref());
                for &scope in &kinds {
                    let raw = match scope {
                        Scope::Session => s.map(RawKey::Str),
                        Scope::Agent => {
                            a.or_else(|| s.and_then(|s| self.session_agent.get(s).map(String::as_str))).map(RawKey::Str)
                        }
                        Scope::Task => {
                            t.or_else(|| s.and_then(|s| self.session_task.get(s).map(String::as_str))).map(RawKey::Str)
                        }
                        Scope::All => Some(RawKey::All),
                        Scope::Day => Some(RawKey::Day(t_us.div_euclid(86_400 * SECOND))),
                    };
                    if let Some(raw) = raw {
                        agg.add(scope, raw, cost, failed);
                    }
                }
            }
            let entries: Vec<(Scope, OwnedKey, Sums)> =
                agg.rows.into_iter().map(|(scope, raw, sums)| (scope, raw.owned(), sums)).collect();
            let windows = self.compiled.windows.clone();
            for (scope, raw, sums) in entries {
                let key = self.scope_key(scope, &raw);
                if sums.cost != 0.0 {
                    if self.compiled.budget_scopes.contains(&scope) {
                        let before = if let Some(v) = self.sums.get_mut(&key) {
                            let b = *v;
                            *v += sums.cost;
                            b
                        } else {
                            if self.sums.len() < MAX_KEYS {
                                self.sums.insert(key.clone(), sums.cost);
                            }
                            0.0
                        };
                        touched.entry((Src::Budget(scope), key.clone())).or_insert(Some(before));
                    }
                    for &src in &windows {
                        if matches!(src, Src::Spend(s, _) if s == scope) {
                            // Spend only rises here (the tick sees it fall as the window slides).
                            let before = self.push_window(src, &key, now_us, sums.cost, sums.costed);
                            touched.entry((src, key.clone())).or_insert(Some(before));
                        }
                    }
                }
                for &src in &windows {
                    if matches!(src, Src::Errors(s, _) if s == scope) {
                        self.push_window(src, &key, now_us, f64::from(sums.failed), sums.calls);
                        touched.insert((src, key.clone()), None);
                    }
                }
            }
        }
        // Session flags (stuck, waiting) and ends.
        let (stuck, waiting) =
            (self.compiled.groups.contains_key(&Src::Stuck), self.compiled.groups.contains_key(&Src::Waiting));
        for u in &b.session_updates {
            let live = u.status != "finished";
            let e = self.flags.get(u.session_id.as_str()).copied().unwrap_or_default();
            let next = (
                if u.stuck && live { e.0.or(Some(now_us)) } else { None },
                if u.waiting && live { e.1.or(Some(now_us)) } else { None },
            );
            if next == (None, None) {
                self.flags.remove(u.session_id.as_str());
            } else if next != e && (self.flags.len() < MAX_KEYS || self.flags.contains_key(u.session_id.as_str())) {
                self.flags.insert(Arc::from(u.session_id.as_str()), next);
            }
            if !live {
                if let Some(a) = self.session_agent.get(&u.session_id) {
                    if let Some(m) = self.agent_sessions.get_mut(a) {
                        m.remove(&u.session_id);
                    }
                }
                if let Some(t) = self.session_task.get(&u.session_id) {
                    if let Some(m) = self.task_sessions.get_mut(t) {
                        m.remove(&u.session_id);
                    }
                }
            }
            if stuck || waiting {
                let key: Arc<str> = Arc::from(format!("session:{}", u.session_id));
                if stuck {
                    touched.insert((Src::Stuck, key.clone()), None);
                }
                if waiting {
                    touched.insert((Src::Waiting, key), None);
                }
            }
        }
        if !self.seeded {
            return out;
        }
        for ((src, scope), before) in touched {
            match before {
                Some(b) => self.evaluate_rise(src, &scope, b, now_us, &mut out),
                None => self.evaluate_key(src, &scope, now_us, &mut out),
            }
        }
        out
    }

    /// Add to a window; its sum before.
    fn push_window(&mut self, src: Src, key: &Arc<str>, now_us: i64, v: f64, n: u32) -> f64 {
        let k = (src, key.clone());
        if let Some(w) = self.windows.get_mut(&k) {
            let before = w.sum;
            w.push(now_us, v, n);
            before
        } else {
            if self.windows.len() < MAX_KEYS {
                self.windows.entry(k).or_default().push(now_us, v, n);
            }
            0.0
        }
    }

    /// The scope string of a summed key.
    fn scope_key(&mut self, scope: Scope, raw: &OwnedKey) -> Arc<str> {
        match (scope, raw) {
            (Scope::Day, OwnedKey::Day(d)) => {
                if self.day_cache.0 != *d || self.day_cache.1.is_empty() {
                    self.day_cache = (*d, Arc::from(format!("day:{}", day(d * 86_400 * SECOND))));
                }
                self.day_cache.1.clone()
            }
            (_, OwnedKey::All) => Arc::from("all"),
            (Scope::Agent, OwnedKey::Str(a)) => Arc::from(format!("agent:{a}")),
            (Scope::Task, OwnedKey::Str(t)) => Arc::from(format!("task:{t}")),
            (_, OwnedKey::Str(s)) => Arc::from(format!("session:{s}")),
            (_, OwnedKey::Day(d)) => Arc::from(format!("day:{}", day(d * 86_400 * SECOND))),
        }
    }

    /// Start from what the store holds (`seed::read`, at start, before anything is evaluated):
    /// running sums and windows replace what was taken in meanwhile (the seed covers it), the
    /// open alerts stay firing under their ids (never fired again; resolved once), recently
    /// resolved ones keep cooling, and an open alert of a rule that is gone resolves now. Then
    /// every seeded scope is evaluated once (a budget crossed while the collector was down fires).
    pub fn seed(&mut self, seed: super::seed::Seed, now_us: i64) -> Vec<Event> {
        let mut out = Vec::new();
        self.refresh(&mut out, now_us);
        self.seeded = true;
        let rules = self.active.clone();
        let rule = |name: &str| rules.iter().find(|r| r.name == name && r.enabled).cloned();
        self.sums.clear();
        self.windows.clear();
        // Budget sums are per scope (every budget rule of the scope kind reads the same one).
        for (name, scope, v) in seed.sums {
            if rule(&name).is_some() && self.sums.len() < MAX_KEYS {
                self.sums.insert(Arc::from(scope), v);
            }
        }
        for (name, scope, mut w) in seed.windows {
            let Some(r) = rule(&name) else { continue };
            let k = (Src::of(&r), Arc::from(scope));
            if self.windows.len() >= MAX_KEYS || self.windows.contains_key(&k) {
                continue;
            }
            w.sort_by_key(|e| e.0);
            let skip = w.len().saturating_sub(MAX_WINDOW);
            let mut win = Window::default();
            for (t, v, n) in w.into_iter().skip(skip) {
                win.push(t, v, n);
            }
            self.windows.insert(k, win);
        }
        for (session, stuck, waiting) in seed.flags {
            if self.flags.len() < MAX_KEYS {
                // What this run already saw of a session is newer than the store's.
                self.flags.entry(Arc::from(session)).or_insert((stuck, waiting));
            }
        }
        for (session, agent, task) in seed.members {
            self.remember(&session, agent.as_deref(), task.as_deref());
        }
        // Resolved first, then open (an open alert wins over an older resolution).
        for (a, open) in seed.cooling.iter().map(|a| (a, false)).chain(seed.open.iter().map(|a| (a, true))) {
            let tier = rule(&a.rule).and_then(|r| match (r.kind, a.tier) {
                (Kind::Budget, Some(t)) => {
                    r.tiers.iter().position(|x| (x - t).abs() < 1e-9).map(|i| (r.clone(), i as u8))
                }
                (Kind::Budget, None) => None,
                _ => Some((r.clone(), 0)),
            });
            match (tier, open) {
                (Some((r, ti)), true) => {
                    let phase =
                        Phase::Firing { id: a.alert_id.clone(), since_us: a.fired_us, pending_us: a.pending_us };
                    let k = (Arc::from(r.name.as_str()), Arc::from(a.scope.as_str()), ti);
                    self.set_phase(Src::of(&r), k, phase, a.value);
                }
                (Some((r, ti)), false) => {
                    let until_us = a.resolved_us.unwrap_or(a.fired_us) + r.cooldown_secs as i64 * SECOND;
                    if until_us > now_us {
                        let k = (Arc::from(r.name.as_str()), Arc::from(a.scope.as_str()), ti);
                        self.set_phase(Src::of(&r), k, Phase::Cooling { until_us }, a.value);
                    }
                }
                // A rule removed (or changed its tiers) while the collector was down: its alert resolves.
                (None, true) => {
                    let Some(kind) = serde_json::from_value::<Kind>(serde_json::Value::String(a.kind.clone())).ok()
                    else {
                        continue;
                    };
                    let r = Arc::new(RuleSpec {
                        name: a.rule.clone(),
                        kind,
                        scope: Scope::default(),
                        threshold: a.threshold,
                        window_secs: 0,
                        min_count: 0,
                        after_secs: 0,
                        tiers: a.tier.into_iter().collect(),
                        for_secs: 0,
                        cooldown_secs: 0,
                        action: None,
                        webhook: None,
                        webhook_format: super::Format::Json,
                        enabled: true,
                    });
                    let mut e = self.event(
                        &r,
                        &a.scope,
                        0,
                        a.value,
                        false,
                        now_us,
                        a.pending_us,
                        a.fired_us,
                        a.alert_id.clone(),
                    );
                    e.threshold = a.threshold;
                    out.push(e);
                }
                (None, false) => {}
            }
        }
        // Every seeded scope once.
        let mut todo: HashSet<(Src, Arc<str>)> = HashSet::new();
        for k in self.sums.keys() {
            if let Some(s) = scope_kind(k) {
                todo.insert((Src::Budget(s), k.clone()));
            }
        }
        todo.extend(self.windows.keys().cloned());
        todo.extend(self.open.keys().cloned());
        for (src, scope) in todo {
            self.evaluate_key(src, &scope, now_us, &mut out);
        }
        out
    }

    /// Time-driven checks at `now_us`: windows slide, durations grow, days end, sources fall
    /// silent. Cost: the windows, flagged sessions, sources and open phases, not rules x keys.
    pub fn tick(&mut self, now_us: i64) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.seeded {
            return out;
        }
        self.refresh(&mut out, now_us);
        let prev_us = self.last_tick_us.replace(now_us);
        let full = std::mem::take(&mut self.full_pass);
        // Pending and cooling phases move on with time; firing ones change only with their value:
        // windows (they slide), a day's budget (the day ends).
        let mut todo: HashSet<(Src, Arc<str>)> = self.unsettled.keys().cloned().collect();
        todo.extend(
            self.open
                .keys()
                .filter(|k| matches!(k.0, Src::Spend(..) | Src::Errors(..) | Src::Budget(Scope::Day)))
                .cloned(),
        );
        // Windows slide (empty ones go): an error rate may rise as successes leave it.
        let mut slid = Vec::new();
        self.windows.retain(|k, w| {
            if let Src::Spend(_, secs) | Src::Errors(_, secs) = k.0 {
                let before = w.q.len();
                w.prune(now_us - secs as i64 * SECOND);
                if w.q.len() != before && matches!(k.0, Src::Errors(..)) && !w.q.is_empty() {
                    slid.push(k.clone());
                }
            }
            !w.q.is_empty()
        });
        todo.extend(slid);
        // Durations: a scope is looked at when its elapsed time reached another rule's
        // `after_secs` since the previous tick.
        let reached = |c: &Compiled, src: Src, since: i64| {
            let before = prev_us.map_or(-1.0, |p| (p - since) as f64 / 1e6);
            c.reached(src, (now_us - since) as f64 / 1e6) != c.reached(src, before)
        };
        for (s, f) in &self.flags {
            for (src, since) in [(Src::Stuck, f.0), (Src::Waiting, f.1)] {
                if let Some(since) = since {
                    if self.compiled.groups.contains_key(&src) && reached(&self.compiled, src, since) {
                        todo.insert((src, Arc::from(format!("session:{s}"))));
                    }
                }
            }
        }
        if self.compiled.groups.contains_key(&Src::Silent) {
            for (s, last) in &self.sources {
                if reached(&self.compiled, Src::Silent, *last) {
                    todo.insert((Src::Silent, Arc::from(format!("source:{s}"))));
                }
            }
        }
        // After a rule change every budget once (a new rule may hold already).
        if full {
            for k in self.sums.keys() {
                if let Some(scope) = scope_kind(k) {
                    if self.compiled.budget_scopes.contains(&scope) {
                        todo.insert((Src::Budget(scope), k.clone()));
                    }
                }
            }
            todo.extend(self.open.keys().cloned());
        }
        for (src, scope) in todo {
            self.evaluate_key(src, &scope, now_us, &mut out);
        }
        out
    }

    /// A source's value for a scope now (and slide its window).
    fn value(&mut self, src: Src, scope: &str, now_us: i64) -> Option<Val> {
        match src {
            Src::Budget(_) => {
                let v = self.sums.get(scope).copied().unwrap_or(0.0);
                // A day's budget ends with the day.
                let over = scope
                    .strip_prefix("day:")
                    .is_some_and(|d| d < self.day_cache_for(now_us).strip_prefix("day:").unwrap_or(""));
                Some(Val { value: v, live: !over, ..Val::default() })
            }
            Src::Spend(_, secs) | Src::Errors(_, secs) => {
                let w = self.windows.get_mut(&(src, Arc::from(scope)))?;
                w.prune(now_us - secs as i64 * SECOND);
                if matches!(src, Src::Spend(..)) {
                    Some(Val { value: w.sum, count: w.n, live: true, ..Val::default() })
                } else {
                    let pct = if w.n == 0 { 0.0 } else { w.sum * 100.0 / w.n as f64 };
                    Some(Val { value: pct, count: w.n, live: true, ..Val::default() })
                }
            }
            Src::Stuck | Src::Waiting => {
                let s = scope.strip_prefix("session:")?;
                let since = self.flags.get(s).and_then(|f| if src == Src::Stuck { f.0 } else { f.1 });
                let elapsed_us = since.map_or(0, |t| now_us - t);
                Some(Val { value: elapsed_us as f64 / 1e6, elapsed_us, live: since.is_some(), count: 0 })
            }
            Src::Silent => {
                let s = scope.strip_prefix("source:")?;
                let last = *self.sources.get(s)?;
                let elapsed_us = now_us - last;
                Some(Val { value: elapsed_us as f64 / 1e6, elapsed_us, live: true, count: 0 })
            }
        }
    }

    fn day_cache_for(&mut self, now_us: i64) -> Arc<str> {
        let d = now_us.div_euclid(86_400 * SECOND);
        if self.day_cache.0 != d || self.day_cache.1.is_empty() {
            self.day_cache = (d, Arc::from(format!("day:{}", day(now_us))));
        }
        self.day_cache.1.clone()
    }

    /// Evaluate `scope` of `src`: the rules with an open phase there, then those its value reaches.
    fn evaluate_key(&mut self, src: Src, scope: &Arc<str>, now_us: i64, out: &mut Vec<Event>) {
        let Some(val) = self.value(src, scope, now_us) else {
            // Nothing left to measure (a window emptied and went): open phases see "not holding".
            self.evaluate_open(src, scope, Val::default(), now_us, out);
            return;
        };
        self.evaluate_open(src, scope, val, now_us, out);
        if !val.live {
            return;
        }
        let mut rules: Vec<usize> = self.compiled.crossable(src, val.value).iter().map(|e| e.1).collect();
        rules.sort_unstable();
        rules.dedup();
        for i in rules {
            self.evaluate(i, scope, val, now_us, out, true);
        }
    }

    /// A budget's sum (or a spend window's, when calls arrive) rose from `before`: step its
    /// pending / cooling phases, and the rules whose crossing lies in (before, now]. Firing ones
    /// stay firing (the value only grew; a window falling is the tick's), so a scope far past its
    /// thresholds costs nothing per batch.
    fn evaluate_rise(&mut self, src: Src, scope: &Arc<str>, before: f64, now_us: i64, out: &mut Vec<Event>) {
        let Some(val) = self.value(src, scope, now_us) else { return };
        if self.unsettled.contains_key(&(src, scope.clone())) {
            self.evaluate_open(src, scope, val, now_us, out);
        }
        if !val.live {
            return;
        }
        // A budget holds at its crossing (>=), runaway spend above it (>): one exactly at `before`
        // has not fired yet.
        let lo = match src {
            Src::Spend(..) => self.compiled.groups.get(&src).map_or(0, |g| g.partition_point(|(c, _)| *c < before)),
            _ => self.compiled.reached(src, before),
        };
        let hi = self.compiled.reached(src, val.value);
        if lo >= hi {
            return;
        }
        let mut rules: Vec<usize> = self.compiled.crossable(src, val.value)[lo..hi].iter().map(|e| e.1).collect();
        rules.sort_unstable();
        rules.dedup();
        for i in rules {
            self.evaluate(i, scope, val, now_us, out, false);
        }
    }

    fn evaluate_open(&mut self, src: Src, scope: &Arc<str>, val: Val, now_us: i64, out: &mut Vec<Event>) {
        let Some(open) = self.open.get(&(src, scope.clone())) else { return };
        let mut rules: Vec<usize> = open.iter().filter_map(|(n, _)| self.compiled.by_name.get(n).copied()).collect();
        rules.sort_unstable();
        rules.dedup();
        for i in rules {
            self.evaluate(i, scope, val, now_us, out, false);
        }
    }

    /// Store a phase (`Ok`: forget it), keeping the open index.
    fn set_phase(&mut self, src: Src, k: Key, phase: Phase, value: f64) {
        let moving = |p: &Phase| matches!(p, Phase::Pending { .. } | Phase::Cooling { .. });
        let (was, is) = (self.phases.get(&k).is_some_and(|(p, _)| moving(p)), moving(&phase));
        if was != is {
            let uk = (src, k.1.clone());
            if is {
                *self.unsettled.entry(uk).or_insert(0) += 1;
            } else if let Some(n) = self.unsettled.get_mut(&uk) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.unsettled.remove(&uk);
                }
            }
        }
        if phase == Phase::Ok {
            if self.phases.remove(&k).is_some() {
                self.unindex(src, &k);
            }
        } else if let Some(e) = self.phases.get_mut(&k) {
            *e = (phase, value);
        } else {
            self.open.entry((src, k.1.clone())).or_default().push((k.0.clone(), k.2));
            self.phases.insert(k, (phase, value));
        }
    }

    /// Step rule `i`'s phases for `scope` (one per budget tier). `only_ok`: skip tiers already open
    /// (`evaluate_open` stepped them at this instant). A phase that stays as it is costs a lookup.
    fn evaluate(&mut self, i: usize, scope: &Arc<str>, val: Val, now_us: i64, out: &mut Vec<Event>, only_ok: bool) {
        let (r, name) = (self.active[i].clone(), self.compiled.names[i].clone());
        let src = Src::of(&r);
        let (for_us, cooldown_us) = (r.for_secs as i64 * SECOND, r.cooldown_secs as i64 * SECOND);
        let tiers = if r.kind == Kind::Budget { r.tiers.len().max(1) } else { 1 };
        for ti in 0..tiers {
            let (threshold, tier) = match r.kind {
                Kind::Budget => {
                    let t = r.tiers.get(ti).copied().unwrap_or(1.0);
                    (r.threshold * t, Some(t))
                }
                _ => (r.threshold, None),
            };
            let cond = val.live
                && match r.kind {
                    Kind::Budget => val.value >= threshold,
                    Kind::RunawaySpend => val.value > r.threshold,
                    Kind::ErrorRate => val.count >= r.min_count.max(1) && val.value > r.threshold,
                    Kind::Stuck | Kind::Waiting | Kind::SourceSilent => val.elapsed_us >= r.after_secs as i64 * SECOND,
                };
            let k: Key = (name.clone(), scope.clone(), ti as u8);
            let full = self.phases.len() >= MAX_KEYS;
            let phase = match self.phases.get_mut(&k) {
                Some(_) if only_ok => continue,
                Some((p, v)) => {
                    let steady = match p {
                        Phase::Firing { .. } => cond,
                        Phase::Cooling { until_us } => now_us < *until_us,
                        Phase::Pending { since_us } => cond && now_us - *since_us < for_us,
                        Phase::Ok => !cond,
                    };
                    if steady {
                        *v = val.value;
                        continue;
                    }
                    p.clone()
                }
                None if !cond || full => continue,
                None => Phase::Ok,
            };
            let (mut next, s) = step(&phase, cond, now_us, for_us, cooldown_us);
            match s {
                Step::None => {}
                Step::Fire { pending_us } => {
                    self.seq += 1;
                    let id = alert_id(&r.name, scope, ti as u8, now_us, self.seq);
                    next = Phase::Firing { id: id.clone(), since_us: now_us, pending_us };
                    let mut e = self.event(&r, scope, ti as u8, val.value, true, now_us, pending_us, now_us, id);
                    e.threshold = threshold;
                    e.tier = tier;
                    out.push(e);
                }
                Step::Resolve { id, fired_us } => {
                    let pending = match &phase {
                        Phase::Firing { pending_us, .. } => *pending_us,
                        _ => fired_us,
                    };
                    let mut e = self.event(&r, scope, ti as u8, val.value, false, now_us, pending, fired_us, id);
                    e.threshold = threshold;
                    e.tier = tier;
                    out.push(e);
                }
            }
            self.set_phase(src, k, next, val.value);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        r: &Arc<RuleSpec>,
        scope: &str,
        ti: u8,
        value: f64,
        firing: bool,
        now_us: i64,
        pending_us: i64,
        fired_us: i64,
        id: String,
    ) -> Event {
        let tier = r.tiers.get(ti as usize).copied().filter(|_| r.kind == Kind::Budget);
        Event {
            alert_id: id,
            rule: r.clone(),
            scope: scope.to_string(),
            tier,
            value,
            threshold: r.threshold * tier.unwrap_or(1.0),
            firing,
            at_us: now_us,
            pending_us,
            fired_us,
            sessions: if firing { self.targets(r, scope) } else { Vec::new() },
        }
    }

    /// Sessions a rule's action applies to for a scope.
    fn targets(&self, r: &RuleSpec, scope: &str) -> Vec<String> {
        let Some(action) = r.action else { return Vec::new() };
        let (kind, id) = scope.split_once(':').unwrap_or((scope, ""));
        let members = |m: &HashMap<String, HashSet<String>>, k: Option<&String>| -> Vec<String> {
            let mut v: Vec<String> = k.and_then(|k| m.get(k)).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            v.sort();
            v
        };
        match (action, kind) {
            (Action::PauseAgent, "session") => members(&self.agent_sessions, self.session_agent.get(id)),
            (Action::PauseTask, "session") => members(&self.task_sessions, self.session_task.get(id)),
            (_, "session") => vec![id.to_string()],
            (_, "agent") => members(&self.agent_sessions, Some(&id.to_string())),
            (_, "task") => members(&self.task_sessions, Some(&id.to_string())),
            _ => Vec::new(),
        }
    }
}

fn alert_id(rule: &str, scope: &str, tier: u8, now_us: i64, seq: u64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("{rule}\0{scope}\0{tier}\0{now_us}\0{seq}\0{}", std::process::id()).as_bytes());
    format!("al-{}", &hex::encode(h.finalize())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{Context, ModelCallRow, SessionUpdate};

    const S: i64 = 1_000_000;

    fn call(session: &str, agent: &str, cost: f64, error: bool) -> ModelCallRow {
        ModelCallRow {
            time_us: 1_795_000_000 * S,
            source: "span",
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            request_id: None,
            model: Some("m".into()),
            provider: None,
            operation: None,
            input_tokens: None,
            output_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            cost_usd: Some(cost),
            cost_source: Some("reported"),
            duration_ms: None,
            error,
            token_rule: "otel",
            ctx: Context { session_id: Some(session.into()), agent_id: Some(agent.into()), ..Context::default() },
        }
    }

    fn calls(v: Vec<ModelCallRow>) -> Batch {
        Batch { model_calls: v, ..Batch::default() }
    }

    fn rule(toml: &str) -> RuleSpec {
        super::super::parse_file(&format!("[[rule]]\n{toml}")).expect("rule").remove(0)
    }

    fn engine(rules: Vec<RuleSpec>) -> Engine {
        let set = RuleSet::default();
        set.set(rules);
        Engine::new(set)
    }

    fn fired(e: &[Event]) -> Vec<(String, bool, Option<f64>)> {
        e.iter().map(|e| (e.scope.clone(), e.firing, e.tier)).collect()
    }

    #[test]
    fn phases_step_with_for_and_cooldown() {
        let cases: &[(Phase, bool, i64, Phase, bool)] = &[
            (Phase::Ok, false, 0, Phase::Ok, false),
            (Phase::Ok, true, 0, Phase::Pending { since_us: 0 }, false),
            (Phase::Pending { since_us: 0 }, true, 5, Phase::Pending { since_us: 0 }, false),
            (Phase::Pending { since_us: 0 }, false, 5, Phase::Ok, false),
            (Phase::Cooling { until_us: 100 }, true, 50, Phase::Cooling { until_us: 100 }, false),
            (Phase::Cooling { until_us: 100 }, false, 150, Phase::Ok, false),
        ];
        for (from, cond, now, to, _) in cases {
            assert_eq!(step(from, *cond, *now, 10, 100).0, *to, "{from:?} {cond} {now}");
        }
        assert!(matches!(step(&Phase::Pending { since_us: 0 }, true, 10, 10, 100).1, Step::Fire { pending_us: 0 }));
        let firing = Phase::Firing { id: "a".into(), since_us: 10, pending_us: 0 };
        assert_eq!(step(&firing, true, 20, 10, 100), (firing.clone(), Step::None));
        assert_eq!(
            step(&firing, false, 20, 10, 100),
            (Phase::Cooling { until_us: 120 }, Step::Resolve { id: "a".into(), fired_us: 10 })
        );
    }

    #[test]
    fn budget_tiers_fire_once_each() {
        let mut e = engine(vec![rule("name = \"b\"\nkind = \"budget\"\nthreshold = 1.0\ncooldown_secs = 0")]);
        assert!(e.observe(&calls(vec![call("s1", "a", 0.5, false)]), S).is_empty());
        let ev = e.observe(&calls(vec![call("s1", "a", 0.35, false)]), 2 * S);
        assert_eq!(fired(&ev), vec![("session:s1".into(), true, Some(0.8))]);
        assert!(e.observe(&calls(vec![call("s1", "a", 0.01, false)]), 3 * S).is_empty(), "no re-fire");
        let ev = e.observe(&calls(vec![call("s1", "a", 0.2, false)]), 4 * S);
        assert_eq!(fired(&ev), vec![("session:s1".into(), true, Some(1.0))]);
        assert!((ev[0].value - 1.06).abs() < 1e-9 && ev[0].threshold == 1.0);
        // Removing the rule resolves what fired.
        e.rules.set(vec![]);
        let ev = e.tick(5 * S);
        assert_eq!(ev.iter().filter(|e| !e.firing).count(), 2);
    }

    /// The rules a rise reaches are found by range (every tier once), a rule added while a sum is
    /// already over fires at the next tick, and runaway spend exactly at its threshold waits for
    /// the next call above it.
    #[test]
    fn crossings_by_range_and_a_new_rule_at_the_next_tick() {
        let budgets = (0..100)
            .map(|i| rule(&format!("name = \"b{i}\"\nkind = \"budget\"\nthreshold = {}.0\ntiers = [0.5, 1.0]", i + 1)))
            .collect::<Vec<_>>();
        let mut e = engine(budgets.clone());
        // $10.25: tier 0.5 of thresholds 1..=20, tier 1.0 of 1..=10.
        assert_eq!(e.observe(&calls(vec![call("s1", "a", 10.25, false)]), S).len(), 30);
        assert!(e.observe(&calls(vec![call("s1", "a", 0.125, false)]), 2 * S).is_empty(), "nothing new reached");
        // $11: tier 0.5 of 21 and 22, tier 1.0 of 11.
        let ev = e.observe(&calls(vec![call("s1", "a", 0.625, false)]), 3 * S);
        let mut got: Vec<(String, Option<f64>)> = ev.iter().map(|x| (x.rule.name.clone(), x.tier)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("b10".into(), Some(1.0)), ("b20".into(), Some(0.5)), ("b21".into(), Some(0.5))]);
        let mut rules = budgets;
        rules.push(rule("name = \"late\"\nkind = \"budget\"\nthreshold = 5.0\ntiers = [1.0]"));
        e.rules.set(rules);
        assert_eq!(fired(&e.tick(4 * S)), vec![("session:s1".into(), true, Some(1.0))]);
        assert!(e.tick(5 * S).is_empty());

        let mut e = engine(vec![rule(
            "name = \"r\"\nkind = \"runaway_spend\"\nscope = \"all\"\nthreshold = 1.0\nwindow_secs = 60",
        )]);
        assert!(e.observe(&calls(vec![call("s1", "a", 1.0, false)]), S).is_empty(), "not above");
        assert_eq!(
            fired(&e.observe(&calls(vec![call("s2", "a", 0.5, false)]), 2 * S)),
            vec![("all".into(), true, None)]
        );
        assert!(e.observe(&calls(vec![call("s2", "a", 0.5, false)]), 3 * S).is_empty(), "once");
    }

    #[test]
    fn runaway_spend_slides_and_resolves() {
        let mut e = engine(vec![rule(
            "name = \"r\"\nkind = \"runaway_spend\"\nscope = \"agent\"\nthreshold = 1.0\nwindow_secs = 60\ncooldown_secs = 30",
        )]);
        e.observe(&calls(vec![call("s1", "a", 0.6, false)]), S);
        let ev = e.observe(&calls(vec![call("s2", "a", 0.6, false)]), 10 * S);
        assert_eq!(fired(&ev), vec![("agent:a".into(), true, None)]);
        assert!(e.tick(30 * S).is_empty());
        let ev = e.tick(62 * S);
        assert_eq!(fired(&ev), vec![("agent:a".into(), false, None)]);
        // Cooling: spend again within the cooldown does not fire; after it, it does.
        e.observe(&calls(vec![call("s1", "a", 2.0, false)]), 70 * S);
        assert!(e.tick(80 * S).is_empty());
        let ev = e.tick(93 * S);
        assert_eq!(fired(&ev), vec![("agent:a".into(), true, None)]);
    }

    #[test]
    fn error_rate_needs_the_minimum_count() {
        let mut e = engine(vec![rule(
            "name = \"e\"\nkind = \"error_rate\"\nscope = \"all\"\nthreshold = 50.0\nwindow_secs = 60\nmin_count = 4",
        )]);
        assert!(e.observe(&calls(vec![call("s", "a", 0.0, true), call("s", "a", 0.0, true)]), S).is_empty());
        let ev = e.observe(&calls(vec![call("s", "a", 0.0, true), call("s", "a", 0.0, false)]), 2 * S);
        assert_eq!(fired(&ev), vec![("all".into(), true, None)]);
        assert!((ev[0].value - 75.0).abs() < 1e-9);
        assert_eq!(fired(&e.tick(62 * S)), vec![("all".into(), false, None)]);
    }

    #[test]
    fn stuck_waiting_and_silent_sources() {
        let mut e = engine(vec![
            rule("name = \"st\"\nkind = \"stuck\"\nafter_secs = 60\naction = \"pause\""),
            rule("name = \"w\"\nkind = \"waiting\"\nafter_secs = 30"),
            rule("name = \"q\"\nkind = \"source_silent\"\nafter_secs = 120"),
        ]);
        let upd = |s: &str, stuck: bool, waiting: bool| SessionUpdate {
            session_id: s.into(),
            status: "running",
            stuck,
            waiting,
            ..SessionUpdate::default()
        };
        let mut b = Batch { session_updates: vec![upd("s1", true, false), upd("s2", false, true)], ..Batch::default() };
        let mut log_ctx = Context { service_name: Some("claude-code".into()), ..Context::default() };
        log_ctx.session_id = Some("s1".into());
        b.spans = Vec::new();
        b.model_calls = vec![ModelCallRow { ctx: log_ctx.clone(), cost_usd: None, ..call("s1", "a", 0.0, false) }];
        e.observe(&b, 0);
        // Sources are seen through spans, logs and points.
        e.sources.insert("claude-code".into(), 0);
        let ev = e.tick(30 * S);
        assert_eq!(fired(&ev), vec![("session:s2".into(), true, None)]);
        let ev = e.tick(60 * S);
        assert_eq!(fired(&ev), vec![("session:s1".into(), true, None)]);
        assert_eq!(ev[0].sessions, vec!["s1".to_string()], "the action's target");
        let ev = e.tick(120 * S);
        assert_eq!(fired(&ev), vec![("source:claude-code".into(), true, None)]);
        // Not stuck any more, no longer waiting: both resolve.
        let b = Batch { session_updates: vec![upd("s1", false, false), upd("s2", false, false)], ..Batch::default() };
        let mut ev = fired(&e.observe(&b, 121 * S));
        ev.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ev, vec![("session:s1".into(), false, None), ("session:s2".into(), false, None)]);
    }

    #[test]
    fn a_seeded_engine_keeps_spend_and_open_alerts() {
        use crate::alerts::seed::{Seed, StoredAlert};
        let rules = vec![
            rule("name = \"b\"\nkind = \"budget\"\nthreshold = 1.0\ncooldown_secs = 0"),
            rule("name = \"r\"\nkind = \"runaway_spend\"\nscope = \"agent\"\nthreshold = 1.2\nwindow_secs = 60"),
            rule("name = \"e\"\nkind = \"error_rate\"\nscope = \"session\"\nthreshold = 50.0\nwindow_secs = 60\nmin_count = 4"),
        ];
        let set = RuleSet::default();
        set.set(rules);
        let mut e = Engine::unseeded(set);
        // Replayed before the seed: taken in, nothing evaluated.
        let mut b = calls(vec![call("s1", "a", 5.0, false)]);
        b.log_pos = 7;
        assert!(e.observe(&b, S).is_empty());
        assert!(e.tick(2 * S).is_empty());
        assert_eq!(e.last_pos(), 7);
        let open = |id: &str, rule: &str, kind: &str, scope: &str, tier: Option<f64>| StoredAlert {
            alert_id: id.into(),
            rule: rule.into(),
            kind: kind.into(),
            scope: scope.into(),
            tier,
            value: 0.9,
            threshold: 0.8,
            pending_us: S,
            fired_us: S,
            resolved_us: None,
        };
        let seed = Seed {
            sums: vec![("b".into(), "session:s1".into(), 0.9)],
            windows: vec![
                ("r".into(), "agent:a".into(), vec![(50 * S, 0.7, 3)]),
                ("e".into(), "session:s3".into(), vec![(50 * S, 2.0, 3)]),
            ],
            members: vec![("s1".into(), Some("a".into()), None)],
            open: vec![
                open("al-open", "b", "budget", "session:s1", Some(0.8)),
                open("al-gone", "old-rule", "budget", "session:s9", Some(1.0)),
            ],
            ..Seed::default()
        };
        let ev = e.seed(seed, 60 * S);
        // The stored 80% alert stays firing (not fired again); the removed rule's resolves.
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].alert_id.as_str(), ev[0].firing, ev[0].scope.as_str()), ("al-gone", false, "session:s9"));
        // Budget: 0.9 seeded (the 5.0 replayed is in the seed), +0.2 crosses 100% once.
        let ev = e.observe(&calls(vec![call("s1", "a", 0.2, false)]), 61 * S);
        assert_eq!(fired(&ev), vec![("session:s1".into(), true, Some(1.0))]);
        assert!((ev[0].value - 1.1).abs() < 1e-9);
        assert!(e.observe(&calls(vec![call("s1", "a", 0.2, false)]), 62 * S).is_empty(), "no re-fire");
        // Runaway spend: 0.7 seeded in the window, +0.2 +0.2 above, +0.2 = 1.3 > 1.2.
        let ev = e.observe(&calls(vec![call("s2", "a", 0.2, false)]), 63 * S);
        assert_eq!(fired(&ev), vec![("agent:a".into(), true, None)]);
        // Error rate: 2 of 3 seeded failed, one more failure: 3 of 4 = 75%.
        let ev = e.observe(&calls(vec![call("s3", "a", 0.0, true)]), 64 * S);
        assert_eq!(fired(&ev), vec![("session:s3".into(), true, None)]);
        assert!((ev[0].value - 75.0).abs() < 1e-9);
        // The restored alert resolves once, under its stored id, when its rule goes.
        e.rules.set(vec![]);
        let ev = e.tick(65 * S);
        assert!(ev.iter().any(|x| x.alert_id == "al-open" && !x.firing), "{ev:?}");
        assert_eq!(ev.iter().filter(|x| x.alert_id == "al-open").count(), 1);
    }
}
