//! The ingest log: where an export becomes durable. Every accepted export (one OTLP request, or
//! one hook call) is one record appended to segment files under `<data-dir>/log/`; it is
//! acknowledged once the log has synced it. DuckDB is a consumer of the log: the pipeline takes
//! records in order, the DuckDB writer commits them in large transactions and records the last
//! committed position in the same transaction, and on start everything after that position is
//! replayed. Segments are deleted once a DuckDB checkpoint covers them.
//!
//! - `record`: what a record holds (the export's protobuf bytes + receive time) and why.
//! - `segment`: the file format (framing, CRC32C, preallocation, damage detection).
//! - `appender`: the one log-writer thread (group commit: one write + one fdatasync for
//!   everything that arrived while the previous sync ran).
//! - `cursor`: reads records back in order (replay, and catch-up when the in-memory hand-off
//!   to the pipeline overflowed).
//! - `recover`: opening: finds the tail, truncates a torn last record, refuses (or skips, when
//!   told) damage in the middle.

pub mod appender;
pub mod cursor;
pub mod record;
pub mod recover;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use appender::Appended;
pub use cursor::Cursor;
pub use record::{Part, PartKind, Record};

/// Errors of the ingest log. Cloneable: one sync acknowledges (or fails) a whole group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("ingest log I/O on {path}: {message}")]
    Io { path: String, message: String },
    #[error("ingest log segment {segment} is damaged at byte {offset}{}: {why}", position.map(|p| format!(" (position {p})")).unwrap_or_default())]
    Damaged { segment: String, position: Option<u64>, offset: u64, why: String },
    #[error("ingest log record is malformed: {0}")]
    BadRecord(String),
    #[error("ingest log holds {pending} bytes not yet in DuckDB (limit {limit}): retry later")]
    Full { pending: u64, limit: u64 },
    #[error("ingest log append queue is full: retry later")]
    Busy,
    #[error("ingest log is closed")]
    Closed,
    #[error("ingest log stopped accepting writes after a failed write: {0}")]
    Broken(String),
}

impl LogError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        LogError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}

/// Settings (from `config::ServeArgs`).
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// Preallocated size of a segment file (at least 4x the largest record).
    pub segment_bytes: u64,
    /// Bytes appended but not yet committed to DuckDB before appends are refused.
    pub max_pending_bytes: u64,
    /// Most bytes written by one group commit.
    pub max_group_bytes: usize,
    /// Appends waiting for the log thread.
    pub queue_capacity: usize,
    /// How long an append may wait for queue room.
    pub queue_wait: Duration,
    /// Start even when a record in the middle of the log is damaged, skipping it (lost).
    pub skip_damaged: bool,
}

impl LogConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            segment_bytes: 128 << 20,
            max_pending_bytes: 1 << 30,
            max_group_bytes: 16 << 20,
            queue_capacity: 4096,
            queue_wait: Duration::from_millis(500),
            skip_damaged: false,
        }
    }
}

/// Counters shared by the log thread, the appenders, the consumers and `/metrics`.
#[derive(Debug, Default)]
pub struct LogState {
    /// Last position synced (acknowledged).
    pub durable_pos: AtomicU64,
    /// Log bytes appended since the count started (this run's first un-committed position).
    pub appended_bytes: AtomicU64,
    /// Log bytes through the last position committed to DuckDB (same count).
    pub committed_bytes: AtomicU64,
    /// Last position committed to DuckDB.
    pub committed_pos: AtomicU64,
    /// Last position covered by a DuckDB checkpoint: segments up to it may go.
    pub checkpointed_pos: AtomicU64,
    /// Records replayed from disk at start.
    pub replayed: AtomicU64,
    pub syncs: AtomicU64,
    pub synced_records: AtomicU64,
    pub sync_us_sum: AtomicU64,
    /// Sync latency histogram, buckets `SYNC_BUCKETS_MS` (+Inf last).
    pub sync_buckets: [AtomicU64; 11],
    pub segments: AtomicU64,
    /// The configured cap on `pending_bytes` (appends are refused beyond it).
    pub max_pending_bytes: AtomicU64,
    /// Test hook: fail this many group writes (as a full disk would).
    #[doc(hidden)]
    pub fail_appends: std::sync::atomic::AtomicU32,
    broken: Mutex<Option<String>>,
    /// (last position of a group, wall µs it became durable), for the lag in seconds.
    durable_times: Mutex<std::collections::VecDeque<(u64, i64)>>,
}

pub const SYNC_BUCKETS_MS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0, 1000.0];

impl LogState {
    /// Is the log refusing appends because DuckDB is too far behind?
    pub fn refusing(&self) -> bool {
        self.pending_bytes() > self.max_pending_bytes.load(Ordering::Acquire)
    }

