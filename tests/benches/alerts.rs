//! The alert evaluator's cost per committed batch (issue 13's benchmark): `Engine::observe` on a
//! mapped 512-span batch (`fixtures::genai_traces`, priced as the pipeline's pricing stage would)
//! and the 1 s `Engine::tick`, with no rules and with 1,000 rules of every kind over an evaluator
//! that already holds 10,000 live sessions (each with spend, a window entry, an agent and a task;
//! a tenth of them stuck, a twentieth waiting). Compare `observe` with the ingest stages of the
//! same batch (`cargo bench --bench ingest`): the evaluator runs on the pipeline's thread.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use agent_console::alerts::engine::{Engine, RuleSet};
use agent_console::alerts::parse_file;
use agent_console::fixtures::{genai_traces, Rng};
use agent_console::model::normalize;
use agent_console::model::records::{Batch, Context, ModelCallRow, Seen, SessionUpdate};

const SPANS: usize = 512;
const SESSIONS: u64 = 10_000;
const NOW_NS: u64 = 1_795_273_131_000_000_000;
const NOW_US: i64 = (NOW_NS / 1000) as i64;
const S: i64 = 1_000_000;

/// 1,000 rules: budgets per session / agent / task / all / day, runaway spend and error rates
/// over four and three window lengths and several scopes, stuck, waiting and source-silent rules.
fn rules() -> String {
    let mut t = String::new();
    let mut rule = |body: String| {
        t.push_str("[[rule]]\n");
        t.push_str(&body);
        t.push('\n');
    };
    let scopes = ["session", "agent", "task", "all", "day"];
    for i in 0..400 {
        let scope = scopes[i % scopes.len()];
        rule(format!("name = \"budget-{i}\"\nkind = \"budget\"\nscope = \"{scope}\"\nthreshold = {}.0", 5 + i));
    }
    for i in 0..200 {
        let scope = scopes[i % 4];
        let window = [60, 300, 600, 3600][i % 4];
        rule(format!(
            "name = \"spend-{i}\"\nkind = \"runaway_spend\"\nscope = \"{scope}\"\nthreshold = {}.0\nwindow_secs = {window}",
            2 + i
        ));
    }
    for i in 0..200 {
        let scope = ["session", "agent", "all"][i % 3];
        let window = [60, 300, 900][i % 3];
        rule(format!(
            "name = \"errors-{i}\"\nkind = \"error_rate\"\nscope = \"{scope}\"\nthreshold = {}.0\nwindow_secs = {window}\nmin_count = 20",
            5 + i % 90
        ));
    }
    for i in 0..80 {
        rule(format!("name = \"stuck-{i}\"\nkind = \"stuck\"\nafter_secs = {}", 60 + 30 * i));
    }
    for i in 0..80 {
        rule(format!("name = \"waiting-{i}\"\nkind = \"waiting\"\nafter_secs = {}", 30 + 30 * i));
    }
    for i in 0..40 {
        rule(format!("name = \"silent-{i}\"\nkind = \"source_silent\"\nafter_secs = {}", 120 + 60 * i));
    }
    t
}

fn session(i: u64) -> String {
    format!("sess-{i:08x}")
}

/// An evaluator holding `SESSIONS` live sessions (observed at `NOW_US - 30 s`).
fn warm(rules: &RuleSet) -> Engine {
    let mut e = Engine::new(rules.clone());
    let agents = ["researcher", "coder", "reviewer", "planner"];
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(500) {
        let mut b = Batch::default();
        for &i in chunk {
            let (id, agent, task) = (session(i), agents[(i % 4) as usize], format!("TASK-{}", i % 50));
            b.sessions.push(Seen {
                id: id.clone(),
                first_us: NOW_US - 60 * S,
                last_us: NOW_US - 30 * S,
                agent_id: Some(agent.into()),
                display_name: None,
                service_name: Some(agent.into()),
                task_id: Some(task.clone()),
                parent_id: None,
            });
            let ctx = Context {
                session_id: Some(id.as_str().into()),
                agent_id: Some(agent.into()),
                task_id: Some(task.into()),
                service_name: Some(agent.into()),
                ..Context::default()
            };
            b.model_calls.push(ModelCallRow {
                time_us: NOW_US - 30 * S,
                source: "span",
                trace_id: None,
                span_id: None,
                parent_span_id: None,
                request_id: None,
                model: Some("claude-sonnet-4-5".into()),
                provider: Some("anthropic".into()),
                operation: Some("chat".into()),
                input_tokens: Some(1000),
                output_tokens: Some(200),
                cache_read_tokens: None,
                cache_write_tokens: None,
                cost_usd: Some(0.01),
                cost_source: Some("computed"),
                duration_ms: Some(900.0),
                error: i % 17 == 0,
                token_rule: "otel",
                ctx,
            });
            b.session_updates.push(SessionUpdate {
                session_id: id,
                status: "running",
                stuck: i % 10 == 0,
                waiting: i % 20 == 5,
                ..SessionUpdate::default()
            });
        }
        e.observe(&b, NOW_US - 30 * S);
    }
    e
}

/// Mapped 512-span exports of random sessions, priced.
fn batches(n: u64) -> Vec<Batch> {
    (0..n)
        .map(|i| {
            let req = genai_traces(SPANS, SESSIONS, &mut Rng::new(100 + i), NOW_NS);
            let mut b = normalize::traces(&req, 0).batch;
            for c in &mut b.model_calls {
                let tokens = c.input_tokens.unwrap_or(0) + c.output_tokens.unwrap_or(0);
                c.cost_usd = Some(tokens as f64 * 3e-6);
            }
            b
        })
        .collect()
}

fn evaluator(c: &mut Criterion) {
    let spec = parse_file(&rules()).expect("rules");
    assert_eq!(spec.len(), 1000);
    let none = RuleSet::default();
    let thousand = RuleSet::default();
    thousand.set(spec);
    let input = batches(16);
    let calls: usize = input.iter().map(|b| b.model_calls.len() + b.tool_calls.len()).sum();
    eprintln!("{} batches, {} calls per batch on average", input.len(), calls / input.len());

    let mut g = c.benchmark_group("alerts_observe_512_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    for (name, set) in [("no_rules", &none), ("1000_rules_10000_sessions", &thousand)] {
        let mut e = warm(set);
        let mut i = 0usize;
        let mut now = NOW_US;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % input.len();
                now += 1000;
                e.observe(&input[i], now).len()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("alerts_tick");
    for (name, set) in [("no_rules", &none), ("1000_rules_10000_sessions", &thousand)] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || warm(set),
                |e| {
                    // A second after the warm-up and a minute later (windows slide, stuck ones fire).
                    e.tick(NOW_US).len() + e.tick(NOW_US + 60 * S).len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    // Steady state: the same evaluator ticked once a second (what the runner does).
    let mut e = warm(&thousand);
    e.tick(NOW_US + 60 * S);
    eprintln!("state after the warm-up and a tick: {:?}", e.sizes());
    let mut now = NOW_US + 60 * S;
    g.bench_function("1000_rules_10000_sessions_steady", |b| {
        b.iter(|| {
            now += S;
            e.tick(now).len()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = evaluator
}
criterion_main!(benches);
