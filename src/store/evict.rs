//! Reader connections a checkpoint can end.
//!
//! DuckDB writes no WAL here (`recovery.rs`): every commit lives only in memory until a
//! checkpoint. A checkpoint needs DuckDB's checkpoint lock exclusively, and a committed write
//! transaction that updated rows keeps its share of that lock until no reader that started
//! before its commit is still running (DuckDB keeps the transaction for those readers'
//! snapshots). Under a steady stream of SQL readers some older reader is almost always running,
//! so plain checkpoints are refused ("there are other write transactions active"); a soak saw
//! them refused for minutes, its memory grew past the bound, and DuckDB ran out of memory
//! mid-append.
//!
//! Every reader connection is registered here (`Reader::connection`). When a checkpoint must
//! happen and was refused, the writer evicts the readers registered before it started: each
//! gets DuckDB's interrupt, a stream or Postgres-wire sender waiting on a slow client is woken
//! (`send_within`), and the query ends with [`StoreError::Evicted`] (HTTP 503 with Retry-After,
//! SQLSTATE 40001), which a client retries.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use duckdb::{Connection, InterruptHandle};
use tokio::sync::Notify;

use crate::telemetry::Metrics;

/// One reader's eviction: a flag, and a wake-up for a sender waiting on its client.
#[derive(Default)]
pub struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
}

impl Eviction {
    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once this reader is evicted.
    pub async fn evicted(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_evicted() {
                return;
            }
            notified.await;
        }
    }
}

struct Entry {
    interrupt: Arc<InterruptHandle>,
    eviction: Arc<Eviction>,
}

/// The reader connections open now.
pub struct Readers {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Entry>>,
    /// Held shared while a reader connection is made and registered, exclusively while the
    /// writer attaches the database again (`reattach.rs`).
    gate: RwLock<()>,
    /// `queries_evicted` counts the readers evicted (`/metrics`).
    metrics: Arc<Metrics>,
}

impl Readers {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { next: AtomicU64::new(0), live: Mutex::new(HashMap::new()), gate: RwLock::new(()), metrics }
    }

    /// Held while making and registering a reader connection; `None` while the writer attaches
    /// the database again (the caller answers as if evicted, to retry: it runs on the async
    /// runtime and must not wait here).
    pub fn making(&self) -> Option<RwLockReadGuard<'_, ()>> {
        match self.gate.try_read() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Held by the writer while it attaches the database again: no reader connection is made.
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Register `conn` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, conn: Connection) -> ReadConn {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let eviction = Arc::new(Eviction::default());
        let entry = Entry { interrupt: conn.interrupt_handle(), eviction: eviction.clone() };
        if let Ok(mut live) = self.live.lock() {
            live.insert(id, entry);
        }
        ReadConn { conn, id, readers: self.clone(), eviction }
    }

    /// The id the next registered reader gets: readers below it exist now.
    pub fn cutoff(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Evict (again) every reader registered before `cutoff` that is still open; returns how many
    /// were open. An interrupt only stops the statement running at that moment, so a waiter calls
    /// this repeatedly until the readers are gone.
    pub fn evict_before(&self, cutoff: u64) -> usize {
        let Ok(live) = self.live.lock() else { return 0 };
        let mut n = 0;
        for (_, e) in live.iter().filter(|(id, _)| **id < cutoff) {
            if !e.eviction.is_evicted() {
                self.metrics.queries_evicted.fetch_add(1, Ordering::Relaxed);
            }
            e.eviction.evict();
            e.interrupt.interrupt();
            n += 1;
        }
        n
    }

    /// Readers open now.
    pub fn open(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }
}

/// A registered reader connection (derefs to the DuckDB connection).
pub struct ReadConn {
    conn: Connection,
    id: u64,
    readers: Arc<Readers>,
    eviction: Arc<Eviction>,
}

impl ReadConn {
    pub fn eviction(&self) -> Arc<Eviction> {
        self.eviction.clone()
    }

    /// Run `f` with this reader's eviction visible to `send_within` on this thread.
    pub fn scoped<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.eviction.clone())));
        let out = f(&self.conn);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        out
    }
}

impl Deref for ReadConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if let Ok(mut live) = self.readers.live.lock() {
            live.remove(&self.id);
        }
    }
}

thread_local! {
    /// The eviction of the reader whose query this blocking thread is running (`ReadConn::scoped`).
    static CURRENT: RefCell<Option<Arc<Eviction>>> = const { RefCell::new(None) };
}

/// The eviction of the query this thread runs, if any.
pub fn current() -> Option<Arc<Eviction>> {
    CURRENT.with(|c| c.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_reaches_only_readers_registered_before_the_cutoff() {
        let readers = Arc::new(Readers::new(Arc::new(Metrics::default())));
        let db = Connection::open_in_memory().expect("duckdb");
        let old = readers.register(db.try_clone().expect("clone"));
        let cutoff = readers.cutoff();
        let new = readers.register(db.try_clone().expect("clone"));
        assert_eq!(readers.evict_before(cutoff), 1);
        assert!(old.eviction().is_evicted());
        assert!(!new.eviction().is_evicted());
        assert_eq!(readers.metrics.queries_evicted.load(Ordering::Relaxed), 1);
        // Evicting again counts the reader once.
        assert_eq!(readers.evict_before(cutoff), 1);
        assert_eq!(readers.metrics.queries_evicted.load(Ordering::Relaxed), 1);
        drop(old);
        assert_eq!(readers.evict_before(cutoff), 0);
        assert_eq!(readers.open(), 1);
    }

    #[test]
    fn the_current_eviction_is_scoped_to_the_query() {
        let readers = Arc::new(Readers::new(Arc::new(Metrics::default())));
        let conn = readers.register(Connection::open_in_memory().expect("duckdb"));
        assert!(current().is_none());
        let inside = conn.scoped(|_| current().is_some());
        assert!(inside);
        assert!(current().is_none());
    }

    /// The DuckDB behaviour this module exists for: a committed update is kept for the snapshot
    /// of an older reader still running, and with it a share of the checkpoint lock.
    #[test]
    fn duckdb_refuses_checkpoints_while_an_older_reader_runs_after_an_update() {
        let dir = tempfile::tempdir().expect("dir");
        let a = Connection::open(dir.path().join("x.duckdb")).expect("open");
        a.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER); INSERT INTO t VALUES (1, 0);
             CREATE TABLE big AS SELECT i FROM range(100000) r(i); CHECKPOINT;",
        )
        .expect("setup");
        let (writer, other) = (a.try_clone().expect("clone"), a.try_clone().expect("clone"));
        {
            let mut stmt = a.prepare("SELECT * FROM big").expect("prepare");
            let mut stream = stmt.stream_arrow([]).expect("stream");
            assert!(stream.next().is_some(), "a first batch");
            writer.execute_batch("UPDATE t SET x = x + 1 WHERE id = 1").expect("update");
            let refused = other.execute_batch("CHECKPOINT").expect_err("refused while the reader runs");
            assert!(refused.to_string().contains("Cannot CHECKPOINT"), "{refused}");
        }
        other.execute_batch("CHECKPOINT").expect("the reader has ended");
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_eviction() {
        let readers = Arc::new(Readers::new(Arc::new(Metrics::default())));
        let conn = readers.register(Connection::open_in_memory().expect("duckdb"));
        let eviction = conn.eviction();
        let waiter = tokio::spawn(async move { eviction.evicted().await });
        tokio::task::yield_now().await;
        readers.evict_before(readers.cutoff());
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.expect("woken").expect("task");
    }
}
