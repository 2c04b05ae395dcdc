//! Bad input gets a clear error, loses nothing else, and the server keeps serving: truncated
//! protobuf, garbage JSON, wrong content type, oversized and gzip-bomb bodies, invalid ids, over
//! HTTP and gRPC; overload answers 503 + Retry-After and stores nothing it did not acknowledge.

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn span_count(app: &TestApp) -> i64 {
    as_i64(&app.scalar("SELECT count(*) FROM spans").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_bodies_are_refused_cleanly() {
    let app = spawn_with(|a| a.max_request_bytes = 256 * 1024).await;
    let good = fixture("langchain-openinference/traces-1.pb");

    // Truncated protobuf: 400 with a google.rpc.Status protobuf body.
    let r = app.post("/v1/traces", "application/x-protobuf", good[..good.len() - 7].to_vec()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let st = RpcStatus::decode(r.bytes().await.expect("body")).expect("rpc status");
    assert_eq!(st.code, 3, "INVALID_ARGUMENT");
    assert!(st.message.contains("invalid protobuf"), "{}", st.message);

    // Garbage JSON: 400 with a JSON status.
    let r = app.post("/v1/logs", "application/json", b"{\"resourceLogs\": [ {".to_vec()).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("invalid JSON")), "{v}");

    // Invalid hex id in JSON: 400 naming the field.
    let bad_id = serde_json::json!({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102030405060708","name":"x"}]}]}]});
    let r = app.post("/v1/traces", "application/json", bad_id.to_string().into_bytes()).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("traceId")), "{v}");

    // Wrong content type: 415.
    let r = app.post("/v1/traces", "text/plain", b"hello".to_vec()).await;
    assert_eq!(r.status(), 415);
    // Unsupported content encoding: 415.
    let r = app
        .client
        .post(format!("{}/v1/traces", app.http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(good.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);

    // Oversized: 413 (declared length, and chunked without a length). The server answers before
    // reading the whole body, so the client may instead see the connection reset mid-upload.
    let r = app.post_raw("/v1/traces", "application/x-protobuf", reqwest::Body::from(vec![0u8; 300 * 1024])).await;
    assert!(r.is_none_or(|s| s == 413), "{r:?}");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![0u8; 10_000])).collect();
    let r = app
        .post_raw("/v1/traces", "application/x-protobuf", reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await;
    assert!(r.is_none_or(|s| s == 413), "{r:?}");

    // Gzip bomb: small on the wire, huge inflated -> 413 (the limit applies after decompression).
    let bomb = gzip(&vec![0u8; 32 * 1024 * 1024]);
    assert!(bomb.len() < 256 * 1024);
    let r = app
        .client
        .post(format!("{}/v1/traces", app.http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);

    // Corrupt gzip: 400.
    let r = app
        .client
        .post(format!("{}/v1/traces", app.http))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(b"not gzip at all".to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);

    // Nothing of the above was stored, and the server still serves.
    assert_eq!(span_count(&app).await, 0);
    let r = app.post("/v1/traces", "application/x-protobuf", good).await;
    assert_eq!(r.status(), 200);
    assert_eq!(span_count(&app).await, 7);
    let m = app.client.get(format!("{}/metrics", app.http)).send().await.expect("metrics").text().await.expect("text");
    assert!(m.contains("agent_console_received_total{signal=\"traces\"} 7"), "{m}");
    assert!(m.contains("agent_console_refused_requests_total{signal=\"traces\",reason=\"bad_request\"} 5"), "{m}");
    // The memory gauges: DuckDB's buffer manager as the writer sampled it after the commit, and
    // the process's resident memory, which holds it.
    let gauge = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    let duckdb = gauge("agent_console_duckdb_memory_bytes");
    let resident = gauge("agent_console_process_resident_bytes");
    assert!(duckdb > 0, "{m}");
    assert!(resident > duckdb, "{m}");
    // mimalloc is the binaries' allocator, not this test's: the gauge is there, its value ~0.
    assert!(m.contains("\nagent_console_heap_committed_bytes "), "{m}");
    // glibc's heap, where DuckDB allocates (and, in this test binary, Rust too).
    assert!(gauge("agent_console_malloc_in_use_bytes") > 0, "{m}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_length_ids_are_a_partial_success() {
    let app = spawn().await;
    let mut req =
        ExportTraceServiceRequest::decode(&fixture("langchain-openinference/traces-1.pb")[..]).expect("fixture");
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[0].trace_id = vec![1, 2, 3];
    spans[1].span_id = vec![0; 8];
    let r = app.post("/v1/traces", "application/x-protobuf", req.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let resp = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
        r.bytes().await.expect("b"),
    )
    .expect("response");
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(ps.error_message.contains("16 bytes"), "{}", ps.error_message);
    assert_eq!(span_count(&app).await, 5);

    // The same over gRPC.
    let mut client = TraceServiceClient::connect(app.grpc.clone()).await.expect("connect");
    let resp = client.export(req.clone()).await.expect("export").into_inner();
    assert_eq!(resp.partial_success.map(|p| p.rejected_spans), Some(2));
    assert_eq!(span_count(&app).await, 10);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_oversized_is_resource_exhausted_and_server_keeps_serving() {
    let app = spawn_with(|a| a.max_request_bytes = 64 * 1024).await;
    let mut rng = agent_console::fixtures::Rng::new(1);
    let big = agent_console::fixtures::genai_traces(400, 4, &mut rng, 1_795_273_131_000_000_000);
    assert!(big.encoded_len() > 64 * 1024);
    let mut client = TraceServiceClient::connect(app.grpc.clone()).await.expect("connect");
    let err = client.export(big).await.expect_err("too large");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let small = agent_console::fixtures::genai_traces(10, 4, &mut rng, 1_795_273_131_000_000_000);
    client.export(small).await.expect("small export");
    assert_eq!(span_count(&app).await, 10);
    app.shutdown().await;
}

/// Under overload every export is either acknowledged (and stored) or refused with 503 and
/// Retry-After (and not stored). Whether refusals happen depends on timing; the invariant must hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refuses_with_retry_after_and_stores_only_acked() {
    let app = spawn_with(|a| {
        a.queue_capacity = 1;
        a.max_inflight_bytes = 1;
        a.queue_wait_ms = 0;
    })
    .await;
    let mut rng = agent_console::fixtures::Rng::new(7);
    let bodies: Vec<Vec<u8>> = (0..40)
        .map(|_| agent_console::fixtures::genai_traces(50, 8, &mut rng, 1_795_273_131_000_000_000).encode_to_vec())
        .collect();
    let mut handles = Vec::new();
    for b in bodies {
        let client = app.client.clone();
        let url = format!("{}/v1/traces", app.http);
        handles.push(tokio::spawn(async move {
            let r =
                client.post(url).header("content-type", "application/x-protobuf").body(b).send().await.expect("post");
            (r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string()))
        }));
    }
    let mut acked = 0;
    for h in handles {
        let (status, retry) = h.await.expect("join");
        match status {
            200 => acked += 1,
            503 => assert_eq!(retry.as_deref(), Some("1")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(acked >= 1);
    assert_eq!(span_count(&app).await, acked * 50);
    app.shutdown().await;
}

/// The gRPC services take a request's bytes and decode them like HTTP/protobuf: bytes that are
/// not protobuf are INVALID_ARGUMENT, an unknown method UNIMPLEMENTED, and the connection and
/// the server go on serving; nothing of the refused requests is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_garbage_is_invalid_argument_and_the_next_export_is_stored() {
    use agent_console::receiver::grpc::{OtlpService, RawCodec, TraceService};
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic::codegen::Bytes;
    const EXPORT: &str = TraceService::EXPORT_PATH;
    let app = spawn().await;
    let channel =
        tonic::transport::Endpoint::from_shared(app.grpc.clone()).expect("endpoint").connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    // A length-delimited field longer than the message; a byte that is no wire type.
    for garbage in [&[0x0a, 0xff, 0xff, 0x01, 0x00][..], b"not protobuf at all"] {
        grpc.ready().await.expect("ready");
        let err = grpc
            .unary(tonic::Request::new(Bytes::from_static(garbage)), PathAndQuery::from_static(EXPORT), RawCodec)
            .await
            .expect_err("garbage is refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.message().contains("invalid protobuf traces"), "{err}");
    }
    grpc.ready().await.expect("ready");
    let err = grpc
        .unary(
            tonic::Request::new(Bytes::new()),
            PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Import"),
            RawCodec,
        )
        .await
        .expect_err("no such method");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
    let m = app.client.get(format!("{}/metrics", app.http)).send().await.expect("metrics").text().await.expect("text");
    assert!(m.contains("agent_console_refused_requests_total{signal=\"traces\",reason=\"bad_request\"} 2"), "{m}");
    // The same connection then exports a real payload, stored whole, and the response decodes.
    grpc.ready().await.expect("ready");
    let good = fixture("langchain-openinference/traces-1.pb");
    let resp = grpc
        .unary(tonic::Request::new(Bytes::from(good)), PathAndQuery::from_static(EXPORT), RawCodec)
        .await
        .expect("a valid export")
        .into_inner();
    let resp = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(resp)
        .expect("an ExportTraceServiceResponse");
    assert_eq!(resp.partial_success, None);
    app.flush().await;
    assert_eq!(span_count(&app).await, 7);
    app.shutdown().await;
}
