//! What one ingest-log record holds: the export as it arrived (OTLP protobuf bytes, one part per
//! signal it carries) and the collector time it was received. Replay decodes and maps the bytes
//! again with the same receive time, so a replayed record yields the rows the live path made.
//!
//! Why raw bytes and not the mapped rows: the protobuf is 3-5x smaller than the mapped rows
//! (attributes as JSON, context repeated per row), costs nothing to produce on the protobuf
//! paths (the request body is written as is), and keeps the log independent of the table
//! layout, so a schema migration never has to rewrite a log. The price is a second decode + map
//! for records read back from disk (replay after a crash, or catch-up after the DuckDB writer
//! fell behind), which is rare and bounded by the log cap.
//!
//! Payload layout (little endian): `version u8 (1) | received_us i64 | parts u16 |
//! { kind u8 | len u32 | bytes }*`.

use bytes::Bytes;

use super::LogError;

/// What a part's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PartKind {
    /// `ExportTraceServiceRequest` protobuf.
    Traces = 1,
    /// `ExportLogsServiceRequest` protobuf.
    Logs = 2,
    /// `ExportMetricsServiceRequest` protobuf.
    Metrics = 3,
}

impl PartKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(PartKind::Traces),
            2 => Some(PartKind::Logs),
            3 => Some(PartKind::Metrics),
            _ => None,
        }
    }
}

/// One part of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub kind: PartKind,
    pub bytes: Bytes,
}

/// One record: everything one export (or one hook call) brought, stored and committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub received_us: i64,
    pub parts: Vec<Part>,
}

const VERSION: u8 = 1;

impl Record {
    pub fn single(kind: PartKind, bytes: Bytes, received_us: i64) -> Self {
        Self { received_us, parts: vec![Part { kind, bytes }] }
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + 8 + 2 + self.parts.iter().map(|p| 5 + p.bytes.len()).sum::<usize>()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(VERSION);
        out.extend_from_slice(&self.received_us.to_le_bytes());
        out.extend_from_slice(&(self.parts.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for p in self.parts.iter().take(u16::MAX as usize) {
            out.push(p.kind as u8);
            out.extend_from_slice(&(p.bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.bytes);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Decode a payload (its CRC already checked by the segment reader). Parts share `buf`.
    pub fn decode(buf: Bytes) -> Result<Self, LogError> {
        let bad = |why: &str| LogError::BadRecord(why.to_string());
        if buf.len() < 11 {
            return Err(bad("record shorter than its header"));
        }
        if buf[0] != VERSION {
            return Err(bad(&format!("unknown record version {}", buf[0])));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&buf[1..9]);
        let received_us = i64::from_le_bytes(t);
        let n = u16::from_le_bytes([buf[9], buf[10]]) as usize;
        let mut at = 11usize;
        let mut parts = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            if at + 5 > buf.len() {
                return Err(bad("part header past the end"));
            }
            let kind = PartKind::from_u8(buf[at]).ok_or_else(|| bad(&format!("unknown part kind {}", buf[at])))?;
            let len = u32::from_le_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
            at += 5;
            let end = at.checked_add(len).filter(|&e| e <= buf.len()).ok_or_else(|| bad("part past the end"))?;
            parts.push(Part { kind, bytes: buf.slice(at..end) });
            at = end;
        }
        if at != buf.len() {
            return Err(bad("trailing bytes after the last part"));
        }
        Ok(Self { received_us, parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Record {
            received_us: 1_700_000_000_123_456,
            parts: vec![
                Part { kind: PartKind::Logs, bytes: Bytes::from_static(b"\x0a\x00") },
                Part { kind: PartKind::Traces, bytes: Bytes::from_static(b"") },
            ],
        };
        let enc = r.encode();
        assert_eq!(enc.len(), r.encoded_len());
        assert_eq!(Record::decode(Bytes::from(enc)).expect("decode"), r);
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let r = Record::single(PartKind::Metrics, Bytes::from_static(b"abcdef"), 7);
        let enc = r.encode();
        for cut in 0..enc.len() {
            assert!(Record::decode(Bytes::copy_from_slice(&enc[..cut])).is_err(), "cut at {cut}");
        }
        let mut bad = enc.clone();
        bad[11] = 9;
        assert!(Record::decode(Bytes::from(bad)).is_err());
        let mut long = enc;
        long.push(0);
        assert!(Record::decode(Bytes::from(long)).is_err());
    }
}
