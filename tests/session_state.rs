//! Session states end to end. Timing with tokio's paused clock: the store's writer runs the state
//! machine on `sessions::tokio_clock`, the test moves time with `tokio::time::advance` and asks for
//! the timer check with `Store::tick_now`, so idle / stuck / finished-by-inactivity are exact and
//! no assertion depends on real time. Then over real sockets: hook-shaped OTLP logs and spans sent
//! over HTTP drive running / errored / finished, parents link, and an SSE client sees each change
//! as a `session` message with the summary.

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_console::cost::PriceTable;
use agent_console::ingest_log::{PartKind, Record};
use agent_console::live::{Filter, Hub, HubConfig, LiveParams};
use agent_console::model::normalize;
use agent_console::store::{Store, StoreConfig};
use agent_console::telemetry::Metrics;
use futures::StreamExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn kb(k: &str, v: bool) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(v)) }),
        ..Default::default()
    }
}

/// One log record shaped like the hook shim's: `event_name` = the hook event.
fn hook(session: &str, event: &str, t_ms: u64, extra: Vec<KeyValue>) -> LogRecord {
    let mut attributes = vec![kv("session.id", session), kv("agent_console.hook.event", event)];
    attributes.extend(extra);
    LogRecord {
        time_unix_nano: t_ms * 1_000_000,
        event_name: event.into(),
        severity_number: if event.ends_with("Failure") { 17 } else { 9 },
        attributes,
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", "claude-code")], ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "agent-console-hook".into(), ..Default::default() }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A Claude Code `tool_result` event: one tool call, failed or not.
fn tool_result(session: &str, t_ms: u64, id: &str, ok: bool) -> LogRecord {
    LogRecord {
        time_unix_nano: t_ms * 1_000_000,
        event_name: "claude_code.tool_result".into(),
        attributes: vec![
            kv("session.id", session),
            kv("tool_name", "Bash"),
            kv("tool_use_id", id),
            kb("success", ok),
            kv("error", if ok { "" } else { "exit 1" }),
        ],
        ..Default::default()
    }
}

const T0: u64 = 1_795_000_000_000; // ms

async fn open_store(dir: &std::path::Path) -> (Store, agent_console::store::WriterHandle, Arc<Hub>) {
    let cfg = StoreConfig { data_dir: dir.to_path_buf(), memory_limit: "256MB".into(), ..StoreConfig::default() };
    let hub =
        Hub::new(HubConfig { heartbeat: Duration::from_secs(3600), ..HubConfig::default() }, CancellationToken::new());
    let hook = hub.start_publisher();
    let prices = Arc::new(PriceTable::embedded().expect("prices"));
    let (store, writer) = Store::open_with_clock(
        &cfg,
        prices,
        Arc::new(Metrics::default()),
        vec![hook],
        agent_console::sessions::tokio_clock(),
    )
    .expect("store");
    (store, writer, hub)
}

/// What the ingest path does: the record is durable in the log, then the pipeline runs the
/// session tracker on it; `flush` waits until it is committed to DuckDB.
async fn send(store: &Store, req: ExportLogsServiceRequest) {
    let received = (store.clock())();
    let mapped = normalize::logs(&req, received);
    let record = Record::single(PartKind::Logs, req.encode_to_vec().into(), received);
    store.append(record, mapped.batch).await.expect("append");
    store.flush(None).await.expect("flush");
}

async fn status(store: &Store, session: &str) -> (String, bool, String) {
    let rows = store
        .reader
        .query_objects(
            "SELECT status, stuck, status_reason FROM sessions WHERE session_id = ?",
            vec![Some(session.to_owned())],
        )
        .await
        .expect("query");
    let r = &rows[0];
    (
        r["status"].as_str().unwrap_or("").to_owned(),
        r["stuck"] == true,
        r["status_reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(start_paused = true)]
async fn idle_stuck_and_finished_follow_the_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, hub) = open_store(dir.path()).await;
    let sec = Duration::from_secs(1);

    // Plain work: running; 59 s later still running; at 60 s idle.
    send(&store, logs(vec![hook("quiet", "Notification", T0, vec![])])).await;
    assert_eq!(status(&store, "quiet").await.0, "running");
    tokio::time::advance(59 * sec).await;
    store.tick_now().await.expect("tick");
    assert_eq!(status(&store, "quiet").await.0, "running");
    tokio::time::advance(sec).await;
    store.tick_now().await.expect("tick");
    assert_eq!(status(&store, "quiet").await, ("idle".into(), false, "no activity for 60 s".into()));

    // A turn in flight (prompt without Stop): never idle, stuck after 300 s, then Stop finishes it.
    send(&store, logs(vec![hook("busy", "UserPromptSubmit", T0 + 60_000, vec![])])).await;
    tokio::time::advance(120 * sec).await;
    store.tick_now().await.expect("tick");
    assert_eq!(status(&store, "busy").await.0, "running");
    tokio::time::advance(180 * sec).await;
    store.tick_now().await.expect("tick");
    let (st, stuck, reason) = status(&store, "busy").await;
    assert_eq!((st.as_str(), stuck), ("running", true), "{reason}");
    send(&store, logs(vec![hook("busy", "Stop", T0 + 400_000, vec![])])).await;
    assert_eq!(status(&store, "busy").await, ("finished".into(), false, "Stop".into()));

    // The quiet session finishes after 30 minutes without activity.
    tokio::time::advance(1800 * sec).await;
    store.tick_now().await.expect("tick");
    assert_eq!(status(&store, "quiet").await, ("finished".into(), false, "no activity for 1800 s".into()));

    // Every change is a transitions row, in order.
    let rows = store
        .reader
        .query_objects(
            "SELECT session_id, coalesce(from_status, '-') AS f, to_status AS t, stuck FROM session_transitions
             ORDER BY time, rowid",
            vec![],
        )
        .await
        .expect("transitions");
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}->{}{}",
                r["session_id"].as_str().unwrap_or(""),
                r["f"].as_str().unwrap_or(""),
                r["t"].as_str().unwrap_or(""),
                if r["stuck"] == true { " stuck" } else { "" }
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "quiet -->running",
            "quiet running->idle",
            "busy -->running",
            "busy running->running stuck",
            "busy running->finished",
            "quiet idle->finished",
        ]
    );

    // The same changes went out on the live stream as `session` messages with the summary.
    let mut sub =
        hub.subscribe(Some(0), Filter::new(&LiveParams { types: Some("session".into()), ..Default::default() }));
    let mut seen = Vec::new();
    loop {
        let m = sub.next().await.expect("message");
        if m.kind != "session" {
            break; // the heartbeat: everything retained has been replayed
        }
        let d: Value = serde_json::from_str(&m.data).expect("json");
        seen.push(format!("{} {}", d["session_id"].as_str().unwrap_or(""), d["status"].as_str().unwrap_or("")));
        assert!(d["status_since"].is_string() && d["elapsed_s"].is_number(), "{d}");
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("quiet finished"));

    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
}

