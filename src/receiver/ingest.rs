//! THE ingest path. Every front door (gRPC, HTTP protobuf, HTTP JSON, the Claude Code hook
//! endpoint) decodes, then calls `Ingest::export`: reserve memory for what the request becomes ->
//! map (pure) -> append to the ingest log (durable) -> report what was accepted and what was
//! rejected (OTLP partial success). The acknowledgement is the log's fsync; DuckDB, the live
//! stream and session state follow from the log (`crate::pipeline`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::decode::{self, Encoding};
use super::heavy::HeavyPool;
use super::prescan;
use crate::ingest_log::{Part, PartKind, Record};
use crate::model::normalize;
use crate::model::records::Batch;
use crate::sessions::Clock;
use crate::store::{Store, StoreError};
use crate::telemetry::{Metrics, Refusal, Signal};

/// A decoded export request.
#[derive(Debug)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    /// A protobuf traces export as received, with its span count (prescan): decoded without a
    /// copy of its strings where it is mapped (`normalize::traces_pb`), so its strings are never
    /// allocated one by one.
    TracesPb {
        bytes: Bytes,
        spans: u64,
    },
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) | Payload::TracesPb { .. } => Signal::Traces,
            Payload::Logs(_) => Signal::Logs,
            Payload::Metrics(_) => Signal::Metrics,
        }
    }

    fn kind(&self) -> PartKind {
        match self {
            Payload::Traces(_) | Payload::TracesPb { .. } => PartKind::Traces,
            Payload::Logs(_) => PartKind::Logs,
            Payload::Metrics(_) => PartKind::Metrics,
        }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(match self {
            Payload::TracesPb { bytes, .. } => return bytes.clone(),
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
        })
    }

    /// Spans, log records or data points in the request.
    pub fn record_count(&self) -> u64 {
        match self {
            Payload::TracesPb { spans, .. } => *spans,
            Payload::Traces(r) => {
                r.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
            }
            Payload::Logs(r) => {
                r.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len() as u64).sum()
            }
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                } as u64)
                .sum(),
        }
    }
}

/// One decoded payload and, when the request was protobuf, its bytes as they arrived (logged as
/// is; other encodings are re-encoded as protobuf for the log).
pub struct Export {
    pub payload: Payload,
    pub raw: Option<Bytes>,
}

impl Export {
    pub fn decoded(payload: Payload) -> Self {
        Self { payload, raw: None }
    }
}

/// Why an export was refused whole. Mapped to HTTP / gRPC status in `crate::error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Decode(String),
    #[error("request exceeds the {limit}-byte limit (after decompression)")]
    TooLarge { limit: usize },
    #[error("request holds {records} records; the limit is {limit} per request: send smaller batches")]
    TooManyRecords { records: u64, limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("collector is overloaded, retry later")]
    Overloaded,
    #[error("collector unavailable: {0}")]
    Unavailable(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded => IngestError::Overloaded,
            other => IngestError::Unavailable(other.to_string()),
        }
    }
}

/// What happened to an accepted export.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub signal: Signal,
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

impl Outcome {
    /// The encoded `Export…ServiceResponse` (gRPC, HTTP/protobuf): `partial_success` only when
    /// something was rejected.
    pub fn response_pb(&self) -> Vec<u8> {
        let partial = self.rejected > 0;
        let rejected = self.rejected as i64;
        let error_message = || self.message.clone().unwrap_or_default();
        match self.signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial
                    .then(|| ExportTracePartialSuccess { rejected_spans: rejected, error_message: error_message() }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: error_message(),
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial.then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: error_message(),
                }),
            }
            .encode_to_vec(),
        }
    }
}

/// Limits of the ingest path.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Records (spans, log records, data points) one request may carry.
    pub max_records: u64,
    /// Bytes of memory requests being decoded and mapped may hold together.
    pub max_inflight_bytes: usize,
    /// How long a request may wait for memory before it is refused (503).
    pub wait: Duration,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self { max_records: 100_000, max_inflight_bytes: 256 << 20, wait: Duration::from_millis(500) }
    }
}

