//! Streamed query results (JSON answers of `POST /api/sql`, CSV, Arrow IPC, Parquet). The query
//! runs on a blocking thread with its own connection and DuckDB's lazy Arrow stream (user SQL
//! capped at `max_rows` inside DuckDB's plan); each batch is encoded straight into a bounded channel that feeds the HTTP body, so
//! neither side holds the whole result. Errors found before the first rows exist (bad SQL,
//! refused statements, a failure in the first batch) are returned as errors (a 4xx/5xx). Later
//! ones end the body with an error the client sees:
//! the chunked body is aborted (no terminating chunk, so curl exits 18 and HTTP clients report an
//! incomplete body), and a CSV body first gets a last line `#ERROR: <message>`.
//!
//! Nothing waits forever on a client: a chunk the client does not take within
//! `QueryLimits::send_timeout` cancels the query, which closes its DuckDB transaction (a stalled
//! reader must not pin old row versions or hold a connection). The watchdog interrupts DuckDB at
//! the timeout and keeps interrupting until the worker has stopped.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use tokio::sync::{mpsc, oneshot};

use super::reader::{
    check_type_depth, json_columns, json_head, json_tail, original_names, prepare_capped, renamed_schema, vet,
    JsonRows, Reader, Watchdog,
};
use super::{sqlcompat, StoreError};
use crate::formats::{self, Format};

/// What to stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub sql: String,
    pub params: Vec<Option<String>>,
    /// Vet as user SQL (read-only check); false for our own fixed queries.
    pub vet: bool,
    /// Stop after this many rows.
    pub max_rows: Option<usize>,
    /// A JSON answer's byte cap (`QueryLimits::max_result_bytes`); other formats are not capped
    /// in bytes.
    pub max_bytes: Option<usize>,
    pub timeout: Duration,
    pub format: Format,
}

const CHUNK_BYTES: usize = 256 * 1024;
/// Encoded chunks waiting for the client (so at most ~1 MiB per stream outside DuckDB).
const CHANNEL_DEPTH: usize = 4;

/// How the producer ended: `None` while running (or when it died without saying).
type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

/// The chunks of an encoded result, as an HTTP body stream. It ends cleanly only when the whole
/// result was written; any other end yields a final `Err` (after a `#ERROR:` line for CSV).
pub struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    outcome: Outcome,
    format: Format,
    state: ChunksState,
}

enum ChunksState {
    Streaming,
    /// The CSV error line went out; the error itself comes next, after a short pause in which
    /// the server writes the line out (the body error aborts the connection, dropping anything
    /// still buffered).
    Failing(String, Option<Pin<Box<tokio::time::Sleep>>>),
    Done,
}

/// How long the CSV error line gets to reach the socket before the body is aborted.
const TRAILER_GRACE: Duration = Duration::from_millis(100);

impl futures::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match std::mem::replace(&mut this.state, ChunksState::Done) {
            ChunksState::Done => Poll::Ready(None),
            ChunksState::Failing(msg, pause) => {
                let mut pause = pause.unwrap_or_else(|| Box::pin(tokio::time::sleep(TRAILER_GRACE)));
                if pause.as_mut().poll(cx).is_pending() {
                    this.state = ChunksState::Failing(msg, Some(pause));
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(std::io::Error::other(msg))))
            }
            ChunksState::Streaming => match this.rx.poll_recv(cx) {
                Poll::Pending => {
                    this.state = ChunksState::Streaming;
                    Poll::Pending
                }
                Poll::Ready(Some(chunk)) => {
                    this.state = ChunksState::Streaming;
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(None) => {
                    let outcome = this.outcome.lock().ok().and_then(|mut o| o.take());
                    let msg = match outcome {
                        Some(Ok(())) => return Poll::Ready(None),
                        Some(Err(m)) => m,
                        None => "the query ended unexpectedly".to_string(),
                    };
                    match formats::error_trailer(this.format, &msg) {
                        Some(line) => {
                            this.state = ChunksState::Failing(msg, None);
                            Poll::Ready(Some(Ok(line)))
                        }
                        None => Poll::Ready(Some(Err(std::io::Error::other(msg)))),
                    }
                }
            },
        }
    }
}

