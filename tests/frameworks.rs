//! Framework captures (real runs against a local model stand-in, `tests/fixtures/frameworks/`),
//! posted as they were exported (one export per ended span: children before their parents, in
//! earlier requests) and also merged into one export: model calls counted once, tokens in the OTel
//! convention, model and provider, agents by name (inherited from the agent span above each call,
//! fixed after the fact when the agent span arrives later), tool calls, the task from the resource,
//! and the cost rollup per agent right after the fix.

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

/// The capture's exports in the order they were sent (`traces-N.pb`, by N).
fn capture(dir: &str) -> Vec<Vec<u8>> {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/frameworks").join(dir);
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let n = name.strip_prefix("traces-")?.strip_suffix(".pb")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no captures in {}", base.display());
    files.into_iter().map(|(_, p)| std::fs::read(p).expect("read capture")).collect()
}

/// All exports of a capture as one request (spans in the order they ended).
fn merged(dir: &str) -> Vec<u8> {
    let mut all = ExportTraceServiceRequest::default();
    for bytes in capture(dir) {
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decode capture");
        all.resource_spans.extend(req.resource_spans);
    }
    all.encode_to_vec()
}

async fn post_each(app: &TestApp, dir: &str) {
    for body in capture(dir) {
        let r = app.post("/v1/traces", "application/x-protobuf", body).await;
        assert_eq!(r.status(), 200);
    }
}

async fn post_merged(app: &TestApp, dir: &str) {
    let r = app.post("/v1/traces", "application/x-protobuf", merged(dir)).await;
    assert_eq!(r.status(), 200);
}

/// (calls, input, output, cache read) over every model call.
async fn totals(app: &TestApp) -> (i64, i64, i64, i64) {
    let r = app
        .rows(
            "SELECT count(*), sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT,
                    coalesce(sum(cache_read_tokens), 0)::BIGINT
             FROM model_calls",
        )
        .await;
    (as_i64(&r[0][0]), as_i64(&r[0][1]), as_i64(&r[0][2]), as_i64(&r[0][3]))
}

/// agent name -> calls, from `model_calls`.
async fn calls_by_agent_name(app: &TestApp) -> Vec<(String, i64)> {
    app.rows("SELECT agent_name, count(*) FROM model_calls GROUP BY ALL ORDER BY 1")
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap_or("").to_string(), as_i64(&r[1])))
        .collect()
}

/// `GET /api/cost?group_by=agent` -> (group, calls), groups with calls only.
async fn cost_by_agent(app: &TestApp) -> Vec<(String, i64)> {
    let r = app.client.get(format!("{}/api/cost?group_by=agent", app.http)).send().await.expect("cost");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["source"], "cost_hourly", "{v}");
    let mut out: Vec<(String, i64)> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["group"].as_str().unwrap_or("").to_string(), as_i64(&r["calls"])))
        .collect();
    out.sort();
    out
}

/// The rollup equals the calls table, key by key.
async fn rollup_matches_calls(app: &TestApp) {
    let diff = app
        .scalar(
            "SELECT count(*) FROM (
               (SELECT coalesce(agent_id, '') a, coalesce(task_id, '') t, coalesce(model, '') m, count(*) c,
                       sum(input_tokens) i FROM model_calls GROUP BY ALL)
               EXCEPT
               (SELECT agent_id, task_id, model, sum(calls), sum(input_tokens) FROM cost_hourly GROUP BY ALL))",
        )
        .await;
    assert_eq!(as_i64(&diff), 0);
    let zero = app.scalar("SELECT count(*) FROM cost_hourly WHERE calls <= 0").await;
    assert_eq!(as_i64(&zero), 0);
}

