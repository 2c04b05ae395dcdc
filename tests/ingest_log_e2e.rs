//! The ingest log through the real protocols (issue 11, and issue 10 rows 2, 3, 5, 8):
//! - `kill -9` at random moments under continuous gRPC + HTTP load, several restarts: the store
//!   holds every acknowledged span exactly once (and nothing that was never sent), and its cost
//!   rollup and session states equal a clean run fed the same records in the same order;
//! - a record's SSE message arrives before its DuckDB commit, and after a crash + replay a client
//!   resuming with `Last-Event-ID` gets exactly what it had not seen, with the same ids;
//! - a damaged DuckDB WAL: the collector starts (WAL moved aside) and the log restores the rows;
//! - DuckDB failing: exports stay acknowledged until the log cap, then 503 + Retry-After, and
//!   everything acknowledged is stored once DuckDB recovers; an append failure is a 503 whose
//!   retry is stored once (dedup state moves only with what is durable);
//! - absurd token counts are rejected by partial success without failing anything else;
//! - a request of 400k empty records is refused before it is decoded.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_console::fixtures::{genai_traces, kv_int, kv_str, Rng};
use common::{spawn_binary, sql_at, Binary};
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

const BASE_NS: u64 = 1_795_300_000_000_000_000;
const SPANS_PER_REQUEST: usize = 32;

/// Request number `seq` of the load (deterministic, so a clean run can resend it).
fn request(seq: u64) -> ExportTraceServiceRequest {
    request_of(seq, SPANS_PER_REQUEST)
}

/// Request number `seq` with `spans` spans.
fn request_of(seq: u64, spans: usize) -> ExportTraceServiceRequest {
    genai_traces(spans, 40, &mut Rng::new(seq + 1), BASE_NS + seq * 1_000_000)
}

fn span_ids(req: &ExportTraceServiceRequest) -> Vec<String> {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| hex::encode(&s.span_id))
        .collect()
}

#[derive(Default)]
struct Ledger {
    acked: HashSet<u64>,
    /// Sent while a kill happened: may or may not be stored.
    maybe: HashSet<u64>,
}

