//! The live stream: committed rows pushed to clients as they land, over SSE (`GET /api/live`) and
//! WebSocket (`GET /api/live/ws`), with filters, resume by id and a bounded buffer per client.
//! `message` builds messages from rows (JSON made once), `hub` numbers and retains them in one
//! ring that subscribers read (bounded in messages and bytes), `filter` parses the query parameters, `sse` and `ws` are the two transports.

pub mod filter;
pub mod hub;
pub mod message;
pub mod sse;
pub mod ws;

pub use filter::{Filter, LiveParams};
pub use hub::{Hub, HubConfig, Subscription};
pub use message::{Draft, Entry, Message};

use crate::store::{Store, StoreError};

/// Sessions sent in a `snapshot` message: every session not finished, newest activity first.
const SNAPSHOT_SQL: &str =
    "SELECT * FROM sessions WHERE status IS DISTINCT FROM 'finished' ORDER BY last_seen DESC LIMIT 1000";

/// Subscribe with these parameters: `since` (or the SSE `Last-Event-ID`), filters, and when
/// `snapshot=true` a first `snapshot` message `{"sessions": [...]}` with the current sessions.
///
/// The live stream runs ahead of DuckDB (it publishes what the ingest log made durable), so a
/// snapshot read from DuckDB can miss records already streamed but not yet committed. A snapshot
/// subscription without `since` therefore starts at the last committed log position read before
/// the query: it replays every retained message of a later record (and whatever was published
/// after), so a session is in the snapshot, in the replay, or both (replayed messages come after
/// the snapshot and are newer than it).
pub async fn open(
    hub: &std::sync::Arc<Hub>,
    store: &Store,
    p: &LiveParams,
    since: Option<u64>,
) -> Result<Subscription, StoreError> {
    if !p.snapshot {
        return Ok(hub.subscribe(since, Filter::new(p)));
    }
    let newest = hub.last_id();
    let committed = *store.shared.committed_pos.borrow();
    let rows = store.reader.query_objects(SNAPSHOT_SQL, Vec::new()).await?;
    let since = since.or_else(|| Some(snapshot_since(committed, newest)));
    let mut sub = hub.subscribe(since, Filter::new(p));
    let data = serde_json::json!({ "sessions": rows });
    sub.push_front(Message::control(sub.start_id(), message::SNAPSHOT, &data));
    Ok(sub)
}

/// Where a snapshot subscription resumes: after the ids of the last committed log position
/// (`committed`), but never past the newest id published before the snapshot was read (`newest`):
/// a message published since then is replayed whatever its id.
fn snapshot_since(committed: u64, newest: u64) -> u64 {
    let end_of_committed = (committed.saturating_add(1) << hub::ID_BITS).saturating_sub(1);
    end_of_committed.min(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_resumes_after_the_committed_position_but_not_past_the_newest_id() {
        let pos = |p: u64, n: u64| (p << hub::ID_BITS) + n;
        // Records 5 and 6 streamed, 5 committed: replay 6's messages.
        assert_eq!(snapshot_since(5, pos(6, 3)), pos(6, 0) - 1);
        // Everything committed: resume at the newest id (no id from the future).
        assert_eq!(snapshot_since(6, pos(6, 3)), pos(6, 3));
        // Nothing committed yet in a fresh store.
        assert_eq!(snapshot_since(0, 0), 0);
    }
}
