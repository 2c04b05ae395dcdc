//! Tasks end to end over real HTTP: a task first seen in telemetry (the captured LangChain
//! payload names `TASK-42`), hand links, a branch / working-directory pattern over the captured
//! Claude Code hook calls, child sessions counted once, board states through a session's life,
//! overrides, external-id upserts, filters and cursor pages, cost per task equal to the sum of
//! its calls and to `GET /api/cost?group_by=task`, SQL over `tasks`, and the live `task` message.

mod common;

use std::time::Duration;

use common::{spawn, spawn_with, TestApp};
use futures::StreamExt;
use serde_json::{json, Value};

const CLAUDE_SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.flush().await;
    let r = app.client.get(format!("{}{path}", app.http)).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.http));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The task's cost three ways: its detail, the `group_by=task` rollup, and plain SQL over the
/// calls of its sessions (children included) and the calls that name it.
async fn costs(app: &TestApp, task: &str, sessions: &[&str]) -> (f64, f64, f64) {
    let (s, d) = get(app, &format!("/api/tasks/{task}")).await;
    assert_eq!(s, 200, "{d}");
    let (_, r) = get(app, "/api/cost?group_by=task").await;
    let rolled = r["rows"].as_array().expect("rows").iter().find(|x| x["group"] == task).map(|x| f(&x["cost_usd"]));
    let list = sessions.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let sql = app
        .scalar(&format!(
            "SELECT coalesce(sum(cost_usd), 0)::DOUBLE FROM model_calls
             WHERE task_id = '{task}' OR (task_id IS NULL AND session_id IN ({list}))"
        ))
        .await;
    (f(&d["cost"]["total_usd"]), rolled.unwrap_or(0.0), f(&sql))
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// One LLM span of `session` (optionally a child of `parent`) with a reported cost.
/// Read a live stream until what was read holds every one of `needles` (at most 60 s); returns
/// whether it did and what was read.
async fn read_until<S, B, E>(body: &mut S, needles: &[&str]) -> (bool, String)
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut buf = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(chunk.as_ref()));
            if needles.iter().all(|n| buf.contains(n)) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    (found, buf)
}