async fn crewai_openinference_checks(app: &TestApp) {
    // Three chat completions (120 in of which 20 cached, 30 out each), once each.
    assert_eq!(totals(app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    let r = app.rows("SELECT DISTINCT model, provider, task_id, cost_source FROM model_calls").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0][0], "gpt-4o-mini-2024-07-18");
    assert_eq!(r[0][1], "openai");
    assert_eq!(r[0][2], "TASK-7");
    assert_eq!(r[0][3], "computed");
    let tools = app.rows("SELECT tool_name, agent_id, task_id, success FROM tool_calls").await;
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0][0], "lookup_weather");
    assert_eq!(tools[0][1], "Researcher");
    assert_eq!(tools[0][2], "TASK-7");
    assert_eq!(tools[0][3], true);
    assert_eq!(cost_by_agent(app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    rollup_matches_calls(app).await;
    // The crew's session is the trace's, and its agent is the first crew agent, not the service.
    let agents = app.rows("SELECT DISTINCT agent_id FROM sessions").await;
    assert_eq!(agents, vec![vec![Value::from("Researcher")]]);
    let named = app.rows("SELECT agent_id FROM agents WHERE agent_id IN ('Researcher', 'Writer') ORDER BY 1").await;
    assert_eq!(named.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crewai_openinference_parents_in_later_exports() {
    let app = spawn().await;
    post_each(&app, "crewai-openinference").await;
    crewai_openinference_checks(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crewai_openinference_parents_after_children_in_one_export() {
    let app = spawn().await;
    post_merged(&app, "crewai-openinference").await;
    crewai_openinference_checks(&app).await;
    // Sending the same spans again counts nothing twice.
    post_each(&app, "crewai-openinference").await;
    assert_eq!(totals(&app).await, (3, 360, 90, 60));
    app.shutdown().await;
}

/// Issue 15: the agent spans arrive after a restart, when the calls under them are stored and the
/// new process never saw them (its inheritance memory is empty): the writer finds the stored
/// descendants through `spans.parent_span_id`, so the result equals a run without the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crewai_openinference_parents_after_a_restart() {
    let exports = capture("crewai-openinference");
    let is_agent_export = |bytes: &Vec<u8>| {
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decode capture");
        req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).any(|sp| {
            sp.attributes.iter().any(|kv| {
                kv.key == "openinference.span.kind"
                    && matches!(&kv.value, Some(v) if matches!(&v.value,
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(x)) if x == "AGENT"))
            })
        })
    };
    let split = exports.iter().position(is_agent_export).expect("an export with an agent span");
    assert!(split > 0, "calls are exported before their agent span");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_with(|a| a.data_dir = path.clone()).await;
    for body in &exports[..split] {
        assert_eq!(app.post("/v1/traces", "application/x-protobuf", body.clone()).await.status(), 200);
    }
    // Before the restart the calls belong to the service (no agent span seen yet).
    let before = app.rows("SELECT DISTINCT agent_id FROM model_calls").await;
    assert!(before.iter().all(|r| r[0] != "Researcher" && r[0] != "Writer"), "{before:?}");
    app.shutdown().await;

    let app = spawn_with(|a| a.data_dir = path.clone()).await;
    for body in &exports[split..] {
        assert_eq!(app.post("/v1/traces", "application/x-protobuf", body.clone()).await.status(), 200);
    }
    crewai_openinference_checks(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crewai_openllmetry() {
    let app = spawn().await;
    post_each(&app, "crewai-openllmetry").await;
    assert_eq!(totals(&app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(&app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    let r = app.rows("SELECT DISTINCT model, provider, task_id, cost_source FROM model_calls").await;
    assert_eq!(
        r,
        vec![vec![Value::from("gpt-4o-mini-2024-07-18"), "openai".into(), "TASK-7".into(), "computed".into()]]
    );
    // OpenLLMetry's CrewAI agents carry CrewAI's agent id; the name is the agent's role.
    let agents =
        app.rows("SELECT DISTINCT display_name FROM agents WHERE display_name IN ('Researcher', 'Writer')").await;
    assert_eq!(agents.len(), 2);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crewai_openlit() {
    let app = spawn().await;
    post_each(&app, "crewai-openlit").await;
    // Chat spans only: OpenLIT's `invoke_agent <step>` executor spans and httpx spans are not calls.
    assert_eq!(totals(&app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(&app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    // OpenLIT's zero cost for a model it cannot price is not a reported cost.
    let r = app.rows("SELECT DISTINCT model, provider, task_id, cost_source FROM model_calls").await;
    assert_eq!(
        r,
        vec![vec![Value::from("gpt-4o-mini-2024-07-18"), "openai".into(), "TASK-7".into(), "computed".into()]]
    );
    let steps = app.scalar("SELECT count(*) FROM agents WHERE display_name IN ('generate_plan', 'finalize')").await;
    assert_eq!(as_i64(&steps), 0);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}

/// LangGraph supervisor graph: two ReAct agents as subgraphs (`researcher` with a tool, `writer`).
async fn langgraph_checks(app: &TestApp) {
    assert_eq!(totals(app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(app).await, vec![("researcher".into(), 2), ("writer".into(), 1)]);
    let r = app.rows("SELECT DISTINCT model, provider, task_id, session_id, cost_source FROM model_calls").await;
    assert_eq!(
        r,
        vec![vec![
            Value::from("gpt-4o-mini-2024-07-18"),
            "openai".into(),
            "TASK-7".into(),
            "lg-session-1".into(),
            "computed".into()
        ]]
    );
    let tools = app.rows("SELECT tool_name, agent_name, session_id FROM tool_calls").await;
    assert_eq!(tools, vec![vec![Value::from("lookup_weather"), "researcher".into(), "lg-session-1".into()]]);
    let by_agent = cost_by_agent(app).await;
    assert!(by_agent.contains(&("researcher".into(), 2)) && by_agent.contains(&("writer".into(), 1)), "{by_agent:?}");
    rollup_matches_calls(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langgraph_openinference() {
    let app = spawn().await;
    post_each(&app, "langgraph-openinference").await;
    langgraph_checks(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langgraph_openllmetry() {
    let app = spawn().await;
    post_each(&app, "langgraph-openllmetry").await;
    langgraph_checks(&app).await;
    app.shutdown().await;
}

/// (tool, agent name) of every tool call.
async fn tools(app: &TestApp) -> Vec<(String, String)> {
    app.rows("SELECT tool_name, agent_name FROM tool_calls ORDER BY 1, 2")
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap_or("").to_string(), r[1].as_str().unwrap_or("").to_string()))
        .collect()
}

async fn one_model(app: &TestApp, model: &str) {
    let r = app.rows("SELECT DISTINCT model, provider, task_id, cost_source FROM model_calls").await;
    assert_eq!(r, vec![vec![Value::from(model), "openai".into(), "TASK-7".into(), "computed".into()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_agents_sdk_openinference() {
    let app = spawn().await;
    post_each(&app, "openai-agents").await;
    // The Agents SDK's chat-completions path reports no cached tokens.
    assert_eq!(totals(&app).await, (3, 360, 90, 0));
    assert_eq!(calls_by_agent_name(&app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    one_model(&app, "gpt-4o-mini").await;
    assert_eq!(tools(&app).await, vec![("lookup_weather".into(), "Researcher".into())]);
    assert_eq!(cost_by_agent(&app).await, vec![("Researcher".into(), 2), ("Writer".into(), 1)]);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autogen_builtin_otel() {
    let app = spawn().await;
    post_each(&app, "autogen").await;
    assert_eq!(totals(&app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(&app).await, vec![("researcher".into(), 2), ("writer".into(), 1)]);
    one_model(&app, "gpt-4o-mini-2024-07-18").await;
    assert_eq!(tools(&app).await, vec![("lookup_weather".into(), "researcher".into())]);
    assert_eq!(cost_by_agent(&app).await, vec![("researcher".into(), 2), ("writer".into(), 1)]);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pydantic_ai_logfire() {
    let app = spawn().await;
    // Every span of this capture was exported twice (Logfire's exporter and an extra processor):
    // a re-sent span counts once.
    post_each(&app, "pydantic-ai").await;
    assert_eq!(totals(&app).await, (3, 360, 90, 60));
    assert_eq!(calls_by_agent_name(&app).await, vec![("researcher".into(), 2), ("writer".into(), 1)]);
    one_model(&app, "gpt-4o-mini-2024-07-18").await;
    assert_eq!(tools(&app).await, vec![("lookup_weather".into(), "researcher".into())]);
    // One session per agent run (`gen_ai.conversation.id`).
    let sessions = app.scalar("SELECT count(DISTINCT session_id) FROM model_calls").await;
    assert_eq!(as_i64(&sessions), 2);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llamaindex_openinference() {
    let app = spawn().await;
    post_each(&app, "llamaindex").await;
    // Two model calls; the `_prepare_chat_with_tools` LLM spans beside them are not calls.
    assert_eq!(totals(&app).await, (2, 240, 60, 40));
    one_model(&app, "gpt-4o-mini").await;
    // LlamaIndex's spans name no agent: the service is the agent.
    assert_eq!(calls_by_agent_name(&app).await, vec![("llamaindex-service".into(), 2)]);
    assert_eq!(tools(&app).await, vec![("lookup_weather".into(), "llamaindex-service".into())]);
    rollup_matches_calls(&app).await;
    app.shutdown().await;
}
