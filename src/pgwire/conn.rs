//! One Postgres connection from accept to close: TLS negotiation and the message loop of the
//! pgwire crate (`negotiate_tls`, `process_message`), with the limits its own loop lacks.
//!
//! - **Message size.** pgwire buffers a frontend message of up to 1 GiB before decoding it.
//!   `FrameCap` follows the message framing as bytes arrive and fails the read as soon as a
//!   length header exceeds `max_message_bytes` (the SQL size cap plus room for parameters): the
//!   client gets `FATAL 54000` and the connection closes, having buffered a few bytes.
//! - **Idle sessions.** Waiting for the next message longer than `idle_timeout` ends the session
//!   with `FATAL 57P05` (Postgres' `idle_session_timeout`).
//! - **Stalled readers.** A write the client does not accept within `write_timeout` closes the
//!   connection, so a client that stops reading cannot hold a task (or, through the row channel,
//!   a DuckDB transaction) forever.
//! - **Startup.** The startup and authentication exchange must finish within `STARTUP_TIMEOUT`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, NoopHandler, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message, PgWireMessageServerCodec};
use pgwire::tokio::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::codec::{Framed, FramedParts};

use super::auth::Startup;
use super::handler::{Prepared, QueryHandler};

/// How long a client may take from connecting to finishing authentication.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_message_bytes: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

/// The error `FrameCap` fails a read with.
#[derive(Debug)]
pub struct MessageTooLarge {
    pub len: usize,
    pub max: usize,
}

impl std::fmt::Display for MessageTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message of {} bytes exceeds the limit of {} bytes", self.len, self.max)
    }
}

impl std::error::Error for MessageTooLarge {}

/// Follows frontend message framing on the bytes it reads: the first message (the startup packet
/// or a cancel request, after TLS negotiation) is a 4-byte length and a body, every later one a
/// type byte, a 4-byte length (counting itself) and a body. Fails reads once a length exceeds
/// `max`; fails writes that stay blocked past `write_timeout`.
pub struct FrameCap<IO> {
    io: IO,
    max: usize,
    untyped: bool,
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
    too_large: Option<(usize, usize)>,
    write_timeout: Duration,
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl<IO> FrameCap<IO> {
    /// `buffered`: bytes of the stream already read (by TLS negotiation) but not yet decoded.
    pub fn new(io: IO, max: usize, write_timeout: Duration, buffered: &[u8]) -> Self {
        let mut cap = FrameCap {
            io,
            max,
            untyped: true,
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            too_large: None,
            write_timeout,
            write_stall: None,
        };
        cap.observe(buffered);
        cap
    }

    /// Advance the framing over `data`; records the first length over the limit.
    pub fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.too_large.is_none() {
            if self.body_left > 0 {
                let k = self.body_left.min(data.len());
                self.body_left -= k;
                data = &data[k..];
                continue;
            }
            let need = if self.untyped { 4 } else { 5 };
            let k = (need - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + k].copy_from_slice(&data[..k]);
            self.header_len += k;
            data = &data[k..];
            if self.header_len == need {
                let l = &self.header[need - 4..need];
                let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
                // A length below 4 is malformed: pgwire's decoder reports it.
                let len = usize::try_from(len).unwrap_or(0);
                if len > self.max {
                    self.too_large = Some((len, self.max));
                    return;
                }
                self.body_left = len.saturating_sub(4);
                self.header_len = 0;
                self.untyped = false;
            }
        }
    }

    fn too_large_error(&self) -> Option<io::Error> {
        self.too_large.map(|(len, max)| io::Error::new(io::ErrorKind::InvalidData, MessageTooLarge { len, max }))
    }

