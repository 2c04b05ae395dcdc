//! `agent-console import`: a user's existing history into the store (issue 15, section 3).
//!
//! `import claude-code [DIR]` reads Claude Code's session transcripts (`claude_code.rs`: pure,
//! line by line) and sends what they hold as the log events Claude Code's telemetry sends, over
//! the one ingest path: to a running collector as OTLP/HTTP protobuf (`--url`, ingest token), or,
//! on a stopped data dir, into the store opened here (`Ingest::export`, the same function the
//! receivers call). Either way the pipeline's `imports` stage (`pipeline/imports.rs`) drops what
//! the store already counted (an earlier import, or the hooks and telemetry that reported it live),
//! so an import can be repeated. Rows from a transcript are marked `source = 'transcript'` and
//! priced from the price table (`cost_source = 'computed'`).

pub mod claude_code;
pub mod openclaw;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use prost::Message;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use crate::receiver::ingest::{Export, Ingest, IngestLimits, Payload};
use crate::store::{Store, StoreConfig, WriterHandle};

/// Errors of the import command.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "cannot open the data dir {path}: {message} (another process holds it? a collector running on it: \
         import through it with --url http://127.0.0.1:4318)"
    )]
    Locked { path: PathBuf, message: String },
    #[error("store: {0}")]
    Store(String),
    #[error("collector refused the import: {0}")]
    Http(String),
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportWhat,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ImportWhat {
    /// Claude Code session transcripts (default `~/.claude/projects`).
    ClaudeCode(ClaudeCodeArgs),
    /// An OpenClaw gateway's per-session usage (`sessions.usage`): what no shim counted.
    Openclaw(openclaw::OpenclawArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ClaudeCodeArgs {
    /// Directory of transcripts (`~/.claude/projects`, or one project's folder in it).
    #[arg(env = "AGENT_CONSOLE_IMPORT_DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub target: ImportTarget,
    /// Events per export.
    #[arg(long, env = "AGENT_CONSOLE_IMPORT_BATCH", default_value_t = 500)]
    pub batch: usize,
    /// Never draw a progress bar (it is drawn on stderr only when it is a terminal).
    #[arg(long, env = "AGENT_CONSOLE_IMPORT_QUIET")]
    pub quiet: bool,
}

/// Where an import goes: a running collector, or a stopped one's data dir.
#[derive(Debug, Clone, Args)]
pub struct ImportTarget {
    /// A running collector's HTTP address (e.g. http://127.0.0.1:4318); without it the data dir is
    /// opened directly (no collector may be running on it).
    #[arg(long, env = "AGENT_CONSOLE_IMPORT_URL")]
    pub url: Option<String>,
    /// The collector's ingest token (with --url).
    #[arg(long, env = "AGENT_CONSOLE_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory (without --url).
    #[arg(long, env = "AGENT_CONSOLE_DATA_DIR", default_value = "./agent-console-data")]
    pub data_dir: PathBuf,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Imported {
    pub files: u64,
    pub bytes: u64,
    /// Events sent (after the importer's own dedup of repeated lines across files).
    pub events: u64,
    /// Lines that were not JSON.
    pub bad_lines: u64,
}

/// Keys remembered across files within one run (beyond it the pipeline's stage still dedups).
const MAX_RUN_KEYS: usize = 1_000_000;
/// Lines longer than this are skipped (bounded memory).
const MAX_LINE: usize = 64 << 20;

enum Sink {
    Direct { ingest: Ingest, writer: Option<Box<WriterHandle>> },
    Http { client: reqwest::Client, url: String, token: Option<String> },
}

impl Sink {
    /// A running collector at `url`, or the data dir opened here.
    fn open(target: &ImportTarget) -> Result<Sink, ImportError> {
        let (url, token, data_dir) = (target.url.as_deref(), target.token.clone(), target.data_dir.as_path());
        match url {
            Some(url) => Ok(Sink::Http {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()
                    .map_err(|e| ImportError::Http(e.to_string()))?,
                url: url.trim_end_matches('/').to_string(),
                token,
            }),
            None => open_direct(data_dir),
        }
    }

    async fn send(&self, items: &[claude_code::Item]) -> Result<(), ImportError> {
        if items.is_empty() {
            return Ok(());
        }
        self.send_logs(claude_code::to_otlp(items)).await
    }

    /// One export of log records, through the one ingest path (retried while the collector is busy).
    async fn send_logs(&self, req: ExportLogsServiceRequest) -> Result<(), ImportError> {
        match self {
            Sink::Direct { ingest, .. } => {
                let mut wait = Duration::from_millis(50);
                loop {
                    match ingest.export(Export::decoded(Payload::Logs(req.clone()))).await {
                        Ok(_) => return Ok(()),
                        Err(crate::receiver::ingest::IngestError::Overloaded) => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(2));
                        }
                        Err(e) => return Err(ImportError::Store(e.to_string())),
                    }
                }
            }
            Sink::Http { client, url, token } => {
                let body = req.encode_to_vec();
                for attempt in 0..8u32 {
                    let mut r = client
                        .post(format!("{url}/v1/logs"))
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone());
                    if let Some(t) = token {
                        r = r.bearer_auth(t);
                    }
                    let resp = r.send().await.map_err(|e| ImportError::Http(e.to_string()))?;
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    if (status.as_u16() == 429 || status.as_u16() == 503) && attempt < 7 {
                        let secs = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                            .unwrap_or(1)
                            .min(10);
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        continue;
                    }
                    let text = resp.text().await.unwrap_or_default();
                    return Err(ImportError::Http(format!("{status}: {}", text.chars().take(300).collect::<String>())));
                }
                Err(ImportError::Http("collector busy".into()))
            }
        }
    }

    /// Wait until everything sent is queryable; close a store opened here.
    async fn finish(self) -> Result<(), ImportError> {
        match self {
            Sink::Direct { ingest, mut writer } => {
                let store: Store = ingest.store.clone();
                store.flush(None).await.map_err(|e| ImportError::Store(e.to_string()))?;
                drop(ingest);
                drop(store);
                if let Some(w) = writer.take() {
                    let _ = tokio::task::spawn_blocking(move || (*w).join()).await;
                }
                Ok(())
            }
            Sink::Http { client, url, token } => {
                let mut r = client.post(format!("{url}/api/flush"));
                if let Some(t) = &token {
                    r = r.bearer_auth(t);
                }
                let resp = r.send().await.map_err(|e| ImportError::Http(e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(ImportError::Http(format!("flush: {}", resp.status())));
                }
                Ok(())
            }
        }
    }
}

fn default_dir() -> Result<PathBuf, ImportError> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".claude/projects"))
        .ok_or_else(|| ImportError::Invalid("no DIR given and HOME is not set".into()))
}

