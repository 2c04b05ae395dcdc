//! The one DuckDB writer: an OS thread that owns the write connection and its Appenders, takes
//! batches from a bounded channel, merges whatever is queued into one transaction, commits, and
//! only then acknowledges every request in it. Closing the channel drains it and checkpoints.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use duckdb::{Appender, Connection};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::{arrow_rows, reprice, rollup, session_state, StoreError};
use crate::cost::pricing::{price_calls, RepriceReport};
use crate::cost::PriceTable;
use crate::model::dedup::Deduper;
use crate::model::records::{Batch, Seen};
use crate::sessions::{signals, Clock, Tracker, TrackerConfig};
use crate::telemetry::Metrics;

/// One export's rows, waiting for the writer.
pub struct WriteRequest {
    pub batch: Batch,
    pub ack: oneshot::Sender<Result<(), StoreError>>,
    /// Holds this request's share of the in-flight byte budget until it is committed.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What the writer thread is asked to do.
pub enum Msg {
    Write(WriteRequest),
    /// Checkpoint now if nothing is waiting (sent on a timer, so an idle collector keeps a
    /// short WAL and restarts fast).
    Checkpoint,
    /// Switch to a new price table and re-price every stored call that has no reported cost.
    Reprice(Arc<PriceTable>, oneshot::Sender<Result<RepriceReport, StoreError>>),
    /// Apply time-driven session changes now (sent on a timer; tests wait for the ack).
    Tick(Option<oneshot::Sender<()>>),
    /// Run a closure in its own transaction (`Store::apply`).
    Apply(ApplyFn, oneshot::Sender<Result<Box<dyn std::any::Any + Send>, StoreError>>),
    /// Control: pause (`true`) or resume a session in the session tracker, stored and streamed
    /// like any state change (`Store::set_paused`); answers whether the state changed.
    SetPaused(String, bool, String, oneshot::Sender<bool>),
}

/// A state change run on the writer's connection in its own transaction (`Store::apply`).
pub type ApplyFn = Box<dyn FnOnce(&Connection) -> Result<Box<dyn std::any::Any + Send>, StoreError> + Send>;

/// Called after each commit with the committed rows, every batch once and in order (the live
/// stream hooks in here). Runs on the writer thread: it must not block (the live hub only
/// `try_send`s).
pub type CommitHook = Box<dyn Fn(Arc<Batch>) + Send>;

pub struct WriterConfig {
    /// Stop merging queued requests into one transaction beyond this many rows.
    pub max_batch_rows: usize,
    /// Prices in force when the writer starts.
    pub prices: Arc<PriceTable>,
    pub sessions: TrackerConfig,
    /// The collector's clock, for session activity and transition times.
    pub clock: Clock,
}

struct Appenders<'c> {
    spans: Appender<'c>,
    logs: Appender<'c>,
    points: Appender<'c>,
    model_calls: Appender<'c>,
    tool_calls: Appender<'c>,
    sessions_stage: Appender<'c>,
    agents_stage: Appender<'c>,
    cost_stage: Appender<'c>,
    transitions: Appender<'c>,
    state_stage: Appender<'c>,
}