    /// Poll a write-side operation, failing it once it has been pending for `write_timeout`.
    fn stall<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stall = self.write_stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} s", timeout.as_secs_f64()),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FrameCap<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.too_large_error() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe(&buf.filled()[before..]);
                match this.too_large_error() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FrameCap<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, b);
        this.stall(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.stall(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// `MessageTooLarge` inside a pgwire error, if that is what it is.
fn too_large(e: &PgWireError) -> Option<&MessageTooLarge> {
    match e {
        PgWireError::IoError(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<MessageTooLarge>()),
        _ => None,
    }
}

fn fatal(code: &str, message: String) -> PgWireBackendMessage {
    PgWireBackendMessage::ErrorResponse(ErrorInfo::new("FATAL".into(), code.into(), message).into())
}

/// The handlers of one connection.
pub struct Handlers {
    pub query: Arc<QueryHandler>,
    pub startup: Arc<Startup>,
    pub cancel: Arc<DefaultCancelHandler>,
}

/// Serve one accepted connection until the client leaves or a limit ends it.
pub async fn serve(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<Handlers>,
    limits: ConnLimits,
) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        s = negotiate_tls::<Prepared>(tcp, tls) => s?,
    };
    // A direct TLS handshake without a configured certificate.
    let Some(socket) = negotiated else { return Ok(()) };
    let parts = socket.into_parts();
    let io = FrameCap::new(parts.io, limits.max_message_bytes, limits.write_timeout, &parts.read_buf);
    let mut capped = FramedParts::new::<PgWireBackendMessage>(io, parts.codec);
    capped.read_buf = parts.read_buf;
    capped.write_buf = parts.write_buf;
    let mut socket: Framed<FrameCap<_>, PgWireMessageServerCodec<Prepared>> = Framed::from_parts(capped);

    let copy = Arc::new(NoopHandler);
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let msg = if starting {
            tokio::select! {
                _ = &mut startup_deadline => None,
                m = socket.next() => m,
            }
        } else {
            match tokio::time::timeout(limits.idle_timeout, socket.next()).await {
                Ok(m) => m,
                Err(_) => {
                    tracing::debug!(peer = %socket.socket_addr(), "postgres connection idle: closed");
                    let msg = format!(
                        "terminating connection due to idle-session timeout ({} s)",
                        limits.idle_timeout.as_secs()
                    );
                    let _ = socket.send(fatal("57P05", msg)).await;
                    break;
                }
            }
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                if let Some(t) = too_large(&e) {
                    tracing::info!(peer = %socket.socket_addr(), len = t.len, "postgres message too large: connection closed");
                    let msg = format!("{t} (the SQL size limit is query_max_sql_bytes): closing the connection");
                    let _ = socket.send(fatal("54000", msg)).await;
                }
                break;
            }
            None => break,
        };
        // The client is leaving (asyncpg waits for the server to close after Terminate).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended_msg = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let result = process_message(
            msg,
            &mut socket,
            handlers.startup.clone(),
            handlers.query.clone(),
            handlers.query.clone(),
            copy.clone(),
            handlers.cancel.clone(),
        )
        .await;
        if let Err(e) = result {
            if e.is_fatal() {
                // As Postgres: the FATAL error, then the close (no ReadyForQuery, which clients
                // in the middle of authentication do not expect).
                let info: ErrorInfo = e.into();
                let _ = socket.send(PgWireBackendMessage::ErrorResponse(info.into())).await;
                break;
            }
            process_error(&mut socket, e, extended_msg).await?;
        }
        if is_cancel {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn framing_is_followed_across_reads() {
        let mut startup = (20i32).to_be_bytes().to_vec();
        startup.extend_from_slice(&[0u8; 16]);
        let mut stream = startup;
        stream.extend(msg(b'Q', b"SELECT 1\0"));
        stream.extend(msg(b'p', &[7u8; 90]));
        // Byte by byte: the same verdict as in one piece.
        let mut cap = FrameCap::new((), 100, Duration::from_secs(1), &[]);
        for b in &stream {
            cap.observe(std::slice::from_ref(b));
        }
        assert!(cap.too_large.is_none());
        assert_eq!((cap.header_len, cap.body_left), (0, 0));
        // A header announcing 1 GiB fails after its 5 bytes, whatever follows.
        cap.observe(&[b'Q', 0x3f, 0xff, 0xff, 0xff]);
        assert_eq!(cap.too_large, Some((0x3fff_ffff, 100)));
    }

    #[test]
    fn buffered_bytes_count() {
        let big = (1_000_000i32).to_be_bytes();
        let cap = FrameCap::new((), 100, Duration::from_secs(1), &big);
        assert_eq!(cap.too_large, Some((1_000_000, 100)));
        let e = cap.too_large_error().expect("error");
        assert!(e.to_string().contains("exceeds the limit of 100 bytes"), "{e}");
    }
}
