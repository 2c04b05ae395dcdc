//! Bytes -> OTLP messages: content-type and content-encoding negotiation, gzip with a cap on the
//! decompressed size (limits apply after decompression), protobuf or tolerant JSON decoding, and
//! signal sniffing for exports posted to `/`.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::ingest::{IngestError, Payload};
use super::otlp_json;
use crate::telemetry::Signal;

/// Body encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Parse a `Content-Type` header (parameters such as `charset` are ignored).
pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, IngestError> {
    let Some(ct) = content_type else {
        return Err(IngestError::UnsupportedMediaType(
            "missing Content-Type: send application/x-protobuf or application/json".into(),
        ));
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        other => Err(IngestError::UnsupportedMediaType(format!(
            "unsupported Content-Type {other:?}: send application/x-protobuf or application/json"
        ))),
    }
}

/// Undo `Content-Encoding`, refusing output larger than `limit` bytes (gzip bombs).
pub fn decompress(
    body: bytes::Bytes,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<bytes::Bytes, IngestError> {
    let enc = content_encoding.map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
    let mut out = Vec::new();
    let read = match enc.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&body[..]).take(limit as u64 + 1).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(&body[..]).take(limit as u64 + 1).read_to_end(&mut out),
        other => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: send gzip, deflate or identity"
            )))
        }
    };
    read.map_err(|e| IngestError::Decode(format!("invalid {enc} body: {e}")))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge { limit });
    }
    Ok(out.into())
}

/// Decode a body of a known signal.
pub fn decode(signal: Signal, enc: Encoding, body: &[u8]) -> Result<Payload, IngestError> {
    let bad = |e: String| IngestError::Decode(e);
    Ok(match (signal, enc) {
        (Signal::Traces, Encoding::Protobuf) => Payload::Traces(
            ExportTraceServiceRequest::decode(body).map_err(|e| bad(format!("invalid protobuf traces: {e}")))?,
        ),
        (Signal::Logs, Encoding::Protobuf) => Payload::Logs(
            ExportLogsServiceRequest::decode(body).map_err(|e| bad(format!("invalid protobuf logs: {e}")))?,
        ),
        (Signal::Metrics, Encoding::Protobuf) => Payload::Metrics(
            ExportMetricsServiceRequest::decode(body).map_err(|e| bad(format!("invalid protobuf metrics: {e}")))?,
        ),
        (Signal::Traces, Encoding::Json) => {
            Payload::Traces(otlp_json::decode_traces(body).map_err(|e| bad(format!("invalid JSON traces: {e}")))?)
        }
        (Signal::Logs, Encoding::Json) => {
            Payload::Logs(otlp_json::decode_logs(body).map_err(|e| bad(format!("invalid JSON logs: {e}")))?)
        }
        (Signal::Metrics, Encoding::Json) => {
            Payload::Metrics(otlp_json::decode_metrics(body).map_err(|e| bad(format!("invalid JSON metrics: {e}")))?)
        }
    })
}

/// Which signal a body posted to `/` carries. JSON: its top-level key. Protobuf: the wire shape
/// of the first record (spans carry fixed64 start/end times as fields 7/8, log records fixed64
/// times as fields 1/11, metrics only length-delimited data fields).
pub fn sniff(enc: Encoding, body: &[u8]) -> Option<Signal> {
    match enc {
        Encoding::Json => otlp_json::sniff_signal(body).map(|s| match s {
            otlp_json::Signal::Traces => Signal::Traces,
            otlp_json::Signal::Logs => Signal::Logs,
            otlp_json::Signal::Metrics => Signal::Metrics,
        }),
        Encoding::Protobuf => sniff_protobuf(body),
    }
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Iterate (field, wire type, payload) of one protobuf message; None on malformed input.
fn fields(buf: &[u8]) -> Option<Vec<(u64, u8, &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wt) = (key >> 3, (key & 7) as u8);
        let start = pos;
        match wt {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let s = pos;
                pos = pos.checked_add(len)?;
                if pos > buf.len() {
                    return None;
                }
                out.push((field, wt, &buf[s..pos]));
                continue;
            }
            5 => pos += 4,
            _ => return None,
        }
        if pos > buf.len() {
            return None;
        }
        out.push((field, wt, &buf[start..pos]));
    }
    Some(out)
}

fn sniff_protobuf(body: &[u8]) -> Option<Signal> {
    for (f, wt, resource) in fields(body)? {
        if f != 1 || wt != 2 {
            continue;
        }
        for (f, wt, scope) in fields(resource)? {
            if f != 2 || wt != 2 {
                continue;
            }
            for (f, wt, record) in fields(scope)? {
                if f != 2 || wt != 2 {
                    continue;
                }
                let rf = fields(record)?;
                let has = |n: u64, w: u8| rf.iter().any(|(f, wt, _)| *f == n && *wt == w);
                if has(7, 1) || has(8, 1) {
                    return Some(Signal::Traces);
                }
                if has(1, 1) || has(11, 1) || has(2, 0) || has(12, 2) {
                    return Some(Signal::Logs);
                }
                if [5, 7, 9, 10, 11].iter().any(|n| has(*n, 2)) {
                    return Some(Signal::Metrics);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types() {
        assert_eq!(encoding_of(Some("application/x-protobuf")).ok(), Some(Encoding::Protobuf));
        assert_eq!(encoding_of(Some("application/json; charset=utf-8")).ok(), Some(Encoding::Json));
        assert!(matches!(encoding_of(Some("text/plain")), Err(IngestError::UnsupportedMediaType(_))));
        assert!(matches!(encoding_of(None), Err(IngestError::UnsupportedMediaType(_))));
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 10 * 1024 * 1024]).expect("write");
        let gz = enc.finish().expect("finish");
        assert!(gz.len() < 64 * 1024);
        let r = decompress(gz.clone().into(), Some("gzip"), 1024 * 1024);
        assert!(matches!(r, Err(IngestError::TooLarge { .. })));
        let ok = decompress(gz.into(), Some("gzip"), 16 * 1024 * 1024).expect("fits");
        assert_eq!(ok.len(), 10 * 1024 * 1024);
        assert!(matches!(decompress(b"nope".to_vec().into(), Some("gzip"), 10), Err(IngestError::Decode(_))));
        assert!(matches!(decompress(b"x".to_vec().into(), Some("br"), 10), Err(IngestError::UnsupportedMediaType(_))));
    }
}
