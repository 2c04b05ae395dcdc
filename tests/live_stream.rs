//! The live stream over real sockets: an SSE client that parses the event stream (and resumes with
//! `Last-Event-ID`), a WebSocket client (tokio-tungstenite, `?since=`), filters, the snapshot, and
//! a client that does not read (it gets a `gap`, ingest is not slowed).

mod common;

use std::time::Duration;

use common::{spawn, spawn_with, TestApp};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

/// Failure guard only: no assertion depends on it.
const GUARD: Duration = Duration::from_secs(120);

/// One parsed SSE frame.
#[derive(Debug, Clone)]
struct Frame {
    id: u64,
    kind: String,
    data: Value,
}

/// A minimal SSE client: `id:`, `event:`, `data:` lines, frames end at a blank line, `:` comments.
struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    async fn connect(app: &TestApp, query: &str, last_event_id: Option<u64>) -> Sse {
        let mut req = app.client.get(format!("{}/api/live{query}", app.http));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = req.send().await.expect("connect");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Sse { body: Box::pin(r.bytes_stream()), buf: String::new() }
    }

    async fn next(&mut self) -> Frame {
        tokio::time::timeout(GUARD, self.next_inner()).await.expect("an SSE frame in time")
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if kind.is_empty() && data.is_empty() {
                    continue; // keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("json data");
                return Frame { id: id.expect("every message has an id"), kind, data };
            }
            let chunk = self.body.next().await.expect("stream open").expect("chunk");
            self.buf.push_str(std::str::from_utf8(&chunk).expect("utf8"));
        }
    }
}

fn is_control(f: &Frame) -> bool {
    matches!(f.kind.as_str(), "heartbeat" | "snapshot")
}

/// LLM spans as OTLP/JSON; `base` makes ids unique per call, `pad` adds a large attribute.
fn llm_spans(base: usize, n: usize, agent: &str, session: &str, task: &str, pad: usize) -> Vec<u8> {
    let spans: Vec<Value> = (0..n)
        .map(|i| {
            let id = base + i + 1;
            json!({
                "traceId": format!("{id:032x}"),
                "spanId": format!("{id:016x}"),
                "name": "chat gpt-4o",
                "kind": 3,
                "startTimeUnixNano": "1767225600000000000",
                "endTimeUnixNano": "1767225601000000000",
                "attributes": [
                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                    {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                    {"key": "gen_ai.agent.id", "value": {"stringValue": agent}},
                    {"key": "gen_ai.conversation.id", "value": {"stringValue": session}},
                    {"key": "agent_console.task.id", "value": {"stringValue": task}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 100 + id}},
                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 10 + id}},
                    {"key": "pad", "value": {"stringValue": "x".repeat(pad)}},
                ],
            })
        })
        .collect();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "live-test"}}]},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]
    }]});
    serde_json::to_vec(&body).expect("json")
}

async fn post_spans(app: &TestApp, body: Vec<u8>) {
    let r = tokio::time::timeout(GUARD, app.post("/v1/traces", "application/json", body)).await.expect("post in time");
    assert_eq!(r.status(), 200);
}

/// Read until `want` span and `want` model_call messages arrived; returns every non-control frame.
async fn read_calls(sse: &mut Sse, want: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let count = |out: &Vec<Frame>, k: &str| out.iter().filter(|f: &&Frame| f.kind == k).count();
    while count(&out, "span") < want || count(&out, "model_call") < want {
        let f = sse.next().await;
        if !is_control(&f) {
            out.push(f);
        }
    }
    out
}

