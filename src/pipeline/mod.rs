//! The pipeline: one thread that takes every durable record of the ingest log exactly once, in
//! position order, and runs it through named stages before handing it to the DuckDB writer:
//!
//! 1. `take`     the mapped rows the ingest path made, or (replay, catch-up) the record read
//!    back from the log and mapped again with its original receive time;
//! 2. `hook_records` drop a hook call the hook binary sent again (same record id; `hook_records`),
//!    then `dedup`: drop calls reported twice (`model::dedup`), then `inherit`: calls with no
//!    agent / session / task of their own take their nearest ancestor span's, fixing stored rows
//!    when the ancestor arrives later (`inherit`);
//! 3. `price`    price every call without a reported cost (`cost::pricing`);
//! 4. `sessions` run the session state machine (`sessions::tracker`) on the batch's signals, plus
//!    the time-driven checks at most once a second;
//!    then `tasks`: tasks and session links first seen (`tasks::link`);
//! 5. `publish`  hand the batch to the live stream and the other observers (commit hooks);
//! 6. `store`    queue it for the DuckDB writer (`store::writer`), which commits in large
//!    transactions together with the log position.
//!
//! The hand-off from the log thread is bounded in bytes and lossy: when it is full the record is
//! simply not passed along, and the pipeline reads it back from the log when it notices the gap
//! (or, with nothing else arriving, when the log's durable position is ahead of it). So neither
//! a slow DuckDB nor a burst ever grows memory without bound, and nothing is skipped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cost::pricing::{price_calls, RepriceReport};
use crate::cost::PriceTable;
use crate::ingest_log::{Cursor, Durable, LogState};
use crate::model::dedup::Deduper;
use crate::model::records::Batch;
use crate::sessions::{signals, Clock, Tracker};
use crate::store::writer::{self, CommitHook};
use crate::store::StoreError;

pub mod hook_records;
pub mod imports;
pub mod inherit;
pub mod openclaw_runs;
pub mod replay;

/// Default bytes of record batches the writer's queue may hold (`--writer-queue-mib`; besides
/// its count bound). It shares one budget with the hand-off (`Budget`): when DuckDB pauses (a
/// commit, a checkpoint) the pipeline keeps publishing until the two together are full.
/// A checkpoint (`--checkpoint-mib`) pauses the writer for 0.4-2.3 s on 2 cores; 48 MiB is
/// about 0.5 s at half load (~29,000 load generator spans). 192 MiB took the queue out of the
/// live stream's tail, but the short soak's replay after each `kill -9` keeps the queue full and
/// its RSS reached the 1,536 MiB bound (64 MiB: 1,385). 64 until the mapping sized its rows
/// exactly (22% fewer bytes a span): 48 holds as many spans. See BENCHMARKS.md, "Re-measured
/// 2026-12-05" and "rows sized exactly".
pub const WRITER_QUEUE_BYTES: u64 = 48 << 20;

/// Default bytes of mapped rows the log thread may hand the pipeline (`--pipeline-handoff-mib`).
pub const HANDOFF_BYTES: u64 = 48 << 20;

/// How often an idle pipeline checks the log for records it was not handed.
const POLL: Duration = Duration::from_millis(50);

/// What the pipeline is asked to do.
// Nearly every message is a `Record`; boxing it would add an allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Input {
    /// A durable record (from the log thread) and the bytes its rows hold in the hand-off's
    /// budget (counted once, by `Handoff::forward`; 0 when it handed over no rows).
    Record(Durable<Batch>, u64),
    /// Apply time-driven session changes now.
    Tick(Option<oneshot::Sender<()>>),
    /// Price with a new table from now on, then re-price what is stored (in the DuckDB writer,
    /// after everything priced with the old table).
    Reprice(Arc<PriceTable>, oneshot::Sender<Result<RepriceReport, StoreError>>),
    /// A control change of a session's state (pause / resume), applied in order with the rows.
    SetPaused { session_id: String, paused: bool, reason: String },
    /// Take everything durable, then stop (shutdown, after the log thread stopped).
    Close,
}

