//! Load generator: N concurrent clients send pre-encoded batches of realistic ~1 KB GenAI spans
//! (`agent_console::fixtures::genai_traces`) over OTLP/gRPC or OTLP/HTTP protobuf to a running
//! collector for a fixed time, then count what was persisted back through `/api/sql` and report
//! spans/s. Overload answers (503 / UNAVAILABLE) are counted, waited out and retried.
//!
//! 64 exports are built and encoded before the run; each send copies one and gives it new trace,
//! span and tool call ids in place (`Payload::fresh`: the offsets are found once), so every span,
//! model call and tool call is new to the collector, as from a live fleet, at the cost of a
//! memcpy per export. `--replay-payloads` sends them unchanged instead (exporter retries: the
//! collector stores the spans again but drops the calls as duplicates).
//!
//! With `--rate` the clients together send at most that many spans/s; with `--probe-rollups` a
//! prober asks `GET /api/cost` (by model and by agent, per day) in a loop meanwhile and reports
//! p50/p99 latency. `--seed-model-calls N --data-dir DIR` fills a stopped collector's database
//! with N synthetic model calls over 30 days first (for the rollup benchmark), then exits.
//!
//! `--live-subscribers N` holds N SSE subscribers filtered to a probe session and reports
//! export-to-delivery latency of a probe span sent every 50 ms (`--trace-slow-ms T` prints each
//! probe slower than T ms, to find when in the run a tail happens); `--idle-subscribers N` reports
//! the collector's RSS growth for N idle SSE subscribers.
//!
//! `--probe-alerts` creates a session budget rule (`loadgen-alert-probe`, $50) through the API,
//! sends every 200 ms one model call costing $100 in a fresh session, and reports the latency from
//! the export's start to the `alert` message (`state: "firing"`) for that session on `/api/live`.
//!
//! cargo run --release --bin loadgen -- --protocol grpc --clients 4 --seconds 20

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_console::receiver::grpc::{OtlpService, RawCodec, TraceService};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    Grpc,
    Http,
}

#[derive(Debug, Parser)]
#[command(about = "Send realistic GenAI spans to agent-console and measure persisted spans/s")]
struct Args {
    #[arg(long, value_enum, default_value = "grpc", env = "AGENT_CONSOLE_LOADGEN_PROTOCOL")]
    protocol: Proto,
    /// OTLP/gRPC address of the collector.
    #[arg(long, default_value = "127.0.0.1:4317", env = "AGENT_CONSOLE_LOADGEN_GRPC")]
    grpc: String,
    /// OTLP/HTTP + API address of the collector.
    #[arg(long, default_value = "127.0.0.1:4318", env = "AGENT_CONSOLE_LOADGEN_HTTP")]
    http: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4, env = "AGENT_CONSOLE_LOADGEN_CLIENTS")]
    clients: usize,
    /// Spans per export request.
    #[arg(long, default_value_t = 512, env = "AGENT_CONSOLE_LOADGEN_BATCH")]
    batch: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 20, env = "AGENT_CONSOLE_LOADGEN_SECONDS")]
    seconds: u64,
    /// Distinct sessions the spans are spread over.
    #[arg(long, default_value_t = 1000, env = "AGENT_CONSOLE_LOADGEN_SESSIONS")]
    sessions: u64,
    /// PID of the collector, to report its peak RSS (VmHWM) from /proc.
    #[arg(long, env = "AGENT_CONSOLE_LOADGEN_SERVER_PID")]
    server_pid: Option<u32>,
    /// Cap on spans/s over all clients (0 = as fast as the collector takes them).
    #[arg(long, default_value_t = 0, env = "AGENT_CONSOLE_LOADGEN_RATE")]
    rate: u64,
    /// Meanwhile, time cost rollups (by model and by agent, per day) through the API.
    #[arg(long, default_value_t = false, env = "AGENT_CONSOLE_LOADGEN_PROBE_ROLLUPS")]
    probe_rollups: bool,
    /// Instead of sending: add this many synthetic model calls to the database in --data-dir
    /// (the collector must be stopped) and exit.
    #[arg(long, env = "AGENT_CONSOLE_LOADGEN_SEED_MODEL_CALLS")]
    seed_model_calls: Option<u64>,
    /// Meanwhile, hold this many SSE subscribers on `/api/live` filtered to a probe session, send
    /// one probe span every 50 ms, and report export-to-delivery latency over all subscribers.
    #[arg(long, default_value_t = 0, env = "AGENT_CONSOLE_LOADGEN_LIVE_SUBSCRIBERS")]
    live_subscribers: usize,
    /// Before sending: open this many idle SSE subscribers and report the collector's RSS growth
    /// (needs --server-pid); they stay connected during the run.
    #[arg(long, default_value_t = 0, env = "AGENT_CONSOLE_LOADGEN_IDLE_SUBSCRIBERS")]
    idle_subscribers: usize,
    /// Meanwhile, time export acknowledged -> visible to `/api/sql` for a probe span (one at a
    /// time, polling every 5 ms).
    #[arg(long, default_value_t = false, env = "AGENT_CONSOLE_LOADGEN_PROBE_VISIBILITY")]
    probe_visibility: bool,
    /// Meanwhile, time threshold crossed -> `alert` message on the live stream: a $50 session
    /// budget rule is created, and a $100 model call in a fresh session is sent every 200 ms.
    #[arg(long, default_value_t = false, env = "AGENT_CONSOLE_LOADGEN_PROBE_ALERTS")]
    probe_alerts: bool,
    /// Print each live probe whose acknowledgement or SSE delivery took longer than this many
    /// ms, with its time into the run, to stderr: where a latency tail comes from (0: off).
    #[arg(long, default_value_t = 0, env = "AGENT_CONSOLE_LOADGEN_TRACE_SLOW_MS")]
    trace_slow_ms: u64,
    /// Send the pre-built exports unchanged, over and over (retries of the same spans: their
    /// model and tool calls are dropped as duplicates), instead of with new ids each time.
    #[arg(long, default_value_t = false, env = "AGENT_CONSOLE_LOADGEN_REPLAY_PAYLOADS")]
    replay_payloads: bool,
    /// Database directory for --seed-model-calls.
    #[arg(long, default_value = "./agent-console-data", env = "AGENT_CONSOLE_DATA_DIR")]
    data_dir: std::path::PathBuf,
}

