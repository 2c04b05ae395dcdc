//! The hub: one publisher task numbers the messages of each committed batch from one counter
//! (a batch is one `Entry`: a run of ids, serialised lazily) and keeps the newest entries in one
//! ring, bounded in messages and in bytes: the resume window and the only buffer of the stream.
//! Subscribers read the ring themselves, one entry at a time (a `watch` of the message count
//! wakes them), so what the stream holds is the ring plus at most one entry per subscriber,
//! however many subscribers stall. One that falls more than `buffer` messages (or out of the
//! ring) behind skips whole entries and gets a `gap` with the exact count. The writer only ever
//! `try_send`s a batch to the publisher, so a slow or dead client never slows ingest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::filter::Filter;
use super::message::{self, Draft, Entry, Message};
use crate::model::records::Batch;
use crate::store::writer::CommitHook;

/// Sizes and timing of the live stream.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Messages kept for resuming (`Last-Event-ID` / `?since=`); the ring holds at least
    /// `buffer` of them, and always the newest entry.
    pub retention: usize,
    /// Bytes kept for resuming, roughly (`Entry::bytes`); 0: no byte bound. The newest entry is
    /// always kept.
    pub retention_bytes: u64,
    /// Messages a subscriber may fall behind before it skips whole entries with a `gap` (the
    /// newest entry is always delivered whole).
    pub buffer: usize,
    /// Interval of `heartbeat` messages.
    pub heartbeat: Duration,
    /// Committed batches waiting for the publisher; beyond it batches are dropped and counted.
    pub queue: usize,
    /// Ids of this run start after this value. The server uses the start time in microseconds, so
    /// ids keep increasing across restarts and an id from an earlier run is recognised as such.
    pub id_base: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            retention: 20_000,
            retention_bytes: crate::config::DEFAULT_LIVE_RETENTION_MIB << 20,
            buffer: 1024,
            heartbeat: Duration::from_secs(15),
            queue: 1024,
            id_base: 0,
        }
    }
}

struct Ring {
    entries: VecDeque<Arc<Entry>>,
    /// Messages in `entries`.
    retained: u64,
    /// `Entry::bytes` of `entries`.
    retained_bytes: u64,
    last_id: u64,
    /// Messages published in this run (the next entry's `seq`).
    seq: u64,
    /// (last id, seq after it) of entries no longer retained, newest last, bounded: counts what a
    /// client resuming from before the ring missed.
    evicted: VecDeque<(u64, u64)>,
}

/// Evicted entries remembered for counting gaps.
const EVICTED_INDEX: usize = 65_536;

impl Ring {
    /// Messages published after id `since` that are no longer retained (None: unknown, older
    /// than the index).
    fn missed_before_ring(&self, since: u64) -> Option<u64> {
        let oldest_seq = self.entries.front().map_or(self.seq, |e| e.seq);
        let Some(first) = self.evicted.front() else {
            // Nothing evicted yet: nothing missed. (An index trimmed to empty cannot count.)
            return (oldest_seq == 0).then_some(0);
        };
        if since < first.0 {
            return None;
        }
        // The last evicted entry ending at or before `since`.
        let i = self.evicted.partition_point(|(last, _)| *last <= since);
        let seq_after = if i == 0 { first.1 } else { self.evicted[i - 1].1 };
        Some(oldest_seq.saturating_sub(seq_after))
    }
}

/// The live stream hub, shared by the publisher and every subscriber.
pub struct Hub {
    ring: Mutex<Ring>,
    /// The ring's message count (`Ring::seq`), sent after each push: wakes the subscribers.
    tx: watch::Sender<u64>,
    cfg: HubConfig,
    /// Rows dropped because the publisher queue was full; reported as the next `gap`.
    dropped: Arc<AtomicU64>,
    cancel: CancellationToken,
    /// Ids of this run start after this value (see `set_id_base`).
    id_base: AtomicU64,
    /// Ids up to this one will be published by the replay of the ingest log at start: a client
    /// resuming from one of them is early, not from another run.
    replay_until: AtomicU64,
    /// Extra fields of `session` summaries (control's capabilities), set once at start-up.
    session_extra: std::sync::OnceLock<message::SessionExtra>,
    /// Extra fields of `model_call` messages (billing), set once at start-up.
    call_extra: std::sync::OnceLock<message::CallExtra>,
}

