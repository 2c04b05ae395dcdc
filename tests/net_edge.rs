//! Issue 10, the network and authorisation rows, through the real interfaces: raw TCP clients
//! (partial request heads, stalled bodies, a stalled HTTP/2 gRPC stream), the release binary and
//! SIGTERM, reqwest and a WebSocket client (tokio-tungstenite) with hostile `Host` / `Origin`.
//! Each test names its row.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Generous bound on waits that must end (a hang fails instead of blocking the suite).
const BOUND: Duration = Duration::from_secs(30);

fn export(n: u8) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: vec![i + 1; 8],
                        name: format!("net-edge-{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_500_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Read until EOF, an error, or `BOUND`; returns what arrived and whether the peer closed.
async fn read_until_closed(s: &mut TcpStream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// Read one HTTP/1.1 response head (keeps the connection open).
async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
            Ok(Ok(1)) => out.push(buf[0]),
            other => panic!("no response head: {other:?} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Row 4: SIGTERM is bounded

/// An HTTP/2 client that opens a gRPC Export stream and stalls in the middle of its message:
/// connection preface, SETTINGS, HEADERS (HPACK literals, no Huffman), and a DATA frame holding
/// 10 of the 100 bytes its gRPC length prefix announces, without END_STREAM.
async fn stalled_grpc_stream(addr: &str) -> TcpStream {
    fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut s = TcpStream::connect(addr).await.expect("connect gRPC");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    let mut headers = Vec::new();
    literal(&mut headers, ":method", "POST");
    literal(&mut headers, ":scheme", "http");
    literal(&mut headers, ":path", "/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    literal(&mut headers, ":authority", addr);
    literal(&mut headers, "content-type", "application/grpc");
    literal(&mut headers, "te", "trailers");
    frame(&mut out, 0x1, 0x4, 1, &headers); // END_HEADERS, not END_STREAM
    let mut data = vec![0u8, 0, 0, 0, 100];
    data.extend_from_slice(&[0u8; 10]);
    frame(&mut out, 0x0, 0, 1, &data);
    s.write_all(&out).await.expect("write h2");
    // The server's SETTINGS: it has the stream.
    let mut buf = [0u8; 9];
    tokio::time::timeout(BOUND, s.read_exact(&mut buf)).await.expect("server settings in time").expect("read");
    assert_eq!(buf[3], 0x4, "the server answers with SETTINGS");
    // Its payload too, so the next read starts at a frame.
    let mut payload = vec![0u8; u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize];
    tokio::time::timeout(BOUND, s.read_exact(&mut payload)).await.expect("settings in time").expect("read");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row4_sigterm_is_bounded_with_stalled_clients_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = common::spawn_binary(dir.path(), &["--shutdown-timeout-secs", "2", "--http-header-timeout-secs", "600"]);
    let http = host_port(&bin.http);
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/traces", bin.http))
        .header("content-type", "application/x-protobuf")
        .body(export(3))
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 200, "acknowledged");

    // A partial request head, a streamed export that stalls, and a stalled gRPC stream.
    let mut partial = TcpStream::connect(&http).await.expect("connect");
    partial.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").await.expect("write");
    let mut stalled = TcpStream::connect(&http).await.expect("connect");
    stalled
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n\
              Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789",
        )
        .await
        .expect("write");
    let grpc = stalled_grpc_stream(&host_port(&bin.grpc)).await;
    // The stalled export reached its handler (its head was read): a flush still answers.
    let r = client.post(format!("{}/api/flush", bin.http)).send().await.expect("flush");
    assert_eq!(r.status(), 200);

    let pid = bin.child.id().to_string();
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(status.success());
    let mut bin = bin;
    let child = &mut bin.child;
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > BOUND {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM did not stop the collector within {BOUND:?}: {:?}", bin.log.lock().map(|l| l.join("\n")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "clean exit: {exit:?}");
    let said = |needle: &str| bin.log.lock().map(|l| l.iter().any(|line| line.contains(needle))).unwrap_or(false);
    // The reader thread may still be draining the pipe right after exit.
    let deadline = Instant::now() + BOUND;
    while !said("shutdown complete") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(said("shutdown complete"), "the writer drained: {:?}", bin.log.lock().map(|l| l.join("\n")));
    assert!(said("dropped") || said("aborted"), "stragglers were dropped, not waited for");
    drop((partial, stalled, grpc));

    // Acknowledged data is durable and in DuckDB after a restart.
    let bin = common::spawn_binary(dir.path(), &[]);
    let rows = common::sql_at(&client, &bin.http, "SELECT count(*) FROM spans WHERE name LIKE 'net-edge-%'").await;
    assert_eq!(common::as_i64(&rows[0][0]), 3);
    bin.kill9();
}

// ---------------------------------------------------------------------------------------------
// Row 10: header and body timeouts, connection cap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_slowloris_partial_headers_are_closed() {
    let app = common::spawn_with(|a| a.http_header_timeout_secs = 1).await;
    let mut s = TcpStream::connect(host_port(&app.http)).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a").await.expect("write");
    let (answer, closed) = read_until_closed(&mut s).await;
    assert!(closed, "a client that never finishes its head is closed");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // A complete request on a new connection is served.
    let r = app.client.get(format!("{}/healthz", app.http)).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_a_stalled_request_body_fails_and_loses_nothing_else() {
    let app = common::spawn_with(|a| a.http_body_idle_timeout_secs = 1).await;
    let mut s = TcpStream::connect(host_port(&app.http)).await.expect("connect");
    s.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let r = app.post("/v1/traces", "application/x-protobuf", export(2)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(common::as_i64(&app.scalar("SELECT count(*) FROM spans").await), 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_connection_over_the_cap_gets_503_with_retry_after() {
    let app = common::spawn_with(|a| a.http_max_connections = 2).await;
    let addr = host_port(&app.http);
    let mut held = Vec::new();
    for _ in 0..2 {
        // Served (so certainly accepted), then kept open.
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("write");
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    let (answer, closed) = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer:?}");
    assert!(closed, "and closed");
    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + BOUND;
    loop {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
        let (answer, _) = read_until_closed(&mut s).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Row 10, the gRPC port: connection cap, handshake / idle / request timeouts, keepalive

/// Read HTTP/2 frames until `stop(kind, flags, stream)` holds (true), or the peer closes
/// (false). Panics after `BOUND`.
async fn read_frames_until(s: &mut TcpStream, stop: impl Fn(u8, u8, u32) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return false,
            Err(_) => panic!("neither the awaited frame nor a close within {BOUND:?}"),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
        let mut payload = vec![0u8; len];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut payload)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return false,
            Err(_) => panic!("a frame did not complete within {BOUND:?}"),
        }
        if stop(head[3], head[4], stream) {
            return true;
        }
    }
}

/// A real OTLP/gRPC export (tonic client) of `n` spans; the status code on failure.
async fn grpc_export(addr: &str, n: u8) -> Result<(), tonic::Code> {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let mut client = TraceServiceClient::connect(addr.to_string()).await.map_err(|_| tonic::Code::Unavailable)?;
    let req = ExportTraceServiceRequest::decode(export(n).as_slice()).expect("decode");
    client.export(req).await.map(|_| ()).map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_grpc_connection_over_the_cap_is_closed_and_the_slot_comes_back() {
    let app = common::spawn_with(|a| a.grpc_max_connections = 2).await;
    let addr = host_port(&app.grpc);
    // Two connections the server has taken (it answered their streams' preface with SETTINGS).
    let mut held = vec![stalled_grpc_stream(&addr).await, stalled_grpc_stream(&addr).await];
    // The third is closed without a word: no SETTINGS, EOF or reset.
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    let _ = third.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await;
    let (answer, closed) = read_until_closed(&mut third).await;
    assert!(closed && answer.is_empty(), "closed at once: {answer:?}");
    // A real client is refused while the cap is full: UNAVAILABLE, or UNKNOWN / CANCELLED when
    // tonic sees the connection reset mid-handshake (which of them is a race in the client).
    let refused = grpc_export(&app.grpc, 1).await;
    assert!(
        matches!(refused, Err(tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)),
        "{refused:?}"
    );
    // Closing one frees its slot; the export then goes through and is stored.
    drop(held.pop());
    let deadline = Instant::now() + BOUND;
    while let Err(code) = grpc_export(&app.grpc, 2).await {
        assert!(Instant::now() < deadline, "the slot was never freed: {code:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.flush().await;
    assert_eq!(common::as_i64(&app.scalar("SELECT count(*) FROM spans").await), 2);
    drop(held);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_grpc_stalled_clients_time_out_handshake_request_and_idle() {
    let app = common::spawn_with(|a| {
        a.grpc_handshake_timeout_secs = 1;
        a.grpc_request_timeout_secs = 1;
        a.grpc_idle_timeout_secs = 3;
    })
    .await;
    let addr = host_port(&app.grpc);
    // Connects and says nothing: the server's SETTINGS, then closed after the handshake timeout.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut silent).await;
    assert!(closed, "a silent connection is closed");
    // Half a preface is no better.
    let mut half = TcpStream::connect(&addr).await.expect("connect");
    half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
    let (_, closed) = read_until_closed(&mut half).await;
    assert!(closed, "a partial preface is closed");
    // A stream that stalls in the middle of its message gets its call ended (trailers with
    // END_STREAM, or RST_STREAM) after the request timeout...
    let mut stalled = stalled_grpc_stream(&addr).await;
    let ended = read_frames_until(&mut stalled, |kind, flags, stream| {
        stream == 1 && ((kind == 0x1 && flags & 0x1 != 0) || kind == 0x3)
    })
    .await;
    assert!(ended, "the stalled call was answered before the connection closed");
    // ...and the connection, silent from then on, is closed after the idle timeout.
    let still_open = read_frames_until(&mut stalled, |_, _, _| false).await;
    assert!(!still_open);
    // Nothing else was lost: a real client exports and it is stored.
    grpc_export(&app.grpc, 3).await.expect("export");
    app.flush().await;
    assert_eq!(common::as_i64(&app.scalar("SELECT count(*) FROM spans").await), 3);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row10_grpc_keepalive_closes_a_peer_that_does_not_answer_pings() {
    // Idle timeout far away: only the keepalive can close this connection.
    let app = common::spawn_with(|a| {
        a.grpc_keepalive_secs = 1;
        a.grpc_idle_timeout_secs = 600;
    })
    .await;
    let addr = host_port(&app.grpc);
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    // Preface and empty SETTINGS, then never a byte again (no SETTINGS ack, no PING ack).
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.expect("write");
    let pinged = read_frames_until(&mut s, |kind, flags, _| kind == 0x6 && flags & 0x1 == 0).await;
    assert!(pinged, "the server pings");
    let open = read_frames_until(&mut s, |_, _, _| false).await;
    assert!(!open, "and closes the connection when the ping is not answered");
    grpc_export(&app.grpc, 1).await.expect("a live client is unaffected");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Row 11: Host and Origin

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_dns_rebinding_host_and_foreign_origins_are_403() {
    let app = common::spawn_with(|a| a.allowed_hosts = vec!["console.corp.example".into()]).await;
    let get = |host: &'static str| app.client.get(format!("{}/api/sessions", app.http)).header("host", host).send();
    assert_eq!(get("rebind.attacker.example:4318").await.expect("get").status(), 403, "DNS rebinding");
    assert_eq!(get("localhost:4318").await.expect("get").status(), 200);
    assert_eq!(get("console.corp.example").await.expect("get").status(), 200, "--allowed-hosts");

    // State-changing requests from a foreign page are refused; the same origin and clients
    // without Origin (exporters, curl) are not.
    let own_origin = format!("http://{}", host_port(&app.http));
    let sql = |origin: Option<String>| {
        let mut r = app.client.post(format!("{}/api/sql", app.http)).json(&serde_json::json!({ "sql": "SELECT 1" }));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(sql(Some("https://evil.example".into())).await.expect("post").status(), 403);
    assert_eq!(sql(Some("null".into())).await.expect("post").status(), 403);
    assert_eq!(sql(Some(own_origin.clone())).await.expect("post").status(), 200);
    assert_eq!(sql(None).await.expect("post").status(), 200);
    let r = app.post("/v1/traces", "application/x-protobuf", export(1)).await;
    assert_eq!(r.status(), 200, "OTLP ingest has no Origin and keeps working");

    // The WebSocket: a foreign Origin is 403, our own connects.
    let ws_url = format!("ws://{}/api/live/ws", host_port(&app.http));
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut().insert("origin", "https://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("a foreign Origin must not open the live stream: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut().insert("origin", own_origin.parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("same-origin WebSocket");
    drop(ws);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Row 12: state-changing routes under the control token

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row12_reprice_needs_the_control_token_not_the_read_token() {
    let app = common::spawn_with(|a| {
        a.read_token = Some("read-secret".into());
        a.control_token = Some("control-secret".into());
    })
    .await;
    let added = "version = \"ops\"\n[[model]]\nid = \"m-x\"\nprovider = \"acme\"\neffective = \"2020-01-01\"\ninput = 3.0\noutput = 6.0\n";
    let reprice = |token: Option<&'static str>| {
        let mut r = app.client.post(format!("{}/api/cost/reprice", app.http)).body(added);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(reprice(Some("read-secret")).await.expect("post").status(), 401, "the read token cannot re-price");
    assert_eq!(reprice(None).await.expect("post").status(), 401);
    let r = reprice(Some("control-secret")).await.expect("post");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Reads stay under the read token.
    let r = app.client.get(format!("{}/api/cost/unpriced", app.http)).bearer_auth("read-secret").send().await;
    assert_eq!(r.expect("get").status(), 200);
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Row 13: no tokens on a non-loopback address

#[test]
fn row13_non_loopback_without_tokens_refuses_to_start_unless_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agent-console"));
        c.args(["serve", "--grpc-addr", "127.0.0.1:0", "--pg-addr", "127.0.0.1:0", "--http-addr", "0.0.0.0:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .env("AGENT_CONSOLE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let out = base(&["--read-token", "r"]).output().expect("run");
    assert!(!out.status.success(), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("refusing to start")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("0.0.0.0") && line.contains("--control-token") && line.contains("--insecure-no-auth"),
        "{line}"
    );
    assert!(!line.contains("--read-token"), "the read token is set: {line}");

    // With every token, or with --insecure-no-auth, it starts.
    for extra in
        [&["--read-token", "r", "--ingest-token", "i", "--control-token", "c"][..], &["--insecure-no-auth"][..]]
    {
        let mut child = base(extra).spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
        let listening = lines.by_ref().map_while(Result::ok).any(|l| l.contains("OTLP/HTTP and query API listening"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(listening, "{extra:?} starts");
    }
}
