//! Acknowledged data survives `kill -9`: run the real binary, export, kill it without shutdown,
//! restart on the same data directory, and find every acknowledged span.

mod common;
use common::fixture;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--pg-addr",
            "127.0.0.1:0",
            "--duckdb-memory-limit",
            "256MB",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("AGENT_CONSOLE_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn agent-console");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("agent-console exited before listening").expect("read stderr");
        if let Some(i) = line.find("http_addr=") {
            let rest = &line[i + "http_addr=".len()..];
            break rest
                .split_whitespace()
                .next()
                .expect("addr")
                .trim_matches(|c: char| !c.is_ascii_graphic())
                .to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, http) = start(dir.path());
    let client = reqwest::Client::new();
    let body = fixture("langchain-openinference/traces-1.pb");
    let mut acked = 0;
    for _ in 0..20 {
        let r = client
            .post(format!("{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await
            .expect("post");
        if r.status() == 200 {
            acked += 7;
        }
    }
    assert_eq!(acked, 140);
    child.kill().expect("kill -9");
    child.wait().expect("wait");

    let (mut child, http) = start(dir.path());
    // Replay of the ingest log into DuckDB runs after start; a flush waits for it.
    let r = client.post(format!("{http}/api/flush")).send().await.expect("flush");
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = client
        .post(format!("{http}/api/sql"))
        .json(&serde_json::json!({ "sql": "SELECT count(*), count(DISTINCT span_id) FROM spans" }))
        .send()
        .await
        .expect("sql")
        .json()
        .await
        .expect("json");
    assert_eq!(r["rows"][0][0], acked, "{r}");
    let calls: serde_json::Value = client
        .post(format!("{http}/api/sql"))
        .json(&serde_json::json!({ "sql": "SELECT count(*) FROM model_calls" }))
        .send()
        .await
        .expect("sql")
        .json()
        .await
        .expect("json");
    // The same payload 20 times is one replayed run: its 2 model calls are counted once.
    assert_eq!(calls["rows"][0][0], 2, "{calls}");
    child.kill().expect("kill");
    child.wait().expect("wait");
}
