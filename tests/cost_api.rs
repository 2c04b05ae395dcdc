//! Cost engine end to end: calls sent as OTLP/JSON are priced on the way in (reported cost wins,
//! effective dates respected, unknown models `unpriced`), the rollup API equals hand-computed sums
//! and the equivalent SQL, and adding a price + re-pricing fixes unpriced rows. Also the streamed
//! result formats (CSV, Arrow IPC) and the Parquet export, read back with real decoders.

mod common;
use common::*;
use serde_json::{json, Value};

const PRICES: &str = r#"
version = "test-1"

[[model]]
id = "acme-large"
provider = "acme"
effective = "2026-01-01"
input = 2.0
output = 10.0
cache_read = 0.2
cache_write = 2.5

[[model]]
id = "acme-large"
provider = "acme"
effective = "2026-06-01"
input = 1.0
output = 5.0
cache_read = 0.1
cache_write = 1.25
"#;

struct Call {
    time: &'static str,
    agent: &'static str,
    task: &'static str,
    session: &'static str,
    model: &'static str,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    cost: Option<f64>,
}

const CALLS: &[Call] = &[
    // Old price: (1000-200-100)*2 + 100*10 + 200*0.2 + 100*2.5 = 2690 -> 0.00269
    Call {
        time: "2026-03-01T10:00:00Z",
        agent: "a1",
        task: "T1",
        session: "s1",
        model: "acme-large-20260101",
        input: 1000,
        output: 100,
        cache_read: 200,
        cache_write: 100,
        cost: None,
    },
    // New price, name in upper case: 2000*1 + 400*5 = 4000 -> 0.004
    Call {
        time: "2026-07-01T10:00:00Z",
        agent: "a1",
        task: "T1",
        session: "s1",
        model: "ACME-Large",
        input: 2000,
        output: 400,
        cache_read: 0,
        cache_write: 0,
        cost: None,
    },
    // Reported cost wins over the table.
    Call {
        time: "2026-07-01T11:00:00Z",
        agent: "a2",
        task: "T2",
        session: "s2",
        model: "acme-large",
        input: 500,
        output: 50,
        cache_read: 0,
        cache_write: 0,
        cost: Some(0.5),
    },
    // Unknown model: unpriced until a price is added (then 100*3 + 10*6 = 360 -> 0.00036).
    Call {
        time: "2026-07-02T09:00:00Z",
        agent: "a2",
        task: "T2",
        session: "s2",
        model: "mystery-model-x",
        input: 100,
        output: 10,
        cache_read: 0,
        cache_write: 0,
        cost: None,
    },
];

fn unix_nanos(rfc3339: &str) -> String {
    let us = agent_console::api::params::parse_instant(rfc3339).expect("time");
    (us * 1000).to_string()
}

fn payload() -> Value {
    payload_with_ids(0)
}

