//! Test data, in one place for tests, benchmarks and the load generator: the captured payloads in
//! `tests/fixtures/` (real clients, copied from the team's shared captures) and a generator of
//! realistic ~1 KB GenAI spans.

use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

/// Where the captured fixtures live: `tests/fixtures` in this repository (or
/// `$AGENT_CONSOLE_FIXTURES`, to replay another capture set). The repository is the one cargo
/// runs from (`CARGO_MANIFEST_DIR` at run time) before the one this was compiled in: a target
/// directory shared between two clones reuses a build made in the other one.
pub fn shared_fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AGENT_CONSOLE_FIXTURES") {
        return PathBuf::from(dir);
    }
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(|d| PathBuf::from(d).join("tests").join("fixtures"))
        .filter(|d| d.is_dir());
    here.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures"))
}

/// Bytes of one captured fixture, e.g. `claude-code/otlp/logs-1.pb`.
pub fn shared_fixture(rel: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(shared_fixtures_dir().join(rel))
}

pub fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}
pub fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.to_string()))
}
pub fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

/// Small deterministic PRNG (xorshift64*), so generated load is reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const MODELS: &[(&str, &str)] = &[
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
];
const TOOLS: &[&str] = &["web_search", "read_file", "run_shell", "lookup_weather", "query_db"];
const PROMPT: &str = "You are a careful research agent. Summarise the findings of the previous tool call, \
cite the sources you used and propose the next step. Keep the answer under two hundred words and do not \
invent numbers that the tool did not return.";

/// One export of `spans` realistic GenAI spans (~1 KB each, ~20 attributes): 60% chat model
/// calls, 25% tool calls, 15% agent spans, spread over `sessions` sessions of a few agents.
pub fn genai_traces(spans: usize, sessions: u64, rng: &mut Rng, now_ns: u64) -> ExportTraceServiceRequest {
    let agent = ["researcher", "coder", "reviewer", "planner"][rng.below(4) as usize];
    let resource = Resource {
        attributes: vec![
            kv_str("service.name", agent),
            kv_str("service.version", "1.4.2"),
            kv_str("telemetry.sdk.name", "opentelemetry"),
            kv_str("telemetry.sdk.language", "python"),
            kv_str("host.name", "agent-host-7"),
            kv_str("agent_console.task.id", &format!("TASK-{}", rng.below(50))),
        ],
        ..Default::default()
    };
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    trace_id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    let root = rng.next_u64().max(1).to_be_bytes();
    let session = format!("sess-{:08x}", rng.below(sessions.max(1)));
    let mut out = Vec::with_capacity(spans);
    for i in 0..spans {
        let mut span_id = rng.next_u64().max(1).to_be_bytes();
        if i == 0 {
            span_id = root;
        }
        let start = now_ns.saturating_sub(rng.below(5_000_000_000));
        let end = start + 50_000_000 + rng.below(2_000_000_000);
        let roll = rng.below(100);
        let mut attrs = vec![
            kv_str("session.id", &session),
            kv_str("gen_ai.agent.name", agent),
            kv_str("gen_ai.conversation.id", &session),
        ];
        let (name, kind) = if roll < 60 {
            let (provider, model) = MODELS[rng.below(MODELS.len() as u64) as usize];
            let input = 200 + rng.below(8000) as i64;
            attrs.extend([
                kv_str("gen_ai.operation.name", "chat"),
                kv_str("gen_ai.provider.name", provider),
                kv_str("gen_ai.request.model", model),
                kv_str("gen_ai.response.model", model),
                kv_int("gen_ai.usage.input_tokens", input),
                kv_int("gen_ai.usage.output_tokens", 20 + rng.below(900) as i64),
                kv_int("gen_ai.usage.cache_read.input_tokens", input / 3),
                kv("gen_ai.request.temperature", Value::DoubleValue(0.2)),
                kv_int("gen_ai.request.max_tokens", 1024),
                kv_str("gen_ai.response.id", &format!("chatcmpl-{:016x}", rng.next_u64())),
                kv(
                    "gen_ai.response.finish_reasons",
                    Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![AnyValue { value: Some(Value::StringValue("stop".into())) }],
                    }),
                ),
                kv_str("gen_ai.system_instructions", PROMPT),
                kv_str("server.address", "api.example.com"),
                kv_int("server.port", 443),
            ]);
            (format!("chat {model}"), SpanKind::Client)
        } else if roll < 85 {
            let tool = TOOLS[rng.below(TOOLS.len() as u64) as usize];
            attrs.extend([
                kv_str("gen_ai.operation.name", "execute_tool"),
                kv_str("gen_ai.tool.name", tool),
                kv_str("gen_ai.tool.call.id", &format!("call_{:016x}", rng.next_u64())),
                kv_str("gen_ai.tool.type", "function"),
                kv_str(
                    "gen_ai.tool.call.arguments",
                    "{\"query\":\"latest quarterly numbers for the account\",\"limit\":10}",
                ),
                kv_str("gen_ai.tool.call.result", &PROMPT[..180]),
                kv_str("code.function", "tools.dispatch"),
                kv_str("thread.name", "MainThread"),
            ]);
            (format!("execute_tool {tool}"), SpanKind::Internal)
        } else {
            attrs.extend([
                kv_str("gen_ai.operation.name", "invoke_agent"),
                kv_str("gen_ai.agent.id", &format!("asst_{agent}")),
                kv_str("gen_ai.agent.description", PROMPT),
                kv_str("gen_ai.provider.name", "openai"),
            ]);
            (format!("invoke_agent {agent}"), SpanKind::Internal)
        };
        let error = rng.below(100) < 2;
        out.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: if i == 0 { Vec::new() } else { root.to_vec() },
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: attrs,
            status: Some(Status {
                code: if error { StatusCode::Error } else { StatusCode::Ok } as i32,
                message: if error { "upstream timeout".into() } else { String::new() },
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai_v2".into(),
                    version: "2.1b0".into(),
                    ..Default::default()
                }),
                spans: out,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
