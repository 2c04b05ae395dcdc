//! The one DuckDB writer: an OS thread that owns the write connection (bulk rows go in through
//! `bulk_insert.rs`, staging rows through Appenders). It takes processed batches from the
//! pipeline (already durable in the ingest log, deduplicated, priced, with their session changes)
//! and commits them in large transactions, bounded by rows, bytes and time (`--commit-max-rows`,
//! `--commit-max-delay-ms`), writing the last log position in the same transaction
//! (`ingest_log_state`), so a restart replays exactly what is missing. Under load a transaction's
//! rows go into it in chunks as they arrive (`--commit-stream-mib`, `Writer::stream`), their
//! columns freed, rather than all at its commit.
//!
//! A transaction that fails is retried record by record: a record whose own rows DuckDB refuses
//! as data (a conversion, range or constraint error, which no retry can fix) is quarantined with
//! its raw bytes (`quarantine` table) so it cannot block the records after it; any other failure
//! (a full disk, I/O) is retried with backoff, holding the position until it passes. A
//! transaction some of whose rows were streamed in is no longer in memory to retry: its failure
//! restarts the collector in-process, which replays the ingest log and commits those records
//! whole (`Writer::replay_streamed`). Everything here was acknowledged already; nothing is
//! dropped silently.
//!
//! Besides batches it runs state changes in their own transaction (`Store::apply`), re-pricing,
//! and checkpoints (after which the log may delete the segments a checkpoint covers).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Appender, Connection};
use tokio::sync::oneshot;

use super::bulk_insert::BulkInsert;
use super::{arrow_rows, fixups, reprice, rollup, session_state, StoreError, StoreShared};
use crate::cost::pricing::RepriceReport;
use crate::cost::PriceTable;
use crate::model::fastmap::FastMap;
use crate::model::records::{Batch, LogRow, ModelCallRow, PointRow, Seen, SessionUpdate, SpanRow, ToolCallRow};
use crate::telemetry::Metrics;

/// A queued batch with its ingest log span (first, last position), `None` for batches that
/// did not come from the log, and its bulk rows as Arrow columns when `prep` built them.
type Item = (Option<(u64, u64)>, Arc<Batch>, Option<Box<Columns>>);

/// One batch's bulk rows as Arrow record batches, built on the `writer-prep` thread while the
/// writer appends and commits the transaction before (`prep`): building them was ~8% of the
/// writer's time, and the writer is the one serial stage.
#[derive(Default)]
pub struct Columns {
    spans: Option<RecordBatch>,
    logs: Option<RecordBatch>,
    points: Option<RecordBatch>,
    model_calls: Option<RecordBatch>,
    tool_calls: Option<RecordBatch>,
    /// The batch's model calls summed for the cost rollup (also built ahead: the writer merges
    /// a few hundred sums per batch instead of hashing every call, and the calls can go).
    sums: rollup::Rollup,
    /// The batch's rows and bytes as the pipeline counted them when it queued the batch (`prep`
    /// may free the rows the columns stand for before the writer takes the batch).
    rows: usize,
    bytes: u64,
    /// Where the columns were built, to be freed there (`local_free`).
    origin: crate::local_free::Origin,
}

/// Where the first of `items`' columns were built (`prep` builds them all).
fn origin_of(items: &[Item]) -> crate::local_free::Origin {
    items.iter().find_map(|(_, _, c)| c.as_ref().map(|c| c.origin)).unwrap_or_default()
}

/// A batch's rows as the writer counts them (transaction size, metrics).
fn batch_rows(b: &Batch) -> usize {
    b.row_count() + b.session_updates.len()
}

/// Rows and bytes of a queued batch, whether or not `prep` freed the rows its columns hold.
fn counted(batch: &Batch, columns: &Option<Box<Columns>>) -> (usize, u64) {
    match columns {
        Some(c) => (c.rows, c.bytes),
        None => (batch_rows(batch), crate::pipeline::batch_bytes(batch)),
    }
}

/// The bulk tables, in the order `Columns::tables` gives their rows.
const BULK_TABLES: [&str; 5] = ["spans", "logs", "metric_points", "model_calls", "tool_calls"];

/// Per bulk table (`BULK_TABLES` order), the record batches to insert.
type TableRows = [Vec<RecordBatch>; 5];

/// Add `c`'s record batches to `rows` (shared buffers, not copies).
fn gather(rows: &mut TableRows, c: &Columns) {
    for (rows, t) in rows.iter_mut().zip(c.tables()) {
        rows.extend(t.cloned());
    }
}

/// One `INSERT` per bulk table that has rows (`bulk_insert.rs`), in the caller's transaction.
fn insert_rows(conn: &Connection, bulk: &BulkInsert, rows: TableRows) -> Result<(), StoreError> {
    for (table, rows) in BULK_TABLES.iter().zip(rows) {
        bulk.insert(conn, table, rows)?;
    }
    Ok(())
}

/// What the `fail_commits` test hook fails with (a full disk's kind of error).
const INJECTED: &str = "IO Error: injected commit failure (test)";

/// Take one from a test hook's failure count (`StoreShared::fail_commits` and co).
fn take_one(n: &std::sync::atomic::AtomicU32) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
}

impl Columns {
    /// The bulk tables' record batches (`BULK_TABLES` order), `None` for a table without rows
    /// (or whose rows were inserted already, `Writer::stream`).
    fn tables(&self) -> [Option<&RecordBatch>; 5] {
        [
            self.spans.as_ref(),
            self.logs.as_ref(),
            self.points.as_ref(),
            self.model_calls.as_ref(),
            self.tool_calls.as_ref(),
        ]
    }

    /// Take the record batches out (their rows are in DuckDB's open transaction); the sums and
    /// counts stay for the commit.
    fn take_tables(&mut self) -> [Option<RecordBatch>; 5] {
        [self.spans.take(), self.logs.take(), self.points.take(), self.model_calls.take(), self.tool_calls.take()]
    }

    /// The columns of `b`'s non-empty tables.
    fn build(b: &Batch) -> Result<Self, ArrowError> {
        let of = |empty: bool, f: &dyn Fn() -> Result<RecordBatch, ArrowError>| {
            if empty {
                Ok(None)
            } else {
                f().map(Some)
            }
        };
        Ok(Self {
            spans: of(b.spans.is_empty(), &|| arrow_rows::spans(&b.spans))?,
            logs: of(b.logs.is_empty(), &|| arrow_rows::logs(&b.logs))?,
            points: of(b.points.is_empty(), &|| arrow_rows::points(&b.points))?,
            model_calls: of(b.model_calls.is_empty(), &|| arrow_rows::model_calls(&b.model_calls))?,
            tool_calls: of(b.tool_calls.is_empty(), &|| arrow_rows::tool_calls(&b.tool_calls))?,
            sums: rollup::Rollup::of(&b.model_calls),
            rows: batch_rows(b),
            bytes: crate::pipeline::batch_bytes(b),
            origin: Default::default(),
        })
    }
}