#[derive(Default)]
struct Counters {
    sent_spans: AtomicU64,
    acked_spans: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

/// Minimal HTTP/1.1 keep-alive client: enough for POSTs to our own server, no extra dependency.
struct Http1 {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http1 {
    async fn connect(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(s), host: addr.to_string() })
    }

    async fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.send(head, body).await
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.send(head, &[]).await
    }

    async fn send(&mut self, head: String, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        if !chunked {
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            return Ok((status, buf));
        }
        // A streamed answer: chunks of `<hex size>\r\n<data>\r\n`, ended by a 0-size chunk.
        let mut buf = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16).map_err(|_| anyhow!("bad chunk size {line:?}"))?;
            let start = buf.len();
            buf.resize(start + size + 2, 0);
            self.stream.read_exact(&mut buf[start..]).await?;
            buf.truncate(start + size);
            if size == 0 {
                return Ok((status, buf));
            }
        }
    }
}

/// `POST /api/flush`: wait until everything acknowledged is queryable.
async fn flush(http: &str) -> anyhow::Result<()> {
    let mut c = Http1::connect(http).await?;
    let (status, body) = c.post("/api/flush?timeout_ms=1800000", "application/json", b"").await?;
    if status != 200 {
        bail!("flush answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn count_spans(http: &str) -> anyhow::Result<u64> {
    flush(http).await?;
    let mut c = Http1::connect(http).await?;
    let (status, body) = c.post("/api/sql", "application/json", br#"{"sql":"SELECT count(*) FROM spans"}"#).await?;
    if status != 200 {
        bail!("count query answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["rows"][0][0].as_u64().ok_or_else(|| anyhow!("unexpected answer {v}"))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Sleep so that this client sends at most `rate / clients` spans/s (no-op without `--rate`).
async fn pace(args: &Args, started: Instant, sent_by_me: u64) {
    if args.rate == 0 || args.clients == 0 {
        return;
    }
    let per_client = args.rate as f64 / args.clients as f64;
    let due = started + Duration::from_secs_f64(sent_by_me as f64 / per_client);
    tokio::time::sleep_until(due.into()).await;
}

/// One pre-encoded export and where its ids are, so that each send can make them new.
struct Payload {
    spans: usize,
    body: Bytes,
    /// Offsets of the last 8 bytes of every trace id, of every span and parent span id (8 bytes),
    /// and of the 16 hex digits of every `gen_ai.tool.call.id` (`call_<16 hex>`).
    trace_ids: Vec<usize>,
    span_ids: Vec<usize>,
    tool_ids: Vec<usize>,
}

fn find_from(buf: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    buf.get(from..)?.windows(pat.len()).position(|w| w == pat).map(|p| from + p)
}

impl Payload {
    /// Encode `req` and find its ids in the encoding, in order (prost writes fields by number:
    /// trace_id 1, span_id 2, parent_span_id 4, attributes 9), each search starting after the last.
    fn new(req: &ExportTraceServiceRequest) -> Self {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let body = req.encode_to_vec();
        let mut p = Payload { spans: 0, body: Bytes::new(), trace_ids: vec![], span_ids: vec![], tool_ids: vec![] };
        let mut at = 0;
        for span in req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            p.spans += 1;
            // (protobuf key byte, id, is the trace id: patch its last 8 bytes)
            let fields: [(u8, &[u8], bool); 3] =
                [(0x0a, &span.trace_id, true), (0x12, &span.span_id, false), (0x22, &span.parent_span_id, false)];
            for (tag, id, trace) in fields {
                if id.len() < 8 {
                    continue;
                }
                let pat = [&[tag, id.len() as u8][..], id].concat();
                if let Some(o) = find_from(&body, at, &pat) {
                    if trace {
                        p.trace_ids.push(o + 2 + id.len() - 8);
                    } else {
                        p.span_ids.push(o + 2);
                    }
                    at = o + pat.len();
                }
            }
            for kv in span.attributes.iter().filter(|kv| kv.key == "gen_ai.tool.call.id") {
                if let Some(Value::StringValue(v)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    if v.len() == 21 && v.starts_with("call_") {
                        if let Some(o) = find_from(&body, at, v.as_bytes()) {
                            p.tool_ids.push(o + 5);
                            at = o + v.len();
                        }
                    }
                }
            }
        }
        p.body = Bytes::from(body);
        p
    }

    /// A copy whose ids are XORed with `k` (the same id gets the same new id, so parents still
    /// match their children; a different `k` per send makes every send new).
    fn fresh(&self, k: u64) -> Bytes {
        let mut b = bytes::BytesMut::from(&self.body[..]);
        let x = k.to_be_bytes();
        for &o in self.trace_ids.iter().chain(&self.span_ids) {
            for (byte, m) in b[o..o + 8].iter_mut().zip(x) {
                *byte ^= m;
            }
        }
        for &o in &self.tool_ids {
            let old = std::str::from_utf8(&b[o..o + 16]).ok().and_then(|h| u64::from_str_radix(h, 16).ok());
            if let Some(old) = old {
                b[o..o + 16].copy_from_slice(format!("{:016x}", old ^ k).as_bytes());
            }
        }
        b.freeze()
    }

    fn body(&self, args: &Args, nonce: u64, client: usize, i: usize) -> Bytes {
        if args.replay_payloads {
            self.body.clone()
        } else {
            // Unique per run (nonce), client and send.
            self.fresh(nonce ^ ((client as u64 + 1) << 40 | i as u64))
        }
    }
}

async fn run_client(
    args: Arc<Args>,
    payloads: Arc<Vec<Payload>>,
    nonce: u64,
    id: usize,
    c: Arc<Counters>,
    until: Instant,
) {
    let mut i = id;
    let started = Instant::now();
    let mut mine = 0u64;
    match args.protocol {
        Proto::Grpc => {
            let channel = match tonic::transport::Endpoint::from_shared(format!("http://{}", args.grpc)) {
                Ok(e) => e.connect().await,
                Err(e) => {
                    eprintln!("client {id}: {e}");
                    c.errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            let mut client = match channel {
                Ok(ch) => tonic::client::Grpc::new(ch).max_encoding_message_size(64 * 1024 * 1024),
                Err(e) => {
                    eprintln!("client {id}: {e}");
                    c.errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            while Instant::now() < until {
                let p = &payloads[i % payloads.len()];
                let (n, body) = (&p.spans, p.body(&args, nonce, id, i));
                i += 1;
                mine += *n as u64;
                c.sent_spans.fetch_add(*n as u64, Relaxed);
                let sent = match client.ready().await {
                    Ok(()) => {
                        // Sent as encoded before the run (`RawCodec`): the load generator shares
                        // the collector's cores, so it does not clone and re-encode 512 spans per
                        // export (an SDK encodes each batch once, which the pre-encoding stands for).
                        let path = tonic::codegen::http::uri::PathAndQuery::from_static(TraceService::EXPORT_PATH);
                        client.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ())
                    }
                    Err(e) => Err(tonic::Status::unavailable(e.to_string())),
                };
                match sent {
                    Ok(()) => {
                        c.acked_spans.fetch_add(*n as u64, Relaxed);
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        c.refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        // The collector is gone (a restart in the soak): do not spin.
                        c.errors.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                pace(&args, started, mine).await;
            }
        }
        Proto::Http => {
            let mut client = match Http1::connect(&args.http).await {
                Ok(cl) => cl,
                Err(e) => {
                    eprintln!("client {id}: {e}");
                    c.errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            while Instant::now() < until {
                let p = &payloads[i % payloads.len()];
                let (n, body) = (&p.spans, p.body(&args, nonce, id, i));
                i += 1;
                mine += *n as u64;
                c.sent_spans.fetch_add(*n as u64, Relaxed);
                match client.post("/v1/traces", "application/x-protobuf", &body).await {
                    Ok((200, _)) => {
                        c.acked_spans.fetch_add(*n as u64, Relaxed);
                    }
                    Ok((429 | 503, _)) => {
                        c.refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(_) | Err(_) => {
                        c.errors.fetch_add(1, Relaxed);
                        match Http1::connect(&args.http).await {
                            Ok(fresh) => client = fresh,
                            // The collector is gone (a restart in the soak): do not spin.
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                pace(&args, started, mine).await;
            }
        }
    }
}

/// Time `GET /api/cost` rollups until `until`; returns the latencies in ms.
async fn probe_rollups(http: String, until: Instant) -> anyhow::Result<Vec<f64>> {
    let mut c = Http1::connect(&http).await?;
    let mut lat = Vec::new();
    let paths = ["/api/cost?group_by=model&bucket=day", "/api/cost?group_by=agent&bucket=day"];
    let mut i = 0;
    while Instant::now() < until {
        let t = Instant::now();
        let (status, body) = c.get(paths[i % 2]).await?;
        if status != 200 {
            bail!("rollup answered {status}: {}", String::from_utf8_lossy(&body));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(lat)
}

const PROBE_SESSION: &str = "loadgen-latency-probe";

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// One probe export: a single span named `probe-<seq>` in the probe session.
/// The span id of probe `seq`.
fn probe_span_id(seq: u64) -> u64 {
    seq + 1
}

fn probe_request(seq: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let t = now_ns();
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let mut trace_id = [0x5au8; 16];
    trace_id[..8].copy_from_slice(&(seq + 1).to_be_bytes());
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "loadgen-probe")], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: probe_span_id(seq).to_be_bytes().to_vec(),
                    name: format!("probe-{seq}"),
                    start_time_unix_nano: t,
                    end_time_unix_nano: t + 1000,
                    attributes: vec![kv("gen_ai.conversation.id", PROBE_SESSION)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// Open an SSE stream; returns the reader positioned after the response head.
async fn sse_connect(http: &str, query: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(http).await.with_context(|| format!("connect {http}"))?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s);
    let head = format!("GET /api/live?{query} HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n");
    r.get_mut().write_all(head.as_bytes()).await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.contains(" 200") {
        bail!("live stream answered {line:?}");
    }
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        if line.trim_end().is_empty() {
            return Ok(r);
        }
    }
}

/// `--trace-slow-ms` in ns (0: off), set once at start.
static TRACE_SLOW_NS: AtomicU64 = AtomicU64::new(0);

/// Is this latency one `--trace-slow-ms` asks to print?
fn slow(ns: u64) -> bool {
    let limit = TRACE_SLOW_NS.load(Relaxed);
    limit > 0 && ns > limit
}

/// Read SSE lines until `until`; each line `seq_of` maps to a probe's sequence number gives one
/// latency sample against that probe's send time.
async fn latency_reader(
    mut r: BufReader<TcpStream>,
    sent: Arc<Vec<AtomicU64>>,
    until: Instant,
    seq_of: impl Fn(&str) -> Option<usize>,
) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::new();
    let mut line = String::new();
    while Instant::now() < until {
        line.clear();
        let n = match tokio::time::timeout_at(until.into(), r.read_line(&mut line)).await {
            Ok(n) => n?,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let at = now_ns();
        let Some(seq) = seq_of(&line) else { continue };
        let t = sent.get(seq).map_or(0, |a| a.load(Relaxed));
        if t > 0 {
            lat.push(at.saturating_sub(t) as f64 / 1e6);
            if slow(at.saturating_sub(t)) {
                eprintln!(
                    "slow delivery: probe {seq} sent at +{} ms took {:.1} ms",
                    seq * 50,
                    at.saturating_sub(t) as f64 / 1e6
                );
            }
        }
    }
    Ok(lat)
}

/// Read probe spans until `until`; each `"name":"probe-<seq>"` gives one latency sample.
async fn live_subscriber(
    r: BufReader<TcpStream>,
    sent: Arc<Vec<AtomicU64>>,
    until: Instant,
) -> anyhow::Result<Vec<f64>> {
    latency_reader(r, sent, until, |line| {
        const PAT: &str = "\"name\":\"probe-";
        let rest = &line[line.find(PAT)? + PAT.len()..];
        rest.split('"').next()?.parse::<usize>().ok()
    })
    .await
}

const ALERT_RULE: &str = "loadgen-alert-probe";

/// One model call costing $100 (reported by the span) in session `{prefix}-{seq}`.
fn alert_probe_request(prefix: &str, seq: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let t = now_ns();
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let s = |v: &str| any_value::Value::StringValue(v.into());
    let mut trace_id = [0xa1u8; 16];
    trace_id[..8].copy_from_slice(&t.to_be_bytes());
    trace_id[8..].copy_from_slice(&seq.to_be_bytes());
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("loadgen-alert-probe"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: (seq + 1).to_be_bytes().to_vec(),
                    name: "chat gpt-4o".into(),
                    start_time_unix_nano: t,
                    end_time_unix_nano: t + 1000,
                    attributes: vec![
                        kv("gen_ai.conversation.id", s(&format!("{prefix}-{seq}"))),
                        kv("gen_ai.operation.name", s("chat")),
                        kv("gen_ai.provider.name", s("openai")),
                        kv("gen_ai.request.model", s("gpt-4o")),
                        kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(10)),
                        kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(10)),
                        kv("gen_ai.usage.cost", any_value::Value::DoubleValue(100.0)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// Create the probe's budget rule (an existing one from an earlier run is kept).
async fn create_alert_rule(http: &str) -> anyhow::Result<()> {
    let mut c = Http1::connect(http).await?;
    let rule = serde_json::json!({"name": ALERT_RULE, "kind": "budget", "scope": "session", "threshold": 50.0,
                                  "tiers": [1.0], "cooldown_secs": 0});
    let (status, body) = c.post("/api/alerts/rules", "application/json", rule.to_string().as_bytes()).await?;
    if status != 200 && status != 201 && status != 409 {
        bail!("creating the alert rule answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Read `alert` messages until `until`; each firing of the probe rule for `{prefix}-<seq>` gives
/// one latency sample against the probe's send time.
async fn alert_subscriber(
    r: BufReader<TcpStream>,
    prefix: String,
    sent: Arc<Vec<AtomicU64>>,
    until: Instant,
) -> anyhow::Result<Vec<f64>> {
    latency_reader(r, sent, until, |line| {
        let v = serde_json::from_str::<serde_json::Value>(line.strip_prefix("data:")?.trim()).ok()?;
        if v["rule"] != ALERT_RULE || v["state"] != "firing" {
            return None;
        }
        v["scope"]
            .as_str()?
            .strip_prefix("session:")?
            .strip_prefix(prefix.as_str())?
            .strip_prefix('-')?
            .parse::<usize>()
            .ok()
    })
    .await
}

/// Send one alert probe every 200 ms until `until`; returns how many were sent.
async fn send_alert_probes(
    http: String,
    prefix: String,
    sent: Arc<Vec<AtomicU64>>,
    until: Instant,
) -> anyhow::Result<u64> {
    let mut c = Http1::connect(&http).await?;
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while Instant::now() < until && (seq as usize) < sent.len() {
        tick.tick().await;
        let body = alert_probe_request(&prefix, seq);
        sent[seq as usize].store(now_ns(), Relaxed);
        let (status, _) = c.post("/v1/traces", "application/x-protobuf", &body).await?;
        if status != 200 {
            bail!("alert probe answered {status}");
        }
        seq += 1;
    }
    Ok(seq)
}

/// Send a probe every 50 ms until `until`, recording each send time by sequence number.
async fn send_probes(http: String, sent: Arc<Vec<AtomicU64>>, until: Instant) -> anyhow::Result<(u64, Vec<f64>)> {
    let mut c = Http1::connect(&http).await?;
    let mut seq = 0u64;
    let mut acks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < until && (seq as usize) < sent.len() {
        tick.tick().await;
        let body = probe_request(seq);
        sent[seq as usize].store(now_ns(), Relaxed);
        let t = Instant::now();
        let (status, _) = c.post("/v1/traces", "application/x-protobuf", &body).await?;
        if status != 200 {
            bail!("probe answered {status}");
        }
        acks.push(t.elapsed().as_secs_f64() * 1e3);
        if slow(t.elapsed().as_nanos() as u64) {
            eprintln!(
                "slow acknowledgement: probe {seq} sent at +{} ms took {:.1} ms",
                seq * 50,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        seq += 1;
    }
    Ok((seq, acks))
}

/// Export one probe span at a time and poll `/api/sql` until it is there; returns ms per probe.
async fn probe_visibility(http: String, until: Instant) -> anyhow::Result<Vec<f64>> {
    let mut c = Http1::connect(&http).await?;
    let mut lat = Vec::new();
    let mut seq = 1_000_000u64;
    while Instant::now() < until {
        seq += 1;
        let body = probe_request(seq);
        let (status, _) = c.post("/v1/traces", "application/x-protobuf", &body).await?;
        if status != 200 {
            bail!("visibility probe answered {status}");
        }
        let acked = Instant::now();
        let span_id = format!("{:016x}", probe_span_id(seq));
        let sql = format!("{{\"sql\":\"SELECT count(*) FROM spans WHERE span_id = '{span_id}'\"}}");
        loop {
            let (status, body) = c.post("/api/sql", "application/json", sql.as_bytes()).await?;
            if status != 200 {
                bail!("visibility query answered {status}: {}", String::from_utf8_lossy(&body));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["rows"][0][0].as_u64() == Some(1) {
                break;
            }
            if acked.elapsed() > Duration::from_secs(60) {
                bail!("probe span {span_id} not visible after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(acked.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(lat)
}

/// The highest memory figures `/metrics` showed during a run (bytes): the process's resident
/// memory, DuckDB's buffer manager, and resident memory less DuckDB's at one sample.
#[derive(Default)]
struct MemoryPeaks {
    resident: u64,
    duckdb: u64,
    outside_duckdb: u64,
    /// The collector's own heap (mimalloc's committed memory).
    heap: u64,
    samples: u64,
}

/// Read the collector's memory gauges every 500 ms until `stop` is set.
async fn sample_memory(http: String, stop: Arc<std::sync::atomic::AtomicBool>) -> MemoryPeaks {
    let mut peaks = MemoryPeaks::default();
    let mut conn = None;
    while !stop.load(Relaxed) {
        if conn.is_none() {
            conn = Http1::connect(&http).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.get("/metrics").await {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(&body);
                    let gauge = |name: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                            .map(|v| v as u64)
                    };
                    if let (Some(rss), Some(db)) =
                        (gauge("agent_console_process_resident_bytes"), gauge("agent_console_duckdb_memory_bytes"))
                    {
                        peaks.resident = peaks.resident.max(rss);
                        peaks.duckdb = peaks.duckdb.max(db);
                        peaks.outside_duckdb = peaks.outside_duckdb.max(rss.saturating_sub(db));
                        peaks.heap = peaks.heap.max(gauge("agent_console_heap_committed_bytes").unwrap_or(0));
                        peaks.samples += 1;
                    }
                }
                _ => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    peaks
}

fn current_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Fill `model_calls` with `n` synthetic calls over the 30 days before now, appended in time order
/// as ingest would: sessions of 100 consecutive calls, each on one of 200 agents and one of 5,000
/// tasks, using two of 12 models; then rebuild the hourly cost rollup as the writer keeps it.
fn seed(data_dir: &std::path::Path, n: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let conn = duckdb::Connection::open(data_dir.join("agent-console.duckdb"))?;
    agent_console::store::schema::migrate(&conn)?;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
    let span_us = 30 * 86_400 * 1_000_000i64;
    let step = (span_us / n.max(1) as i64).max(1);
    let started = Instant::now();
    conn.execute(
        "INSERT INTO model_calls (time, source, trace_id, span_id, service_name, session_id, agent_id, agent_name,
             task_id, model, provider, operation, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
             cost_usd, cost_source, duration_ms, error, token_rule)
         SELECT make_timestamp(?::BIGINT + i * ?::BIGINT), 'span', printf('%032x', i), printf('%016x', i), 'seed',
                'sess-' || (i // 100), 'agent-' || ((i // 100) % 200), 'agent ' || ((i // 100) % 200),
                'TASK-' || (hash(i // 100) % 5000),
                ['gpt-4o-mini', 'gpt-4.1', 'gpt-5', 'claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20251001',
                 'claude-opus-4-1-20250805', 'gemini-2.5-flash', 'gemini-2.5-pro', 'mistral-large-latest',
                 'deepseek-chat', 'grok-4', 'llama-3.3-70b-versatile'][1 + ((i // 100 + (i % 3 = 0)::INTEGER) % 12)::INTEGER],
                ['openai', 'openai', 'openai', 'anthropic', 'anthropic', 'anthropic', 'gcp.gemini', 'gcp.gemini',
                 'mistral_ai', 'deepseek', 'x_ai', 'groq'][1 + ((i // 100 + (i % 3 = 0)::INTEGER) % 12)::INTEGER],
                'chat', 500 + hash(i) % 20000, 50 + hash(i + 7) % 2000, hash(i + 3) % 5000, hash(i + 5) % 500,
                (500 + hash(i) % 20000) * 3e-6, 'computed', 100 + hash(i) % 5000, i % 97 = 0, 'otel'
         FROM range(?::BIGINT) t(i)",
        duckdb::params![now_us - span_us, step, n as i64],
    )?;
    conn.execute_batch(agent_console::store::rollup::REBUILD)?;
    conn.execute_batch("CHECKPOINT")?;
    println!("seeded {n} model calls in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A one-thread runtime for the probes, shut down without blocking when dropped (the main
/// runtime's context forbids a blocking drop).
struct ProbeRuntime(Option<tokio::runtime::Runtime>);

impl ProbeRuntime {
    fn new() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("loadgen-probe")
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(f),
            None => tokio::spawn(f),
        }
    }
}

impl Drop for ProbeRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The same allocator as the collector (the load generator shares its 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    TRACE_SLOW_NS.store(args.trace_slow_ms.saturating_mul(1_000_000), Relaxed);
    if let Some(n) = args.seed_model_calls {
        return seed(&args.data_dir, n);
    }
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let mut rng = agent_console::fixtures::Rng::new(42);
    let payloads: Vec<_> = (0..64)
        .map(|_| Payload::new(&agent_console::fixtures::genai_traces(args.batch, args.sessions, &mut rng, now_ns)))
        .collect();
    let avg = payloads.iter().map(|p| p.body.len()).sum::<usize>() / payloads.len();
    println!(
        "loadgen: {:?}, {} clients, {} spans/request ({} bytes, {} bytes/span), {} s",
        args.protocol,
        args.clients,
        args.batch,
        avg,
        avg / args.batch.max(1),
        args.seconds
    );
    let before = count_spans(&args.http).await.context("counting spans before the run (is the collector up?)")?;
    // Idle subscribers: connected before the run, never sent anything (a session that never occurs).
    let mut idle = Vec::with_capacity(args.idle_subscribers);
    if args.idle_subscribers > 0 {
        let rss0 = args.server_pid.and_then(current_rss_kib);
        for _ in 0..args.idle_subscribers {
            idle.push(sse_connect(&args.http, "session=loadgen-nobody").await?);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = args.server_pid.and_then(current_rss_kib);
        match (rss0, rss1) {
            (Some(a), Some(b)) => println!(
                "idle subscribers: {} connected, collector RSS {:.1} -> {:.1} MiB (+{:.2} MiB, {:.1} KiB each)",
                idle.len(),
                a as f64 / 1024.0,
                b as f64 / 1024.0,
                (b as f64 - a as f64) / 1024.0,
                (b as f64 - a as f64) / idle.len() as f64
            ),
            _ => println!("idle subscribers: {} connected (pass --server-pid for RSS)", idle.len()),
        }
    }
    let payloads = Arc::new(payloads);
    // This run's ids differ from an earlier run's against the same database (the soak restarts).
    let nonce = now_ns.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| tokio::spawn(run_client(args.clone(), payloads.clone(), nonce, id, counters.clone(), until)))
        .collect();
    let memory_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let memory = tokio::spawn(sample_memory(args.http.clone(), memory_stop.clone()));
    let prober = args.probe_rollups.then(|| tokio::spawn(probe_rollups(args.http.clone(), until)));
    let visibility = args.probe_visibility.then(|| tokio::spawn(probe_visibility(args.http.clone(), until)));
    let mut live = Vec::new();
    let mut probes = None;
    // The probe and its subscribers run on a runtime of their own (one thread), so what they
    // time is the collector, not the bulk clients' turns on the main runtime.
    let probe_rt = ProbeRuntime::new()?;
    if args.live_subscribers > 0 {
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..100_000).map(|_| AtomicU64::new(0)).collect());
        let query = format!("type=span&session={PROBE_SESSION}");
        for _ in 0..args.live_subscribers {
            let (http, query, sent) = (args.http.clone(), query.clone(), sent.clone());
            let end = until + Duration::from_secs(2);
            let (tx, rx) = tokio::sync::oneshot::channel();
            live.push(probe_rt.spawn(async move {
                let r = sse_connect(&http, &query).await;
                let connected = r.is_ok();
                let _ = tx.send(connected);
                live_subscriber(r?, sent, end).await
            }));
            // Subscribed before the first probe is sent.
            if !rx.await.unwrap_or(false) {
                break;
            }
        }
        probes = Some(probe_rt.spawn(send_probes(args.http.clone(), sent, until)));
    }
    let mut alerts = None;
    if args.probe_alerts {
        create_alert_rule(&args.http).await?;
        let prefix = format!("loadgen-alert-{now_ns}");
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..100_000).map(|_| AtomicU64::new(0)).collect());
        let r = sse_connect(&args.http, "type=alert").await?;
        let sub = tokio::spawn(alert_subscriber(r, prefix.clone(), sent.clone(), until + Duration::from_secs(5)));
        alerts = Some((sub, tokio::spawn(send_alert_probes(args.http.clone(), prefix, sent, until))));
    }
    for t in tasks {
        t.await?;
    }
    if let Some(p) = prober {
        let mut lat = p.await??;
        lat.sort_by(f64::total_cmp);
        println!(
            "rollups (by model / by agent, per day): n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    let send_elapsed = start.elapsed().as_secs_f64();
    if let Some(p) = probes {
        let (n, mut acks) = p.await??;
        acks.sort_by(f64::total_cmp);
        println!(
            "probe export acknowledged (committed): p50={:.2} ms p99={:.2} ms max={:.2} ms",
            percentile(&acks, 0.5),
            percentile(&acks, 0.99),
            acks.last().copied().unwrap_or(f64::NAN)
        );
        let mut lat = Vec::new();
        for s in live {
            lat.extend(s.await??);
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "live latency (export start -> SSE delivery), {} subscribers, {} probes: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
            args.live_subscribers,
            n,
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    drop(idle);
    if let Some((sub, probes)) = alerts {
        let n = probes.await??;
        let mut lat = sub.await??;
        lat.sort_by(f64::total_cmp);
        println!(
            "alert latency (export start -> firing alert on /api/live), {n} probes: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
        if (lat.len() as u64) < n {
            println!("alert probes without a firing alert: {}", n - lat.len() as u64);
        }
    }
    if let Some(v) = visibility {
        let mut lat = v.await??;
        lat.sort_by(f64::total_cmp);
        println!(
            "visibility (export acknowledged -> found by /api/sql): n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    let acked = counters.acked_spans.load(Relaxed);
    // Counters first: if the final count fails (the collector is still catching up), they are
    // not lost (the soak reads them).
    println!("sent (before count): {}", counters.sent_spans.load(Relaxed));
    println!("acknowledged (before count): {acked}");
    // Exports are acknowledged once durable in the ingest log; wait until DuckDB has them all.
    let flush_started = Instant::now();
    let after = count_spans(&args.http).await?;
    let flush_s = flush_started.elapsed().as_secs_f64();
    let persisted = after.saturating_sub(before);
    memory_stop.store(true, Relaxed);
    let memory = memory.await?;
    println!("sent spans:        {}", counters.sent_spans.load(Relaxed));
    println!("acknowledged:      {acked}");
    println!("persisted (store): {persisted}");
    println!("refused (503/UNAVAILABLE, retried): {}", counters.refused.load(Relaxed));
    println!("errors:            {}", counters.errors.load(Relaxed));
    println!("elapsed:           {send_elapsed:.2} s (+{flush_s:.2} s until all of it was queryable)");
    println!("acknowledged spans/s: {:.0}", acked as f64 / send_elapsed);
    println!("persisted spans/s: {:.0}", persisted as f64 / (send_elapsed + flush_s));
    if let Some(pid) = args.server_pid {
        if let Some(kib) = peak_rss_kib(pid) {
            println!("server peak RSS:   {:.1} MiB", kib as f64 / 1024.0);
        }
    }
    if memory.samples > 0 {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "memory peaks ({} samples of /metrics, 500 ms apart): resident {:.1} MiB, DuckDB buffer manager {:.1} MiB, resident less DuckDB's {:.1} MiB, the collector's own heap {:.1} MiB",
            memory.samples,
            mib(memory.resident),
            mib(memory.duckdb),
            mib(memory.outside_duckdb),
            mib(memory.heap)
        );
    }
    if persisted < acked {
        bail!("lost acknowledged spans: acked {acked}, persisted {persisted}");
    }
    Ok(())
}