/// One load client: sends numbered requests until `stop`, noting which were acknowledged.
async fn client(
    grpc: bool,
    target: String,
    spans: usize,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let http = reqwest::Client::new();
    let mut g = if grpc { TraceServiceClient::connect(target.clone()).await.ok() } else { None };
    while !stop.load(Ordering::Acquire) {
        let seq = next.fetch_add(1, Ordering::AcqRel);
        let req = request_of(seq, spans);
        if let Ok(mut l) = ledger.lock() {
            l.maybe.insert(seq);
        }
        let ok = if grpc {
            match g.as_mut() {
                Some(c) => c.export(req).await.is_ok(),
                None => false,
            }
        } else {
            http.post(format!("{target}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(req.encode_to_vec())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        };
        if let Ok(mut l) = ledger.lock() {
            if ok {
                l.maybe.remove(&seq);
                l.acked.insert(seq);
            }
        }
        if !ok {
            // The collector is gone (killed): stop this client; a new one starts after restart.
            return;
        }
    }
}

fn start(dir: &std::path::Path) -> Binary {
    // Small transactions now and then, so kills land both before and after DuckDB commits.
    start_with(dir, &["--commit-max-delay-ms", "40", "--max-batch-rows", "2000"])
}

/// The collector with `flags`, and session thresholds far beyond the test's length: states
/// depend on the records alone, not on when a tick ran, so they compare with a clean run's.
fn start_with(dir: &std::path::Path, flags: &[&str]) -> Binary {
    let mut args = flags.to_vec();
    args.extend([
        "--session-idle-secs",
        "1000000000",
        "--session-stuck-secs",
        "1000000000",
        "--session-finish-secs",
        "1000000000",
    ]);
    spawn_binary(dir, &args)
}

/// Bulk transactions (`--duckdb-row-group-size`): with 2,048-row groups and requests of 4,096
/// spans (~2,450 model calls, ~1,000 tool calls), every commit brings `spans` and `model_calls`
/// full row groups, which DuckDB compresses and writes into the file at the commit (not at the
/// next checkpoint), and `tool_calls` a copy as before; the checkpoints every 1 MiB of log run
/// without vacuuming (`store/vacuum_guard.rs`). Kills then land between those file writes
/// and the checkpoints that make them part of the database: still exactly the acknowledged
/// records, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_with_bulk_transactions_keeps_exactly_the_acknowledged_records() {
    kill_9_under_load(
        |dir| {
            start_with(
                dir,
                &[
                    "--duckdb-row-group-size",
                    "2048",
                    "--commit-max-delay-ms",
                    "400",
                    "--max-batch-rows",
                    "100000",
                    "--checkpoint-mib",
                    "1",
                ],
            )
        },
        4096,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_keeps_exactly_the_acknowledged_records() {
    kill_9_under_load(start, SPANS_PER_REQUEST, false).await;
}

/// Four rounds of gRPC + HTTP load each cut by `kill -9` at a random moment, then a restart:
/// every acknowledged span stored once, nothing never sent, requests whole, and the rollup and
/// session states of a clean run fed the same records.
///
/// With `after_checkpoint`, each round is also let run until DuckDB checkpointed something new
/// (`/metrics`), so its kill lands after a checkpoint.
async fn kill_9_under_load(start: fn(&std::path::Path) -> Binary, spans: usize, after_checkpoint: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let next = Arc::new(AtomicU64::new(0));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng::new(7);
    for round in 0..4 {
        let bin = start(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for i in 0..4 {
            let target = if i % 2 == 0 { bin.grpc.clone() } else { bin.http.clone() };
            clients.push(tokio::spawn(client(i % 2 == 0, target, spans, next.clone(), stop.clone(), ledger.clone())));
        }
        // Let it run until this round has acknowledged something, then a random moment more, then
        // kill without warning.
        let before = ledger.lock().map(|l| l.acked.len()).unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while ledger.lock().map(|l| l.acked.len()).unwrap_or(0) < before + 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if after_checkpoint {
            let from = checkpointed_position(&bin).await;
            while checkpointed_position(&bin).await <= from && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(checkpointed_position(&bin).await > from, "round {round}: no checkpoint under load");
        }
        tokio::time::sleep(Duration::from_millis(rng.below(800))).await;
        bin.kill9();
        stop.store(true, Ordering::Release);
        for c in clients {
            let _ = c.await;
        }
        let l = ledger.lock().expect("ledger");
        assert!(!l.acked.is_empty(), "round {round}: nothing was acknowledged");
    }
    let bin = start(dir.path());
    let http = reqwest::Client::new();
    // Everything acknowledged becomes queryable (the replay of four rounds' backlog), or the
    // collector's own account of why not.
    let t0 = std::time::Instant::now();
    let r = http.post(format!("{}/api/flush?timeout_ms=120000", bin.http)).send().await.expect("flush");
    if r.status() != 200 {
        let health = http.get(format!("{}/healthz", bin.http)).send().await.expect("healthz").text().await;
        let log = bin.log.lock().map(|l| l.join("\n")).unwrap_or_default();
        panic!("flush answered {} after {:?}; healthz {health:?}; log:\n{log}", r.status(), t0.elapsed());
    }
    eprintln!("kill -9 test: final replay flushed in {:?}", t0.elapsed());
    if let Ok(l) = bin.log.lock() {
        for line in l.iter().filter(|l| l.contains("replay") || l.contains("caught up") || l.contains("WARN")) {
            eprintln!("  {line}");
        }
    }
    // Row order is log order: the DuckDB writer appends records in position order. Read in pages:
    // a fast box sends more spans than one SQL answer may hold (its row cap).
    const PAGE: usize = 50_000;
    let mut stored: Vec<String> = Vec::new();
    loop {
        let sql = format!("SELECT span_id FROM spans ORDER BY rowid LIMIT {PAGE} OFFSET {}", stored.len());
        let rows = sql_at(&http, &bin.http, &sql).await;
        let n = rows.len();
        stored.extend(rows.into_iter().map(|r| r[0].as_str().unwrap_or_default().to_string()));
        if n < PAGE {
            break;
        }
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in &stored {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "no span is stored twice: {} duplicated", dups.len());
    let (acked, maybe) = {
        let l = ledger.lock().expect("ledger");
        (l.acked.clone(), l.maybe.clone())
    };
    let sent = next.load(Ordering::Acquire);
    let mut owner: HashMap<String, u64> = HashMap::new();
    for seq in 0..sent {
        for id in span_ids(&request_of(seq, spans)) {
            owner.insert(id, seq);
        }
    }
    for seq in &acked {
        for id in span_ids(&request_of(*seq, spans)) {
            assert!(counts.contains_key(id.as_str()), "acknowledged request {seq} lost span {id}");
        }
    }
    let mut stored_seqs: Vec<u64> = Vec::new();
    for id in &stored {
        let seq = *owner.get(id).unwrap_or_else(|| panic!("stored span {id} was never sent"));
        assert!(acked.contains(&seq) || maybe.contains(&seq), "request {seq} was neither acknowledged nor in flight");
        if stored_seqs.last() != Some(&seq) {
            stored_seqs.push(seq);
        }
    }
    // A request is stored whole or not at all.
    for seq in &stored_seqs {
        for id in span_ids(&request_of(*seq, spans)) {
            assert!(counts.contains_key(id.as_str()), "request {seq} stored in part");
        }
    }
    assert_eq!(stored.len(), stored_seqs.len() * spans);
    eprintln!("kill -9 test: {} requests of {spans} spans stored, {} acknowledged", stored_seqs.len(), acked.len());

    // A clean run fed the same records in the same order has the same rollup and states.
    let clean = common::spawn_with(|a| {
        a.session_idle_secs = 1_000_000_000;
        a.session_stuck_secs = 1_000_000_000;
        a.session_finish_secs = 1_000_000_000;
    })
    .await;
    for seq in &stored_seqs {
        let r = clean.post("/v1/traces", "application/x-protobuf", request_of(*seq, spans).encode_to_vec()).await;
        assert_eq!(r.status(), 200);
    }
    let rollup = "SELECT hour, agent_id, task_id, model, provider, calls, round(cost_usd, 9), input_tokens, \
                  output_tokens, cache_read_tokens FROM cost_hourly ORDER BY ALL";
    let crashed = sql_at(&http, &bin.http, rollup).await;
    assert!(!crashed.is_empty());
    assert_eq!(crashed, clean.rows(rollup).await, "cost rollup equals a clean run's");
    let calls = "SELECT count(*), sum(input_tokens), round(sum(cost_usd), 9) FROM model_calls";
    assert_eq!(sql_at(&http, &bin.http, calls).await, clean.rows(calls).await);
    let states = "SELECT session_id, status, stuck FROM sessions ORDER BY session_id";
    assert_eq!(sql_at(&http, &bin.http, states).await, clean.rows(states).await, "session states equal");
    clean.shutdown().await;
    bin.kill9();
}

/// The log position DuckDB's file holds (`/metrics`).
async fn checkpointed_position(bin: &Binary) -> u64 {
    metric_at(&bin.http, "agent_console_ingest_log_checkpointed_position ").await as u64
}

/// SSE events (id, type, data) from a `/api/live` response until `want` span events arrived.
async fn read_spans(resp: reqwest::Response, want: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            while let Some(i) = buf.find("\n\n") {
                let event: String = buf.drain(..i + 2).collect();
                let mut id = None;
                let mut kind = None;
                let mut data = None;
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = serde_json::from_str::<Value>(v.trim()).ok();
                    }
                }
                if kind.as_deref() == Some("span") {
                    out.push((id.expect("span events carry ids"), data.unwrap_or(Value::Null)));
                    if out.len() >= want {
                        return;
                    }
                } else if kind.as_deref() == Some("gap") {
                    panic!("unexpected gap: {event}");
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("span events arrive");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_come_before_the_commit_and_keep_their_ids_across_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    // DuckDB commits only on flush / after ten minutes: everything below is in the log only.
    let flags = ["--commit-max-delay-ms", "600000"];
    let bin = spawn_binary(dir.path(), &flags);
    let http = reqwest::Client::new();
    let sse = http.get(format!("{}/api/live?type=span", bin.http)).send().await.expect("sse");
    assert_eq!(sse.status(), 200);
    let a = request(1);
    let b = request(2);
    let reader = tokio::spawn(read_spans(sse, 2 * SPANS_PER_REQUEST));
    for req in [&a, &b] {
        let r = http
            .post(format!("{}/v1/traces", bin.http))
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    let seen = reader.await.expect("reader");
    // Nothing is committed to DuckDB yet, yet every span was streamed.
    let r: Value = http
        .post(format!("{}/api/sql", bin.http))
        .json(&serde_json::json!({ "sql": "SELECT count(*) FROM spans" }))
        .send()
        .await
        .expect("sql")
        .json()
        .await
        .expect("json");
    assert_eq!(r["rows"][0][0], 0, "the stream ran ahead of the DuckDB commit: {r}");
    let a_ids: HashSet<String> = span_ids(&a).into_iter().collect();
    let last_a =
        seen.iter().filter(|(_, d)| a_ids.contains(d["span_id"].as_str().unwrap_or(""))).map(|(i, _)| *i).max();
    let last_a = last_a.expect("a's spans were streamed");
    let b_seen: Vec<(u64, String)> = seen
        .iter()
        .filter(|(_, d)| !a_ids.contains(d["span_id"].as_str().unwrap_or("")))
        .map(|(i, d)| (*i, d["span_id"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(b_seen.len(), SPANS_PER_REQUEST);
    assert!(b_seen.iter().all(|(i, _)| *i > last_a), "ids increase in log order");
    bin.kill9();

    // Restart: the log replays both records. A client that had seen a's messages resumes and
    // gets b's, with the ids it saw before, and nothing of a.
    let bin = spawn_binary(dir.path(), &flags);
    let sse = http
        .get(format!("{}/api/live?type=span", bin.http))
        .header("last-event-id", last_a.to_string())
        .send()
        .await
        .expect("sse");
    let resumed = read_spans(sse, SPANS_PER_REQUEST).await;
    let got: Vec<(u64, String)> =
        resumed.iter().map(|(i, d)| (*i, d["span_id"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(got, b_seen, "the same messages with the same ids");
    assert_eq!(sql_at(&http, &bin.http, "SELECT count(*) FROM spans").await[0][0], 2 * SPANS_PER_REQUEST as u64);
    bin.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_duckdb_wal_is_moved_aside_and_the_log_restores_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = spawn_binary(dir.path(), &[]);
    let http = reqwest::Client::new();
    for seq in 0..5 {
        let r = http
            .post(format!("{}/v1/traces", bin.http))
            .header("content-type", "application/x-protobuf")
            .body(request(seq).encode_to_vec())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    // Committed to DuckDB, not checkpointed: in memory only (the collector writes no DuckDB WAL).
    assert_eq!(sql_at(&http, &bin.http, "SELECT count(*) FROM spans").await[0][0], 5 * SPANS_PER_REQUEST as u64);
    bin.kill9();
    let wal = dir.path().join("agent-console.duckdb.wal");
    assert!(!wal.exists(), "the collector writes no DuckDB WAL");
    // A WAL left by a collector that wrote one (an older version, or DuckDB opened directly):
    // written here by DuckDB itself, then damaged. Row changes to an existing table, as the
    // collector's were: a damaged catalog entry (CREATE TABLE) can be replayed half-way and
    // crash DuckDB later, which no salvage of ours can prevent.
    {
        let db = duckdb::Connection::open(dir.path().join("agent-console.duckdb")).expect("open directly");
        db.execute_batch(
            "PRAGMA disable_checkpoint_on_shutdown; SET wal_autocheckpoint = '1GB';
             UPDATE ingest_log_state SET updated = now();
             UPDATE ingest_log_state SET updated = now();
             UPDATE ingest_log_state SET updated = now();",
        )
        .expect("write a WAL");
    }
    let len = std::fs::metadata(&wal).expect("DuckDB kept a WAL").len();
    assert!(len > 64);
    let mut bytes = std::fs::read(&wal).expect("read wal");
    for b in bytes.iter_mut().skip(16).take(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&wal, bytes).expect("damage wal");

    let bin = spawn_binary(dir.path(), &[]);
    let got = sql_at(&http, &bin.http, "SELECT count(*), count(DISTINCT span_id) FROM spans").await;
    assert_eq!(got[0], vec![Value::from(5 * SPANS_PER_REQUEST as u64), Value::from(5 * SPANS_PER_REQUEST as u64)]);
    let health: Value =
        http.get(format!("{}/healthz", bin.http)).send().await.expect("healthz").json().await.expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    let aside = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".wal.damaged-"));
    // Every entry after the header is damaged: nothing in it can be replayed, so it is moved aside
    // whether DuckDB refuses it or reads it as torn (before, a torn WAL left in place crashed the
    // WAL-less attach's first checkpoint in 1 of 10 runs).
    assert!(aside && bin.said("moved it aside"), "the damaged WAL is kept aside for inspection");
    bin.kill9();
}

/// Found by the soak (`tests/clients/soak.sh`): a restart that raced its dying predecessor got
/// DuckDB's lock conflict, took it for a damaged WAL and moved the live WAL aside. A second
/// collector on the same directory must refuse to start, say why, and leave the WAL alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_collector_on_the_same_directory_refuses_and_leaves_the_wal_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = spawn_binary(dir.path(), &[]);
    let http = reqwest::Client::new();
    let export = |seq: u64| {
        http.post(format!("{}/v1/traces", bin.http))
            .header("content-type", "application/x-protobuf")
            .body(request(seq).encode_to_vec())
            .send()
    };
    for seq in 0..3 {
        assert_eq!(export(seq).await.expect("post").status(), 200);
    }
    assert_eq!(sql_at(&http, &bin.http, "SELECT count(*) FROM spans").await[0][0], 3 * SPANS_PER_REQUEST as u64);
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = files(dir.path());

    let second = std::process::Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0"])
        .args(["--duckdb-memory-limit", "256MB"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second collector");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second collector must not start: {said}");
    assert!(said.contains("in use by another process"), "{said}");
    assert!(!said.contains("moved it aside"), "{said}");
    assert_eq!(files(dir.path()), before, "the second collector created, moved or removed nothing");
    let aside = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".wal.damaged-"));
    assert!(!aside, "nothing moved aside");

    // The first collector is unaffected, and everything survives its own kill -9.
    assert_eq!(export(3).await.expect("post").status(), 200);
    assert_eq!(sql_at(&http, &bin.http, "SELECT count(*) FROM spans").await[0][0], 4 * SPANS_PER_REQUEST as u64);
    bin.kill9();
    let bin = spawn_binary(dir.path(), &[]);
    assert_eq!(sql_at(&http, &bin.http, "SELECT count(*) FROM spans").await[0][0], 4 * SPANS_PER_REQUEST as u64);
    assert!(!bin.said("moved it aside"));
    bin.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_duckdb_fills_the_log_to_its_cap_then_everything_acknowledged_is_stored() {
    let app = common::spawn_with(|a| {
        a.max_request_bytes = 256 * 1024;
        a.ingest_log_max_pending_mib = 0; // the cap becomes one request's size
    })
    .await;
    let store = app.running.as_ref().expect("running").store.clone();
    store.shared.fail_commits.store(u32::MAX, Ordering::Release);
    let mut acked = 0u64;
    let mut refused = None;
    for seq in 0..400 {
        let r = post(&app, "/v1/traces", "application/x-protobuf", request(seq).encode_to_vec()).await;
        match r.status().as_u16() {
            200 => acked += 1,
            503 => {
                refused = Some(r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string));
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    let retry_after = refused.expect("the log cap was reached and refused with 503");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(acked > 0);
    let health: Value =
        app.client.get(format!("{}/healthz", app.http)).send().await.expect("h").json().await.expect("j");
    assert_eq!(health["status"], "degraded", "{health}");
    // DuckDB recovers: every acknowledged export is stored, once.
    store.shared.fail_commits.store(0, Ordering::Release);
    let n = app.scalar("SELECT count(*) FROM spans").await;
    assert_eq!(n, acked * SPANS_PER_REQUEST as u64);
    app.shutdown().await;
}

/// The counter `name` in `/metrics`.
async fn metric(app: &common::TestApp, name: &str) -> f64 {
    metric_at(&app.http, name).await
}

/// A value from the `/metrics` of the collector at `base`.
async fn metric_at(base: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.expect("m").text().await.expect("t");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_behind_paces_exports_then_takes_them_and_loses_nothing() {
    // A small budget (hand-off + writer's queue) and a DuckDB that cannot commit: the writer's
    // queue fills, the pipeline stops taking records, the two together come within half a
    // hand-off of the budget, and exports start to wait.
    let app = common::spawn_with(|a| {
        a.pipeline_handoff_mib = 1;
        a.writer_queue_mib = 1;
    })
    .await;
    let store = app.running.as_ref().expect("running").store.clone();
    store.shared.fail_commits.store(u32::MAX, Ordering::Release);
    assert_eq!(metric(&app, "agent_console_paced_requests_total").await, 0.0);
    let mut acked = 0u64;
    let mut paced = 0.0;
    for seq in 0..400 {
        let r = post(&app, "/v1/traces", "application/x-protobuf", request(seq).encode_to_vec()).await;
        // Pacing delays; it never refuses (the log's cap does that, 1 GiB here).
        assert_eq!(r.status(), 200);
        acked += 1;
        paced = metric(&app, "agent_console_paced_requests_total").await;
        if paced >= 2.0 {
            break;
        }
    }
    assert!(paced >= 2.0, "no export waited after {acked} exports");
    assert!(metric(&app, "agent_console_paced_seconds_total").await > 0.0);
    // A hook call is not paced (an agent waits on it): still behind, it does not wait.
    let hook = common::fixture("claude-code/hooks/01-SessionStart.json");
    let r = post(&app, "/hooks/claude", "application/json", hook).await;
    assert_eq!(r.status(), 200);
    assert_eq!(metric(&app, "agent_console_paced_requests_total").await, paced);
    // DuckDB recovers: what was acknowledged while paced (and past the hand-off) is stored once.
    store.shared.fail_commits.store(0, Ordering::Release);
    let ours = "service_name IN ('researcher', 'coder', 'reviewer', 'planner')";
    let n = app.scalar(&format!("SELECT count(*) FROM spans WHERE {ours}")).await;
    assert_eq!(n, acked * SPANS_PER_REQUEST as u64);
    let distinct = app.scalar(&format!("SELECT count(DISTINCT trace_id || span_id) FROM spans WHERE {ours}")).await;
    assert_eq!(distinct, n);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_and_failed_appends_lose_and_duplicate_nothing() {
    let app = common::spawn().await;
    let store = app.running.as_ref().expect("running").store.clone();
    let body = common::fixture("langchain-openinference/traces-1.pb");
    // Commits fail for a while (a full disk): exports are acknowledged (durable in the log) and
    // stored once DuckDB takes them; the dedup memory did not swallow them.
    store.shared.fail_commits.store(3, Ordering::Release);
    let r = post(&app, "/v1/traces", "application/x-protobuf", body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.scalar("SELECT count(*) FROM model_calls").await, 2);
    // The log itself cannot write: 503, and the client's retry is stored once.
    let log = store.log_state().clone();
    log.fail_appends.store(1, Ordering::Release);
    let mut other = request(99);
    other.resource_spans[0].scope_spans[0].spans.truncate(4);
    let r = post(&app, "/v1/traces", "application/x-protobuf", other.encode_to_vec()).await;
    assert_eq!(r.status(), 503);
    let r = post(&app, "/v1/traces", "application/x-protobuf", other.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let ids: Vec<String> = span_ids(&other).into_iter().map(|s| format!("'{s}'")).collect();
    let q = format!("SELECT count(*) FROM spans WHERE span_id IN ({})", ids.join(","));
    assert_eq!(app.scalar(&q).await, 4);
    app.shutdown().await;
}

/// POST without the harness's flush: these tests make DuckDB fail on purpose, so an
/// acknowledged export is not necessarily committed yet.
async fn post(app: &common::TestApp, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.http))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("post")
}

fn span_with_tokens(id: u8, input: i64) -> Span {
    Span {
        trace_id: vec![9; 16],
        span_id: vec![id; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: BASE_NS,
        end_time_unix_nano: BASE_NS + 1_000_000,
        attributes: vec![
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.request.model", "gpt-4o"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("session.id", "absurd"),
            kv_int("gen_ai.usage.input_tokens", input),
            kv_int("gen_ai.usage.output_tokens", 10),
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_token_count_is_rejected_and_poisons_nothing() {
    let app = common::spawn().await;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span_with_tokens(1, i64::MAX), span_with_tokens(2, 1000)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = post(&app, "/v1/traces", "application/json", serde_json::to_vec(&otlp_json(&req)).expect("json")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "1", "{body}");
    assert!(body["partialSuccess"]["errorMessage"].as_str().unwrap_or("").contains("out of range"), "{body}");
    // The same key again, and the cost API: nothing failed.
    let again = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span_with_tokens(3, 500)], ..Default::default() }],
            ..Default::default()
        }],
    };
    let r = post(&app, "/v1/traces", "application/x-protobuf", again.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.scalar("SELECT sum(input_tokens) FROM model_calls").await, 1500);
    assert_eq!(app.scalar("SELECT sum(input_tokens) FROM cost_hourly").await, 1500);
    let cost = app.client.get(format!("{}/api/cost?group_by=model", app.http)).send().await.expect("cost");
    assert_eq!(cost.status(), 200);
    app.shutdown().await;
}

/// The OTLP/JSON form of a trace request (hex ids, string int64s), as an SDK sends it.
fn otlp_json(req: &ExportTraceServiceRequest) -> Value {
    let spans: Vec<Value> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| {
            let attrs: Vec<Value> = s
                .attributes
                .iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i)) => {
                            serde_json::json!({ "intValue": i.to_string() })
                        }
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(t)) => {
                            serde_json::json!({ "stringValue": t })
                        }
                        _ => serde_json::json!({}),
                    };
                    serde_json::json!({ "key": kv.key, "value": v })
                })
                .collect();
            serde_json::json!({
                "traceId": hex::encode(&s.trace_id),
                "spanId": hex::encode(&s.span_id),
                "name": s.name,
                "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                "endTimeUnixNano": s.end_time_unix_nano.to_string(),
                "attributes": attrs,
            })
        })
        .collect();
    serde_json::json!({ "resourceSpans": [{ "scopeSpans": [{ "spans": spans }] }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_400k_empty_records_is_refused_before_decoding() {
    let app = common::spawn().await;
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); 400_000], ..Default::default() }],
            ..Default::default()
        }],
    };
    let body = req.encode_to_vec();
    assert!(body.len() < 1_000_000, "{} bytes", body.len());
    let r = app.post("/v1/logs", "application/x-protobuf", body).await;
    assert_eq!(r.status(), 413);
    let text = r.text().await.unwrap_or_default();
    assert!(text.contains("400000") && text.contains("limit"), "{text}");
    // The server is fine and stored nothing of it.
    assert_eq!(app.scalar("SELECT count(*) FROM logs").await, 0);
    app.shutdown().await;
}

/// DuckDB keeps no WAL: a pause and a resume are durable in the control tables (checkpointed
/// before they are answered), but the session row's status reaches the file only at the next
/// checkpoint. After `kill -9` the session must show what control last decided (running), not
/// the older status of DuckDB's last checkpoint (paused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_before_kill_9_is_still_a_resume_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let status_sql = "SELECT status FROM sessions WHERE session_id = 'dur-ctl-1'";
    let wait_for = |bin_http: String, want: &'static str| {
        let http = http.clone();
        async move {
            for _ in 0..300 {
                let rows = sql_at(&http, &bin_http, status_sql).await;
                if rows.first().and_then(|r| r.first()).and_then(Value::as_str) == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("session never showed {want}: {:?}", sql_at(&http, &bin_http, status_sql).await);
        }
    };
    let bin = spawn_binary(dir.path(), &[]);
    let start = serde_json::json!({
        "session_id": "dur-ctl-1", "hook_event_name": "SessionStart", "cwd": "/tmp",
        "transcript_path": "/tmp/dur-ctl-1.jsonl", "source": "startup",
    });
    let r = http.post(format!("{}/hooks/claude", bin.http)).json(&start).send().await.expect("hook");
    assert_eq!(r.status(), 200);
    let command = |kind: &str| {
        http.post(format!("{}/api/sessions/dur-ctl-1/commands", bin.http))
            .json(&serde_json::json!({ "kind": kind, "reason": "durability test" }))
            .send()
    };
    assert_eq!(command("pause").await.expect("pause").status(), 201);
    wait_for(bin.http.clone(), "paused").await;
    // The resume's checkpoint holds the row as `paused`; the row's change back is committed
    // after it and dies with the process.
    assert_eq!(command("resume").await.expect("resume").status(), 201);
    wait_for(bin.http.clone(), "running").await;
    bin.kill9();

    let bin = spawn_binary(dir.path(), &[]);
    wait_for(bin.http.clone(), "running").await;
    let cmds: Value = http
        .get(format!("{}/api/sessions/dur-ctl-1/commands", bin.http))
        .send()
        .await
        .expect("commands")
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> =
        cmds["commands"].as_array().map(|a| a.iter().filter_map(|c| c["kind"].as_str()).collect()).unwrap_or_default();
    assert!(kinds.contains(&"pause") && kinds.contains(&"resume"), "both commands survived: {cmds}");
    bin.kill9();
}

/// A plain `CHECKPOINT` is refused (DuckDB's checkpoint lock is held) and nothing up to
/// `target` is checkpointed yet.
fn expect_checkpoint_refused(store: &agent_console::store::Store, target: u64) {
    let refused = store.reader.connection().expect("connection").execute_batch("CHECKPOINT");
    let refused = refused.expect_err("a plain checkpoint is refused while the lock is held").to_string();
    assert!(refused.contains("Cannot CHECKPOINT"), "{refused}");
    assert!(store.log_state().checkpointed_pos.load(Ordering::Acquire) < target, "nothing checkpointed yet");
}

/// A change the ingest log does not hold: `Store::apply` checkpoints before it answers.
async fn apply_a_change(store: &agent_console::store::Store) {
    store
        .apply(|c| {
            c.execute_batch("UPDATE tasks SET title = title WHERE false")?;
            Ok(())
        })
        .await
        .expect("apply");
}

/// The apply's checkpoint covers log position `target`.
fn expect_checkpointed(store: &agent_console::store::Store, target: u64) {
    let checkpointed = store.log_state().checkpointed_pos.load(Ordering::Acquire);
    assert!(checkpointed >= target, "the apply's checkpoint covers position {target}: {checkpointed}");
}

/// The soak's failure: a reader that started before a committed update keeps that transaction,
/// and with it a share of DuckDB's checkpoint lock, alive for its snapshot, so every plain
/// checkpoint is refused while the reader runs (here a streamed CSV answer whose client reads
/// nothing). A checkpoint that must happen evicts the reader: its body ends with the retry
/// error, the checkpoint covers what was committed, and `/metrics` counts the eviction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_evicts_readers_whose_snapshots_hold_its_lock() {
    let app = common::spawn().await;
    let store = app.running.as_ref().expect("running").store.clone();
    let r = app.post("/v1/traces", "application/x-protobuf", request(7).encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    store.flush(None).await.expect("flush");

    // 100,000 rows of 2 kB: far more than the stream's channel and the sockets hold, so the
    // query stops in the middle, its snapshot open, once the client stops reading. (It reads a
    // table of the database: a query of `range` alone opens no transaction there.)
    let stalled = app
        .client
        .post(format!("{}/api/sql?format=csv", app.http))
        .json(&serde_json::json!({ "sql": "SELECT i, repeat('x', 2000) AS pad, (SELECT count(*) FROM spans) AS n FROM range(100000) t(i)" }))
        .send()
        .await
        .expect("stream");
    assert_eq!(stalled.status(), 200);

    // A commit after the reader started (the writer updates its log position in every one).
    let r = app.post("/v1/traces", "application/x-protobuf", request(8).encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let target = store.flush(None).await.expect("flush");
    expect_checkpoint_refused(&store, target);

    apply_a_change(&store).await;
    expect_checkpointed(&store, target);

    // The stalled client now reads: what was buffered, then the error line and an aborted body.
    let mut body = stalled.bytes_stream();
    let mut tail = Vec::new();
    let mut aborted = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(b) => {
                tail.extend_from_slice(&b);
                let keep = tail.len().saturating_sub(4096);
                tail.drain(..keep);
            }
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    let tail = String::from_utf8_lossy(&tail);
    assert!(aborted, "the evicted stream's body is aborted");
    assert!(tail.contains("#ERROR:") && tail.contains("DuckDB had to checkpoint"), "{tail}");

    let metrics = app.client.get(format!("{}/metrics", app.http)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics body");
    let evicted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agent_console_queries_evicted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("queries_evicted_total in /metrics");
    assert!(evicted >= 1.0, "{evicted}");
    // And the store still answers.
    assert!(common::as_i64(&app.scalar("SELECT count(*) FROM spans").await) > 0);
    app.shutdown().await;
}

/// Without DuckDB's WAL a commit is in memory until a checkpoint, and a plain `CHECKPOINT` is
/// refused while another connection holds DuckDB's checkpoint lock (a write transaction). A
/// change that must be durable (`Store::apply`) then waits for the lock (bounded) instead of
/// going unsaved: here the checkpoint covers the ingested records once the holder commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_waits_for_a_transaction_holding_its_lock() {
    let app = common::spawn().await;
    let store = app.running.as_ref().expect("running").store.clone();
    let r = app.post("/v1/traces", "application/x-protobuf", request(7).encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let target = store.flush(None).await.expect("flush");
    assert!(target > 0);

    let holder = store.reader.connection().expect("connection");
    holder.execute_batch("BEGIN TRANSACTION; UPDATE tasks SET title = title WHERE false;").expect("hold the lock");
    expect_checkpoint_refused(&store, target);

    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("COMMIT").expect("commit");
    });
    apply_a_change(&store).await;
    release.join().expect("holder");
    expect_checkpointed(&store, target);
    app.shutdown().await;
}

/// A soak found DuckDB invalidating its database (a `COMMIT` that ran out of memory left a
/// corrupt row group; the next checkpoint invalidated the database) while the writer retried
/// forever. Now the writer stops and asks for a restart (the binary restarts in-process on the
/// same addresses), the shutdown does not hang on it, and the restart replays the log: every
/// acknowledged export is stored once, including those acknowledged after the invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_database_stops_the_writer_and_a_restart_stores_everything_acknowledged() {
    let mut app = common::spawn().await;
    for seq in 0..3 {
        assert_eq!(
            post(&app, "/v1/traces", "application/x-protobuf", request(seq).encode_to_vec()).await.status(),
            200
        );
    }
    app.flush().await;
    let running = app.running.take().expect("running");
    let restart = running.restart_token();
    assert!(!restart.is_cancelled());
    running.store.shared.invalidate_commits.store(1, Ordering::Release);
    for seq in 3..6 {
        assert_eq!(
            post(&app, "/v1/traces", "application/x-protobuf", request(seq).encode_to_vec()).await.status(),
            200
        );
    }
    tokio::time::timeout(Duration::from_secs(60), restart.cancelled()).await.expect("the writer asked for a restart");
    let health: Value =
        app.client.get(format!("{}/healthz", app.http)).send().await.expect("h").json().await.expect("j");
    assert_ne!(health["status"], "ok", "{health}");
    // Exports are still acknowledged (the log takes them), and nothing is committed any more.
    assert_eq!(post(&app, "/v1/traces", "application/x-protobuf", request(6).encode_to_vec()).await.status(), 200);
    let args = running.restart_args({
        let mut a = agent_console::config::ServeArgs::defaults();
        a.data_dir = app.dir.path().to_path_buf();
        a.duckdb_memory_limit = "512MB".into();
        a
    });
    assert_eq!(args.http_addr, running.http_addr, "the restart keeps the addresses");
    tokio::time::timeout(Duration::from_secs(60), running.shutdown()).await.expect("the shutdown does not hang");
    let again = agent_console::app::start(args).await.expect("start again on the same directory");
    assert!(!again.restart_token().is_cancelled());
    let n = sql_at(&app.client, &app.http, "SELECT count(*) FROM spans").await;
    assert_eq!(n[0][0], 7 * SPANS_PER_REQUEST as u64);
    let dupes = sql_at(&app.client, &app.http, "SELECT count(*) - count(DISTINCT span_id) FROM spans").await;
    assert_eq!(dupes[0][0], 0);
    again.shutdown().await;
}

