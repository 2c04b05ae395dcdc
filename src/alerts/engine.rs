//! The alert evaluator (no I/O, no blocking): `observe` takes each committed batch in order (the
//! pipeline's publish stage calls it through a commit hook), `tick` the time-driven checks (once
//! a second); both on the collector clock and both return `Event`s (firing / resolved). State
//! is incremental and bounded: running sums, sliding windows and since-times per rule and scope.

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
/// (rule, scope).
type Scoped = (Arc<str>, String);

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

type Key = (Arc<str>, String, u8);

#[derive(Default)]
pub struct Engine {
    rules: RuleSet,
    generation: u64,
    active: Rules,
    phases: HashMap<Key, (Phase, f64)>,
    sums: HashMap<Scoped, f64>,
    /// (time, sum, count): one call each, or a per-second bucket seeded from the store.
    windows: HashMap<Scoped, VecDeque<(i64, f64, u32)>>,
    /// Per session: (stuck since, waiting since).
    flags: HashMap<String, (Option<i64>, Option<i64>)>,
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
}

pub(crate) fn day(us: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(us.div_euclid(86_400_000_000));
    format!("{y:04}-{m:02}-{d:02}")
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
            .map(|(k, _)| (k.0.to_string(), k.1.clone()))
            .collect()
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
        // A rule removed or changed: its firing alerts resolve, its state goes.
        let gone: Vec<Arc<RuleSpec>> =
            old.iter().filter(|o| !self.active.iter().any(|n| n.as_ref() == o.as_ref())).cloned().collect();
        for r in gone {
            let keys: Vec<Key> = self.phases.keys().filter(|k| *k.0 == *r.name).cloned().collect();
            for k in keys {
                if let Some((Phase::Firing { id, since_us, pending_us }, v)) = self.phases.remove(&k) {
                    out.push(self.event(&r, &k.1, k.2, v, false, now_us, pending_us, since_us, id));
                }
            }
            self.sums.retain(|k, _| *k.0 != *r.name);
            self.windows.retain(|k, _| *k.0 != *r.name);
        }
    }

    fn scope_of(
        &self,
        scope: Scope,
        session: Option<&str>,
        agent: Option<&str>,
        task: Option<&str>,
        t_us: i64,
    ) -> Option<String> {
        match scope {
            Scope::Session => session.map(|s| format!("session:{s}")),
            Scope::Agent => agent
                .or_else(|| session.and_then(|s| self.session_agent.get(s).map(String::as_str)))
                .map(|a| format!("agent:{a}")),
            Scope::Task => task
                .or_else(|| session.and_then(|s| self.session_task.get(s).map(String::as_str)))
                .map(|t| format!("task:{t}")),
            Scope::All => Some("all".into()),
            Scope::Day => Some(format!("day:{}", day(t_us))),
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
        if self.active.iter().any(|r| r.kind == Kind::SourceSilent) {
            let names = b
                .spans
                .iter()
                .map(|r| &r.ctx)
                .chain(b.logs.iter().map(|r| &r.ctx))
                .chain(b.points.iter().map(|r| &r.ctx))
                .filter_map(|c| c.service_name.clone());
            for n in names {
                if self.sources.len() < MAX_KEYS || self.sources.contains_key(&n) {
                    self.sources.insert(n, now_us);
                }
            }
        }
        let mut touched: HashSet<(usize, String)> = HashSet::new();
        let rules = self.active.clone();
        for (ri, r) in rules.iter().enumerate().filter(|(_, r)| r.enabled) {
            match r.kind {
                Kind::Budget | Kind::RunawaySpend => {
                    for c in b.model_calls.iter().filter(|c| c.cost_usd.unwrap_or(0.0) != 0.0) {
                        let Some(scope) = self.scope_of(
                            r.scope,
                            c.ctx.session_id.as_deref(),
                            c.ctx.agent_id.as_deref(),
                            c.ctx.task_id.as_deref(),
                            c.time_us,
                        ) else {
                            continue;
                        };
                        let cost = c.cost_usd.unwrap_or(0.0);
                        let k = (Arc::<str>::from(r.name.as_str()), scope.clone());
                        if r.kind == Kind::Budget {
                            if self.sums.len() < MAX_KEYS || self.sums.contains_key(&k) {
                                *self.sums.entry(k).or_default() += cost;
                            }
                        } else {
                            let w = self.windows.entry(k).or_default();
                            if w.len() < MAX_WINDOW {
                                w.push_back((now_us, cost, 1));
                            }
                        }
                        touched.insert((ri, scope));
                    }
                }
                Kind::ErrorRate => {
                    let calls = b
                        .model_calls
                        .iter()
                        .map(|c| (&c.ctx, c.time_us, c.error))
                        .chain(b.tool_calls.iter().map(|t| (&t.ctx, t.time_us, t.success == Some(false))));
                    for (ctx, t, failed) in calls {
                        let Some(scope) = self.scope_of(
                            r.scope,
                            ctx.session_id.as_deref(),
                            ctx.agent_id.as_deref(),
                            ctx.task_id.as_deref(),
                            t,
                        ) else {
                            continue;
                        };
                        let w = self.windows.entry((Arc::<str>::from(r.name.as_str()), scope.clone())).or_default();
                        if w.len() < MAX_WINDOW {
                            w.push_back((now_us, if failed { 1.0 } else { 0.0 }, 1));
                        }
                        touched.insert((ri, scope));
                    }
                }
                _ => {}
            }
        }
        // Session flags (stuck, waiting) and ends.
        for u in &b.session_updates {
            let e = self.flags.entry(u.session_id.clone()).or_default();
            let live = u.status != "finished";
            e.0 = if u.stuck && live { e.0.or(Some(now_us)) } else { None };
            e.1 = if u.waiting && live { e.1.or(Some(now_us)) } else { None };
            if *e == (None, None) {
                self.flags.remove(&u.session_id);
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
            for (ri, r) in rules.iter().enumerate() {
                if matches!(r.kind, Kind::Stuck | Kind::Waiting) {
                    touched.insert((ri, format!("session:{}", u.session_id)));
                }
            }
        }
        if self.flags.len() > MAX_KEYS {
            self.flags.clear();
        }
        if !self.seeded {
            return out;
        }
        for (ri, scope) in touched {
            self.evaluate(&rules[ri], &scope, now_us, &mut out);
        }
        out
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
        for (name, scope, v) in seed.sums {
            if rule(&name).is_some() && self.sums.len() < MAX_KEYS {
                self.sums.insert((Arc::from(name.as_str()), scope), v);
            }
        }
        for (name, scope, mut w) in seed.windows {
            if rule(&name).is_some() && self.windows.len() < MAX_KEYS {
                w.sort_by_key(|e| e.0);
                let skip = w.len().saturating_sub(MAX_WINDOW);
                self.windows.insert((Arc::from(name.as_str()), scope), w.into_iter().skip(skip).collect());
            }
        }
        for (session, stuck, waiting) in seed.flags {
            if self.flags.len() < MAX_KEYS {
                // What this run already saw of a session is newer than the store's.
                self.flags.entry(session).or_insert((stuck, waiting));
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
                    self.phases.insert((Arc::from(r.name.as_str()), a.scope.clone(), ti), (phase, a.value));
                }
                (Some((r, ti)), false) => {
                    let until_us = a.resolved_us.unwrap_or(a.fired_us) + r.cooldown_secs as i64 * 1_000_000;
                    if until_us > now_us {
                        self.phases.insert(
                            (Arc::from(r.name.as_str()), a.scope.clone(), ti),
                            (Phase::Cooling { until_us }, a.value),
                        );
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
        let mut todo: HashSet<(Arc<str>, String)> = self.sums.keys().cloned().collect();
        todo.extend(self.phases.keys().map(|k| (k.0.clone(), k.1.clone())));
        for (name, scope) in todo {
            if let Some(r) = rule(&name) {
                self.evaluate(&r, &scope, now_us, &mut out);
            }
        }
        out
    }

    /// Time-driven checks at `now_us`: windows slide, durations grow, days end, sources fall silent.
    pub fn tick(&mut self, now_us: i64) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.seeded {
            return out;
        }
        self.refresh(&mut out, now_us);
        let rules = self.active.clone();
        for r in rules.iter() {
            let scopes: Vec<String> = match r.kind {
                Kind::RunawaySpend | Kind::ErrorRate => {
                    self.windows.keys().filter(|k| *k.0 == *r.name).map(|k| k.1.clone()).collect()
                }
                Kind::Budget if r.scope == Scope::Day => {
                    self.sums.keys().filter(|k| *k.0 == *r.name).map(|k| k.1.clone()).collect()
                }
                Kind::Stuck => {
                    self.flags.iter().filter(|(_, f)| f.0.is_some()).map(|(s, _)| format!("session:{s}")).collect()
                }
                Kind::Waiting => {
                    self.flags.iter().filter(|(_, f)| f.1.is_some()).map(|(s, _)| format!("session:{s}")).collect()
                }
                Kind::SourceSilent => self.sources.keys().map(|s| format!("source:{s}")).collect(),
                Kind::Budget => Vec::new(),
            };
            // Scopes firing or pending are re-checked too (they may have stopped holding).
            let mut all: HashSet<String> = scopes.into_iter().collect();
            all.extend(
                self.phases
                    .iter()
                    .filter(|(k, (p, _))| *k.0 == *r.name && !matches!(p, Phase::Ok))
                    .map(|(k, _)| k.1.clone()),
            );
            for scope in all {
                self.evaluate(r, &scope, now_us, &mut out);
            }
        }
        // Forget empty windows and resolved scopes.
        self.windows.retain(|_, w| !w.is_empty());
        self.phases.retain(|_, (p, _)| !matches!(p, Phase::Ok));
        out
    }

    /// The rule's value for a scope now (and prune its window).
    fn value(&mut self, r: &RuleSpec, scope: &str, now_us: i64) -> Option<(f64, bool)> {
        let k = (Arc::<str>::from(r.name.as_str()), scope.to_string());
        match r.kind {
            Kind::Budget => {
                let v = self.sums.get(&k).copied().unwrap_or(0.0);
                // A day's budget ends with the day.
                let over = scope.strip_prefix("day:").is_some_and(|d| d < day(now_us).as_str());
                Some((v, !over))
            }
            Kind::RunawaySpend | Kind::ErrorRate => {
                let from = now_us - r.window_secs as i64 * 1_000_000;
                let w = self.windows.get_mut(&k)?;
                while w.front().is_some_and(|(t, _, _)| *t <= from) {
                    w.pop_front();
                }
                let sum: f64 = w.iter().map(|(_, v, _)| v).sum();
                if r.kind == Kind::RunawaySpend {
                    Some((sum, sum > r.threshold))
                } else {
                    let n: u64 = w.iter().map(|(_, _, n)| u64::from(*n)).sum();
                    let pct = if n == 0 { 0.0 } else { sum * 100.0 / n as f64 };
                    Some((pct, n >= r.min_count.max(1) && pct > r.threshold))
                }
            }
            Kind::Stuck | Kind::Waiting => {
                let s = scope.strip_prefix("session:")?;
                let since = self.flags.get(s).and_then(|f| if r.kind == Kind::Stuck { f.0 } else { f.1 });
                let secs = since.map(|t| (now_us - t) as f64 / 1e6).unwrap_or(0.0);
                Some((secs, since.is_some_and(|t| now_us - t >= r.after_secs as i64 * 1_000_000)))
            }
            Kind::SourceSilent => {
                let s = scope.strip_prefix("source:")?;
                let last = *self.sources.get(s)?;
                let secs = (now_us - last) as f64 / 1e6;
                Some((secs, now_us - last >= r.after_secs as i64 * 1_000_000))
            }
        }
    }

    fn evaluate(&mut self, r: &Arc<RuleSpec>, scope: &str, now_us: i64, out: &mut Vec<Event>) {
        if !r.enabled {
            return;
        }
        let Some((value, holds)) = self.value(r, scope, now_us) else { return };
        let tiers: Vec<(u8, f64, Option<f64>)> = if r.kind == Kind::Budget {
            r.tiers.iter().enumerate().map(|(i, t)| (i as u8, r.threshold * t, Some(*t))).collect()
        } else {
            vec![(0, r.threshold, None)]
        };
        for (ti, threshold, tier) in tiers {
            let cond = match r.kind {
                Kind::Budget => holds && value >= threshold,
                _ => holds,
            };
            let k: Key = (Arc::from(r.name.as_str()), scope.to_string(), ti);
            let phase = self.phases.get(&k).map(|p| p.0.clone()).unwrap_or(Phase::Ok);
            if phase == Phase::Ok && !cond {
                continue;
            }
            if self.phases.len() >= MAX_KEYS && !self.phases.contains_key(&k) {
                continue;
            }
            let (mut next, s) =
                step(&phase, cond, now_us, r.for_secs as i64 * 1_000_000, r.cooldown_secs as i64 * 1_000_000);
            match s {
                Step::None => {}
                Step::Fire { pending_us } => {
                    self.seq += 1;
                    let id = alert_id(&r.name, scope, ti, now_us, self.seq);
                    next = Phase::Firing { id: id.clone(), since_us: now_us, pending_us };
                    let mut e = self.event(r, scope, ti, value, true, now_us, pending_us, now_us, id);
                    e.threshold = threshold;
                    e.tier = tier;
                    out.push(e);
                }
                Step::Resolve { id, fired_us } => {
                    let pending = match &phase {
                        Phase::Firing { pending_us, .. } => *pending_us,
                        _ => fired_us,
                    };
                    let mut e = self.event(r, scope, ti, value, false, now_us, pending, fired_us, id);
                    e.threshold = threshold;
                    e.tier = tier;
                    out.push(e);
                }
            }
            self.phases.insert(k, (next, value));
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
