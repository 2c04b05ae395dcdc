//! Inheritance (`stage_inherit`, before `price`): a model or tool call with no agent of its own
//! (its agent is only `service.name`) belongs to the nearest span above it in its trace that names
//! one; the same for the session (when it is only the trace id) and the task.
//!
//! Exporters send a span when it ends, and an agent span ends after everything under it, often in
//! a later export. So the stage keeps a bounded per-trace memory of span -> (parent, own agent,
//! session, task) and of the calls still waiting for an ancestor. Rows of the current batch are
//! fixed in place; rows stored by earlier records get a `Fixup` on the batch that brings the
//! missing ancestor, which the DuckDB writer applies in that batch's transaction
//! (`store::fixups`: model_calls, tool_calls, spans, the `cost_hourly` rollup, the session's agent).
//!
//! Bounds: at most `max_nodes` spans remembered over all traces (oldest traces are forgotten
//! first), at most `MAX_TRACE_NODES` per trace, walks up at most `MAX_DEPTH` parents (a loop, no
//! recursion).
//!
//! The memory is not persisted, and it forgets the oldest traces. Rows stored before it covered
//! a trace (before a restart, or in a trace it forgot) are reached the other way: a span that
//! names an agent / session / task becomes an `Adopt` when its trace may have rows the memory does
//! not hold: it started before the process (the `horizon`), or its trace was forgotten (a bounded
//! set of forgotten trace ids; one dropped from that set raises the horizon to its newest span).
//! The writer then walks its descendants in the stored `spans` (`store::fixups::adopt`, at most
//! `MAX_ADOPTS` per batch). A trace this process never saw cannot have rows stored after its start,
//! so new traces never cost a lookup (each is a scan of the stored spans in a time window).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::model::fastmap::{FastMap, FastSet, Fingerprint};

use crate::model::records::{owned, Adopt, Batch, Context, Fixup, Id, SpanRow, SpanType};

const MAX_DEPTH: usize = 128;
const MAX_TRACE_NODES: usize = 50_000;
/// Spans per batch whose stored descendants the writer looks up (each is a few statements)...
const MAX_ADOPTS: usize = 64;
/// ... and per second on average, with bursts of `ADOPT_BURST` (a replay after a restart can hold
/// many agent spans that started before it; most have no stored descendants).
const ADOPTS_PER_SEC: f64 = 50.0;
const ADOPT_BURST: f64 = 500.0;
/// Default bound on remembered spans (~100 bytes each with their trace's map: ~20 MiB at most,
/// `tests/memory_bounds.rs`).
pub const DEFAULT_MAX_NODES: usize = 200_000;
/// Forgotten trace ids remembered (about 100 bytes each: 6.5 MB at most).
const MAX_FORGOTTEN: usize = 65_536;

/// A span id as a 64-bit fingerprint (half of XXH3-128, per-process random seed; never 0): the
/// key of a trace's nodes and a node's parent, so remembering a span copies none of its ids. Two
/// spans of one trace share one with a probability of about 2^-64 per pair: ~7e-11 for a trace
/// of 50,000 spans (`MAX_TRACE_NODES`).
type SpanFp = u64;

/// `Node::parent` of a root span.
const NO_PARENT: SpanFp = 0;

/// `Node::own` of a span that carries nothing of its own.
const NOTHING: u32 = u32::MAX;

/// A remembered span: its parent and what it carries of its own (an index into its trace's
/// `TraceMem::owns`, which the spans of a trace mostly share). 16 bytes, where the same as one
/// struct of `Arc`s took 96 (`tests/memory_bounds.rs`).
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: SpanFp,
    own: u32,
}

/// What a span carries of its own.
#[derive(Debug, Clone, Default, PartialEq)]
struct Own {
    agent: Option<(Arc<str>, Option<Arc<str>>)>,
    session: Option<Arc<str>>,
    task: Option<Arc<str>>,
}

impl Own {
    fn is_empty(&self) -> bool {
        self.agent.is_none() && self.session.is_none() && self.task.is_none()
    }
}

/// A stored call (by its span) whose ancestors are not all known yet.
#[derive(Debug, Clone)]
struct Waiting {
    span_id: Id,
    parent: SpanFp,
    need_agent: bool,
    need_session: bool,
    need_task: bool,
    from_agent: Option<Arc<str>>,
    from_session: Option<Arc<str>>,
    time_us: i64,
}