/// The in-process restart after an invalidation (`app::serve`, what the binary runs) must not
/// give up when a reopen fails. A soak found it failing: DuckDB hands back its invalidated
/// instance while a handle on it is still open, and a full disk fails the reopen too. Here the
/// first two reopens fail (injected into the start `serve_with` calls); `serve` tries again every
/// second, then the collector starts on the same addresses and stores every acknowledged export
/// once, including those acknowledged after the invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_reopen_fails_is_tried_again_and_stores_everything_acknowledged() {
    use agent_console::app::{self, AppError};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = agent_console::config::ServeArgs::defaults();
    args.data_dir = dir.path().to_path_buf();
    args.duckdb_memory_limit = "512MB".into();
    for a in [&mut args.grpc_addr, &mut args.http_addr, &mut args.pg_addr] {
        *a = "127.0.0.1:0".parse().expect("addr");
    }
    let (tx, mut started) =
        tokio::sync::mpsc::unbounded_channel::<(std::net::SocketAddr, Arc<agent_console::store::StoreShared>, u32)>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let starts = Arc::new(AtomicU64::new(0));
    let counted = starts.clone();
    let serve = tokio::spawn(app::serve_with(
        args,
        async move {
            let _ = stopped.await;
        },
        move |r, failed| {
            let _ = tx.send((r.http_addr, r.store.shared.clone(), failed));
        },
        move |a| {
            let n = counted.fetch_add(1, Ordering::AcqRel) + 1;
            async move {
                if n == 2 || n == 3 {
                    Err(AppError::Threads(std::io::Error::other("injected: the old database is still open")))
                } else {
                    app::start(a).await
                }
            }
        },
    ));
    let (http, shared, failed) = started.recv().await.expect("first start");
    assert_eq!(failed, 0);
    let client = reqwest::Client::new();
    // `None`: the collector was restarting (the restart follows the first commit that fails).
    let post = |seq: u64| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{http}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(request(seq).encode_to_vec())
                .send()
                .await
                .ok()
                .map(|r| r.status())
        }
    };
    for seq in 0..3 {
        assert_eq!(post(seq).await, Some(reqwest::StatusCode::OK));
    }
    shared.invalidate_commits.store(1, Ordering::Release);
    // The first one is acknowledged before any commit can fail (the log takes it).
    assert_eq!(post(3).await, Some(reqwest::StatusCode::OK));
    let (mut acked, mut unanswered) = (4u64, 0u64);
    for seq in 4..6 {
        match post(seq).await {
            Some(s) if s == reqwest::StatusCode::OK => acked += 1,
            Some(s) => panic!("export {seq}: {s}"),
            None => unanswered += 1,
        }
    }
    drop(shared);
    let (http2, _, failed) =
        tokio::time::timeout(Duration::from_secs(60), started.recv()).await.expect("restarted").expect("second start");
    assert_eq!(http2, http, "the restart keeps the addresses");
    assert_eq!(failed, 2, "two reopens failed and were tried again");
    assert_eq!(starts.load(Ordering::Acquire), 4);
    let base = format!("http://{http}");
    let n = sql_at(&client, &base, "SELECT count(*) FROM spans").await;
    // Every acknowledged export; one cut off by the restart may or may not have been logged.
    let stored = n[0][0].as_u64().expect("count");
    let per = SPANS_PER_REQUEST as u64;
    assert!(stored >= acked * per && stored <= (acked + unanswered) * per, "{stored} spans, {acked} acked");
    assert_eq!(stored % per, 0);
    let dupes = sql_at(&client, &base, "SELECT count(*) - count(DISTINCT span_id) FROM spans").await;
    assert_eq!(dupes[0][0], 0);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), serve).await.expect("serve stops").expect("join").expect("serve ok");
}