/// How long an export waits for a pipeline that is behind before it is mapped and logged anyway
/// (the log then absorbs it, up to its cap), and how often it looks.
const PACE_MAX_WAIT: Duration = Duration::from_secs(1);
const PACE_STEP: Duration = Duration::from_millis(2);

/// Memory a request will take while decoded and mapped: its bytes (raw + decoded) plus the rows
/// it becomes (attributes as JSON, context per row).
pub fn memory_estimate(wire_bytes: usize, records: u64) -> usize {
    wire_bytes.saturating_mul(3).saturating_add((records as usize).saturating_mul(1024))
}

/// Exports mapped into one batch: the rows, one outcome per export, and the log's parts.
struct Mapped {
    batch: Batch,
    outcomes: Vec<Outcome>,
    parts: Vec<Part>,
}

/// Map exports that belong together (pure; the caller counts a refusal, named by its signal).
fn map_exports(exports: Vec<Export>, received: i64, max_records: u64) -> Result<Mapped, (Signal, IngestError)> {
    let mut merged = Batch::default();
    let mut outcomes = Vec::with_capacity(exports.len());
    let mut parts = Vec::with_capacity(exports.len());
    for Export { payload, raw } in exports {
        let signal = payload.signal();
        let total = payload.record_count();
        if total > max_records {
            return Err((signal, IngestError::TooManyRecords { records: total, limit: max_records }));
        }
        let mapped = match &payload {
            Payload::TracesPb { bytes, .. } => normalize::traces_pb(bytes, received)
                .map_err(|e| (signal, IngestError::Decode(format!("invalid protobuf traces: {e}"))))?,
            Payload::Traces(r) => normalize::traces(r, received),
            Payload::Logs(r) => normalize::logs(r, received),
            Payload::Metrics(r) => normalize::metrics(r, received),
        };
        let rejected = mapped.rejected.min(total);
        if !mapped.batch.is_empty() {
            let bytes = raw.unwrap_or_else(|| payload.encode());
            parts.push(Part { kind: payload.kind(), bytes });
        }
        drop(payload);
        merged.append(mapped.batch);
        outcomes.push(Outcome { signal, accepted: total - rejected, rejected, message: mapped.error_message });
    }
    Ok(Mapped { batch: merged, outcomes, parts })
}

/// Shared state of the ingest path.
#[derive(Clone)]
pub struct Ingest {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    clock: Clock,
    limits: IngestLimits,
    budget: Arc<Semaphore>,
    budget_kib: u32,
    /// Where bulk exports are decompressed, decoded and mapped (`heavy`).
    heavy: Arc<HeavyPool>,
}

