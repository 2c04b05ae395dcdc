//! Micro-benchmarks of the ingest stages alone, on 512 realistic ~1 KB GenAI spans
//! (`fixtures::genai_traces`): protobuf decode (prost, and the zero-copy view the ingest path
//! uses), mapping to the agent model, Arrow batch build,
//! the pipeline's dedup stage, the ingest log append (the acknowledgement) and append + DuckDB commit.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

use agent_console::fixtures::{genai_traces, Rng};
use agent_console::ingest_log::{PartKind, Record};
use agent_console::model::{normalize, view};
use agent_console::store::{arrow_rows, Store, StoreConfig};
use agent_console::telemetry::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The collector's allocator (`src/main.rs`), so allocation costs are the ones it pays: glibc's
/// would hand a large row vector fresh pages from `mmap` and fault them in on every call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPANS: usize = 512;
const NOW_NS: u64 = 1_795_273_131_000_000_000;

fn stages(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let req = genai_traces(SPANS, 100, &mut rng, NOW_NS);
    let bytes = req.encode_to_vec();
    let mut g = c.benchmark_group("ingest_512_spans");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_protobuf", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(&bytes[..]).map(|r| r.resource_spans.len()))
    });
    // What the ingest path runs on protobuf traces: a zero-copy view of the bytes, then the mapper.
    g.bench_function("decode_view", |b| b.iter(|| view::decode_traces(&bytes).map(|r| r.resource_spans.len())));
    let decoded = view::decode_traces(&bytes).expect("view");
    g.bench_function("map_to_model", |b| b.iter(|| normalize::traces_view(&decoded, 0).batch.spans.len()));
    g.bench_function("decode_and_map_prost", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(&bytes[..]).map(|r| normalize::traces(&r, 0).batch.spans.len()))
    });
    g.bench_function("decode_and_map_view", |b| {
        b.iter(|| normalize::traces_pb(&bytes, 0).map(|m| m.batch.spans.len()))
    });
    let mapped = normalize::traces(&req, 0).batch;
    // The pipeline's dedup stage on fresh batches against a long-lived window (as in the pipeline).
    let mut dedup = agent_console::model::dedup::Deduper::default();
    let mut dedup_seed = 1_000;
    g.bench_function("dedup_filter", |b| {
        b.iter_batched(
            || {
                dedup_seed += 1;
                normalize::traces(&genai_traces(SPANS, 100, &mut Rng::new(dedup_seed), NOW_NS), 0).batch
            },
            |mut batch| dedup.filter(&mut batch),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("build_arrow_spans", |b| b.iter(|| arrow_rows::spans(&mapped.spans).map(|r| r.num_rows())));

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { data_dir: dir.path().to_path_buf(), ..StoreConfig::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (store, writer) = rt
        .block_on(async {
            Store::open(
                &cfg,
                std::sync::Arc::new(agent_console::cost::PriceTable::embedded().expect("prices")),
                std::sync::Arc::new(Metrics::default()),
                Vec::new(),
            )
        })
        .expect("store");
    let mut seed = 10;
    let mut next = || {
        seed += 1;
        let req = genai_traces(SPANS, 100, &mut Rng::new(seed), NOW_NS);
        let batch = normalize::traces(&req, 0).batch;
        (Record::single(PartKind::Traces, req.encode_to_vec().into(), 0), batch)
    };
    // The acknowledgement: one record durable in the ingest log (write + fdatasync).
    g.bench_function("log_append", |b| {
        b.iter_batched(&mut next, |(r, batch)| rt.block_on(store.append(r, batch)), BatchSize::SmallInput)
    });
    // The whole path to queryable: append, then wait for the DuckDB commit (one small transaction
    // per iteration, so this is the worst case; under load transactions hold ~100k rows).
    g.bench_function("append_and_commit", |b| {
        b.iter_batched(
            &mut next,
            |(r, batch)| {
                rt.block_on(async {
                    store.append(r, batch).await?;
                    store.flush(None).await
                })
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(store);
    writer.join();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = stages
}
criterion_main!(benches);