/// A batch's messages are numbered from `log position << ID_BITS`, so a record replayed from the
/// ingest log after a restart gets the ids it had before (clients resuming with `Last-Event-ID`
/// neither miss nor repeat it). Messages not from a record (timers, control) take the next id.
pub const ID_BITS: u32 = 20;

impl Hub {
    /// A hub whose subscriptions end when `cancel` fires (server shutdown).
    pub fn new(cfg: HubConfig, cancel: CancellationToken) -> Arc<Hub> {
        let (tx, _) = watch::channel(0);
        let ring = Ring {
            entries: VecDeque::new(),
            retained: 0,
            retained_bytes: 0,
            last_id: cfg.id_base,
            seq: 0,
            evicted: VecDeque::new(),
        };
        Arc::new(Hub {
            ring: Mutex::new(ring),
            tx,
            cfg,
            dropped: Arc::new(AtomicU64::new(0)),
            cancel,
            id_base: AtomicU64::new(cfg.id_base),
            replay_until: AtomicU64::new(0),
            session_extra: std::sync::OnceLock::new(),
            call_extra: std::sync::OnceLock::new(),
        })
    }

    /// Add fields to every `session` summary from now on (set once; later calls are ignored).
    pub fn set_session_extra(&self, f: message::SessionExtra) {
        let _ = self.session_extra.set(f);
    }

    /// Add fields to every `model_call` message from now on (set once; later calls are ignored).
    pub fn set_call_extra(&self, f: message::CallExtra) {
        let _ = self.call_extra.set(f);
    }

    fn id_base(&self) -> u64 {
        self.id_base.load(Ordering::Acquire)
    }

    /// Ids of this run start after `base` (the server passes the ids of the last record DuckDB
    /// held, so ids continue across restarts and replayed records keep theirs).
    /// The replay at start will publish ids up to `last` (records up to the log's durable end).
    pub fn set_replay_until(&self, last: u64) {
        self.replay_until.store(last, Ordering::Release);
    }

    pub fn set_id_base(&self, base: u64) {
        self.id_base.store(base, Ordering::Release);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.last_id = ring.last_id.max(base);
    }

