//! Thread priorities: the DuckDB writer first.
//!
//! The writer is the one serial stage every stored row passes through, and the work of every
//! other thread is paced to its rate (`receiver/ingest.rs`). On a busy box it spent ~20% of its
//! time queued for a core behind that work (`schedstat`, BENCHMARKS.md, issue 11). So
//! `agent-console serve` runs every other thread below its own priority, in two tiers: the
//! threads an acknowledgement or a live message waits on (the ingest log, the pipeline, the tokio
//! runtime's threads: [`latency`], half of `--background-nice`), and the bulk work
//! ([`background`], `--background-nice` steps: decoding, the writer's drop and write-back
//! threads, the log's deletions, and SQL readers, which lower their blocking thread when they
//! start). Readers and decoding share the bulk tier, so they are as fair to one another as
//! before (a lower priority for the decode threads alone let the soak's readers starve ingest).
//!
//! Linux nice values are per thread and a new thread inherits its creator's; lowering one needs
//! no privilege, raising it back does. So the writer must be started by a thread still at the
//! collector's own priority: `serve`'s main thread, which opens the store (so do DuckDB's own
//! worker threads, started when the database opens). [`init`] records that priority before any
//! other thread starts; without it (tests, `import`, `export`) this module does nothing.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// No target: `init` was not called.
const UNSET: i32 = i32::MIN;

/// The nice value background threads run at.
static TARGET: AtomicI32 = AtomicI32::new(UNSET);

/// The nice value of the threads on the acknowledgement and live path (half as low).
static LATENCY: AtomicI32 = AtomicI32::new(UNSET);

/// One warning per process when a thread's priority cannot be lowered.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Why `init` set no target.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("cannot read this thread's priority: {0}")]
    Read(std::io::Error),
}

/// Background threads will run `steps` nice steps below the calling thread (capped at 19, the
/// lowest). Call once, on the main thread, before any other thread starts. `Ok(None)` when
/// `steps` is 0 (every thread at the same priority).
pub fn init(steps: i32) -> Result<Option<i32>, PriorityError> {
    let target = target_for(steps)?;
    TARGET.store(target.unwrap_or(UNSET), Ordering::Release);
    LATENCY.store(target_for(steps / 2)?.unwrap_or(UNSET), Ordering::Release);
    Ok(target)
}

/// The nice value `steps` below the calling thread's.
fn target_for(steps: i32) -> Result<Option<i32>, PriorityError> {
    if steps <= 0 {
        return Ok(None);
    }
    let now = current().map_err(PriorityError::Read)?;
    Ok(Some(now.saturating_add(steps).min(19)))
}

/// Run the calling thread at the background priority (nothing when `init` set none, or when the
/// thread already runs at or below it).
pub fn background() {
    lower_to_level(&TARGET);
}

/// Run the calling thread at the latency tier: half the background steps. For the threads an
/// acknowledgement or a live message waits on (the ingest log, the pipeline, the async
/// runtime): at the background priority, the SSE delivery p99 at half load was 15-41 ms,
/// at half of it 20-21 ms (BENCHMARKS.md, issue 11).
pub fn latency() {
    lower_to_level(&LATENCY);
}

fn lower_to_level(level: &AtomicI32) {
    let target = level.load(Ordering::Acquire);
    if target == UNSET {
        return;
    }
    if let Err(e) = lower_to(target) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, target, "cannot lower a background thread's priority");
        }
    }
}

/// Lower the calling thread to `target` unless it already runs at or below it.
fn lower_to(target: i32) -> std::io::Result<()> {
    if current()? < target {
        set(target)
    } else {
        Ok(())
    }
}

/// Lower the calling thread by `steps` more (the decode threads' `--ingest-nice`).
pub fn lower_by(steps: i32) -> std::io::Result<()> {
    if steps <= 0 {
        return Ok(());
    }
    set(current()?.saturating_add(steps).min(19))
}

/// The calling thread's nice value.
pub fn current() -> std::io::Result<i32> {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).map_err(std::io::Error::from)
}

fn set(nice: i32) -> std::io::Result<()> {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process-wide target stays unset here (tests run in parallel threads, and the decode
    /// pool's test checks its own threads' priority): the steps `init` and `background` take are
    /// tested one by one.
    #[test]
    fn background_threads_run_below_the_thread_that_set_the_target_and_others_are_untouched() {
        let base = current().expect("priority");
        if base > 9 {
            return; // already run at a low priority: nothing to compare
        }
        assert_eq!(target_for(0).expect("steps"), None);
        assert_eq!(target_for(5).expect("steps"), Some(base + 5));
        assert_eq!(target_for(40).expect("steps"), Some(19), "capped at the lowest priority");
        let untouched = std::thread::spawn(|| {
            background(); // no target set
            current().expect("priority")
        })
        .join()
        .expect("thread");
        assert_eq!(untouched, base, "no target: nothing changes");

        let target = base + 5;
        let (lowered, again, further) = std::thread::spawn(move || {
            lower_to(target).expect("lower");
            let lowered = current().expect("priority");
            // Idempotent: a thread started by a background thread is not lowered twice.
            lower_to(target).expect("again");
            let again = current().expect("priority");
            lower_by(2).expect("lower");
            (lowered, again, current().expect("priority"))
        })
        .join()
        .expect("thread");
        assert_eq!((lowered, again, further), (base + 5, base + 5, base + 7));
        // The thread that starts the others keeps its priority, and so does one it starts
        // without calling `background` (the writer).
        assert_eq!(current().expect("priority"), base);
        let writer = std::thread::spawn(|| current().expect("priority")).join().expect("thread");
        assert_eq!(writer, base);
    }
}