#[derive(Debug, Default)]
struct TraceMem {
    nodes: FastMap<SpanFp, Node>,
    /// The distinct contexts of its spans (`Node::own`), at most one per node.
    owns: Vec<Own>,
    waiting: Vec<Waiting>,
    /// The latest span start remembered (what forgetting the trace raises the horizon to).
    newest_us: i64,
}

/// What walking up from a parent found.
#[derive(Debug, Default, PartialEq)]
struct Found {
    agent: Option<(Arc<str>, Option<Arc<str>>)>,
    session: Option<Arc<str>>,
    task: Option<Arc<str>>,
    /// The walk reached the root (or everything needed was found): nothing more can arrive.
    complete: bool,
}

/// The stage's memory (owned by the pipeline thread).
#[derive(Debug)]
pub struct Inherit {
    ids: Fingerprint,
    traces: FastMap<Id, TraceMem>,
    order: VecDeque<Id>,
    nodes: usize,
    max_nodes: usize,
    /// Spans that started before this may have descendants stored outside the memory.
    horizon_us: i64,
    /// Traces forgotten (with their newest span), oldest first: their spans may have stored
    /// descendants the memory no longer holds.
    forgotten: FastMap<Id, i64>,
    forgotten_order: VecDeque<Id>,
    /// Adopts not made because of the bounds above (for logs and tests).
    pub adopts_skipped: u64,
    adopt_tokens: f64,
    adopt_refill: std::time::Instant,
}

impl Default for Inherit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_NODES)
    }
}

/// How many of a trace's latest contexts a new span's is compared with before it is added.
const OWN_LOOKBACK: usize = 4;

impl TraceMem {
    /// The index of `o` in `owns` (added unless one of the latest is equal). A span sent again
    /// adds its context again; once a trace holds `MAX_TRACE_NODES` contexts (a client re-sending
    /// its spans with ever new ones), a new span that matches none of the latest keeps nothing.
    fn intern(&mut self, o: Own) -> u32 {
        if o.is_empty() {
            return NOTHING;
        }
        let n = self.owns.len();
        if let Some(i) = (n.saturating_sub(OWN_LOOKBACK)..n).rev().find(|&i| self.owns[i] == o) {
            return i as u32;
        }
        if n >= MAX_TRACE_NODES {
            return NOTHING;
        }
        self.owns.push(o);
        n as u32
    }

    fn own(&self, n: &Node) -> Option<&Own> {
        self.owns.get(n.own as usize)
    }
}

/// Which fields of a context are the record's own (not fallbacks).
fn own(ctx: &Context) -> Own {
    Own {
        agent: (!ctx.agent_fallback).then(|| ctx.agent_id.clone().map(|a| (a, ctx.agent_name.clone()))).flatten(),
        session: (!ctx.session_fallback).then(|| ctx.session_id.clone()).flatten(),
        task: ctx.task_id.clone(),
    }
}

fn needs(ctx: &Context) -> (bool, bool, bool) {
    (ctx.agent_fallback, ctx.session_fallback, ctx.task_id.is_none())
}

/// Apply what was found to a context; true when something changed.
fn fill(ctx: &mut Context, f: &Found) -> bool {
    let mut changed = false;
    if ctx.agent_fallback {
        if let Some((id, name)) = &f.agent {
            ctx.agent_id = Some(id.clone());
            ctx.agent_name = name.clone().or_else(|| Some(id.clone()));
            ctx.agent_fallback = false;
            changed = true;
        }
    }
    if ctx.session_fallback {
        if let Some(s) = &f.session {
            ctx.session_id = Some(s.clone());
            ctx.session_fallback = false;
            changed = true;
        }
    }
    if ctx.task_id.is_none() {
        if let Some(t) = &f.task {
            ctx.task_id = Some(t.clone());
            changed = true;
        }
    }
    changed
}