    /// Start the publisher task (on the current tokio runtime) and return the writer's commit hook.
    /// The hook never blocks: if the publisher queue is full the batch is dropped and counted, and
    /// the publisher later sends everyone a `gap` with that count. The task ends when the writer
    /// drops the hook.
    pub fn start_publisher(self: &Arc<Self>) -> CommitHook {
        let (tx, mut rx) = mpsc::channel::<Arc<Batch>>(self.cfg.queue.max(1));
        let dropped = self.dropped.clone();
        let hub = self.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                hub.report_dropped();
                let hint = batch.log_pos << ID_BITS;
                let extra =
                    message::Extras { session: hub.session_extra.get().cloned(), call: hub.call_extra.get().cloned() };
                hub.push(hint, |id| Entry::batch_with(id, batch, extra));
            }
            hub.report_dropped();
        });
        Box::new(move |batch: Arc<Batch>| {
            let n = message::count(&batch);
            if n > 0 && tx.try_send(batch).is_err() {
                dropped.fetch_add(n, Ordering::Relaxed);
            }
        })
    }

    fn report_dropped(&self) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(dropped_rows = n, "live stream: publisher queue full, rows not streamed");
            let data = json!({ "missed": n, "reason": "publisher queue full" }).to_string();
            self.publish(Draft {
                kind: message::GAP,
                session_id: None,
                agent_id: None,
                task_id: None,
                data: data.into(),
            });
        }
    }

    /// Number an entry, retain it and broadcast it (one send for all subscribers).
    fn push(&self, hint: u64, make: impl FnOnce(u64) -> Entry) -> u64 {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = make(hint.max(ring.last_id + 1));
        if e.len == 0 {
            return ring.last_id;
        }
        e.seq = ring.seq;
        let e = Arc::new(e);
        ring.seq += e.len;
        ring.last_id = e.last_id();
        let evict = |ring: &mut Ring, old: Arc<Entry>| {
            ring.retained -= old.len;
            ring.retained_bytes -= old.bytes;
            if ring.evicted.len() >= EVICTED_INDEX {
                ring.evicted.pop_front();
            }
            ring.evicted.push_back((old.last_id(), old.seq + old.len));
        };
        ring.retained += e.len;
        ring.retained_bytes += e.bytes;
        ring.entries.push_back(e);
        let (keep, max_bytes) = (self.cfg.retention.max(self.cfg.buffer).max(1) as u64, self.cfg.retention_bytes);
        while ring.entries.len() > 1
            && (ring.retained - ring.entries[0].len >= keep || (max_bytes > 0 && ring.retained_bytes > max_bytes))
        {
            if let Some(old) = ring.entries.pop_front() {
                evict(&mut ring, old);
            }
        }
        // Under the lock, so the counts a subscriber sees only grow; never blocks.
        self.tx.send_replace(ring.seq);
        ring.last_id
    }

    /// Publish one message (numbered, retained, broadcast); returns its id.
    pub fn publish(&self, d: Draft) -> u64 {
        self.push(0, |id| Entry::one(id, d))
    }

    /// Subscriptions open now (SSE, WebSocket and in-process ones), for publishers whose
    /// messages cost a query: with nobody listening they can keep their changes for later.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The heartbeat interval (also the SSE keep-alive interval).
    pub fn heartbeat(&self) -> Duration {
        self.cfg.heartbeat
    }

    /// The id of the newest message published so far (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).last_id
    }

    /// Subscribe: live messages from now on, after replaying retained messages with id > `since`
    /// that match `filter` (preceded by a `gap` if part of that range is no longer retained). An
    /// id newer than any published (a previous process's id) resumes from the oldest retained.
    pub fn subscribe(self: &Arc<Self>, since: Option<u64>, filter: Filter) -> Subscription {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        // Under the lock: the position below and the wake-up channel agree.
        let rx = self.tx.subscribe();
        let mut front = VecDeque::new();
        let oldest_seq = ring.entries.front().map_or(ring.seq, |e| e.seq);
        let (cursor, start, seq_next) = match since {
            None => (ring.last_id, ring.last_id, ring.seq),
            Some(s) if s < self.id_base() || s > ring.last_id.max(self.replay_until.load(Ordering::Acquire)) => {
                // An id of an earlier run (or from nowhere): what that run published after it and
                // this one did not replay cannot be counted; say so, then replay all this run
                // retains.
                let data = json!({ "missed": null, "reason": "collector restarted since this id" });
                front.push_back(Arc::new(Message::control(self.id_base(), message::GAP, &data)));
                if oldest_seq > 0 {
                    let data = json!({ "missed": oldest_seq });
                    front.push_back(Arc::new(Message::control(self.id_base(), message::GAP, &data)));
                }
                let oldest = ring.entries.front().map_or(ring.last_id + 1, |e| e.first_id);
                (self.id_base().max(oldest.saturating_sub(1)), self.id_base(), oldest_seq)
            }
            Some(since) => {
                let oldest = ring.entries.front().map_or(ring.last_id + 1, |e| e.first_id);
                let mut seq_next = oldest_seq;
                if since < oldest.saturating_sub(1) {
                    let missed = ring.missed_before_ring(since);
                    if missed != Some(0) {
                        let data = match missed {
                            Some(n) => json!({ "missed": n }),
                            None => json!({ "missed": null, "reason": "older than the retained window" }),
                        };
                        front.push_back(Arc::new(Message::control(since, message::GAP, &data)));
                    }
                } else {
                    // Within a retained entry, the messages up to `since` count as seen.
                    let first = ring.entries.partition_point(|e| e.last_id() <= since);
                    seq_next = match ring.entries.get(first) {
                        Some(e) if e.first_id <= since => e.seq + (since - e.first_id + 1),
                        Some(e) => e.seq,
                        None => ring.seq,
                    };
                }
                (since.max(oldest.saturating_sub(1)), since, seq_next)
            }
        };
        let live_from = ring.seq;
        drop(ring);
        let period = self.cfg.heartbeat.max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Subscription {
            hub: self.clone(),
            live_from,
            rx,
            front,
            current: None,
            filter,
            cursor,
            start,
            seq_next,
            heartbeat,
            cancel: self.cancel.clone(),
        }
    }

    /// The entry holding message `seq_next` (or the first after it still retained) for a
    /// subscriber; past its resume backlog (from `live_from` on), one more than `buffer` messages
    /// behind the newest skips to the oldest entry within that bound (always at least the
    /// newest). None: nothing new.
    fn next_entry(&self, seq_next: u64, live_from: u64) -> Option<Arc<Entry>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.seq <= seq_next {
            return None;
        }
        let buffer = self.cfg.buffer.max(1) as u64;
        let mut i = ring.entries.partition_point(|e| e.seq + e.len <= seq_next);
        if seq_next >= live_from && ring.seq - seq_next > buffer {
            let bounded = ring.entries.partition_point(|e| ring.seq - e.seq > buffer);
            i = i.max(bounded.min(ring.entries.len().saturating_sub(1)));
        }
        ring.entries.get(i).cloned()
    }
}

