//! One call, one row. Nested instrumentation reports a model call twice (a framework's LLM span
//! wrapping the SDK's LLM span with the same usage), Claude Code can report one call as a span
//! and as an `api_request` event, and a tool call can arrive from native telemetry and a hook.
//! `Deduper` remembers a bounded window of recent calls and drops the repeats (OpenClaw's rule, a
//! run reported by the plugin and the shim, is in `openclaw.rs`). No I/O: the single store writer
//! owns one and runs every batch through it before appending.

use std::collections::VecDeque;
use std::hash::Hash;

use super::fastmap::{FastMap, FastSet};
use super::records::{Batch, ModelCallRow};

/// How many levels up a span tree two LLM spans may be apart and still be the same call.
const MAX_DEPTH: usize = 4;

/// A map that forgets its oldest entries beyond `cap`.
struct Bounded<K, V> {
    map: FastMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self { map: FastMap::default(), order: VecDeque::new(), cap }
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// A trace or span id as a map key without an allocation: ids are lowercase hex as the mapping
/// writes them (OTLP's bytes), kept as their value and length ("0a" and "000a" stay apart);
/// anything else (a hook's or a test's own ids) is kept as text. Every span of every batch passes
/// through `parents`, and as strings that was five allocations a span (trace, span and parent
/// id, and the key again in the window's order): this stage's largest cost (BENCHMARKS.md).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Id {
    Hex(u128, u8),
    Text(Box<str>),
}

impl Id {
    fn of(s: &str) -> Self {
        let b = s.as_bytes();
        if !b.is_empty() && b.len() <= 32 {
            let mut v: u128 = 0;
            let mut hex = true;
            for &c in b {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => {
                        hex = false;
                        break;
                    }
                };
                v = (v << 4) | u128::from(d);
            }
            if hex {
                return Id::Hex(v, b.len() as u8);
            }
        }
        Id::Text(s.into())
    }
}

type SpanKey = (Id, Id);
type Tokens = (Option<i64>, Option<i64>);

fn tokens(c: &ModelCallRow) -> Tokens {
    (c.input_tokens, c.output_tokens)
}

fn has_tokens(t: Tokens) -> bool {
    t.0.is_some() || t.1.is_some()
}

/// Same call seen at two levels: equal usage, or one level carries none.
fn related(a: Tokens, b: Tokens) -> bool {
    a == b || !has_tokens(a) || !has_tokens(b)
}

fn span_key(c: &ModelCallRow) -> Option<SpanKey> {
    Some((Id::of(c.trace_id.as_deref()?), Id::of(c.span_id.as_deref()?)))
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
    parents: Bounded<SpanKey, Option<Id>>,
    llm_calls: Bounded<SpanKey, Tokens>,
    llm_ancestors: Bounded<SpanKey, Tokens>,
    content: Bounded<(String, [Option<i64>; 4]), &'static str>,
    tool_ids: Bounded<String, ()>,
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

    fn ancestors(&self, key: &SpanKey) -> Vec<SpanKey> {
        let mut out = Vec::new();
        let mut cur = key.clone();
        for _ in 0..MAX_DEPTH {
            match self.parents.get(&cur) {
                Some(Some(parent)) => {
                    cur = (cur.0.clone(), parent.clone());
                    out.push(cur.clone());
                }
                _ => break,
            }
        }
        out
    }

    /// Drop repeated model and tool calls from `batch` (in place). Returns how many were dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> usize {
        let openclaw_plugin_spans = self.openclaw.note_batch(batch);
        for s in &batch.spans {
            self.parents.insert((Id::of(&s.trace_id), Id::of(&s.span_id)), s.parent_span_id.as_deref().map(Id::of));
        }
        for c in &batch.model_calls {
            if let (Some(k), Some(p)) = (span_key(c), &c.parent_span_id) {
                if self.parents.get(&k).is_none() {
                    self.parents.insert(k, Some(Id::of(p)));
                }
            }
        }
        let calls = &mut batch.model_calls;
        let n = calls.len();
        let mut drop = vec![false; n];
        let mut in_batch: FastMap<SpanKey, usize> = FastMap::default();
        for (i, c) in calls.iter().enumerate().filter(|(_, c)| c.source == "span") {
            if let Some(k) = span_key(c) {
                in_batch.entry(k).or_insert(i);
            }
        }
        let mut keys_now: FastSet<SpanKey> = FastSet::default();
        for i in 0..n {
            let Some(key) = span_key(&calls[i]).filter(|_| calls[i].source == "span") else { continue };
            // The same span again (an exporter retry, a replay) is the same call.
            if self.llm_calls.get(&key).is_some() || !keys_now.insert(key.clone()) {
                drop[i] = true;
                continue;
            }
            for anc in self.ancestors(&key) {
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
            if let Some(key) = span_key(c).filter(|_| c.source == "span") {
                let t = tokens(c);
                for anc in self.ancestors(&key) {
                    self.llm_ancestors.insert(anc, t);
                }
                self.llm_calls.insert(key, t);
            }
            if let Some(session) = &c.ctx.session_id {
                let t = [c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens];
                if t.iter().any(Option::is_some) {
                    let ck = (session.clone(), t);
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
        let mut seen_now: FastSet<String> = FastSet::default();
        batch.tool_calls.retain(|t| {
            let Some(id) = &t.tool_call_id else { return true };
            if self.tool_ids.get(id).is_some() || !seen_now.insert(id.clone()) {
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
    use crate::model::records::{Context, SpanRow, SpanType, ToolCallRow};
    use std::sync::Arc;

    #[test]
    fn ids_are_keys_by_value_and_length_and_other_text_stays_text() {
        assert_eq!(Id::of("0a"), Id::Hex(10, 2));
        assert_ne!(Id::of("0a"), Id::of("000a"), "leading zeros are part of the id");
        assert_eq!(Id::of("ffffffffffffffffffffffffffffffff"), Id::Hex(u128::MAX, 32));
        assert_eq!(Id::of("0A"), Id::Text("0A".into()), "only the mapping's lowercase hex is packed");
        assert_eq!(Id::of("1234567890abcdef1234567890abcdef0"), Id::Text("1234567890abcdef1234567890abcdef0".into()));
        assert_eq!(Id::of(""), Id::Text("".into()));
        assert_eq!(Id::of("toolu_01"), Id::Text("toolu_01".into()));
    }

    fn span(id: &str, parent: Option<&str>) -> SpanRow {
        SpanRow {
            time_us: 0,
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_string),
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
            parent_span_id: parent.map(str::to_string),
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
