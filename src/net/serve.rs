//! The HTTP accept loop (OTLP/HTTP, hooks, query API, live stream, console), over hyper-util's
//! HTTP/1 + HTTP/2 connection builder, with the limits `axum::serve` does not have:
//! - header read timeout: a client that does not finish its request head in time (slowloris) is
//!   closed (HTTP/1; hyper's `header_read_timeout`, which also closes keep-alive connections idle
//!   that long);
//! - body idle timeout: a request body that delivers nothing for that long fails (the handler
//!   answers or drops it), so a stalled streamed upload cannot hold a connection and its memory;
//! - connection cap: beyond `max_connections` open connections the next one is answered
//!   `503` with `Retry-After` and closed (a few refusals at a time; beyond that it is just closed);
//! - bounded shutdown: on cancel the listener closes, every connection is asked to finish its
//!   request and close, and whatever is still open after `grace` is dropped (its handler with it).
//!   An export dropped there was not acknowledged; one that was is already in the ingest log.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Limits of the HTTP port.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Longest a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// Longest a request body may deliver nothing.
    pub body_idle_timeout: Duration,
    /// Most open connections (WebSockets are counted until they upgrade).
    pub max_connections: usize,
}

/// Refusals (503 to a connection over the cap) written at the same time; beyond, just closed.
const REFUSALS: usize = 64;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 47\r\n\r\n{\"error\":\"too many connections, retry shortly\"}";

/// Serve `router` on `listener` until `cancel`, then finish open connections within `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    cancel: CancellationToken,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    refuse(stream, &refusals);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let idle = limits.body_idle_timeout;
                let svc = tower::service_fn(move |req: axum::http::Request<Incoming>| {
                    let req = req.map(|b| Body::new(IdleTimeout::new(b, idle)));
                    router.clone().oneshot(req)
                });
                conns.spawn(connection(builder.clone(), stream, TowerToHyperService::new(svc), stop.clone(), permit));
            }
        }
    }
    drop(listener);
    stop.cancel();
    if !conns.is_empty() {
        tracing::info!(open = conns.len(), "HTTP: waiting for open connections to finish");
    }
    let drained = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(dropped = conns.len(), "HTTP: connections still open at the shutdown deadline were dropped");
        conns.shutdown().await;
    }
}

async fn connection<S>(
    builder: Builder<TokioExecutor>,
    stream: TcpStream,
    svc: S,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) where
    S: hyper::service::Service<axum::http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            return;
        }
        _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error while shutting down");
    }
}

/// Answer a connection over the cap with 503 + Retry-After and close it (never waits long).
fn refuse(mut stream: TcpStream, refusals: &Arc<Semaphore>) {
    tracing::debug!("HTTP connection refused: too many open connections");
    let Ok(permit) = refusals.clone().try_acquire_owned() else { return };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(BUSY).await?;
            stream.shutdown().await?;
            // Read what the client sent, so closing does not reset the connection before it
            // read the answer.
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// The request body stalled: nothing arrived for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body idle for more than {0:?}")]
pub struct BodyIdle(Duration);

/// A request body that fails when no frame arrives for `timeout`.
struct IdleTimeout {
    inner: Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimeout {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl HttpBody for IdleTimeout {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
