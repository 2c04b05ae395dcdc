//! The DuckDB writer runs first (`src/priority.rs`): in the real binary every other thread of
//! the collector (but `writer-prep`, part of the writer's stage) runs below it: bulk work
//! `--background-nice` steps, the acknowledgement and live path (log, pipeline, runtime) half
//! as many, and `--background-nice 0` leaves them
//! all at the same priority. Read from `/proc/<pid>/task/*/stat` while it serves an export and a
//! query (so the decode, log, pipeline and reader threads have all run). While the writer is
//! behind, the latency tier yields to it (`SCHED_BATCH`), and becomes normal threads again after.
#![cfg(target_os = "linux")]

mod common;
use common::{fixture, spawn_binary};
use std::collections::BTreeMap;

/// Thread name -> one numeric field of `/proc/<pid>/task/*/stat` (`field`, counted from 1 as in
/// proc(5)) for each thread with that name.
fn stat_field_by_thread(pid: u32, field: usize) -> BTreeMap<String, Vec<i64>> {
    let mut out = BTreeMap::<String, Vec<i64>>::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.expect("task").path();
        let (Ok(comm), Ok(stat)) =
            (std::fs::read_to_string(path.join("comm")), std::fs::read_to_string(path.join("stat")))
        else {
            continue; // the thread ended meanwhile
        };
        // Fields after the command name (which may hold spaces) start at field 3, the state.
        let rest = &stat[stat.rfind(')').expect("stat") + 2..];
        let value: i64 = rest.split(' ').nth(field - 3).expect("stat field").parse().expect("number");
        out.entry(comm.trim().to_string()).or_default().push(value);
    }
    out
}

/// Thread name -> the nice values of the threads with that name (field 19).
fn nice_by_thread(pid: u32) -> BTreeMap<String, Vec<i32>> {
    stat_field_by_thread(pid, 19)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|n| i32::try_from(n).expect("nice")).collect()))
        .collect()
}

/// Thread name -> the scheduling policies of the threads with that name (field 41:
/// `SCHED_OTHER` 0, `SCHED_BATCH` 3).
fn policy_by_thread(pid: u32) -> BTreeMap<String, Vec<i64>> {
    stat_field_by_thread(pid, 41)
}

const SCHED_BATCH: i64 = 3;

async fn exercise(http: &str) {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(fixture("langchain-openinference/traces-1.pb"))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    assert_eq!(client.post(format!("{http}/api/flush")).send().await.expect("flush").status(), 200);
    let r = client
        .post(format!("{http}/api/sql"))
        .json(&serde_json::json!({ "sql": "SELECT count(*) FROM spans" }))
        .send()
        .await
        .expect("sql");
    assert_eq!(r.status(), 200);
}