/// The sending side of the log -> pipeline hand-off, bounded by an estimate of the bytes the
/// mapped rows hold. The hand-off and the writer's queue share one budget (`Budget`): a batch the
/// pipeline moves from one to the other takes no new memory, so while a checkpoint pauses the
/// writer the pipeline (and the live stream) keeps going on the whole of it.
pub struct Handoff {
    tx: SyncSender<Input>,
    budget: Budget,
    pub dropped: Arc<AtomicU64>,
}

/// Size of a mapped batch in memory (for the hand-off, the writer's queue and transaction
/// bounds): its rows as they lie in their vectors, and the text they own. Counted, not
/// estimated: a span's attributes can be 200 bytes or 200 KB, and a bound on an estimate lets
/// prompt-heavy traffic hold several times the memory it names (a fixed 600 bytes a span
/// counted ~77% of a load generator batch; `tests/memory_bounds.rs` holds this to the heap it
/// takes). Shared strings (`Arc<str>`: contexts, resources, names) are not counted.
pub fn batch_bytes(b: &Batch) -> u64 {
    use crate::model::records::{LogRow, ModelCallRow, PointRow, Seen, SessionUpdate, SpanRow, ToolCallRow};
    use std::mem::size_of;
    let rows = b.spans.capacity() * size_of::<SpanRow>()
        + b.logs.capacity() * size_of::<LogRow>()
        + b.points.capacity() * size_of::<PointRow>()
        + b.model_calls.capacity() * size_of::<ModelCallRow>()
        + b.tool_calls.capacity() * size_of::<ToolCallRow>()
        + (b.sessions.capacity() + b.agents.capacity()) * size_of::<Seen>()
        + b.session_updates.capacity() * size_of::<SessionUpdate>()
        + b.task_links.capacity() * size_of::<crate::tasks::link::TaskLink>()
        + b.fixups.capacity() * size_of::<crate::model::records::Fixup>()
        + b.adopts.capacity() * size_of::<crate::model::records::Adopt>()
        + size_of::<Batch>();
    // What sessions, agents and the derived fix-ups name (few a batch, but a small export's
    // rows are as few).
    let seen = b
        .sessions
        .iter()
        .chain(&b.agents)
        .map(|s| {
            s.id.capacity()
                + opt_len(&s.agent_id)
                + opt_len(&s.display_name)
                + opt_len(&s.task_id)
                + opt_len(&s.parent_id)
        })
        .sum::<usize>();
    let derived = b
        .fixups
        .iter()
        .map(|f| {
            f.trace_id.capacity()
                + f.span_id.capacity()
                + opt_len(&f.agent_id)
                + opt_len(&f.agent_name)
                + opt_len(&f.session_id)
                + opt_len(&f.task_id)
                + opt_len(&f.from_agent)
                + opt_len(&f.from_session)
        })
        .chain(b.adopts.iter().map(|a| {
            a.trace_id.capacity()
                + a.span_id.capacity()
                + opt_len(&a.agent_id)
                + opt_len(&a.agent_name)
                + opt_len(&a.session_id)
                + opt_len(&a.task_id)
        }))
        .chain(b.task_links.iter().map(|t| t.task_id.capacity() + opt_len(&t.session_id)))
        .sum::<usize>();
    let spans = b
        .spans
        .iter()
        .map(|s| {
            s.attributes.capacity()
                + s.name.capacity()
                + opt_len(&s.status_message)
                + opt_len(&s.model)
                + opt_len(&s.events)
                + opt_len(&s.links)
        })
        .sum::<usize>();
    let logs = b
        .logs
        .iter()
        .map(|l| l.attributes.capacity() + opt_len(&l.body) + opt_len(&l.severity_text) + opt_len(&l.event_name))
        .sum::<usize>();
    let points = b
        .points
        .iter()
        .map(|p| p.attributes.capacity() + p.series_id.capacity() + opt_len(&p.distribution))
        .sum::<usize>();
    let calls = b
        .model_calls
        .iter()
        .map(|c| opt_len(&c.request_id) + opt_len(&c.model) + opt_len(&c.provider) + opt_len(&c.operation))
        .sum::<usize>();
    let tools = b
        .tool_calls
        .iter()
        .map(|t| opt_len(&t.tool_call_id) + t.tool_name.capacity() + opt_len(&t.error))
        .sum::<usize>();
    (rows + spans + logs + points + calls + tools + seen + derived) as u64
}

