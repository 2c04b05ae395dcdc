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
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(f: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = ServeArgs::defaults();
    args.data_dir = dir.path().to_path_buf();
    args.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    args.http_addr = "127.0.0.1:0".parse().expect("addr");
    args.pg_addr = "127.0.0.1:0".parse().expect("addr");
    args.duckdb_memory_limit = "512MB".into();
    f(&mut args);
    let running = app::start(args).await.expect("start app");
    TestApp {
        http: format!("http://{}", running.http_addr),
        grpc: format!("http://{}", running.grpc_addr),
        pg: running.pg_addr,
        running: Some(running),
        client: reqwest::Client::new(),
        dir,
    }
}

impl TestApp {
    /// `POST /api/sql`, asserting success; returns the whole JSON answer.
    pub async fn sql(&self, sql: &str) -> Value {
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
        serde_json::from_value(v["rows"].clone()).expect("rows")
    }

    /// The single value of a one-row, one-column query.
    pub async fn scalar(&self, sql: &str) -> Value {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0].clone()
    }

    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("post")
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
