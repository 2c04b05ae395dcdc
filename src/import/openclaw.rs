//! `agent-console import openclaw`: backfill from an OpenClaw gateway the model calls no shim saw
//! (issue 15, section 3). One connection (`agent_console_openclaw::gateway::fetch_usage`): every
//! session row, then `sessions.usage`. Each session with usage becomes one
//! `openclaw.usage.reconcile` record carrying the gateway's cumulative totals, keyed by them
//! (`Ledger::import`), sent over the one ingest path like `import claude-code` (a running
//! collector over OTLP/HTTP, or a stopped data dir). The collector's OpenClaw dedup
//! (`model::openclaw::RunDedup`) stores only what its store is missing for the session and drops
//! a key it has seen, so importing twice, or beside a live shim, counts nothing twice.

use std::time::Duration;

use agent_console_openclaw::gateway::{fetch_usage, Outcome};
use agent_console_openclaw::runs::Ledger;
use clap::Args;
use prost::Message;

use super::{ImportError, Imported, Sink};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

/// Records per export.
const BATCH: usize = 500;
/// Connect attempts while the gateway says it is starting (`UNAVAILABLE`).
const ATTEMPTS: u32 = 10;

#[derive(Debug, Clone, Args)]
pub struct OpenclawArgs {
    /// The gateway's WebSocket address.
    #[arg(long, env = "AGENT_CONSOLE_OPENCLAW_GATEWAY", default_value = "ws://127.0.0.1:18789")]
    pub gateway: String,
    /// The gateway's token (`gateway.auth.token`).
    #[arg(long, env = "OPENCLAW_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<String>,
    /// A task id for every imported call (`agent_console.task.id`).
    #[arg(long, env = "AGENT_CONSOLE_TASK_ID")]
    pub task: Option<String>,
    #[command(flatten)]
    pub target: super::ImportTarget,
    /// How long to wait for the gateway's answers, in seconds.
    #[arg(long, env = "AGENT_CONSOLE_IMPORT_TIMEOUT_SECS", default_value_t = 60)]
    pub timeout_secs: u64,
}

/// Read the gateway's usage (retrying while it starts), in a blocking thread.
async fn read_gateway(args: &OpenclawArgs) -> Result<agent_console_openclaw::gateway::Snapshot, ImportError> {
    let (url, token, timeout) = (args.gateway.clone(), args.gateway_token.clone(), args.timeout_secs.max(1));
    tokio::task::spawn_blocking(move || {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match fetch_usage(&url, token.as_deref(), Duration::from_secs(timeout)) {
                Ok(s) => return Ok(s),
                Err(Outcome::RetryAfter(d)) if attempt < ATTEMPTS => std::thread::sleep(d),
                Err(Outcome::Disconnected { reason, .. }) if attempt < 3 => {
                    tracing::warn!(%reason, "gateway connection lost; trying again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(o) => return Err(ImportError::Invalid(format!("gateway {url}: {}", describe(&o)))),
            }
        }
    })
    .await
    .map_err(|e| ImportError::Invalid(e.to_string()))?
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::BadToken(m) => format!("token refused ({m})"),
        Outcome::Fatal(m) => m.clone(),
        Outcome::RetryAfter(d) => format!("still starting (retry after {d:?})"),
        Outcome::Disconnected { reason, .. } => reason.clone(),
    }
}

/// Import what the gateway counted and the store does not hold.
pub async fn import(args: OpenclawArgs) -> Result<Imported, ImportError> {
    let (rows, usage) = read_gateway(&args).await?;
    let sink = Sink::open(&args.target)?;
    let mut ledger = Ledger::with_cap(usage.len() + rows.len() + 1);
    let n = ledger.import(&rows, &usage, agent_console_openclaw::now_ms());
    let records: Vec<_> = ledger.pending().cloned().collect();
    let now_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut done = Imported { files: 0, bytes: 0, events: 0, bad_lines: 0 };
    for chunk in records.chunks(BATCH) {
        let body = agent_console_openclaw::otlp::encode(chunk.iter(), args.task.as_deref(), now_ns);
        done.bytes += body.len() as u64;
        let req = ExportLogsServiceRequest::decode(&body[..]).map_err(|e| ImportError::Invalid(e.to_string()))?;
        sink.send_logs(req).await?;
        done.events += chunk.len() as u64;
    }
    sink.finish().await?;
    tracing::info!(sessions = usage.len(), records = n, "openclaw usage imported");
    Ok(done)
}