/// Ids are the ingest log position of the export (high bits) and the message's index in it:
/// strictly increasing, each after `after`, with no duplicate (a resume never repeats a message).
fn assert_increasing(frames: &[Frame], after: u64) {
    let ids: Vec<u64> = frames.iter().map(|f| f.id).collect();
    assert!(ids.first().is_some_and(|&first| first > after), "{ids:?} after {after}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must increase with no duplicate: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_rows_and_resumes_with_last_event_id() {
    let app = spawn().await;
    let mut sse = Sse::connect(&app, "", None).await;
    post_spans(&app, llm_spans(0, 2, "agent-a", "sess-1", "task-1", 0)).await;
    let first = read_calls(&mut sse, 2).await;
    assert_increasing(&first, 0);
    // Ids derive from the durable ingest log position, so they continue across restarts.
    assert!(first[0].id >= 1 << 20, "{first:?}");
    let span = first.iter().find(|f| f.kind == "span").expect("span");
    assert_eq!(span.data["session_id"], "sess-1");
    assert_eq!(span.data["agent_id"], "agent-a");
    assert_eq!(span.data["task_id"], "task-1");
    assert_eq!(span.data["name"], "chat gpt-4o");
    assert_eq!(span.data["span_type"], "llm");
    assert_eq!(span.data["start_time"], "2026-01-01T00:00:00.000000Z");
    let call = first.iter().find(|f| f.kind == "model_call").expect("model_call");
    assert_eq!(call.data["session_id"], "sess-1");
    assert_eq!(call.data["agent_id"], "agent-a");
    assert_eq!(call.data["task_id"], "task-1");
    assert_eq!(call.data["model"], "gpt-4o");
    assert_eq!(call.data["source"], "span");
    assert!(call.data["input_tokens"].as_i64().is_some(), "{call:?}");
    let last = first.last().expect("frames").id;
    drop(sse);

    // Missed while disconnected, then resumed from the last id seen.
    post_spans(&app, llm_spans(100, 3, "agent-a", "sess-2", "task-1", 0)).await;
    let mut sse = Sse::connect(&app, "", Some(last)).await;
    let resumed = read_calls(&mut sse, 3).await;
    assert_increasing(&resumed, last);
    let mut spans: Vec<String> =
        resumed.iter().filter(|f| f.kind == "span").map(|f| f.data["span_id"].as_str().unwrap_or("").into()).collect();
    spans.sort();
    let want: Vec<String> = (101..=103).map(|i| format!("{i:016x}")).collect();
    assert_eq!(spans, want);
    assert!(resumed.iter().all(|f| f.data["session_id"] == "sess-2" || f.kind == "session"), "{resumed:?}");

    // Shutdown completes with a subscriber still connected.
    tokio::time::timeout(GUARD, app.shutdown()).await.expect("shutdown in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_type_and_agent() {
    let app = spawn().await;
    let mut sse = Sse::connect(&app, "?type=model_call&agent=agent-b", None).await;
    post_spans(&app, llm_spans(0, 3, "agent-a", "s-a", "t", 0)).await;
    post_spans(&app, llm_spans(10, 2, "agent-b", "s-b", "t", 0)).await;
    // The agent-b batch was published after the agent-a one, so once both of its calls arrived
    // everything before them has been filtered.
    let mut got = Vec::new();
    while got.len() < 2 {
        let f = sse.next().await;
        if !is_control(&f) {
            got.push(f);
        }
    }
    for f in &got {
        assert_eq!((f.kind.as_str(), &f.data["agent_id"]), ("model_call", &json!("agent-b")), "{got:?}");
    }
    assert!(got[0].id < got[1].id);
    app.shutdown().await;
}

async fn ws_next(ws: &mut (impl futures::Stream<Item = tungstenite::Result<tungstenite::Message>> + Unpin)) -> Value {
    loop {
        let m = tokio::time::timeout(GUARD, ws.next()).await.expect("frame in time").expect("open").expect("frame");
        if let tungstenite::Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("json frame");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_streams_text_frames_and_resumes_with_since() {
    let app = spawn().await;
    let url = format!("ws://{}/api/live/ws", app.running.as_ref().expect("running").http_addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("ws connect");
    post_spans(&app, llm_spans(0, 2, "agent-w", "sess-w", "task-w", 0)).await;
    let mut frames = Vec::new();
    while frames.iter().filter(|f: &&Value| f["type"] == "model_call").count() < 2 {
        let f = ws_next(&mut ws).await;
        assert!(f["id"].as_u64().is_some() && f["data"].is_object(), "{f}");
        if f["type"] != "heartbeat" {
            frames.push(f);
        }
    }
    let ids: Vec<u64> = frames.iter().map(|f| f["id"].as_u64().unwrap_or(0)).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let call = frames.iter().find(|f| f["type"] == "model_call").expect("model_call");
    assert_eq!(call["data"]["agent_id"], "agent-w");
    assert_eq!(call["data"]["session_id"], "sess-w");
    assert_eq!(call["data"]["task_id"], "task-w");
    assert!(frames.iter().any(|f| f["type"] == "span"));
    let last = *ids.last().expect("ids");
    ws.close(None).await.expect("close");

    post_spans(&app, llm_spans(50, 2, "agent-w", "sess-w2", "task-w", 0)).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{url}?since={last}").as_str()).await.expect("ws reconnect");
    let mut resumed = Vec::new();
    while resumed.iter().filter(|f: &&Value| f["type"] == "model_call").count() < 2 {
        let f = ws_next(&mut ws).await;
        if f["type"] != "heartbeat" {
            resumed.push(f);
        }
    }
    let ids: Vec<u64> = resumed.iter().map(|f| f["id"].as_u64().unwrap_or(0)).collect();
    assert!(ids[0] > last && ids.windows(2).all(|w| w[0] < w[1]), "{resumed:?}");
    assert!(resumed.iter().filter(|f| f["type"] == "model_call").all(|f| f["data"]["session_id"] == "sess-w2"));
    tokio::time::timeout(GUARD, app.shutdown()).await.expect("shutdown with a WebSocket open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_gets_a_gap_and_ingest_is_not_slowed() {
    let app = spawn_with(|a| a.live_buffer = 4).await;
    // Subscribed (the response has started) but not read: far more than the socket buffers hold.
    let mut slow = Sse::connect(&app, "", None).await;
    for i in 0..40 {
        post_spans(&app, llm_spans(i * 1000, 25, "agent-s", "sess-s", "t", 20_000)).await;
    }
    post_spans(&app, llm_spans(999_000, 1, "agent-s", "sess-last", "t", 0)).await;
    let mut missed = 0;
    let mut after_gap = 0;
    loop {
        let f = slow.next().await;
        if f.kind == "gap" {
            missed += f.data["missed"].as_u64().expect("missed count");
        } else if missed > 0 && !is_control(&f) {
            after_gap += 1;
        }
        if f.kind == "model_call" && f.data["session_id"] == "sess-last" {
            break;
        }
    }
    assert!(missed > 0, "a client that does not read must be told what it missed");
    assert!(after_gap > 0, "the stream continues after the gap");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_comes_first() {
    let app = spawn().await;
    post_spans(&app, llm_spans(0, 1, "agent-n", "sess-snap", "t", 0)).await;
    // The session row is committed with the span, so it is in the snapshot.
    let mut sse = Sse::connect(&app, "?snapshot=true", None).await;
    let first = sse.next().await;
    assert_eq!(first.kind, "snapshot");
    let sessions = first.data["sessions"].as_array().expect("sessions");
    assert!(sessions.iter().any(|s| s["session_id"] == "sess-snap"), "{sessions:?}");
    app.shutdown().await;
}

/// Issue 15: the live stream runs ahead of the DuckDB commit, so a session streamed but not yet
/// committed is not in a snapshot read from DuckDB. A client that asks for `snapshot=true` (the
/// console does, on its first connect) still gets it: the subscription replays what came after
/// the committed position, after the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_replay_covers_records_streamed_before_their_commit() {
    // DuckDB commits only on flush or after ten minutes: the export stays in the log.
    let app = spawn_with(|a| a.commit_max_delay_ms = 600_000).await;
    let mut watcher = Sse::connect(&app, "?session=sess-race", None).await;
    // Not `post_spans`: the test app's post flushes (commits) after an accepted export.
    let body = reqwest::Body::from(llm_spans(0, 1, "agent-r", "sess-race", "t", 0));
    assert_eq!(app.post_raw("/v1/traces", "application/json", body).await, Some(200));
    // Wait until it has been streamed (published before the page asks for its snapshot).
    let streamed = loop {
        let f = watcher.next().await;
        if !is_control(&f) {
            break f;
        }
    };
    let mut sse = Sse::connect(&app, "?snapshot=true", None).await;
    let first = sse.next().await;
    assert_eq!(first.kind, "snapshot");
    let sessions = first.data["sessions"].as_array().expect("sessions");
    assert!(
        !sessions.iter().any(|s| s["session_id"] == "sess-race"),
        "the export was committed already, the test shows nothing: {sessions:?}"
    );
    // The replay after the snapshot brings the streamed record, with the id it was streamed with.
    let replayed = loop {
        let f = sse.next().await;
        if !is_control(&f) && f.data["session_id"] == "sess-race" {
            break f;
        }
    };
    // Ids carry the log position in their high bits: the same record, the same ids.
    assert_eq!(replayed.id >> 20, streamed.id >> 20, "{replayed:?} vs {streamed:?}");
    // A later subscriber without a snapshot starts at the newest message: nothing replayed.
    let mut plain = Sse::connect(&app, "?session=sess-race", None).await;
    post_spans(&app, llm_spans(10, 1, "agent-r", "sess-race", "t", 0)).await;
    let next = loop {
        let f = plain.next().await;
        if !is_control(&f) {
            break f;
        }
    };
    assert!(next.id >> 20 > streamed.id >> 20, "a plain subscription starts at the newest message: {next:?}");
    app.shutdown().await;
}

/// Issue 10, row 10: the resume window is bounded in bytes (`--live-retention-mib`), not only in
/// messages; a client resuming from before what the byte bound evicted gets a `gap` counting the
/// messages it missed, then the retained ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_live_retention_is_bounded_in_bytes_and_resume_past_it_gets_a_gap() {
    let app = spawn_with(|a| {
        a.live_retention = 1_000_000;
        a.live_retention_mib = 1;
    })
    .await;
    let mut sse = Sse::connect(&app, "", None).await;
    // Each export's rows carry ~200 KB of attribute text (with their JSON, over 0.4 MiB retained):
    // 1 MiB cannot hold three of them.
    let mut exports = Vec::new();
    for (i, session) in ["sess-1", "sess-2", "sess-3", "sess-4"].into_iter().enumerate() {
        post_spans(&app, llm_spans(100 * i, 20, "agent-a", session, "t", 10_000)).await;
        exports.push(read_calls(&mut sse, 20).await);
    }
    drop(sse);
    // Resume from the end of the first export (its ids share the log position in their high
    // bits; its last messages may have been read with the second): all of the second is gone.
    let pos = |id: u64| id >> 20;
    let first_pos = pos(exports[0][0].id);
    let last = exports.iter().flatten().map(|f| f.id).filter(|&id| pos(id) == first_pos).max().expect("frames");
    let second: Vec<&Frame> = exports.iter().flatten().filter(|f| pos(f.id) == pos(exports[1][0].id)).collect();

    let mut sse = Sse::connect(&app, "", Some(last)).await;
    let gap = loop {
        let f = sse.next().await;
        if !is_control(&f) {
            break f;
        }
    };
    assert_eq!(gap.kind, "gap", "{gap:?}");
    let missed = gap.data["missed"].as_u64().expect("an exact count");
    assert!(missed >= 40, "the second export (20 spans, 20 calls) was evicted: {missed}");
    // A small export after the resume marks the end of what the ring replays.
    post_spans(&app, llm_spans(900, 1, "agent-a", "sess-5", "t", 0)).await;
    let mut resumed = Vec::new();
    loop {
        let f = sse.next().await;
        if is_control(&f) {
            continue;
        }
        if f.kind == "span" && f.data["session_id"] == "sess-5" {
            break;
        }
        resumed.push(f);
    }
    // What is replayed is whole exports, the newest ones, never the evicted second one.
    let calls = |f: &&Frame| f.kind == "span" || f.kind == "model_call";
    let replayed: std::collections::BTreeSet<u64> = resumed.iter().filter(calls).map(|f| pos(f.id)).collect();
    assert!(replayed.contains(&pos(exports[3][0].id)), "the newest export is retained: {replayed:?}");
    assert!(replayed.len() < 3, "the byte bound evicted exports: {replayed:?}");
    for p in &replayed {
        let want: Vec<u64> = exports.iter().flatten().filter(calls).map(|f| f.id).filter(|id| pos(*id) == *p).collect();
        let got: Vec<u64> = resumed.iter().filter(calls).map(|f| f.id).filter(|id| pos(*id) == *p).collect();
        assert_eq!((got.len(), &got), (40, &want), "export at position {p} replayed whole");
    }
    assert!(resumed.iter().all(|f| f.id > second.last().expect("second").id), "nothing evicted is replayed");
    app.shutdown().await;
}

/// Issue 15 (cost provenance): a subscription-covered agent's cost is an estimate on the live
/// stream too. `model_call` and `session` messages carry `billing`, `billing_plan`,
/// `cost_is_estimate`, `spend_usd` and `estimated_usd`, as the API does; a session's own mark
/// wins over its agent's, and a mark made while the collector runs applies to the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_costs_carry_billing_and_subscription_cost_is_an_estimate() {
    let app = spawn().await;
    let put = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let r = app.client.put(format!("{}{path}", app.http)).json(&body).send().await.expect("put");
            assert_eq!(r.status(), 200, "{path}");
        }
    };
    put("/api/billing/agents/coder", json!({"billing": "subscription", "plan": "max"})).await;
    put("/api/billing/sessions/sess-api", json!({"billing": "api"})).await;
    let mut sse = Sse::connect(&app, "?type=model_call,session", None).await;
    post_spans(&app, llm_spans(0, 1, "coder", "sess-sub", "t", 0)).await;
    post_spans(&app, llm_spans(10, 1, "coder", "sess-api", "t", 0)).await;
    post_spans(&app, llm_spans(20, 1, "reviewer", "sess-rev", "t", 0)).await;
    let mut calls = std::collections::HashMap::new();
    let mut sessions = std::collections::HashMap::new();
    while calls.len() < 3 || sessions.len() < 3 {
        let f = sse.next().await;
        let sid = f.data["session_id"].as_str().unwrap_or_default().to_string();
        match f.kind.as_str() {
            "model_call" => calls.insert(sid, f.data),
            "session" => sessions.insert(sid, f.data),
            _ => None,
        };
    }
    let close = |a: &Value, b: f64| (a.as_f64().expect("a number") - b).abs() < 1e-12;
    let sub = &calls["sess-sub"];
    let cost = sub["cost_usd"].as_f64().expect("priced");
    assert!(cost > 0.0);
    assert_eq!(
        (&sub["billing"], &sub["billing_plan"], &sub["cost_is_estimate"]),
        (&json!("subscription"), &json!("max"), &json!(true)),
        "{sub}"
    );
    assert!(close(&sub["spend_usd"], 0.0) && close(&sub["estimated_usd"], cost), "{sub}");
    let s = &sessions["sess-sub"];
    assert_eq!((&s["billing"], &s["billing_plan"]), (&json!("subscription"), &json!("max")), "{s}");
    assert!(close(&s["estimated_usd"], s["cost_usd"].as_f64().expect("cost")) && close(&s["spend_usd"], 0.0), "{s}");
    for sid in ["sess-api", "sess-rev"] {
        let c = &calls[sid];
        assert_eq!((&c["billing"], &c["cost_is_estimate"]), (&json!("api"), &json!(false)), "{c}");
        assert!(
            close(&c["spend_usd"], c["cost_usd"].as_f64().expect("cost")) && close(&c["estimated_usd"], 0.0),
            "{c}"
        );
        assert_eq!(sessions[sid]["billing"], "api", "{}", sessions[sid]);
    }
    // Marked while running: the reviewer's next call is an estimate.
    put("/api/billing/agents/reviewer", json!({"billing": "subscription"})).await;
    post_spans(&app, llm_spans(30, 1, "reviewer", "sess-rev", "t", 0)).await;
    let next = loop {
        let f = sse.next().await;
        if f.kind == "model_call" {
            break f.data;
        }
    };
    assert_eq!(
        (&next["session_id"], &next["cost_is_estimate"], &next["billing_plan"]),
        (&json!("sess-rev"), &json!(true), &Value::Null),
        "{next}"
    );
    app.shutdown().await;
}
