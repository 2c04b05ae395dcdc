//! One call, one row. Nested instrumentation reports a model call twice (a framework's LLM span
//! wrapping the SDK's LLM span with the same usage), Claude Code can report one call as a span
//! and as an `api_request` event, and a tool call can arrive from native telemetry and a hook.
//! `Deduper` remembers a bounded window of recent calls and drops the repeats (OpenClaw's rule, a
//! run reported by the plugin and the shim, is in `openclaw.rs`). No I/O: the pipeline thread
//! owns one and runs every batch through it (`Stages::stage_dedup`) before the batch is stored.

use std::hash::Hash;

use super::fastmap::{FastMap, FastSet, Fingerprint};
use super::records::{Batch, ModelCallRow};

/// How many levels up a span tree two LLM spans may be apart and still be the same call.
const MAX_DEPTH: usize = 4;

/// A map that remembers at least its `cap` most recent keys and at most twice that: two
/// generations, the older dropped whole when the newer is full. Every span of every batch passes
/// through `parents`; a queue of keys with a removal per insert cost a second random probe of a
/// large map per span (this stage's largest cost, BENCHMARKS.md).
struct Bounded<K, V> {
    young: FastMap<K, V>,
    old: FastMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self { young: FastMap::default(), old: FastMap::default(), cap: cap.max(1) }
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.young.get(k).or_else(|| self.old.get(k))
    }
    fn insert(&mut self, k: K, v: V) {
        self.young.insert(k, v);
        if self.young.len() >= self.cap {
            let cap = self.cap;
            self.old = std::mem::replace(&mut self.young, FastMap::with_capacity_and_hasher(cap, Default::default()));
        }
    }
}

/// A (trace id, span id) pair as a 64-bit fingerprint (`Fingerprint::pair64`, per-process random
/// seed), so a key is 8 bytes whatever the ids look like (OTLP hex, a hook's or a test's own
/// text), and a span's parent key is the fingerprint of (trace id, parent id). As strings the
/// window held three allocations a span and a key of 64 bytes; as 128-bit fingerprints, twice
/// the heap of these (`tests/memory_bounds.rs`). A lookup in a window of a few hundred thousand
/// keys finds a false match with a probability of about 2e-14, and a false match drops a call
/// only when the tokens agree as well.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct SpanKey(u64);

/// The window's keys (`fastmap::Fingerprint`).
#[derive(Default)]
struct Ids(Fingerprint);

impl Ids {
    fn pair(&self, a: &[u8], b: &[u8]) -> SpanKey {
        SpanKey(self.0.pair64(a, b))
    }
    fn key(&self, trace: &str, span: &str) -> SpanKey {
        self.pair(trace.as_bytes(), span.as_bytes())
    }
    fn call(&self, c: &ModelCallRow) -> Option<SpanKey> {
        Some(self.key(c.trace_id.as_deref()?, c.span_id.as_deref()?))
    }
    /// A session and a call's four token counts (each a presence byte and 8 bytes).
    fn content(&self, session: &str, t: &[Option<i64>; 4]) -> SpanKey {
        let mut b = [0u8; 36];
        for (chunk, v) in b.chunks_exact_mut(9).zip(t) {
            if let Some(v) = v {
                chunk[0] = 1;
                chunk[1..].copy_from_slice(&v.to_le_bytes());
            }
        }
        self.pair(session.as_bytes(), &b)
    }
}

/// Up to `MAX_DEPTH` ancestors of a span, nearest first (no allocation).
#[derive(Clone, Copy)]
struct Ancestors {
    keys: [SpanKey; MAX_DEPTH],
    len: usize,
}

impl Ancestors {
    fn iter(&self) -> impl Iterator<Item = SpanKey> + '_ {
        self.keys[..self.len].iter().copied()
    }
}

/// A call's (input, output) token counts, packed in 16 bytes (32 as two `Option<i64>`): `None` is
/// `i64::MIN`, and a count of `i64::MIN` (never a real one) is read as `i64::MIN + 1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Tokens([i64; 2]);

const NO_COUNT: i64 = i64::MIN;

fn tokens(c: &ModelCallRow) -> Tokens {
    let pack = |v: Option<i64>| v.map_or(NO_COUNT, |v| v.max(NO_COUNT + 1));
    Tokens([pack(c.input_tokens), pack(c.output_tokens)])
}

fn has_tokens(t: Tokens) -> bool {
    t.0 != [NO_COUNT; 2]
}

/// Same call seen at two levels: equal usage, or one level carries none.
fn related(a: Tokens, b: Tokens) -> bool {
    a == b || !has_tokens(a) || !has_tokens(b)
}

