//! Captured payloads from real clients, replayed over OTLP/HTTP (protobuf, gzip, chunked, `/`),
//! and a JS-exporter-style JSON body; everything read back through `/api/sql`.

mod common;
use common::*;
use futures::stream;

const CC_SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langchain_openinference_traces() {
    let app = spawn().await;
    let body = gzip(&fixture("langchain-openinference/traces-1.pb"));
    let r = app
        .client
        .post(format!("{}/v1/traces", app.http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert!(r.bytes().await.expect("body").is_empty(), "full success has no partial_success");

    assert_eq!(as_i64(&app.scalar("SELECT count(*) FROM spans").await), 7);
    let types = app.rows("SELECT span_type, count(*) FROM spans GROUP BY 1 ORDER BY 1").await;
    let types: Vec<(String, i64)> =
        types.iter().map(|r| (r[0].as_str().unwrap_or("").to_string(), as_i64(&r[1]))).collect();
    assert_eq!(types, vec![("chain".into(), 2), ("llm".into(), 2), ("other".into(), 2), ("tool".into(), 1)]);
    let calls = app
        .rows(
            "SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), min(model), max(model), \
             min(task_id), max(agent_id) FROM model_calls",
        )
        .await;
    let c = &calls[0];
    assert_eq!((as_i64(&c[0]), as_i64(&c[1]), as_i64(&c[2]), as_i64(&c[3])), (2, 2550, 125, 400));
    assert_eq!((c[4].as_str(), c[5].as_str()), (Some("gpt-4o-mini"), Some("gpt-4o-mini")));
    assert_eq!((c[6].as_str(), c[7].as_str()), (Some("TASK-42"), Some("research-agent")));
    let tool = app.rows("SELECT tool_name, success, task_id FROM tool_calls").await;
    assert_eq!(
        tool,
        vec![vec![serde_json::json!("lookup_weather"), serde_json::json!(true), serde_json::json!("TASK-42")]]
    );
    // Raw attributes are kept and queryable as JSON.
    let kind = app.scalar("SELECT count(*) FROM spans WHERE attributes->>'openinference.span.kind' = 'PROMPT'").await;
    assert_eq!(as_i64(&kind), 2);
    let ids = app.rows("SELECT length(trace_id), length(span_id) FROM spans LIMIT 1").await;
    assert_eq!((as_i64(&ids[0][0]), as_i64(&ids[0][1])), (32, 16));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_logs_chunked_and_metrics_at_root() {
    let app = spawn().await;
    for f in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        // Claude Code 2.1.19x sends chunked bodies without Content-Length.
        let bytes = fixture(f);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(700).map(|c| Ok(c.to_vec())).collect();
        let r = app
            .client
            .post(format!("{}/v1/logs", app.http))
            .header("content-type", "application/x-protobuf")
            .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{f}");
    }
    // A per-signal endpoint without a path posts to `/`.
    let r = app.post("/", "application/x-protobuf", fixture("claude-code/otlp/metrics-1.pb")).await;
    assert_eq!(r.status(), 200);

    let calls = app
        .rows(&format!(
            "SELECT model, provider, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, cost_source, run_id \
             FROM model_calls WHERE session_id = '{CC_SESSION}' ORDER BY time"
        ))
        .await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let expect = [(4200, 64, 1800, 300, 0.014875), (4300, 21, 2000, 0, 0.013025)];
    for (row, e) in calls.iter().zip(expect) {
        assert_eq!(row[0], "claude-opus-4-8");
        assert_eq!(row[1], "anthropic");
        assert_eq!((as_i64(&row[2]), as_i64(&row[3]), as_i64(&row[4]), as_i64(&row[5])), (e.0, e.1, e.2, e.3));
        assert!((as_f64(&row[6]) - e.4).abs() < 1e-9);
        assert_eq!(row[7], "reported");
        assert_eq!(row[8], "053d7d52-e7cd-48a2-9015-69b1c1b88f52");
    }
    let total = as_f64(&app.scalar("SELECT sum(cost_usd) FROM model_calls").await);
    assert!((total - 0.0279).abs() < 1e-9, "cost counted once: {total}");
    let tool = app.rows("SELECT tool_name, tool_call_id, success, duration_ms, session_id FROM tool_calls").await;
    assert_eq!(tool.len(), 1);
    assert_eq!(tool[0][0], "Bash");
    assert_eq!(tool[0][1], "toolu_6d09c4c13fbb4643bc930833");
    assert_eq!(tool[0][2], true);
    assert_eq!(as_f64(&tool[0][3]), 82.0);
    assert_eq!(tool[0][4], CC_SESSION);
    let metric = app
        .rows("SELECT kind, temporality, is_monotonic, value, start_time IS NOT NULL FROM metric_points WHERE name = 'claude_code.cost.usage'")
        .await;
    assert_eq!(metric.len(), 1);
    assert_eq!(
        (metric[0][0].as_str(), metric[0][1].as_str(), &metric[0][2]),
        (Some("sum"), Some("delta"), &serde_json::json!(true))
    );
    assert!((as_f64(&metric[0][3]) - 0.0279).abs() < 1e-9);
    assert_eq!(metric[0][4], true);
    let events = app
        .scalar("SELECT count(*) FROM logs WHERE event_name = 'claude_code.api_request' AND session_id IS NOT NULL")
        .await;
    assert_eq!(as_i64(&events), 2);
    // Sessions and agents tables, and the list endpoints.
    let s: serde_json::Value =
        app.client.get(format!("{}/api/sessions", app.http)).send().await.expect("get").json().await.expect("json");
    let sessions = s["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["session_id"], CC_SESSION);
    assert_eq!(sessions[0]["agent_id"], "claude-code");
    assert_eq!(sessions[0]["model_calls"], 2);
    assert_eq!(sessions[0]["tool_calls"], 1);
    assert!((as_f64(&sessions[0]["cost_usd"]) - 0.0279).abs() < 1e-9);
    let a: serde_json::Value =
        app.client.get(format!("{}/api/agents", app.http)).send().await.expect("get").json().await.expect("json");
    assert_eq!(a["agents"][0]["agent_id"], "claude-code");
    assert!(a["agents"][0]["first_seen"].as_str().is_some_and(|t| t.starts_with("2026-11-21T14:58")));
    app.shutdown().await;
}

/// OTLP/JSON the way the OpenTelemetry JS exporter writes it: 64-bit ints as numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_in_the_js_exporter_style() {
    let app = spawn().await;
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "js-agent" } },
                { "key": "agent_console.task.id", "value": { "stringValue": "CARD-7" } }
            ]},
            "scopeSpans": [{
                "scope": { "name": "@opentelemetry/instrumentation-openai" },
                "spans": [{
                    "traceId": "5B8EFFF798038103D269B633813FC60C",
                    "spanId": "EEE19B7EC3C1B174",
                    "name": "chat gpt-4o",
                    "kind": 3,
                    "startTimeUnixNano": 1795273131457000000u64,
                    "endTimeUnixNano": "1795273132457000000",
                    "unknownField": { "ignored": true },
                    "attributes": [
                        { "key": "gen_ai.operation.name", "value": { "stringValue": "chat" } },
                        { "key": "gen_ai.provider.name", "value": { "stringValue": "openai" } },
                        { "key": "gen_ai.request.model", "value": { "stringValue": "gpt-4o" } },
                        { "key": "gen_ai.usage.input_tokens", "value": { "intValue": 321 } },
                        { "key": "gen_ai.usage.output_tokens", "value": { "intValue": "12" } },
                        { "key": "gen_ai.request.temperature", "value": { "doubleValue": 0.5 } },
                        { "key": "session.id", "value": { "stringValue": "js-session" } }
                    ],
                    "status": { "code": 1 }
                }]
            }]
        }]
    });
    let r = app.post("/v1/traces", "application/json", body.to_string().into_bytes()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<serde_json::Value>().await.expect("json"), serde_json::json!({}));
    let row = app
        .rows(
            "SELECT trace_id, span_id, kind, start_time, end_time, duration_ms, status_code, session_id, task_id, \
             attributes->>'gen_ai.request.temperature' FROM spans",
        )
        .await;
    assert_eq!(row.len(), 1);
    let r0 = &row[0];
    assert_eq!(r0[0], "5b8efff798038103d269b633813fc60c");
    assert_eq!(r0[1], "eee19b7ec3c1b174");
    assert_eq!(r0[2], "client");
    assert_eq!(r0[3], "2026-11-21T14:58:51.457000Z");
    assert_eq!(r0[4], "2026-11-21T14:58:52.457000Z");
    assert_eq!(as_f64(&r0[5]), 1000.0);
    assert_eq!(r0[6], "ok");
    assert_eq!(r0[7], "js-session");
    assert_eq!(r0[8], "CARD-7");
    assert_eq!(r0[9], "0.5");
    let mc = app.rows("SELECT model, provider, input_tokens, output_tokens FROM model_calls").await;
    assert_eq!(
        mc,
        vec![vec![
            serde_json::json!("gpt-4o"),
            serde_json::json!("openai"),
            serde_json::json!(321),
            serde_json::json!(12)
        ]]
    );
    app.shutdown().await;
}