/// Serve settings that stream a transaction's rows into DuckDB in 1 MiB chunks and commit only
/// on a flush (no row, byte or time bound is reached in these tests).
fn streaming_args(dir: &std::path::Path) -> agent_console::config::ServeArgs {
    let mut args = agent_console::config::ServeArgs::defaults();
    args.data_dir = dir.to_path_buf();
    args.duckdb_memory_limit = "512MB".into();
    args.commit_stream_mib = 1;
    args.commit_max_mib = 1024;
    args.commit_max_delay_ms = 600_000;
    args.max_batch_rows = 100_000_000;
    for a in [&mut args.grpc_addr, &mut args.http_addr, &mut args.pg_addr] {
        *a = "127.0.0.1:0".parse().expect("addr");
    }
    args
}

/// POST export `seq` (256 spans) to `base`; it is acknowledged.
async fn post_export(client: &reqwest::Client, base: &str, seq: u64) {
    let r = client
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request_of(seq, 256).encode_to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
}

/// POST exports of 256 spans to `base` until the writer streamed `chunks` chunks into its open
/// transaction; returns how many were acknowledged (all of them: nothing fails here).
async fn post_until_streamed(client: &reqwest::Client, base: &str, chunks: f64) -> u64 {
    let mut acked = 0u64;
    while metric_at(base, "agent_console_commit_streamed_chunks_total").await < chunks {
        assert!(acked < 400, "no chunk streamed after {acked} exports");
        post_export(client, base, acked).await;
        acked += 1;
    }
    acked
}

