//! Counting what a request will become before decoding it, so the memory budget is charged for
//! the rows a request turns into (not its wire size) and a request of millions of tiny records is
//! refused before it is decoded. Both scans are iterative loops over the bytes (no recursion,
//! no allocation).
//!
//! - Protobuf: walks the fixed OTLP nesting (request -> resource_* -> scope_* -> records, and for
//!   metrics -> metric -> data -> data_points) reading only tags and lengths: an exact count.
//! - JSON: counts objects (`{` outside strings): every record is at least one object, and the
//!   decoder's memory grows with objects, so this bounds both.

use crate::telemetry::Signal;

/// Why a scan failed (the decoder would fail too; this just says so earlier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct ScanError(&'static str);

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, ScanError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or(ScanError("truncated varint"))?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ScanError("varint too long"))
}

/// Visit each field of one message: `f(field number, Some(bytes) for length-delimited)`.
fn fields<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(u64, Option<&'a [u8]>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(buf, &mut at)?;
                f(field, None)?;
            }
            1 => {
                at = at.checked_add(8).filter(|&e| e <= buf.len()).ok_or(ScanError("truncated fixed64"))?;
                f(field, None)?;
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).map_err(|_| ScanError("length overflow"))?;
                let end = at.checked_add(len).filter(|&e| e <= buf.len()).ok_or(ScanError("truncated field"))?;
                f(field, Some(&buf[at..end]))?;
                at = end;
            }
            5 => {
                at = at.checked_add(4).filter(|&e| e <= buf.len()).ok_or(ScanError("truncated fixed32"))?;
                f(field, None)?;
            }
            _ => return Err(ScanError("unsupported wire type")),
        }
    }
    Ok(())
}

/// Records (spans, log records, data points) in an OTLP protobuf export request.
pub fn protobuf_records(signal: Signal, buf: &[u8]) -> Result<u64, ScanError> {
    let mut n: u64 = 0;
    // request.resource_* = 1; resource_*.scope_* = 2; scope_*.records = 2
    fields(buf, |f, res| {
        let Some(res) = res.filter(|_| f == 1) else { return Ok(()) };
        fields(res, |f, scope| {
            let Some(scope) = scope.filter(|_| f == 2) else { return Ok(()) };
            fields(scope, |f, rec| {
                let Some(rec) = rec.filter(|_| f == 2) else { return Ok(()) };
                match signal {
                    Signal::Traces | Signal::Logs => n += 1,
                    // metric: gauge 5, sum 7, histogram 9, exponential_histogram 10, summary 11;
                    // each holds data_points = 1.
                    Signal::Metrics => fields(rec, |f, data| {
                        let Some(data) = data.filter(|_| matches!(f, 5 | 7 | 9 | 10 | 11)) else { return Ok(()) };
                        fields(data, |f, p| {
                            if f == 1 && p.is_some() {
                                n += 1;
                            }
                            Ok(())
                        })
                    })?,
                }
                Ok(())
            })
        })
    })?;
    Ok(n)
}

/// Objects in a JSON document (`{` outside strings). Not a validator: the decoder is.
pub fn json_objects(buf: &[u8]) -> u64 {
    let mut n = 0u64;
    let mut in_str = false;
    let mut escaped = false;
    for &b in buf {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if b == b'{' {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    #[test]
    fn counts_records_exactly_without_decoding() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![
                        ScopeLogs { log_records: vec![LogRecord::default(); 3], ..Default::default() },
                        ScopeLogs { log_records: vec![LogRecord::default(); 2], ..Default::default() },
                    ],
                    ..Default::default()
                },
                ResourceLogs::default(),
            ],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(protobuf_records(Signal::Logs, &bytes), Ok(5));
        assert!(protobuf_records(Signal::Logs, &bytes[..bytes.len() - 1]).is_err());
        let traces = crate::fixtures::shared_fixture("langchain-openinference/traces-1.pb").expect("fixture");
        assert_eq!(protobuf_records(Signal::Traces, &traces), Ok(7));
        let metrics = crate::fixtures::shared_fixture("claude-code/otlp/metrics-1.pb").expect("fixture");
        let decoded =
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(&metrics[..])
                .expect("decode");
        let expected = crate::receiver::ingest::Payload::Metrics(decoded).record_count();
        assert_eq!(protobuf_records(Signal::Metrics, &metrics), Ok(expected));
    }

    #[test]
    fn json_objects_skip_strings() {
        assert_eq!(json_objects(br#"{"a":"{\"}{","b":[{},{}]}"#), 3);
    }
}
