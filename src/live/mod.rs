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
pub async fn open(
    hub: &std::sync::Arc<Hub>,
    store: &Store,
    p: &LiveParams,
    since: Option<u64>,
) -> Result<Subscription, StoreError> {
    let mut sub = hub.subscribe(since, Filter::new(p));
    if p.snapshot {
        let rows = store.reader.query_objects(SNAPSHOT_SQL, Vec::new()).await?;
        let data = serde_json::json!({ "sessions": rows });
        sub.push_front(Message::control(sub.start_id(), message::SNAPSHOT, &data));
    }
    Ok(sub)
}