/// The rows of a batch that its columns stand for, taken out of it by `prep` to be freed early.
type Stripped = (Vec<SpanRow>, Vec<LogRow>, Vec<PointRow>, Vec<ModelCallRow>, Vec<ToolCallRow>);

/// Take the rows `columns` stand for out of `batch` when nothing else holds it (the live stream
/// may still hold it; then it keeps them). The writer needs only the columns (with the cost
/// rollup's sums) and the derived state (sessions, agents, state changes, links, fix-ups), so a
/// transaction waiting for its commit holds its span, log, point and call rows once, as columns,
/// rather than twice.
fn strip(batch: &mut Arc<Batch>) -> Option<Stripped> {
    let b = Arc::get_mut(batch)?;
    Some((
        std::mem::take(&mut b.spans),
        std::mem::take(&mut b.logs),
        std::mem::take(&mut b.points),
        std::mem::take(&mut b.model_calls),
        std::mem::take(&mut b.tool_calls),
    ))
}

/// Batches `prep` may have built ahead of the writer (each holds its rows and their columns).
pub const PREP_AHEAD: usize = 4;

/// The `writer-prep` thread: passes every message from `rx` to the writer in order, with the
/// Arrow columns of each batch built on the way (a batch whose columns fail to build goes on
/// without them; the writer builds them and handles the error as before). Ends after `Close`,
/// or when either side is gone.
/// Once a batch's columns are built, the rows they stand for are freed off the serial stage when
/// nothing else holds the batch (`strip`): handed back to the decode thread that made them
/// (`local_free`), else to `dropper` (`prep-drop`). The columns it builds come back here to be
/// freed once committed (or streamed), so it frees them between messages.
pub fn prep(rx: Receiver<Msg>, tx: std::sync::mpsc::SyncSender<Msg>, dropper: Dropper) {
    let home = crate::local_free::Home::here(crate::local_free::COLUMNS_WAITING);
    let mut worked = false;
    loop {
        let msg = match rx.recv_timeout(crate::local_free::wait(&home, worked)) {
            Ok(msg) => msg,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                worked = false;
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        worked = true;
        let close = matches!(msg, Msg::Close);
        let msg = match msg {
            Msg::Batch { pos, mut batch, columns: None } => {
                let columns = Columns::build(&batch).ok().map(Box::new);
                if columns.is_some() {
                    let origin = batch.origin;
                    if let Some(rows) = strip(&mut batch) {
                        dropper.free_at(origin, Box::new(rows));
                    }
                }
                Msg::Batch { pos, batch, columns }
            }
            other => other,
        };
        if tx.send(msg).is_err() || close {
            return;
        }
    }
}

/// What the writer thread is asked to do.
pub enum Msg {
    /// One record's processed rows (`pos` = its log position and byte count; `None` for session
    /// changes that come from time or control rather than from a record).
    Batch { pos: Option<(u64, u64)>, batch: Arc<Batch>, columns: Option<Box<Columns>> },
    /// Run a closure in its own transaction (`Store::apply`).
    Apply(ApplyFn, ApplyAck),
    /// The same, ahead of the pending telemetry (`Store::apply_now`: control state that reads no
    /// telemetry, so a command does not wait for the pending rows' commit; it is checkpointed).
    /// When rows were streamed into an open transaction already, that one commits first.
    ApplyNow(ApplyFn, ApplyAck),
    /// Re-price every stored call that has no reported cost with this table.
    Reprice(Arc<PriceTable>, oneshot::Sender<Result<RepriceReport, StoreError>>),
    /// Commit what is pending and checkpoint (sent on a timer).
    Checkpoint,
    /// Commit what is pending now (someone waits in `Store::flush`).
    Flush,
    /// Commit, checkpoint and stop (shutdown, after the pipeline stopped).
    Close,
}

/// A state change run on the writer's connection in its own transaction (`Store::apply`).
pub type ApplyFn = Box<dyn FnOnce(&Connection) -> Result<Box<dyn std::any::Any + Send>, StoreError> + Send>;
/// Where an `ApplyFn`'s committed result goes.
pub type ApplyAck = oneshot::Sender<Result<Box<dyn std::any::Any + Send>, StoreError>>;

/// Called with every processed batch, in order, once it is durable (the live stream hooks in
/// here). Runs on the pipeline thread: it must not block (the live hub only `try_send`s).
pub type CommitHook = Box<dyn Fn(Arc<Batch>) + Send>;

pub struct WriterConfig {
    /// Commit when the open transaction holds this many rows.
    pub max_txn_rows: usize,
    /// ... or about this many bytes of rows.
    pub max_txn_bytes: u64,
    /// ... or when its oldest record waited this long.
    pub max_txn_delay: Duration,
    /// Insert the open transaction's rows whenever this many bytes of them wait, and free them
    /// (`Writer::stream`; 0: all at the commit).
    pub stream_bytes: u64,
    /// Records through this log position are committed whole, never streamed: a restart after a
    /// streamed transaction failed replays them (`Writer::replay_streamed`).
    pub careful_through: Option<u64>,
    /// Checkpoint when this many log bytes were committed since the last checkpoint.
    pub checkpoint_bytes: u64,
    /// Attach the database file again after a checkpoint once its row groups hold this much
    /// (`reattach.rs`; `None`: never).
    pub reattach: Option<super::reattach::Reattach>,
    /// The ingest log directory (to copy a quarantined record's bytes).
    pub log_dir: std::path::PathBuf,
    /// The database file and how often to write it back during a checkpoint (`writeback.rs`).
    pub writeback: Option<(std::path::PathBuf, Duration)>,
    /// Where committed transactions are freed (`writer-drop`, one transaction waiting at most).
    pub dropper: Dropper,
    /// Where streamed chunks' columns are freed (`stream-drop`, two chunks waiting at most).
    pub chunk_dropper: Dropper,
}

struct Appenders<'c> {
    sessions_stage: Appender<'c>,
    agents_stage: Appender<'c>,
    transitions: Appender<'c>,
    state_stage: Appender<'c>,
    inherit_stage: Appender<'c>,
}

const STAGE_DDL: &str = "
    CREATE TEMP TABLE IF NOT EXISTS sessions_stage (id VARCHAR, first_seen TIMESTAMP, last_seen TIMESTAMP,
        agent_id VARCHAR, display_name VARCHAR, service_name VARCHAR, task_id VARCHAR, parent_id VARCHAR);
    CREATE TEMP TABLE IF NOT EXISTS agents_stage (id VARCHAR, first_seen TIMESTAMP, last_seen TIMESTAMP,
        agent_id VARCHAR, display_name VARCHAR, service_name VARCHAR, task_id VARCHAR, parent_id VARCHAR);";

