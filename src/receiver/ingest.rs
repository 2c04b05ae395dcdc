//! THE ingest path. Every front door (gRPC, HTTP protobuf, HTTP JSON) decodes, then calls
//! `Ingest::export`: map (pure) -> queue for the writer -> wait for the commit -> report what was
//! accepted and what was rejected (OTLP partial success).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::model::normalize;
use crate::store::{Store, StoreError};
use crate::telemetry::{Metrics, Refusal, Signal};

/// A decoded export request.
#[derive(Debug)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Logs(_) => Signal::Logs,
            Payload::Metrics(_) => Signal::Metrics,
        }
    }

    /// Spans, log records or data points in the request.
    pub fn record_count(&self) -> u64 {
        match self {
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

/// Why an export was refused whole. Mapped to HTTP / gRPC status in `crate::error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Decode(String),
    #[error("request exceeds the {limit}-byte limit (after decompression)")]
    TooLarge { limit: usize },
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

/// Shared state of the ingest path.
#[derive(Clone)]
pub struct Ingest {
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Ingest {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    /// Count a refusal made before `export` (decode, size, media type).
    pub fn refused(&self, signal: Signal, err: &IngestError) {
        let why = match err {
            IngestError::TooLarge { .. } => Refusal::TooLarge,
            IngestError::Overloaded | IngestError::Unavailable(_) => Refusal::Overloaded,
            _ => Refusal::BadRequest,
        };
        self.metrics.refused(signal, why);
        tracing::debug!(signal = signal.as_str(), error = %err, "export refused");
    }

    /// Map, store and acknowledge one export. `size_bytes` is its decoded size (queue budget).
    pub async fn export(&self, payload: Payload, size_bytes: usize) -> Result<Outcome, IngestError> {
        let mut outcomes = self.export_all(vec![payload], size_bytes).await?;
        outcomes.pop().ok_or_else(|| IngestError::Unavailable("no outcome".into()))
    }

    /// Several payloads that belong together (one hook call: its log record and its tool span),
    /// stored in one transaction: all of them or none, so a retry never duplicates half.
    pub async fn export_all(&self, payloads: Vec<Payload>, size_bytes: usize) -> Result<Vec<Outcome>, IngestError> {
        let received = now_us();
        let mut merged = crate::model::records::Batch::default();
        let mut outcomes = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let signal = payload.signal();
            let total = payload.record_count();
            let mapped = match &payload {
                Payload::Traces(r) => normalize::traces(r, received),
                Payload::Logs(r) => normalize::logs(r, received),
                Payload::Metrics(r) => normalize::metrics(r, received),
            };
            drop(payload);
            let rejected = mapped.rejected.min(total);
            merged.append(mapped.batch);
            outcomes.push(Outcome { signal, accepted: total - rejected, rejected, message: mapped.error_message });
        }
        if !merged.is_empty() {
            if let Err(e) = self.store.write(merged, size_bytes).await {
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
