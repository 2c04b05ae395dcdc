//! Load generator: N concurrent clients send pre-encoded batches of realistic ~1 KB GenAI spans
//! (`agent_console::fixtures::genai_traces`) over OTLP/gRPC or OTLP/HTTP protobuf to a running
//! collector for a fixed time, then count what was persisted back through `/api/sql` and report
//! spans/s. Overload answers (503 / UNAVAILABLE) are counted, waited out and retried.
//!
//! cargo run --release --bin loadgen -- --protocol grpc --clients 4 --seconds 20

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
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
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await?;
        Ok((status, buf))
    }
}

async fn count_spans(http: &str) -> anyhow::Result<u64> {
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

async fn run_client(
    args: Arc<Args>,
    payloads: Arc<Vec<(usize, Vec<u8>, ExportTraceServiceRequest)>>,
    id: usize,
    c: Arc<Counters>,
    until: Instant,
) {
    let mut i = id;
    match args.protocol {
        Proto::Grpc => {
            let mut client = match TraceServiceClient::connect(format!("http://{}", args.grpc)).await {
                Ok(cl) => cl.max_encoding_message_size(64 * 1024 * 1024),
                Err(e) => {
                    eprintln!("client {id}: {e}");
                    c.errors.fetch_add(1, Relaxed);
                    return;
                }
            };
            while Instant::now() < until {
                let (n, _, req) = &payloads[i % payloads.len()];
                i += 1;
                c.sent_spans.fetch_add(*n as u64, Relaxed);
                match client.export(req.clone()).await {
                    Ok(_) => {
                        c.acked_spans.fetch_add(*n as u64, Relaxed);
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        c.refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => {
                        c.errors.fetch_add(1, Relaxed);
                    }
                }
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
                let (n, body, _) = &payloads[i % payloads.len()];
                i += 1;
                c.sent_spans.fetch_add(*n as u64, Relaxed);
                match client.post("/v1/traces", "application/x-protobuf", body).await {
                    Ok((200, _)) => {
                        c.acked_spans.fetch_add(*n as u64, Relaxed);
                    }
                    Ok((429 | 503, _)) => {
                        c.refused.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(_) | Err(_) => {
                        c.errors.fetch_add(1, Relaxed);
                        if let Ok(fresh) = Http1::connect(&args.http).await {
                            client = fresh;
                        }
                    }
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let mut rng = agent_console::fixtures::Rng::new(42);
    let payloads: Vec<_> = (0..64)
        .map(|_| {
            let req = agent_console::fixtures::genai_traces(args.batch, args.sessions, &mut rng, now_ns);
            (args.batch, req.encode_to_vec(), req)
        })
        .collect();
    let avg = payloads.iter().map(|p| p.1.len()).sum::<usize>() / payloads.len();
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
    let payloads = Arc::new(payloads);
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| tokio::spawn(run_client(args.clone(), payloads.clone(), id, counters.clone(), until)))
        .collect();
    for t in tasks {
        t.await?;
    }
    let send_elapsed = start.elapsed().as_secs_f64();
    let acked = counters.acked_spans.load(Relaxed);
    // Every acknowledged export is committed before its answer, so the count is final now.
    let after = count_spans(&args.http).await?;
    let persisted = after.saturating_sub(before);
    println!("sent spans:        {}", counters.sent_spans.load(Relaxed));
    println!("acknowledged:      {acked}");
    println!("persisted (store): {persisted}");
    println!("refused (503/UNAVAILABLE, retried): {}", counters.refused.load(Relaxed));
    println!("errors:            {}", counters.errors.load(Relaxed));
    println!("elapsed:           {send_elapsed:.2} s");
    println!("persisted spans/s: {:.0}", persisted as f64 / send_elapsed);
    if let Some(pid) = args.server_pid {
        if let Some(kib) = peak_rss_kib(pid) {
            println!("server peak RSS:   {:.1} MiB", kib as f64 / 1024.0);
        }
    }
    if persisted < acked {
        bail!("lost acknowledged spans: acked {acked}, persisted {persisted}");
    }
    Ok(())
}