fn child_call(session: &str, parent: &str, cost: f64, id: u64) -> Vec<u8> {
    let t = 1_795_257_000_000_000_000u64 + id * 1_000_000;
    let attrs = json!([
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}},
        {"key": "gen_ai.conversation.id", "value": {"stringValue": session}},
        {"key": "agent_console.session.parent_id", "value": {"stringValue": parent}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 100}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 10}},
        {"key": "gen_ai.usage.cost", "value": {"doubleValue": cost}},
    ]);
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "subagent"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": format!("{:032x}", 0xabc000 + id), "spanId": format!("{:016x}", 0xabc000 + id),
            "name": "chat", "kind": 3, "startTimeUnixNano": t.to_string(), "endTimeUnixNano": (t + 1000).to_string(),
            "attributes": attrs }]}]}]}))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_hand_links_children_and_cost_agree() {
    let app = spawn().await;
    // The LangChain payload names TASK-42 (resource attribute): the task exists, titled by its id.
    let r = app.post("/v1/traces", "application/x-protobuf", fixture("langchain-openinference/traces-1.pb")).await;
    assert_eq!(r.status(), 200);
    let (s, d) = get(&app, "/api/tasks/TASK-42").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["task"]["title"], "TASK-42");
    assert_eq!(d["task"]["created_by"], "telemetry");
    assert_eq!(d["model_calls"], 2, "{d}");
    assert_eq!(d["tool_calls"], 1, "{d}");
    assert_eq!(d["tokens"]["input"], 2550);
    assert_eq!(d["tokens"]["output"], 125);
    assert_eq!(d["tokens"]["cache_read"], 400);
    // One session per trace (the payload has no session id), each linked by the attribute.
    let lc: Vec<String> = d["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| {
            assert_eq!(s["linked_by"], "attribute", "{s}");
            s["session_id"].as_str().expect("id").to_string()
        })
        .collect();
    assert!(!lc.is_empty());
    let lc_refs: Vec<&str> = lc.iter().map(String::as_str).collect();
    let computed = f(&d["cost"]["by_source"]["computed"]["cost_usd"]);
    assert!(computed > 0.0, "gpt-4o-mini is priced: {d}");
    let (a, b, c) = costs(&app, "TASK-42", &lc_refs).await;
    assert!(same(a, b) && same(b, c) && same(a, computed), "{a} {b} {c}");

    // The Claude Code session (no task attribute) linked by hand: its reported cost joins.
    for p in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        assert_eq!(app.post("/v1/logs", "application/x-protobuf", fixture(p)).await.status(), 200);
    }
    let (s, v) = send(&app, reqwest::Method::PUT, &format!("/api/tasks/TASK-42/sessions/{CLAUDE_SESSION}"), None).await;
    assert_eq!((s, &v["added"]), (200, &json!(true)), "{v}");
    // A child of the Claude Code session (a subagent) belongs to the task through its parent.
    let r = app.post("/v1/traces", "application/json", child_call("child-1", CLAUDE_SESSION, 0.5, 1)).await;
    assert_eq!(r.status(), 200);
    let (_, d) = get(&app, "/api/tasks/TASK-42").await;
    let reported = f(&d["cost"]["by_source"]["reported"]["cost_usd"]);
    assert!(same(reported, 0.0279 + 0.5), "{d}");
    assert_eq!(d["cost"]["by_source"]["reported"]["calls"], 3);
    assert!(same(f(&d["cost"]["total_usd"]), computed + 0.0279 + 0.5));
    let sessions: Vec<(&str, &str)> = d["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| (s["session_id"].as_str().unwrap_or(""), s["linked_by"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(sessions.len(), lc.len() + 2, "each session once: {sessions:?}");
    assert!(sessions.contains(&(CLAUDE_SESSION, "hand")) && sessions.contains(&("child-1", "parent")), "{sessions:?}");
    let (a, b, c) = costs(&app, "TASK-42", &[lc_refs.clone(), vec![CLAUDE_SESSION, "child-1"]].concat()).await;
    assert!(same(a, b) && same(b, c), "{a} {b} {c}");
    // Every session shows its task.
    let (_, l) = get(&app, "/api/sessions").await;
    for s in l["sessions"].as_array().expect("sessions") {
        assert_eq!(s["task_id"], "TASK-42", "{s}");
    }
    // The linked child is counted once even when it names the task itself too.
    let r = app
        .post("/v1/traces", "application/json", {
            let mut v: Value = serde_json::from_slice(&child_call("child-1", CLAUDE_SESSION, 0.25, 2)).expect("json");
            v["resourceSpans"][0]["resource"]["attributes"]
                .as_array_mut()
                .expect("attrs")
                .push(json!({"key": "agent_console.task.id", "value": {"stringValue": "TASK-42"}}));
            serde_json::to_vec(&v).expect("json")
        })
        .await;
    assert_eq!(r.status(), 200);
    let (a, b, c) = costs(&app, "TASK-42", &[lc_refs.clone(), vec![CLAUDE_SESSION, "child-1"]].concat()).await;
    assert!(same(a, computed + 0.0279 + 0.75) && same(a, b) && same(b, c), "{a} {b} {c}");

    // Unlinking by hand takes the Claude Code session out again; the child named the task itself
    // since, so it keeps its own (attribute) link and both its calls.
    let (s, v) =
        send(&app, reqwest::Method::DELETE, &format!("/api/tasks/TASK-42/sessions/{CLAUDE_SESSION}"), None).await;
    assert_eq!((s, &v["removed"]), (200, &json!(1)), "{v}");
    let (a, b, c) = costs(&app, "TASK-42", &[lc_refs.clone(), vec!["child-1"]].concat()).await;
    assert!(same(a, computed + 0.75) && same(a, b) && same(b, c), "{a} {b} {c}");

    // SQL over the public tables.
    assert_eq!(app.scalar("SELECT count(*) FROM tasks WHERE task_id = 'TASK-42'").await, 1);
    assert_eq!(app.scalar("SELECT count(*) FROM task_sessions WHERE how = 'attribute'").await, lc.len() as i64 + 1);
    // Unknown task / session errors.
    assert_eq!(get(&app, "/api/tasks/NOPE").await.0, 404);
    assert_eq!(send(&app, reqwest::Method::PUT, "/api/tasks/NOPE/sessions/x", None).await.0, 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_pattern_links_hook_sessions() {
    let app = spawn_with(|a| a.task_link_pattern = Some(r"([A-Z]+-[0-9]+)".into())).await;
    for name in ["01-SessionStart", "02-UserPromptSubmit", "03-PreToolUse"] {
        let mut v: Value =
            serde_json::from_slice(&fixture(&format!("claude-code/hooks/{name}.json"))).expect("hook json");
        v["cwd"] = json!("/home/dev/feature/TICKET-123-x");
        let r = app.post("/hooks/claude", "application/json", serde_json::to_vec(&v).expect("json")).await;
        assert_eq!(r.status(), 200, "{name}");
    }
    let (s, d) = get(&app, "/api/tasks/TICKET-123").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["sessions"][0]["session_id"], CLAUDE_SESSION);
    assert_eq!(d["sessions"][0]["linked_by"], "pattern");
    assert_eq!(d["task"]["state"], "running");
    let (_, l) = get(&app, "/api/sessions?limit=5").await;
    assert_eq!(l["sessions"][0]["task_id"], "TICKET-123", "{l}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_states_overrides_upserts_and_pages() {
    let app = spawn().await;
    // The live stream sees the task messages.
    let live = app.client.get(format!("{}/api/live?types=task", app.http)).send().await.expect("live");
    assert_eq!(live.status(), 200);
    let mut body = live.bytes_stream();

    let new = json!({"title": "Fix login", "source": "github", "external_id": "org/repo#7", "labels": ["bug"]});
    let (s, t) = send(&app, reqwest::Method::POST, "/api/tasks", Some(new.clone())).await;
    assert_eq!(s, 201, "{t}");
    let id = t["task_id"].as_str().expect("id").to_string();
    assert_eq!(t["state"], "inbox");
    // The same external id again is the same task (updated), not a second one.
    let again = json!({"title": "Fix login (renamed)", "source": "github", "external_id": "org/repo#7"});
    let (s, t2) = send(&app, reqwest::Method::POST, "/api/tasks", Some(again)).await;
    assert_eq!((s, t2["task_id"].as_str()), (200, Some(id.as_str())), "{t2}");
    assert_eq!(t2["title"], "Fix login (renamed)");
    assert_eq!(app.scalar("SELECT count(*) FROM tasks").await, 1);

    // Assigned once it has an agent; running while a linked session runs; a session ending does
    // not complete it; complete by hand; the override cleared derives it again.
    let (_, t) =
        send(&app, reqwest::Method::PATCH, &format!("/api/tasks/{id}"), Some(json!({"agent": "claude-code"}))).await;
    assert_eq!(t["state"], "assigned", "{t}");
    send(&app, reqwest::Method::PUT, &format!("/api/tasks/{id}/sessions/{CLAUDE_SESSION}"), None).await;
    for name in ["01-SessionStart", "02-UserPromptSubmit"] {
        let r = app.post("/hooks/claude", "application/json", fixture(&format!("claude-code/hooks/{name}.json"))).await;
        assert_eq!(r.status(), 200);
    }
    let (_, d) = get(&app, &format!("/api/tasks/{id}")).await;
    assert_eq!(d["task"]["state"], "running", "{d}");
    let r = app.post("/hooks/claude", "application/json", fixture("claude-code/hooks/07-SessionEnd.json")).await;
    assert_eq!(r.status(), 200);
    let (_, d) = get(&app, &format!("/api/tasks/{id}")).await;
    assert_eq!(d["task"]["state"], "assigned", "{d}");
    let (_, t) =
        send(&app, reqwest::Method::PATCH, &format!("/api/tasks/{id}"), Some(json!({"state": "complete"}))).await;
    assert_eq!(t["state"], "complete");
    assert!(t["completed_at"].is_string(), "{t}");
    let (_, t) = send(&app, reqwest::Method::PATCH, &format!("/api/tasks/{id}"), Some(json!({"state": null}))).await;
    assert_eq!(t["state"], "assigned");
    assert!(t["completed_at"].is_null());

    // Filters and cursor pages.
    for i in 0..4 {
        let labels = if i % 2 == 0 { json!(["ops"]) } else { json!([]) };
        let (s, _) = send(
            &app,
            reqwest::Method::POST,
            "/api/tasks",
            Some(json!({"title": format!("chore {i}"), "labels": labels})),
        )
        .await;
        assert_eq!(s, 201);
    }
    let (_, l) = get(&app, "/api/tasks?label=ops").await;
    assert_eq!(l["tasks"].as_array().map(Vec::len), Some(2), "{l}");
    let (_, l) = get(&app, "/api/tasks?q=LOGIN").await;
    assert_eq!(l["tasks"][0]["task_id"].as_str(), Some(id.as_str()), "{l}");
    let (_, l) = get(&app, "/api/tasks?state=inbox").await;
    assert_eq!(l["tasks"].as_array().map(Vec::len), Some(4));
    let (_, l) = get(&app, "/api/tasks?agent=claude-code").await;
    assert_eq!(l["tasks"].as_array().map(Vec::len), Some(1));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (s, page) = get(&app, &format!("/api/tasks?limit=2{q}")).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(page["tasks"].as_array().expect("tasks").iter().map(|t| t["task_id"].clone()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Archived tasks leave the board unless asked for.
    let (s, _) = send(&app, reqwest::Method::POST, &format!("/api/tasks/{id}/archive"), None).await;
    assert_eq!(s, 200);
    let (_, l) = get(&app, "/api/tasks").await;
    assert_eq!(l["tasks"].as_array().map(Vec::len), Some(4));
    let (_, l) = get(&app, "/api/tasks?archived=1").await;
    assert_eq!(l["tasks"].as_array().map(Vec::len), Some(5));
    // Bad input is a clear 400.
    for bad in [json!({}), json!({"title": "x", "state": "done"}), json!({"title": "x", "source": "gh"})] {
        let (s, v) = send(&app, reqwest::Method::POST, "/api/tasks", Some(bad)).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"].is_string());
    }
    assert_eq!(get(&app, "/api/tasks?state=nope").await.0, 400);
    assert_eq!(get(&app, "/api/tasks?cursor=zzz").await.0, 400);

    // A `task` message for our task arrived (coalesced per second; its last state is known).
    let (found, buf) = read_until(&mut body, &["event: task", &id]).await;
    assert!(found, "a task message: {buf}");
    app.shutdown().await;
}

/// The cards' query runs only while someone listens: a change made while nobody is subscribed
/// is kept and goes out to the next subscriber (a console that reconnects misses nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_changed_while_nobody_listens_reaches_the_next_subscriber() {
    let app = spawn().await;
    let (s, t) = send(&app, reqwest::Method::POST, "/api/tasks", Some(json!({"title": "Unwatched"}))).await;
    assert_eq!(s, 201, "{t}");
    let id = t["task_id"].as_str().expect("id").to_string();
    let (s, t) =
        send(&app, reqwest::Method::PATCH, &format!("/api/tasks/{id}"), Some(json!({"state": "complete"}))).await;
    assert_eq!((s, t["state"].as_str()), (200, Some("complete")), "{t}");
    // Let the once-a-second publisher pass with nobody subscribed (only makes the test sharper:
    // before, this tick published the card to nobody and a later subscriber never saw it).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let live = app.client.get(format!("{}/api/live?types=task", app.http)).send().await.expect("live");
    assert_eq!(live.status(), 200);
    let mut body = live.bytes_stream();
    let (found, buf) = read_until(&mut body, &["event: task", &id, "\"state\":\"complete\""]).await;
    assert!(found, "the card, complete, after subscribing: {buf}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_writes_need_the_control_token() {
    let app = spawn_with(|a| a.control_token = Some("ctl".into())).await;
    let (s, _) = send(&app, reqwest::Method::POST, "/api/tasks", Some(json!({"title": "x"}))).await;
    assert_eq!(s, 401);
    let r = app
        .client
        .post(format!("{}/api/tasks", app.http))
        .bearer_auth("ctl")
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["created_by"], "control");
    assert_eq!(get(&app, "/api/tasks").await.0, 200);
    app.shutdown().await;
}

/// Dispatch: the task's text reaches a running Claude Code session as an audited inject (here at
/// its next PreToolUse through the http hook path) and the session is linked to the task; a
/// session that cannot take a message is refused with the reason and nothing is linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_sends_the_task_to_a_session_and_links_it() {
    let app = spawn().await;
    let new = json!({"title": "Fix login", "description": "The session cookie expires too early.",
                     "url": "https://tracker.example/T-7"});
    let (s, t) = send(&app, reqwest::Method::POST, "/api/tasks", Some(new)).await;
    assert_eq!(s, 201, "{t}");
    let id = t["task_id"].as_str().expect("id").to_string();
    for name in ["01-SessionStart", "02-UserPromptSubmit"] {
        let r = app.post("/hooks/claude", "application/json", fixture(&format!("claude-code/hooks/{name}.json"))).await;
        assert_eq!(r.status(), 200);
    }
    // An OTLP-only session has no control channel: refused, not linked.
    let otlp = app.post("/v1/traces", "application/x-protobuf", fixture("langchain-openinference/traces-1.pb")).await;
    assert_eq!(otlp.status(), 200);
    let (_, sessions) = get(&app, "/api/sessions?limit=50").await;
    let other = sessions["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["session_id"].as_str())
        .find(|s| *s != CLAUDE_SESSION)
        .expect("an OTLP session")
        .to_string();
    let (s, refused) =
        send(&app, reqwest::Method::POST, &format!("/api/tasks/{id}/dispatch"), Some(json!({"session": other}))).await;
    assert_eq!(s, 409, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("no control channel")), "{refused}");
    let (s, _) =
        send(&app, reqwest::Method::POST, "/api/tasks/NOPE/dispatch", Some(json!({"session": CLAUDE_SESSION}))).await;
    assert_eq!(s, 404);
    let (s, _) = send(&app, reqwest::Method::POST, &format!("/api/tasks/{id}/dispatch"), Some(json!({"x": 1}))).await;
    assert_eq!(s, 400);

    let (s, d) = send(
        &app,
        reqwest::Method::POST,
        &format!("/api/tasks/{id}/dispatch"),
        Some(json!({"session": CLAUDE_SESSION})),
    )
    .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!((d["linked"].clone(), d["command"]["kind"].clone()), (json!(true), json!("inject")), "{d}");
    let cmd_id = d["command"]["command_id"].as_str().expect("command id").to_string();
    // The agent's next hook carries the task as additional context.
    let r = app.post("/hooks/claude", "application/json", fixture("claude-code/hooks/03-PreToolUse.json")).await;
    assert_eq!(r.status(), 200);
    let answer: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("hook answer");
    let ctx = answer["hookSpecificOutput"]["additionalContext"].as_str().unwrap_or_default();
    assert!(ctx.contains("Task ") && ctx.contains("Fix login"), "{answer}");
    assert!(ctx.contains("expires too early") && ctx.contains("https://tracker.example/T-7"), "{answer}");
    let (_, cmds) = get(&app, &format!("/api/sessions/{CLAUDE_SESSION}/commands")).await;
    let c = cmds["commands"].as_array().expect("commands").iter().find(|c| c["command_id"] == cmd_id.as_str()).cloned();
    assert!(c.as_ref().is_some_and(|c| c["status"] != "accepted"), "delivered: {c:?}");
    let (_, detail) = get(&app, &format!("/api/tasks/{id}")).await;
    let linked: Vec<&str> =
        detail["sessions"].as_array().expect("sessions").iter().filter_map(|s| s["session_id"].as_str()).collect();
    assert_eq!(linked, vec![CLAUDE_SESSION], "{detail}");
    app.shutdown().await;
}
