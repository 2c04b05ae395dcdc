//! Paced write-back of the DuckDB file while a checkpoint writes it.
//!
//! DuckDB writes no WAL here (`recovery.rs`), so a checkpoint is the only time the database file
//! is written, and it writes everything committed since the previous one: tens to hundreds of
//! MB into the page cache, then one `fsync`. That `fsync` sends the whole burst to the disk at
//! once, and the ingest log's `fdatasync` (which every acknowledgement and every live message
//! waits for) queues behind it: the log's sync p99 went to 110-172 ms, max 530-865 ms, at half
//! load (BENCHMARKS.md, issue 11). While a checkpoint runs, this thread asks the kernel to write
//! back what the checkpoint has dirtied so far, every few milliseconds, and waits for it
//! (`fdatasync` of the file): the disk gets the checkpoint in small pieces the log's
//! syncs can slip between. Measured: the worst acknowledgement at half load halved, the p99s did
//! not move (BENCHMARKS.md, 2026-12-05). It changes no data and no ordering DuckDB relies on:
//! DuckDB still syncs its file before it writes the header.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Checkpoints running now (the writer's).
    active: u32,
    stop: bool,
    /// Write-backs done (for tests).
    passes: u64,
}

/// The pacer: a thread that sleeps unless a checkpoint is running.
pub struct Writeback {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// While alive, a checkpoint is running and the file is written back as it goes.
pub struct Pacing<'a>(&'a Writeback);

impl Writeback {
    /// Start the pacer for the database file at `path`. `None` (logged) when the file cannot be
    /// opened or the thread cannot start: checkpoints then run unpaced, as before.
    pub fn start(path: &Path, every: Duration) -> Option<Writeback> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the database file for paced write-back");
                return None;
            }
        };
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let st = state.clone();
        let path: PathBuf = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("duckdb-writeback".into())
            .spawn(move || {
                crate::priority::background();
                run(&file, &path, every, &st)
            })
            .map_err(|e| tracing::warn!(error = %e, "cannot start the write-back thread"))
            .ok()?;
        Some(Writeback { state, thread: Some(thread) })
    }

    /// Mark a checkpoint as running until the returned guard is dropped.
    pub fn during(&self) -> Pacing<'_> {
        let (lock, cv) = &*self.state;
        if let Ok(mut s) = lock.lock() {
            s.active += 1;
        }
        cv.notify_all();
        Pacing(self)
    }

    /// How many write-backs ran so far.
    pub fn passes(&self) -> u64 {
        self.state.0.lock().map(|s| s.passes).unwrap_or(0)
    }
}

impl Drop for Pacing<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.0.lock() {
            s.active = s.active.saturating_sub(1);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut s) = lock.lock() {
            s.stop = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("write-back thread panicked");
            }
        }
    }
}

fn run(file: &std::fs::File, path: &Path, every: Duration, state: &(Mutex<State>, Condvar)) {
    let (lock, cv) = state;
    loop {
        // Sleep until a checkpoint starts (or stop).
        {
            let Ok(mut s) = lock.lock() else { return };
            while s.active == 0 && !s.stop {
                s = match cv.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if s.stop {
                return;
            }
        }
        std::thread::sleep(every);
        if let Err(e) = write_back(file) {
            // Not fatal: DuckDB's own fsync still makes the checkpoint durable.
            tracing::warn!(path = %path.display(), error = %e, "paced write-back stopped");
            return;
        }
        if let Ok(mut s) = lock.lock() {
            s.passes += 1;
        }
    }
}

/// Write back every dirty page of the file and wait for it (`fdatasync`: std's safe call; the
/// crate forbids `unsafe`, which `sync_file_range` would need).
fn write_back(file: &std::fs::File) -> std::io::Result<()> {
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pacing_writes_back_and_stops_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let mut f = std::fs::File::create(&path).expect("create");
        let wb = Writeback::start(&path, Duration::from_millis(1)).expect("pacer");
        // Idle: no checkpoint, no write-back.
        assert_eq!(wb.passes(), 0);
        {
            let _p = wb.during();
            f.write_all(&vec![7u8; 1 << 20]).expect("write");
            // Waits for the thread's work, not for a time: it writes back while a checkpoint runs.
            let give_up = std::time::Instant::now() + Duration::from_secs(60);
            while wb.passes() < 3 && std::time::Instant::now() < give_up {
                std::thread::yield_now();
            }
            assert!(wb.passes() >= 3, "the file is written back while a checkpoint runs");
        }
        drop(wb); // joins the thread: returns only if it stops
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 1 << 20);
    }
}
