//! The heavy steps of bulk exports (decompressing, decoding and mapping a request over
//! `OFFLOAD_WEIGHT`) run here, on a few long-lived threads (one per core), instead of on the async
//! runtime: its workers then stay free for the small requests that queued behind a bulk export
//! before (hook calls, probes, SSE, the API), and bulk work takes no more of the cores from
//! DuckDB's checkpoint than it did on the workers. Fixed threads rather than tokio's elastic
//! blocking pool: each allocating thread keeps its own allocator heap, and a pool that grows and
//! shrinks under load spreads the same work over more of them (BENCHMARKS.md, issue 11).
//!
//! The threads run in the bulk tier (`crate::priority::background`, below the DuckDB writer and
//! the acknowledgement path). `--ingest-nice` can run them lower still, below the readers they
//! share that tier with: off by default, since with readers and live subscribers on the same
//! cores that let them starve ingest (BENCHMARKS.md, issue 11).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::ingest::IngestError;

/// Work above this weight (wire bytes to decode or decompress, about 1 KiB per record to map)
/// goes to the pool; lighter work runs where it is. A 512-span export is ~430 KB.
pub const OFFLOAD_WEIGHT: usize = 64 * 1024;

/// Jobs that may wait for a thread (each request also holds its memory reservation meanwhile).
const QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// The pool; its threads end when the last handle is dropped.
pub struct HeavyPool {
    tx: SyncSender<Job>,
}

impl HeavyPool {
    /// `threads` threads at the bulk tier (when `priority::init` set one), each `nice` steps below it.
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("ingest-heavy-{i}")).spawn(move || {
                crate::priority::background();
                if let Err(e) = crate::priority::lower_by(nice) {
                    tracing::warn!(error = %e, nice, "cannot lower the priority of an ingest thread");
                }
                work(&rx, crate::local_free::Home::here(crate::local_free::ROWS_WAITING))
            })?;
        }
        Ok(Self { tx })
    }

    /// One thread per core.
    pub fn per_core(nice: i32) -> std::io::Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()), nice)
    }

    /// Run `f` here when it is light (under `OFFLOAD_WEIGHT`), else on the pool. A panic in `f`
    /// fails this request only; a full queue is an overload (503 / UNAVAILABLE, retried).
    pub async fn run<T: Send + 'static>(
        &self,
        weight: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IngestError> {
        if weight < OFFLOAD_WEIGHT {
            return Ok(f());
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
        });
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => IngestError::Overloaded,
            TrySendError::Disconnected(_) => IngestError::Unavailable("shutting down".into()),
        })?;
        match result.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(IngestError::Unavailable("decoding failed unexpectedly".into())),
            Err(_) => Err(IngestError::Unavailable("shutting down".into())),
        }
    }
}

/// A pool thread: runs jobs in turn, and between them frees the rows it made that came back
/// (`local_free`).
fn work(rx: &Mutex<Receiver<Job>>, home: Option<crate::local_free::Home>) {
    let mut worked = false;
    loop {
        let wait = crate::local_free::wait(&home, worked);
        // The lock is held only while waiting for the next job, never while running one.
        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(wait);
        worked = match job {
            Ok(job) => {
                job();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn light_work_runs_in_place_and_heavy_work_on_the_pool() {
        let pool = HeavyPool::new(1, 3).expect("pool");
        let here = std::thread::current().id();
        let light = pool.run(OFFLOAD_WEIGHT - 1, || std::thread::current().id()).await.expect("light");
        assert_eq!(light, here, "light work stays where it is");
        let name = pool.run(OFFLOAD_WEIGHT, || std::thread::current().name().map(str::to_owned)).await.expect("heavy");
        assert_eq!(name.as_deref(), Some("ingest-heavy-0"), "heavy work runs on the pool's thread");
        // A panic fails this request only; the thread goes on serving.
        let err = pool.run(OFFLOAD_WEIGHT, || -> u8 { panic!("bad input") }).await.expect_err("panicked");
        assert!(matches!(err, IngestError::Unavailable(_)), "{err:?}");
        let again = pool.run(OFFLOAD_WEIGHT, || std::thread::current().name().map(str::to_owned)).await.expect("after");
        assert_eq!(again.as_deref(), Some("ingest-heavy-0"));
        // The pool's thread runs 3 steps below this one (or at the lowest, 19).
        let here_nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice");
        let pool_nice = pool
            .run(OFFLOAD_WEIGHT, || rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("ran")
            .expect("nice");
        assert_eq!(pool_nice, (here_nice + 3).min(19));
    }

    /// Reports the name of the thread it is dropped on.
    struct Tell(std::sync::mpsc::Sender<Option<String>>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[tokio::test]
    async fn what_the_pool_made_is_freed_on_its_thread() {
        let pool = HeavyPool::new(1, 0).expect("pool");
        // A batch mapped on the pool carries the thread as its origin.
        let batch = pool.run(OFFLOAD_WEIGHT, crate::model::records::Batch::default).await.expect("ran");
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(crate::local_free::send(batch.origin, Box::new(Tell(tx.clone()))).is_ok());
        let freed_on = tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(30)))
            .await
            .expect("joined")
            .expect("freed within the idle wait");
        assert_eq!(freed_on.as_deref(), Some("ingest-heavy-0"));
        // Made here (no home): nowhere to send it.
        let here = crate::model::records::Batch::default();
        assert!(crate::local_free::send(here.origin, Box::new(Tell(tx))).is_err());
    }
}