/// `--commit-stream-mib`: the rows of a large transaction go into DuckDB in chunks before its
/// commit (their memory freed), and what it commits equals what was sent: every span once, the
/// cost rollup equal to the calls it sums. A control change meanwhile commits in its own
/// transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_streamed_in_chunks_commits_every_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = agent_console::app::start(streaming_args(dir.path())).await.expect("start");
    let base = format!("http://{}", running.http_addr);
    let client = reqwest::Client::new();
    let acked = post_until_streamed(&client, &base, 2.0).await;
    // A control change (`Store::apply_now`, its own transaction) while the streamed one is open:
    // that one commits first, then the change.
    let r = client
        .put(format!("{base}/api/approvals/policy"))
        .json(&serde_json::json!({ "rules": [] }))
        .send()
        .await
        .expect("put policy");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let n = sql_at(&client, &base, "SELECT count(*), count(DISTINCT span_id) FROM spans").await;
    assert_eq!(n[0][0], acked * 256);
    assert_eq!(n[0][1], acked * 256);
    let sums = sql_at(
        &client,
        &base,
        "SELECT (SELECT count(*) FROM model_calls), (SELECT CAST(sum(calls) AS BIGINT) FROM cost_hourly),
                (SELECT CAST(sum(input_tokens) AS BIGINT) FROM model_calls),
                (SELECT CAST(sum(input_tokens) AS BIGINT) FROM cost_hourly)",
    )
    .await;
    assert!(sums[0][0].as_u64().expect("calls") > 0, "{sums:?}");
    assert_eq!(sums[0][0], sums[0][1], "{sums:?}");
    assert_eq!(sums[0][2], sums[0][3], "{sums:?}");
    running.shutdown().await;
}

