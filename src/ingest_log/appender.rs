//! The log-writer thread. Group commit: it takes everything queued (up to `max_group_bytes`),
//! frames it into one buffer, writes it with one `pwrite` and makes it durable with one
//! `fdatasync`, then acknowledges every request in the group and hands each record to the
//! consumer in position order. A group never spans segments: when it does not fit, the current
//! segment is synced and a new preallocated one is started first. A failed write or sync fails
//! the whole group; the bytes it may have left are zeroed so that nothing unacknowledged is
//! ever replayed, and the log carries on (or refuses appends until a restart when even that fails).
//!
//! Segments a DuckDB checkpoint covers are deleted on a thread of their own (`ingest-log-gc`):
//! unlinking a 128 MiB preallocated file took ~40 ms on the measured box (ext4 mounted with
//! `discard` frees its blocks synchronously), and on the log thread every acknowledgement
//! waited for it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::record::Record;
use super::recover::Tail;
use super::segment::{self, FILE_HEADER};
use super::{Durable, LogConfig, LogError, LogState};

/// What the log thread is asked to do.
pub enum LogMsg<T> {
    Append(AppendReq<T>),
    /// Sync and stop (shutdown), even if handles are still alive somewhere.
    Close,
}

/// One append waiting for the log thread.
pub struct AppendReq<T> {
    pub record: Record,
    pub item: T,
    pub ack: oneshot::Sender<Result<Appended, LogError>>,
}

/// Where an acknowledged record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub pos: u64,
    /// The log byte count after this record.
    pub end_bytes: u64,
}

struct Writer {
    cfg: LogConfig,
    tail: Tail,
    /// Segments that exist (first position, path), oldest first; the last is the tail.
    segments: VecDeque<(u64, PathBuf)>,
    buf: Vec<u8>,
    gc: Janitor,
}

/// Deletes covered segments off the log thread, then syncs the directory. A segment not yet
/// deleted when the process dies is harmless: recovery reads from the checkpointed position on,
/// and the restarted log thread deletes the segments before it on its first group.
struct Janitor {
    tx: Option<std::sync::mpsc::Sender<Vec<PathBuf>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Janitor {
    fn start(dir: PathBuf) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<PathBuf>>();
        let spawned = std::thread::Builder::new().name("ingest-log-gc".into()).spawn(move || {
            crate::priority::background();
            for paths in rx {
                delete_segments(&dir, &paths);
            }
        });
        match spawned {
            Ok(t) => Self { tx: Some(tx), thread: Some(t) },
            Err(e) => {
                tracing::warn!(error = %e, "ingest log: no deletion thread; segments are deleted inline");
                Self { tx: None, thread: None }
            }
        }
    }

    fn delete(&self, dir: &std::path::Path, paths: Vec<PathBuf>) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(paths) {
                    delete_segments(dir, &e.0);
                }
            }
            None => delete_segments(dir, &paths),
        }
    }

    /// Finish the deletions asked for (shutdown).
    fn join(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("ingest log deletion thread panicked");
            }
        }
    }
}

fn delete_segments(dir: &std::path::Path, paths: &[PathBuf]) {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(segment = %path.display(), "ingest log: segment deleted (checkpointed)"),
            Err(e) => tracing::warn!(segment = %path.display(), error = %e, "ingest log: cannot delete a segment"),
        }
    }
    if !paths.is_empty() {
        let _ = segment::sync_dir(dir);
    }
}

impl Writer {
    /// Sync the current segment and start a new one at the next position.
    fn roll(&mut self) -> Result<(), LogError> {
        self.tail.file.sync_data().map_err(|e| LogError::io(&self.tail.path, e))?;
        let first = self.tail.next_pos;
        let (file, path) = segment::create(&self.cfg.dir, first, self.cfg.segment_bytes)?;
        self.segments.push_back((first, path.clone()));
        self.tail =
            Tail { file, path, first_pos: first, offset: FILE_HEADER, len: self.cfg.segment_bytes, next_pos: first };
        Ok(())
    }

