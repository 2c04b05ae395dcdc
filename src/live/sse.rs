//! `GET /api/live` as Server-Sent Events: `id:` is the message id, `event:` its type, `data:` the
//! JSON payload. Resumes from the `Last-Event-ID` header, else from `?since=`.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::{LiveParams, Message};
use crate::api::{ApiError, ApiState};

fn event(m: &Message) -> Event {
    Event::default().id(m.id.to_string()).event(m.kind).data(&*m.data)
}

/// The SSE handler.
pub async fn live(
    State(s): State<ApiState>,
    Query(p): Query<LiveParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let sub = super::open(&s.live, &s.store, &p, last_event_id.or(p.since)).await?;
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(futures::stream::unfold(sub, |mut sub| async move { sub.next().await.map(|m| (Ok(event(&m)), sub)) }));
    // No axum keep-alive: the subscription's own `heartbeat` messages keep the connection alive
    // (one timer per subscriber, not two).
    Ok(Sse::new(stream).into_response())
}
