//! Embedded DuckDB storage. `Store` is the cheap, cloneable handle the rest of the server uses:
//! `write` queues a mapped batch for the single writer thread (`writer`) and resolves once it is
//! committed; `query` runs read-only SQL on a separate connection (`reader`). Schema lives in
//! `schema` as numbered migrations; `arrow_rows` turns rows into Arrow batches for the Appender.

pub mod arrow_rows;
pub mod reader;
pub mod reprice;
pub mod rollup;
pub mod schema;
pub mod session_state;
pub mod sqlcompat;
pub mod stream;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use duckdb::{Config, Connection};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cost::pricing::RepriceReport;
use crate::cost::PriceTable;
use crate::model::records::Batch;
use crate::telemetry::Metrics;
pub use reader::{QueryLimits, QueryResult};
use writer::{CommitHook, Msg, WriteRequest, WriterConfig};

/// Storage errors. Cloneable: one commit result acknowledges several requests.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("arrow conversion failed: {0}")]
    Arrow(String),
    #[error("schema migration {version} failed: {message}")]
    Migration { version: i32, message: String },
    #[error("write queue is full, retry later")]
    Overloaded,
    #[error("store is shutting down")]
    Closed,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("query timed out after {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Refused(String),
    #[error("query failed: {0}")]
    Query(String),
    /// A query API lookup of something that does not exist (a session id, ...).
    #[error("{0}")]
    NotFound(String),
}

impl From<duckdb::Error> for StoreError {
    fn from(e: duckdb::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

impl From<duckdb::arrow::error::ArrowError> for StoreError {
    fn from(e: duckdb::arrow::error::ArrowError) -> Self {
        StoreError::Arrow(e.to_string())
    }
}

/// Storage settings (filled from `config::Config`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// DuckDB `memory_limit`, e.g. "2GB".
    pub memory_limit: String,
    pub threads: i64,
    /// Requests waiting for the writer.
    pub queue_capacity: usize,
    /// Decoded bytes in flight (queued + being written) before ingest answers "overloaded".
    pub max_inflight_bytes: usize,
    /// How long an export may wait for room before it is refused.
    pub queue_wait: Duration,
    pub max_batch_rows: usize,
    /// Session state timeouts (the writer runs the tracker).
    pub sessions: crate::sessions::TrackerConfig,
    pub query: QueryLimits,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./agent-console-data"),
            memory_limit: "2GB".into(),
            threads: 2,
            queue_capacity: 1024,
            max_inflight_bytes: 128 * 1024 * 1024,
            queue_wait: Duration::from_millis(500),
            max_batch_rows: 65_536,
            sessions: crate::sessions::TrackerConfig::default(),
            query: QueryLimits::default(),
        }
    }
}

/// Handle to the store. Clone freely.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    budget_total_kib: u32,
    queue_wait: Duration,
    pub reader: Arc<reader::Reader>,
}

/// Owns the writer thread; `shutdown` drains it.
pub struct WriterHandle {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriterHandle {
    /// Wait for the writer to drain and checkpoint (call after every `Store` clone is dropped).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("writer thread panicked");
            }
        }
    }
}

impl Store {
    /// Open (or create) the database, migrate it, start the writer thread.
    pub fn open(
        cfg: &StoreConfig,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        on_commit: Vec<CommitHook>,
    ) -> Result<(Store, WriterHandle), StoreError> {
        Self::open_with_clock(cfg, prices, metrics, on_commit, crate::sessions::system_clock())
    }