/// One subscriber's view of the stream. Control messages (`gap`, `heartbeat`, `snapshot`) carry
/// the id of the last message this subscriber has been through (they do not take a new id), so a
/// client that resumes from them loses nothing.
pub struct Subscription {
    hub: Arc<Hub>,
    /// The message count when it subscribed: the resume backlog before it is replayed whole;
    /// from it on the `buffer` bound applies.
    live_from: u64,
    /// Changes when the hub publishes (its message count).
    rx: watch::Receiver<u64>,
    /// Messages to send before anything else (snapshot, the resume gap).
    front: VecDeque<Arc<Message>>,
    /// The entry being walked and the index of its next message (the only entry a subscriber
    /// holds: a stalled client pins one entry, not the stream).
    current: Option<(Arc<Entry>, usize)>,
    filter: Filter,
    /// The newest id this subscriber has been through (sent or filtered out).
    cursor: u64,
    /// The `seq` of the next message this subscriber expects (a larger one means it missed some).
    seq_next: u64,
    /// Where this subscription starts (the effective `since`, else the newest id at subscribe).
    start: u64,
    heartbeat: Interval,
    cancel: CancellationToken,
}

impl Subscription {
    /// The id a message sent before any replay (the snapshot) carries.
    pub fn start_id(&self) -> u64 {
        self.start
    }

    /// Put a message in front of everything else (the snapshot).
    pub fn push_front(&mut self, m: Message) {
        self.front.push_front(Arc::new(m));
    }

    /// The next matching message of the current entry, if any.
    fn walk(&mut self) -> Option<Arc<Message>> {
        let (entry, i) = self.current.as_mut()?;
        while (*i as u64) < entry.len {
            let idx = *i;
            *i += 1;
            let id = entry.first_id + idx as u64;
            if id <= self.cursor {
                continue;
            }
            self.cursor = id;
            if entry.header(idx).is_some_and(|h| self.filter.matches_header(&h)) {
                if let Some(m) = entry.message(idx) {
                    return Some(m);
                }
            }
        }
        self.current = None;
        None
    }

    /// Take the next entry from the ring; a `gap` if entries were skipped (evicted before this
    /// subscriber read them, or it fell more than `buffer` behind). None: nothing new yet.
    fn advance(&mut self) -> Option<Option<Arc<Message>>> {
        let e = self.hub.next_entry(self.seq_next, self.live_from)?;
        let at = self.seq_next.max(e.seq);
        let missed = at - self.seq_next;
        let skip = (at - e.seq) as usize;
        self.seq_next = e.seq + e.len;
        if missed > 0 {
            // Everything before where this subscriber resumes counts as gone through.
            self.cursor = self.cursor.max((e.first_id + skip as u64).saturating_sub(1));
        }
        if self.filter.may_match_entry(&e) {
            self.current = Some((e, skip));
        } else {
            // Nothing in it for this subscriber: gone through whole, in one look.
            self.cursor = self.cursor.max(e.last_id());
        }
        Some((missed > 0).then(|| Arc::new(Message::control(self.cursor, message::GAP, &json!({ "missed": missed })))))
    }

