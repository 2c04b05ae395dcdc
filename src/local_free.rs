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
use std::sync::{Arc, RwLock, Weak};
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

type Slot = (SyncSender<Box<dyn Send>>, Weak<()>);

/// Every home's queue by id; a slot whose `Home` is gone is reused.
static HOMES: RwLock<Vec<Slot>> = RwLock::new(Vec::new());

/// A thread's queue of memory to free. Dropping it ends the thread's registration.
pub struct Home {
    id: u8,
    rx: Receiver<Box<dyn Send>>,
    _alive: Arc<()>,
}

impl Home {
    /// Register the calling thread, with room for `waiting` items (`None` when 255 homes are
    /// alive: it then frees nothing of anyone's, and what it makes is freed where it was before).
    pub fn here(waiting: usize) -> Option<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(waiting.max(1));
        let alive = Arc::new(());
        let slot = (tx, Arc::downgrade(&alive));
        let mut homes = HOMES.write().unwrap_or_else(|p| p.into_inner());
        let id = match homes.iter().position(|(_, w)| w.strong_count() == 0) {
            Some(i) => {
                homes[i] = slot;
                i
            }
            None if homes.len() < usize::from(NONE) => {
                homes.push(slot);
                homes.len() - 1
            }
            None => return None,
        };
        let id = u8::try_from(id).ok()?;
        HERE.with(|h| h.set(id));
        Some(Self { id, rx, _alive: alive })
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
    match homes.get(usize::from(origin.0)) {
        Some((tx, _)) => tx.try_send(items).map_err(|e| match e {
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

    #[test]
    fn memory_goes_back_to_the_thread_that_made_it() {
        let (origin_tx, origin_rx) = channel();
        let (stop_tx, stop_rx) = channel::<()>();
        let home_thread = std::thread::spawn(move || {
            let home = Home::here(ROWS_WAITING).expect("a home");
            // What this thread makes carries its origin.
            origin_tx.send((Origin::default().0, home.origin().0)).expect("send");
            while stop_rx.try_recv().is_err() {
                std::thread::sleep(home.wait(false).min(Duration::from_millis(1)));
            }
            home.free_returned();
            std::thread::current().id()
        });
        let (made, own) = origin_rx.recv().expect("origin");
        assert_eq!(made, own);
        assert_ne!(made, NONE);
        assert_eq!(Origin::default().0, NONE, "this thread has no home");

        let (dropped_tx, dropped_rx) = channel();
        assert!(send(Origin(made), Box::new(Tell(dropped_tx.clone()))).is_ok());
        let freed_on = dropped_rx.recv().expect("freed");
        // No home: the caller keeps the memory.
        let back = send(Origin::none(), Box::new(Tell(dropped_tx))).expect_err("no home");
        drop(back);
        assert_eq!(dropped_rx.recv().expect("freed here"), std::thread::current().id());
        stop_tx.send(()).expect("stop");
        let home_id = home_thread.join().expect("joined");
        assert_eq!(freed_on, home_id, "freed on its home's thread");
    }

    #[test]
    fn a_full_queue_gives_the_memory_back() {
        let (made_tx, made_rx) = channel();
        let (stop_tx, stop_rx) = channel::<()>();
        let t = std::thread::spawn(move || {
            let home = Home::here(COLUMNS_WAITING).expect("a home");
            made_tx.send(home.origin()).expect("send");
            // Never drains until told to stop.
            let _ = stop_rx.recv();
            home.free_returned()
        });
        let origin = made_rx.recv().expect("origin");
        for _ in 0..COLUMNS_WAITING {
            assert!(send(origin, Box::new([0u8; 64])).is_ok());
        }
        assert!(send(origin, Box::new([0u8; 64])).is_err(), "full: back to the caller");
        stop_tx.send(()).expect("stop");
        assert_eq!(t.join().expect("joined"), COLUMNS_WAITING);
    }
}