    pub fn pending_bytes(&self) -> u64 {
        self.appended_bytes.load(Ordering::Acquire).saturating_sub(self.committed_bytes.load(Ordering::Acquire))
    }

    /// Called by the DuckDB writer after a commit through `pos` (ending at `end_bytes`).
    pub fn committed(&self, pos: u64, end_bytes: u64) {
        self.committed_pos.fetch_max(pos, Ordering::AcqRel);
        self.committed_bytes.fetch_max(end_bytes, Ordering::AcqRel);
    }

    /// Called by the DuckDB writer after a checkpoint that covers everything through `pos`.
    pub fn checkpointed(&self, pos: u64) {
        self.checkpointed_pos.fetch_max(pos, Ordering::AcqRel);
    }

    fn observe_sync(&self, d: Duration, records: u64) {
        let us = d.as_micros() as u64;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced_records.fetch_add(records, Ordering::Relaxed);
        self.sync_us_sum.fetch_add(us, Ordering::Relaxed);
        let ms = us as f64 / 1000.0;
        let i = SYNC_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(SYNC_BUCKETS_MS.len());
        self.sync_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_broken(&self, why: String) {
        *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// One record made durable, handed to the consumer (the pipeline) in position order. `item` is
/// what the appender passed along (the mapped rows), `None` when the hand-off was full: the
/// consumer then reads the record back from disk.
pub struct Durable<T> {
    pub pos: u64,
    /// The log byte count after this record (for `LogState::committed`).
    pub end_bytes: u64,
    pub received_us: i64,
    pub item: Option<T>,
}

/// Handle to append records. Clone freely.
pub struct IngestLog<T> {
    tx: mpsc::Sender<appender::LogMsg<T>>,
    pub state: Arc<LogState>,
    max_pending: u64,
    queue_wait: Duration,
    pub dir: PathBuf,
}

impl<T> Clone for IngestLog<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            state: self.state.clone(),
            max_pending: self.max_pending,
            queue_wait: self.queue_wait,
            dir: self.dir.clone(),
        }
    }
}

/// What opening found: where consumers start and how much is waiting for them.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The first position the consumer needs (after what DuckDB holds).
    pub start_pos: u64,
    /// The last durable position (start_pos - 1 when nothing is waiting).
    pub end_pos: u64,
    /// Bytes of the records waiting to be replayed.
    pub backlog_bytes: u64,
    /// Records skipped as damaged (`skip_damaged`).
    pub skipped: Vec<u64>,
    /// A torn tail was truncated at this (segment, offset).
    pub truncated: Option<(String, u64)>,
}

/// Owns the log thread; `join` syncs and stops it (appends after that are refused as closed).
pub struct LogHandle {
    thread: Option<std::thread::JoinHandle<()>>,
    close: Box<dyn Fn() + Send>,
}

impl LogHandle {
    /// Call from a blocking context (not inside an async task).
    pub fn join(mut self) {
        (self.close)();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("ingest log thread panicked");
            }
        }
    }
}

impl<T: Send + 'static> IngestLog<T> {
    /// Open (or create) the log in `cfg.dir`. `committed_pos` is the last position DuckDB holds
    /// (0 for a new store); records after it are replayed by the consumer through a `Cursor`.
    /// `forward` receives every record appended from now on, in order, once it is durable.
    pub fn open(
        cfg: &LogConfig,
        committed_pos: u64,
        forward: Box<dyn FnMut(Durable<T>) + Send>,
    ) -> Result<(Self, Opened, LogHandle), LogError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| LogError::io(&cfg.dir, e))?;
        let (tail, opened) = recover::open(cfg, committed_pos)?;
        let state = Arc::new(LogState::default());
        state.durable_pos.store(opened.end_pos, Ordering::Release);
        state.committed_pos.store(committed_pos, Ordering::Release);
        state.checkpointed_pos.store(committed_pos, Ordering::Release);
        state.appended_bytes.store(opened.backlog_bytes, Ordering::Release);
        state.max_pending_bytes.store(cfg.max_pending_bytes, Ordering::Release);
        let (tx, rx) = mpsc::channel::<appender::LogMsg<T>>(cfg.queue_capacity.max(1));
        let close_tx = tx.clone();
        let close = Box::new(move || {
            let _ = close_tx.blocking_send(appender::LogMsg::Close);
        });
        let st = state.clone();
        let acfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("ingest-log".into())
            .spawn(move || {
                crate::priority::latency();
                appender::run(acfg, tail, rx, st, forward)
            })
            .map_err(|e| LogError::io(&cfg.dir, e))?;
        Ok((
            Self { tx, state, max_pending: cfg.max_pending_bytes, queue_wait: cfg.queue_wait, dir: cfg.dir.clone() },
            opened,
            LogHandle { thread: Some(thread), close },
        ))
    }

    /// Append `record`; resolves once it is durable. `item` travels to the consumer with it.
    pub async fn append(&self, record: Record, item: T) -> Result<Appended, LogError> {
        if let Some(why) = self.state.broken() {
            return Err(LogError::Broken(why));
        }
        let pending = self.state.pending_bytes();
        if pending > self.max_pending {
            return Err(LogError::Full { pending, limit: self.max_pending });
        }
        let (ack, done) = oneshot::channel();
        let req = appender::AppendReq { record, item, ack };
        match tokio::time::timeout(self.queue_wait, self.tx.send(appender::LogMsg::Append(req))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(LogError::Closed),
            Err(_) => return Err(LogError::Busy),
        }
        done.await.map_err(|_| LogError::Closed)?
    }

    /// A reader positioned at `pos` (for replay and catch-up).
    pub fn cursor(&self, pos: u64, start_bytes: u64, skip_damaged: bool) -> Cursor {
        Cursor::new(self.dir.clone(), pos, start_bytes, skip_damaged)
    }
}