fn own_nice() -> i32 {
    nice_by_thread(std::process::id()).values().flatten().copied().min().expect("a thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_thread_but_the_duckdb_writer_runs_at_the_background_priority() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let base = own_nice();
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_binary(dir.path(), &["--background-nice", "7"]);
    exercise(&app.http).await;
    let threads = nice_by_thread(app.child.id());
    app.kill9();

    let writer = threads.get("duckdb-writer").expect("the writer thread");
    // (DuckDB's own threads started from the writer's carry its name and priority.)
    assert!(writer.iter().all(|&n| n == base), "the writer keeps the collector's priority: {threads:?}");
    let prep = threads.get("writer-prep").expect("the thread that builds the writer's columns");
    assert_eq!(prep, &vec![base], "part of the serial stage, at the writer's priority: {threads:?}");
    let (background, latency) = if cores > 1 { ((base + 7).min(19), (base + 3).min(19)) } else { (base, base) };
    let of = |prefix: &str| -> Vec<i32> {
        threads.iter().filter(|(n, _)| n.starts_with(prefix)).flat_map(|(_, v)| v.iter().copied()).collect()
    };
    // Bulk work: the background priority.
    for name in ["writer-drop", "ingest-heavy-0", "ingest-log-gc"] {
        let nice = of(name);
        assert!(!nice.is_empty(), "no {name} thread: {threads:?}");
        assert!(nice.iter().all(|&n| n == background), "{name} runs at {nice:?}, not {background}: {threads:?}");
    }
    // What acknowledgements and live messages wait on: the latency tier, half as low.
    for name in ["ingest-log", "pipeline"] {
        assert_eq!(threads.get(name), Some(&vec![latency]), "{name}: {threads:?}");
    }
    // The runtime's threads start at the latency tier; the one that ran the SQL query lowered
    // itself to the background priority (readers share the bulk tier with decoding).
    let tokio = of("tokio-");
    assert!(tokio.contains(&latency), "{threads:?}");
    assert!(tokio.contains(&background), "the reader's thread: {threads:?}");
    assert!(tokio.iter().all(|&n| n == latency || n == background), "{threads:?}");
}

/// Exports of 512 spans from 4 clients against budgets of 1 MiB: the writer falls behind at its
/// first commits. The ingest log, the pipeline and the runtime's workers then run as
/// `SCHED_BATCH` (they stop preempting the writer when they wake) and the writer never does; once
/// the load stops they are normal threads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_tier_yields_to_the_writer_while_it_is_behind_and_only_then() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return; // priorities are not set on one core
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let app =
        spawn_binary(dir.path(), &["--background-nice", "7", "--pipeline-handoff-mib", "1", "--writer-queue-mib", "1"]);
    let pid = app.child.id();
    let body = {
        use prost::Message;
        let mut rng = agent_console::fixtures::Rng::new(11);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
        agent_console::fixtures::genai_traces(512, 8, &mut rng, now as u64).encode_to_vec()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, body, stop) = (format!("{}/v1/traces", app.http), body.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ok = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("export");
                if r.status() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    // Behind while the load lasts: wait until the latency tier was seen yielding.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let seen = loop {
        let p = policy_by_thread(pid);
        let writer = p.get("duckdb-writer").expect("the writer");
        assert!(writer.iter().all(|&x| x == 0), "the writer never yields: {p:?}");
        let yielding = |name: &str| p.get(name).is_some_and(|v| v.contains(&SCHED_BATCH));
        if yielding("ingest-log") && yielding("pipeline") && yielding("tokio-rt-worker") {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "the latency tier never yielded under load: {p:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(seen.get("writer-prep").is_some_and(|v| v.iter().all(|&x| x == 0)), "{seen:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut stored = 0;
    for c in clients {
        stored += c.await.expect("client");
    }
    assert!(stored > 0, "exports were acknowledged");
    // The load is gone: after the hold, the log and the pipeline follow back on their next wakeup
    // (a flush makes both wake).
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert_eq!(client.post(format!("{}/api/flush", app.http)).send().await.expect("flush").status(), 200);
        let _ = client
            .post(format!("{}/v1/traces", app.http))
            .header("content-type", "application/x-protobuf")
            .body(fixture("langchain-openinference/traces-1.pb"))
            .send()
            .await
            .expect("export");
        let p = policy_by_thread(pid);
        let normal = |name: &str| p.get(name).is_some_and(|v| v.iter().all(|&x| x == 0));
        if normal("ingest-log") && normal("pipeline") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the latency tier kept yielding with nothing behind: {p:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    app.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_nice_0_leaves_every_thread_at_the_same_priority() {
    let base = own_nice();
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_binary(dir.path(), &["--background-nice", "0"]);
    exercise(&app.http).await;
    let threads = nice_by_thread(app.child.id());
    app.kill9();
    assert!(threads.contains_key("duckdb-writer") && threads.contains_key("ingest-heavy-0"), "{threads:?}");
    assert!(threads.values().flatten().all(|&n| n == base), "{threads:?}");
}
