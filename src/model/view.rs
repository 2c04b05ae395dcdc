//! Borrowed OTLP: the attribute types the normaliser reads, and a zero-copy decoder of
//! `ExportTraceServiceRequest` into them.
//!
//! Why: decoding a trace export with prost allocates two strings per attribute (key and value),
//! and on a busy box those allocations and their frees were the largest single cost of the
//! request threads (perf, BENCHMARKS.md "zero-copy trace decode"). Here every string and byte
//! field is a slice of the request's own bytes; the only allocations are one `Vec` per repeated
//! field. Logs and metrics stay on prost (their attributes are viewed with `kvs_of`).
//!
//! The decoder follows the protobuf wire rules as prost applies them to these messages: unknown
//! fields are skipped (groups included), a singular message that appears twice is merged, a
//! repeated one appended, the last scalar wins, `string` fields must be UTF-8, a field with the
//! wrong wire type is an error, nesting deeper than `RECURSION_LIMIT` is an error (no unbounded
//! recursion on input).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pb;

/// Room made for a span's attributes at its first one.
const SPAN_ATTRS_GUESS: usize = 24;
/// Wire bytes a span takes, at the low end (for the initial capacity of a scope's spans).
const SPAN_WIRE_BYTES_GUESS: usize = 512;

/// prost's own limit on message nesting.
const RECURSION_LIMIT: u32 = 100;

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("failed to decode Protobuf message: {0}")]
pub struct DecodeError(String);

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        // prost's Display already says "failed to decode Protobuf message: ...".
        let s = e.to_string();
        Self(s.strip_prefix("failed to decode Protobuf message: ").map(str::to_string).unwrap_or(s))
    }
}

fn err(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

/// An attribute: `opentelemetry.proto.common.v1.KeyValue`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: Option<AnyValue<'a>>,
}

/// `opentelemetry.proto.common.v1.AnyValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnyValue<'a> {
    pub value: Option<Value<'a>>,
}

/// The `AnyValue.value` oneof.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    StringValue(&'a str),
    BoolValue(bool),
    IntValue(i64),
    DoubleValue(f64),
    ArrayValue(Vec<AnyValue<'a>>),
    KvlistValue(Vec<KeyValue<'a>>),
    BytesValue(&'a [u8]),
    /// A kind this collector does not read (the profiles' string-table index).
    Other,
}

/// `ExportTraceServiceRequest`.
#[derive(Debug, Default, PartialEq)]
pub struct TracesRequest<'a> {
    pub resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct ResourceSpans<'a> {
    /// The resource's attributes (`None`: no resource).
    pub resource: Option<Vec<KeyValue<'a>>>,
    pub scope_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct ScopeSpans<'a> {
    /// The instrumentation scope's name (`None`: no scope).
    pub scope: Option<&'a str>,
    pub spans: Vec<Span<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Span<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<KeyValue<'a>>,
    pub events: Vec<Event<'a>>,
    pub links: Vec<Link<'a>>,
    pub status: Option<Status<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Event<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Link<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Status<'a> {
    pub message: &'a str,
    pub code: i32,
}

// ---- views of prost values (logs, metrics, imports, tests) ----

/// Nesting kept when viewing prost values built in code (decoded ones are bounded by prost).
const MAX_VIEW_DEPTH: u32 = 64;

/// A view of prost attributes.
pub fn kvs_of(kvs: &[pb::KeyValue]) -> Vec<KeyValue<'_>> {
    kvs_at(kvs, 0)
}

fn kvs_at(kvs: &[pb::KeyValue], depth: u32) -> Vec<KeyValue<'_>> {
    kvs.iter().map(|kv| KeyValue { key: &kv.key, value: kv.value.as_ref().map(|v| any_at(v, depth + 1)) }).collect()
}

/// A view of a prost value.
pub fn any_of(v: &pb::AnyValue) -> AnyValue<'_> {
    any_at(v, 0)
}

fn any_at(v: &pb::AnyValue, depth: u32) -> AnyValue<'_> {
    use pb::any_value::Value as P;
    if depth > MAX_VIEW_DEPTH {
        return AnyValue { value: Some(Value::Other) };
    }
    let value = v.value.as_ref().map(|v| match v {
        P::StringValue(s) => Value::StringValue(s),
        P::BoolValue(b) => Value::BoolValue(*b),
        P::IntValue(i) => Value::IntValue(*i),
        P::DoubleValue(d) => Value::DoubleValue(*d),
        P::ArrayValue(a) => Value::ArrayValue(a.values.iter().map(|v| any_at(v, depth + 1)).collect()),
        P::KvlistValue(l) => Value::KvlistValue(kvs_at(&l.values, depth + 1)),
        P::BytesValue(b) => Value::BytesValue(b),
        #[allow(unreachable_patterns)]
        _ => Value::Other,
    });
    AnyValue { value }
}