    /// `open`, with the clock session states are timed by (tests pass `sessions::tokio_clock`).
    pub fn open_with_clock(
        cfg: &StoreConfig,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        on_commit: Vec<CommitHook>,
        clock: crate::sessions::Clock,
    ) -> Result<(Store, WriterHandle), StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join("agent-console.duckdb");
        let config =
            Config::default().max_memory(&cfg.memory_limit)?.threads(cfg.threads)?.enable_autoload_extension(false)?;
        let conn = Connection::open_with_flags(&path, config)?;
        let version = schema::migrate(&conn)?;
        // Sandbox every connection of this database: no file, network or extension access from
        // SQL, and no setting can be changed afterwards (the read API is exposed to users).
        conn.execute_batch(
            "SET wal_autocheckpoint = '256MB';
             SET enable_external_access = false;
             SET lock_configuration = true;",
        )?;
        tracing::info!(path = %path.display(), schema_version = version, "store opened");
        let read_conn = conn.try_clone()?;
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let wcfg = WriterConfig { max_batch_rows: cfg.max_batch_rows, prices, sessions: cfg.sessions, clock };
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("duckdb-writer".into())
            .spawn(move || writer::run(conn, rx, wcfg, m, on_commit))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        let budget_total_kib = u32::try_from((cfg.max_inflight_bytes / 1024).max(1)).unwrap_or(u32::MAX);
        Ok((
            Store {
                tx,
                budget: Arc::new(Semaphore::new(budget_total_kib as usize)),
                budget_total_kib,
                queue_wait: cfg.queue_wait,
                reader: Arc::new(reader::Reader::new(read_conn, cfg.query.clone(), metrics)),
            },
            WriterHandle { thread: Some(thread) },
        ))
    }

    /// Queue `batch` (whose decoded request was `size_bytes`) and wait until it is committed.
    /// Refuses with `Overloaded` when the in-flight budget stays full for `queue_wait`.
    pub async fn write(&self, batch: Batch, size_bytes: usize) -> Result<(), StoreError> {
        let kib = u32::try_from(size_bytes / 1024 + 1).unwrap_or(u32::MAX).min(self.budget_total_kib);
        let permit = match tokio::time::timeout(self.queue_wait, self.budget.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => return Err(StoreError::Overloaded),
        };
        let (ack, done) = oneshot::channel();
        let req = WriteRequest { batch, ack, permit: Some(permit) };
        match tokio::time::timeout(self.queue_wait, self.tx.send(Msg::Write(req))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::Closed),
            Err(_) => return Err(StoreError::Overloaded),
        }
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Ask the writer to checkpoint when it is idle (dropped when the queue is full).
    pub fn checkpoint_when_idle(&self) {
        let _ = self.tx.try_send(Msg::Checkpoint);
    }

    /// Ask the writer to apply time-driven session changes (idle, stuck, finished); skipped when
    /// anything is queued (the writer is busy and applies them after its next commit).
    pub fn tick(&self) {
        // Only into an empty queue: a tick must never take the room an export needs (a busy
        // writer runs the same check after every commit anyway).
        if self.tx.capacity() == self.tx.max_capacity() {
            let _ = self.tx.try_send(Msg::Tick(None));
        }
    }

    /// `tick`, waiting until the changes are committed and published.
    pub async fn tick_now(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Tick(Some(ack))).await.map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)
    }

    /// Switch the writer to `table` and re-price stored calls that have no reported cost.
    pub async fn reprice(&self, table: Arc<PriceTable>) -> Result<RepriceReport, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Reprice(table, ack)).await.map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on the writer thread inside its own transaction and return its result once it is
    /// committed (rolled back when `f` fails). For small state changes that are not telemetry:
    /// agent commands and their audit rows, tasks, alert rules. Never blocks ingest for long: it
    /// is one queued message, like an export.
    pub async fn apply<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (ack, done) = oneshot::channel();
        let job: writer::ApplyFn = Box::new(move |conn| f(conn).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>));
        self.tx.send(Msg::Apply(job, ack)).await.map_err(|_| StoreError::Closed)?;
        let any = done.await.map_err(|_| StoreError::Closed)??;
        any.downcast::<T>().map(|b| *b).map_err(|_| StoreError::Unavailable("apply: result type mismatch".into()))
    }

    /// Control: pause (`true`) or resume `session_id` in the session tracker, stored and streamed
    /// like any state change. Resolves to whether the session's state changed.
    pub async fn set_paused(&self, session_id: String, paused: bool, reason: String) -> Result<bool, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::SetPaused(session_id, paused, reason, ack)).await.map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)
    }

    /// Requests waiting for the writer right now.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Run read-only SQL (see `reader`).
    pub async fn query(&self, sql: String) -> Result<QueryResult, StoreError> {
        self.reader.query(sql).await
    }
}
