//! Storage: the ingest log in front, embedded DuckDB behind. `Store` is the cheap, cloneable
//! handle the rest of the server uses:
//! - `append` makes one export durable in the ingest log (`crate::ingest_log`) and resolves then:
//!   that is the acknowledgement. The log thread hands the record to the pipeline
//!   (`crate::pipeline`: dedup, pricing, session state, live stream), which queues it for the
//!   single DuckDB writer thread (`writer`), which commits large transactions together with the
//!   log position. At start the writer's position says what to replay.
//! - `flush` waits until everything acknowledged before the call is queryable.
//! - `query` runs read-only SQL on a separate connection (`reader`).
//!
//! Schema lives in `schema` as numbered migrations; `arrow_rows` turns rows into Arrow batches
//! for the Appender.

pub mod arrow_rows;
pub mod bulk_insert;
pub mod evict;
pub mod fixups;
pub mod reader;
pub mod reattach;
pub mod recovery;
pub mod reprice;
pub mod rollup;
pub mod sandbox;
pub mod schema;
pub mod session_state;
pub mod sqlcompat;
pub mod stream;
pub mod vacuum_guard;
pub mod writeback;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::Connection;
use tokio::sync::{oneshot, watch};

use crate::cost::pricing::RepriceReport;
use crate::cost::PriceTable;
use crate::ingest_log::{self, Appended, IngestLog, LogConfig, LogError, LogHandle, LogState, Record};
use crate::model::records::Batch;
use crate::pipeline::{self, Input, PipelineSender};
use crate::telemetry::Metrics;
pub use reader::{QueryLimits, QueryResult};
use writer::{CommitHook, Msg, WriterConfig};

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
    /// The writer stopped for the in-process restart (after an invalidation or a failed
    /// streamed transaction): 503, ask again in a moment.
    #[error("the collector is restarting (its writer stopped); what was acknowledged is in the ingest log: ask again")]
    Restarting,
    #[error("query timed out after {0} ms")]
    Timeout(u64),
    /// The query was ended (or not started) so that DuckDB could checkpoint (`evict.rs`) or
    /// the writer could attach the database file again (`reattach.rs`).
    #[error("query cancelled: DuckDB had to checkpoint (or attach its file again) and this query held it up; retry")]
    Evicted,
    #[error("{0}")]
    Refused(String),
    #[error("query failed: {0}")]
    Query(String),
    /// A query API lookup of something that does not exist (a session id, ...).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Log(#[from] LogError),
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
    /// Rows per DuckDB row group, a multiple of 2,048 (`recovery::attach`).
    pub row_group_size: u64,
    /// Attach the file again once the row groups written since it was attached hold about this
    /// many bytes of DuckDB's heap (0 = never; `reattach.rs`).
    pub reattach_bytes: u64,
    /// The ingest log (its directory is `<data_dir>/log` unless set).
    pub log: LogConfig,
    /// Bytes of mapped rows the log may hand to the pipeline in memory; beyond it records are
    /// read back from the log.
    pub handoff_bytes: u64,
    /// Commit a DuckDB transaction at this many rows ...
    pub commit_max_rows: usize,
    /// ... or this much waiting ...
    pub commit_max_delay: Duration,
    /// ... or this many bytes of rows (`pipeline::batch_bytes`).
    pub commit_max_bytes: u64,
    /// Insert an open transaction's rows whenever this many bytes of them wait (0: at commit).
    pub commit_stream_bytes: u64,
    /// Commit the records through this log position whole (`ServeArgs::careful_through`).
    pub careful_through: Option<u64>,
    /// Checkpoint after this many log bytes were committed.
    pub checkpoint_bytes: u64,
    /// Paced write-back of the database file during checkpoints (`writeback.rs`), `None` = off.
    pub checkpoint_writeback: Option<Duration>,
    /// Bytes of processed batches waiting for the writer before the pipeline waits.
    pub writer_queue_bytes: u64,
    /// Session state timeouts (the pipeline runs the tracker).
    pub sessions: crate::sessions::TrackerConfig,
    /// Task linking (the pipeline's `tasks` stage).
    pub tasks: crate::tasks::TaskConfig,
    pub query: QueryLimits,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let data_dir = PathBuf::from("./agent-console-data");
        Self {
            log: LogConfig::new(data_dir.join("log")),
            data_dir,
            memory_limit: "2GB".into(),
            threads: 2,
            row_group_size: crate::config::DEFAULT_ROW_GROUP_SIZE,
            reattach_bytes: crate::config::DEFAULT_REATTACH_MIB << 20,
            handoff_bytes: crate::pipeline::HANDOFF_BYTES,
            commit_max_rows: 100_000,
            commit_max_delay: Duration::from_millis(250),
            commit_max_bytes: crate::config::DEFAULT_COMMIT_MAX_MIB << 20,
            commit_stream_bytes: crate::config::DEFAULT_COMMIT_STREAM_MIB << 20,
            careful_through: None,
            checkpoint_bytes: 256 << 20,
            checkpoint_writeback: Some(Duration::from_millis(10)),
            writer_queue_bytes: crate::pipeline::WRITER_QUEUE_BYTES,
            sessions: crate::sessions::TrackerConfig::default(),
            tasks: crate::tasks::TaskConfig::default(),
            query: QueryLimits::default(),
        }
    }
}