const UPSERT_SESSIONS: &str = "
    INSERT INTO sessions (session_id, time, first_seen, last_seen, agent_id, display_name, service_name, task_id,
                          parent_session_id)
    SELECT id, last_seen, first_seen, last_seen, agent_id, display_name, service_name, task_id, parent_id
    FROM sessions_stage
    ON CONFLICT (session_id) DO UPDATE SET
        first_seen = least(sessions.first_seen, excluded.first_seen),
        last_seen = greatest(sessions.last_seen, excluded.last_seen),
        time = greatest(sessions.time, excluded.time),
        agent_id = coalesce(sessions.agent_id, excluded.agent_id),
        display_name = coalesce(sessions.display_name, excluded.display_name),
        service_name = coalesce(sessions.service_name, excluded.service_name),
        parent_session_id = coalesce(sessions.parent_session_id, excluded.parent_session_id),
        task_id = CASE WHEN excluded.last_seen >= sessions.last_seen
                       THEN coalesce(excluded.task_id, sessions.task_id)
                       ELSE coalesce(sessions.task_id, excluded.task_id) END;
    DELETE FROM sessions_stage;";

const UPSERT_AGENTS: &str = "
    INSERT INTO agents (agent_id, time, first_seen, last_seen, display_name, service_name)
    SELECT id, last_seen, first_seen, last_seen, display_name, service_name FROM agents_stage
    ON CONFLICT (agent_id) DO UPDATE SET
        first_seen = least(agents.first_seen, excluded.first_seen),
        last_seen = greatest(agents.last_seen, excluded.last_seen),
        time = greatest(agents.time, excluded.time),
        display_name = coalesce(agents.display_name, excluded.display_name),
        service_name = coalesce(agents.service_name, excluded.service_name);
    DELETE FROM agents_stage;";

impl<'c> Appenders<'c> {
    fn new(conn: &'c Connection) -> Result<Self, duckdb::Error> {
        Ok(Self {
            sessions_stage: conn.appender("sessions_stage")?,
            agents_stage: conn.appender("agents_stage")?,
            transitions: conn.appender("session_transitions")?,
            state_stage: conn.appender("session_state_stage")?,
            inherit_stage: conn.appender("inherit_stage")?,
        })
    }
}

/// What the `sessions` / `agents` tables already hold, so that a busy session is not re-written
/// on every transaction: a row is written when it is new, when its activity moved on by
/// `TOUCH_INTERVAL_US`, or when its task / earliest time changed. Bounded; forgetting an entry
/// only costs one extra upsert.
struct SeenCache {
    rows: FastMap<String, Seen>,
    cap: usize,
}

/// `sessions.last_seen` / `agents.last_seen` may lag the newest span by up to this much.
const TOUCH_INTERVAL_US: i64 = 2_000_000;

impl SeenCache {
    fn new(cap: usize) -> Self {
        Self { rows: FastMap::default(), cap }
    }

    /// Keep only the rows that change what is stored.
    fn changed(&self, rows: Vec<Seen>) -> Vec<Seen> {
        rows.into_iter()
            .filter(|r| match self.rows.get(&r.id) {
                None => true,
                Some(old) => {
                    r.last_us - old.last_us >= TOUCH_INTERVAL_US
                        || r.first_us < old.first_us
                        || (r.task_id.is_some() && r.task_id != old.task_id && r.last_us >= old.last_us)
                        || (old.agent_id.is_none() && r.agent_id.is_some())
                        || (old.parent_id.is_none() && r.parent_id.is_some())
                }
            })
            .collect()
    }

    fn remember(&mut self, rows: &[Seen]) {
        if self.rows.len() + rows.len() > self.cap {
            self.rows.clear();
        }
        for r in rows {
            let e = self.rows.entry(r.id.clone()).or_insert_with(|| r.clone());
            e.first_us = e.first_us.min(r.first_us);
            e.last_us = e.last_us.max(r.last_us);
            if r.task_id.is_some() {
                e.task_id = r.task_id.clone();
            }
            if e.agent_id.is_none() {
                e.agent_id = r.agent_id.clone();
            }
            if e.parent_id.is_none() {
                e.parent_id = r.parent_id.clone();
            }
        }
    }
}

/// Fold one `Seen` into a map keyed by id (several records in one transaction).
fn fold_into(map: &mut FastMap<String, Seen>, r: &Seen) {
    match map.get_mut(&r.id) {
        None => {
            map.insert(r.id.clone(), r.clone());
        }
        Some(e) => {
            e.first_us = e.first_us.min(r.first_us);
            if r.last_us >= e.last_us {
                e.last_us = r.last_us;
                if r.task_id.is_some() {
                    e.task_id.clone_from(&r.task_id);
                }
            }
            if e.agent_id.is_none() {
                e.agent_id.clone_from(&r.agent_id);
            }
            if e.display_name.is_none() {
                e.display_name.clone_from(&r.display_name);
            }
            if e.service_name.is_none() {
                e.service_name.clone_from(&r.service_name);
            }
            if e.parent_id.is_none() {
                e.parent_id.clone_from(&r.parent_id);
            }
        }
    }
}

/// Fold repeated ids so each id appears once (pure; also used by the pipeline per record).
pub fn fold_seen(rows: Vec<Seen>) -> Vec<Seen> {
    let mut map: FastMap<String, Seen> = FastMap::with_capacity_and_hasher(rows.len(), Default::default());
    for r in &rows {
        fold_into(&mut map, r);
    }
    map.into_values().collect()
}

/// One transaction's worth of processed records, in order.
#[derive(Default)]
struct Pending {
    items: Vec<Item>,
    rows: usize,
    bytes: u64,
    since: Option<Instant>,
}

impl Pending {
    fn push(&mut self, pos: Option<(u64, u64)>, batch: Arc<Batch>, columns: Option<Box<Columns>>) {
        let (rows, bytes) = counted(&batch, &columns);
        self.rows += rows;
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
        self.items.push((pos, batch, columns));
    }