const SPAN_COLS: &[&str] = &[
    "time",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_time",
    "end_time",
    "duration_ms",
    "status_code",
    "status_message",
    "scope_name",
    "span_type",
    "model",
    "error",
    "attributes",
    "resource_attributes",
    "events",
    "links",
    "service_name",
    "session_id",
    "agent_id",
    "task_id",
    "agent_name",
    "run_id",
];
const LOG_COLS: &[&str] = &[
    "time",
    "observed_time",
    "trace_id",
    "span_id",
    "severity_number",
    "severity_text",
    "event_name",
    "body",
    "scope_name",
    "attributes",
    "resource_attributes",
    "service_name",
    "session_id",
    "agent_id",
    "task_id",
    "agent_name",
    "run_id",
];
const POINT_COLS: &[&str] = &[
    "time",
    "start_time",
    "name",
    "description",
    "unit",
    "kind",
    "temporality",
    "is_monotonic",
    "value",
    "count",
    "sum",
    "min",
    "max",
    "distribution",
    "series_id",
    "attributes",
    "resource_attributes",
    "service_name",
    "session_id",
    "agent_id",
    "task_id",
];
const MODEL_COLS: &[&str] = &[
    "time",
    "source",
    "trace_id",
    "span_id",
    "request_id",
    "model",
    "provider",
    "operation",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "cost_source",
    "duration_ms",
    "error",
    "token_rule",
    "service_name",
    "session_id",
    "agent_id",
    "task_id",
    "agent_name",
    "run_id",
];
const TOOL_COLS: &[&str] = &[
    "time",
    "source",
    "trace_id",
    "span_id",
    "tool_call_id",
    "tool_name",
    "duration_ms",
    "success",
    "error",
    "service_name",
    "session_id",
    "agent_id",
    "task_id",
    "agent_name",
    "run_id",
];

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
            spans: conn.appender_with_columns("spans", SPAN_COLS)?,
            logs: conn.appender_with_columns("logs", LOG_COLS)?,
            points: conn.appender_with_columns("metric_points", POINT_COLS)?,
            model_calls: conn.appender_with_columns("model_calls", MODEL_COLS)?,
            tool_calls: conn.appender_with_columns("tool_calls", TOOL_COLS)?,
            sessions_stage: conn.appender("sessions_stage")?,
            agents_stage: conn.appender("agents_stage")?,
            cost_stage: conn.appender("cost_hourly_stage")?,
            transitions: conn.appender("session_transitions")?,
            state_stage: conn.appender("session_state_stage")?,
        })
    }
}

/// What the `sessions` / `agents` tables already hold, so that a busy session is not re-written
/// on every batch: a row is written when it is new, when its activity moved on by
/// `TOUCH_INTERVAL_US`, or when its task / earliest time changed. Bounded; forgetting an entry
/// only costs one extra upsert.
struct SeenCache {
    rows: HashMap<String, Seen>,
    cap: usize,
}

/// `sessions.last_seen` / `agents.last_seen` may lag the newest span by up to this much.
const TOUCH_INTERVAL_US: i64 = 2_000_000;