/// The calls as OTLP/JSON; `id_base` shifts trace and span ids so a resend is a new set of calls.
fn payload_with_ids(id_base: usize) -> Value {
    let spans: Vec<Value> = CALLS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let start = unix_nanos(c.time);
            let mut attrs = vec![
                json!({"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}),
                json!({"key": "gen_ai.provider.name", "value": {"stringValue": "acme"}}),
                json!({"key": "gen_ai.request.model", "value": {"stringValue": c.model}}),
                json!({"key": "gen_ai.agent.id", "value": {"stringValue": c.agent}}),
                json!({"key": "gen_ai.conversation.id", "value": {"stringValue": c.session}}),
                json!({"key": "agent_console.task.id", "value": {"stringValue": c.task}}),
                json!({"key": "gen_ai.usage.input_tokens", "value": {"intValue": c.input}}),
                json!({"key": "gen_ai.usage.output_tokens", "value": {"intValue": c.output}}),
                json!({"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": c.cache_read}}),
                json!({"key": "gen_ai.usage.cache_creation.input_tokens", "value": {"intValue": c.cache_write}}),
            ];
            if let Some(cost) = c.cost {
                attrs.push(json!({"key": "gen_ai.usage.cost", "value": {"doubleValue": cost}}));
            }
            json!({
                "traceId": format!("{:032x}", id_base + i + 1),
                "spanId": format!("{:016x}", id_base + i + 1),
                "name": format!("chat {}", c.model),
                "kind": 3,
                "startTimeUnixNano": start,
                "endTimeUnixNano": start,
                "attributes": attrs,
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cost-test"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]})
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.client.get(format!("{}{path}", app.http)).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The collector with the test price file (the directory must outlive it: re-pricing re-reads it).
async fn start() -> (TestApp, tempfile::TempDir) {
    let prices_dir = tempfile::tempdir().expect("dir");
    let path = prices_dir.path().join("prices.toml");
    std::fs::write(&path, PRICES).expect("write prices");
    let app = spawn_with(|a| a.prices = Some(path.clone())).await;
    let body = serde_json::to_vec(&payload()).expect("json");
    let r = app.post("/v1/traces", "application/json", body).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    (app, prices_dir)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_priced_and_rolled_up() {
    let (app, _prices) = start().await;
    let rows = app.rows("SELECT model, cost_source, cost_usd FROM model_calls ORDER BY time").await;
    let got: Vec<(String, String, Option<f64>)> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap_or("").into(), r[1].as_str().unwrap_or("").into(), r[2].as_f64()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!((got[0].1.as_str(), got[1].1.as_str()), ("computed", "computed"));
    assert!(close(got[0].2.expect("cost"), 0.00269), "{got:?}");
    assert!(close(got[1].2.expect("cost"), 0.004), "{got:?}");
    assert_eq!((got[2].1.as_str(), got[2].2), ("reported", Some(0.5)));
    assert_eq!((got[3].1.as_str(), got[3].2), ("unpriced", None));
    // The price table in force is visible to SQL.
    let n = app.scalar("SELECT count(*) FROM prices WHERE model = 'acme-large'").await;
    assert_eq!(as_i64(&n), 2);

    // Rollup by agent over everything: hand-computed.
    let (status, v) = get(&app, "/api/cost?group_by=agent").await;
    assert_eq!(status, 200, "{v}");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{v}");
    let a1 = rows.iter().find(|r| r["group"] == "a1").expect("a1");
    let a2 = rows.iter().find(|r| r["group"] == "a2").expect("a2");
    assert!(close(as_f64(&a1["cost_usd"]), 0.00669), "{a1}");
    assert_eq!((as_i64(&a1["calls"]), as_i64(&a1["input_tokens"]), as_i64(&a1["output_tokens"])), (2, 3000, 500));
    assert_eq!((as_i64(&a1["cache_read_tokens"]), as_i64(&a1["cache_write_tokens"])), (200, 100));
    assert!(close(as_f64(&a2["cost_usd"]), 0.5), "{a2}");
    assert_eq!((as_i64(&a2["calls"]), as_i64(&a2["input_tokens"])), (2, 600));
    assert!(a1["bucket"].is_null());
    assert_eq!(v["source"], "cost_hourly");
    assert!(close(as_f64(&v["totals"]["cost_usd"]), 0.50669), "{v}");
    assert_eq!(as_i64(&v["totals"]["calls"]), 4);

    // Range and filters.
    let (_, v) = get(&app, "/api/cost?group_by=task&from=2026-07-01T00:00:00Z&to=2026-07-02&task=T1").await;
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(close(as_f64(&v["rows"][0]["cost_usd"]), 0.004), "{v}");
    assert_eq!(v["rows"][0]["group"], "T1");

    // Every grouping and bucket equals the equivalent SQL.
    for (group, col) in [
        ("agent", "agent_id"),
        ("task", "task_id"),
        ("model", "model"),
        ("provider", "provider"),
        ("session", "session_id"),
    ] {
        for bucket in ["", "hour", "day", "week", "month"] {
            let b =
                if bucket.is_empty() { "NULL::TIMESTAMP".to_string() } else { format!("date_trunc('{bucket}', time)") };
            let sql = format!(
                "SELECT {b} AS bucket, {col} AS g, coalesce(sum(cost_usd), 0), count(*), sum(input_tokens), \
                 sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens) \
                 FROM model_calls GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 3 DESC, 2"
            );
            let want = app.rows(&sql).await;
            let (status, v) = get(&app, &format!("/api/cost?group_by={group}&bucket={bucket}")).await;
            assert_eq!(status, 200, "{v}");
            let got = v["rows"].as_array().expect("rows");
            assert_eq!(got.len(), want.len(), "{group}/{bucket}: {v}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g["bucket"], w[0], "{group}/{bucket}");
                assert_eq!(g["group"], w[1], "{group}/{bucket}");
                assert!(close(as_f64(&g["cost_usd"]), as_f64(&w[2])), "{group}/{bucket}: {g} vs {w:?}");
                assert_eq!(as_i64(&g["calls"]), as_i64(&w[3]));
                assert_eq!(as_i64(&g["input_tokens"]), as_i64(&w[4]));
                assert_eq!(as_i64(&g["output_tokens"]), as_i64(&w[5]));
                assert_eq!(as_i64(&g["cache_read_tokens"]), as_i64(&w[6]));
                assert_eq!(as_i64(&g["cache_write_tokens"]), as_i64(&w[7]));
            }
        }
    }
    let (_, v) = get(&app, "/api/cost?group_by=session&bucket=minute").await;
    assert_eq!(v["source"], "model_calls");
    let (status, v) = get(&app, "/api/cost?group_by=colour").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().is_some_and(|e| e.contains("group_by")), "{v}");
    let (status, _) = get(&app, "/api/cost?from=last-tuesday").await;
    assert_eq!(status, 400);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpriced_models_are_listed_and_repriced() {
    let (app, _prices) = start().await;
    let (status, v) = get(&app, "/api/cost/unpriced").await;
    assert_eq!(status, 200);
    let models = v["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{v}");
    assert_eq!(models[0]["model"], "mystery-model-x");
    assert_eq!(models[0]["provider"], "acme");
    assert_eq!(as_i64(&models[0]["calls"]), 1);

    // A bad price file is refused and changes nothing.
    let r = app
        .client
        .post(format!("{}/api/cost/reprice", app.http))
        .body("[[model]]\nid = \"x\"\ninput = \"free\"\n")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);

    let added = "version = \"ops\"\n[[model]]\nid = \"mystery-model-x\"\nprovider = \"acme\"\neffective = \"2020-01-01\"\ninput = 3.0\noutput = 6.0\n";
    let r = app.client.post(format!("{}/api/cost/reprice", app.http)).body(added).send().await.expect("post");
    let status = r.status();
    let report: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{report}");
    assert_eq!((as_i64(&report["computed"]), as_i64(&report["unpriced"])), (3, 0), "{report}");
    let (_, v) = get(&app, "/api/cost/unpriced").await;
    assert_eq!(v["models"].as_array().map(Vec::len), Some(0), "{v}");
    let row = app.rows("SELECT cost_source, cost_usd FROM model_calls WHERE model = 'mystery-model-x'").await;
    assert_eq!(row[0][0], "computed");
    assert!(close(as_f64(&row[0][1]), 0.00036), "{row:?}");
    // Reported cost untouched, computed ones unchanged; the hourly rollup follows.
    let total = app.scalar("SELECT sum(cost_usd) FROM model_calls").await;
    assert!(close(as_f64(&total), 0.50669 + 0.00036), "{total}");
    let (_, v) = get(&app, "/api/cost?group_by=model&bucket=day").await;
    assert_eq!(v["source"], "cost_hourly");
    assert!(close(as_f64(&v["totals"]["cost_usd"]), 0.50669 + 0.00036), "{v}");
    // New calls of that model are priced on the way in, and the addition survives a restart.
    let mut app = app;
    let kept = std::mem::replace(&mut app.dir, tempfile::tempdir().expect("dir"));
    let dir = kept.path().to_path_buf();
    assert!(dir.join("prices-added.toml").exists());
    app.shutdown().await;
    let app2 = spawn_with(|a| a.data_dir = dir.clone()).await;
    let n = app2.scalar("SELECT count(*) FROM prices WHERE model = 'mystery-model-x'").await;
    assert_eq!(as_i64(&n), 1);
    app2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_streams_csv_and_arrow_and_exports_parquet() {
    let (app, _prices) = start().await;
    let sql = "SELECT time, model, input_tokens, cost_usd, cost_source FROM model_calls ORDER BY time";
    let json_rows = app.rows(sql).await;

    // CSV by Accept header.
    let r = app
        .client
        .post(format!("{}/api/sql", app.http))
        .header("accept", "text/csv")
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("csv");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("text/csv"));
    let text = r.text().await.expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "time,model,input_tokens,cost_usd,cost_source");
    assert_eq!(lines.len(), 1 + json_rows.len(), "{text}");
    assert!(lines[1].starts_with("2026-03-01T10:00:00") && lines[1].contains(",acme-large-20260101,1000,"), "{text}");

    // Arrow IPC stream by ?format=, decoded with the arrow reader.
    let r = app
        .client
        .post(format!("{}/api/sql?format=arrow", app.http))
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .expect("arrow");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = r.bytes().await.expect("bytes");
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).expect("ipc");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, json_rows.len());
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "model", "input_tokens", "cost_usd", "cost_source"]);

    // Refusals still come back as JSON errors before any streaming starts.
    let r = app
        .client
        .post(format!("{}/api/sql?format=csv", app.http))
        .json(&json!({ "sql": "DELETE FROM model_calls" }))
        .send()
        .await
        .expect("refused");
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(format!("{}/api/sql?format=xml", app.http))
        .json(&json!({ "sql": "SELECT 1" }))
        .send()
        .await
        .expect("bad format");
    assert_eq!(r.status(), 400);

    // Parquet export of a time range, read back with the parquet crate.
    let r = app
        .client
        .get(format!("{}/api/export?table=model_calls&from=2026-07-01&to=2026-08-01", app.http))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apache.parquet");
    let bytes = r.bytes().await.expect("bytes");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 3, "three calls in July");
    assert!(batches[0].schema().field_with_name("cost_source").is_ok());
    let (status, _) = get(&app, "/api/export?table=secrets").await;
    assert_eq!(status, 400);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_command_reads_the_file_or_a_running_collector() {
    use agent_console::config::ExportArgs;
    use agent_console::export_cmd;
    let (app, _prices) = start().await;
    // Postgres-style "now() - interval" works although DuckDB has no ICU (see store::sqlcompat).
    let recent = app.scalar("SELECT count(*) FROM model_calls WHERE time > now() - INTERVAL '100 years'").await;
    assert_eq!(as_i64(&recent), 4);
    let out = tempfile::tempdir().expect("out");
    let args = |url: Option<String>, data_dir: std::path::PathBuf| ExportArgs {
        table: "model_calls".into(),
        from: Some("2026-07-01".into()),
        to: None,
        out: out.path().to_path_buf(),
        format: "parquet".into(),
        data_dir,
        url,
        read_token: None,
    };
    let read_rows = |path: &std::path::Path| -> usize {
        let f = std::fs::File::open(path).expect("file");
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("parquet")
            .build()
            .expect("reader");
        r.map(|b| b.expect("batch").num_rows()).sum()
    };
    // While the collector runs, another process finds the file locked: a clear error naming --url.
    let data_dir = app.dir.path().to_path_buf();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["export", "--table", "model_calls", "--data-dir"])
        .arg(&data_dir)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run export");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success() && stderr.contains("--url"), "{stderr}");
    // Through the running collector's API instead.
    let done = export_cmd::run(args(Some(app.http.clone()), data_dir.clone())).await.expect("via api");
    assert_eq!(read_rows(&done.path), 3);
    // Stopped: straight from the file.
    let mut app = app;
    let kept = std::mem::replace(&mut app.dir, tempfile::tempdir().expect("dir"));
    app.shutdown().await;
    let done = export_cmd::run(args(None, kept.path().to_path_buf())).await.expect("direct");
    assert_eq!((read_rows(&done.path), done.rows), (3, Some(3)));
    assert!(done
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("model_calls_from_2026-07-01")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_rollup_accumulates_across_batches() {
    let (app, _prices) = start().await;
    for round in 1..=3 {
        let body = serde_json::to_vec(&payload_with_ids(round * 100)).expect("json");
        let r = app.post("/v1/traces", "application/json", body).await;
        assert_eq!(r.status(), 200);
    }
    // Four batches of the same calls: the rollup rows were updated in place, not duplicated.
    let keys = app.scalar("SELECT count(*) FROM cost_hourly").await;
    assert_eq!(as_i64(&keys), 4);
    let want =
        app.rows("SELECT sum(cost_usd), count(*), sum(input_tokens), sum(cache_read_tokens) FROM model_calls").await;
    let (_, v) = get(&app, "/api/cost?group_by=provider&bucket=month").await;
    assert_eq!(v["source"], "cost_hourly");
    let t = &v["totals"];
    assert!(close(as_f64(&t["cost_usd"]), as_f64(&want[0][0])), "{v} vs {want:?}");
    assert!(close(as_f64(&t["cost_usd"]), 4.0 * 0.50669), "{v}");
    assert_eq!(as_i64(&t["calls"]), 16);
    assert_eq!((as_i64(&t["input_tokens"]), as_i64(&t["cache_read_tokens"])), (as_i64(&want[0][2]), 800));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_fixtures_roll_up_to_hand_computed_costs() {
    let app = spawn().await;
    let r = app.post("/v1/traces", "application/x-protobuf", fixture("langchain-openinference/traces-1.pb")).await;
    assert_eq!(r.status(), 200);
    for f in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        let r = app.post("/v1/logs", "application/x-protobuf", fixture(f)).await;
        assert_eq!(r.status(), 200);
    }
    // LangChain/OpenInference gpt-4o-mini at the embedded list price ($0.15 in, $0.60 out, $0.075
    // cached in per 1M): (1200-400)*0.15 + 400*0.075 + 85*0.60 = 201 and 1350*0.15 + 40*0.60 = 226.5
    // micro-dollars. Claude Code reports its own cost: 0.014875 + 0.013025.
    let rows = app.rows("SELECT model, cost_source, cost_usd FROM model_calls ORDER BY model, cost_usd").await;
    let sources: Vec<(&str, &str)> =
        rows.iter().map(|r| (r[0].as_str().unwrap_or(""), r[1].as_str().unwrap_or(""))).collect();
    assert_eq!(
        sources,
        [
            ("claude-opus-4-8", "reported"),
            ("claude-opus-4-8", "reported"),
            ("gpt-4o-mini", "computed"),
            ("gpt-4o-mini", "computed")
        ]
    );
    assert!(close(as_f64(&rows[2][2]), 0.000201) && close(as_f64(&rows[3][2]), 0.0002265), "{rows:?}");
    let (_, v) = get(&app, "/api/cost?group_by=task").await;
    let by_task: Vec<(Value, f64, i64)> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["group"].clone(), as_f64(&r["cost_usd"]), as_i64(&r["calls"])))
        .collect();
    assert_eq!(by_task.len(), 2, "{v}");
    assert!(by_task[0].0.is_null() && close(by_task[0].1, 0.0279) && by_task[0].2 == 2, "{v}");
    assert!(by_task[1].0 == "TASK-42" && close(by_task[1].1, 0.0004275) && by_task[1].2 == 2, "{v}");
    assert!(close(as_f64(&v["totals"]["cost_usd"]), 0.0283275), "{v}");
    assert_eq!((as_i64(&v["totals"]["input_tokens"]), as_i64(&v["totals"]["cache_read_tokens"])), (11050, 4200));
    app.shutdown().await;
}
