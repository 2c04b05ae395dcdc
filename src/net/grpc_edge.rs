//! The edge of the OTLP/gRPC port (issue 10, row 10), the gRPC twin of `serve.rs`:
//! - connection cap: beyond `max_connections` open connections the next one is closed at once
//!   (gRPC clients see UNAVAILABLE and retry with back-off; there is no HTTP/2 way to answer a
//!   connection before its preface);
//! - handshake timeout: a connection that has not sent the HTTP/2 preface within
//!   `handshake_timeout` is closed (a TCP connection that says nothing holds no slot for long);
//! - read idle timeout: a connection from which nothing arrives for `idle_timeout` is closed.
//!   Server keepalive pings (`keepalive_interval`) are answered by every live client, so only a
//!   dead or stalled peer stays silent that long; one that does not answer a ping within
//!   `keepalive_timeout` is closed by HTTP/2 itself;
//! - per-request timeout, most concurrent streams per connection, a bounded header list, and a
//!   maximum connection age (a graceful GOAWAY, clients reconnect) so a peer that answers pings
//!   but never finishes anything cannot hold a connection forever.
//!
//! `incoming` wraps the listener; `builder` applies the HTTP/2 settings to tonic's server.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The HTTP/2 connection preface every gRPC client sends first.
const PREFACE_LEN: usize = 24;

/// Limits of the gRPC port.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Most open connections.
    pub max_connections: usize,
    /// Longest a new connection may take to send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Longest nothing may arrive on a connection (pings are answered well within it).
    pub idle_timeout: Duration,
    /// Interval of the server's HTTP/2 keepalive pings.
    pub keepalive_interval: Duration,
    /// Longest a ping may wait for its acknowledgement before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Longest one request (an Export call, body included) may take.
    pub request_timeout: Duration,
    /// Most concurrent streams one connection may open.
    pub max_concurrent_streams: u32,
    /// Largest header list (bytes) a request may carry.
    pub max_header_list_size: u32,
    /// Age after which a connection is asked to go away (GOAWAY; in-flight calls finish).
    pub max_connection_age: Duration,
}

impl GrpcLimits {
    /// From the `--grpc-*` flags (every duration at least 1 s).
    pub fn from_args(a: &crate::config::ServeArgs) -> Self {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        Self {
            max_connections: a.grpc_max_connections.max(1),
            handshake_timeout: secs(a.grpc_handshake_timeout_secs),
            idle_timeout: secs(a.grpc_idle_timeout_secs),
            keepalive_interval: secs(a.grpc_keepalive_secs),
            keepalive_timeout: secs(a.grpc_keepalive_secs / 3),
            request_timeout: secs(a.grpc_request_timeout_secs),
            max_concurrent_streams: a.grpc_max_concurrent_streams.max(1),
            max_header_list_size: 64 * 1024,
            max_connection_age: secs(a.grpc_max_connection_age_secs),
        }
    }

    /// Apply the HTTP/2 and request limits to a tonic server builder.
    pub fn builder(&self) -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .timeout(self.request_timeout)
            .max_concurrent_streams(Some(self.max_concurrent_streams))
            .http2_max_header_list_size(Some(self.max_header_list_size))
            .http2_keepalive_interval(Some(self.keepalive_interval))
            .http2_keepalive_timeout(Some(self.keepalive_timeout))
            .max_connection_age(self.max_connection_age)
            .max_connection_age_grace(self.request_timeout)
            .tcp_nodelay(true)
    }
}

/// Accepted connections under the cap, each with its handshake and idle deadlines. Accept
/// errors (out of file descriptors) back off instead of ending the server.
pub fn incoming(listener: TcpListener, limits: GrpcLimits) -> impl Stream<Item = io::Result<Guarded>> + Send {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    futures::stream::unfold((listener, permits), move |(listener, permits)| async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!("gRPC connection refused: too many open connections");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let guarded = Guarded::new(stream, permit, limits);
            return Some((Ok(guarded), (listener, permits)));
        }
    })
}

/// A gRPC connection: holds its slot under the cap until dropped, and fails its reads when the
/// peer says nothing before its deadline.
pub struct Guarded {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    /// Preface bytes still expected; until then the handshake timeout applies.
    preface_left: usize,
    idle_timeout: Duration,
}

impl Guarded {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, limits: GrpcLimits) -> Self {
        Self {
            inner,
            _permit: permit,
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            preface_left: PREFACE_LEN,
            idle_timeout: limits.idle_timeout,
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.preface_left = this.preface_left.saturating_sub(n);
                    // The handshake deadline stands until the whole preface arrived.
                    if this.preface_left == 0 {
                        this.deadline.as_mut().reset(Instant::now() + this.idle_timeout);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if this.preface_left > 0 { "handshake" } else { "idle" };
                    tracing::debug!(what, "gRPC connection timed out");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("gRPC connection {what} timeout"))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