    /// Write and sync one group; returns each record's (position, framed length).
    fn write_group<T>(&mut self, group: &[AppendReq<T>], state: &LogState) -> Result<Vec<(u64, u64)>, LogError> {
        let total: u64 = group.iter().map(|r| segment::framed_len(r.record.encoded_len())).sum();
        if self.tail.offset + total > self.tail.len {
            self.roll()?;
        }
        self.buf.clear();
        let mut out = Vec::with_capacity(group.len());
        let mut pos = self.tail.next_pos;
        for r in group {
            let before = self.buf.len();
            segment::frame_with(pos, &mut self.buf, |b| r.record.encode_into(b));
            out.push((pos, (self.buf.len() - before) as u64));
            pos += 1;
        }
        let start = self.tail.offset;
        let injected =
            state.fail_appends.load(Ordering::Acquire) > 0 && state.fail_appends.fetch_sub(1, Ordering::AcqRel) > 0;
        let written = if injected {
            Err(std::io::Error::other("injected write failure (test)"))
        } else {
            use std::os::unix::fs::FileExt;
            self.tail.file.write_all_at(&self.buf, start).and_then(|_| self.tail.file.sync_data())
        };
        if let Err(e) = written {
            // Nothing of this group may be replayed: it was not acknowledged.
            let end = start + self.buf.len() as u64;
            if let Err(z) = segment::zero_range(&self.tail.file, start, end.min(self.tail.len)) {
                state.set_broken(format!("write failed ({e}) and its bytes could not be cleared ({z})"));
            }
            return Err(LogError::io(&self.tail.path, e));
        }
        self.tail.offset = start + self.buf.len() as u64;
        self.tail.next_pos = pos;
        Ok(out)
    }

    /// Delete (on the janitor thread) segments every record of which is covered by a DuckDB
    /// checkpoint.
    fn delete_covered(&mut self, checkpointed: u64) {
        let mut covered = Vec::new();
        while self.segments.len() > 1 {
            let next_first = self.segments[1].0;
            if next_first.saturating_sub(1) > checkpointed {
                break;
            }
            let Some((_, path)) = self.segments.pop_front() else { break };
            covered.push(path);
        }
        if !covered.is_empty() {
            self.gc.delete(&self.cfg.dir, covered);
        }
    }
}

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Run the log thread until every `IngestLog` handle is dropped.
pub fn run<T>(
    cfg: LogConfig,
    tail: Tail,
    mut rx: mpsc::Receiver<LogMsg<T>>,
    state: Arc<LogState>,
    mut forward: Box<dyn FnMut(Durable<T>) + Send>,
) {
    let segments = match segment::list(&cfg.dir) {
        Ok(list) => list.into_iter().filter(|(f, _)| *f <= tail.first_pos).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "ingest log: cannot list segments");
            VecDeque::from([(tail.first_pos, tail.path.clone())])
        }
    };
    state.segments.store(1, Ordering::Relaxed);
    let max_group = cfg.max_group_bytes.max(1);
    let gc = Janitor::start(cfg.dir.clone());
    let mut w = Writer { cfg, tail, segments, buf: Vec::with_capacity(1 << 20), gc };
    let mut appended = state.appended_bytes.load(Ordering::Acquire);
    let mut last_checkpointed = 0;
    let mut closing = false;
    while !closing {
        let first = match rx.blocking_recv() {
            Some(LogMsg::Append(r)) => r,
            Some(LogMsg::Close) | None => break,
        };
        let mut size = first.record.encoded_len();
        let mut group = vec![first];
        while size < max_group {
            match rx.try_recv() {
                Ok(LogMsg::Append(r)) => {
                    size += r.record.encoded_len();
                    group.push(r);
                }
                Ok(LogMsg::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        match w.write_group(&group, &state) {
            Ok(done) => {
                state.observe_sync(started.elapsed(), group.len() as u64);
                let last = done.last().map(|d| d.0).unwrap_or(0);
                state.durable_pos.store(last, Ordering::Release);
                state.note_durable(last, wall_us());
                for (req, (pos, len)) in group.into_iter().zip(done) {
                    appended += len;
                    state.appended_bytes.store(appended, Ordering::Release);
                    let _ = req.ack.send(Ok(Appended { pos, end_bytes: appended }));
                    forward(Durable {
                        pos,
                        end_bytes: appended,
                        received_us: req.record.received_us,
                        item: Some(req.item),
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = group.len(), "ingest log: write failed; the group is refused");
                for req in group {
                    let _ = req.ack.send(Err(e.clone()));
                }
            }
        }
        let checkpointed = state.checkpointed_pos.load(Ordering::Acquire);
        if checkpointed != last_checkpointed {
            last_checkpointed = checkpointed;
            w.delete_covered(checkpointed);
        }
        state.segments.store(w.segments.len() as u64, Ordering::Relaxed);
    }
    if let Err(e) = w.tail.file.sync_data() {
        tracing::warn!(error = %e, "ingest log: final sync failed");
    }
    tracing::info!(next_position = w.tail.next_pos, "ingest log closed");
    w.gc.join();
}
