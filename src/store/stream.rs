//! Streamed query results (CSV, Arrow IPC, Parquet). The query runs on a blocking thread with its
//! own connection and DuckDB's lazy Arrow stream; each batch is encoded straight into a bounded
//! channel that feeds the HTTP body, so neither side holds the whole result. Errors found before
//! the first byte (bad SQL, refused statements) are returned as errors; later ones end the body.
//! A timer interrupts DuckDB and stops the producer past the timeout.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duckdb::Connection;
use tokio::sync::{mpsc, oneshot};

use super::reader::{vet, Reader};
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
    pub timeout: Duration,
    pub format: Format,
}

/// Chunks of an encoded result; an `Err` ends the body early.
pub type Chunks = mpsc::Receiver<Result<Bytes, std::io::Error>>;

const CHUNK_BYTES: usize = 256 * 1024;

/// `Write` into the body channel in chunks of `CHUNK_BYTES`; fails once the client has gone.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
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
        if spec.sql.len() > self.limits().max_sql_bytes {
            return Err(StoreError::Refused(format!(
                "query is {} bytes, the limit is {}",
                spec.sql.len(),
                self.limits().max_sql_bytes
            )));
        }
        let conn = self.connection()?;
        let interrupt = conn.interrupt_handle();
        let cancelled = Arc::new(AtomicBool::new(false));
        let timeout = spec.timeout;
        let timer = {
            let cancelled = cancelled.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                cancelled.store(true, Ordering::Relaxed);
                interrupt.interrupt();
            })
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut ready = Some(ready_tx);
            let result = produce(&conn, &spec, &mut ready, tx.clone(), &cancelled);
            timer.abort();
            let result = result.map_err(|e| {
                if cancelled.load(Ordering::Relaxed) {
                    StoreError::Timeout(timeout.as_millis() as u64)
                } else {
                    e
                }
            });
            match (result, ready.take()) {
                (Err(e), Some(r)) => {
                    let _ = r.send(Err(e));
                }
                (Err(e), None) => {
                    tracing::warn!(error = %e, "streamed query ended early");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
                (Ok(()), Some(r)) => {
                    let _ = r.send(Ok(()));
                }
                (Ok(()), None) => {}
            }
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(rx),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable("query task ended".into())),
        }
    }
}

fn produce(
    conn: &Connection,
    spec: &StreamSpec,
    ready: &mut Option<oneshot::Sender<Result<(), StoreError>>>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    cancelled: &AtomicBool,
) -> Result<(), StoreError> {
    let sql = sqlcompat::rewrite(&spec.sql);
    if spec.vet {
        vet(conn, &sql)?;
    }
    let mut stmt = conn.prepare(&sql).map_err(|e| StoreError::Query(e.to_string()))?;
    let stream = stmt
        .stream_arrow(duckdb::params_from_iter(spec.params.iter()))
        .map_err(|e| StoreError::Query(e.to_string()))?;
    let schema = stream.get_schema();
    let sink = ChannelWriter { tx, buf: Vec::with_capacity(CHUNK_BYTES) };
    let mut w = formats::writer(spec.format, &schema, sink).map_err(|e| StoreError::Query(e.to_string()))?;
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    let mut left = spec.max_rows.unwrap_or(usize::MAX);
    for batch in stream {
        if cancelled.load(Ordering::Relaxed) {
            return Err(StoreError::Timeout(spec.timeout.as_millis() as u64));
        }
        let batch = batch.map_err(|e| StoreError::Query(e.to_string()))?;
        let batch = if batch.num_rows() > left { batch.slice(0, left) } else { batch };
        left -= batch.num_rows();
        w.write(&batch).map_err(|e| StoreError::Query(e.to_string()))?;
        if left == 0 {
            break;
        }
    }
    w.finish().map_err(|e| StoreError::Query(e.to_string()))
}