/// The transcript files under `dir` (sorted; subagent files with their agent), walked without
/// recursion on input depth (a bounded stack of directories, at most 4 levels).
pub fn transcript_files(dir: &Path) -> Result<Vec<(PathBuf, Option<claude_code::Subagent>)>, ImportError> {
    let read_err = |p: &Path, e: std::io::Error| ImportError::Read { path: p.to_path_buf(), message: e.to_string() };
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).map_err(|e| read_err(&d, e))?.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < 4 {
                stack.push((p, depth + 1));
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "jsonl") {
                let sub = (p.parent().and_then(Path::file_name).is_some_and(|n| n == "subagents"))
                    .then(|| {
                        let stem = p.file_stem()?.to_str()?;
                        let agent_id = stem.strip_prefix("agent-").unwrap_or(stem).to_string();
                        let meta = std::fs::read_to_string(p.with_extension("meta.json")).ok();
                        let agent_type = meta
                            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                            .and_then(|v| v.get("agentType")?.as_str().map(str::to_string));
                        Some(claude_code::Subagent { agent_id, agent_type })
                    })
                    .flatten();
                out.push((p, sub));
            }
        }
    }
    // Main sessions before subagents, each in name order.
    out.sort_by(|a, b| (a.1.is_some(), &a.0).cmp(&(b.1.is_some(), &b.0)));
    Ok(out)
}

struct Progress {
    on: bool,
    total: u64,
    last: Instant,
}

impl Progress {
    fn show(&mut self, done: u64, files: u64, events: u64, force: bool) {
        if !self.on || (!force && self.last.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last = Instant::now();
        let width = 30u64;
        let filled = (done.saturating_mul(width)).checked_div(self.total).unwrap_or(width).min(width);
        let bar: String = (0..width).map(|i| if i < filled { '#' } else { '-' }).collect();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{bar}] {:.1}/{:.1} MiB, {files} files, {events} events",
            done as f64 / 1048576.0,
            self.total as f64 / 1048576.0
        );
        if force {
            let _ = writeln!(err);
        }
    }
}