/// The wall clock in µs since the Unix epoch (0 before it).
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Inherit {
    /// A memory that starts now: spans that started earlier may have stored descendants.
    pub fn new(max_nodes: usize) -> Self {
        Self::with_horizon(max_nodes, now_us())
    }

    /// A memory that starts now over a store whose newest stored span started at
    /// `newest_stored_us` (`None`: no span stored). The writer looks for a span's stored
    /// descendants only among rows that started at most `skew_us` before it
    /// (`store::fixups::SKEW_US`), so a span that started more than `skew_us` after the newest
    /// row stored before this start cannot find one, and is not looked up: on a fresh store no
    /// span is. (Without this, every span of a load whose clocks ran a little ahead of the
    /// collector's start cost a scan, and the first commits spent their whole lookup budget.)
    pub fn over_store(max_nodes: usize, newest_stored_us: Option<i64>, skew_us: i64) -> Self {
        let horizon = match newest_stored_us {
            None => i64::MIN,
            Some(t) => now_us().min(t.saturating_add(skew_us).saturating_add(1)),
        };
        Self::with_horizon(max_nodes, horizon)
    }

    /// A memory whose coverage starts at `horizon_us`.
    pub fn with_horizon(max_nodes: usize, horizon_us: i64) -> Self {
        Self {
            ids: Fingerprint::default(),
            traces: FastMap::default(),
            order: VecDeque::new(),
            nodes: 0,
            max_nodes: max_nodes.max(1),
            horizon_us,
            forgotten: FastMap::default(),
            forgotten_order: VecDeque::new(),
            adopts_skipped: 0,
            adopt_tokens: ADOPT_BURST,
            adopt_refill: std::time::Instant::now(),
        }
    }

    /// A span id's fingerprint (`SpanFp`).
    fn fp(&self, id: &Id) -> SpanFp {
        (self.ids.of(id.as_bytes()) as u64).max(1)
    }

    /// Spans remembered (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.nodes
    }

    /// Walk up from `parent`, collecting the nearest agent / session / task wanted.
    fn walk(&self, trace: &str, parent: SpanFp, want: (bool, bool, bool)) -> Found {
        let mut f = Found::default();
        let Some(t) = self.traces.get(trace) else { return f };
        let (mut wa, mut ws, mut wt) = want;
        let mut cur = parent;
        for _ in 0..MAX_DEPTH {
            let Some(n) = t.nodes.get(&cur) else { return f };
            let o = t.own(n);
            if wa {
                if let Some(a) = o.and_then(|o| o.agent.as_ref()) {
                    f.agent = Some(a.clone());
                    wa = false;
                }
            }
            if ws {
                if let Some(s) = o.and_then(|o| o.session.as_ref()) {
                    f.session = Some(s.clone());
                    ws = false;
                }
            }
            if wt {
                if let Some(x) = o.and_then(|o| o.task.as_ref()) {
                    f.task = Some(x.clone());
                    wt = false;
                }
            }
            if !(wa || ws || wt) {
                f.complete = true;
                return f;
            }
            if n.parent == NO_PARENT {
                f.complete = true;
                return f;
            }
            cur = n.parent;
        }
        f.complete = true; // too deep: stop waiting
        f
    }

    /// The ancestors' values for one row of the batch (memoised per span): its parent and what
    /// walking up found; `None` when the row needs nothing or has no parent.
    fn resolve_row(
        &self,
        parents: &FastMap<(Id, Id), Option<Id>>,
        memo: &mut FastMap<(Id, Id), Found>,
        trace: &str,
        span: &str,
        ctx: &Context,
    ) -> Option<(Id, Found)> {
        let want = needs(ctx);
        if !(want.0 || want.1 || want.2) {
            return None;
        }
        let key = (Id::new(trace), Id::new(span));
        let parent = parents.get(&key)?.clone()?;
        if let Some(f) = memo.get(&key) {
            return Some((parent, clone_found(f)));
        }
        let f = self.walk(trace, self.fp(&parent), want);
        memo.insert(key, clone_found(&f));
        Some((parent, f))
    }

    fn evict(&mut self) {
        while self.nodes > self.max_nodes {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(t) = self.traces.remove(&old) {
                self.nodes -= t.nodes.len();
                // A parent of its spans arriving later must now look for them in the store.
                if self.forgotten.insert(old.clone(), t.newest_us).is_none() {
                    self.forgotten_order.push_back(old);
                }
                while self.forgotten.len() > MAX_FORGOTTEN {
                    let Some(gone) = self.forgotten_order.pop_front() else { break };
                    if let Some(newest) = self.forgotten.remove(&gone) {
                        // No longer known by id: every span older than its newest may adopt.
                        self.horizon_us = self.horizon_us.max(newest.saturating_add(1));
                    }
                }
            }
        }
    }

    /// The stage: remember the batch's spans, fill the batch's rows from their ancestors, and add
    /// fixups for stored rows whose ancestor arrived in this batch. Returns rows changed in the
    /// batch and fixups added.
    pub fn apply(&mut self, batch: &mut Batch) -> (usize, usize) {
        if batch.spans.is_empty() {
            return (0, 0);
        }
        // 1. Remember every span of the batch (and which may have stored descendants).
        let mut adopts = Vec::new();
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.adopt_refill).as_secs_f64() * ADOPTS_PER_SEC;
        self.adopt_tokens = (self.adopt_tokens + refill).min(ADOPT_BURST);
        self.adopt_refill = now;
        let mut touched: Vec<Id> = Vec::new();
        let mut touched_set: FastSet<&str> = FastSet::default();
        for s in &batch.spans {
            if !self.traces.contains_key(&s.trace_id) {
                self.traces.insert(s.trace_id.clone(), TraceMem::default());
                self.order.push_back(s.trace_id.clone());
            }
            let key = self.fp(&s.span_id);
            let parent = s.parent_span_id.as_ref().map_or(NO_PARENT, |p| self.fp(p));
            let Some(t) = self.traces.get_mut(&s.trace_id) else { continue };
            if t.nodes.len() >= MAX_TRACE_NODES && !t.nodes.contains_key(&key) {
                continue;
            }
            let own = own(&s.ctx);
            t.newest_us = t.newest_us.max(s.start_us);
            if s.start_us < self.horizon_us || self.forgotten.contains_key(&s.trace_id) {
                if let Some(a) = adopt(s, &own) {
                    if adopts.len() < MAX_ADOPTS && self.adopt_tokens >= 1.0 {
                        self.adopt_tokens -= 1.0;
                        adopts.push(a);
                    } else {
                        self.adopts_skipped += 1;
                    }
                }
            }
            let node = Node { parent, own: t.intern(own) };
            if t.nodes.insert(key, node).is_none() {
                self.nodes += 1;
            }
            if touched_set.insert(s.trace_id.as_str()) {
                touched.push(s.trace_id.clone());
            }
        }
        // 2. Stored calls waiting in the touched traces: the batch may bring their ancestors.
        let mut fixups = Vec::new();
        for trace in &touched {
            let Some(mut waiting) = self.traces.get_mut(trace).map(|t| std::mem::take(&mut t.waiting)) else {
                continue;
            };
            waiting.retain_mut(|w| {
                let f = self.walk(trace, w.parent, (w.need_agent, w.need_session, w.need_task));
                let agent = f.agent.clone().filter(|_| w.need_agent);
                let session = f.session.clone().filter(|_| w.need_session);
                let task = f.task.clone().filter(|_| w.need_task);
                if agent.is_some() || session.is_some() || task.is_some() {
                    fixups.push(Fixup {
                        trace_id: trace.to_string(),
                        span_id: w.span_id.to_string(),
                        agent_name: agent.as_ref().map(|(id, name)| name.as_ref().unwrap_or(id).to_string()),
                        agent_id: agent.as_ref().map(|(id, _)| id.to_string()),
                        session_id: owned(&session),
                        task_id: owned(&task),
                        from_agent: owned(&w.from_agent),
                        from_session: owned(&w.from_session),
                        time_us: w.time_us,
                    });
                    w.need_agent &= agent.is_none();
                    w.need_session &= session.is_none();
                    w.need_task &= task.is_none();
                }
                !f.complete && (w.need_agent || w.need_session || w.need_task)
            });
            if let Some(t) = self.traces.get_mut(trace) {
                t.waiting = waiting;
            }
        }
        // 3. The batch's own rows (most need nothing: nothing is cloned for them).
        let wants = |ctx: &Context| {
            let (a, s, t) = needs(ctx);
            a || s || t
        };
        let calls_want =
            batch.model_calls.iter().any(|c| wants(&c.ctx)) || batch.tool_calls.iter().any(|c| wants(&c.ctx));
        let spans_want = batch.spans.iter().any(|s| wants(&s.ctx));
        if !(calls_want || spans_want) {
            self.evict();
            let n = fixups.len();
            batch.fixups.extend(fixups);
            batch.adopts.extend(adopts);
            return (0, n);
        }
        let parents: FastMap<(Id, Id), Option<Id>> =
            batch.spans.iter().map(|s| ((s.trace_id.clone(), s.span_id.clone()), s.parent_span_id.clone())).collect();
        let mut memo: FastMap<(Id, Id), Found> = FastMap::default();
        let mut new_waiting: Vec<(Id, Waiting)> = Vec::new();
        let mut changed = 0;
        let rows = batch
            .model_calls
            .iter_mut()
            .filter(|c| wants(&c.ctx))
            .filter_map(|c| Some((c.trace_id.clone()?, c.span_id.clone()?, c.time_us, &mut c.ctx)))
            .chain(
                batch
                    .tool_calls
                    .iter_mut()
                    .filter(|c| wants(&c.ctx))
                    .filter_map(|c| Some((c.trace_id.clone()?, c.span_id.clone()?, c.time_us, &mut c.ctx))),
            );
        for (trace, span, time_us, ctx) in rows {
            let Some((parent, f)) = self.resolve_row(&parents, &mut memo, &trace, &span, ctx) else { continue };
            if fill(ctx, &f) {
                changed += 1;
            }
            let (a, s, t) = needs(ctx);
            if !f.complete && (a || s || t) && !new_waiting.iter().any(|(tr, w)| *tr == trace && w.span_id == span) {
                new_waiting.push((
                    trace,
                    Waiting {
                        span_id: span,
                        parent: self.fp(&parent),
                        need_agent: a,
                        need_session: s,
                        need_task: t,
                        from_agent: ctx.agent_id.clone(),
                        from_session: ctx.session_id.clone(),
                        time_us,
                    },
                ));
            }
        }
        for s in batch.spans.iter_mut().filter(|s| wants(&s.ctx)) {
            let (trace, span) = (s.trace_id.clone(), s.span_id.clone());
            let Some((_, f)) = self.resolve_row(&parents, &mut memo, &trace, &span, &s.ctx) else { continue };
            if fill(&mut s.ctx, &f) {
                changed += 1;
            }
        }
        for (trace, w) in new_waiting {
            if let Some(t) = self.traces.get_mut(&trace) {
                t.waiting.push(w);
            }
        }
        self.evict();
        let n = fixups.len();
        if changed > 0 {
            rebuild_seen(batch);
        }
        batch.fixups.extend(fixups);
        batch.adopts.extend(adopts);
        (changed, n)
    }
}

