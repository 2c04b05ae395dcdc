//! The real OpenTelemetry Rust SDK exporters (opentelemetry-otlp) send traces, logs and metrics
//! over gRPC (gzip), HTTP/protobuf (gzip) and HTTP/JSON; every value is read back through SQL.

mod common;
use common::*;
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

#[derive(Clone, Copy, Debug)]
enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new("agent_console.task.id", "TASK-SDK"))
        .build()
}

/// Send one agent run (root agent span, a chat span, a failing tool span), two log records and
/// two metrics with the real SDK, on a blocking thread inside the runtime (as an app would).
fn send(t: Transport, grpc: &str, http: &str, session: &str) {
    let http_ep = |p: &str| format!("{http}/v1/{p}");
    let span_exporter = match t {
        Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(grpc)
            .with_compression(Compression::Gzip)
            .build(),
        Transport::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_compression(Compression::Gzip)
            .with_endpoint(http_ep("traces"))
            .build(),
        Transport::HttpJson => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(http_ep("traces"))
            .build(),
    }
    .expect("span exporter");
    let tp =
        SdkTracerProvider::builder().with_simple_exporter(span_exporter).with_resource(resource("sdk-agent")).build();
    let tracer = tp.tracer("sdk-test");
    tracer.in_span("invoke_agent planner", |cx| {
        cx.span().set_attribute(KeyValue::new("gen_ai.operation.name", "invoke_agent"));
        cx.span().set_attribute(KeyValue::new("gen_ai.agent.name", "planner"));
        cx.span().set_attribute(KeyValue::new("session.id", session.to_string()));
        let mut chat = tracer.start("chat gpt-4o");
        chat.set_attribute(KeyValue::new("gen_ai.operation.name", "chat"));
        chat.set_attribute(KeyValue::new("gen_ai.provider.name", "openai"));
        chat.set_attribute(KeyValue::new("gen_ai.request.model", "gpt-4o"));
        chat.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", 1234_i64));
        chat.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", 56_i64));
        chat.set_attribute(KeyValue::new("gen_ai.usage.cache_read.input_tokens", 200_i64));
        chat.set_attribute(KeyValue::new("gen_ai.usage.cost", 0.0123_f64));
        chat.set_attribute(KeyValue::new("session.id", session.to_string()));
        chat.end();
        let mut tool = tracer.start("execute_tool search");
        tool.set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        tool.set_attribute(KeyValue::new("gen_ai.tool.name", "search"));
        tool.set_attribute(KeyValue::new("gen_ai.tool.call.id", format!("call-{session}")));
        tool.set_attribute(KeyValue::new("session.id", session.to_string()));
        tool.set_status(Status::error("boom"));
        tool.end();
    });
    tp.force_flush().expect("flush traces");
    tp.shutdown().expect("shutdown traces");

    let log_exporter = match t {
        Transport::Grpc => opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(grpc).build(),
        Transport::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(http_ep("logs"))
            .build(),
        Transport::HttpJson => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(http_ep("logs"))
            .build(),
    }
    .expect("log exporter");
    let lp =
        SdkLoggerProvider::builder().with_simple_exporter(log_exporter).with_resource(resource("claude-code")).build();
    let logger = lp.logger("com.anthropic.claude_code.events");
    let mut rec = logger.create_log_record();
    rec.set_body(LogValue::String("claude_code.api_request".into()));
    rec.add_attribute("event.name", "api_request");
    rec.add_attribute("session.id", session.to_string());
    rec.add_attribute("model", "claude-sonnet-4-5");
    rec.add_attribute("input_tokens", 100_i64);
    rec.add_attribute("output_tokens", 20_i64);
    rec.add_attribute("cache_read_tokens", 1000_i64);
    rec.add_attribute("cache_creation_tokens", 50_i64);
    rec.add_attribute("cost_usd", 0.004_f64);
    logger.emit(rec);
    let mut rec = logger.create_log_record();
    rec.set_event_name("agent.note");
    rec.set_severity_number(Severity::Warn);
    rec.set_severity_text("WARN");
    rec.set_body(LogValue::String("disk almost full".into()));
    rec.add_attribute("session.id", session.to_string());
    logger.emit(rec);
    lp.force_flush().expect("flush logs");
    lp.shutdown().expect("shutdown logs");

    let metric_exporter = match t {
        Transport::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(grpc)
            .with_temporality(Temporality::Delta)
            .build(),
        Transport::HttpProtobuf => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(http_ep("metrics"))
            .with_temporality(Temporality::Cumulative)
            .build(),
        Transport::HttpJson => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(http_ep("metrics"))
            .with_temporality(Temporality::Delta)
            .build(),
    }
    .expect("metric exporter");
    let mp = SdkMeterProvider::builder()
        .with_periodic_exporter(metric_exporter)
        .with_resource(resource("claude-code"))
        .build();
    let meter = mp.meter("com.anthropic.claude_code");
    let cost = meter.f64_counter("claude_code.cost.usage").with_unit("USD").build();
    cost.add(0.25, &[KeyValue::new("session.id", session.to_string()), KeyValue::new("model", "claude-sonnet-4-5")]);
    cost.add(0.5, &[KeyValue::new("session.id", session.to_string()), KeyValue::new("model", "claude-sonnet-4-5")]);
    let dur = meter.f64_histogram("gen_ai.client.operation.duration").with_unit("s").build();
    dur.record(1.5, &[KeyValue::new("session.id", session.to_string())]);
    dur.record(0.5, &[KeyValue::new("session.id", session.to_string())]);
    mp.force_flush().expect("flush metrics");
    mp.shutdown().expect("shutdown metrics");
}