/// A streamed transaction that fails cannot be retried from memory (its streamed rows are
/// freed): the collector restarts in-process on the same addresses, replays the ingest log and
/// commits those records whole (nothing streamed during the replay), and every acknowledged
/// export is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_transaction_that_fails_is_replayed_whole_after_a_restart() {
    use agent_console::app;
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, mut started) =
        tokio::sync::mpsc::unbounded_channel::<(std::net::SocketAddr, Arc<agent_console::store::StoreShared>)>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(app::serve(
        streaming_args(dir.path()),
        async move {
            let _ = stopped.await;
        },
        move |r, _| {
            let _ = tx.send((r.http_addr, r.store.shared.clone()));
        },
    ));
    let (http, shared) = started.recv().await.expect("first start");
    // Armed first: whatever commits the streamed transaction (the flush below, or the 30 s
    // checkpoint timer on a slow machine) fails.
    shared.fail_streamed_commits.store(1, Ordering::Release);
    let base = format!("http://{http}");
    let client = reqwest::Client::new();
    let acked = post_until_streamed(&client, &base, 2.0).await;
    // The flush makes the transaction commit, which fails: it is answered 503 (ask again), not
    // held until the restart's shutdown gives up on it (a connection cut by the restart is the
    // other outcome).
    let flushed = client.post(format!("{base}/api/flush")).timeout(Duration::from_secs(30)).send().await;
    if let Ok(r) = flushed {
        assert_eq!(r.status(), 503, "{:?}", r.headers());
        assert!(r.headers().contains_key("retry-after"));
    }
    drop(shared);
    let (http2, _) =
        tokio::time::timeout(Duration::from_secs(60), started.recv()).await.expect("restarted").expect("second start");
    assert_eq!(http2, http, "the restart keeps the addresses");
    let n = sql_at(&client, &base, "SELECT count(*), count(DISTINCT span_id) FROM spans").await;
    assert_eq!(n[0][0], acked * 256);
    assert_eq!(n[0][1], acked * 256);
    assert_eq!(
        metric_at(&base, "agent_console_commit_streamed_chunks_total").await,
        0.0,
        "the replayed records were committed whole"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(60), serve).await.expect("serve stops").expect("join").expect("serve ok");
}