impl SeenCache {
    fn new(cap: usize) -> Self {
        Self { rows: HashMap::new(), cap }
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

/// Fold repeated ids (several requests in one transaction) so the upsert sees each id once.
fn fold_seen(rows: Vec<Seen>) -> Vec<Seen> {
    let mut map: HashMap<String, Seen> = HashMap::with_capacity(rows.len());
    for r in rows {
        match map.get_mut(&r.id) {
            None => {
                map.insert(r.id.clone(), r);
            }
            Some(e) => {
                e.first_us = e.first_us.min(r.first_us);
                if r.last_us >= e.last_us {
                    e.last_us = r.last_us;
                    if r.task_id.is_some() {
                        e.task_id = r.task_id;
                    }
                }
                if e.agent_id.is_none() {
                    e.agent_id = r.agent_id;
                }
                if e.display_name.is_none() {
                    e.display_name = r.display_name;
                }
                if e.service_name.is_none() {
                    e.service_name = r.service_name;
                }
                if e.parent_id.is_none() {
                    e.parent_id = r.parent_id;
                }
            }
        }
    }
    map.into_values().collect()
}

fn append_all(conn: &Connection, app: &mut Appenders, batch: &Batch) -> Result<(), StoreError> {
    if !batch.spans.is_empty() {
        app.spans.append_record_batch(arrow_rows::spans(&batch.spans)?)?;
        app.spans.flush()?;
    }
    if !batch.logs.is_empty() {
        app.logs.append_record_batch(arrow_rows::logs(&batch.logs)?)?;
        app.logs.flush()?;
    }
    if !batch.points.is_empty() {
        app.points.append_record_batch(arrow_rows::points(&batch.points)?)?;
        app.points.flush()?;
    }
    if !batch.model_calls.is_empty() {
        app.model_calls.append_record_batch(arrow_rows::model_calls(&batch.model_calls)?)?;
        app.model_calls.flush()?;
        rollup::apply(conn, &mut app.cost_stage, &batch.model_calls)?;
    }
    if !batch.tool_calls.is_empty() {
        app.tool_calls.append_record_batch(arrow_rows::tool_calls(&batch.tool_calls)?)?;
        app.tool_calls.flush()?;
    }
    if !batch.sessions.is_empty() {
        app.sessions_stage.append_record_batch(arrow_rows::seen(&batch.sessions)?)?;
        app.sessions_stage.flush()?;
        conn.execute_batch(UPSERT_SESSIONS)?;
    }
    if !batch.agents.is_empty() {
        app.agents_stage.append_record_batch(arrow_rows::seen(&batch.agents)?)?;
        app.agents_stage.flush()?;
        conn.execute_batch(UPSERT_AGENTS)?;
    }
    session_state::apply(conn, &mut app.transitions, &mut app.state_stage, &batch.session_updates)?;
    Ok(())
}

/// Write one merged batch in one transaction.
fn commit(conn: &Connection, app: &mut Appenders, batch: &Batch) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match append_all(conn, app, batch) {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
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

/// Commit session changes made outside a batch (control's pause / resume) and publish them.
fn commit_updates(
    conn: &Connection,
    appenders: Option<&mut Appenders>,
    updates: Vec<crate::model::records::SessionUpdate>,
    on_commit: &[CommitHook],
) -> bool {
    let (Some(app), false) = (appenders, updates.is_empty()) else { return false };
    let batch = Batch { session_updates: updates, ..Batch::default() };
    match commit(conn, app, &batch) {
        Ok(()) => {
            let batch = Arc::new(batch);
            for hook in on_commit {
                hook(batch.clone());
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "session state commit failed");
            false
        }
    }
}

/// Run the writer loop on the current thread until the channel closes.
pub fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    on_commit: Vec<CommitHook>,
) {
    if let Err(e) = conn
        .execute_batch(STAGE_DDL)
        .and_then(|_| conn.execute_batch(rollup::STAGE_DDL))
        .and_then(|_| conn.execute_batch(session_state::STAGE_DDL))
    {
        tracing::error!(error = %e, "writer: cannot create staging tables");
    }
    let mut appenders = match Appenders::new(&conn) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::error!(error = %e, "writer: cannot create appenders");
            None
        }
    };
    let mut tracker = Tracker::new(cfg.sessions);
    let recent = cfg.sessions.finish_after_us.saturating_mul(2);
    match session_state::load(&conn, &mut tracker, (cfg.clock)(), recent, cfg.sessions.max_sessions) {
        Ok(n) => tracing::info!(sessions = n, "session states restored"),
        Err(e) => tracing::warn!(error = %e, "cannot restore session states"),
    }
    let mut last_tick_us = i64::MIN / 2;
    let mut dedup = Deduper::default();
    let mut sessions_cache = SeenCache::new(200_000);
    let mut agents_cache = SeenCache::new(20_000);
    let mut dirty = false;
    let mut prices = cfg.prices.clone();
    if let Err(e) = reprice::publish_prices(&conn, &prices) {
        tracing::warn!(error = %e, "writer: cannot publish the price table");
    }
    while let Some(msg) = rx.blocking_recv() {
        let first = match msg {
            Msg::Write(r) => r,
            Msg::Reprice(table, ack) => {
                let started = Instant::now();
                let result = reprice::reprice(&conn, &table);
                match &result {
                    Ok(r) => {
                        tracing::info!(
                            computed = r.computed,
                            unpriced = r.unpriced,
                            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                            "re-priced stored model calls"
                        );
                        prices = table;
                        dirty = true;
                    }
                    Err(e) => tracing::error!(error = %e, "re-pricing failed"),
                }
                let _ = ack.send(result);
                continue;
            }
            Msg::Tick(ack) => {
                last_tick_us = (cfg.clock)();
                let updates = tracker.tick(last_tick_us);
                if !updates.is_empty() {
                    let batch = Batch { session_updates: updates, ..Batch::default() };
                    match appenders.as_mut() {
                        Some(app) => match commit(&conn, app, &batch) {
                            Ok(()) => {
                                dirty = true;
                                let batch = Arc::new(batch);
                                for hook in &on_commit {
                                    hook(batch.clone());
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "session state commit failed"),
                        },
                        None => tracing::error!("writer has no appenders: session states not stored"),
                    }
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
                continue;
            }
            Msg::Apply(f, ack) => {
                let result = apply_in_txn(&conn, f);
                if result.is_ok() {
                    dirty = true;
                }
                let _ = ack.send(result);
                continue;
            }
            Msg::SetPaused(id, paused, reason, ack) => {
                let u = tracker.set_paused(&id, paused, &reason, (cfg.clock)());
                let changed = commit_updates(&conn, appenders.as_mut(), u.into_iter().collect(), &on_commit);
                dirty |= changed;
                let _ = ack.send(changed);
                continue;
            }
            Msg::Checkpoint => {
                if dirty && rx.is_empty() {
                    let started = Instant::now();
                    match conn.execute_batch("CHECKPOINT") {
                        Ok(()) => {
                            dirty = false;
                            tracing::debug!(elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "idle checkpoint");
                        }
                        Err(e) => tracing::warn!(error = %e, "idle checkpoint failed"),
                    }
                }
                continue;
            }
        };
        let mut rows = first.batch.row_count();
        let mut reqs = vec![first];
        let mut deferred = None;
        let mut deferred_apply = Vec::new();
        let mut deferred_paused = Vec::new();
        while rows < cfg.max_batch_rows {
            match rx.try_recv() {
                Ok(Msg::Write(r)) => {
                    rows += r.batch.row_count();
                    reqs.push(r);
                }
                // Busy: DuckDB's own WAL-size checkpoint covers this case.
                Ok(Msg::Checkpoint) => {}
                // Busy: this batch's commit runs the session clock check (below) anyway.
                Ok(Msg::Tick(ack)) => {
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                Ok(Msg::Apply(f, ack)) => {
                    deferred_apply.push((f, ack));
                }
                Ok(Msg::SetPaused(id, paused, reason, ack)) => deferred_paused.push((id, paused, reason, ack)),
                // Rare: re-price after this batch, with a fresh loop turn.
                Ok(Msg::Reprice(table, ack)) => {
                    deferred = Some((table, ack));
                    break;
                }
                Err(_) => break,
            }
        }
        metrics.queue_depth.store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut merged = Batch::default();
        for r in &mut reqs {
            merged.append(std::mem::take(&mut r.batch));
        }
        let folded = fold_seen(std::mem::take(&mut merged.sessions));
        merged.agents = agents_cache.changed(fold_seen(std::mem::take(&mut merged.agents)));
        let dropped = dedup.filter(&mut merged);
        price_calls(&prices, &mut merged.model_calls);
        let now = (cfg.clock)();
        let mut updates = tracker.observe(signals::from_batch(&merged), &folded, now);
        // Time-driven changes at most once a second (the scan covers every tracked session).
        if now - last_tick_us >= 1_000_000 {
            last_tick_us = now;
            let timed: Vec<_> = tracker
                .tick(now)
                .into_iter()
                .filter(|t| !updates.iter().any(|u| u.session_id == t.session_id))
                .collect();
            updates.extend(timed);
        }
        merged.session_updates = updates;
        merged.sessions = sessions_cache.changed(folded);
        let started = Instant::now();
        let result = match appenders.as_mut() {
            Some(app) => commit(&conn, app, &merged),
            None => Err(StoreError::Unavailable("writer has no appenders".into())),
        };
        let elapsed = started.elapsed();
        metrics.observe_commit(elapsed, merged.row_count() as u64, result.is_ok());
        match &result {
            Ok(()) => {
                tracing::debug!(
                    requests = reqs.len(),
                    rows = merged.row_count(),
                    dropped_duplicates = dropped,
                    elapsed_ms = elapsed.as_secs_f64() * 1e3,
                    "batch committed"
                );
                dirty = true;
                sessions_cache.remember(&merged.sessions);
                agents_cache.remember(&merged.agents);
                let batch = Arc::new(std::mem::take(&mut merged));
                for hook in &on_commit {
                    hook(batch.clone());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = reqs.len(), "batch commit failed");
                // An appender may hold half a batch after a failure: start clean.
                drop(appenders.take());
                appenders = Appenders::new(&conn).ok();
            }
        }
        for r in reqs {
            let _ = r.ack.send(result.clone());
            drop(r.permit);
        }
        for (f, ack) in deferred_apply {
            let _ = ack.send(apply_in_txn(&conn, f));
        }
        for (id, paused, reason, ack) in deferred_paused {
            let u = tracker.set_paused(&id, paused, &reason, (cfg.clock)());
            let _ = ack.send(commit_updates(&conn, appenders.as_mut(), u.into_iter().collect(), &on_commit));
        }
        if let Some((table, ack)) = deferred {
            let result = reprice::reprice(&conn, &table);
            if result.is_ok() {
                prices = table;
            }
            let _ = ack.send(result);
        }
    }
    drop(appenders);
    match conn.execute_batch("CHECKPOINT") {
        Ok(()) => tracing::info!("writer drained and checkpointed"),
        Err(e) => tracing::warn!(error = %e, "final checkpoint failed"),
    }
}