/// Read one line (up to `MAX_LINE` bytes; a longer one is skipped, reading on). None at the end.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long { None } else { Some(!too_long) });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take);
        if done {
            return Ok(Some(!too_long));
        }
    }
}

/// Import `args.dir` (or `~/.claude/projects`).
pub async fn claude_code(args: ClaudeCodeArgs) -> Result<Imported, ImportError> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => default_dir()?,
    };
    let files = transcript_files(&dir)?;
    let total: u64 = files.iter().filter_map(|(p, _)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let sink = Sink::open(&args.target)?;
    let mut progress = Progress { on: !args.quiet && std::io::stderr().is_terminal(), total, last: Instant::now() };
    let batch = args.batch.clamp(1, 10_000);
    let mut seen: HashSet<String> = HashSet::new();
    let mut done = Imported::default();
    let mut items = Vec::new();
    let mut ready = Vec::with_capacity(batch);
    let mut buf = Vec::new();
    for (path, sub) in &files {
        let f =
            std::fs::File::open(path).map_err(|e| ImportError::Read { path: path.clone(), message: e.to_string() })?;
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut reader = claude_code::FileReader::new(sub.clone());
        loop {
            let line = next_line(&mut r, &mut buf)
                .map_err(|e| ImportError::Read { path: path.clone(), message: e.to_string() })?;
            match line {
                None => break,
                Some(false) => reader.bad_lines += 1,
                Some(true) => reader.line(&String::from_utf8_lossy(&buf), &mut items),
            }
            done.bytes += buf.len() as u64;
            take_new(&mut items, &mut ready, &mut seen);
            if ready.len() >= batch {
                sink.send(&ready).await?;
                done.events += ready.len() as u64;
                ready.clear();
            }
            progress.show(done.bytes, done.files, done.events, false);
        }
        done.bad_lines += reader.bad_lines;
        reader.finish(&mut items);
        take_new(&mut items, &mut ready, &mut seen);
        done.files += 1;
    }
    sink.send(&ready).await?;
    done.events += ready.len() as u64;
    progress.show(total, done.files, done.events, true);
    sink.finish().await?;
    Ok(done)
}

fn take_new(items: &mut Vec<claude_code::Item>, ready: &mut Vec<claude_code::Item>, seen: &mut HashSet<String>) {
    for it in items.drain(..) {
        if seen.contains(&it.key) {
            continue;
        }
        if seen.len() < MAX_RUN_KEYS {
            seen.insert(it.key.clone());
        }
        ready.push(it);
    }
}

fn open_direct(data_dir: &Path) -> Result<Sink, ImportError> {
    let cfg = StoreConfig {
        data_dir: data_dir.to_path_buf(),
        log: crate::ingest_log::LogConfig::new(data_dir.join("log")),
        ..StoreConfig::default()
    };
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ImportError::Read { path: data_dir.to_path_buf(), message: e.to_string() })?;
    let pricing = crate::cost::pricing::Pricing::load(None, data_dir).map_err(|e| ImportError::Store(e.to_string()))?;
    let prices = pricing.current().map_err(|e| ImportError::Store(e.to_string()))?;
    let metrics = Arc::new(crate::telemetry::Metrics::default());
    let (store, writer) = Store::open(&cfg, prices, metrics.clone(), Vec::new())
        .map_err(|e| ImportError::Locked { path: data_dir.to_path_buf(), message: e.to_string() })?;
    let clock = store.clock().clone();
    let heavy = crate::receiver::heavy::HeavyPool::new(1, 0).map_err(|e| ImportError::Store(e.to_string()))?;
    let ingest = Ingest::new(store, metrics, clock, IngestLimits::default(), heavy);
    Ok(Sink::Direct { ingest, writer: Some(Box::new(writer)) })
}

/// `agent-console import ...`.
pub async fn run(args: ImportArgs) -> Result<Imported, ImportError> {
    match args.what {
        ImportWhat::ClaudeCode(a) => claude_code(a).await,
        ImportWhat::Openclaw(a) => openclaw::import(a).await,
    }
}