    /// The next message for this subscriber; `None` when the server shuts down. Cancel-safe.
    pub async fn next(&mut self) -> Option<Arc<Message>> {
        if let Some(m) = self.front.pop_front() {
            return Some(m);
        }
        loop {
            if let Some(m) = self.walk() {
                return Some(m);
            }
            // Seen before looking, so a publish in between still wakes the wait below.
            self.rx.borrow_and_update();
            match self.advance() {
                Some(Some(gap)) => return Some(gap),
                Some(None) => continue,
                None => {}
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return None,
                r = self.rx.changed() => if r.is_err() { return None },
                _ = self.heartbeat.tick() => {
                    return Some(Arc::new(Message::control(self.cursor, message::HEARTBEAT, &json!({}))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(kind: &'static str) -> Draft {
        Draft { kind, session_id: None, agent_id: None, task_id: None, data: "{}".into() }
    }

    /// A hub with no heartbeat to speak of and ids from 1.
    fn test_hub(retention: usize, retention_bytes: u64, buffer: usize, queue: usize) -> Arc<Hub> {
        let cfg =
            HubConfig { retention, retention_bytes, buffer, heartbeat: Duration::from_secs(3600), queue, id_base: 0 };
        Hub::new(cfg, CancellationToken::new())
    }

    #[tokio::test]
    async fn counts_the_subscriptions_open_now() {
        let hub = test_hub(3, 0, 3, 4);
        assert_eq!(hub.subscribers(), 0);
        let a = hub.subscribe(None, Filter::default());
        let b = hub.subscribe(Some(1), Filter::default());
        assert_eq!(hub.subscribers(), 2);
        drop(a);
        assert_eq!(hub.subscribers(), 1);
        drop(b);
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn resumes_from_the_ring_with_a_gap_for_what_is_gone() {
        let hub = test_hub(3, 0, 3, 4);
        for _ in 0..5 {
            hub.publish(draft(message::SPAN));
        }
        let mut sub = hub.subscribe(Some(1), Filter::default());
        let gap = sub.next().await.expect("gap");
        assert_eq!((gap.kind, &*gap.data), (message::GAP, "{\"missed\":1}"));
        let ids: Vec<u64> =
            [sub.next().await, sub.next().await, sub.next().await].into_iter().map(|m| m.expect("msg").id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        hub.publish(draft(message::SPAN));
        assert_eq!(sub.next().await.expect("live").id, 6);
    }

    /// Issue 10, the soak: subscribers that never read pin nothing the ring let go (the stream
    /// once held `buffer` whole batches per channel, 1.1 GB under the soak's 100 subscribers),
    /// and one that reads later gets a `gap` with the exact count, then the newest messages.
    #[tokio::test]
    async fn stalled_subscribers_pin_nothing_the_ring_evicted() {
        let hub = test_hub(4, 0, 4, 4);
        let mut stalled: Vec<Subscription> = (0..10).map(|_| hub.subscribe(None, Filter::default())).collect();
        hub.publish(draft(message::SPAN));
        let first = Arc::downgrade(&hub.ring.lock().expect("ring").entries[0]);
        for _ in 0..99 {
            hub.publish(draft(message::SPAN));
        }
        assert!(first.upgrade().is_none(), "an evicted entry is freed although 10 subscribers never read it");
        let sub = &mut stalled[0];
        let gap = sub.next().await.expect("gap");
        assert_eq!((gap.kind, &*gap.data), (message::GAP, "{\"missed\":96}"));
        let ids = [sub.next().await, sub.next().await, sub.next().await, sub.next().await].map(|m| m.expect("msg").id);
        assert_eq!(ids, [97, 98, 99, 100]);
    }

    /// A resume replays everything retained after its id, however far beyond `buffer` it is; the
    /// `buffer` bound applies from the moment of subscribing on.
    #[tokio::test]
    async fn a_resume_replays_the_whole_retained_backlog() {
        let hub = test_hub(100, 0, 4, 4);
        for _ in 0..50 {
            hub.publish(draft(message::SPAN));
        }
        let mut sub = hub.subscribe(Some(10), Filter::default());
        for want in 11..=50 {
            assert_eq!(sub.next().await.expect("msg").id, want);
        }
        // Live from here: 10 more unread, only the newest `buffer` are delivered after a gap.
        for _ in 0..10 {
            hub.publish(draft(message::SPAN));
        }
        let gap = sub.next().await.expect("gap");
        assert_eq!((gap.kind, &*gap.data), (message::GAP, "{\"missed\":6}"));
        assert_eq!(sub.next().await.expect("msg").id, 57);
    }

    /// Issue 10, row 10: retention is bounded in bytes as well as messages; resuming from before
    /// what the byte bound evicted gets a `gap` with the exact count.
    #[tokio::test]
    async fn row10_ring_is_bounded_in_bytes() {
        let big = || Draft {
            kind: message::SPAN,
            session_id: None,
            agent_id: None,
            task_id: None,
            data: "x".repeat(10_000).into(),
        };
        let per = Entry::one(0, big()).bytes;
        let hub = test_hub(1_000, per * 3, 64, 4);
        for _ in 0..10 {
            hub.publish(big());
        }
        {
            let ring = hub.ring.lock().expect("ring");
            assert_eq!(ring.entries.len(), 3, "the byte bound holds 3 of 10, far below 1000 messages");
            assert!(ring.retained_bytes <= per * 3);
            assert_eq!(ring.retained, 3);
        }
        let mut sub = hub.subscribe(Some(2), Filter::default());
        let gap = sub.next().await.expect("gap");
        assert_eq!((gap.kind, &*gap.data), (message::GAP, "{\"missed\":5}"));
        let ids = [sub.next().await, sub.next().await, sub.next().await].map(|m| m.expect("msg").id);
        assert_eq!(ids, [8, 9, 10]);
    }

    #[tokio::test]
    async fn ids_continue_across_restarts_and_an_old_id_gets_a_gap() {
        let cfg = HubConfig { heartbeat: Duration::from_secs(3600), id_base: 1_000, ..HubConfig::default() };
        let hub = Hub::new(cfg, CancellationToken::new());
        assert_eq!(hub.publish(draft(message::SPAN)), 1_001);
        hub.publish(draft(message::SPAN));
        // A client of the previous run (its ids were below this run's base) resumes.
        let mut sub = hub.subscribe(Some(640), Filter::default());
        let gap = sub.next().await.expect("gap");
        assert_eq!(gap.kind, message::GAP);
        assert!(gap.data.contains("restarted"), "{}", gap.data);
        let ids = [sub.next().await, sub.next().await].map(|m| m.expect("msg").id);
        assert_eq!(ids, [1_001, 1_002]);
        // A client of this run resumes exactly.
        let mut sub = hub.subscribe(Some(1_001), Filter::default());
        assert_eq!(sub.next().await.expect("msg").id, 1_002);
    }

    #[tokio::test]
    async fn a_full_publisher_queue_never_blocks_the_writer_and_becomes_a_gap() {
        use crate::model::records::Seen;
        let hub = test_hub(16, 0, 16, 1);
        let hook = hub.start_publisher();
        let mut sub = hub.subscribe(None, Filter::default());
        let batch = |id: &str| {
            let seen = Seen {
                id: id.into(),
                first_us: 0,
                last_us: 0,
                agent_id: None,
                display_name: None,
                service_name: None,
                task_id: None,
                parent_id: None,
            };
            let update = crate::model::records::SessionUpdate {
                session_id: seen.id.clone(),
                status: "running",
                ..Default::default()
            };
            Arc::new(Batch { sessions: vec![seen], session_updates: vec![update], ..Batch::default() })
        };
        // The publisher has not run yet (current-thread runtime): the second and third batches
        // find the queue full and are dropped at once instead of blocking.
        hook(batch("s1"));
        hook(batch("s2"));
        hook(batch("s3"));
        let mut got = Vec::new();
        while got.len() < 2 {
            let m = sub.next().await.expect("message");
            got.push((m.kind, m.data.to_string()));
        }
        assert!(got.iter().any(|(k, d)| *k == message::GAP && d.contains("\"missed\":2")), "{got:?}");
        assert!(got.iter().any(|(k, d)| *k == message::SESSION && d.contains("\"s1\"")), "{got:?}");
    }

    #[tokio::test]
    async fn a_filtered_subscriber_skips_entries_that_name_nothing_it_asked_for() {
        use crate::model::records::SessionUpdate;
        let hub = test_hub(64, 0, 64, 8);
        let batch = |sessions: &[(&str, &str)]| {
            let updates = sessions
                .iter()
                .map(|(s, a)| SessionUpdate {
                    session_id: (*s).into(),
                    agent_id: Some((*a).into()),
                    status: "running",
                    ..Default::default()
                })
                .collect();
            Arc::new(Batch { session_updates: updates, ..Batch::default() })
        };
        let params = |session: Option<&str>, agent: Option<&str>| LiveParamsLike { session, agent }.params();
        let mut by_session = hub.subscribe(None, Filter::new(&params(Some("s2"), None)));
        let mut by_agent = hub.subscribe(None, Filter::new(&params(None, Some("a3"))));
        let mut all = hub.subscribe(None, Filter::default());
        let entries = [
            batch(&[("s1", "a1"), ("s2", "a2"), ("s1", "a1")]),
            batch(&[("s3", "a3"), ("s4", "a3")]),
            batch(&[("s2", "a9")]),
        ];
        let mut last = 0;
        for b in &entries {
            let e = Entry::batch(last + 1, b.clone());
            let ix = e.index().expect("a batch entry is indexed");
            assert!(!ix.sessions.is_empty() && !ix.agents.is_empty());
            last = hub.push(last + 1, |id| Entry::batch(id, b.clone()));
        }
        let sessions = |sub: &mut Subscription, n: usize| {
            let mut out = Vec::new();
            for _ in 0..n {
                let m = sub.walk_now().expect("a message");
                out.push((
                    m.id,
                    m.session_id.as_deref().unwrap_or_default().to_string(),
                    m.agent_id.as_deref().unwrap_or_default().to_string(),
                ));
            }
            out
        };
        let got = sessions(&mut by_session, 2);
        assert_eq!(got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(), ["s2", "s2"]);
        assert_eq!(got.iter().map(|g| g.2.as_str()).collect::<Vec<_>>(), ["a2", "a9"]);
        assert!(by_session.walk_now().is_none(), "nothing else for s2");
        assert_eq!(by_session.cursor, last, "skipped entries count as gone through (resume id)");
        let got = sessions(&mut by_agent, 2);
        assert_eq!(got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(), ["s3", "s4"]);
        assert!(by_agent.walk_now().is_none());
        assert_eq!(by_agent.cursor, last);
        assert_eq!(sessions(&mut all, 6).len(), 6, "an unfiltered subscriber gets every message");
    }

    /// Query parameters for a filter.
    struct LiveParamsLike<'a> {
        session: Option<&'a str>,
        agent: Option<&'a str>,
    }

    impl LiveParamsLike<'_> {
        fn params(&self) -> crate::live::LiveParams {
            crate::live::LiveParams {
                session: self.session.map(str::to_owned),
                agent: self.agent.map(str::to_owned),
                ..Default::default()
            }
        }
    }

    impl Subscription {
        /// The next message already published, without waiting.
        fn walk_now(&mut self) -> Option<Arc<Message>> {
            loop {
                if let Some(m) = self.walk() {
                    return Some(m);
                }
                match self.advance()? {
                    Some(gap) => return Some(gap),
                    None => continue,
                }
            }
        }
    }
}