impl<'a> TracesRequest<'a> {
    /// A view of a prost request (built in code, or decoded from JSON).
    pub fn of(req: &'a ExportTraceServiceRequest) -> Self {
        let resource_spans = req
            .resource_spans
            .iter()
            .map(|rs| ResourceSpans {
                resource: rs.resource.as_ref().map(|r| kvs_of(&r.attributes)),
                scope_spans: rs
                    .scope_spans
                    .iter()
                    .map(|ss| ScopeSpans {
                        scope: ss.scope.as_ref().map(|s| s.name.as_str()),
                        spans: ss
                            .spans
                            .iter()
                            .map(|s| Span {
                                trace_id: &s.trace_id,
                                span_id: &s.span_id,
                                parent_span_id: &s.parent_span_id,
                                name: &s.name,
                                kind: s.kind,
                                start_time_unix_nano: s.start_time_unix_nano,
                                end_time_unix_nano: s.end_time_unix_nano,
                                attributes: kvs_of(&s.attributes),
                                events: s
                                    .events
                                    .iter()
                                    .map(|e| Event {
                                        time_unix_nano: e.time_unix_nano,
                                        name: &e.name,
                                        attributes: kvs_of(&e.attributes),
                                    })
                                    .collect(),
                                links: s
                                    .links
                                    .iter()
                                    .map(|l| Link {
                                        trace_id: &l.trace_id,
                                        span_id: &l.span_id,
                                        attributes: kvs_of(&l.attributes),
                                    })
                                    .collect(),
                                status: s.status.as_ref().map(|st| Status { message: &st.message, code: st.code }),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Self { resource_spans }
    }

    /// Spans in the request.
    pub fn span_count(&self) -> u64 {
        self.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len() as u64).sum()
    }
}

// ---- the wire ----

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// A cursor over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or_else(|| err("buffer underflow"))?;
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(err("invalid varint"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(err("invalid varint"))
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        if k > u64::from(u32::MAX) {
            return Err(err(format!("invalid key value: {k}")));
        }
        let wire = (k & 7) as u8;
        if wire > 5 {
            return Err(err(format!("invalid wire type value: {wire}")));
        }
        let tag = (k >> 3) as u32;
        if tag == 0 {
            return Err(err("invalid tag value: 0"));
        }
        Ok((tag, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| err("buffer underflow"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| err("buffer underflow"))?;
        self.take(n)
    }

    /// Skip a field we do not read (a group is skipped to its end marker, without recursion).
    fn skip(&mut self, tag: u32, wire: u8) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            I64 => self.take(8).map(|_| ()),
            LEN => self.len_delimited().map(|_| ()),
            I32 => self.take(4).map(|_| ()),
            SGROUP => {
                let mut open = vec![tag];
                while let Some(&inner) = open.last() {
                    let (t, w) = self.key()?;
                    match w {
                        SGROUP => {
                            if open.len() as u32 >= RECURSION_LIMIT {
                                return Err(err("recursion limit reached"));
                            }
                            open.push(t);
                        }
                        EGROUP if t == inner => {
                            open.pop();
                        }
                        EGROUP => return Err(err("unexpected end group tag")),
                        _ => self.skip(t, w)?,
                    }
                }
                Ok(())
            }
            _ => Err(err("unexpected end group tag")),
        }
    }
}

fn expect(field: &'static str, wire: u8, want: u8) -> Result<(), DecodeError> {
    if wire == want {
        Ok(())
    } else {
        Err(err(format!("invalid wire type: {wire} (expected {want}) in {field}")))
    }
}

fn utf8<'a>(field: &'static str, b: &'a [u8]) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b).map_err(|_| err(format!("invalid string value: data is not UTF-8 encoded in {field}")))
}

fn string<'a>(r: &mut Reader<'a>, field: &'static str, wire: u8) -> Result<&'a str, DecodeError> {
    expect(field, wire, LEN)?;
    utf8(field, r.len_delimited()?)
}

/// A length-delimited field's bytes: a `bytes` field, or an embedded message to decode.
fn bytes<'a>(r: &mut Reader<'a>, field: &'static str, wire: u8) -> Result<&'a [u8], DecodeError> {
    expect(field, wire, LEN)?;
    r.len_delimited()
}

fn fixed64(r: &mut Reader<'_>, field: &'static str, wire: u8) -> Result<u64, DecodeError> {
    expect(field, wire, I64)?;
    r.fixed64()
}

fn varint(r: &mut Reader<'_>, field: &'static str, wire: u8) -> Result<u64, DecodeError> {
    expect(field, wire, VARINT)?;
    r.varint()
}

fn depth_ok(depth: u32) -> Result<u32, DecodeError> {
    if depth >= RECURSION_LIMIT {
        Err(err("recursion limit reached"))
    } else {
        Ok(depth + 1)
    }
}

/// Decode a protobuf `ExportTraceServiceRequest` without copying its strings.
pub fn decode_traces(buf: &[u8]) -> Result<TracesRequest<'_>, DecodeError> {
    let mut out = TracesRequest::default();
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => {
                let mut rs = ResourceSpans::default();
                merge_resource_spans(&mut rs, bytes(&mut r, "ExportTraceServiceRequest.resource_spans", w)?, 1)?;
                out.resource_spans.push(rs);
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(out)
}

fn merge_resource_spans<'a>(rs: &mut ResourceSpans<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => {
                let b = bytes(&mut r, "ResourceSpans.resource", w)?;
                merge_resource(rs.resource.get_or_insert_with(Vec::new), b, depth)?;
            }
            (2, w) => {
                let mut ss = ScopeSpans::default();
                merge_scope_spans(&mut ss, bytes(&mut r, "ResourceSpans.scope_spans", w)?, depth)?;
                rs.scope_spans.push(ss);
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_resource<'a>(attrs: &mut Vec<KeyValue<'a>>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => attrs.push(key_value(bytes(&mut r, "Resource.attributes", w)?, depth)?),
            (2, w) => {
                varint(&mut r, "Resource.dropped_attributes_count", w)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_scope_spans<'a>(ss: &mut ScopeSpans<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => {
                let b = bytes(&mut r, "ScopeSpans.scope", w)?;
                merge_scope(ss.scope.get_or_insert(""), b, depth)?;
            }
            (2, w) => {
                let mut span = Span::default();
                merge_span(&mut span, bytes(&mut r, "ScopeSpans.spans", w)?, depth)?;
                if ss.spans.capacity() == 0 {
                    // A span is ~0.3-1 KB on the wire: room for the likely count at once instead of
                    // ~10 doublings, each copying every span so far. Bounded by the bytes received.
                    ss.spans.reserve(buf.len() / SPAN_WIRE_BYTES_GUESS);
                }
                ss.spans.push(span);
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

/// The scope's name (its version and attributes are checked, not kept: the normaliser reads only
/// the name).
fn merge_scope<'a>(name: &mut &'a str, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => *name = string(&mut r, "InstrumentationScope.name", w)?,
            (2, w) => {
                string(&mut r, "InstrumentationScope.version", w)?;
            }
            (3, w) => {
                key_value(bytes(&mut r, "InstrumentationScope.attributes", w)?, depth)?;
            }
            (4, w) => {
                varint(&mut r, "InstrumentationScope.dropped_attributes_count", w)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_span<'a>(s: &mut Span<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => s.trace_id = bytes(&mut r, "Span.trace_id", w)?,
            (2, w) => s.span_id = bytes(&mut r, "Span.span_id", w)?,
            (3, w) => {
                string(&mut r, "Span.trace_state", w)?;
            }
            (4, w) => s.parent_span_id = bytes(&mut r, "Span.parent_span_id", w)?,
            (5, w) => s.name = string(&mut r, "Span.name", w)?,
            (6, w) => s.kind = varint(&mut r, "Span.kind", w)? as i32,
            (7, w) => s.start_time_unix_nano = fixed64(&mut r, "Span.start_time_unix_nano", w)?,
            (8, w) => s.end_time_unix_nano = fixed64(&mut r, "Span.end_time_unix_nano", w)?,
            (9, w) => {
                let kv = key_value(bytes(&mut r, "Span.attributes", w)?, depth)?;
                if s.attributes.capacity() == 0 {
                    // Spans carry ~10-30 attributes: one allocation instead of growing by doubling.
                    s.attributes.reserve(SPAN_ATTRS_GUESS);
                }
                s.attributes.push(kv);
            }
            (10 | 12 | 14, w) => {
                varint(&mut r, "Span.dropped_count", w)?;
            }
            (11, w) => {
                let mut e = Event::default();
                merge_event(&mut e, bytes(&mut r, "Span.events", w)?, depth)?;
                s.events.push(e);
            }
            (13, w) => {
                let mut l = Link::default();
                merge_link(&mut l, bytes(&mut r, "Span.links", w)?, depth)?;
                s.links.push(l);
            }
            (15, w) => {
                let b = bytes(&mut r, "Span.status", w)?;
                merge_status(s.status.get_or_insert_with(Status::default), b, depth)?;
            }
            (16, w) => {
                expect("Span.flags", w, I32)?;
                r.take(4)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_event<'a>(e: &mut Event<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => e.time_unix_nano = fixed64(&mut r, "Span.Event.time_unix_nano", w)?,
            (2, w) => e.name = string(&mut r, "Span.Event.name", w)?,
            (3, w) => e.attributes.push(key_value(bytes(&mut r, "Span.Event.attributes", w)?, depth)?),
            (4, w) => {
                varint(&mut r, "Span.Event.dropped_attributes_count", w)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_link<'a>(l: &mut Link<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => l.trace_id = bytes(&mut r, "Span.Link.trace_id", w)?,
            (2, w) => l.span_id = bytes(&mut r, "Span.Link.span_id", w)?,
            (3, w) => {
                string(&mut r, "Span.Link.trace_state", w)?;
            }
            (4, w) => l.attributes.push(key_value(bytes(&mut r, "Span.Link.attributes", w)?, depth)?),
            (5, w) => {
                varint(&mut r, "Span.Link.dropped_attributes_count", w)?;
            }
            (6, w) => {
                expect("Span.Link.flags", w, I32)?;
                r.take(4)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_status<'a>(s: &mut Status<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (2, w) => s.message = string(&mut r, "Status.message", w)?,
            (3, w) => s.code = varint(&mut r, "Status.code", w)? as i32,
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn key_value<'a>(buf: &'a [u8], depth: u32) -> Result<KeyValue<'a>, DecodeError> {
    let mut kv = KeyValue { key: "", value: None };
    merge_key_value(&mut kv, buf, depth)?;
    Ok(kv)
}

fn merge_key_value<'a>(kv: &mut KeyValue<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => kv.key = string(&mut r, "KeyValue.key", w)?,
            (2, w) => {
                let b = bytes(&mut r, "KeyValue.value", w)?;
                merge_any(kv.value.get_or_insert_with(AnyValue::default), b, depth)?;
            }
            (3, w) => {
                varint(&mut r, "KeyValue.key_strindex", w)?;
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_any<'a>(v: &mut AnyValue<'a>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => v.value = Some(Value::StringValue(string(&mut r, "AnyValue.string_value", w)?)),
            (2, w) => v.value = Some(Value::BoolValue(varint(&mut r, "AnyValue.bool_value", w)? != 0)),
            (3, w) => v.value = Some(Value::IntValue(varint(&mut r, "AnyValue.int_value", w)? as i64)),
            (4, w) => v.value = Some(Value::DoubleValue(f64::from_bits(fixed64(&mut r, "AnyValue.double_value", w)?))),
            (5, w) => {
                let b = bytes(&mut r, "AnyValue.array_value", w)?;
                if !matches!(v.value, Some(Value::ArrayValue(_))) {
                    v.value = Some(Value::ArrayValue(Vec::new()));
                }
                if let Some(Value::ArrayValue(items)) = v.value.as_mut() {
                    merge_array(items, b, depth)?;
                }
            }
            (6, w) => {
                let b = bytes(&mut r, "AnyValue.kvlist_value", w)?;
                if !matches!(v.value, Some(Value::KvlistValue(_))) {
                    v.value = Some(Value::KvlistValue(Vec::new()));
                }
                if let Some(Value::KvlistValue(items)) = v.value.as_mut() {
                    merge_kvlist(items, b, depth)?;
                }
            }
            (7, w) => v.value = Some(Value::BytesValue(bytes(&mut r, "AnyValue.bytes_value", w)?)),
            (8, w) => {
                varint(&mut r, "AnyValue.string_value_strindex", w)?;
                v.value = Some(Value::Other);
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_array<'a>(items: &mut Vec<AnyValue<'a>>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => {
                let mut item = AnyValue::default();
                merge_any(&mut item, bytes(&mut r, "ArrayValue.values", w)?, depth)?;
                items.push(item);
            }
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

fn merge_kvlist<'a>(items: &mut Vec<KeyValue<'a>>, buf: &'a [u8], depth: u32) -> Result<(), DecodeError> {
    let depth = depth_ok(depth)?;
    let mut r = Reader::new(buf);
    while !r.done() {
        match r.key()? {
            (1, w) => items.push(key_value(bytes(&mut r, "KeyValueList.values", w)?, depth)?),
            (t, w) => r.skip(t, w)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value as P, AnyValue as PAny, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span, ResourceSpans as PRs, ScopeSpans as PSs, Span as PSpan, Status as PStatus,
    };
    use prost::Message;

    fn kv(k: &str, v: P) -> pb::KeyValue {
        pb::KeyValue { key: k.into(), value: Some(PAny { value: Some(v) }), ..Default::default() }
    }

    fn rich() -> ExportTraceServiceRequest {
        let nested = P::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "a",
                    P::ArrayValue(ArrayValue {
                        values: vec![PAny { value: Some(P::IntValue(-3)) }, PAny { value: None }],
                    }),
                ),
                kv("b", P::BytesValue(vec![0, 1, 255])),
            ],
        });
        let span = PSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "x=y".into(),
            parent_span_id: vec![3; 8],
            flags: 0x301,
            name: "chat gpt-4o ✓".into(),
            kind: 3,
            start_time_unix_nano: 1_700_000_000_000_000_001,
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                kv("gen_ai.usage.input_tokens", P::IntValue(i64::MIN)),
                kv("f", P::DoubleValue(-0.25)),
                kv("t", P::BoolValue(true)),
                kv("s", P::StringValue("quote \" and \\".into())),
                kv("n", nested),
                pb::KeyValue { key: "none".into(), value: None, ..Default::default() },
            ],
            dropped_attributes_count: 7,
            events: vec![span::Event {
                time_unix_nano: 5,
                name: "ev".into(),
                attributes: vec![kv("e", P::StringValue("v".into()))],
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 2,
            links: vec![span::Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                trace_state: String::new(),
                attributes: vec![kv("l", P::IntValue(1))],
                dropped_attributes_count: 0,
                flags: 1,
            }],
            dropped_links_count: 3,
            status: Some(PStatus { message: "boom".into(), code: 2 }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                PRs {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", P::StringValue("svc".into()))],
                        ..Default::default()
                    }),
                    scope_spans: vec![
                        PSs {
                            scope: Some(pb::InstrumentationScope {
                                name: "scope".into(),
                                version: "1".into(),
                                attributes: vec![kv("x", P::IntValue(1))],
                                dropped_attributes_count: 0,
                            }),
                            spans: vec![span.clone(), PSpan { status: None, ..span }],
                            schema_url: "u".into(),
                        },
                        PSs::default(),
                    ],
                    schema_url: String::new(),
                },
                PRs::default(),
            ],
        }
    }

    #[test]
    fn decodes_what_prost_encodes_as_the_view_of_prost_decoding_it() {
        let req = rich();
        let bytes = req.encode_to_vec();
        let decoded = decode_traces(&bytes).expect("decodes");
        assert_eq!(decoded, TracesRequest::of(&req));
        assert_eq!(decoded.span_count(), 2);
        let again = ExportTraceServiceRequest::decode(&bytes[..]).expect("prost decodes");
        assert_eq!(decoded, TracesRequest::of(&again));
    }

    #[test]
    fn captured_fixtures_decode_as_prost_decodes_them() {
        let captured = crate::fixtures::shared_fixture("langchain-openinference/traces-1.pb").expect("fixture");
        let generated =
            crate::fixtures::genai_traces(64, 4, &mut crate::fixtures::Rng::new(7), 1_700_000_000_000_000_000)
                .encode_to_vec();
        for bytes in [captured, generated] {
            let prost = ExportTraceServiceRequest::decode(&bytes[..]).expect("prost");
            let view = decode_traces(&bytes).expect("view");
            assert!(view.span_count() > 0);
            assert_eq!(view, TracesRequest::of(&prost));
        }
    }

    #[test]
    fn repeated_singular_messages_merge_and_unknown_fields_are_skipped() {
        // Two `resource` fields merge their attributes; two `status` fields merge field by field.
        let mut buf = Vec::new();
        let r1 = Resource { attributes: vec![kv("a", P::IntValue(1))], ..Default::default() }.encode_to_vec();
        let r2 = Resource { attributes: vec![kv("b", P::IntValue(2))], ..Default::default() }.encode_to_vec();
        let st1 = PStatus { message: "first".into(), code: 2 }.encode_to_vec();
        let st2 = PStatus { message: "second".into(), code: 0 }.encode_to_vec();
        let mut span = PSpan { name: "s".into(), ..Default::default() }.encode_to_vec();
        for st in [&st1, &st2] {
            prost::encoding::encode_key(15, prost::encoding::WireType::LengthDelimited, &mut span);
            prost::encoding::encode_varint(st.len() as u64, &mut span);
            span.extend_from_slice(st);
        }
        // An unknown varint field, an unknown group with a nested group, an unknown fixed32.
        prost::encoding::encode_key(99, prost::encoding::WireType::Varint, &mut span);
        prost::encoding::encode_varint(5, &mut span);
        prost::encoding::encode_key(98, prost::encoding::WireType::StartGroup, &mut span);
        prost::encoding::encode_key(1, prost::encoding::WireType::StartGroup, &mut span);
        prost::encoding::encode_key(1, prost::encoding::WireType::EndGroup, &mut span);
        prost::encoding::encode_key(98, prost::encoding::WireType::EndGroup, &mut span);
        prost::encoding::encode_key(97, prost::encoding::WireType::ThirtyTwoBit, &mut span);
        span.extend_from_slice(&[1, 2, 3, 4]);
        let mut ss = Vec::new();
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut ss);
        prost::encoding::encode_varint(span.len() as u64, &mut ss);
        ss.extend_from_slice(&span);
        let mut rs = Vec::new();
        for r in [&r1, &r2] {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut rs);
            prost::encoding::encode_varint(r.len() as u64, &mut rs);
            rs.extend_from_slice(r);
        }
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut rs);
        prost::encoding::encode_varint(ss.len() as u64, &mut rs);
        rs.extend_from_slice(&ss);
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut buf);
        prost::encoding::encode_varint(rs.len() as u64, &mut buf);
        buf.extend_from_slice(&rs);

        let prost = ExportTraceServiceRequest::decode(&buf[..]).expect("prost accepts it");
        let view = decode_traces(&buf).expect("so do we");
        assert_eq!(view, TracesRequest::of(&prost));
        let rs = &view.resource_spans[0];
        assert_eq!(rs.resource.as_ref().map(Vec::len), Some(2));
        let st = rs.scope_spans[0].spans[0].status.as_ref().expect("status");
        // The second status sets only the message (a zero code is not on the wire): merged.
        assert_eq!((st.message, st.code), ("second", 2));
    }

    #[test]
    fn what_prost_refuses_is_refused() {
        let good = rich().encode_to_vec();
        // Every truncation of a valid body, a bad UTF-8 name, a wrong wire type, deep nesting.
        for cut in [1, 2, 10, good.len() / 2, good.len() - 1] {
            let b = &good[..cut];
            assert_eq!(
                decode_traces(b).is_err(),
                ExportTraceServiceRequest::decode(b).is_err(),
                "cut at {cut}: prost and the view disagree"
            );
        }
        let bad_name = ExportTraceServiceRequest {
            resource_spans: vec![PRs {
                scope_spans: vec![PSs {
                    spans: vec![PSpan { name: "ab".into(), ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let at = bad_name.windows(2).position(|w| w == b"ab").expect("name bytes");
        let mut broken = bad_name.clone();
        broken[at] = 0xff;
        assert!(ExportTraceServiceRequest::decode(&broken[..]).is_err());
        let e = decode_traces(&broken).expect_err("not UTF-8");
        assert!(e.to_string().contains("UTF-8"), "{e}");

        // Field 1 of the request as a varint instead of a message.
        assert!(decode_traces(&[0x08, 0x01]).is_err());
        assert!(ExportTraceServiceRequest::decode(&[0x08u8, 0x01][..]).is_err());

        // An attribute value nested far deeper than the limit: an error, not a stack overflow.
        let mut v = PAny { value: Some(P::IntValue(1)) };
        for _ in 0..200 {
            v = PAny { value: Some(P::ArrayValue(ArrayValue { values: vec![v] })) };
        }
        let deep = ExportTraceServiceRequest {
            resource_spans: vec![PRs {
                resource: Some(Resource {
                    attributes: vec![pb::KeyValue { key: "d".into(), value: Some(v), ..Default::default() }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let e = decode_traces(&deep).expect_err("too deep");
        assert!(e.to_string().contains("recursion limit"), "{e}");
        assert!(ExportTraceServiceRequest::decode(&deep[..]).is_err());
    }
}
