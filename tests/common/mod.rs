//! Shared harness for integration tests: start the collector in-process on port 0 with a
//! temporary DuckDB, talk to it over real HTTP/gRPC, query it back through `/api/sql`.
#![allow(dead_code)]

use agent_console::app::{self, Running};
use agent_console::config::ServeArgs;
use serde_json::Value;

pub struct TestApp {
    pub running: Option<Running>,
    pub http: String,
    pub grpc: String,
    pub pg: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The ingest token the collector was started with (a flush needs it).
    pub ingest_token: Option<String>,
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(f: impl FnOnce(&mut ServeArgs)) -> TestApp {
    // `AGENT_CONSOLE_TEST_LOG=debug cargo test ... -- --nocapture` shows the collector's logs.
    if let Ok(filter) = std::env::var("AGENT_CONSOLE_TEST_LOG") {
        agent_console::telemetry::init_tracing(&filter, false);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = ServeArgs::defaults();
    args.data_dir = dir.path().to_path_buf();
    args.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    args.http_addr = "127.0.0.1:0".parse().expect("addr");
    args.pg_addr = "127.0.0.1:0".parse().expect("addr");
    args.duckdb_memory_limit = "512MB".into();
    f(&mut args);
    let ingest_token = args.ingest_token.clone();
    let running = app::start(args).await.expect("start app");
    TestApp {
        ingest_token,
        http: format!("http://{}", running.http_addr),
        grpc: format!("http://{}", running.grpc_addr),
        pg: running.pg_addr,
        running: Some(running),
        client: reqwest::Client::new(),
        dir,
    }
}

impl TestApp {
    /// `POST /api/flush`: returns once everything acknowledged so far is queryable (exports are
    /// acknowledged when durable in the ingest log; DuckDB commits a moment later).
    pub async fn flush(&self) {
        let mut req = self.client.post(format!("{}/api/flush", self.http));
        if let Some(t) = &self.ingest_token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("flush request");
        assert_eq!(r.status(), 200, "flush: {:?}", r.text().await);
    }

    /// `POST /api/sql` after a flush (so it sees every acknowledged export), asserting success;
    /// returns the whole JSON answer.
    pub async fn sql(&self, sql: &str) -> Value {
        self.flush().await;
        let r = self
            .client
            .post(format!("{}/api/sql", self.http))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .expect("sql request");
        let status = r.status();
        let body: Value = r.json().await.expect("sql json");
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    pub async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let v = self.sql(sql).await;
        assert_ne!(v["truncated"], Value::Bool(true), "{sql}: the answer was cut at the row cap");
        serde_json::from_value(v["rows"].clone()).expect("rows")
    }

    /// The single value of a one-row, one-column query.
    pub async fn scalar(&self, sql: &str) -> Value {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// POST a body; an accepted ingest (OTLP or hooks) is followed by a flush, so what the
    /// test reads next through any API sees it (acknowledgement is at the log append).
    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("post");
        if r.status().is_success() && !path.starts_with("/api/") {
            self.flush().await;
        }
        r
    }

    /// POST any body; `None` when the connection broke before a response arrived.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: reqwest::Body) -> Option<u16> {
        self.client
            .post(format!("{}{path}", self.http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn fixture(rel: &str) -> Vec<u8> {
    agent_console::fixtures::shared_fixture(rel).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

pub fn as_f64(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn as_i64(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The release binary, started on free ports over `dir`, with its stderr drained (kept in
/// `log`, for assertions on what it said).
pub struct Binary {
    pub child: std::process::Child,
    pub http: String,
    pub grpc: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Start `agent-console serve` on `dir` with `extra` flags; waits until it listens.
pub fn spawn_binary(dir: &std::path::Path, extra: &[&str]) -> Binary {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0"])
        .args(["--duckdb-memory-limit", "256MB"])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("AGENT_CONSOLE_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn agent-console");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let field = |line: &str, key: &str| -> Option<String> {
        let i = line.find(key)?;
        let rest = &line[i + key.len()..];
        Some(rest.split_whitespace().next()?.trim_matches(|c: char| !c.is_ascii_graphic()).to_string())
    };
    let (mut http, mut grpc) = (None, None);
    while http.is_none() || grpc.is_none() {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            _ => panic!("agent-console exited before listening: {:?}", log.lock().map(|l| l.join("\n"))),
        };
        if let Some(a) = field(&line, "http_addr=") {
            http = Some(format!("http://{a}"));
        }
        if let Some(a) = field(&line, "grpc_addr=") {
            grpc = Some(format!("http://{a}"));
        }
        if let Ok(mut l) = log.lock() {
            l.push(line);
        }
    }
    let sink = log.clone();
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                if l.len() < 10_000 {
                    l.push(line);
                }
            }
        }
    });
    Binary { child, http: http.unwrap_or_default(), grpc: grpc.unwrap_or_default(), log }
}

/// A test that panics still ends its collector (a leaked one would keep replaying and take CPU
/// from the next tests).
impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Binary {
    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn said(&self, needle: &str) -> bool {
        self.log.lock().map(|l| l.iter().any(|line| line.contains(needle))).unwrap_or(false)
    }
}

/// `POST /api/flush` then `POST /api/sql` against a base URL; returns the rows.
pub async fn sql_at(client: &reqwest::Client, http: &str, sql: &str) -> Vec<Vec<Value>> {
    let r = client.post(format!("{http}/api/flush")).send().await.expect("flush");
    assert_eq!(r.status(), 200, "flush");
    let r = client.post(format!("{http}/api/sql")).json(&serde_json::json!({ "sql": sql })).send().await.expect("sql");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{sql}: {v}");
    // A test must never read a silently partial answer (the row cap): page the query instead.
    assert_ne!(v["truncated"], Value::Bool(true), "{sql}: the answer was cut at the row cap");
    serde_json::from_value(v["rows"].clone()).expect("rows")
}
