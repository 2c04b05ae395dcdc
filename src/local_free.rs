//! Memory freed on the thread that allocated it. A batch's rows are made on an `ingest-heavy`
//! thread and its Arrow columns on `writer-prep`, and both were freed on drop threads
//! (`store::writer::Dropper`), so every free crossed threads in mimalloc: an atomic push onto the
//! page's remote list, which the owner collects later. Handed back to the thread that made them,
//! the rows and columns are freed on mimalloc's local path: at full rate the drop threads' ~0.3 us
//! of CPU per span became ~0.15 on the decode threads (BENCHMARKS.md, issue 11).
//!
//! A thread that makes such memory registers a `Home` and drains it between its jobs
//! (`Home::free_returned`, `Home::wait`); `Origin` (a field of `Batch` and of the writer's
//! columns) records the home something was made on, and `send` hands memory back to that home's
//! bounded queue. A full queue or a home that is gone gives the memory back to the caller, which
//! frees it as before.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::RwLock;
use std::time::Duration;

/// No home.
const NONE: u8 = u8::MAX;

/// Batches' rows a decode thread may have waiting to be freed (~0.9 MB each at 512 spans).
pub const ROWS_WAITING: usize = 8;
/// Transactions' (or streamed chunks') columns `writer-prep` may have waiting: as many as the
/// drop threads held before, so a committed transaction still waits here at most twice over.
pub const COLUMNS_WAITING: usize = 2;

/// How long a home's thread waits for its next job while memory is coming back, and when it is
/// idle (memory handed back meanwhile waits at most this long).
const BUSY_WAIT: Duration = Duration::from_millis(5);
const IDLE_WAIT: Duration = Duration::from_millis(100);

thread_local! {
    static HERE: Cell<u8> = const { Cell::new(NONE) };
}

/// Every home's queue by id; a `Home` empties its slot when dropped, and a new one takes the
/// first empty slot.
static HOMES: RwLock<Vec<Option<Queue>>> = RwLock::new(Vec::new());

/// Where a home's memory is handed back.
type Queue = SyncSender<Box<dyn Send>>;

/// A thread's queue of memory to free. Dropping it ends the thread's registration.
pub struct Home {
    id: u8,
    rx: Receiver<Box<dyn Send>>,
}

impl Home {
    /// Register the calling thread, with room for `waiting` items (`None` when 255 homes are
    /// alive: it then frees nothing of anyone's, and what it makes is freed where it was before).
    pub fn here(waiting: usize) -> Option<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(waiting.max(1));
        let mut homes = HOMES.write().unwrap_or_else(|p| p.into_inner());
        let id = match homes.iter().position(Option::is_none) {
            Some(i) => i,
            None if homes.len() < usize::from(NONE) => {
                homes.push(None);
                homes.len() - 1
            }
            None => return None,
        };
        let id = u8::try_from(id).ok()?;
        homes[usize::from(id)] = Some(tx);
        HERE.with(|h| h.set(id));
        Some(Self { id, rx })
    }

    /// Free what other threads handed back; returns how many items.
    pub fn free_returned(&self) -> usize {
        let mut n = 0;
        while let Ok(items) = self.rx.try_recv() {
            drop(items);
            n += 1;
        }
        n
    }

    /// Free what came back, then how long to wait for the next job: short while jobs or memory
    /// keep coming, longer once neither came.
    pub fn wait(&self, worked: bool) -> Duration {
        let freed = self.free_returned() > 0;
        if worked || freed {
            BUSY_WAIT
        } else {
            IDLE_WAIT
        }
    }

    /// This home as an origin.
    #[cfg(test)]
    fn origin(&self) -> Origin {
        Origin(self.id)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Some(slot) = HOMES.write().unwrap_or_else(|p| p.into_inner()).get_mut(usize::from(self.id)) {
            *slot = None;
        }
        HERE.with(|h| {
            if h.get() == self.id {
                h.set(NONE);
            }
        });
    }
}