/// The alert evaluator's seed (in `start`, after a restart) waits until what the evaluator took in
/// is committed. Under a long commit delay (10 minutes here) that commit used to come only at the
/// end of the log's replay, which waited at the locked evaluator: `start` stalled for the seed's
/// 60 s deadline (a CI failure). The seed now asks the writer for that commit
/// (`Store::commit_through`). Here the evaluator took in exports the writer holds uncommitted,
/// and a seed returns with them committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_seed_asks_for_the_commit_it_waits_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = streaming_args(dir.path());
    args.commit_stream_mib = 0;
    let running = agent_console::app::start(args).await.expect("start");
    let base = format!("http://{}", running.http_addr);
    let client = reqwest::Client::new();
    for seq in 0..20 {
        post_export(&client, &base, seq).await;
    }
    let observed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let p = running.alerts.observed_through();
            if p > 0 {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the evaluator takes the exports in");
    assert!(*running.store.shared.committed_pos.borrow() < observed, "nothing committed yet (10 minute delay)");
    // Within the 30 s after `start` at which the checkpoint timer would commit them anyway.
    tokio::time::timeout(Duration::from_secs(15), running.alerts.seed(&running.store))
        .await
        .expect("seeded without waiting for the commit delay");
    assert!(*running.store.shared.committed_pos.borrow() >= observed);
    running.shutdown().await;
}