/// A span that gives something to descendants (not a call itself: a call's children are rare and
/// arrive with it) and may have some stored before the memory covered its trace.
fn adopt(s: &SpanRow, own: &Own) -> Option<Adopt> {
    if matches!(s.span_type, SpanType::Llm | SpanType::Tool | SpanType::Embedding | SpanType::Retriever) {
        return None;
    }
    if own.is_empty() {
        return None;
    }
    Some(Adopt {
        trace_id: s.trace_id.to_string(),
        span_id: s.span_id.to_string(),
        agent_name: own.agent.as_ref().map(|(id, name)| name.as_ref().unwrap_or(id).to_string()),
        agent_id: own.agent.as_ref().map(|(id, _)| id.to_string()),
        session_id: owned(&own.session),
        task_id: owned(&own.task),
        start_us: s.start_us,
        end_us: s.end_us,
    })
}

fn clone_found(f: &Found) -> Found {
    Found { agent: f.agent.clone(), session: f.session.clone(), task: f.task.clone(), complete: f.complete }
}

/// The batch's sessions and agents again from its rows, after their contexts changed.
fn rebuild_seen(batch: &mut Batch) {
    let mut rows: Vec<(&Context, i64)> = Vec::new();
    rows.extend(batch.spans.iter().map(|s| (&s.ctx, s.end_us)));
    rows.extend(batch.logs.iter().map(|l| (&l.ctx, l.time_us)));
    rows.extend(batch.points.iter().map(|p| (&p.ctx, p.time_us)));
    let (sessions, agents) = crate::model::normalize::seen_of(rows);
    batch.sessions = sessions;
    batch.agents = agents;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{ModelCallRow, SpanRow, SpanType, ToolCallRow};

    fn ctx(agent: Option<&str>, session: Option<&str>, task: Option<&str>) -> Context {
        Context {
            agent_id: Some(agent.unwrap_or("svc").into()),
            agent_name: Some(agent.unwrap_or("svc").into()),
            agent_fallback: agent.is_none(),
            session_id: Some(session.unwrap_or("trace-1").into()),
            session_fallback: session.is_none(),
            task_id: task.map(Arc::from),
            service_name: Some("svc".into()),
            ..Default::default()
        }
    }

    fn span(id: &str, parent: Option<&str>, ty: SpanType, c: Context) -> SpanRow {
        SpanRow {
            time_us: 1,
            trace_id: "t1".into(),
            span_id: id.into(),
            parent_span_id: parent.map(Id::new),
            name: id.into(),
            kind: "internal",
            start_us: 1,
            end_us: 2,
            duration_ms: 0.0,
            status_code: "unset",
            status_message: None,
            scope_name: None,
            span_type: ty,
            model: None,
            error: false,
            ctx: c,
            attributes: "{}".into(),
            resource_attributes: "{}".into(),
            events: None,
            links: None,
        }
    }

    fn call(id: &str, parent: &str) -> ModelCallRow {
        ModelCallRow {
            time_us: 2,
            source: "span",
            trace_id: Some("t1".into()),
            span_id: Some(id.into()),
            parent_span_id: Some(parent.into()),
            request_id: None,
            model: Some("gpt-4o".into()),
            provider: Some("openai".into()),
            operation: Some("chat".into()),
            input_tokens: Some(10),
            output_tokens: Some(1),
            cache_read_tokens: None,
            cache_write_tokens: None,
            cost_usd: None,
            cost_source: None,
            duration_ms: None,
            error: false,
            token_rule: "otel",
            ctx: ctx(None, None, None),
        }
    }

    fn llm(id: &str, parent: &str) -> Batch {
        Batch {
            spans: vec![span(id, Some(parent), SpanType::Llm, ctx(None, None, None))],
            model_calls: vec![call(id, parent)],
            ..Default::default()
        }
    }

    #[test]
    fn parent_first_fills_in_place() {
        let mut inh = Inherit::default();
        let mut root = Batch {
            spans: vec![span("a", None, SpanType::Agent, ctx(Some("Researcher"), Some("S1"), Some("T1")))],
            ..Default::default()
        };
        assert_eq!(inh.apply(&mut root), (0, 0));
        let mut b = llm("l", "a");
        inh.apply(&mut b);
        let c = &b.model_calls[0].ctx;
        assert_eq!(
            (c.agent_id.as_deref(), c.session_id.as_deref(), c.task_id.as_deref()),
            (Some("Researcher"), Some("S1"), Some("T1"))
        );
        assert!(b.fixups.is_empty());
        assert_eq!(b.agents.len(), 1);
        assert_eq!(b.agents[0].id, "Researcher");
        assert_eq!(b.sessions[0].id, "S1");
    }

    #[test]
    fn children_in_one_batch_in_any_order() {
        let mut inh = Inherit::default();
        let mut b = llm("l", "mid");
        b.tool_calls.push(ToolCallRow {
            time_us: 2,
            source: "span",
            trace_id: Some("t1".into()),
            span_id: Some("tool".into()),
            tool_call_id: None,
            tool_name: "lookup".into(),
            duration_ms: None,
            success: Some(true),
            error: None,
            ctx: ctx(None, None, None),
        });
        b.spans.push(span("tool", Some("mid"), SpanType::Tool, ctx(None, None, None)));
        b.spans.push(span("mid", Some("a"), SpanType::Chain, ctx(None, None, None)));
        b.spans.push(span("a", None, SpanType::Agent, ctx(Some("Writer"), None, None)));
        let (changed, fixups) = inh.apply(&mut b);
        assert_eq!(fixups, 0);
        assert!(changed >= 3);
        assert_eq!(b.model_calls[0].ctx.agent_id.as_deref(), Some("Writer"));
        assert_eq!(b.tool_calls[0].ctx.agent_id.as_deref(), Some("Writer"));
        // The session stays the trace's own (no ancestor names one).
        assert!(b.model_calls[0].ctx.session_fallback);
        // Complete chains leave nothing waiting.
        assert!(inh.traces["t1"].waiting.is_empty());
    }

    #[test]
    fn parent_in_a_later_batch_fixes_stored_rows() {
        let mut inh = Inherit::default();
        let mut b1 = llm("l1", "a");
        inh.apply(&mut b1);
        assert_eq!(b1.model_calls[0].ctx.agent_id.as_deref(), Some("svc"));
        let mut b2 = llm("l2", "a");
        inh.apply(&mut b2);
        let mut b3 = Batch {
            spans: vec![span("a", Some("root"), SpanType::Agent, ctx(Some("Researcher"), None, None))],
            ..Default::default()
        };
        inh.apply(&mut b3);
        assert_eq!(b3.fixups.len(), 2);
        let f = &b3.fixups[0];
        assert_eq!(f.agent_id.as_deref(), Some("Researcher"));
        assert_eq!(f.from_agent.as_deref(), Some("svc"));
        assert_eq!(f.session_id, None);
        // Session and task still wanted: the root may name them.
        let mut b4 = Batch {
            spans: vec![span("root", None, SpanType::Chain, ctx(None, Some("S9"), Some("T9")))],
            ..Default::default()
        };
        inh.apply(&mut b4);
        assert_eq!(b4.fixups.len(), 2);
        assert_eq!(b4.fixups[0].agent_id, None, "the agent was fixed already");
        assert_eq!((b4.fixups[0].session_id.as_deref(), b4.fixups[0].task_id.as_deref()), (Some("S9"), Some("T9")));
        assert!(inh.traces["t1"].waiting.is_empty());
        // A nearer agent wins over a farther one.
        let mut c = Batch {
            spans: vec![span("x", Some("root"), SpanType::Agent, ctx(Some("Inner"), None, None))],
            ..Default::default()
        };
        inh.apply(&mut c);
        let mut d = llm("l3", "x");
        inh.apply(&mut d);
        assert_eq!(d.model_calls[0].ctx.agent_id.as_deref(), Some("Inner"));
        assert_eq!(d.model_calls[0].ctx.session_id.as_deref(), Some("S9"));
    }

    #[test]
    fn memory_is_bounded() {
        let mut inh = Inherit::new(100);
        for i in 0..1000 {
            let mut b = llm(&format!("l{i}"), "p");
            for s in &mut b.spans {
                s.trace_id = format!("t{i}").into();
            }
            for c in &mut b.model_calls {
                c.trace_id = Some(format!("t{i}").into());
            }
            inh.apply(&mut b);
        }
        assert!(inh.remembered() <= 100);
        assert!(inh.traces.len() <= 100);
    }

    fn agent_span(trace: &str, id: &str, start_us: i64) -> SpanRow {
        let mut s = span(id, None, SpanType::Agent, ctx(Some("Researcher"), None, Some("T-1")));
        s.trace_id = trace.into();
        s.start_us = start_us;
        s.end_us = start_us + 10;
        s
    }

    #[test]
    fn spans_from_before_the_memory_began_become_adopts() {
        let mut inh = Inherit::with_horizon(1000, 100);
        let mut b = Batch {
            spans: vec![
                agent_span("t1", "a-old", 50),
                agent_span("t1", "a-new", 150),
                span("l1", Some("a-old"), SpanType::Llm, ctx(None, None, None)),
                span("anon", None, SpanType::Chain, ctx(None, None, None)),
            ],
            ..Default::default()
        };
        inh.apply(&mut b);
        // Only the agent span that started before the horizon: the call and the span giving
        // nothing are not, nor is the one that started after (its children are in the memory).
        assert_eq!(b.adopts.len(), 1, "{:?}", b.adopts);
        let a = &b.adopts[0];
        assert_eq!(
            (a.span_id.as_str(), a.agent_id.as_deref(), a.task_id.as_deref()),
            ("a-old", Some("Researcher"), Some("T-1"))
        );
        assert_eq!(a.session_id, None, "the session was the trace's fallback: nothing to give");
        assert_eq!((a.start_us, a.end_us), (50, 60));
    }

    #[test]
    fn the_horizon_follows_what_the_store_holds() {
        const SKEW: i64 = 60_000_000;
        let now = now_us();
        let adopts = |inh: &mut Inherit, start_us: i64| {
            let mut b = Batch { spans: vec![agent_span("t", "a", start_us)], ..Default::default() };
            inh.apply(&mut b);
            b.adopts.len()
        };
        // A fresh store: nothing stored before this start, so no span looks there, however old.
        let mut fresh = Inherit::over_store(10, None, SKEW);
        assert_eq!(fresh.horizon_us, i64::MIN);
        assert_eq!(adopts(&mut fresh, 0), 0);
        // The newest stored span started an hour ago: a span up to a skew after it may find
        // descendants in the store (the writer's lookup window reaches back a skew); one that
        // started later cannot.
        let newest = now - 3_600_000_000;
        let mut old = Inherit::over_store(10, Some(newest), SKEW);
        assert_eq!(old.horizon_us, newest + SKEW + 1);
        assert_eq!(adopts(&mut old, newest + SKEW), 1);
        assert_eq!(adopts(&mut Inherit::over_store(10, Some(newest), SKEW), newest + SKEW + 1), 0);
        // Stored rows from a clock ahead of ours: never later than the start (spans that started
        // after it have their stored descendants in the memory).
        let ahead = Inherit::over_store(10, Some(i64::MAX), SKEW);
        assert!(ahead.horizon_us >= now && ahead.horizon_us < now + 60_000_000, "{}", ahead.horizon_us);
    }

    #[test]
    fn a_forgotten_trace_looks_in_the_store_and_a_new_one_does_not() {
        let mut inh = Inherit::with_horizon(2, 0);
        let mut first =
            Batch { spans: vec![agent_span("old", "x", 500), agent_span("old", "y", 700)], ..Default::default() };
        inh.apply(&mut first);
        assert!(first.adopts.is_empty());
        let mut second =
            Batch { spans: vec![agent_span("new", "z", 900), agent_span("new", "w", 950)], ..Default::default() };
        inh.apply(&mut second);
        assert!(second.adopts.is_empty());
        assert!(!inh.traces.contains_key("old"), "the oldest trace was forgotten");
        // Its parent arrives late: the stored children are found through the store.
        let mut late = Batch { spans: vec![agent_span("old", "root", 400)], ..Default::default() };
        inh.apply(&mut late);
        assert_eq!(late.adopts.len(), 1);
        assert_eq!(late.adopts[0].span_id, "root");
        // A trace never seen has nothing stored since the process began, however old its spans.
        let mut unseen = Batch { spans: vec![agent_span("never-seen", "r", 100)], ..Default::default() };
        inh.apply(&mut unseen);
        assert!(unseen.adopts.is_empty(), "{:?}", unseen.adopts);
    }

    #[test]
    fn forgotten_ids_are_bounded_and_dropping_one_raises_the_horizon() {
        let mut inh = Inherit::with_horizon(1, 0);
        for i in 0..=MAX_FORGOTTEN + 1 {
            let mut b =
                Batch { spans: vec![agent_span(&format!("t{i}"), "a", 1_000 + i as i64)], ..Default::default() };
            inh.apply(&mut b);
        }
        assert_eq!(inh.forgotten.len(), MAX_FORGOTTEN);
        assert_eq!(inh.forgotten_order.len(), MAX_FORGOTTEN);
        // "t0" was dropped from the set: spans up to its newest (1,000) now adopt in any trace.
        assert_eq!(inh.horizon_us, 1_001);
        let mut b = Batch { spans: vec![agent_span("other", "r", 1_000)], ..Default::default() };
        inh.apply(&mut b);
        assert_eq!(b.adopts.len(), 1);
    }

    #[test]
    fn adopts_are_bounded_per_batch_and_over_time() {
        let mut inh = Inherit::with_horizon(1_000_000, i64::MAX);
        let mut total = 0;
        for round in 0..20 {
            let spans = (0..100).map(|i| agent_span(&format!("t{round}-{i}"), "a", 1)).collect();
            let mut b = Batch { spans, ..Default::default() };
            inh.apply(&mut b);
            assert!(b.adopts.len() <= MAX_ADOPTS);
            total += b.adopts.len();
        }
        // 2,000 candidates in a burst: the burst allowance (plus what a fast test refills) passes.
        assert!(total >= ADOPT_BURST as usize && total < ADOPT_BURST as usize + 100, "{total}");
        assert_eq!(inh.adopts_skipped as usize, 2000 - total);
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let mut inh = Inherit::default();
        let mut b = Batch::default();
        for i in 0..10_000 {
            b.spans.push(span(&format!("s{i}"), Some(&format!("s{}", i + 1)), SpanType::Chain, ctx(None, None, None)));
        }
        inh.apply(&mut b);
        let mut l = llm("leaf", "s0");
        inh.apply(&mut l);
        assert_eq!(l.model_calls[0].ctx.agent_id.as_deref(), Some("svc"));
    }
}
