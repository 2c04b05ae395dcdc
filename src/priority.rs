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
//! While the writer is the bottleneck (the pipeline is behind, `Budget::behind`), the latency tier
//! also stops preempting it when a thread wakes ([`YieldWhileBehind`], [`follow`]: Linux's
//! `SCHED_BATCH`, the same nice value, no wakeup preemption). The ingest log wakes for every group
//! commit, ~250 times a second at full rate, the runtime's workers for every request: they were
//! the threads that took the writer's core most often (`perf` of the writer's context switches,
//! BENCHMARKS.md). At half load nothing is behind and they stay normal threads: as `SCHED_BATCH`
//! all the time, the live stream's p50 doubled (a wakeup then waits for the scheduler's tick).
//!
//! Linux nice values are per thread and a new thread inherits its creator's; lowering one needs
//! no privilege, raising it back does. So the writer must be started by a thread still at the
//! collector's own priority: `serve`'s main thread, which opens the store (so do DuckDB's own
//! worker threads, started when the database opens). [`init`] records that priority before any
//! other thread starts; without it (tests, `import`, `export`) this module does nothing.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

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
    // A thread starts as a normal thread, whatever it inherited from a thread that was yielding
    // (`follow`); only the latency tier's own threads follow that decision.
    if batched() {
        set_batched(false);
    }
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

/// How long the latency tier keeps yielding after the pipeline was last seen behind: at full
/// rate it is behind every commit or so (a few times a second), so the tier stays batched.
const YIELD_HOLD: Duration = Duration::from_secs(1);

/// Set while the latency tier should yield to the writer (`YieldWhileBehind` decides, every
/// latency-tier thread `follow`s).
static YIELDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Is the calling thread `SCHED_BATCH` now? Read from the kernel the first time (a thread
    /// inherits its creator's policy), then as `follow` set it.
    static BATCHED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Is the calling thread `SCHED_BATCH`?
fn batched() -> bool {
    BATCHED.with(|b| *b.get().get_or_insert_with(|| policy() == libc::SCHED_BATCH))
}

/// Make the calling thread `SCHED_BATCH` or a normal thread (remembered for `batched`).
fn set_batched(want: bool) {
    BATCHED.with(|b| b.set(Some(want)));
    // Taken as done even when refused (warned once): a refused call is not retried per wakeup.
    if let Err(e) = set_batch(want) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot change a thread's scheduling policy");
        }
    }
}

/// Decides, on the ingest log's thread, when the latency tier yields: while the pipeline is
/// behind and for `YIELD_HOLD` after. Does nothing when `init` set no priorities
/// (`--background-nice 0`, tests).
pub struct YieldWhileBehind {
    hold: Duration,
    last_behind: Option<Instant>,
    enabled: bool,
}

impl Default for YieldWhileBehind {
    /// Enabled when `init` set priorities.
    fn default() -> Self {
        Self::enabled(YIELD_HOLD, LATENCY.load(Ordering::Acquire) != UNSET)
    }
}

impl YieldWhileBehind {
    fn enabled(hold: Duration, enabled: bool) -> Self {
        Self { hold, last_behind: None, enabled }
    }

    /// Called on the log thread after each record it hands over, with whether the pipeline is
    /// behind now; the log thread follows at once, the others where they next wake.
    pub fn note(&mut self, behind: bool) {
        self.note_at(behind, Instant::now());
    }

    fn note_at(&mut self, behind: bool, now: Instant) {
        if !self.enabled {
            return;
        }
        if behind {
            self.last_behind = Some(now);
        }
        let want = self.last_behind.is_some_and(|t| now.saturating_duration_since(t) < self.hold);
        YIELDING.store(want, Ordering::Relaxed);
        follow();
    }
}

/// A latency-tier thread takes the current decision: `SCHED_BATCH` while the tier yields, a
/// normal thread otherwise. Called where the thread wakes (the log thread after each record it
/// hands over, the pipeline for each input, the runtime's workers when they unpark): one atomic
/// load unless the decision changed.
pub fn follow() {
    let want = YIELDING.load(Ordering::Relaxed);
    if batched() != want {
        set_batched(want);
    }
}

/// The calling thread's policy: `SCHED_BATCH` or back to `SCHED_OTHER`, its nice value kept.
/// Neither needs a privilege (both are fair-share policies).
#[allow(unsafe_code)]
fn set_batch(batch: bool) -> std::io::Result<()> {
    let policy = if batch { libc::SCHED_BATCH } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` is a valid `sched_param` for the call.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy (`libc::SCHED_*`).
#[allow(unsafe_code)]
fn policy() -> i32 {
    // SAFETY: pid 0 is the calling thread; the call only reads.
    unsafe { libc::sched_getscheduler(0) }
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

    /// The deciding thread is batched while the pipeline is behind and for the hold after,
    /// normal again once the hold has passed, its nice value unchanged; another thread follows
    /// the decision when it calls `follow`; disabled (no priorities set), nothing changes.
    #[test]
    fn the_latency_tier_yields_while_behind_and_for_the_hold_after() {
        std::thread::spawn(|| {
            let nice = current().expect("priority");
            let hold = Duration::from_secs(1);
            let t0 = Instant::now();
            let mut y = YieldWhileBehind::enabled(hold, true);
            y.note_at(false, t0);
            assert_eq!(policy(), libc::SCHED_OTHER, "never behind: a normal thread");
            y.note_at(true, t0);
            assert_eq!(policy(), libc::SCHED_BATCH, "behind: batched");
            let other = std::thread::spawn(|| {
                // Started by a yielding thread: inherited, until its tier is set.
                let inherited = policy();
                background();
                let started = policy();
                follow();
                (inherited, started, policy())
            })
            .join()
            .expect("thread");
            assert_eq!(
                other,
                (libc::SCHED_BATCH, libc::SCHED_OTHER, libc::SCHED_BATCH),
                "a tier's thread starts normal, and follows when it calls"
            );
            y.note_at(false, t0 + hold / 2);
            assert_eq!(policy(), libc::SCHED_BATCH, "within the hold: still batched");
            assert_eq!(current().expect("priority"), nice, "the nice value is kept");
            y.note_at(false, t0 + hold);
            assert_eq!(policy(), libc::SCHED_OTHER, "after the hold: normal again");
            assert_eq!(current().expect("priority"), nice);

            let mut off = YieldWhileBehind::enabled(hold, false);
            off.note_at(true, t0);
            assert_eq!(policy(), libc::SCHED_OTHER, "disabled: untouched");
        })
        .join()
        .expect("thread");
    }

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