#[tokio::test(start_paused = true)]
async fn states_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, writer, _hub) = open_store(dir.path()).await;
        send(&store, logs(vec![hook("r", "UserPromptSubmit", T0, vec![]), tool_result("r", T0 + 1, "t1", false)]))
            .await;
        assert_eq!(status(&store, "r").await.0, "errored");
        drop(store);
        tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
    }
    let (store, writer, _hub) = open_store(dir.path()).await;
    // Restored as errored with its totals; a successful call makes it running again.
    send(&store, logs(vec![tool_result("r", T0 + 2, "t2", true)])).await;
    assert_eq!(status(&store, "r").await.0, "running");
    let rows = store
        .reader
        .query_objects("SELECT count(*) AS n FROM session_transitions WHERE session_id = 'r'", vec![])
        .await
        .expect("q");
    assert_eq!(rows[0]["n"], 2);
    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
}

/// A root agent span (an agent run that ended) for `session`.
fn root_agent_span(session: &str, parent_session: Option<&str>, failed: bool) -> ExportTraceServiceRequest {
    let mut attributes = vec![
        kv("gen_ai.operation.name", "invoke_agent"),
        kv("gen_ai.agent.name", "researcher"),
        kv("gen_ai.conversation.id", session),
    ];
    if let Some(p) = parent_session {
        attributes.push(kv("agent_console.session.parent_id", p));
    }
    let start = (T0 + 5_000) * 1_000_000;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "crew")], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: session.bytes().chain(std::iter::repeat(1)).take(8).collect(),
                    name: "invoke_agent researcher".into(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 2_000_000_000,
                    attributes,
                    status: Some(Status {
                        code: if failed { status::StatusCode::Error } else { status::StatusCode::Ok } as i32,
                        message: String::new(),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn hook_events_and_spans_drive_states_over_the_network() {
    let app = common::spawn().await;
    let r = app.client.get(format!("{}/api/live?type=session", app.http)).send().await.expect("sse");
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();

    let post = |req: Vec<u8>, path: &'static str| app.post(path, "application/x-protobuf", req);
    // A Claude Code session: start, prompt, a failing tool, a successful one, then SessionEnd.
    let s = "cc-1";
    let steps: Vec<(Vec<LogRecord>, &str)> = vec![
        (vec![hook(s, "SessionStart", T0, vec![]), hook(s, "UserPromptSubmit", T0 + 1, vec![])], "running"),
        (vec![hook(s, "PreToolUse", T0 + 2, vec![]), tool_result(s, T0 + 3, "toolu_1", false)], "errored"),
        (vec![tool_result(s, T0 + 4, "toolu_2", true)], "running"),
        (vec![hook(s, "Stop", T0 + 5, vec![]), hook(s, "SessionEnd", T0 + 6, vec![])], "finished"),
    ];
    for (records, want) in steps {
        assert_eq!(post(logs(records).encode_to_vec(), "/v1/logs").await.status(), 200);
        let got = app.scalar(&format!("SELECT status FROM sessions WHERE session_id = '{s}'")).await;
        assert_eq!(got, want);
    }
    // Late telemetry of the finished session (older than its end) does not reopen it.
    assert_eq!(
        post(logs(vec![tool_result(s, T0 + 3, "toolu_3", true)]).encode_to_vec(), "/v1/logs").await.status(),
        200
    );
    assert_eq!(app.scalar(&format!("SELECT status FROM sessions WHERE session_id = '{s}'")).await, "finished");

    // An agent run (root span) with a child session: both finished when their root spans end;
    // the child links to its parent, and a failed child run is recorded as its reason.
    let parent = root_agent_span("crew-parent", None, false);
    let child = root_agent_span("crew-child", Some("crew-parent"), true);
    for req in [parent, child] {
        assert_eq!(post(req.encode_to_vec(), "/v1/traces").await.status(), 200);
    }
    let rows = app
        .rows("SELECT session_id, status, parent_session_id, status_reason FROM sessions WHERE session_id LIKE 'crew-%' ORDER BY 1")
        .await;
    assert_eq!(rows[0][0], "crew-child");
    assert_eq!((&rows[0][1], &rows[0][2]), (&Value::from("finished"), &Value::from("crew-parent")));
    assert_eq!((&rows[1][1], &rows[1][2]), (&Value::from("finished"), &Value::Null));
    assert!(rows[0][3].as_str().unwrap_or("").starts_with("root agent span ended"), "{rows:?}");

    // The SSE client saw every change of cc-1 in order, each with the summary.
    let mut buf = String::new();
    let mut states = Vec::new();
    while states.len() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(60), body.next()).await.expect("sse in time");
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk").expect("bytes")));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
            let d: Value = serde_json::from_str(data.trim()).expect("json");
            if d["session_id"] == s {
                assert!(frame.contains("event: session") || frame.contains("event:session"), "{frame}");
                states.push((d["previous_status"].clone(), d["status"].as_str().unwrap_or("").to_owned()));
                if d["status"] == "finished" {
                    assert_eq!(d["tool_calls"], 2, "{d}");
                    assert_eq!(d["status_reason"], "SessionEnd", "{d}");
                }
            }
        }
    }
    let got: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(got, vec!["running", "errored", "running", "finished"]);
    assert_eq!(states[0].0, Value::Null);
    app.shutdown().await;
}