async fn check(app: &TestApp, t: Transport, session: &str) {
    let q = |sql: &str| sql.replace("$S", session);
    let spans = app.rows(&q("SELECT name, span_type, status_code, service_name, task_id FROM spans WHERE session_id = '$S' ORDER BY name")).await;
    assert_eq!(spans.len(), 3, "{t:?}: {spans:?}");
    assert_eq!(spans[0][0], "chat gpt-4o");
    assert_eq!(spans[0][1], "llm");
    assert_eq!(spans[1][1], "tool");
    assert_eq!(spans[1][2], "error");
    assert_eq!(spans[2][1], "agent");
    assert!(spans.iter().all(|r| r[3] == "sdk-agent" && r[4] == "TASK-SDK"), "{t:?}");
    let parents = app
        .scalar(&q("SELECT count(*) FROM spans c JOIN spans p ON c.parent_span_id = p.span_id AND c.trace_id = p.trace_id WHERE c.session_id = '$S'"))
        .await;
    assert_eq!(as_i64(&parents), 2, "{t:?}: children link to the root");

    let mc = app
        .rows(&q("SELECT model, provider, input_tokens, output_tokens, cache_read_tokens, cost_usd, cost_source, source, task_id \
                  FROM model_calls WHERE session_id = '$S' ORDER BY source DESC"))
        .await;
    assert_eq!(mc.len(), 2, "{t:?}: {mc:?}");
    assert_eq!((mc[0][0].as_str(), mc[0][1].as_str()), (Some("gpt-4o"), Some("openai")), "{t:?}");
    assert_eq!((as_i64(&mc[0][2]), as_i64(&mc[0][3]), as_i64(&mc[0][4])), (1234, 56, 200), "{t:?}");
    assert!((as_f64(&mc[0][5]) - 0.0123).abs() < 1e-12);
    assert_eq!(
        (mc[0][6].as_str(), mc[0][7].as_str(), mc[0][8].as_str()),
        (Some("reported"), Some("span"), Some("TASK-SDK"))
    );
    // The Claude Code style log record: input includes the separately reported cache.
    assert_eq!((mc[1][0].as_str(), mc[1][1].as_str()), (Some("claude-sonnet-4-5"), Some("anthropic")), "{t:?}");
    assert_eq!((as_i64(&mc[1][2]), as_i64(&mc[1][3]), as_i64(&mc[1][4])), (1150, 20, 1000), "{t:?}");
    assert!((as_f64(&mc[1][5]) - 0.004).abs() < 1e-12);

    let tool =
        app.rows(&q("SELECT tool_name, success, error, tool_call_id FROM tool_calls WHERE session_id = '$S'")).await;
    assert_eq!(tool.len(), 1, "{t:?}");
    assert_eq!(tool[0][0], "search");
    assert_eq!(tool[0][1], false);
    assert_eq!(tool[0][2], "boom");
    assert_eq!(tool[0][3], format!("call-{session}"));

    let logs = app
        .rows(&q("SELECT event_name, severity_number, severity_text, body, scope_name FROM logs WHERE session_id = '$S' ORDER BY event_name"))
        .await;
    assert_eq!(logs.len(), 2, "{t:?}");
    assert_eq!(logs[0][0], "agent.note");
    assert_eq!(as_i64(&logs[0][1]), 13);
    assert_eq!(logs[0][2], "WARN");
    assert_eq!(logs[0][3], "disk almost full");
    assert_eq!(logs[1][0], "claude_code.api_request");
    assert_eq!(logs[1][4], "com.anthropic.claude_code.events");

    let cost = app
        .rows(&q("SELECT kind, temporality, is_monotonic, value, unit FROM metric_points WHERE name = 'claude_code.cost.usage' AND session_id = '$S' ORDER BY time DESC LIMIT 1"))
        .await;
    // A cumulative series may be re-sent at shutdown: the latest point holds the total.
    assert_eq!(cost.len(), 1, "{t:?}: {cost:?}");
    let temporality = if matches!(t, Transport::HttpProtobuf) { "cumulative" } else { "delta" };
    assert_eq!((cost[0][0].as_str(), cost[0][1].as_str()), (Some("sum"), Some(temporality)), "{t:?}");
    assert_eq!(cost[0][2], true);
    assert!((as_f64(&cost[0][3]) - 0.75).abs() < 1e-12);
    assert_eq!(cost[0][4], "USD");
    let inc = app
        .scalar(&q(
            "SELECT sum(increment) FROM metric_increments WHERE name = 'claude_code.cost.usage' AND session_id = '$S'",
        ))
        .await;
    assert!((as_f64(&inc) - 0.75).abs() < 1e-12);
    let hist = app
        .rows(&q("SELECT kind, count, sum, min, max, (distribution->'counts') IS NOT NULL FROM metric_points WHERE name = 'gen_ai.client.operation.duration' AND session_id = '$S' ORDER BY time DESC LIMIT 1"))
        .await;
    assert_eq!(hist.len(), 1, "{t:?}");
    assert_eq!(hist[0][0], "histogram");
    assert_eq!((as_i64(&hist[0][1]), as_f64(&hist[0][2])), (2, 2.0));
    assert_eq!((as_f64(&hist[0][3]), as_f64(&hist[0][4])), (0.5, 1.5));
    assert_eq!(hist[0][5], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_grpc_http_protobuf_and_http_json() {
    let app = spawn().await;
    for (t, session) in
        [(Transport::Grpc, "s-grpc"), (Transport::HttpProtobuf, "s-http-pb"), (Transport::HttpJson, "s-http-json")]
    {
        let (grpc, http) = (app.grpc.clone(), app.http.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _guard = handle.enter();
            send(t, &grpc, &http, session);
        })
        .await
        .expect("sdk thread");
        check(&app, t, session).await;
    }
    let sessions =
        app.scalar("SELECT count(*) FROM sessions WHERE session_id IN ('s-grpc', 's-http-pb', 's-http-json')").await;
    assert_eq!(as_i64(&sessions), 3);
    app.shutdown().await;
}
