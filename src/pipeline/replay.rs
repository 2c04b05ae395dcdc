//! Records read back from the log (replay after a restart, catch-up after the hand-off was full)
//! are decoded and mapped again exactly as the ingest path did, with their original receive time.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use crate::ingest_log::{PartKind, Record};
use crate::model::normalize;
use crate::model::records::Batch;
use crate::model::view::DecodeError;

/// The rows a logged record maps to.
pub fn map_record(r: &Record) -> Result<Batch, DecodeError> {
    let mut batch = Batch::default();
    for p in &r.parts {
        let mapped = match p.kind {
            PartKind::Traces => normalize::traces_pb(&p.bytes, r.received_us)?,
            PartKind::Logs => normalize::logs(&ExportLogsServiceRequest::decode(p.bytes.clone())?, r.received_us),
            PartKind::Metrics => {
                normalize::metrics(&ExportMetricsServiceRequest::decode(p.bytes.clone())?, r.received_us)
            }
        };
        batch.append(mapped.batch);
    }
    Ok(batch)
}