    fn last_pos(&self) -> Option<(u64, u64)> {
        self.items.iter().rev().find_map(|(p, _, _)| *p)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Append every row of `items` and the derived state (sessions, agents, rollup, session
/// changes, log position), inside the caller's transaction.
fn append_items(
    conn: &Connection,
    bulk: &BulkInsert,
    app: &mut Appenders,
    items: &[Item],
    sessions_cache: &SeenCache,
    agents_cache: &SeenCache,
    adopt_budget: &mut fixups::AdoptBudget,
) -> Result<(Vec<Seen>, Vec<Seen>), StoreError> {
    let mut sessions: FastMap<String, Seen> = FastMap::default();
    let mut agents: FastMap<String, Seen> = FastMap::default();
    let mut sums = rollup::Rollup::default();
    let mut updates: Vec<&SessionUpdate> = Vec::new();
    let mut task_links = Vec::new();
    let mut rows = TableRows::default();
    for (_, b, built) in items {
        let built = match built {
            Some(c) => c,
            None => &Columns::build(b)?,
        };
        // A batch streamed into the transaction already has no record batches left (`stream`).
        gather(&mut rows, built);
        sums.merge(&built.sums);
        for s in &b.sessions {
            fold_into(&mut sessions, s);
        }
        for a in &b.agents {
            fold_into(&mut agents, a);
        }
        updates.extend(b.session_updates.iter());
        task_links.extend(b.task_links.iter());
    }
    // One statement per table, its strings read in place (`bulk_insert.rs`).
    insert_rows(conn, bulk, rows)?;
    let sessions = sessions_cache.changed(sessions.into_values().collect());
    if !sessions.is_empty() {
        app.sessions_stage.append_record_batch(arrow_rows::seen(&sessions)?)?;
        app.sessions_stage.flush()?;
        conn.execute_batch(UPSERT_SESSIONS)?;
    }
    let agents = agents_cache.changed(agents.into_values().collect());
    if !agents.is_empty() {
        app.agents_stage.append_record_batch(arrow_rows::seen(&agents)?)?;
        app.agents_stage.flush()?;
        conn.execute_batch(UPSERT_AGENTS)?;
    }
    sums.apply(conn, bulk)?;
    let fixes: Vec<_> = items.iter().flat_map(|(_, b, _)| b.fixups.iter()).collect();
    fixups::apply(conn, &mut app.inherit_stage, &fixes)?;
    let adopts: Vec<_> = items.iter().flat_map(|(_, b, _)| b.adopts.iter()).collect();
    let skipped = adopt_budget.skipped;
    let adopted = fixups::adopt(conn, &adopts, adopt_budget)?;
    if adopt_budget.skipped > skipped {
        tracing::debug!(skipped = adopt_budget.skipped - skipped, "adopt lookups skipped: their time budget is spent");
    }
    if adopted > 0 {
        tracing::debug!(adopted, spans = adopts.len(), "stored rows joined to an ancestor that arrived later");
    }
    session_state::apply(conn, &mut app.transitions, &mut app.state_stage, &updates)?;
    crate::tasks::store::upsert_links(conn, &task_links)?;
    if let Some((pos, _)) = items.iter().rev().find_map(|(p, _, _)| *p) {
        // Prepared once: planning this one-row update took ~1.4 ms of every transaction.
        conn.prepare_cached("UPDATE ingest_log_state SET position = ?, updated = now()")?
            .execute(params![pos as i64])?;
    }
    Ok((sessions, agents))
}

/// Is this a refusal of the data itself (no retry can fix it), rather than of the moment?
/// DuckDB invalidated the database: nothing more can be committed on this instance. Seen in a
/// soak: a `COMMIT` that ran out of memory (`could not allocate block`) left a row group whose
/// column counts disagree, and the next checkpoint found it ("Corrupted in-memory column") and
/// invalidated the database.
fn is_invalidated(e: &dyn std::fmt::Display) -> bool {
    e.to_string().contains("has been invalidated")
}

fn is_data_error(e: &StoreError) -> bool {
    let m = e.to_string();
    ["Conversion Error", "Out of Range", "Constraint Error", "Invalid Input Error", "overflow", "Arrow"]
        .iter()
        .any(|k| m.contains(k))
}

struct Writer<'c> {
    conn: &'c Connection,
    /// Holds each checkpoint's vacuum off (`vacuum_guard.rs`).
    guard: super::vacuum_guard::VacuumGuard,
    app: Option<Appenders<'c>>,
    /// The bulk tables' inserts (registered on first use).
    bulk: Option<BulkInsert>,
    /// Frees committed batches off this thread.
    cfg: WriterConfig,
    shared: Arc<StoreShared>,
    metrics: Arc<Metrics>,
    sessions_cache: SeenCache,
    agents_cache: SeenCache,
    pending: Pending,
    dirty: bool,
    /// Log bytes committed at the last checkpoint.
    checkpointed_bytes: u64,
    /// The log position of the last checkpoint (where a new start replays from).
    checkpointed_pos: u64,
    /// DuckDB invalidated the database: nothing is committed any more (`halt`).
    halted: bool,
    committed: (u64, u64),
    adopt_budget: fixups::AdoptBudget,
    writeback: Option<super::writeback::Writeback>,
    /// When `duckdb_memory_bytes` was last sampled.
    memory_sampled: Option<Instant>,
    /// `pending.items[..streamed]` are in the open transaction, their columns freed (`stream`;
    /// a transaction is open between batches exactly when this is above 0).
    streamed: usize,
    /// Bytes of pending rows not in the open transaction yet.
    unstreamed_bytes: u64,
    /// Streaming failed before any row went in: hold the rows until the commit this time.
    stream_off: bool,
}

impl<'c> Writer<'c> {
    /// The appenders and the bulk insert, made on first use and after a failure.
    fn ready(&mut self) -> Result<(), StoreError> {
        if self.app.is_none() {
            self.app = Some(Appenders::new(self.conn)?);
        }
        if self.bulk.is_none() {
            self.bulk = Some(BulkInsert::register(self.conn)?);
        }
        Ok(())
    }

    /// Run `items` as one transaction: the open one when rows were streamed into it (`open`).
    /// Rolled back on failure.
    fn try_commit(&mut self, items: &[Item], open: bool) -> Result<(), StoreError> {
        let result = self.append_and_commit(items, open);
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
            // An appender may hold half a batch after a failure: start clean.
            self.app = None;
        }
        result
    }

    fn append_and_commit(&mut self, items: &[Item], open: bool) -> Result<(), StoreError> {
        self.ready()?;
        if take_one(&self.shared.fail_commits) {
            return Err(StoreError::Db(INJECTED.into()));
        }
        if open && take_one(&self.shared.fail_streamed_commits) {
            return Err(StoreError::Db("IO Error: injected failure of a streamed transaction (test)".into()));
        }
        if take_one(&self.shared.invalidate_commits) {
            return Err(StoreError::Db("FATAL Error: the database has been invalidated (injected, test)".into()));
        }
        if !open {
            self.conn.execute_batch("BEGIN TRANSACTION")?;
        }
        let (Some(app), Some(bulk)) = (self.app.as_mut(), self.bulk.as_ref()) else {
            return Err(StoreError::Unavailable("no appenders".into()));
        };
        let (sessions, agents) = append_items(
            self.conn,
            bulk,
            app,
            items,
            &self.sessions_cache,
            &self.agents_cache,
            &mut self.adopt_budget,
        )?;
        self.conn.execute_batch("COMMIT")?;
        self.sessions_cache.remember(&sessions);
        self.agents_cache.remember(&agents);
        Ok(())
    }

    /// Insert the rows waiting in `pending` into the transaction (opening it) once
    /// `stream_bytes` of them wait, and free their columns: a transaction's rows then wait for
    /// their commit in DuckDB's transaction (its buffer manager) rather than twice, as columns
    /// here and as DuckDB's copy while the commit runs (issue 11's memory). What stays for the
    /// commit is per batch and small: the rollup's sums, sessions, agents, state changes.
    fn stream(&mut self) {
        if self.cfg.stream_bytes == 0
            || self.halted
            || self.stream_off
            || self.unstreamed_bytes < self.cfg.stream_bytes
            || self.careful()
        {
            return;
        }
        match self.try_stream() {
            Ok(()) => {}
            Err(e) if is_invalidated(&e) => self.halt(&e),
            Err(e) if self.streamed > 0 => {
                let last = self.pending.last_pos().map(|(p, _)| p);
                self.replay_streamed(&e, last);
            }
            Err(e) => {
                // Nothing went in: every row is still here, and the commit goes on as before.
                let _ = self.conn.execute_batch("ROLLBACK");
                self.app = None;
                self.stream_off = true;
                tracing::warn!(error = %e, "inserting rows ahead of their commit failed; this transaction's rows wait for its commit");
            }
        }
    }

    /// Replaying the records of a streamed transaction that failed (`careful_through`): they
    /// are committed whole, so that a failure can be retried record by record.
    fn careful(&self) -> bool {
        let Some(through) = self.cfg.careful_through else { return false };
        self.pending.items.iter().find_map(|(p, _, _)| *p).is_some_and(|(p, _)| p <= through)
    }

    fn try_stream(&mut self) -> Result<(), StoreError> {
        self.ready()?;
        if self.streamed == 0 {
            // A failing DuckDB (the test hook's full disk) fails here before anything goes in.
            if take_one(&self.shared.fail_commits) {
                return Err(StoreError::Db(INJECTED.into()));
            }
            self.conn.execute_batch("BEGIN TRANSACTION")?;
        }
        let from = self.streamed;
        let mut rows = TableRows::default();
        for (_, batch, built) in &mut self.pending.items[from..] {
            if built.is_none() {
                *built = Some(Box::new(Columns::build(batch)?));
            }
            if let Some(c) = built {
                gather(&mut rows, c);
            }
        }
        let bulk = self.bulk.as_ref().ok_or_else(|| StoreError::Unavailable("no bulk insert".into()))?;
        insert_rows(self.conn, bulk, rows)?;
        // In: free the columns (off this thread).
        let origin = origin_of(&self.pending.items[from..]);
        let freed: Vec<_> = self.pending.items[from..]
            .iter_mut()
            .filter_map(|(_, _, built)| built.as_mut().map(|c| c.take_tables()))
            .collect();
        self.cfg.chunk_dropper.free_at(origin, Box::new(freed));
        self.streamed = self.pending.items.len();
        self.unstreamed_bytes = 0;
        self.metrics.streamed_chunks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A transaction some of whose rows were streamed in failed: those rows are freed, so it
    /// cannot be retried from memory. Stop and ask for the restart that replays the ingest log
    /// since the last checkpoint (as after an invalidation, `halt`); the new start commits the
    /// records through this transaction's last position whole, so a record DuckDB refuses is
    /// found and quarantined one by one, and a failure that lasts (a full disk) is retried with
    /// backoff as before.
    fn replay_streamed(&mut self, e: &dyn std::fmt::Display, last: Option<u64>) {
        if let Some(last) = last {
            self.shared.careful_through.fetch_max(last, Ordering::AcqRel);
        }
        if !self.halted {
            tracing::error!(
                error = %e,
                through_position = last,
                checkpointed_position = self.checkpointed_pos,
                "a transaction whose rows were streamed into DuckDB failed: the writer stops; the collector restarts on the same directory, replays the ingest log from the last checkpoint and commits these records whole"
            );
        }
        self.stop_for_restart(e);
    }

    fn committed_through(&mut self, items: &[Item]) {
        if let Some(p) = items.iter().rev().find_map(|(p, _, _)| *p) {
            self.committed = p;
            if let Some(log) = &self.shared.log {
                log.committed(p.0, p.1);
            }
            self.shared.committed_pos.send_replace(p.0);
        }
        if let Some(r) = self.cfg.reattach.as_mut() {
            r.committed(items.iter().map(|(_, b, c)| counted(b, c).0 as u64).sum());
        }
        self.dirty = true;
    }

    /// Attach the database file again when the row groups written since the last attach hold
    /// `--duckdb-reattach-mib` (`reattach.rs`). Right after a checkpoint, between transactions.
    fn maybe_reattach(&mut self) {
        if self.streamed > 0 || self.halted {
            return;
        }
        let readers = self.shared.readers.clone();
        let result = match self.cfg.reattach.as_mut() {
            Some(r) if r.due() => r.run(self.conn, &readers),
            _ => return,
        };
        match result {
            Ok(_) => {
                self.metrics.reattached.fetch_add(1, Ordering::Relaxed);
                // DuckDB freed its cache and the row groups' memory into glibc's arenas: give the
                // free pages back now rather than at DuckDB's next trim.
                crate::malloc_arenas::trim();
                self.sample_memory(true);
            }
            Err(e @ super::reattach::ReattachError::Detach(_)) => {
                tracing::warn!(error = %e, "cannot attach the database again; tried after the next checkpoint");
            }
            Err(e) => {
                tracing::error!(error = %e, "the database is detached and cannot be attached again; restarting");
                self.stop_for_restart(&e);
            }
        }
    }

    /// Commit everything pending (retrying record by record on failure).
    fn commit_pending(&mut self) {
        if self.halted {
            // In the log; a new start replays them.
            self.pending = Pending::default();
        }
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let streamed = std::mem::take(&mut self.streamed) > 0;
        self.unstreamed_bytes = 0;
        self.stream_off = false;
        let rows = pending.rows;
        let started = Instant::now();
        let result = self.try_commit(&pending.items, streamed);
        self.metrics.observe_commit(started.elapsed(), rows as u64, result.is_ok());
        match result {
            Ok(()) => {
                self.shared.health.ok();
                self.metrics.adopt_lookups.store(self.adopt_budget.looked_up, Ordering::Relaxed);
                self.metrics.adopt_skipped.store(self.adopt_budget.skipped, Ordering::Relaxed);
                // Before the commit is announced: what a flush's caller reads next in /metrics
                // includes it.
                let flush_waits = self.shared.flush_target.load(Ordering::Acquire) > self.committed.0;
                self.sample_memory(flush_waits);
                self.committed_through(&pending.items);
                tracing::debug!(
                    records = pending.items.len(),
                    rows,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "transaction committed"
                );
                let origin = origin_of(&pending.items);
                self.cfg.dropper.free_at(origin, Box::new(pending.items));
            }
            Err(e) if is_invalidated(&e) => self.halt(&e),
            Err(e) if streamed => self.replay_streamed(&e, pending.last_pos().map(|(p, _)| p)),
            Err(e) => {
                self.shared.health.failed(&e);
                tracing::error!(error = %e, records = pending.items.len(), "commit failed; retrying record by record");
                self.commit_one_by_one(pending.items);
            }
        }
        self.maybe_checkpoint(false);
        self.sample_memory(false);
    }

    /// Sample what DuckDB's buffer manager holds into `/metrics` (at most every
    /// `MEMORY_SAMPLE_EVERY` unless `now`; a query over a dozen counters, no table is read).
    fn sample_memory(&mut self, now: bool) {
        if !now && self.memory_sampled.is_some_and(|t| t.elapsed() < MEMORY_SAMPLE_EVERY) {
            return;
        }
        self.memory_sampled = Some(Instant::now());
        match self.conn.query_row("SELECT CAST(sum(memory_usage_bytes) AS UBIGINT) FROM duckdb_memory()", [], |r| {
            r.get::<_, Option<u64>>(0)
        }) {
            Ok(n) => self.metrics.duckdb_memory.store(n.unwrap_or(0), Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "duckdb_memory() not sampled"),
        }
    }

    /// DuckDB invalidated the database: stop committing (every record past the last checkpoint
    /// is in the ingest log, which a new start replays) and ask for that start
    /// (`StoreShared::restart`). Retrying would only fail forever while the log fills up.
    fn halt(&mut self, e: &dyn std::fmt::Display) {
        if !self.halted {
            tracing::error!(
                error = %e,
                checkpointed_position = self.checkpointed_pos,
                "DuckDB invalidated the database: the writer stops; the collector restarts on the same directory and replays the ingest log from the last checkpoint"
            );
        }
        self.stop_for_restart(e);
    }

    /// Stop committing (every record past the last checkpoint is in the ingest log) and ask for
    /// the in-process restart that replays it.
    fn stop_for_restart(&mut self, e: &dyn std::fmt::Display) {
        // A streamed transaction may be open (no transaction: DuckDB refuses, nothing else).
        let _ = self.conn.execute_batch("ROLLBACK");
        self.streamed = 0;
        self.unstreamed_bytes = 0;
        self.halted = true;
        self.pending = Pending::default();
        self.app = None;
        self.shared.health.failed(&StoreError::Unavailable(format!("restarting: {e}")));
        self.shared.restart.cancel();
    }

    fn commit_one_by_one(&mut self, items: Vec<Item>) {
        let mut backoff = Duration::from_millis(100);
        let mut i = 0;
        while i < items.len() {
            let one = &items[i..i + 1];
            match self.try_commit(one, false) {
                Ok(()) => {
                    self.shared.health.ok();
                    self.committed_through(one);
                    i += 1;
                    backoff = Duration::from_millis(100);
                }
                Err(e) if is_data_error(&e) => {
                    self.quarantine(&items[i], &e);
                    i += 1;
                }
                Err(e) if is_invalidated(&e) => {
                    self.halt(&e);
                    return;
                }
                Err(e) => {
                    self.shared.health.failed(&e);
                    self.metrics.observe_commit(Duration::ZERO, 0, false);
                    tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "commit failed; holding the log position");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Store a record DuckDB refuses as data in `quarantine` (raw bytes from the log), and move
    /// the position past it, so it cannot hold up the records after it.
    fn quarantine(&mut self, item: &Item, e: &StoreError) {
        let Some((pos, end_bytes)) = item.0 else {
            tracing::error!(error = %e, "session changes refused by DuckDB; dropped");
            return;
        };
        let raw = {
            let mut c = crate::ingest_log::Cursor::new(self.cfg.log_dir.clone(), pos, 0, true);
            match c.next(pos) {
                Ok(Some(r)) if r.pos == pos => Some(r.record.encode()),
                _ => None,
            }
        };
        let res = self.conn.execute_batch("BEGIN TRANSACTION").and_then(|_| {
            self.conn.execute(
                "INSERT INTO quarantine (time, position, error, record) VALUES (now(), ?, ?, ?)",
                params![pos as i64, e.to_string(), raw],
            )?;
            self.conn.execute("UPDATE ingest_log_state SET position = ?, updated = now()", params![pos as i64])?;
            self.conn.execute_batch("COMMIT")
        });
        match res {
            Ok(()) => {
                tracing::error!(position = pos, error = %e, "record refused by DuckDB: quarantined (table `quarantine`)");
                self.metrics.quarantined.fetch_add(1, Ordering::Relaxed);
                self.committed_through(&[(Some((pos, end_bytes)), item.1.clone(), None)]);
            }
            Err(q) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                tracing::error!(position = pos, error = %q, "cannot quarantine a refused record; it is retried");
            }
        }
    }

    /// Checkpoint now, after a change the ingest log does not hold (`Store::apply`, re-pricing):
    /// DuckDB writes no WAL (`recovery.rs`), so until a checkpoint it would live only in memory.
    /// A failed checkpoint is retried by the next one; the change stays committed meanwhile.
    fn make_durable(&mut self, what: &str) {
        self.dirty = true;
        if !self.maybe_checkpoint(true) {
            tracing::error!(change = what, "a committed change is not on disk yet: its checkpoint failed");
        }
    }

    /// Checkpoint when `checkpoint_bytes` of log were committed since the last one (or `force`).
    /// False only when a checkpoint was tried and failed.
    fn maybe_checkpoint(&mut self, force: bool) -> bool {
        if !self.dirty || self.halted {
            return true;
        }
        let since = self.committed.1.saturating_sub(self.checkpointed_bytes);
        if !force && since < self.cfg.checkpoint_bytes {
            return true;
        }
        let started = Instant::now();
        let pacing = self.writeback.as_ref().map(|w| w.during());
        let guard = self.guard.hold();
        let result = match self.conn.execute_batch("CHECKPOINT") {
            // Another connection holds DuckDB's checkpoint lock. Without a WAL, every commit
            // stays in memory until a checkpoint: refused long enough (a soak's readers kept it
            // refused for 30 s at a time) DuckDB ran out of memory mid-append and invalidated
            // the database. So a refused checkpoint is forced, waiting for the lock for a
            // bounded time. (Forcing only at twice the usual amount, the soak's restarts, which
            // replay up to that much, peaked over its RSS bound.)
            //
            // What holds the lock is our own committed transactions, kept by DuckDB for the
            // snapshots of readers that started before them; under a steady stream of readers
            // there always is one. `FORCE CHECKPOINT` makes new readers wait; the ones open now
            // get `EVICT_GRACE` to finish, then are evicted (`evict.rs`: they end with a 503 /
            // SQLSTATE 40001 to retry).
            Err(e) if lock_busy(&e) => {
                let readers = self.shared.readers.clone();
                let cutoff = readers.cutoff();
                tracing::warn!(
                    uncheckpointed_bytes = since,
                    readers_open = readers.open(),
                    wait_ms = FORCE_CHECKPOINT_WAIT.as_millis() as u64,
                    "checkpoint refused while readers' snapshots hold DuckDB's checkpoint lock; forcing it"
                );
                let mut told = false;
                force_checkpoint(self.conn, FORCE_CHECKPOINT_WAIT, move |waited| {
                    if waited < EVICT_GRACE {
                        return true;
                    }
                    let n = readers.evict_before(cutoff);
                    if n > 0 && !told {
                        told = true;
                        tracing::warn!(readers = n, "checkpoint: evicting readers still running after the grace");
                    }
                    n > 0
                })
            }
            other => other,
        };
        drop(pacing);
        drop(guard);
        match result {
            Ok(()) => {
                self.dirty = false;
                self.checkpointed_bytes = self.committed.1;
                if let Some(log) = &self.shared.log {
                    log.checkpointed(self.committed.0);
                }
                self.checkpointed_pos = self.committed.0;
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    position = self.committed.0,
                    "checkpoint"
                );
                self.maybe_reattach();
                true
            }
            Err(e) if is_invalidated(&e) => {
                self.halt(&e);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; retried later");
                false
            }
        }
    }

    /// Commit now: the transaction is full (rows, bytes), old enough, or holds the position a
    /// `Store::flush` waits for. Not for every record below that position: a flush during a
    /// replay backlog must not turn the backlog into one transaction per record (each paying
    /// the per-transaction upserts), which made replays after `kill -9` crawl.
    fn due(&self) -> bool {
        let target = self.shared.flush_target.load(Ordering::Acquire);
        self.pending.rows >= self.cfg.max_txn_rows
            || self.pending.bytes >= self.cfg.max_txn_bytes
            || self.pending.since.is_some_and(|s| s.elapsed() >= self.cfg.max_txn_delay)
            || (target > self.committed.0 && self.pending.last_pos().is_some_and(|(p, _)| p >= target))
    }
}

/// Longest wait of a forced checkpoint for other transactions (new ones wait meanwhile).
const FORCE_CHECKPOINT_WAIT: Duration = Duration::from_secs(5);

/// Longest a forced checkpoint may take in all (a soak's, of 400-490 MB under load: 5-8 s).
const FORCE_CHECKPOINT_MAX: Duration = Duration::from_secs(60);

/// How often the writer samples DuckDB's memory for `/metrics` (after a commit).
const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// How long readers open when a checkpoint is forced may go on before they are evicted (new
/// readers wait meanwhile, so this is also the longest a query waits for a checkpoint to begin).
const EVICT_GRACE: Duration = Duration::from_millis(1000);

/// DuckDB refused a `CHECKPOINT` because other transactions hold its checkpoint lock.
fn lock_busy(e: &duckdb::Error) -> bool {
    e.to_string().contains("Cannot CHECKPOINT: there are other write transactions active")
}

/// `FORCE CHECKPOINT`: waits for the transactions holding the checkpoint lock to end (DuckDB
/// blocks new ones meanwhile). `waiting(time waited)` runs every 50 ms and says whether what
/// holds the lock may still be there (readers not gone yet); while it does, the checkpoint is
/// interrupted after `wait`, so the writer never hangs on a transaction that does not end. Once
/// it does not, the checkpoint is writing and may take its time (an interrupt would not stop the
/// writes, only make a finished checkpoint report failure), up to `FORCE_CHECKPOINT_MAX`.
fn force_checkpoint(
    conn: &Connection,
    wait: Duration,
    mut waiting: impl FnMut(Duration) -> bool + Send + 'static,
) -> Result<(), duckdb::Error> {
    let interrupt = conn.interrupt_handle();
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::Builder::new().name("duckdb-force-checkpoint".into()).spawn(move || {
        const TICK: Duration = Duration::from_millis(50);
        let started = Instant::now();
        let mut holders = true;
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
            let waited = started.elapsed();
            if holders {
                holders = waiting(waited);
            }
            if (holders && waited >= wait) || waited >= FORCE_CHECKPOINT_MAX {
                interrupt.interrupt();
            }
        }
    });
    let Ok(watchdog) = watchdog else {
        // No watchdog, no unbounded wait: try the plain checkpoint once more.
        return conn.execute_batch("CHECKPOINT");
    };
    let result = conn.execute_batch("FORCE CHECKPOINT");
    drop(done);
    let _ = watchdog.join();
    result
}

/// `Store::apply`: one closure, one transaction.
fn apply_in_txn(conn: &Connection, f: ApplyFn) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Staging tables the writer uses (temp: per connection).
pub fn create_staging(conn: &Connection) -> Result<(), duckdb::Error> {
    conn.execute_batch(STAGE_DDL)?;
    conn.execute_batch(fixups::STAGE_DDL)?;
    conn.execute_batch(session_state::STAGE_DDL)
}

/// Frees what a thread hands over on a thread of its own: committed transactions
/// (`writer-drop`: dropping a transaction's rows, a few hundred thousand strings, took ~7% of
/// the writer's time, the one serial stage) and the rows `prep` took out of batches
/// (`prep-drop`). Bounded to `waiting` things queued; when the queue is full, the sender frees
/// inline.
pub struct Dropper(Option<std::sync::mpsc::SyncSender<Box<dyn Send>>>);

/// Batches' rows `prep` may queue for `prep-drop`.
pub const PREP_DROP_WAITING: usize = PREP_AHEAD + 2;

impl Dropper {
    pub fn start(name: &str, waiting: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Box<dyn Send>>(waiting);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
            crate::priority::background();
            for items in rx {
                drop(items);
            }
        });
        match spawned {
            Ok(_) => Self(Some(tx)),
            Err(e) => {
                tracing::warn!(error = %e, "no thread to free rows on; the sender frees them");
                Self(None)
            }
        }
    }

