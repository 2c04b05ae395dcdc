//! The pipeline's bounded windows, filled to their bounds with the load generator's spans (the
//! real mapping of `fixtures::genai_traces` exports), and the heap each holds, counted by this
//! test binary's allocator: what BENCHMARKS.md ("memory outside DuckDB's cache") attributes to
//! them, kept from growing back. Allocation sizes are deterministic for a given input, so the
//! figures are too (no timing involved).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use prost::Message;

use agent_console::fixtures::{genai_traces, Rng};
use agent_console::model::dedup::Deduper;
use agent_console::model::normalize;
use agent_console::model::records::Batch;
use agent_console::pipeline::batch_bytes;
use agent_console::pipeline::inherit::{Inherit, DEFAULT_MAX_NODES};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// Bytes allocated and not yet freed, by every thread of this binary.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to `System` unchanged; only a counter is updated beside it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// `n` load-generator exports of 512 spans each (one trace per export, 40 sessions), mapped.
fn batches(n: usize, seed: u64) -> impl Iterator<Item = Batch> {
    let mut rng = Rng::new(seed);
    let now_ns = 1_800_000_000_000_000_000u64;
    (0..n).map(move |i| {
        let req = genai_traces(512, 40, &mut rng, now_ns + i as u64 * 1_000_000);
        let bytes = req.encode_to_vec();
        normalize::traces_pb(&bytes, 1_800_000_000_000_000).expect("the load generator's export maps").batch
    })
}

// One test: the counter is the whole binary's, so nothing else may allocate beside it.
#[test]
fn the_pipelines_windows_hold_what_benchmarks_say_at_their_bounds() {
    // Context inheritance: 200,000 spans remembered at most (~390 of these traces).
    let before = live();
    let mut inherit = Inherit::new(DEFAULT_MAX_NODES);
    for mut b in batches(450, 7) {
        inherit.apply(&mut b);
    }
    assert!(inherit.remembered() <= DEFAULT_MAX_NODES);
    assert!(inherit.remembered() > DEFAULT_MAX_NODES - 1024, "{}", inherit.remembered());
    let held = (live() - before) as f64;
    let per_span = held / inherit.remembered() as f64;
    println!(
        "inherit: {} spans remembered, {:.1} MiB, {per_span:.0} bytes a span",
        inherit.remembered(),
        held / 1048576.0
    );
    // 51 bytes a span (9.8 MiB) since the nodes share their trace's contexts; 227 (43.2 MiB)
    // when each held its own.
    assert!(per_span < 80.0, "inherit holds {per_span:.0} bytes a span");
    drop(inherit);

    // Dedup: its window of 200,000 spans.
    let before = live();
    let mut dedup = Deduper::default();
    for mut b in batches(450, 11) {
        dedup.filter(&mut b);
    }
    let held = (live() - before) as f64;
    let per_span = held / 200_000.0;
    println!("dedup: {:.1} MiB, {per_span:.0} bytes a span", held / 1048576.0);
    // 83 bytes a span (15.9 MiB): its windows are kept twice over (young and old generations).
    // 152 (28.9 MiB) when its keys were 128-bit fingerprints and its token pairs two `Option`s.
    assert!(per_span < 100.0, "dedup holds {per_span:.0} bytes a span");
    drop(dedup);

    // `/metrics`' glibc gauge counts what is allocated through glibc, which this binary's
    // allocator passes everything to.
    let before = agent_console::malloc_arenas::in_use_bytes().expect("glibc") as isize;
    let counted = live();
    let block = std::hint::black_box(vec![1u8; 16 << 20]);
    let grown = agent_console::malloc_arenas::in_use_bytes().expect("glibc") as isize - before;
    assert!(
        grown >= (live() - counted) && grown < (live() - counted) + (1 << 20),
        "glibc counts {grown} more for {} allocated",
        live() - counted
    );
    drop(block);

    // The byte budgets of the hand-off, the writer's queue and a transaction count batches with
    // `batch_bytes`: it must be the heap a mapped batch takes, for every signal.
    let map_traces = |bytes: &[u8]| normalize::traces_pb(bytes, 1_800_000_000_000_000).map(|m| m.batch).ok();
    let map_logs = |bytes: &[u8]| {
        let req = ExportLogsServiceRequest::decode(bytes).ok()?;
        Some(normalize::logs(&req, 1_800_000_000_000_000).batch)
    };
    let map_metrics = |bytes: &[u8]| {
        let req = ExportMetricsServiceRequest::decode(bytes).ok()?;
        Some(normalize::metrics(&req, 1_800_000_000_000_000).batch)
    };
    let loadgen = genai_traces(512, 40, &mut Rng::new(3), 1_800_000_000_000_000_000).encode_to_vec();
    let cases: Vec<(&str, Vec<u8>, &MapFn)> = vec![
        ("load generator traces", loadgen, &map_traces),
        ("Claude Code logs", fixture("claude-code/otlp/logs-1.pb"), &map_logs),
        ("Claude Code logs 2", fixture("claude-code/otlp/logs-2.pb"), &map_logs),
        ("Claude Code metrics", fixture("claude-code/otlp/metrics-1.pb"), &map_metrics),
        ("LangChain traces", fixture("langchain-openinference/traces-1.pb"), &map_traces),
    ];
    for (name, bytes, map) in cases {
        // Mapped once first: the JSON writer's per-thread scratch buffer (kept between calls,
        // 256 KiB at most) has grown to this export's longest text before the count starts.
        drop(map(&bytes));
        let before = live();
        let batch = map(&bytes).unwrap_or_else(|| panic!("{name} maps"));
        let held = live() - before;
        let counted = batch_bytes(&batch) as isize;
        println!("{name}: {} rows, heap {held} bytes, counted {counted}", batch.row_count());
        assert!(batch.row_count() > 0, "{name}");
        assert!(counted * 10 >= held * 9 && counted * 10 <= held * 11, "{name}: counted {counted}, holds {held}");
        if name == "load generator traces" {
            // 1,673 bytes a span since the mapping sizes its rows exactly; 2,174 when attribute
            // JSON was sized for the widest numbers and the calls' rows reserved one per span.
            let per_span = held as f64 / batch.spans.len() as f64;
            assert!(per_span < 1_800.0, "a load generator span takes {per_span:.0} bytes mapped");
        }
        // No row vector keeps more than an eighth of its room unused, nor any JSON text any.
        let fits = |len: usize, cap: usize| cap - len <= len / 8;
        assert!(fits(batch.spans.len(), batch.spans.capacity()), "{name}: spans");
        assert!(fits(batch.logs.len(), batch.logs.capacity()), "{name}: logs");
        assert!(fits(batch.points.len(), batch.points.capacity()), "{name}: points");
        assert!(fits(batch.model_calls.len(), batch.model_calls.capacity()), "{name}: model calls");
        assert!(fits(batch.tool_calls.len(), batch.tool_calls.capacity()), "{name}: tool calls");
        assert!(batch.spans.iter().all(|s| s.attributes.len() == s.attributes.capacity()), "{name}");
        assert!(batch.logs.iter().all(|l| l.attributes.len() == l.attributes.capacity()), "{name}");
        drop(batch);
    }
}

/// Bytes of one export to its mapped batch (`None`: it does not decode).
type MapFn = dyn Fn(&[u8]) -> Option<Batch>;

fn fixture(rel: &str) -> Vec<u8> {
    agent_console::fixtures::shared_fixture(rel).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