/// Fill what `keep` lacks from `lose` (context from the framework span, model from the SDK span).
fn merge(keep: &mut ModelCallRow, lose: &ModelCallRow) {
    macro_rules! fill {
        ($($f:ident).+) => {
            if keep.$($f).+.is_none() {
                keep.$($f).+ = lose.$($f).+.clone();
            }
        };
    }
    fill!(model);
    fill!(provider);
    fill!(request_id);
    fill!(cost_usd);
    fill!(cost_source);
    fill!(cache_read_tokens);
    fill!(cache_write_tokens);
    fill!(ctx.task_id);
    fill!(ctx.run_id);
    fill!(ctx.agent_name);
    keep.error |= lose.error;
}

pub struct Deduper {
    ids: Ids,
    parents: Bounded<SpanKey, SpanKey>,
    llm_calls: Bounded<SpanKey, Tokens>,
    llm_ancestors: Bounded<SpanKey, Tokens>,
    /// (session, token counts) -> the source that reported them.
    content: Bounded<SpanKey, &'static str>,
    /// Tool call ids (fingerprints).
    tool_ids: Bounded<SpanKey, ()>,
    openclaw: super::openclaw::RunDedup,
}

impl Default for Deduper {
    fn default() -> Self {
        Self::new(200_000)
    }
}

impl Deduper {
    pub fn new(cap: usize) -> Self {
        Self {
            ids: Ids::default(),
            parents: Bounded::new(cap),
            llm_calls: Bounded::new(cap / 4 + 1),
            llm_ancestors: Bounded::new(cap / 4 + 1),
            content: Bounded::new(cap / 4 + 1),
            tool_ids: Bounded::new(cap / 4 + 1),
            openclaw: super::openclaw::RunDedup::new(cap / 4 + 1),
        }
    }

    /// Seed the OpenClaw run memory with what the store holds (`pipeline::openclaw_runs`).
    pub fn restore_openclaw(
        &mut self,
        runs: impl IntoIterator<Item = String>,
        shim_last_us: Option<i64>,
        totals: impl IntoIterator<Item = (String, super::openclaw::SessionTotals)>,
    ) {
        self.openclaw.restore(runs, shim_last_us);
        self.openclaw.restore_totals(totals);
    }

    fn ancestors(&self, key: SpanKey) -> Ancestors {
        let mut out = Ancestors { keys: [SpanKey(0); MAX_DEPTH], len: 0 };
        let mut cur = key;
        while out.len < MAX_DEPTH {
            match self.parents.get(&cur) {
                Some(&parent) => {
                    cur = parent;
                    out.keys[out.len] = cur;
                    out.len += 1;
                }
                None => break,
            }
        }
        out
    }

