//! What the collector does with a request body, as the fuzz targets drive it: decode (protobuf or
//! OTLP/JSON), map to rows (`model::normalize`), write the ingest-log record and map it again as
//! replay after a restart does. Properties: nothing panics; the record round-trips; the rows
//! replayed from the log are the rows mapped on ingest.

use agent_console::ingest_log::{Part, PartKind, Record};
use agent_console::model::normalize;
use agent_console::pipeline::replay::map_record;
use agent_console::receiver::decode::{self, Encoding};
use agent_console::receiver::ingest::Payload;
use agent_console::telemetry::Signal;
use prost::Message;

/// A fixed receive time (mapping takes it as an input, so runs are reproducible).
pub const RECEIVED_US: i64 = 1_764_000_000_000_000;

/// The signal the first byte selects (the rest is the body).
pub fn signal_of(selector: u8) -> Signal {
    match selector % 3 {
        0 => Signal::Traces,
        1 => Signal::Logs,
        _ => Signal::Metrics,
    }
}

/// Decode `body` as `signal` in `enc`, then map and replay it.
pub fn decode_and_map(signal: Signal, enc: Encoding, body: &[u8]) {
    let _ = decode::sniff(enc, body);
    let decoded = decode::decode(signal, enc, body);
    if let (Signal::Traces, Encoding::Protobuf) = (signal, enc) {
        // The ingest path maps protobuf traces from a zero-copy view of the bytes: it must accept
        // what prost accepts and map it to the same rows.
        let view = normalize::traces_pb(body, RECEIVED_US);
        match (&decoded, &view) {
            (Ok(Payload::Traces(r)), Ok(v)) => {
                assert_eq!(rows(&v.batch), rows(&normalize::traces(r, RECEIVED_US).batch), "view and prost map alike")
            }
            (Ok(_), Err(e)) => panic!("prost decodes what the view refuses: {e}"),
            (Err(e), Ok(_)) => assert!(e.to_string().contains("recursion"), "the view decodes what prost refuses: {e}"),
            _ => {}
        }
    }
    if let Ok(payload) = decoded {
        map_and_replay(&payload);
    }
}

/// Map a decoded payload as ingest does, then as replay does from its log record.
pub fn map_and_replay(payload: &Payload) {
    let _ = payload.record_count();
    let (mapped, kind, bytes) = match payload {
        Payload::Traces(r) => (normalize::traces(r, RECEIVED_US), PartKind::Traces, r.encode_to_vec()),
        Payload::TracesPb { bytes, .. } => match normalize::traces_pb(bytes, RECEIVED_US) {
            Ok(m) => (m, PartKind::Traces, bytes.to_vec()),
            Err(_) => return,
        },
        Payload::Logs(r) => (normalize::logs(r, RECEIVED_US), PartKind::Logs, r.encode_to_vec()),
        Payload::Metrics(r) => (normalize::metrics(r, RECEIVED_US), PartKind::Metrics, r.encode_to_vec()),
    };
    let record = Record { received_us: RECEIVED_US, parts: vec![Part { kind, bytes: bytes.into() }] };
    let decoded = Record::decode(record.encode().into()).expect("a record we wrote decodes");
    assert_eq!(decoded, record, "the ingest log record round-trips");
    let replayed = map_record(&decoded).expect("bytes we encoded decode");
    assert_eq!(rows(&replayed), rows(&mapped.batch), "replay maps to the same rows");
}

/// The rows of a batch as comparable text: Debug, not `==` (NaN values compare unequal to
/// themselves), with the sessions and agents seen sorted (they come out of a hash map).
fn rows(b: &agent_console::model::records::Batch) -> String {
    let mut seen: Vec<String> = b.sessions.iter().chain(&b.agents).map(|s| format!("{s:?}")).collect();
    seen.sort();
    format!("{:?} {:?} {:?} {:?} {:?} {seen:?}", b.spans, b.logs, b.points, b.model_calls, b.tool_calls)
}