    /// Free `items` on the thread that made them (`local_free`), else on this drop thread.
    fn free_at(&self, origin: crate::local_free::Origin, items: Box<dyn Send>) {
        if let Err(items) = crate::local_free::send(origin, items) {
            self.drop_later(items);
        }
    }

    fn drop_later(&self, items: Box<dyn Send>) {
        if let Some(tx) = &self.0 {
            // Full or gone: `items` comes back and is dropped here.
            let _ = tx.try_send(items);
        }
    }
}

/// Run the writer loop on the current thread until every sender is gone.
/// Zeroes the queue's byte count when the writer stops, however it stops: the pipeline then finds
/// the channel closed instead of waiting for room that never comes.
struct QueueGuard(Arc<std::sync::atomic::AtomicU64>);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

pub fn run(
    conn: Connection,
    guard: super::vacuum_guard::VacuumGuard,
    rx: Receiver<Msg>,
    cfg: WriterConfig,
    shared: Arc<StoreShared>,
    metrics: Arc<Metrics>,
    start: (u64, u64),
) {
    let _queue = QueueGuard(shared.writer_queued.clone());
    if let Err(e) = create_staging(&conn) {
        tracing::error!(error = %e, "writer: cannot create staging tables");
    }
    let mut w = Writer {
        conn: &conn,
        guard,
        app: None,
        bulk: None,
        shared,
        metrics,
        sessions_cache: SeenCache::new(200_000),
        agents_cache: SeenCache::new(20_000),
        pending: Pending::default(),
        dirty: false,
        checkpointed_bytes: start.1,
        checkpointed_pos: start.0,
        halted: false,
        committed: start,
        adopt_budget: fixups::AdoptBudget::new(),
        writeback: cfg.writeback.as_ref().and_then(|(path, every)| super::writeback::Writeback::start(path, *every)),
        memory_sampled: None,
        streamed: 0,
        unstreamed_bytes: 0,
        stream_off: false,
        cfg,
    };
    loop {
        let wait = match w.pending.since {
            Some(s) => w.cfg.max_txn_delay.saturating_sub(s.elapsed()),
            None => Duration::from_secs(3600),
        };
        let msg = match rx.recv_timeout(wait) {
            Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
        };
        match msg {
            Some(Msg::Batch { pos, batch, columns }) => {
                let size = counted(&batch, &columns).1;
                let _ = w
                    .shared
                    .writer_queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(size)));
                w.pending.push(pos, batch, columns);
                w.unstreamed_bytes += size;
                if !w.due() {
                    w.stream();
                }
            }
            Some(Msg::Flush) => w.commit_pending(),
            Some(Msg::Apply(_, ack)) | Some(Msg::ApplyNow(_, ack)) if w.halted => {
                let _ = ack.send(Err(StoreError::Unavailable("DuckDB invalidated the database; restarting".into())));
            }
            Some(Msg::Apply(f, ack)) => {
                w.commit_pending();
                let result = apply_in_txn(w.conn, f);
                if result.is_ok() {
                    w.make_durable("apply");
                }
                let _ = ack.send(result);
            }
            Some(Msg::ApplyNow(f, ack)) => {
                if w.streamed > 0 {
                    // Rows were streamed into the open transaction: it commits first (a command
                    // then waits for at most one transaction's commit).
                    w.commit_pending();
                }
                let result = apply_in_txn(w.conn, f);
                if result.is_ok() {
                    w.make_durable("apply");
                }
                let _ = ack.send(result);
            }
            Some(Msg::Reprice(table, ack)) => {
                w.commit_pending();
                let started = Instant::now();
                let result = reprice::reprice(w.conn, &table);
                match &result {
                    Ok(r) => {
                        w.make_durable("reprice");
                        tracing::info!(
                            computed = r.computed,
                            unpriced = r.unpriced,
                            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                            "re-priced stored model calls"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "re-pricing failed"),
                }
                let _ = ack.send(result);
            }
            Some(Msg::Checkpoint) => {
                w.commit_pending();
                w.maybe_checkpoint(true);
            }
            Some(Msg::Close) | None => {}
        }
        if w.due() {
            w.commit_pending();
        }
    }
    w.commit_pending();
    w.app = None;
    w.maybe_checkpoint(true);
    tracing::info!(position = w.committed.0, "writer drained and checkpointed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize;

    /// A batch nothing else holds reaches the writer with its columns and without the rows they
    /// stand for (freed early), counted as it was queued; the writer stores the same rows.
    #[test]
    fn prep_frees_the_rows_of_a_batch_only_it_holds_and_keeps_its_counts() {
        let mut rng = crate::fixtures::Rng::new(9);
        let req = crate::fixtures::genai_traces(200, 4, &mut rng, 1_764_000_000_000_000_000);
        let batch = normalize::traces(&req, 1_764_000_000_000_000).batch;
        let (rows, bytes) = (batch_rows(&batch), crate::pipeline::batch_bytes(&batch));
        let own = Columns::build(&batch).expect("columns");
        let calls = batch.model_calls.len();
        assert!(!batch.spans.is_empty() && !batch.tool_calls.is_empty() && calls > 0);
        let (in_tx, in_rx) = std::sync::mpsc::sync_channel(8);
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel(PREP_AHEAD);
        let thread = std::thread::spawn(move || prep(in_rx, out_tx, Dropper::start("prep-drop", PREP_DROP_WAITING)));
        in_tx.send(Msg::Batch { pos: Some((3, 30)), batch: Arc::new(batch), columns: None }).expect("send");
        in_tx.send(Msg::Close).expect("send");
        match out_rx.recv().expect("batch") {
            Msg::Batch { pos, batch, columns: Some(c) } => {
                assert_eq!(pos, Some((3, 30)));
                assert!(
                    batch.spans.is_empty() && batch.tool_calls.is_empty() && batch.model_calls.is_empty(),
                    "rows freed early"
                );
                assert!(!c.sums.is_empty() && c.sums.sorted() == own.sums.sorted(), "the rollup's sums built ahead");
                assert_eq!((c.rows, c.bytes), (rows, bytes), "counted as queued");
                assert_eq!((c.spans, c.model_calls, c.tool_calls), (own.spans, own.model_calls, own.tool_calls));
            }
            _ => panic!("expected a batch with its columns"),
        }
        thread.join().expect("prep stops after Close");
    }

    /// `writer-prep` passes every message on in order, each batch with the columns the writer
    /// would have built itself, and stops after `Close`.
    #[test]
    fn prep_passes_messages_on_in_order_with_each_batchs_columns() {
        let mut rng = crate::fixtures::Rng::new(5);
        let traces = |n: usize, rng: &mut crate::fixtures::Rng| {
            let req = crate::fixtures::genai_traces(n, 4, rng, 1_764_000_000_000_000_000);
            Arc::new(normalize::traces(&req, 1_764_000_000_000_000).batch)
        };
        let (a, b) = (traces(300, &mut rng), traces(40, &mut rng));
        let (in_tx, in_rx) = std::sync::mpsc::sync_channel(8);
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel(PREP_AHEAD);
        let thread = std::thread::spawn(move || prep(in_rx, out_tx, Dropper::start("prep-drop", PREP_DROP_WAITING)));
        in_tx.send(Msg::Batch { pos: Some((1, 10)), batch: a.clone(), columns: None }).expect("send");
        in_tx.send(Msg::Flush).expect("send");
        in_tx.send(Msg::Batch { pos: None, batch: b.clone(), columns: None }).expect("send");
        in_tx.send(Msg::Close).expect("send");
        let rows = |c: &Option<RecordBatch>| c.as_ref().map_or(0, RecordBatch::num_rows);
        let check = |msg: Msg, want_pos: Option<(u64, u64)>, want: &Arc<Batch>| match msg {
            Msg::Batch { pos, batch, columns: Some(c) } => {
                assert_eq!(pos, want_pos);
                assert!(Arc::ptr_eq(&batch, want));
                assert!(!want.spans.is_empty() && !want.model_calls.is_empty() && !want.tool_calls.is_empty());
                assert_eq!(rows(&c.spans), want.spans.len());
                assert_eq!(rows(&c.model_calls), want.model_calls.len());
                assert_eq!(rows(&c.tool_calls), want.tool_calls.len());
                assert_eq!((c.logs.is_none(), c.points.is_none()), (true, true), "no rows, no columns");
                // The same columns the writer builds when a batch comes without them.
                let own = Columns::build(want).expect("columns");
                assert_eq!(c.spans, own.spans);
                assert_eq!(c.model_calls, own.model_calls);
            }
            _ => panic!("expected a batch with its columns"),
        };
        check(out_rx.recv().expect("first"), Some((1, 10)), &a);
        assert!(matches!(out_rx.recv().expect("flush"), Msg::Flush));
        check(out_rx.recv().expect("second"), None, &b);
        assert!(matches!(out_rx.recv().expect("close"), Msg::Close));
        thread.join().expect("prep stops after Close");
        assert!(out_rx.recv().is_err(), "nothing after Close");
    }
}