/// The writer attaches the database file again once the row groups it wrote hold
/// `--duckdb-reattach-mib` of DuckDB's heap (`store/reattach.rs`). Under exports and SQL readers
/// running alongside: every acknowledged span is stored once, each reader gets its answer or a
/// 503 to retry, the count readers see never goes down, and the file was attached again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attaching_the_database_again_under_exports_and_readers_loses_nothing() {
    let app = common::spawn_with(|a| {
        a.duckdb_row_group_size = 2048;
        a.duckdb_reattach_mib = 1; // ~45,000 rows at 2,048-row groups
        a.checkpoint_mib = 1;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (http, client, stop) = (app.http.clone(), app.client.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut answered, mut retried, mut last) = (0u32, 0u32, 0i64);
                while !stop.load(Ordering::Acquire) {
                    let r = client
                        .post(format!("{http}/api/sql"))
                        .json(&serde_json::json!({ "sql": "SELECT count(*), sum(duration_ms) FROM spans" }))
                        .send()
                        .await
                        .expect("sql request");
                    match r.status().as_u16() {
                        200 => {
                            let v: Value = r.json().await.expect("json");
                            let n = v["rows"][0][0].as_i64().expect("count");
                            assert!(n >= last, "the count went down: {last} -> {n}");
                            last = n;
                            answered += 1;
                        }
                        503 => {
                            assert!(r.headers().contains_key("retry-after"), "503 carries Retry-After");
                            retried += 1;
                        }
                        s => panic!("reader got {s}: {:?}", r.text().await),
                    }
                }
                (answered, retried)
            })
        })
        .collect();
    let mut acked = 0u64;
    for seq in 0..40 {
        let r = post(&app, "/v1/traces", "application/x-protobuf", request_of(seq, 2048).encode_to_vec()).await;
        assert_eq!(r.status(), 200);
        acked += 2048;
    }
    app.flush().await;
    // The last checkpoint (and so the last reattach it may bring) can follow the flush.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while metric(&app, "agent_console_duckdb_reattached_total").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the database was never attached again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Release);
    let mut answered = 0;
    for r in readers {
        answered += r.await.expect("reader").0;
    }
    assert!(answered > 0);
    assert_eq!(app.scalar("SELECT count(*) FROM spans").await, acked);
    assert_eq!(app.scalar("SELECT count(DISTINCT span_id) FROM spans").await, acked);
    // And what was attached again takes new rows.
    let r = post(&app, "/v1/traces", "application/x-protobuf", request_of(1000, 32).encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.scalar("SELECT count(*) FROM spans").await, acked + 32);
    app.shutdown().await;
}
