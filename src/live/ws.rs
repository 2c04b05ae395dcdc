//! `GET /api/live/ws`: the same messages as WebSocket text frames `{"id":..,"type":..,"data":{..}}`.
//! Resumes from `?since=`. The connection ends on client close or server shutdown.

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;

use super::{LiveParams, Subscription};
use crate::api::{ApiError, ApiState};

/// The WebSocket handler (the subscription is made before the upgrade, so errors are HTTP errors).
pub async fn live_ws(
    State(s): State<ApiState>,
    Query(p): Query<LiveParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let sub = super::open(&s.live, &s.store, &p, p.since).await?;
    Ok(ws.on_upgrade(move |socket| pump(socket, sub)))
}

async fn pump(mut socket: WebSocket, mut sub: Subscription) {
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => {
                    if socket.send(WsMessage::Text(m.ws_frame().into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