/// `Write` into the body channel in chunks of `CHUNK_BYTES`. Fails once the client has gone, or
/// when a chunk waits longer than `send_timeout` for a client that stopped reading.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
    send_timeout: Duration,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        send_within(&self.runtime, &self.tx, chunk, self.send_timeout)
    }
}

/// Send `item` from a blocking thread, giving up after `timeout` (a client that stopped reading).
pub fn send_within<T>(
    runtime: &tokio::runtime::Handle,
    tx: &mpsc::Sender<T>,
    item: T,
    timeout: Duration,
) -> std::io::Result<()> {
    // A checkpoint that must run ends this reader (`evict.rs`), a sender waiting included.
    let eviction = super::evict::current();
    let evicted = async {
        match &eviction {
            Some(e) => e.evicted().await,
            None => std::future::pending().await,
        }
    };
    let send = async {
        tokio::select! {
            r = tokio::time::timeout(timeout, tx.send(item)) => Some(r),
            _ = evicted => None,
        }
    };
    match runtime.block_on(send) {
        None => Err(std::io::Error::new(std::io::ErrorKind::Interrupted, StoreError::Evicted.to_string())),
        Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(_))) => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away")),
        Some(Err(_)) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the client read nothing for {} s: query cancelled", timeout.as_secs_f64()),
        )),
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Reader {
    /// Start streaming `spec`; resolves once the query runs and the first bytes can be sent.
    pub async fn stream(&self, spec: StreamSpec) -> Result<Chunks, StoreError> {
        self.check_size(&spec.sql)?;
        let conn = self.connection()?;
        let watchdog = Watchdog::arm(conn.interrupt_handle(), spec.timeout);
        self.count_query();
        let tracked = self.track();
        let send_timeout = self.limits().send_timeout;
        let runtime = tokio::runtime::Handle::current();
        let outcome: Outcome = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let format = spec.format;
        let producer_outcome = outcome.clone();
        tokio::task::spawn_blocking(move || {
            // Readers share the bulk tier with decoding (`priority.rs`).
            crate::priority::background();
            let _tracked = tracked;
            // Keeps the channel open until the outcome is recorded (the writer's sender goes first).
            let keep_open = tx.clone();
            let sink = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK_BYTES), runtime, send_timeout };
            let mut ready = Some(ready_tx);
            let result = conn.scoped(|c| produce(c, &spec, &mut ready, sink, &watchdog));
            let timeout = spec.timeout;
            let result = result.map_err(|e| {
                if watchdog.cancelled() {
                    StoreError::Timeout(timeout.as_millis() as u64)
                } else if conn.eviction().is_evicted() {
                    StoreError::Evicted
                } else {
                    e
                }
            });
            // Close the DuckDB transaction before anything else.
            drop(conn);
            let recorded = match (result, ready.take()) {
                (Err(e), Some(r)) => {
                    let _ = r.send(Err(e));
                    Ok(())
                }
                (Err(e), None) => {
                    tracing::warn!(error = %e, "streamed query ended early");
                    Err(e.to_string())
                }
                (Ok(()), r) => {
                    if let Some(r) = r {
                        let _ = r.send(Ok(()));
                    }
                    Ok(())
                }
            };
            if let Ok(mut o) = producer_outcome.lock() {
                *o = Some(recorded);
            }
            drop(keep_open);
            drop(watchdog);
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(Chunks { rx, outcome, format, state: ChunksState::Streaming }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable("query task ended".into())),
        }
    }
}

