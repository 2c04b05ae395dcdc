//! `agent-console-openclaw`: polls an OpenClaw gateway (WebSocket, protocol 4) and sends session
//! status changes and one model-call record per model call served to agent-console as OTLP/HTTP
//! logs, and delivers the console's commands for the gateway's sessions.
//! - `runs`: the pure counting ledger (what to emit, what was counted), persisted as state.
//! - `gateway`: the WebSocket session (challenge, connect, subscribe, poll, `session.message`,
//!   `sessions.usage` reconcile, control calls).
//! - `control`: the long-poll to the collector's inbox and the command -> gateway call rules.
//! - `otlp` + `http`: records -> protobuf -> one POST.

pub mod control;
pub mod gateway;
pub mod http;
pub mod otlp;
pub mod runs;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runs::{Ledger, SessionRow, DEFAULT_CAP};

/// Records per POST.
const MAX_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: String,
    pub token: Option<String>,
    pub interval: Duration,
    pub state_path: PathBuf,
    pub endpoint: String,
    pub collector_token: Option<String>,
    pub task_id: Option<String>,
    pub post_timeout: Duration,
    /// This gateway's name towards the collector (default: the gateway URL).
    pub gateway_id: String,
    /// Receive and deliver the console's commands (`--no-control` turns it off).
    pub control: bool,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Default state file: `$XDG_CACHE_HOME` or `~/.cache`, then `agent-console/openclaw-state.json`.
pub fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("agent-console").join("openclaw-state.json")
}

/// The ledger, its state file and the collector endpoint.
pub struct Shim {
    pub cfg: Config,
    pub ledger: Ledger,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    reported_drops: u64,
}

impl Shim {
    /// Load the state file (missing: fresh; unreadable: moved aside with a warning, fresh).
    pub fn load(cfg: Config) -> Self {
        let ledger = match fs::read_to_string(&cfg.state_path) {
            Ok(text) => match Ledger::from_json(&text, DEFAULT_CAP) {
                Ok(l) => l,
                Err(e) => {
                    let aside = cfg.state_path.with_extension("corrupt");
                    let _ = fs::rename(&cfg.state_path, &aside);
                    eprintln!("agent-console-openclaw: state file unreadable ({e}); moved to {}", aside.display());
                    Ledger::default()
                }
            },
            Err(_) => Ledger::default(),
        };
        Self { cfg, ledger, retry_at: None, last_error: None, reported_drops: 0 }
    }

    /// Write the state atomically (temp file, fsync, rename).
    pub fn save(&self) -> std::io::Result<()> {
        write_atomic(&self.cfg.state_path, self.ledger.to_json()?.as_bytes())
    }

    fn save_logged(&self) {
        if let Err(e) = self.save() {
            eprintln!("agent-console-openclaw: cannot write state {}: {e}", self.cfg.state_path.display());
        }
    }

    /// Queue what a row reports; persist and send when something was queued.
    pub fn observe(&mut self, row: &SessionRow, ended_run: Option<&str>) {
        if self.ledger.observe(row, ended_run, now_ms()) > 0 {
            self.save_logged();
            self.flush(false);
        }
    }

    /// Queue the model call a `session.message` event reports.
    pub fn message(&mut self, payload: &serde_json::Value) {
        if self.ledger.message(payload, now_ms()) > 0 {
            self.save_logged();
            self.flush(false);
        }
    }

    /// Queue the difference between the gateway's `sessions.usage` and what was counted.
    pub fn reconcile(&mut self, usage: &[(String, runs::Usage)]) -> usize {
        let n = self.ledger.reconcile(usage, now_ms());
        if n > 0 {
            self.save_logged();
            self.flush(false);
        }
        n
    }

    /// Send pending records. After a failure, waits for the next poll unless `force`.
    pub fn flush(&mut self, force: bool) {
        if self.ledger.dropped > self.reported_drops {
            eprintln!("agent-console-openclaw: pending queue full, {} records dropped", self.ledger.dropped);
            self.reported_drops = self.ledger.dropped;
        }
        if !force && self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        while self.ledger.pending_len() > 0 {
            let n = self.ledger.pending_len().min(MAX_BATCH);
            let body = otlp::encode(self.ledger.pending().take(n), self.cfg.task_id.as_deref(), now_ns());
            match http::post_logs(&self.cfg.endpoint, self.cfg.collector_token.as_deref(), &body, self.cfg.post_timeout)
            {
                Ok(()) => {
                    self.ledger.acked(n);
                    self.save_logged();
                    if self.last_error.take().is_some() {
                        eprintln!("agent-console-openclaw: collector reachable again");
                    }
                    self.retry_at = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.last_error.as_deref() != Some(msg.as_str()) {
                        eprintln!(
                            "agent-console-openclaw: cannot send to {} ({msg}); {} records kept pending",
                            self.cfg.endpoint,
                            self.ledger.pending_len()
                        );
                    }
                    self.last_error = Some(msg);
                    self.retry_at = Some(Instant::now() + self.cfg.interval.min(Duration::from_secs(5)));
                    return;
                }
            }
        }
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The rename is durable only once the directory entry is: fsync the directory too (a crash
    // right after the rename could otherwise leave the old state, or none).
    sync_dir(path)
}

/// fsync the directory holding `path` (where the platform can open a directory).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    #[cfg(unix)]
    {
        fs::File::open(&dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