/// The writer's last commit, for `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Wall time (µs) of the last successful commit (0 = none yet).
    pub last_ok_us: AtomicI64,
    /// The last failure since the last success: (wall µs, message).
    pub last_error: Mutex<Option<(i64, String)>>,
}

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Health {
    fn ok(&self) {
        self.last_ok_us.store(wall_us(), Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, e: &StoreError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some((wall_us(), e.to_string()));
    }

    /// (last success µs, failing since µs and why).
    pub fn snapshot(&self) -> (i64, Option<(i64, String)>) {
        (self.last_ok_us.load(Ordering::Relaxed), self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// State the writer thread shares with the handles.
pub struct StoreShared {
    pub log: Option<Arc<LogState>>,
    /// The last log position committed to DuckDB.
    pub committed_pos: watch::Sender<u64>,
    /// `flush` asks the writer to commit through this position at once.
    pub flush_target: AtomicU64,
    pub health: Health,
    /// Test hook: fail this many commits (as a full disk would).
    #[doc(hidden)]
    pub fail_commits: AtomicU32,
    /// Test hook: fail this many commits the way a DuckDB that invalidated its database does.
    #[doc(hidden)]
    pub invalidate_commits: AtomicU32,
    /// Test hook: fail this many commits of transactions whose rows were streamed in.
    #[doc(hidden)]
    pub fail_streamed_commits: AtomicU32,
    /// The last log position of a streamed transaction that failed (0: none): the next start
    /// commits the records through it whole (`app::Running::restart_args`).
    pub careful_through: AtomicU64,
    /// Cancelled when DuckDB invalidated the database (a commit or checkpoint failed past
    /// repair): the writer stops, and the collector must be started again on the same directory
    /// (the binary does it in-process), which replays the ingest log since the last checkpoint.
    pub restart: tokio_util::sync::CancellationToken,
    /// Bytes of record batches queued for the writer and not received yet (`pipeline::Stages`).
    pub writer_queued: Arc<AtomicU64>,
    /// Open reader connections, which a refused checkpoint that must happen evicts.
    pub readers: Arc<evict::Readers>,
}

/// Handle to the store. Clone freely.
#[derive(Clone)]
pub struct Store {
    log: IngestLog<Batch>,
    /// Mapped rows handed to the pipeline or queued for the writer (and when that counts as
    /// behind, `behind`).
    budget: pipeline::Budget,
    to_writer: SyncSender<Msg>,
    pipeline: PipelineSender,
    pub shared: Arc<StoreShared>,
    pub reader: Arc<reader::Reader>,
    clock: crate::sessions::Clock,
}

/// Owns the threads; `join` after every `Store` clone is dropped drains them in order:
/// the log (last sync) -> the pipeline (everything durable) -> the writer (commit, checkpoint).
pub struct WriterHandle {
    log: Option<LogHandle>,
    pipeline: Option<std::thread::JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
    pipeline_tx: PipelineSender,
    writer_tx: SyncSender<Msg>,
}

impl WriterHandle {
    /// Stop in order even if `Store` clones are still alive somewhere (they then get `Closed`):
    /// the log syncs and stops, the pipeline takes everything durable, the writer commits and
    /// checkpoints. Blocking: call from a blocking context.
    pub fn join(mut self) {
        if let Some(l) = self.log.take() {
            l.join();
        }
        self.pipeline_tx.close_blocking();
        if let Some(t) = self.pipeline.take() {
            if t.join().is_err() {
                tracing::error!("pipeline thread panicked");
            }
        }
        let _ = self.writer_tx.send(Msg::Close);
        if let Some(t) = self.writer.take() {
            if t.join().is_err() {
                tracing::error!("writer thread panicked");
            }
        }
    }
}

/// The DuckDB writer's thread name.
pub const WRITER_THREAD: &str = "duckdb-writer";
/// The thread that builds the writer's Arrow columns ahead of it.
pub const PREP_THREAD: &str = "writer-prep";
/// The pipeline's thread (at the latency tier: live messages wait on it).
pub const PIPELINE_THREAD: &str = "pipeline";

/// Start one of the store's threads: the writer and its prep thread at the collector's own
/// priority, the pipeline at the latency tier, the rest at the background priority
/// (`priority.rs`: the writer, the one serial stage, runs first).
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let tier = match name {
        WRITER_THREAD | PREP_THREAD => None,
        PIPELINE_THREAD => Some(crate::priority::latency as fn()),
        _ => Some(crate::priority::background as fn()),
    };
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(lower) = tier {
                lower();
            }
            f()
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the {name} thread: {e}")))
}

impl Store {
    /// Open (or create) the database and the ingest log, migrate, start the threads.
    pub fn open(
        cfg: &StoreConfig,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        hooks: Vec<CommitHook>,
    ) -> Result<(Store, WriterHandle), StoreError> {
        Self::open_with_clock(cfg, prices, metrics, hooks, crate::sessions::system_clock())
    }

    /// `open`, with the clock session states are timed by (tests pass `sessions::tokio_clock`).
    pub fn open_with_clock(
        cfg: &StoreConfig,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        hooks: Vec<CommitHook>,
        clock: crate::sessions::Clock,
    ) -> Result<(Store, WriterHandle), StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join("agent-console.duckdb");
        let conn = recovery::open_database(&path, cfg)?;
        let version = schema::migrate(&conn)?;
        // Sandbox every connection of this database: no file, network or extension access from
        // SQL, and no setting can be changed afterwards (the read API is exposed to users).
        conn.execute_batch(
            "SET wal_autocheckpoint = '256MB';
             SET enable_external_access = false;
             SET lock_configuration = true;",
        )?;
        // Everything DuckDB holds now is checkpointed, so log segments before it may go. Like
        // every checkpoint, without merging row groups (`vacuum_guard.rs`).
        let guard = vacuum_guard::VacuumGuard::new(recovery::clone_connection(&conn)?);
        let held = guard.hold();
        conn.execute_batch("CHECKPOINT")?;
        drop(held);
        let committed: i64 = conn.query_row("SELECT position FROM ingest_log_state WHERE id = 1", [], |r| r.get(0))?;
        let committed = committed.max(0) as u64;
        tracing::info!(path = %path.display(), schema_version = version, log_position = committed, "store opened");
        let read_conn = recovery::clone_connection(&conn)?;

        // The session tracker starts from what DuckDB holds.
        let mut tracker = crate::sessions::Tracker::new(cfg.sessions);
        let recent = cfg.sessions.finish_after_us.saturating_mul(2);
        match session_state::load(&conn, &mut tracker, clock(), recent, cfg.sessions.max_sessions) {
            Ok(n) => tracing::info!(sessions = n, "session states restored"),
            Err(e) => tracing::warn!(error = %e, "cannot restore session states"),
        }
        // Hook calls of the last week already stored, so that a re-send is not stored twice
        // (`pipeline::hook_records`).
        const WEEK_US: i64 = 7 * 86_400 * 1_000_000;
        let hook_records = pipeline::hook_records::HookRecords::load(&conn, clock() - WEEK_US).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot restore hook record ids");
            Default::default()
        });
        // OpenClaw shim runs of the last week already counted (a re-send counts once).
        let openclaw_runs = pipeline::openclaw_runs::OpenclawRuns::load(&conn, clock() - WEEK_US).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot restore OpenClaw run ids");
            Default::default()
        });
        // Claude Code calls, tool calls and prompts already counted (a history import repeats them).
        let imports = pipeline::imports::Imports::load(&conn).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot restore imported keys");
            Default::default()
        });
        // Spans that started after the newest stored one (plus the lookup's skew) need no lookup of
        // stored descendants (`Inherit::over_store`); unknown: every span older than now does.
        let newest_span = fixups::newest_span_us(&conn).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the newest stored span");
            Some(i64::MAX)
        });
        if let Err(e) = reprice::publish_prices(&conn, &prices) {
            tracing::warn!(error = %e, "cannot publish the price table");
        }

        let budget = pipeline::Budget::new(cfg.handoff_bytes, cfg.writer_queue_bytes);
        let chans = pipeline::channels(budget.clone());
        let handoff = chans.handoff;
        // The log lives in the data directory, always next to the database it feeds.
        let log_cfg = LogConfig { dir: cfg.data_dir.join("log"), ..cfg.log.clone() };
        // On the log thread, after each record it hands over: it decides when the latency tier
        // yields to the writer (`priority::YieldWhileBehind`).
        let mut yielder = crate::priority::YieldWhileBehind::default();
        let (log, opened, log_handle) = IngestLog::open(
            &log_cfg,
            committed,
            Box::new(move |d| {
                handoff.forward(d);
                yielder.note(handoff.behind());
            }),
        )?;
        if opened.end_pos >= opened.start_pos {
            tracing::info!(
                from = opened.start_pos,
                to = opened.end_pos,
                bytes = opened.backlog_bytes,
                "ingest log: records to replay into DuckDB"
            );
        }
        let (committed_tx, _) = watch::channel(committed);
        let shared = Arc::new(StoreShared {
            log: Some(log.state.clone()),
            committed_pos: committed_tx,
            flush_target: AtomicU64::new(0),
            health: Health::default(),
            fail_commits: AtomicU32::new(0),
            invalidate_commits: AtomicU32::new(0),
            fail_streamed_commits: AtomicU32::new(0),
            careful_through: AtomicU64::new(0),
            restart: tokio_util::sync::CancellationToken::new(),
            writer_queued: budget.writer.clone(),
            readers: Arc::new(evict::Readers::new(metrics.clone())),
        });

        // Record batches (one export each, up to megabytes) waiting for the writer: when DuckDB
        // falls behind the pipeline waits here, and the records behind it wait in the log. Bounded
        // in count and in bytes (`--writer-queue-mib`): room for a commit or a
        // checkpoint's pause, so the pipeline (and the live stream it feeds) keeps moving.
        let (to_writer, writer_rx) = std::sync::mpsc::sync_channel(256);
        let wcfg = WriterConfig {
            max_txn_rows: cfg.commit_max_rows.max(1),
            max_txn_bytes: cfg.commit_max_bytes.max(1 << 20),
            max_txn_delay: cfg.commit_max_delay,
            stream_bytes: cfg.commit_stream_bytes,
            careful_through: cfg.careful_through,
            checkpoint_bytes: cfg.checkpoint_bytes,
            reattach: (cfg.reattach_bytes > 0)
                .then(|| reattach::Reattach::new(path.clone(), cfg.row_group_size, cfg.reattach_bytes)),
            log_dir: log_cfg.dir.clone(),
            writeback: cfg.checkpoint_writeback.map(|every| (path.clone(), every)),
            dropper: writer::Dropper::start("writer-drop", 1),
            chunk_dropper: writer::Dropper::start("stream-drop", 2),
        };
        let (wsh, wm) = (shared.clone(), metrics.clone());
        // The byte count starts at 0 at the first position to replay.
        // Between the queue and the writer, `writer-prep` builds each batch's Arrow columns
        // while the writer commits the transaction before (at the writer's priority: it is part
        // of the serial stage).
        let (prep_tx, prepared_rx) = std::sync::mpsc::sync_channel(writer::PREP_AHEAD);
        let prep_dropper = writer::Dropper::start("prep-drop", writer::PREP_DROP_WAITING);
        spawn(PREP_THREAD, move || writer::prep(writer_rx, prep_tx, prep_dropper))?;
        let writer =
            spawn(WRITER_THREAD, move || writer::run(conn, guard, prepared_rx, wcfg, wsh, wm, (committed, 0)))?;

        let stages = pipeline::Stages::new(prices, tracker, clock.clone(), hooks, to_writer.clone())
            .with_budget(budget.clone())
            .with_inherit(pipeline::inherit::Inherit::over_store(
                pipeline::inherit::DEFAULT_MAX_NODES,
                newest_span,
                fixups::SKEW_US,
            ))
            .with_hook_records(hook_records)
            .with_imports(imports)
            .with_openclaw_runs(openclaw_runs)
            .with_tasks(crate::tasks::link::Linker::new(match &cfg.tasks.link_pattern {
                Some(p) => {
                    Some(crate::tasks::link::Pattern::new(p).map_err(|e| StoreError::Unavailable(e.to_string()))?)
                }
                None => None,
            }));
        let cursor = log.cursor(opened.start_pos, 0, cfg.log.skip_damaged);
        let clock_handle = clock.clone();
        let (prx, inflight, lstate) = (chans.rx, chans.in_flight, log.state.clone());
        let pipeline_thread = spawn(PIPELINE_THREAD, move || pipeline::run(stages, prx, inflight, lstate, cursor))?;

        let readers = shared.readers.clone();
        let sender_for_close = chans.sender.clone();
        let writer_for_close = to_writer.clone();
        Ok((
            Store {
                log,
                budget,
                to_writer,
                pipeline: chans.sender,
                shared,
                reader: Arc::new(reader::Reader::new(read_conn, cfg.query.clone(), metrics, readers)),
                clock: clock_handle,
            },
            WriterHandle {
                log: Some(log_handle),
                pipeline: Some(pipeline_thread),
                writer: Some(writer),
                pipeline_tx: sender_for_close,
                writer_tx: writer_for_close,
            },
        ))
    }

    /// The collector clock session states are timed by (records carry it as their receive time).
    pub fn clock(&self) -> &crate::sessions::Clock {
        &self.clock
    }

    /// The pipeline is behind: the hand-off and the writer's queue together are within half a
    /// hand-off of their shared budget. A record acknowledged now would likely be dropped from the
    /// hand-off and mapped a second time when the pipeline reads it back from the log
    /// (`receiver::ingest` waits a little instead).
    pub fn behind(&self) -> bool {
        self.budget.behind()
    }

    /// Make one record durable (the acknowledgement); `batch` is what it maps to.
    pub async fn append(&self, record: Record, batch: Batch) -> Result<Appended, StoreError> {
        self.log.append(record, batch).await.map_err(|e| match e {
            LogError::Full { .. } | LogError::Busy => StoreError::Overloaded,
            other => StoreError::Log(other),
        })
    }

    /// Wait until everything acknowledged before this call is committed to DuckDB (queryable);
    /// `None` waits as long as it takes (tests under paused time have no timer to fire).
    pub async fn flush(&self, timeout: Option<Duration>) -> Result<u64, StoreError> {
        let target = self.log.state.durable_pos.load(Ordering::Acquire);
        let mut rx = self.shared.committed_pos.subscribe();
        if *rx.borrow() >= target {
            return Ok(target);
        }
        self.commit_through(target);
        // A writer stopped for the in-process restart commits nothing more: answer at once
        // (503, ask again) rather than hold the connection the restart's shutdown waits for.
        let restart = self.shared.restart.clone();
        let wait = async {
            tokio::select! {
                r = rx.wait_for(|c| *c >= target) => r.map(|_| ()).map_err(|_| StoreError::Closed),
                () = restart.cancelled() => Err(StoreError::Restarting),
            }
        };
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.map_err(|_| StoreError::Timeout(t.as_millis() as u64))?,
            None => wait.await,
        };
        waited.map(|()| target)
    }

    /// Ask the writer to commit as soon as it holds log position `pos`, without waiting for it
    /// (a blocking caller, the alerts seed, polls `committed_pos`); otherwise that waits for the
    /// commit delay. The nudge is dropped when the writer's queue is full: it is busy then.
    pub fn commit_through(&self, pos: u64) {
        self.shared.flush_target.fetch_max(pos, Ordering::AcqRel);
        let _ = self.to_writer.try_send(Msg::Flush);
    }

    /// Ask the writer to commit and checkpoint (dropped when its queue is full).
    pub fn checkpoint_when_idle(&self) {
        let _ = self.to_writer.try_send(Msg::Checkpoint);
    }

    /// Ask for time-driven session changes (idle, stuck, finished); skipped when busy.
    pub fn tick(&self) {
        self.pipeline.tick();
    }

    /// `tick`, waiting until its changes are published and committed.
    pub async fn tick_now(&self) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.pipeline.send(Input::Tick(Some(ack))).await?;
        done.await.map_err(|_| StoreError::Closed)?;
        self.sync_writer().await
    }

    /// Wait until the writer committed everything queued before this call.
    async fn sync_writer(&self) -> Result<(), StoreError> {
        self.apply(|_| Ok(())).await
    }

    /// Pause or resume a session's state (control plane), in order with the rows.
    pub async fn set_paused(&self, session_id: String, paused: bool, reason: String) -> Result<(), StoreError> {
        self.pipeline.send(Input::SetPaused { session_id, paused, reason }).await
    }

    /// Switch to `table` for new calls and re-price stored calls that have no reported cost.
    pub async fn reprice(&self, table: Arc<PriceTable>) -> Result<RepriceReport, StoreError> {
        let (ack, done) = oneshot::channel();
        self.pipeline.send(Input::Reprice(table, ack)).await?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on the writer thread inside its own transaction and return its result once it is
    /// committed and checkpointed, so on disk (rolled back when `f` fails; DuckDB writes no WAL,
    /// `recovery.rs`). For small state changes that are not telemetry: agent commands and their
    /// audit rows, tasks, alert rules. Pending rows are committed first.
    pub async fn apply<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_apply(f, Msg::Apply).await
    }

    /// `apply` ahead of the telemetry waiting for the next batch commit: for state that reads
    /// no telemetry (control commands, their audit rows and control state), so a command's
    /// latency is one small commit plus the checkpoint that makes it durable, never a large
    /// batch's commit (the checkpoint does write whatever telemetry is committed and not yet
    /// checkpointed: ~6 ms idle, up to ~2 s under full load, BENCHMARKS.md).
    pub async fn apply_now<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_apply(f, Msg::ApplyNow).await
    }

    /// Hand `f` to the writer as the message `msg` builds and wait for its committed result.
    async fn run_apply<T, F>(&self, f: F, msg: fn(writer::ApplyFn, writer::ApplyAck) -> Msg) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (ack, done) = oneshot::channel();
        let job: writer::ApplyFn = Box::new(move |conn| f(conn).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>));
        let tx = self.to_writer.clone();
        tokio::task::spawn_blocking(move || tx.send(msg(job, ack)).map_err(|_| StoreError::Closed))
            .await
            .map_err(|_| StoreError::Closed)??;
        let any = done.await.map_err(|_| StoreError::Closed)??;
        any.downcast::<T>().map(|b| *b).map_err(|_| StoreError::Unavailable("apply: result type mismatch".into()))
    }

    /// Bytes in the ingest log not yet committed to DuckDB (the backlog).
    pub fn queue_depth(&self) -> usize {
        self.log.state.pending_bytes() as usize
    }

    /// The ingest log's counters (for `/metrics`).
    pub fn log_state(&self) -> &Arc<LogState> {
        &self.log.state
    }

    /// Run read-only SQL (see `reader`).
    pub async fn query(&self, sql: String) -> Result<QueryResult, StoreError> {
        self.reader.query(sql).await
    }
}

/// Keep `ingest_log` reachable from here for callers that only import `store`.
pub use ingest_log::Record as LogRecord;