fn produce(
    conn: &Connection,
    spec: &StreamSpec,
    ready: &mut Option<oneshot::Sender<Result<(), StoreError>>>,
    sink: ChannelWriter,
    watchdog: &Watchdog,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let query_err = |e: duckdb::Error| StoreError::Query(e.to_string());
    let sql = sqlcompat::rewrite(&spec.sql);
    if spec.vet {
        vet(conn, &sql)?;
    }
    let (mut stmt, capped) = match spec.max_rows {
        Some(cap) if spec.vet => prepare_capped(conn, &sql, cap)?,
        _ => (conn.prepare(&sql).map_err(query_err)?, false),
    };
    check_type_depth(&stmt)?;
    let stream = stmt.stream_arrow(duckdb::params_from_iter(spec.params.iter())).map_err(query_err)?;
    let raw_schema = stream.get_schema();
    let schema =
        if capped { renamed_schema(&raw_schema, &original_names(conn, &sql, &raw_schema)) } else { raw_schema.clone() };
    let encode_err = |e: formats::FormatError| StoreError::Query(e.to_string());
    let (mut w, mut left): (Box<dyn formats::BatchWriter>, usize) = match spec.format {
        // The JSON answer applies the row cap itself (it reports which cap cut the rows).
        Format::Json => {
            let rows = JsonRows::new(spec.max_rows.unwrap_or(usize::MAX), spec.max_bytes.unwrap_or(usize::MAX));
            let columns = json_columns(&schema, schema.fields().iter().map(|f| f.name().clone()).collect());
            (Box::new(JsonAnswer::start(&columns, rows, sink, started).map_err(encode_err)?), usize::MAX)
        }
        f => (formats::writer(f, &schema, sink).map_err(encode_err)?, spec.max_rows.unwrap_or(usize::MAX)),
    };
    for batch in stream {
        if watchdog.cancelled() {
            return Err(StoreError::Timeout(spec.timeout.as_millis() as u64));
        }
        let batch = batch.map_err(|e| StoreError::Query(e.to_string()))?;
        // The 200 goes out once the first rows exist: an error before them is a plain 4xx/5xx.
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        let batch = if schema != raw_schema {
            RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| StoreError::Query(e.to_string()))?
        } else {
            batch
        };
        let batch = if batch.num_rows() > left { batch.slice(0, left) } else { batch };
        left -= batch.num_rows();
        w.write(&batch).map_err(|e| StoreError::Query(e.to_string()))?;
        if left == 0 || w.full() {
            break;
        }
    }
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    w.finish().map_err(|e| StoreError::Query(e.to_string()))
}

/// A `POST /api/sql` JSON answer, streamed: `{"columns":[...],"rows":[` first, the rows as DuckDB's
/// chunks arrive (so a capped answer of tens of MiB is never held whole), then `],"truncated":..,
/// "elapsed_ms":..}`. The same shape and caps as `Reader::query` (`reader::JsonRows`).
pub struct JsonAnswer<W: Write + Send> {
    out: W,
    rows: JsonRows,
    started: std::time::Instant,
    full: bool,
}

impl<W: Write + Send> JsonAnswer<W> {
    pub fn start(
        columns: &[super::reader::Column],
        mut rows: JsonRows,
        mut out: W,
        started: std::time::Instant,
    ) -> Result<Self, formats::FormatError> {
        let enc = |e: std::io::Error| formats::FormatError::Encode(e.to_string());
        out.write_all(json_head(columns).as_bytes()).map_err(enc)?;
        rows.open(&mut out).map_err(enc)?;
        Ok(JsonAnswer { out, rows, started, full: false })
    }
}

impl<W: Write + Send> formats::BatchWriter for JsonAnswer<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), formats::FormatError> {
        if !self.full {
            self.full =
                !self.rows.write(batch, &mut self.out).map_err(|e| formats::FormatError::Encode(e.to_string()))?;
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.full
    }

    fn finish(mut self: Box<Self>) -> Result<(), formats::FormatError> {
        let enc = |e: std::io::Error| formats::FormatError::Encode(e.to_string());
        self.rows.close(&mut self.out).map_err(enc)?;
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1e3;
        self.out.write_all(json_tail(self.rows.truncated_by, elapsed_ms).as_bytes()).map_err(enc)?;
        self.out.flush().map_err(enc)
    }
}