impl Ingest {
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Clock, limits: IngestLimits, heavy: HeavyPool) -> Self {
        let budget_kib = u32::try_from((limits.max_inflight_bytes / 1024).max(1)).unwrap_or(u32::MAX);
        Self {
            store,
            metrics,
            clock,
            limits,
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
            heavy: Arc::new(heavy),
        }
    }

    pub fn limits(&self) -> IngestLimits {
        self.limits
    }

    /// Run `f` here when it is light, else on the heavy pool (`heavy::HeavyPool::run`).
    pub async fn offload<T: Send + 'static>(
        &self,
        weight: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IngestError> {
        self.heavy.run(weight, f).await
    }

    /// Count a refusal made before `export` (decode, size, media type).
    pub fn refused(&self, signal: Signal, err: &IngestError) {
        let why = match err {
            IngestError::TooLarge { .. } | IngestError::TooManyRecords { .. } => Refusal::TooLarge,
            IngestError::Overloaded | IngestError::Unavailable(_) => Refusal::Overloaded,
            _ => Refusal::BadRequest,
        };
        self.metrics.refused(signal, why);
        tracing::debug!(signal = signal.as_str(), error = %err, "export refused");
    }

    /// A protobuf export's bytes (either front door, after decompression): count its records
    /// before decoding (refuse too many), reserve memory for what it becomes, decode (traces: where
    /// they are mapped, `Payload::TracesPb`). The bytes stay with the export: the log stores them as
    /// received. The reservation is held until the rows are handed over.
    pub async fn prepare_protobuf(
        &self,
        signal: Signal,
        bytes: Bytes,
    ) -> Result<(Export, OwnedSemaphorePermit), IngestError> {
        let records = prescan::protobuf_records(signal, &bytes)
            .map_err(|e| IngestError::Decode(format!("invalid protobuf {}: {e}", signal.as_str())))?;
        self.check_records(records)?;
        let reserved = self.reserve(memory_estimate(bytes.len(), records)).await?;
        if signal == Signal::Traces {
            // Decoded where it is mapped, straight from these bytes (`Payload::TracesPb`).
            let payload = Payload::TracesPb { bytes: bytes.clone(), spans: records };
            return Ok((Export { payload, raw: Some(bytes) }, reserved));
        }
        let wire = bytes.clone();
        let payload = self.offload(bytes.len(), move || decode::decode(signal, Encoding::Protobuf, &wire)).await??;
        Ok((Export { payload, raw: Some(bytes) }, reserved))
    }

    /// Refuse a request with more records than allowed (before or after decoding).
    pub fn check_records(&self, records: u64) -> Result<(), IngestError> {
        if records > self.limits.max_records {
            return Err(IngestError::TooManyRecords { records, limit: self.limits.max_records });
        }
        Ok(())
    }

    /// Reserve memory for a request that will take about `bytes` while decoded and mapped; held
    /// until the permit is dropped. Refuses (503) when the budget stays full for the wait.
    pub async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, IngestError> {
        let kib = u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX).min(self.budget_kib);
        match tokio::time::timeout(self.limits.wait, self.budget.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(IngestError::Unavailable("shutting down".into())),
            Err(_) => Err(IngestError::Overloaded),
        }
    }

    /// Map, log and acknowledge one export (paced: see `pace`).
    pub async fn export(&self, export: Export) -> Result<Outcome, IngestError> {
        self.pace().await;
        let mut outcomes = self.export_all(vec![export]).await?;
        outcomes.pop().ok_or_else(|| IngestError::Unavailable("no outcome".into()))
    }

    /// Pacing: while the pipeline is behind, wait for it (up to `PACE_MAX_WAIT`) before mapping.
    /// A record acknowledged past a full hand-off is mapped twice (here, and again when the
    /// pipeline reads it back from the log), and on a busy box that CPU comes out of the DuckDB
    /// writer's share: waiting keeps acknowledgements at the pace rows are stored. A burst still
    /// goes to the log after the wait, so the log's cap, not this, is what refuses (503). Hook
    /// calls (`export_all`) are not paced: an agent waits on them, and they are a few rows.
    async fn pace(&self) {
        if !self.store.behind() {
            return;
        }
        let started = std::time::Instant::now();
        while self.store.behind() && started.elapsed() < PACE_MAX_WAIT {
            tokio::time::sleep(PACE_STEP).await;
        }
        self.metrics.paced(started.elapsed());
    }

    /// Several payloads that belong together (one hook call: its log record and its tool span):
    /// one log record, so they are stored together or not at all and a retry never duplicates
    /// half of them.
    pub async fn export_all(&self, exports: Vec<Export>) -> Result<Vec<Outcome>, IngestError> {
        let received = (self.clock)();
        let max_records = self.limits.max_records;
        let weight = exports.iter().map(|e| e.payload.record_count() as usize).sum::<usize>().saturating_mul(1024);
        let Mapped { batch: merged, outcomes, parts } =
            match self.offload(weight, move || map_exports(exports, received, max_records)).await? {
                Ok(m) => m,
                Err((signal, e)) => {
                    self.refused(signal, &e);
                    return Err(e);
                }
            };
        if !parts.is_empty() {
            let record = Record { received_us: received, parts };
            if let Err(e) = self.store.append(record, merged).await {
                let err = IngestError::from(e);
                for o in &outcomes {
                    self.refused(o.signal, &err);
                }
                return Err(err);
            }
        }
        for o in &outcomes {
            self.metrics.accepted(o.signal, o.accepted, o.rejected);
            if o.rejected > 0 {
                tracing::debug!(signal = o.signal.as_str(), rejected = o.rejected, message = ?o.message, "partial success");
            }
        }
        Ok(outcomes)
    }
}