impl LogState {
    /// Note when a group ending at `pos` became durable (for the lag in seconds).
    fn note_durable(&self, pos: u64, wall_us: i64) {
        let mut t = self.durable_times.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= 100_000 {
            t.pop_front();
        }
        t.push_back((pos, wall_us));
    }

    /// Seconds since the oldest record not yet in DuckDB became durable (0 when none).
    pub fn lag_seconds(&self, now_us: i64) -> f64 {
        let committed = self.committed_pos.load(Ordering::Acquire);
        let mut t = self.durable_times.lock().unwrap_or_else(|p| p.into_inner());
        // A group's entry covers positions up to its `pos`: drop groups wholly committed.
        while t.front().is_some_and(|(p, _)| *p <= committed) {
            t.pop_front();
        }
        t.front().map_or(0.0, |(_, w)| (now_us - w).max(0) as f64 / 1e6)
    }

    /// Prometheus text for the log's counters.
    pub fn render(&self, o: &mut String) {
        use std::fmt::Write as _;
        let durable = self.durable_pos.load(Ordering::Acquire);
        let committed = self.committed_pos.load(Ordering::Acquire);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let gauge = |o: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(o, "# HELP agent_console_ingest_log_{name} {help}");
            let _ = writeln!(o, "# TYPE agent_console_ingest_log_{name} gauge");
            let _ = writeln!(o, "agent_console_ingest_log_{name} {v}");
        };
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP agent_console_ingest_log_{name} {help}");
            let _ = writeln!(o, "# TYPE agent_console_ingest_log_{name} counter");
            let _ = writeln!(o, "agent_console_ingest_log_{name} {v}");
        };
        gauge(o, "durable_position", "Last log position synced (acknowledged).", durable as f64);
        gauge(o, "committed_position", "Last log position committed to DuckDB.", committed as f64);
        gauge(
            o,
            "checkpointed_position",
            "Last log position in DuckDB's file (a restart replays the records after it).",
            self.checkpointed_pos.load(Ordering::Acquire) as f64,
        );
        gauge(
            o,
            "pending_records",
            "Records acknowledged but not yet in DuckDB.",
            durable.saturating_sub(committed) as f64,
        );
        gauge(o, "pending_bytes", "Log bytes acknowledged but not yet in DuckDB.", self.pending_bytes() as f64);
        gauge(o, "duckdb_lag_seconds", "Age of the oldest record not yet in DuckDB.", self.lag_seconds(now));
        gauge(o, "segments", "Segment files on disk.", self.segments.load(Ordering::Relaxed) as f64);
        counter(
            o,
            "replayed_records_total",
            "Records read back from the log (replay at start, catch-up).",
            self.replayed.load(Ordering::Relaxed),
        );
        let syncs = self.syncs.load(Ordering::Relaxed);
        let records = self.synced_records.load(Ordering::Relaxed);
        counter(o, "synced_records_total", "Records made durable.", records);
        gauge(
            o,
            "group_size_mean",
            "Records per group commit (mean since start).",
            if syncs == 0 { 0.0 } else { records as f64 / syncs as f64 },
        );
        let _ = writeln!(o, "# HELP agent_console_ingest_log_sync_seconds Group write + fdatasync latency.");
        let _ = writeln!(o, "# TYPE agent_console_ingest_log_sync_seconds histogram");
        let mut cum = 0;
        for (i, b) in SYNC_BUCKETS_MS.iter().enumerate() {
            cum += self.sync_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "agent_console_ingest_log_sync_seconds_bucket{{le=\"{}\"}} {cum}", b / 1e3);
        }
        let _ = writeln!(o, "agent_console_ingest_log_sync_seconds_bucket{{le=\"+Inf\"}} {syncs}");
        let _ = writeln!(
            o,
            "agent_console_ingest_log_sync_seconds_sum {}",
            self.sync_us_sum.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "agent_console_ingest_log_sync_seconds_count {syncs}");
    }
}