    /// Drop repeated model and tool calls from `batch` (in place). Returns how many were dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> usize {
        let openclaw_plugin_spans = self.openclaw.note_batch(batch);
        for s in &batch.spans {
            if let Some(p) = s.parent_span_id.as_deref() {
                self.parents.insert(self.ids.key(&s.trace_id, &s.span_id), self.ids.key(&s.trace_id, p));
            }
        }
        // Each call's fingerprint, computed once; `span_keys` only for calls reported as spans.
        let call_keys: Vec<Option<SpanKey>> = batch.model_calls.iter().map(|c| self.ids.call(c)).collect();
        for (c, k) in batch.model_calls.iter().zip(&call_keys) {
            if let (Some(k), Some(t), Some(p)) = (k, &c.trace_id, &c.parent_span_id) {
                if self.parents.get(k).is_none() {
                    self.parents.insert(*k, self.ids.key(t, p));
                }
            }
        }
        let calls = &mut batch.model_calls;
        let span_keys: Vec<Option<SpanKey>> =
            calls.iter().zip(call_keys).map(|(c, k)| k.filter(|_| c.source == "span")).collect();
        let ancestors: Vec<Ancestors> = span_keys
            .iter()
            .map(|k| k.map_or(Ancestors { keys: [SpanKey(0); MAX_DEPTH], len: 0 }, |k| self.ancestors(k)))
            .collect();
        let n = calls.len();
        let mut drop = vec![false; n];
        // Sized up front: growing these per batch showed as rehashing in the pipeline's profile.
        let mut in_batch: FastMap<SpanKey, usize> = FastMap::with_capacity_and_hasher(n, Default::default());
        for (i, k) in span_keys.iter().enumerate() {
            if let Some(k) = k {
                in_batch.entry(*k).or_insert(i);
            }
        }
        let mut keys_now: FastSet<SpanKey> = FastSet::with_capacity_and_hasher(n, Default::default());
        for i in 0..n {
            let Some(key) = span_keys[i] else { continue };
            // The same span again (an exporter retry, a replay) is the same call.
            if self.llm_calls.get(&key).is_some() || !keys_now.insert(key) {
                drop[i] = true;
                continue;
            }
            for anc in ancestors[i].iter() {
                if let Some(&j) = in_batch.get(&anc) {
                    if j != i && !drop[j] && related(tokens(&calls[i]), tokens(&calls[j])) {
                        let (keep, lose) = if has_tokens(tokens(&calls[i])) || !has_tokens(tokens(&calls[j])) {
                            (i, j)
                        } else {
                            (j, i)
                        };
                        let loser = calls[lose].clone();
                        merge(&mut calls[keep], &loser);
                        drop[lose] = true;
                        if lose == i {
                            break;
                        }
                    }
                } else if let Some(t) = self.llm_calls.get(&anc) {
                    if related(tokens(&calls[i]), *t) {
                        drop[i] = true;
                        break;
                    }
                }
            }
            if !drop[i] {
                if let Some(t) = self.llm_ancestors.get(&key) {
                    if related(tokens(&calls[i]), *t) {
                        drop[i] = true;
                    }
                }
            }
        }
        for i in 0..n {
            if drop[i] {
                continue;
            }
            let c = &mut calls[i];
            // OpenClaw: a run counted once when the plugin and the shim both report it.
            if self.openclaw.drop_call(c, &openclaw_plugin_spans) {
                drop[i] = true;
                continue;
            }
            if let Some(key) = span_keys[i] {
                let t = tokens(c);
                for anc in ancestors[i].iter() {
                    self.llm_ancestors.insert(anc, t);
                }
                self.llm_calls.insert(key, t);
            }
            if let Some(session) = &c.ctx.session_id {
                let t = [c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens];
                if t.iter().any(Option::is_some) {
                    let ck = self.ids.content(session, &t);
                    match self.content.get(&ck) {
                        Some(src) if *src != c.source => drop[i] = true,
                        Some(_) => {}
                        None => self.content.insert(ck, c.source),
                    }
                }
            }
        }
        let mut dropped = 0;
        let mut it = drop.iter();
        calls.retain(|_| {
            let d = *it.next().unwrap_or(&false);
            dropped += usize::from(d);
            !d
        });
        let mut seen_now: FastSet<SpanKey> =
            FastSet::with_capacity_and_hasher(batch.tool_calls.len(), Default::default());
        batch.tool_calls.retain(|t| {
            let Some(id) = &t.tool_call_id else { return true };
            let id = self.ids.pair(id.as_bytes(), &[]);
            if self.tool_ids.get(&id).is_some() || !seen_now.insert(id) {
                dropped += 1;
                return false;
            }
            true
        });
        for id in seen_now {
            self.tool_ids.insert(id, ());
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::{Context, Id, SpanRow, SpanType, ToolCallRow};
    use std::sync::Arc;

    #[test]
    fn fingerprints_tell_pairs_apart_and_windows_keep_at_least_their_cap() {
        let f = Ids::default();
        assert_eq!(f.key("t", "a"), f.key("t", "a"));
        assert_ne!(f.key("t", "ab"), f.key("ta", "b"), "the trace id's length is part of the key");
        assert_ne!(f.key("0a", "1"), f.key("000a", "1"), "leading zeros are part of the id");
        assert_ne!(f.key("0A", "1"), f.key("0a", "1"));
        let long = "x".repeat(300);
        assert_eq!(f.key(&long, "a"), f.key(&long, "a"), "ids longer than the stack buffer");
        assert_ne!(f.key(&long, "a"), f.key(&long, "b"));
        let mut w: Bounded<u32, u32> = Bounded::new(3);
        for k in 0..10 {
            w.insert(k, k * 2);
            for recent in k.saturating_sub(2)..=k {
                assert_eq!(w.get(&recent), Some(&(recent * 2)), "key {recent} after inserting {k}");
            }
            assert!(w.young.len() + w.old.len() <= 6, "at most twice the cap");
        }
        assert_eq!(w.get(&0), None, "the oldest generation is forgotten");
    }

    fn span(id: &str, parent: Option<&str>) -> SpanRow {
        SpanRow {
            time_us: 0,
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.map(Id::new),
            name: id.into(),
            kind: "internal",
            start_us: 0,
            end_us: 0,
            duration_ms: 0.0,
            status_code: "unset",
            status_message: None,
            scope_name: None,
            span_type: SpanType::Llm,
            model: None,
            error: false,
            ctx: Context::default(),
            attributes: "{}".into(),
            resource_attributes: Arc::from("{}"),
            events: None,
            links: None,
        }
    }

    fn call(id: &str, parent: Option<&str>, tokens: Option<(i64, i64)>, source: &'static str) -> ModelCallRow {
        ModelCallRow {
            time_us: 0,
            source,
            trace_id: Some("t".into()),
            span_id: Some(id.into()),
            parent_span_id: parent.map(Id::new),
            request_id: None,
            model: None,
            provider: None,
            operation: None,
            input_tokens: tokens.map(|t| t.0),
            output_tokens: tokens.map(|t| t.1),
            cache_read_tokens: None,
            cache_write_tokens: None,
            cost_usd: None,
            cost_source: None,
            duration_ms: None,
            error: false,
            token_rule: "otel",
            ctx: Context { session_id: Some("s".into()), ..Default::default() },
        }
    }

    #[test]
    fn nested_llm_spans_in_one_batch_are_one_call() {
        let mut d = Deduper::default();
        let mut outer = call("outer", Some("root"), Some((100, 10)), "span");
        outer.ctx.task_id = Some("TASK".into());
        let mut inner = call("inner", Some("mid"), Some((100, 10)), "span");
        inner.model = Some("gpt-4o".into());
        let mut b = Batch {
            spans: vec![span("outer", Some("root")), span("mid", Some("outer")), span("inner", Some("mid"))],
            model_calls: vec![inner, outer],
            ..Default::default()
        };
        assert_eq!(d.filter(&mut b), 1);
        assert_eq!(b.model_calls.len(), 1);
        let kept = &b.model_calls[0];
        assert_eq!(kept.span_id.as_deref(), Some("inner"));
        assert_eq!(kept.ctx.task_id.as_deref(), Some("TASK"), "context merged from the framework span");
    }

    #[test]
    fn nested_llm_spans_across_batches_are_one_call() {
        let mut d = Deduper::default();
        let mut b1 = Batch {
            spans: vec![span("inner", Some("outer"))],
            model_calls: vec![call("inner", Some("outer"), Some((5, 6)), "span")],
            ..Default::default()
        };
        d.filter(&mut b1);
        assert_eq!(b1.model_calls.len(), 1);
        let mut b2 = Batch {
            spans: vec![span("outer", None)],
            model_calls: vec![call("outer", None, Some((5, 6)), "span")],
            ..Default::default()
        };
        d.filter(&mut b2);
        assert!(b2.model_calls.is_empty());
    }

    #[test]
    fn a_replayed_span_is_the_same_call() {
        let mut d = Deduper::default();
        let mk = || Batch { model_calls: vec![call("a", None, Some((1, 2)), "span")], ..Default::default() };
        let mut b1 = mk();
        d.filter(&mut b1);
        let mut b2 = mk();
        b2.model_calls.push(b2.model_calls[0].clone());
        d.filter(&mut b2);
        assert_eq!((b1.model_calls.len(), b2.model_calls.len()), (1, 0));
    }

    #[test]
    fn siblings_with_equal_usage_are_two_calls() {
        let mut d = Deduper::default();
        let mut b = Batch {
            spans: vec![span("a", Some("root")), span("b", Some("root"))],
            model_calls: vec![
                call("a", Some("root"), Some((1, 1)), "span"),
                call("b", Some("root"), Some((1, 1)), "span"),
            ],
            ..Default::default()
        };
        d.filter(&mut b);
        assert_eq!(b.model_calls.len(), 2);
    }

    #[test]
    fn same_call_from_span_and_log_counts_once() {
        let mut d = Deduper::default();
        let mut b1 = Batch { model_calls: vec![call("x", None, Some((7, 8)), "span")], ..Default::default() };
        d.filter(&mut b1);
        let mut log = call("y", None, Some((7, 8)), "log");
        log.trace_id = None;
        log.span_id = None;
        let mut b2 = Batch { model_calls: vec![log.clone(), log], ..Default::default() };
        d.filter(&mut b2);
        assert!(b2.model_calls.is_empty());
    }

    #[test]
    fn tool_calls_by_id() {
        let mut d = Deduper::default();
        let t = ToolCallRow {
            time_us: 0,
            source: "log",
            trace_id: None,
            span_id: None,
            tool_call_id: Some("toolu_1".into()),
            tool_name: "Bash".into(),
            duration_ms: None,
            success: Some(true),
            error: None,
            ctx: Context::default(),
        };
        let mut no_id = t.clone();
        no_id.tool_call_id = None;
        let mut b = Batch { tool_calls: vec![t.clone(), t.clone(), no_id.clone(), no_id], ..Default::default() };
        d.filter(&mut b);
        assert_eq!(b.tool_calls.len(), 3);
        let mut b2 = Batch { tool_calls: vec![t], ..Default::default() };
        d.filter(&mut b2);
        assert!(b2.tool_calls.is_empty());
    }
}
