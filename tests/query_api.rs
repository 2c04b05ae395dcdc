//! The SQL API is read-only and sandboxed, capped and typed; tokens guard ingest and reads.

mod common;
use common::*;

async fn sql_status(app: &TestApp, sql: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = app.client.post(format!("{}/api/sql", app.http)).json(&serde_json::json!({ "sql": sql }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_files_and_settings_are_refused() {
    let app = spawn().await;
    let refused = [
        "INSERT INTO spans (time, trace_id, span_id, start_time, end_time) VALUES (now(), 'a', 'b', now(), now())",
        "DELETE FROM spans",
        "UPDATE sessions SET display_name = 'x'",
        "CREATE TABLE evil (x INT)",
        "DROP TABLE spans",
        "ATTACH '/tmp/evil.duckdb' AS evil",
        "COPY spans TO '/tmp/out.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET memory_limit = '1TB'",
        "PRAGMA enable_profiling",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM glob('/*')",
        "SELECT getenv('HOME')",
        "SELECT 1; SELECT 2",
        "CHECKPOINT",
        "EXPORT DATABASE '/tmp/x'",
    ];
    for sql in refused {
        let (status, body) = sql_status(&app, sql, None).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{sql}: {body}");
    }
    // Nothing changed and reads still work.
    assert_eq!(as_i64(&app.scalar("SELECT count(*) FROM spans").await), 0);
    let tables =
        app.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").await;
    let names: Vec<&str> = tables.iter().filter_map(|r| r[0].as_str()).collect();
    for t in ["agents", "logs", "metric_points", "model_calls", "sessions", "spans", "tool_calls"] {
        assert!(names.contains(&t), "{t} in {names:?}");
    }
    let (status, body) = sql_status(&app, "SELECT * FROM no_such_table", None).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|m| m.contains("no_such_table")), "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_typed_and_capped() {
    let app = spawn_with(|a| a.query_max_rows = 5).await;
    let v = app.sql("SELECT range AS n, range * 1.5 AS f, 'x' || range AS s, TIMESTAMPTZ '2026-01-02 03:04:05+00' AS t, range % 2 = 0 AS b FROM range(100)").await;
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(v["truncated"], true);
    let types: Vec<&str> = v["columns"].as_array().expect("cols").iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types, vec!["BIGINT", "DECIMAL(21,1)", "VARCHAR", "TIMESTAMPTZ", "BOOLEAN"]);
    assert_eq!(v["rows"][1], serde_json::json!([1, 1.5, "x1", "2026-01-02T03:04:05.000000Z", false]));
    let (status, _) = sql_status(&app, "", None).await;
    assert_eq!(status, 400);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_ingest_and_reads() {
    let app = spawn_with(|a| {
        a.ingest_token = Some("in-secret".into());
        a.read_token = Some("read-secret".into());
    })
    .await;
    let body = fixture("langchain-openinference/traces-1.pb");
    let r = app.post("/v1/traces", "application/x-protobuf", body.clone()).await;
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(format!("{}/v1/traces", app.http))
        .bearer_auth("in-secret")
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    app.flush().await;
    let (status, _) = sql_status(&app, "SELECT 1", None).await;
    assert_eq!(status, 401);
    let (status, _) = sql_status(&app, "SELECT 1", Some("in-secret")).await;
    assert_eq!(status, 401);
    let (status, body) = sql_status(&app, "SELECT count(*) FROM spans", Some("read-secret")).await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"][0][0], 7);
    let r = app.client.get(format!("{}/api/sessions", app.http)).send().await.expect("get");
    assert_eq!(r.status(), 401);
    // gRPC without the token is UNAUTHENTICATED.
    let mut client =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
            app.grpc.clone(),
        )
        .await
        .expect("connect");
    let err = client
        .export(opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default())
        .await
        .expect_err("auth");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let health = app.client.get(format!("{}/healthz", app.http)).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queries_time_out_and_the_server_recovers() {
    let app = spawn_with(|a| a.query_timeout_ms = 200).await;
    let started = std::time::Instant::now();
    let (status, body) = sql_status(&app, "SELECT sum(i * i) FROM range(20000000000) t(i)", None).await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("timed out")), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(app.scalar("SELECT 41 + 1").await, 42);
    app.shutdown().await;
}

/// Graceful shutdown drains the writer: everything acknowledged is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_and_restart_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let first = spawn_with(|a| a.data_dir = path.clone()).await;
    let r = first.post("/v1/logs", "application/x-protobuf", fixture("claude-code/otlp/logs-1.pb")).await;
    assert_eq!(r.status(), 200);
    let before = as_i64(&first.scalar("SELECT count(*) FROM logs").await);
    assert!(before > 0);
    first.shutdown().await;
    let second = spawn_with(|a| a.data_dir = path.clone()).await;
    assert_eq!(as_i64(&second.scalar("SELECT count(*) FROM logs").await), before);
    let migrations = second.rows("SELECT version, name FROM schema_migrations ORDER BY version").await;
    let want: Vec<Vec<serde_json::Value>> = agent_console::store::schema::MIGRATIONS
        .iter()
        .map(|(v, name, _)| vec![serde_json::json!(v), serde_json::json!(name)])
        .collect();
    assert_eq!(migrations, want, "each migration applied exactly once");
    second.shutdown().await;
}