/// The heap an optional string owns.
fn opt_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::capacity)
}

impl Handoff {
    /// Is the pipeline behind (`Budget::behind`)?
    pub fn behind(&self) -> bool {
        self.budget.behind()
    }

    /// Called on the log thread for every durable record: never blocks.
    pub fn forward(&self, mut d: Durable<Batch>) {
        let size = d.item.as_ref().map(batch_bytes).unwrap_or(0);
        if self.budget.used() + size > self.budget.total {
            // Too much waiting: the pipeline reads this one back from the log.
            d.item = None;
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.budget.handoff.fetch_add(size, Ordering::AcqRel);
        }
        let sent_size = d.item.as_ref().map(|_| size).unwrap_or(0);
        match self.tx.try_send(Input::Record(d, sent_size)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.budget.handoff.fetch_sub(sent_size, Ordering::AcqRel);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Handle for other senders (timers, the re-price API, the control plane).
#[derive(Clone)]
pub struct PipelineSender {
    tx: SyncSender<Input>,
}

impl PipelineSender {
    /// A tick; dropped when the pipeline is busy (it runs the same check on its own then).
    pub fn tick(&self) {
        let _ = self.tx.try_send(Input::Tick(None));
    }

    /// Ask the pipeline to finish and stop (blocking; for `WriterHandle::join`).
    pub fn close_blocking(&self) {
        let _ = self.tx.send(Input::Close);
    }

    /// Send and wait (off the async runtime: the channel is a std one).
    pub async fn send(&self, input: Input) -> Result<(), StoreError> {
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || tx.send(input).map_err(|_| StoreError::Closed))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// Settings.
pub struct PipelineConfig {
    pub prices: Arc<PriceTable>,
    pub clock: Clock,
    /// Bytes of mapped rows the log thread may hand over before records are re-read from disk.
    pub handoff_bytes: u64,
    pub skip_damaged: bool,
}

/// The pipeline's channels: what `start` needs and what others keep.
pub struct Channels {
    pub handoff: Handoff,
    pub sender: PipelineSender,
    pub rx: Receiver<Input>,
    pub in_flight: Arc<AtomicU64>,
}

/// The memory the hand-off and the writer's queue share: mapped rows in either count against
/// `total` (`--pipeline-handoff-mib` + `--writer-queue-mib`).
#[derive(Clone)]
pub struct Budget {
    /// Bytes handed over by the log thread and not yet taken by the pipeline.
    pub handoff: Arc<AtomicU64>,
    /// Bytes queued for the DuckDB writer (it subtracts what it receives, and zeroes it when it
    /// stops).
    pub writer: Arc<AtomicU64>,
    pub total: u64,
    /// Above this the pipeline counts as behind (`behind`): half the hand-off is taken.
    behind_at: u64,
}

impl Budget {
    pub fn new(handoff_bytes: u64, writer_bytes: u64) -> Self {
        Self {
            handoff: Arc::new(AtomicU64::new(0)),
            writer: Arc::new(AtomicU64::new(0)),
            total: handoff_bytes.saturating_add(writer_bytes),
            behind_at: writer_bytes.saturating_add(handoff_bytes / 2),
        }
    }

    /// Is the pipeline behind (more than half the hand-off taken)? Exports wait a little then
    /// (`receiver::ingest`), and the latency tier yields to the writer
    /// (`priority::YieldWhileBehind`).
    pub fn behind(&self) -> bool {
        self.used() > self.behind_at
    }

    pub fn used(&self) -> u64 {
        self.handoff.load(Ordering::Acquire).saturating_add(self.writer.load(Ordering::Acquire))
    }
}

pub fn channels(budget: Budget) -> Channels {
    let (tx, rx) = std::sync::mpsc::sync_channel(4096);
    let in_flight = budget.handoff.clone();
    Channels {
        handoff: Handoff { tx: tx.clone(), budget, dropped: Arc::new(AtomicU64::new(0)) },
        sender: PipelineSender { tx },
        rx,
        in_flight,
    }
}

/// The stages' state, owned by the pipeline thread.
pub struct Stages {
    hook_records: hook_records::HookRecords,
    imports: imports::Imports,
    dedup: Deduper,
    inherit: inherit::Inherit,
    prices: Arc<PriceTable>,
    tracker: Tracker,
    tasks: crate::tasks::link::Linker,
    clock: Clock,
    /// The session clock never goes back (replayed records carry old receive times).
    last_now: i64,
    last_tick_us: i64,
    hooks: Vec<CommitHook>,
    to_store: SyncSender<writer::Msg>,
    /// Bytes queued for the writer, counted in the budget it shares with the hand-off: the
    /// pipeline waits only when the two together are over it.
    budget: Budget,
}

impl Stages {
    pub fn new(
        prices: Arc<PriceTable>,
        tracker: Tracker,
        clock: Clock,
        hooks: Vec<CommitHook>,
        to_store: SyncSender<writer::Msg>,
    ) -> Self {
        let now = clock();
        Self {
            hook_records: hook_records::HookRecords::default(),
            imports: imports::Imports::default(),
            dedup: Deduper::default(),
            inherit: inherit::Inherit::default(),
            prices,
            tracker,
            tasks: crate::tasks::link::Linker::new(None),
            clock,
            last_now: now,
            last_tick_us: i64::MIN / 2,
            hooks,
            to_store,
            budget: Budget::new(HANDOFF_BYTES, WRITER_QUEUE_BYTES),
        }
    }

    /// Start the inheritance memory with this horizon (`inherit::Inherit::over_store`).
    pub fn with_inherit(mut self, inherit: inherit::Inherit) -> Self {
        self.inherit = inherit;
        self
    }

    /// Count the writer's queue in this budget (shared with the writer and the hand-off).
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Start with the hook record ids DuckDB holds (`hook_records::HookRecords::load`).
    pub fn with_hook_records(mut self, ids: hook_records::HookRecords) -> Self {
        self.hook_records = ids;
        self
    }

    /// Start with the Claude Code call / tool / prompt keys DuckDB holds (`imports::Imports::load`).
    pub fn with_imports(mut self, keys: imports::Imports) -> Self {
        self.imports = keys;
        self
    }

    /// Start with the OpenClaw shim runs DuckDB holds (`openclaw_runs`).
    pub fn with_openclaw_runs(mut self, r: openclaw_runs::OpenclawRuns) -> Self {
        self.dedup.restore_openclaw(r.runs, r.shim_last_us, r.totals);
        self
    }

    /// Link tasks with this linker (its pattern from the config).
    pub fn with_tasks(mut self, linker: crate::tasks::link::Linker) -> Self {
        self.tasks = linker;
        self
    }

    /// Stages 2-6 for one record's rows.
    fn process(&mut self, pos: u64, end_bytes: u64, received_us: i64, mut batch: Batch) -> Result<(), StoreError> {
        batch.log_pos = pos;
        self.stage_hook_records(&mut batch);
        let import = imports::is_import(&batch);
        self.stage_imports(&mut batch);
        self.stage_dedup(&mut batch);
        self.stage_inherit(&mut batch);
        self.stage_price(&mut batch);
        imports::Imports::mark(&mut batch, import);
        self.stage_sessions(&mut batch, received_us);
        self.stage_tasks(&mut batch);
        let batch = Arc::new(batch);
        self.stage_publish(&batch);
        self.stage_store(Some((pos, end_bytes)), batch)
    }

    fn stage_hook_records(&mut self, batch: &mut Batch) {
        if self.hook_records.filter(batch) {
            tracing::debug!(position = batch.log_pos, "hook call sent again: rows dropped");
        }
    }

    /// A history import's rows already counted (earlier import, or reported live) are dropped.
    fn stage_imports(&mut self, batch: &mut Batch) {
        let dropped = self.imports.filter(batch);
        if dropped > 0 {
            tracing::debug!(dropped, "calls already counted: dropped");
        }
    }

    fn stage_dedup(&mut self, batch: &mut Batch) {
        let dropped = self.dedup.filter(batch);
        if dropped > 0 {
            tracing::trace!(dropped, "duplicate calls dropped");
        }
    }

    /// Calls with no agent / session / task of their own take their ancestors' (`inherit`).
    fn stage_inherit(&mut self, batch: &mut Batch) {
        let skipped = self.inherit.adopts_skipped;
        let (changed, fixups) = self.inherit.apply(batch);
        if changed + fixups > 0 {
            tracing::trace!(changed, fixups, "inherited from ancestor spans");
        }
        let skipped = self.inherit.adopts_skipped - skipped;
        if skipped > 0 {
            tracing::debug!(skipped, "ancestor spans not looked up in the store (bound reached)");
        }
    }

    fn stage_price(&mut self, batch: &mut Batch) {
        price_calls(&self.prices, &mut batch.model_calls);
    }

    fn stage_sessions(&mut self, batch: &mut Batch, received_us: i64) {
        let now = received_us.max(self.last_now);
        self.last_now = now;
        batch.sessions = writer::fold_seen(std::mem::take(&mut batch.sessions));
        let mut updates = self.tracker.observe(signals::from_batch(batch), &batch.sessions, now);
        // Time-driven changes at most once a second (the scan covers every tracked session).
        let clock_now = (self.clock)().max(now);
        if clock_now - self.last_tick_us >= 1_000_000 {
            self.last_tick_us = clock_now;
            let timed: Vec<_> = self
                .tracker
                .tick(clock_now)
                .into_iter()
                .filter(|t| !updates.iter().any(|u| u.session_id == t.session_id))
                .collect();
            updates.extend(timed);
        }
        batch.session_updates = updates;
    }

    fn stage_tasks(&mut self, batch: &mut Batch) {
        batch.task_links = self.tasks.links(batch);
    }

    fn stage_publish(&self, batch: &Arc<Batch>) {
        for hook in &self.hooks {
            hook(batch.clone());
        }
    }

    fn stage_store(&self, pos: Option<(u64, u64)>, batch: Arc<Batch>) -> Result<(), StoreError> {
        // Bounded in bytes too: a queue of 256 prompt-heavy batches would hold far more than
        // 256 small ones.
        // A batch taken from the hand-off left it before it comes here, so moving it costs the
        // budget nothing; rows read back from the log (or made by a tick) are new memory.
        while self.budget.used() > self.budget.total {
            std::thread::sleep(Duration::from_millis(1));
        }
        let size = batch_bytes(&batch);
        self.budget.writer.fetch_add(size, Ordering::AcqRel);
        self.to_store.send(writer::Msg::Batch { pos, batch, columns: None }).map_err(|_| {
            self.budget.writer.store(0, Ordering::Release);
            StoreError::Closed
        })
    }

    /// Session changes that come from time or control, not from a record.
    fn session_only(&mut self, updates: Vec<crate::model::records::SessionUpdate>) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(Batch { session_updates: updates, ..Batch::default() });
        self.stage_publish(&batch);
        self.stage_store(None, batch)
    }

    fn tick(&mut self) -> Result<(), StoreError> {
        let now = (self.clock)().max(self.last_now);
        self.last_tick_us = now;
        let updates = self.tracker.tick(now);
        self.session_only(updates)
    }
}

/// Run the pipeline thread: replay from `start_pos`, then take records as they become durable.
pub fn run(mut stages: Stages, rx: Receiver<Input>, in_flight: Arc<AtomicU64>, log: Arc<LogState>, mut cursor: Cursor) {
    let mut next = cursor.next_pos();
    let mut bytes_before = 0u64;
    let mut replayed = 0u64;
    // Replay what DuckDB does not hold yet.
    let durable = log.durable_pos.load(Ordering::Acquire);
    if durable >= next {
        tracing::info!(from = next, to = durable, "replaying the ingest log");
    }
    let fail = |e: StoreError| {
        tracing::error!(error = %e, "pipeline: the DuckDB writer is gone; stopping");
    };
    let mut closing = false;
    loop {
        let input = match rx.recv_timeout(POLL) {
            // Shutdown: one last catch-up of what is durable, then stop.
            Ok(Input::Close) | Err(RecvTimeoutError::Disconnected) => {
                closing = true;
                None
            }
            Ok(i) => Some(i),
            Err(RecvTimeoutError::Timeout) => None,
        };
        // While the writer is behind, this thread yields to it too (`priority::follow`).
        crate::priority::follow();
        // Catch up from disk: everything durable before the next record handed over (or, with
        // nothing handed over, everything durable).
        let upto = match &input {
            Some(Input::Record(d, _)) => d.pos.saturating_sub(1),
            _ => log.durable_pos.load(Ordering::Acquire),
        };
        if upto >= next {
            cursor.seek(next, bytes_before);
            loop {
                match cursor.next(upto) {
                    Ok(Some(r)) => {
                        let batch = match replay::map_record(&r.record) {
                            Ok(b) => b,
                            Err(e) => {
                                tracing::error!(position = r.pos, error = %e, "pipeline: a logged record no longer decodes; skipped");
                                Batch::default()
                            }
                        };
                        if let Err(e) = stages.process(r.pos, r.end_bytes, r.record.received_us, batch) {
                            fail(e);
                            return;
                        }
                        replayed += 1;
                        next = r.pos + 1;
                        bytes_before = r.end_bytes;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "pipeline: cannot read the ingest log; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                        break;
                    }
                }
            }
        }
        match input {
            Some(Input::Record(d, size)) => {
                in_flight.fetch_sub(size, Ordering::AcqRel);
                if d.pos < next {
                    continue; // already read back from the log
                }
                if d.pos > next {
                    // The catch-up above could not reach it (read error): try again next turn.
                    continue;
                }
                let batch = match d.item {
                    Some(b) => b,
                    None => {
                        // Handed over without its rows: read it back.
                        cursor.seek(next, bytes_before);
                        match cursor.next(d.pos) {
                            Ok(Some(r)) => replay::map_record(&r.record).unwrap_or_default(),
                            _ => continue,
                        }
                    }
                };
                if let Err(e) = stages.process(d.pos, d.end_bytes, d.received_us, batch) {
                    fail(e);
                    return;
                }
                next = d.pos + 1;
                bytes_before = d.end_bytes;
            }
            Some(Input::Tick(ack)) => {
                if let Err(e) = stages.tick() {
                    fail(e);
                    return;
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            Some(Input::Reprice(table, ack)) => {
                stages.prices = table.clone();
                if stages.to_store.send(writer::Msg::Reprice(table, ack)).is_err() {
                    fail(StoreError::Closed);
                    return;
                }
            }
            Some(Input::SetPaused { session_id, paused, reason }) => {
                let now = (stages.clock)().max(stages.last_now);
                let updates = stages.tracker.set_paused(&session_id, paused, &reason, now).into_iter().collect();
                if let Err(e) = stages.session_only(updates) {
                    fail(e);
                    return;
                }
            }
            Some(Input::Close) | None => {}
        }
        if replayed > 0 && next > log.durable_pos.load(Ordering::Acquire) {
            log.replayed.fetch_add(replayed, Ordering::Relaxed);
            tracing::info!(records = replayed, "read back from the ingest log; caught up");
            replayed = 0;
        }
        if closing {
            break;
        }
    }
    tracing::info!(next_position = next, "pipeline stopped");
}