/// `home.wait(worked)`, or the idle wait for a thread without a home.
pub fn wait(home: &Option<Home>, worked: bool) -> Duration {
    home.as_ref().map_or(IDLE_WAIT, |h| h.wait(worked))
}

/// The home something was made on (`Default` reads the calling thread's). Batches compare equal
/// whatever their origin.
#[derive(Debug, Clone, Copy)]
pub struct Origin(u8);

impl Default for Origin {
    fn default() -> Self {
        Origin(HERE.with(Cell::get))
    }
}

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Origin {
    /// Made on no home.
    #[cfg(test)]
    fn none() -> Self {
        Origin(NONE)
    }
}

/// Hand `items` to their home; gives them back when its queue is full or there is no home.
pub fn send(origin: Origin, items: Box<dyn Send>) -> Result<(), Box<dyn Send>> {
    if origin.0 == NONE {
        return Err(items);
    }
    let homes = HOMES.read().unwrap_or_else(|p| p.into_inner());
    match homes.get(usize::from(origin.0)).and_then(Option::as_ref) {
        Some(tx) => tx.try_send(items).map_err(|e| match e {
            TrySendError::Full(i) | TrySendError::Disconnected(i) => i,
        }),
        None => Err(items),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::thread::ThreadId;

    /// Reports the thread it is dropped on.
    struct Tell(std::sync::mpsc::Sender<ThreadId>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    /// A thread with a home of `waiting` items: its origin, a way to stop it, and the thread,
    /// which returns its id and how many items it freed after being told to stop. It frees what
    /// comes back meanwhile only when `drains`.
    fn spawn_home(
        waiting: usize,
        drains: bool,
    ) -> (Origin, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<(ThreadId, usize)>) {
        let (origin_tx, origin_rx) = channel();
        let (stop_tx, stop_rx) = channel::<()>();
        let thread = std::thread::spawn(move || {
            let home = Home::here(waiting).expect("a home");
            // What this thread makes carries its origin.
            assert_eq!(Origin::default().0, home.origin().0);
            origin_tx.send(home.origin()).expect("send");
            if drains {
                while stop_rx.try_recv().is_err() {
                    std::thread::sleep(home.wait(false).min(Duration::from_millis(1)));
                }
            } else {
                let _ = stop_rx.recv();
            }
            (std::thread::current().id(), home.free_returned())
        });
        (origin_rx.recv().expect("origin"), stop_tx, thread)
    }

    #[test]
    fn memory_goes_back_to_the_thread_that_made_it() {
        let (made, stop_tx, home_thread) = spawn_home(ROWS_WAITING, true);
        assert_ne!(made.0, NONE);
        assert_eq!(Origin::default().0, NONE, "this thread has no home");

        let (dropped_tx, dropped_rx) = channel();
        assert!(send(made, Box::new(Tell(dropped_tx.clone()))).is_ok());
        let freed_on = dropped_rx.recv().expect("freed");
        // No home: the caller keeps the memory.
        let back = send(Origin::none(), Box::new(Tell(dropped_tx))).expect_err("no home");
        drop(back);
        assert_eq!(dropped_rx.recv().expect("freed here"), std::thread::current().id());
        stop_tx.send(()).expect("stop");
        let (home_id, _) = home_thread.join().expect("joined");
        assert_eq!(freed_on, home_id, "freed on its home's thread");
    }

    #[test]
    fn a_full_queue_gives_the_memory_back() {
        // Never drains until told to stop.
        let (origin, stop_tx, t) = spawn_home(COLUMNS_WAITING, false);
        for _ in 0..COLUMNS_WAITING {
            assert!(send(origin, Box::new([0u8; 64])).is_ok());
        }
        assert!(send(origin, Box::new([0u8; 64])).is_err(), "full: back to the caller");
        stop_tx.send(()).expect("stop");
        assert_eq!(t.join().expect("joined").1, COLUMNS_WAITING);
    }
}