/// (status, stuck, waiting, long_tool) as stored.
async fn flags(store: &Store, session: &str) -> (String, bool, bool, bool) {
    let rows = store
        .reader
        .query_objects(
            "SELECT status, coalesce(stuck, false) AS stuck, coalesce(waiting, false) AS waiting,
                    coalesce(long_tool, false) AS long_tool FROM sessions WHERE session_id = ?",
            vec![Some(session.to_owned())],
        )
        .await
        .expect("query");
    let r = &rows[0];
    (r["status"].as_str().unwrap_or("").to_owned(), r["stuck"] == true, r["waiting"] == true, r["long_tool"] == true)
}

#[tokio::test(start_paused = true)]
async fn waiting_long_tool_and_stuck_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, writer, hub) = open_store(dir.path()).await;
    let sec = Duration::from_secs(1);
    let tool = |s: &str, e: &str, t: u64| hook(s, e, t, vec![kv("tool_use_id", "toolu_1"), kv("tool_name", "Bash")]);
    // A permission prompt (Claude Code's Notification hook after PreToolUse): waiting for a human.
    send(
        &store,
        logs(vec![
            hook("ask", "UserPromptSubmit", T0, vec![]),
            tool("ask", "PreToolUse", T0 + 1),
            hook("ask", "Notification", T0 + 2, vec![kv("notification_type", "permission_prompt")]),
        ]),
    )
    .await;
    // A tool started and not finished.
    send(&store, logs(vec![hook("tool", "UserPromptSubmit", T0, vec![]), tool("tool", "PreToolUse", T0 + 1)])).await;
    // A turn open with nothing in flight.
    send(&store, logs(vec![hook("silent", "UserPromptSubmit", T0, vec![])])).await;
    assert_eq!(flags(&store, "ask").await, ("running".into(), false, true, false));
    assert_eq!(flags(&store, "tool").await, ("running".into(), false, false, false));

    // Past the stuck threshold (300 s): each is told apart.
    tokio::time::advance(301 * sec).await;
    store.tick_now().await.expect("tick");
    assert_eq!(flags(&store, "ask").await, ("running".into(), false, true, false), "waiting, not stuck");
    assert_eq!(flags(&store, "tool").await, ("running".into(), false, false, true), "a long tool call");
    assert_eq!(flags(&store, "silent").await, ("running".into(), true, false, false), "stuck");

    // Work after the prompt (the tool ran): no longer waiting; the finished tool ends the long call.
    send(&store, logs(vec![tool("ask", "PostToolUse", T0 + 400_000)])).await;
    send(&store, logs(vec![tool("tool", "PostToolUse", T0 + 400_000)])).await;
    assert_eq!(flags(&store, "ask").await, ("running".into(), false, false, false));
    assert_eq!(flags(&store, "tool").await, ("running".into(), false, false, false));

    // The live `session` messages carry the flags.
    let mut sub =
        hub.subscribe(Some(0), Filter::new(&LiveParams { types: Some("session".into()), ..Default::default() }));
    let mut seen = Vec::new();
    loop {
        let m = sub.next().await.expect("message");
        if m.kind != "session" {
            break;
        }
        let d: Value = serde_json::from_str(&m.data).expect("json");
        seen.push((
            d["session_id"].as_str().unwrap_or("").to_string(),
            d["waiting"] == true,
            d["long_tool"] == true,
            d["stuck"] == true,
        ));
    }
    assert!(seen.contains(&("ask".into(), true, false, false)), "{seen:?}");
    assert!(seen.contains(&("tool".into(), false, true, false)), "{seen:?}");
    assert!(seen.contains(&("silent".into(), false, false, true)), "{seen:?}");
    assert_eq!(seen.iter().filter(|s| s.0 == "ask" && s.1).count(), 1, "one change, one message: {seen:?}");

    drop(store);
    tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
}
