//! Tolerant OTLP/JSON decoder: turns OTLP/JSON export request bodies (traces, logs, metrics)
//! into the prost message types of `opentelemetry-proto`, accepting camelCase or snake_case keys,
//! 64-bit integers as numbers or strings, enums as numbers or names, and hex trace/span ids.
//! Trace/span id lengths are NOT validated here; callers must check them.

use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point, metric, number_data_point, summary_data_point, AggregationTemporality,
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Map, Value};

/// Maximum nesting depth of `AnyValue` (arrayValue / kvlistValue) accepted.
pub const MAX_ANY_VALUE_DEPTH: usize = 64;

/// Longest enum name echoed back in an error message.
const MAX_ECHO_LEN: usize = 64;

/// Error decoding an OTLP/JSON body. Every variant except `Json` / `NotAnObject`
/// names the JSON path of the offending field, e.g. `resourceSpans[0].scopeSpans[1].spans[3].traceId`.
#[derive(Debug, thiserror::Error)]
pub enum JsonDecodeError {
    /// The body is not well-formed JSON.
    #[error("malformed json: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is valid JSON but its top level is not an object.
    #[error("request body is not a json object")]
    NotAnObject,
    /// A field has the wrong JSON type.
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// JSON path of the field.
        path: String,
        /// JSON type(s) accepted there.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },
    /// A trace/span id is not a valid hex string (bad character or odd length).
    #[error("{path}: invalid hex")]
    InvalidHex {
        /// JSON path of the field.
        path: String,
    },
    /// A `bytesValue` is not valid base64.
    #[error("{path}: invalid base64")]
    InvalidBase64 {
        /// JSON path of the field.
        path: String,
    },
    /// An integer field could not be decoded (not integral, negative where unsigned, out of range).
    #[error("{path}: invalid integer ({reason})")]
    InvalidInteger {
        /// JSON path of the field.
        path: String,
        /// Why the value was rejected.
        reason: &'static str,
    },
    /// A double field is a string that is not a number, "NaN", "Infinity" or "-Infinity".
    #[error("{path}: invalid double")]
    InvalidDouble {
        /// JSON path of the field.
        path: String,
    },
    /// A bool field is a string other than "true" / "false".
    #[error("{path}: invalid bool")]
    InvalidBool {
        /// JSON path of the field.
        path: String,
    },
    /// An enum field is a string that is neither a known enum value name nor an integer.
    #[error("{path}: unknown enum value {value:?}")]
    UnknownEnum {
        /// JSON path of the field.
        path: String,
        /// The offending name (truncated to 64 bytes).
        value: String,
    },
    /// `AnyValue` nesting exceeds [`MAX_ANY_VALUE_DEPTH`].
    #[error("{path}: value nesting deeper than {limit}")]
    TooDeep {
        /// JSON path of the first value past the limit.
        path: String,
        /// The limit.
        limit: usize,
    },
}

/// The signal carried by an OTLP/JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `resourceSpans`: an `ExportTraceServiceRequest`.
    Traces,
    /// `resourceLogs`: an `ExportLogsServiceRequest`.
    Logs,
    /// `resourceMetrics`: an `ExportMetricsServiceRequest`.
    Metrics,
}

type R<T> = Result<T, JsonDecodeError>;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonDecodeError> {
    let mut out = ExportTraceServiceRequest::default();
    let root = Path::Root;
    for (k, v) in parse_root(body)? {
        if !v.is_null() && matches!(k.as_str(), "resourceSpans" | "resource_spans") {
            out.resource_spans = list(v, &root.key("resourceSpans"), parse_resource_spans)?;
        }
    }
    Ok(out)
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, JsonDecodeError> {
    let mut out = ExportLogsServiceRequest::default();
    let root = Path::Root;
    for (k, v) in parse_root(body)? {
        if !v.is_null() && matches!(k.as_str(), "resourceLogs" | "resource_logs") {
            out.resource_logs = list(v, &root.key("resourceLogs"), parse_resource_logs)?;
        }
    }
    Ok(out)
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonDecodeError> {
    let mut out = ExportMetricsServiceRequest::default();
    let root = Path::Root;
    for (k, v) in parse_root(body)? {
        if !v.is_null() && matches!(k.as_str(), "resourceMetrics" | "resource_metrics") {
            out.resource_metrics = list(v, &root.key("resourceMetrics"), parse_resource_metrics)?;
        }
    }
    Ok(out)
}

/// Which signal a JSON body carries, from its top-level key (resourceSpans / resourceLogs /
/// resourceMetrics, also snake_case); None if none present.
///
/// This is a cheap byte scan of the top-level keys (stops at the first match); it does not
/// validate the JSON, which the `decode_*` functions do.
pub fn sniff_signal(body: &[u8]) -> Option<Signal> {
    let mut i = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut depth = 0usize;
    let mut expect_key = true;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                loop {
                    match body.get(j) {
                        None => return None,
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                if depth == 0 && expect_key {
                    match body.get(start..j) {
                        Some(b"resourceSpans" | b"resource_spans") => return Some(Signal::Traces),
                        Some(b"resourceLogs" | b"resource_logs") => return Some(Signal::Logs),
                        Some(b"resourceMetrics" | b"resource_metrics") => {
                            return Some(Signal::Metrics);
                        }
                        _ => {}
                    }
                    expect_key = false;
                }
                i = j + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return None;
                }
                depth -= 1;
                i += 1;
            }
            b',' => {
                if depth == 0 {
                    expect_key = true;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Paths (built lazily: only rendered to a string when an error is reported)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn key(&'a self, k: &'static str) -> Path<'a> {
        Path::Key(self, k)
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }

    fn render(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        if s.is_empty() {
            s.push('$');
        }
        s
    }

    fn write_to(&self, out: &mut String) {
        match *self {
            Path::Root => {}
            Path::Key(parent, k) => {
                parent.write_to(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Path::Index(parent, i) => {
                parent.write_to(out);
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Primitive helpers
// ---------------------------------------------------------------------------------------------

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(p: &Path<'_>, expected: &'static str, v: &Value) -> JsonDecodeError {
    JsonDecodeError::WrongType { path: p.render(), expected, found: type_name(v) }
}

fn parse_root(body: &[u8]) -> R<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(JsonDecodeError::NotAnObject),
    }
}

fn to_object(v: Value, p: &Path<'_>) -> R<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(wrong_type(p, "object", &other)),
    }
}

fn to_array(v: Value, p: &Path<'_>) -> R<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(wrong_type(p, "array", &other)),
    }
}

/// Decodes every element of a JSON array with `f`.
fn list<T>(v: Value, p: &Path<'_>, f: impl Fn(Value, &Path<'_>) -> R<T>) -> R<Vec<T>> {
    let items = to_array(v, p)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(f(item, &p.index(i))?);
    }
    Ok(out)
}

/// Iterates the fields of a JSON object, skipping nulls and unknown keys. Each arm is
/// `"camelCase" | "snake_case" => expr`; inside `expr`, `$val` is the (owned) field value and
/// `$fp` a `&Path` naming the field by its camelCase key.
macro_rules! for_fields {
    ($v:expr, $p:expr, |$val:ident, $fp:ident| { $($camel:literal $(| $snake:literal)? => $body:expr,)* }) => {{
        let parent: &Path<'_> = $p;
        for (key, $val) in to_object($v, parent)? {
            if $val.is_null() {
                continue;
            }
            #[allow(clippy::single_match)]
            match key.as_str() {
                $(
                    $camel $(| $snake)? => {
                        let field_path = parent.key($camel);
                        let $fp = &field_path;
                        $body;
                    }
                )*
                _ => {}
            }
        }
    }};
}

fn string_val(v: Value, p: &Path<'_>) -> R<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong_type(p, "string", &other)),
    }
}

fn bool_val(v: &Value, p: &Path<'_>) -> R<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        Value::String(_) => Err(JsonDecodeError::InvalidBool { path: p.render() }),
        other => Err(wrong_type(p, "bool", other)),
    }
}

fn hex_val(v: &Value, p: &Path<'_>) -> R<Vec<u8>> {
    match v {
        Value::String(s) => hex::decode(s).map_err(|_| JsonDecodeError::InvalidHex { path: p.render() }),
        other => Err(wrong_type(p, "hex string", other)),
    }
}

const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64_STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const B64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

fn base64_val(v: &Value, p: &Path<'_>) -> R<Vec<u8>> {
    match v {
        Value::String(s) => {
            let engine = if s.bytes().any(|b| b == b'-' || b == b'_') { &B64_URL_SAFE } else { &B64_STANDARD };
            engine.decode(s).map_err(|_| JsonDecodeError::InvalidBase64 { path: p.render() })
        }
        other => Err(wrong_type(p, "base64 string", other)),
    }
}

const NOT_INTEGER: &str = "not an integer";
const NEGATIVE: &str = "negative value for unsigned field";
const OUT_OF_RANGE: &str = "out of range";

fn f64_to_u64(f: f64) -> Result<u64, &'static str> {
    if !f.is_finite() || f.fract() != 0.0 {
        Err(NOT_INTEGER)
    } else if f < 0.0 {
        Err(NEGATIVE)
    } else if f >= 18_446_744_073_709_551_616.0 {
        Err(OUT_OF_RANGE)
    } else {
        Ok(f as u64)
    }
}

fn f64_to_i64(f: f64) -> Result<i64, &'static str> {
    if !f.is_finite() || f.fract() != 0.0 {
        Err(NOT_INTEGER)
    } else if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        Err(OUT_OF_RANGE)
    } else {
        Ok(f as i64)
    }
}

fn u64_raw(v: &Value, p: &Path<'_>) -> R<Result<u64, &'static str>> {
    Ok(match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u)
            } else {
                match n.as_i64() {
                    Some(0) => Ok(0), // "-0"
                    Some(_) => Err(NEGATIVE),
                    None => n.as_f64().map_or(Err(NOT_INTEGER), f64_to_u64),
                }
            }
        }
        Value::String(s) => match s.parse::<u64>() {
            Ok(u) => Ok(u),
            Err(_) => s.parse::<f64>().map_or(Err(NOT_INTEGER), f64_to_u64),
        },
        other => return Err(wrong_type(p, "integer", other)),
    })
}

fn i64_raw(v: &Value, p: &Path<'_>) -> R<Result<i64, &'static str>> {
    Ok(match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.as_u64().is_some() {
                Err(OUT_OF_RANGE)
            } else {
                n.as_f64().map_or(Err(NOT_INTEGER), f64_to_i64)
            }
        }
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) => s.parse::<f64>().map_or(Err(NOT_INTEGER), f64_to_i64),
        },
        other => return Err(wrong_type(p, "integer", other)),
    })
}

fn invalid_int(p: &Path<'_>, reason: &'static str) -> JsonDecodeError {
    JsonDecodeError::InvalidInteger { path: p.render(), reason }
}

fn u64_val(v: &Value, p: &Path<'_>) -> R<u64> {
    u64_raw(v, p)?.map_err(|r| invalid_int(p, r))
}

fn i64_val(v: &Value, p: &Path<'_>) -> R<i64> {
    i64_raw(v, p)?.map_err(|r| invalid_int(p, r))
}

fn u32_val(v: &Value, p: &Path<'_>) -> R<u32> {
    u64_raw(v, p)?.and_then(|u| u32::try_from(u).map_err(|_| OUT_OF_RANGE)).map_err(|r| invalid_int(p, r))
}

fn i32_val(v: &Value, p: &Path<'_>) -> R<i32> {
    i64_raw(v, p)?.and_then(|i| i32::try_from(i).map_err(|_| OUT_OF_RANGE)).map_err(|r| invalid_int(p, r))
}

fn f64_val(v: &Value, p: &Path<'_>) -> R<f64> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.parse::<f64>().ok(),
        },
        other => return Err(wrong_type(p, "number", other)),
    };
    parsed.ok_or_else(|| JsonDecodeError::InvalidDouble { path: p.render() })
}

/// Enum field: an integer (number or decimal string) or the proto enum value name.
fn enum_val(v: &Value, p: &Path<'_>, from_name: fn(&str) -> Option<i32>) -> R<i32> {
    if let Value::String(s) = v {
        if let Some(n) = from_name(s) {
            return Ok(n);
        }
        if let Ok(n) = s.parse::<i32>() {
            return Ok(n);
        }
        let mut end = s.len().min(MAX_ECHO_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        return Err(JsonDecodeError::UnknownEnum { path: p.render(), value: s[..end].to_owned() });
    }
    i32_val(v, p)
}

fn span_kind_from_name(s: &str) -> Option<i32> {
    span::SpanKind::from_str_name(s).map(|k| k as i32)
}

fn status_code_from_name(s: &str) -> Option<i32> {
    status::StatusCode::from_str_name(s).map(|c| c as i32)
}

fn severity_from_name(s: &str) -> Option<i32> {
    SeverityNumber::from_str_name(s).map(|n| n as i32)
}

fn temporality_from_name(s: &str) -> Option<i32> {
    AggregationTemporality::from_str_name(s).map(|t| t as i32)
}

fn u64_list(v: Value, p: &Path<'_>) -> R<Vec<u64>> {
    list(v, p, |x, xp| u64_val(&x, xp))
}

fn f64_list(v: Value, p: &Path<'_>) -> R<Vec<f64>> {
    list(v, p, |x, xp| f64_val(&x, xp))
}

fn string_list(v: Value, p: &Path<'_>) -> R<Vec<String>> {
    list(v, p, string_val)
}

// ---------------------------------------------------------------------------------------------
// Common
// ---------------------------------------------------------------------------------------------

fn attributes(v: Value, p: &Path<'_>) -> R<Vec<KeyValue>> {
    list(v, p, |x, xp| parse_key_value(x, xp, 1))
}

fn parse_key_value(v: Value, p: &Path<'_>, depth: usize) -> R<KeyValue> {
    let mut kv = KeyValue::default();
    for_fields!(v, p, |val, fp| {
        "key" => kv.key = string_val(val, fp)?,
        "value" => kv.value = Some(parse_any_value(val, fp, depth)?),
    });
    Ok(kv)
}

/// `{"values": [...]}` wrapper of arrayValue / kvlistValue.
fn values_field<T>(v: Value, p: &Path<'_>, f: impl Fn(Value, &Path<'_>) -> R<T>) -> R<Vec<T>> {
    let mut out = Vec::new();
    for_fields!(v, p, |val, fp| {
        "values" => out = list(val, fp, &f)?,
    });
    Ok(out)
}

fn parse_any_value(v: Value, p: &Path<'_>, depth: usize) -> R<AnyValue> {
    if depth > MAX_ANY_VALUE_DEPTH {
        return Err(JsonDecodeError::TooDeep { path: p.render(), limit: MAX_ANY_VALUE_DEPTH });
    }
    let mut value = None;
    for_fields!(v, p, |val, fp| {
        "stringValue" | "string_value" => {
            value = Some(any_value::Value::StringValue(string_val(val, fp)?))
        },
        "boolValue" | "bool_value" => value = Some(any_value::Value::BoolValue(bool_val(&val, fp)?)),
        "intValue" | "int_value" => value = Some(any_value::Value::IntValue(i64_val(&val, fp)?)),
        "doubleValue" | "double_value" => {
            value = Some(any_value::Value::DoubleValue(f64_val(&val, fp)?))
        },
        "arrayValue" | "array_value" => {
            let values = values_field(val, fp, |x, xp| parse_any_value(x, xp, depth + 1))?;
            value = Some(any_value::Value::ArrayValue(ArrayValue { values }));
        },
        "kvlistValue" | "kvlist_value" => {
            let values = values_field(val, fp, |x, xp| parse_key_value(x, xp, depth + 1))?;
            value = Some(any_value::Value::KvlistValue(KeyValueList { values }));
        },
        "bytesValue" | "bytes_value" => {
            value = Some(any_value::Value::BytesValue(base64_val(&val, fp)?))
        },
    });
    Ok(AnyValue { value })
}

fn parse_entity_ref(v: Value, p: &Path<'_>) -> R<EntityRef> {
    let mut e = EntityRef::default();
    for_fields!(v, p, |val, fp| {
        "schemaUrl" | "schema_url" => e.schema_url = string_val(val, fp)?,
        "type" => e.r#type = string_val(val, fp)?,
        "idKeys" | "id_keys" => e.id_keys = string_list(val, fp)?,
        "descriptionKeys" | "description_keys" => e.description_keys = string_list(val, fp)?,
    });
    Ok(e)
}

fn parse_resource(v: Value, p: &Path<'_>) -> R<Resource> {
    let mut r = Resource::default();
    for_fields!(v, p, |val, fp| {
        "attributes" => r.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            r.dropped_attributes_count = u32_val(&val, fp)?
        },
        "entityRefs" | "entity_refs" => r.entity_refs = list(val, fp, parse_entity_ref)?,
    });
    Ok(r)
}

fn parse_scope(v: Value, p: &Path<'_>) -> R<InstrumentationScope> {
    let mut s = InstrumentationScope::default();
    for_fields!(v, p, |val, fp| {
        "name" => s.name = string_val(val, fp)?,
        "version" => s.version = string_val(val, fp)?,
        "attributes" => s.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            s.dropped_attributes_count = u32_val(&val, fp)?
        },
    });
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------------

fn parse_resource_spans(v: Value, p: &Path<'_>) -> R<ResourceSpans> {
    let mut rs = ResourceSpans::default();
    for_fields!(v, p, |val, fp| {
        "resource" => rs.resource = Some(parse_resource(val, fp)?),
        "scopeSpans" | "scope_spans" => rs.scope_spans = list(val, fp, parse_scope_spans)?,
        "schemaUrl" | "schema_url" => rs.schema_url = string_val(val, fp)?,
    });
    Ok(rs)
}

fn parse_scope_spans(v: Value, p: &Path<'_>) -> R<ScopeSpans> {
    let mut ss = ScopeSpans::default();
    for_fields!(v, p, |val, fp| {
        "scope" => ss.scope = Some(parse_scope(val, fp)?),
        "spans" => ss.spans = list(val, fp, parse_span)?,
        "schemaUrl" | "schema_url" => ss.schema_url = string_val(val, fp)?,
    });
    Ok(ss)
}

fn parse_span(v: Value, p: &Path<'_>) -> R<Span> {
    let mut s = Span::default();
    for_fields!(v, p, |val, fp| {
        "traceId" | "trace_id" => s.trace_id = hex_val(&val, fp)?,
        "spanId" | "span_id" => s.span_id = hex_val(&val, fp)?,
        "traceState" | "trace_state" => s.trace_state = string_val(val, fp)?,
        "parentSpanId" | "parent_span_id" => s.parent_span_id = hex_val(&val, fp)?,
        "flags" => s.flags = u32_val(&val, fp)?,
        "name" => s.name = string_val(val, fp)?,
        "kind" => s.kind = enum_val(&val, fp, span_kind_from_name)?,
        "startTimeUnixNano" | "start_time_unix_nano" => s.start_time_unix_nano = u64_val(&val, fp)?,
        "endTimeUnixNano" | "end_time_unix_nano" => s.end_time_unix_nano = u64_val(&val, fp)?,
        "attributes" => s.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            s.dropped_attributes_count = u32_val(&val, fp)?
        },
        "events" => s.events = list(val, fp, parse_event)?,
        "droppedEventsCount" | "dropped_events_count" => s.dropped_events_count = u32_val(&val, fp)?,
        "links" => s.links = list(val, fp, parse_link)?,
        "droppedLinksCount" | "dropped_links_count" => s.dropped_links_count = u32_val(&val, fp)?,
        "status" => s.status = Some(parse_status(val, fp)?),
    });
    Ok(s)
}

fn parse_event(v: Value, p: &Path<'_>) -> R<span::Event> {
    let mut e = span::Event::default();
    for_fields!(v, p, |val, fp| {
        "timeUnixNano" | "time_unix_nano" => e.time_unix_nano = u64_val(&val, fp)?,
        "name" => e.name = string_val(val, fp)?,
        "attributes" => e.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            e.dropped_attributes_count = u32_val(&val, fp)?
        },
    });
    Ok(e)
}

fn parse_link(v: Value, p: &Path<'_>) -> R<span::Link> {
    let mut l = span::Link::default();
    for_fields!(v, p, |val, fp| {
        "traceId" | "trace_id" => l.trace_id = hex_val(&val, fp)?,
        "spanId" | "span_id" => l.span_id = hex_val(&val, fp)?,
        "traceState" | "trace_state" => l.trace_state = string_val(val, fp)?,
        "attributes" => l.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            l.dropped_attributes_count = u32_val(&val, fp)?
        },
        "flags" => l.flags = u32_val(&val, fp)?,
    });
    Ok(l)
}

fn parse_status(v: Value, p: &Path<'_>) -> R<Status> {
    let mut s = Status::default();
    for_fields!(v, p, |val, fp| {
        "message" => s.message = string_val(val, fp)?,
        "code" => s.code = enum_val(&val, fp, status_code_from_name)?,
    });
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

fn parse_resource_logs(v: Value, p: &Path<'_>) -> R<ResourceLogs> {
    let mut rl = ResourceLogs::default();
    for_fields!(v, p, |val, fp| {
        "resource" => rl.resource = Some(parse_resource(val, fp)?),
        "scopeLogs" | "scope_logs" => rl.scope_logs = list(val, fp, parse_scope_logs)?,
        "schemaUrl" | "schema_url" => rl.schema_url = string_val(val, fp)?,
    });
    Ok(rl)
}

fn parse_scope_logs(v: Value, p: &Path<'_>) -> R<ScopeLogs> {
    let mut sl = ScopeLogs::default();
    for_fields!(v, p, |val, fp| {
        "scope" => sl.scope = Some(parse_scope(val, fp)?),
        "logRecords" | "log_records" => sl.log_records = list(val, fp, parse_log_record)?,
        "schemaUrl" | "schema_url" => sl.schema_url = string_val(val, fp)?,
    });
    Ok(sl)
}

fn parse_log_record(v: Value, p: &Path<'_>) -> R<LogRecord> {
    let mut r = LogRecord::default();
    for_fields!(v, p, |val, fp| {
        "timeUnixNano" | "time_unix_nano" => r.time_unix_nano = u64_val(&val, fp)?,
        "observedTimeUnixNano" | "observed_time_unix_nano" => {
            r.observed_time_unix_nano = u64_val(&val, fp)?
        },
        "severityNumber" | "severity_number" => {
            r.severity_number = enum_val(&val, fp, severity_from_name)?
        },
        "severityText" | "severity_text" => r.severity_text = string_val(val, fp)?,
        "body" => r.body = Some(parse_any_value(val, fp, 1)?),
        "attributes" => r.attributes = attributes(val, fp)?,
        "droppedAttributesCount" | "dropped_attributes_count" => {
            r.dropped_attributes_count = u32_val(&val, fp)?
        },
        "flags" => r.flags = u32_val(&val, fp)?,
        "traceId" | "trace_id" => r.trace_id = hex_val(&val, fp)?,
        "spanId" | "span_id" => r.span_id = hex_val(&val, fp)?,
        "eventName" | "event_name" => r.event_name = string_val(val, fp)?,
    });
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

fn parse_resource_metrics(v: Value, p: &Path<'_>) -> R<ResourceMetrics> {
    let mut rm = ResourceMetrics::default();
    for_fields!(v, p, |val, fp| {
        "resource" => rm.resource = Some(parse_resource(val, fp)?),
        "scopeMetrics" | "scope_metrics" => rm.scope_metrics = list(val, fp, parse_scope_metrics)?,
        "schemaUrl" | "schema_url" => rm.schema_url = string_val(val, fp)?,
    });
    Ok(rm)
}

fn parse_scope_metrics(v: Value, p: &Path<'_>) -> R<ScopeMetrics> {
    let mut sm = ScopeMetrics::default();
    for_fields!(v, p, |val, fp| {
        "scope" => sm.scope = Some(parse_scope(val, fp)?),
        "metrics" => sm.metrics = list(val, fp, parse_metric)?,
        "schemaUrl" | "schema_url" => sm.schema_url = string_val(val, fp)?,
    });
    Ok(sm)
}

fn parse_metric(v: Value, p: &Path<'_>) -> R<Metric> {
    let mut m = Metric::default();
    for_fields!(v, p, |val, fp| {
        "name" => m.name = string_val(val, fp)?,
        "description" => m.description = string_val(val, fp)?,
        "unit" => m.unit = string_val(val, fp)?,
        "metadata" => m.metadata = attributes(val, fp)?,
        "gauge" => m.data = Some(metric::Data::Gauge(parse_gauge(val, fp)?)),
        "sum" => m.data = Some(metric::Data::Sum(parse_sum(val, fp)?)),
        "histogram" => m.data = Some(metric::Data::Histogram(parse_histogram(val, fp)?)),
        "exponentialHistogram" | "exponential_histogram" => {
            m.data = Some(metric::Data::ExponentialHistogram(parse_exp_histogram(val, fp)?))
        },
        "summary" => m.data = Some(metric::Data::Summary(parse_summary(val, fp)?)),
    });
    Ok(m)
}

fn parse_gauge(v: Value, p: &Path<'_>) -> R<Gauge> {
    let mut g = Gauge::default();
    for_fields!(v, p, |val, fp| {
        "dataPoints" | "data_points" => g.data_points = list(val, fp, parse_number_point)?,
    });
    Ok(g)
}

fn parse_sum(v: Value, p: &Path<'_>) -> R<Sum> {
    let mut s = Sum::default();
    for_fields!(v, p, |val, fp| {
        "dataPoints" | "data_points" => s.data_points = list(val, fp, parse_number_point)?,
        "aggregationTemporality" | "aggregation_temporality" => {
            s.aggregation_temporality = enum_val(&val, fp, temporality_from_name)?
        },
        "isMonotonic" | "is_monotonic" => s.is_monotonic = bool_val(&val, fp)?,
    });
    Ok(s)
}

fn parse_histogram(v: Value, p: &Path<'_>) -> R<Histogram> {
    let mut h = Histogram::default();
    for_fields!(v, p, |val, fp| {
        "dataPoints" | "data_points" => h.data_points = list(val, fp, parse_histogram_point)?,
        "aggregationTemporality" | "aggregation_temporality" => {
            h.aggregation_temporality = enum_val(&val, fp, temporality_from_name)?
        },
    });
    Ok(h)
}

fn parse_exp_histogram(v: Value, p: &Path<'_>) -> R<ExponentialHistogram> {
    let mut h = ExponentialHistogram::default();
    for_fields!(v, p, |val, fp| {
        "dataPoints" | "data_points" => h.data_points = list(val, fp, parse_exp_histogram_point)?,
        "aggregationTemporality" | "aggregation_temporality" => {
            h.aggregation_temporality = enum_val(&val, fp, temporality_from_name)?
        },
    });
    Ok(h)
}

fn parse_summary(v: Value, p: &Path<'_>) -> R<Summary> {
    let mut s = Summary::default();
    for_fields!(v, p, |val, fp| {
        "dataPoints" | "data_points" => s.data_points = list(val, fp, parse_summary_point)?,
    });
    Ok(s)
}

fn parse_number_point(v: Value, p: &Path<'_>) -> R<NumberDataPoint> {
    let mut d = NumberDataPoint::default();
    for_fields!(v, p, |val, fp| {
        "attributes" => d.attributes = attributes(val, fp)?,
        "startTimeUnixNano" | "start_time_unix_nano" => d.start_time_unix_nano = u64_val(&val, fp)?,
        "timeUnixNano" | "time_unix_nano" => d.time_unix_nano = u64_val(&val, fp)?,
        "asDouble" | "as_double" => {
            d.value = Some(number_data_point::Value::AsDouble(f64_val(&val, fp)?))
        },
        "asInt" | "as_int" => d.value = Some(number_data_point::Value::AsInt(i64_val(&val, fp)?)),
        "exemplars" => d.exemplars = list(val, fp, parse_exemplar)?,
        "flags" => d.flags = u32_val(&val, fp)?,
    });
    Ok(d)
}

fn parse_histogram_point(v: Value, p: &Path<'_>) -> R<HistogramDataPoint> {
    let mut d = HistogramDataPoint::default();
    for_fields!(v, p, |val, fp| {
        "attributes" => d.attributes = attributes(val, fp)?,
        "startTimeUnixNano" | "start_time_unix_nano" => d.start_time_unix_nano = u64_val(&val, fp)?,
        "timeUnixNano" | "time_unix_nano" => d.time_unix_nano = u64_val(&val, fp)?,
        "count" => d.count = u64_val(&val, fp)?,
        "sum" => d.sum = Some(f64_val(&val, fp)?),
        "bucketCounts" | "bucket_counts" => d.bucket_counts = u64_list(val, fp)?,
        "explicitBounds" | "explicit_bounds" => d.explicit_bounds = f64_list(val, fp)?,
        "exemplars" => d.exemplars = list(val, fp, parse_exemplar)?,
        "flags" => d.flags = u32_val(&val, fp)?,
        "min" => d.min = Some(f64_val(&val, fp)?),
        "max" => d.max = Some(f64_val(&val, fp)?),
    });
    Ok(d)
}

fn parse_exp_histogram_point(v: Value, p: &Path<'_>) -> R<ExponentialHistogramDataPoint> {
    let mut d = ExponentialHistogramDataPoint::default();
    for_fields!(v, p, |val, fp| {
        "attributes" => d.attributes = attributes(val, fp)?,
        "startTimeUnixNano" | "start_time_unix_nano" => d.start_time_unix_nano = u64_val(&val, fp)?,
        "timeUnixNano" | "time_unix_nano" => d.time_unix_nano = u64_val(&val, fp)?,
        "count" => d.count = u64_val(&val, fp)?,
        "sum" => d.sum = Some(f64_val(&val, fp)?),
        "scale" => d.scale = i32_val(&val, fp)?,
        "zeroCount" | "zero_count" => d.zero_count = u64_val(&val, fp)?,
        "positive" => d.positive = Some(parse_buckets(val, fp)?),
        "negative" => d.negative = Some(parse_buckets(val, fp)?),
        "flags" => d.flags = u32_val(&val, fp)?,
        "exemplars" => d.exemplars = list(val, fp, parse_exemplar)?,
        "min" => d.min = Some(f64_val(&val, fp)?),
        "max" => d.max = Some(f64_val(&val, fp)?),
        "zeroThreshold" | "zero_threshold" => d.zero_threshold = f64_val(&val, fp)?,
    });
    Ok(d)
}

fn parse_buckets(v: Value, p: &Path<'_>) -> R<exponential_histogram_data_point::Buckets> {
    let mut b = exponential_histogram_data_point::Buckets::default();
    for_fields!(v, p, |val, fp| {
        "offset" => b.offset = i32_val(&val, fp)?,
        "bucketCounts" | "bucket_counts" => b.bucket_counts = u64_list(val, fp)?,
    });
    Ok(b)
}

fn parse_summary_point(v: Value, p: &Path<'_>) -> R<SummaryDataPoint> {
    let mut d = SummaryDataPoint::default();
    for_fields!(v, p, |val, fp| {
        "attributes" => d.attributes = attributes(val, fp)?,
        "startTimeUnixNano" | "start_time_unix_nano" => d.start_time_unix_nano = u64_val(&val, fp)?,
        "timeUnixNano" | "time_unix_nano" => d.time_unix_nano = u64_val(&val, fp)?,
        "count" => d.count = u64_val(&val, fp)?,
        "sum" => d.sum = f64_val(&val, fp)?,
        "quantileValues" | "quantile_values" => d.quantile_values = list(val, fp, parse_quantile)?,
        "flags" => d.flags = u32_val(&val, fp)?,
    });
    Ok(d)
}

fn parse_quantile(v: Value, p: &Path<'_>) -> R<summary_data_point::ValueAtQuantile> {
    let mut q = summary_data_point::ValueAtQuantile::default();
    for_fields!(v, p, |val, fp| {
        "quantile" => q.quantile = f64_val(&val, fp)?,
        "value" => q.value = f64_val(&val, fp)?,
    });
    Ok(q)
}

fn parse_exemplar(v: Value, p: &Path<'_>) -> R<Exemplar> {
    let mut e = Exemplar::default();
    for_fields!(v, p, |val, fp| {
        "filteredAttributes" | "filtered_attributes" => e.filtered_attributes = attributes(val, fp)?,
        "timeUnixNano" | "time_unix_nano" => e.time_unix_nano = u64_val(&val, fp)?,
        "asDouble" | "as_double" => e.value = Some(exemplar::Value::AsDouble(f64_val(&val, fp)?)),
        "asInt" | "as_int" => e.value = Some(exemplar::Value::AsInt(i64_val(&val, fp)?)),
        "spanId" | "span_id" => e.span_id = hex_val(&val, fp)?,
        "traceId" | "trace_id" => e.trace_id = hex_val(&val, fp)?,
    });
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn err_msg<T: std::fmt::Debug>(r: Result<T, JsonDecodeError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    const TRACE_ID: [u8; 16] =
        [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c];
    const SPAN_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];
    const PARENT_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73];
    const LINK_TRACE_ID: [u8; 16] =
        [0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c];
    const LINK_SPAN_ID: [u8; 8] = [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31];

    /// OpenTelemetry JS exporter style: int64 as JSON numbers, enums as integers, uppercase hex.
    const JS_TRACES: &str = r#"{
      "resourceSpans": [{
        "resource": {
          "attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "process.pid", "value": {"intValue": 4242}}
          ],
          "droppedAttributesCount": 0
        },
        "scopeSpans": [{
          "scope": {"name": "@opentelemetry/instrumentation-http", "version": "0.52.1"},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173",
            "traceState": "rojo=00f067aa0ba902b7",
            "name": "GET /api/cart",
            "kind": 2,
            "startTimeUnixNano": 1700000000123456789,
            "endTimeUnixNano": 1700000000987654321,
            "attributes": [
              {"key": "http.status_code", "value": {"intValue": 200}},
              {"key": "http.ok", "value": {"boolValue": true}},
              {"key": "ratio", "value": {"doubleValue": 0.25}},
              {"key": "payload", "value": {"bytesValue": "aGVsbG8="}},
              {"key": "tags", "value": {"arrayValue": {"values": [
                {"stringValue": "a"}, {"intValue": -7}
              ]}}},
              {"key": "nested", "value": {"kvlistValue": {"values": [
                {"key": "inner", "value": {"arrayValue": {"values": [
                  {"boolValue": false}, {"doubleValue": 1.5}
                ]}}},
                {"key": "empty", "value": {}}
              ]}}}
            ],
            "droppedAttributesCount": 1,
            "events": [{
              "timeUnixNano": 1700000000500000000,
              "name": "exception",
              "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}],
              "droppedAttributesCount": 0
            }],
            "droppedEventsCount": 2,
            "links": [{
              "traceId": "0AF7651916CD43DD8448EB211C80319C",
              "spanId": "B7AD6B7169203331",
              "attributes": [],
              "droppedAttributesCount": 0,
              "flags": 256
            }],
            "droppedLinksCount": 0,
            "status": {"code": 2, "message": "upstream failed"},
            "flags": 1
          }]
        }]
      }]
    }"#;

    /// Canonical proto3 JSON of the same request: int64 as strings, enum names, lowercase hex.
    const PROTO3_TRACES: &str = r#"{
      "resourceSpans": [{
        "resource": {
          "attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "process.pid", "value": {"intValue": "4242"}}
          ]
        },
        "scopeSpans": [{
          "scope": {"name": "@opentelemetry/instrumentation-http", "version": "0.52.1"},
          "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "eee19b7ec3c1b173",
            "traceState": "rojo=00f067aa0ba902b7",
            "name": "GET /api/cart",
            "kind": "SPAN_KIND_SERVER",
            "startTimeUnixNano": "1700000000123456789",
            "endTimeUnixNano": "1700000000987654321",
            "attributes": [
              {"key": "http.status_code", "value": {"intValue": "200"}},
              {"key": "http.ok", "value": {"boolValue": true}},
              {"key": "ratio", "value": {"doubleValue": 0.25}},
              {"key": "payload", "value": {"bytesValue": "aGVsbG8="}},
              {"key": "tags", "value": {"arrayValue": {"values": [
                {"stringValue": "a"}, {"intValue": "-7"}
              ]}}},
              {"key": "nested", "value": {"kvlistValue": {"values": [
                {"key": "inner", "value": {"arrayValue": {"values": [
                  {"boolValue": false}, {"doubleValue": 1.5}
                ]}}},
                {"key": "empty", "value": {}}
              ]}}}
            ],
            "droppedAttributesCount": 1,
            "events": [{
              "timeUnixNano": "1700000000500000000",
              "name": "exception",
              "attributes": [{"key": "exception.message", "value": {"stringValue": "boom"}}]
            }],
            "droppedEventsCount": 2,
            "links": [{
              "traceId": "0af7651916cd43dd8448eb211c80319c",
              "spanId": "b7ad6b7169203331",
              "flags": 256
            }],
            "status": {"code": "STATUS_CODE_ERROR", "message": "upstream failed"},
            "flags": 1
          }]
        }]
      }]
    }"#;

    /// The request both JSON bodies above encode, built by hand.
    fn expected_traces() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s("checkout")),
                        kv("process.pid", any_value::Value::IntValue(4242)),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "@opentelemetry/instrumentation-http".into(),
                        version: "0.52.1".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: TRACE_ID.to_vec(),
                        span_id: SPAN_ID.to_vec(),
                        parent_span_id: PARENT_ID.to_vec(),
                        trace_state: "rojo=00f067aa0ba902b7".into(),
                        name: "GET /api/cart".into(),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: 1_700_000_000_123_456_789,
                        end_time_unix_nano: 1_700_000_000_987_654_321,
                        attributes: vec![
                            kv("http.status_code", any_value::Value::IntValue(200)),
                            kv("http.ok", any_value::Value::BoolValue(true)),
                            kv("ratio", any_value::Value::DoubleValue(0.25)),
                            kv("payload", any_value::Value::BytesValue(b"hello".to_vec())),
                            kv(
                                "tags",
                                any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![
                                        AnyValue { value: Some(s("a")) },
                                        AnyValue { value: Some(any_value::Value::IntValue(-7)) },
                                    ],
                                }),
                            ),
                            kv(
                                "nested",
                                any_value::Value::KvlistValue(KeyValueList {
                                    values: vec![
                                        kv(
                                            "inner",
                                            any_value::Value::ArrayValue(ArrayValue {
                                                values: vec![
                                                    AnyValue { value: Some(any_value::Value::BoolValue(false)) },
                                                    AnyValue { value: Some(any_value::Value::DoubleValue(1.5)) },
                                                ],
                                            }),
                                        ),
                                        KeyValue {
                                            key: "empty".into(),
                                            value: Some(AnyValue { value: None }),
                                            ..Default::default()
                                        },
                                    ],
                                }),
                            ),
                        ],
                        dropped_attributes_count: 1,
                        events: vec![span::Event {
                            time_unix_nano: 1_700_000_000_500_000_000,
                            name: "exception".into(),
                            attributes: vec![kv("exception.message", s("boom"))],
                            dropped_attributes_count: 0,
                        }],
                        dropped_events_count: 2,
                        links: vec![span::Link {
                            trace_id: LINK_TRACE_ID.to_vec(),
                            span_id: LINK_SPAN_ID.to_vec(),
                            flags: 256,
                            ..Default::default()
                        }],
                        dropped_links_count: 0,
                        status: Some(Status {
                            message: "upstream failed".into(),
                            code: status::StatusCode::Error as i32,
                        }),
                        flags: 1,
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    // 1. JS exporter style.
    #[test]
    fn js_exporter_traces() {
        let req = decode_traces(JS_TRACES.as_bytes()).expect("decode");
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let res = rs.resource.as_ref().expect("resource");
        assert_eq!(res.attributes[0].key, "service.name");
        assert_eq!(
            res.attributes[1].value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::IntValue(4242))
        );
        let scope = rs.scope_spans[0].scope.as_ref().expect("scope");
        assert_eq!(scope.name, "@opentelemetry/instrumentation-http");
        assert_eq!(scope.version, "0.52.1");
        let sp = &rs.scope_spans[0].spans[0];
        assert_eq!(sp.trace_id, TRACE_ID);
        assert_eq!(sp.span_id, SPAN_ID);
        assert_eq!(sp.parent_span_id, PARENT_ID);
        assert_eq!(sp.trace_state, "rojo=00f067aa0ba902b7");
        assert_eq!(sp.name, "GET /api/cart");
        assert_eq!(sp.kind, 2);
        assert_eq!(sp.flags, 1);
        // Exact u64 nanoseconds: would be off if routed through f64.
        assert_eq!(sp.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(sp.end_time_unix_nano, 1_700_000_000_987_654_321);
        let vals: Vec<_> = sp.attributes.iter().map(|a| a.value.as_ref().and_then(|v| v.value.clone())).collect();
        assert_eq!(vals[0], Some(any_value::Value::IntValue(200)));
        assert_eq!(vals[1], Some(any_value::Value::BoolValue(true)));
        assert_eq!(vals[2], Some(any_value::Value::DoubleValue(0.25)));
        assert_eq!(vals[3], Some(any_value::Value::BytesValue(b"hello".to_vec())));
        match &vals[4] {
            Some(any_value::Value::ArrayValue(a)) => {
                assert_eq!(a.values.len(), 2);
                assert_eq!(a.values[0].value, Some(s("a")));
                assert_eq!(a.values[1].value, Some(any_value::Value::IntValue(-7)));
            }
            other => panic!("tags: {other:?}"),
        }
        match &vals[5] {
            Some(any_value::Value::KvlistValue(l)) => {
                assert_eq!(l.values.len(), 2);
                assert_eq!(l.values[0].key, "inner");
                assert_eq!(l.values[1].key, "empty");
                assert_eq!(l.values[1].value, Some(AnyValue { value: None }));
            }
            other => panic!("nested: {other:?}"),
        }
        assert_eq!(sp.dropped_attributes_count, 1);
        assert_eq!(sp.events[0].time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(sp.events[0].name, "exception");
        assert_eq!(sp.dropped_events_count, 2);
        assert_eq!(sp.links[0].trace_id, LINK_TRACE_ID);
        assert_eq!(sp.links[0].span_id, LINK_SPAN_ID);
        assert_eq!(sp.links[0].flags, 256);
        let st = sp.status.as_ref().expect("status");
        assert_eq!(st.code, status::StatusCode::Error as i32);
        assert_eq!(st.message, "upstream failed");
        // Every other value, via the hand-built message.
        assert_eq!(req, expected_traces());
    }

    // 2. Canonical proto3 JSON gives the identical message.
    #[test]
    fn proto3_canonical_traces_identical() {
        let js = decode_traces(JS_TRACES.as_bytes()).expect("js");
        let p3 = decode_traces(PROTO3_TRACES.as_bytes()).expect("proto3");
        assert_eq!(p3, js);
        assert_eq!(p3, expected_traces());
    }

    // 3. Logs.
    #[test]
    fn logs_bodies_event_name_severity_name() {
        let body = r#"{"resourceLogs":[{
          "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
          "scopeLogs":[{
            "scope":{"name":"app-logger"},
            "logRecords":[
              {"timeUnixNano":"1700000000000000001","observedTimeUnixNano":1700000000000000002,
               "severityNumber":"SEVERITY_NUMBER_INFO","severityText":"INFO",
               "body":{"stringValue":"user logged in"},
               "attributes":[{"key":"user","value":{"stringValue":"bob"}}],
               "droppedAttributesCount":3,"flags":1,
               "traceId":"5b8efff798038103d269b633813fc60c","spanId":"EEE19B7EC3C1B174",
               "eventName":"app.login"},
              {"timeUnixNano":1700000000000000003,"severityNumber":17,
               "body":{"kvlistValue":{"values":[
                 {"key":"msg","value":{"stringValue":"x"}},
                 {"key":"n","value":{"intValue":"3"}}]}},
               "traceId":"","spanId":""}
            ],
            "schemaUrl":"https://opentelemetry.io/schemas/1.24.0"}]}]}"#;
        let req = decode_logs(body.as_bytes()).expect("decode");
        let rl = &req.resource_logs[0];
        assert_eq!(rl.resource.as_ref().expect("resource").attributes, vec![kv("service.name", s("api"))]);
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().expect("scope").name, "app-logger");
        assert_eq!(sl.schema_url, "https://opentelemetry.io/schemas/1.24.0");
        assert_eq!(sl.log_records.len(), 2);
        let expected0 = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_number: SeverityNumber::Info as i32,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(s("user logged in")) }),
            attributes: vec![kv("user", s("bob"))],
            dropped_attributes_count: 3,
            flags: 1,
            trace_id: TRACE_ID.to_vec(),
            span_id: SPAN_ID.to_vec(),
            event_name: "app.login".into(),
        };
        assert_eq!(sl.log_records[0], expected0);
        assert_eq!(sl.log_records[0].severity_number, 9);
        let expected1 = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_003,
            severity_number: SeverityNumber::Error as i32,
            body: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("msg", s("x")), kv("n", any_value::Value::IntValue(3))],
                })),
            }),
            ..Default::default()
        };
        assert_eq!(sl.log_records[1], expected1);
        assert!(sl.log_records[1].trace_id.is_empty());
    }

    // 4. Metrics: every data kind, `data` oneof always set.
    #[test]
    fn metrics_all_kinds() {
        let body = r#"{"resourceMetrics":[{
          "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"m"}}]},
          "scopeMetrics":[{"scope":{"name":"meter","version":"1"},"metrics":[
            {"name":"cpu.temp","description":"temperature","unit":"Cel",
             "gauge":{"dataPoints":[{"attributes":[{"key":"core","value":{"intValue":0}}],
               "timeUnixNano":"1700000000000000000","asDouble":71.5}]}},
            {"name":"requests","unit":"1","metadata":[{"key":"m","value":{"stringValue":"v"}}],
             "sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","isMonotonic":true,
               "dataPoints":[{"startTimeUnixNano":1700000000000000000,"timeUnixNano":1.7e18,
                 "asInt":"9007199254740993","flags":1,
                 "exemplars":[{"timeUnixNano":"1700000000000000007","asInt":5,
                   "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
                   "filteredAttributes":[{"key":"f","value":{"boolValue":"true"}}]}]}]}},
            {"name":"latency","unit":"ms",
             "histogram":{"aggregationTemporality":2,"dataPoints":[{
               "startTimeUnixNano":"1","timeUnixNano":"2","count":"10","sum":123.5,
               "bucketCounts":["1",2,"3",4],"explicitBounds":[0,5.5,"10"],
               "min":0.5,"max":"Infinity",
               "exemplars":[{"asDouble":"NaN"}]}]}},
            {"name":"exp","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[{
               "timeUnixNano":3,"count":7,"sum":"-2.5","scale":-3,"zeroCount":"1",
               "zeroThreshold":1e-9,
               "positive":{"offset":"-2","bucketCounts":[1,"2"]},
               "negative":{"offset":4,"bucketCounts":[]},
               "min":-1,"max":3.25,"flags":0}]}},
            {"name":"rpc.duration","summary":{"dataPoints":[{
               "timeUnixNano":"4","count":"3","sum":6.0,
               "quantileValues":[{"quantile":0,"value":1},{"quantile":0.5,"value":"2"},
                                 {"quantile":1.0,"value":3}]}]}}
          ]}]}]}"#;
        let req = decode_metrics(body.as_bytes()).expect("decode");
        let sm = &req.resource_metrics[0].scope_metrics[0];
        assert_eq!(sm.scope.as_ref().expect("scope").version, "1");
        let m = &sm.metrics;
        assert_eq!(m.len(), 5);
        assert!(m.iter().all(|x| x.data.is_some()), "data oneof must be set");

        assert_eq!(m[0].name, "cpu.temp");
        assert_eq!(m[0].description, "temperature");
        assert_eq!(m[0].unit, "Cel");
        assert_eq!(
            m[0].data,
            Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: vec![kv("core", any_value::Value::IntValue(0))],
                    time_unix_nano: 1_700_000_000_000_000_000,
                    value: Some(number_data_point::Value::AsDouble(71.5)),
                    ..Default::default()
                }],
            }))
        );

        assert_eq!(m[1].metadata, vec![kv("m", s("v"))]);
        assert_eq!(
            m[1].data,
            Some(metric::Data::Sum(Sum {
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    time_unix_nano: 1_700_000_000_000_000_000,
                    // > 2^53: would be wrong if parsed via f64.
                    value: Some(number_data_point::Value::AsInt(9_007_199_254_740_993)),
                    flags: 1,
                    exemplars: vec![Exemplar {
                        filtered_attributes: vec![kv("f", any_value::Value::BoolValue(true))],
                        time_unix_nano: 1_700_000_000_000_000_007,
                        value: Some(exemplar::Value::AsInt(5)),
                        trace_id: TRACE_ID.to_vec(),
                        span_id: SPAN_ID.to_vec(),
                    }],
                    ..Default::default()
                }],
            }))
        );

        match &m[2].data {
            Some(metric::Data::Histogram(h)) => {
                assert_eq!(h.aggregation_temporality, 2);
                let d = &h.data_points[0];
                assert_eq!(d.start_time_unix_nano, 1);
                assert_eq!(d.time_unix_nano, 2);
                assert_eq!(d.count, 10);
                assert_eq!(d.sum, Some(123.5));
                assert_eq!(d.bucket_counts, vec![1, 2, 3, 4]);
                assert_eq!(d.explicit_bounds, vec![0.0, 5.5, 10.0]);
                assert_eq!(d.min, Some(0.5));
                assert_eq!(d.max, Some(f64::INFINITY));
                match d.exemplars[0].value {
                    Some(exemplar::Value::AsDouble(x)) => assert!(x.is_nan()),
                    ref other => panic!("exemplar: {other:?}"),
                }
            }
            other => panic!("histogram: {other:?}"),
        }

        assert_eq!(
            m[3].data,
            Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                aggregation_temporality: 1,
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: 3,
                    count: 7,
                    sum: Some(-2.5),
                    scale: -3,
                    zero_count: 1,
                    zero_threshold: 1e-9,
                    positive: Some(exponential_histogram_data_point::Buckets { offset: -2, bucket_counts: vec![1, 2] }),
                    negative: Some(exponential_histogram_data_point::Buckets { offset: 4, bucket_counts: vec![] }),
                    min: Some(-1.0),
                    max: Some(3.25),
                    ..Default::default()
                }],
            }))
        );

        let q = |quantile, value| summary_data_point::ValueAtQuantile { quantile, value };
        assert_eq!(
            m[4].data,
            Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: 4,
                    count: 3,
                    sum: 6.0,
                    quantile_values: vec![q(0.0, 1.0), q(0.5, 2.0), q(1.0, 3.0)],
                    ..Default::default()
                }],
            }))
        );
    }

    // 5. Errors.
    #[test]
    fn error_invalid_hex_names_path() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{},{"spans":[{},{},{},
            {"traceId":"5B8EFFF798038103D269B633813FC6ZZ"}]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].scopeSpans[1].spans[3].traceId: invalid hex"
        );
        let odd = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"links":[{"spanId":"abc"}]}]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(odd.as_bytes())),
            "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: invalid hex"
        );
        let num = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":12}]}]}]}"#;
        assert_eq!(
            err_msg(decode_logs(num.as_bytes())),
            "resourceLogs[0].scopeLogs[0].logRecords[0].spanId: expected hex string, found number"
        );
    }

    #[test]
    fn error_bad_json_and_non_object() {
        let e = decode_traces(br#"{"resourceSpans": [{"#).expect_err("truncated");
        assert!(matches!(e, JsonDecodeError::Json(_)));
        assert!(e.to_string().starts_with("malformed json: "), "{e}");
        assert!(matches!(decode_logs(b""), Err(JsonDecodeError::Json(_))));
        assert!(matches!(decode_metrics(b"[]"), Err(JsonDecodeError::NotAnObject)));
        assert!(matches!(decode_traces(b"null"), Err(JsonDecodeError::NotAnObject)));
        assert_eq!(err_msg(decode_traces(b"\"x\"")), "request body is not a json object");
    }

    #[test]
    fn error_wrong_types() {
        let body = r#"{"resourceSpans":[{"resource":{"attributes":"service.name=x"}}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].resource.attributes: expected array, found string"
        );
        let body = r#"{"resourceSpans":{}}"#;
        assert_eq!(err_msg(decode_traces(body.as_bytes())), "resourceSpans: expected array, found object");
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":true}]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].scopeSpans[0].spans[0].kind: expected integer, found bool"
        );
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
            {"key":"a","value":{"kvlistValue":{"values":[{"key":"b","value":{"intValue":1.5}}]}}}
            ]}]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.kvlistValue.values[0]\
             .value.intValue: invalid integer (not an integer)"
        );
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":["x"]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].scopeSpans[0].spans[0]: expected object, found string"
        );
        let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"bytesValue":"!!"}}]}]}]}"#;
        assert_eq!(
            err_msg(decode_logs(body.as_bytes())),
            "resourceLogs[0].scopeLogs[0].logRecords[0].body.bytesValue: invalid base64"
        );
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":{"isMonotonic":"yes"}}]}]}]}"#;
        assert_eq!(
            err_msg(decode_metrics(body.as_bytes())),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.isMonotonic: invalid bool"
        );
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[
            {"asDouble":"fast"}]}}]}]}]}"#;
        assert_eq!(
            err_msg(decode_metrics(body.as_bytes())),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble: invalid double"
        );
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedEventsCount":4294967296}]}]}]}"#;
        assert_eq!(
            err_msg(decode_traces(body.as_bytes())),
            "resourceSpans[0].scopeSpans[0].spans[0].droppedEventsCount: invalid integer (out of range)"
        );
    }

    #[test]
    fn error_negative_unsigned() {
        for t in ["-5", "\"-5\"", "-5.0", "-1e3"] {
            let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"startTimeUnixNano":{t}}}]}}]}}]}}"#);
            assert_eq!(
                err_msg(decode_traces(body.as_bytes())),
                "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano: \
                 invalid integer (negative value for unsigned field)",
                "input {t}"
            );
        }
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"histogram":{"dataPoints":[
            {"bucketCounts":[1,-2]}]}}]}]}]}"#;
        assert_eq!(
            err_msg(decode_metrics(body.as_bytes())),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts[1]: \
             invalid integer (negative value for unsigned field)"
        );
    }

    #[test]
    fn error_unknown_enum_name() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_BOGUS"}]}]}]}"#;
        let e = decode_traces(body.as_bytes()).expect_err("unknown");
        assert!(matches!(e, JsonDecodeError::UnknownEnum { .. }));
        assert_eq!(
            e.to_string(),
            "resourceSpans[0].scopeSpans[0].spans[0].kind: unknown enum value \"SPAN_KIND_BOGUS\""
        );
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":
            {"aggregationTemporality":"DELTA"}}]}]}]}"#;
        assert_eq!(
            err_msg(decode_metrics(body.as_bytes())),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.aggregationTemporality: \
             unknown enum value \"DELTA\""
        );
        let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_LOUD"}]}]}]}"#;
        assert!(matches!(decode_logs(body.as_bytes()), Err(JsonDecodeError::UnknownEnum { .. })));
        // Long names are truncated in the message, on a char boundary.
        let long = "é".repeat(100);
        let body =
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"status":{{"code":"{long}"}}}}]}}]}}]}}"#);
        match decode_traces(body.as_bytes()) {
            Err(JsonDecodeError::UnknownEnum { path, value }) => {
                assert_eq!(path, "resourceSpans[0].scopeSpans[0].spans[0].status.code");
                assert_eq!(value, "é".repeat(32));
            }
            other => panic!("{other:?}"),
        }
    }

    fn nested_array_json(levels: usize) -> String {
        let mut b = String::from(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":"#);
        for _ in 0..levels {
            b.push_str(r#"{"arrayValue":{"values":["#);
        }
        b.push_str(r#"{"intValue":1}"#);
        for _ in 0..levels {
            b.push_str("]}}");
        }
        b.push_str("}]}]}]}");
        b
    }

    #[test]
    fn error_depth_bomb_no_stack_overflow() {
        // 1000 nested arrayValues: rejected (serde_json's recursion limit fires first).
        let body = nested_array_json(1000);
        assert!(decode_logs(body.as_bytes()).is_err());
        // The deepest body the JSON parser accepts still decodes (stack is fine).
        let mut deepest_ok = 0;
        for levels in 0..64 {
            match decode_logs(nested_array_json(levels).as_bytes()) {
                Ok(_) => deepest_ok = levels,
                Err(JsonDecodeError::Json(_)) => break,
                Err(e) => panic!("{levels}: {e}"),
            }
        }
        assert!(deepest_ok >= 30, "{deepest_ok}");
        // Same shape, shallow: fine.
        let body = nested_array_json(10);
        let req = decode_logs(body.as_bytes()).expect("shallow nesting");
        let mut v = req.resource_logs[0].scope_logs[0].log_records[0].body.clone();
        let mut levels = 0;
        while let Some(AnyValue { value: Some(any_value::Value::ArrayValue(a)) }) = v {
            levels += 1;
            v = a.values.into_iter().next();
        }
        assert_eq!(levels, 10);
        assert_eq!(v, Some(AnyValue { value: Some(any_value::Value::IntValue(1)) }));
    }

    fn nested_value(levels: usize) -> Value {
        let mut v = serde_json::json!({"stringValue": "leaf"});
        for _ in 0..levels {
            v = serde_json::json!({"kvlistValue": {"values": [{"key": "k", "value": v}]}});
        }
        v
    }

    #[test]
    fn own_depth_limit() {
        // Our own limit (independent of the JSON parser's): MAX_ANY_VALUE_DEPTH levels allowed.
        let p = Path::Root;
        let ok = nested_value(MAX_ANY_VALUE_DEPTH - 1);
        assert!(parse_any_value(ok, &p.key("body"), 1).is_ok());
        let deep = nested_value(MAX_ANY_VALUE_DEPTH);
        match parse_any_value(deep, &p.key("body"), 1) {
            Err(JsonDecodeError::TooDeep { path, limit }) => {
                assert_eq!(limit, 64);
                assert!(path.starts_with("body.kvlistValue.values[0].value.kvlistValue"), "{path}");
                assert_eq!(path.matches("].value").count(), 64, "{path}");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_any_value(nested_value(100), &p, 1).is_err());
    }

    // 6. Tolerance.
    #[test]
    fn snake_case_unknown_keys_nulls() {
        let body = r#"{"resource_spans":[{
          "resource":{"attributes":[{"key":"k","value":{"int_value":"1"}}],"dropped_attributes_count":"2"},
          "schema_url":"rs-schema",
          "somethingNew":{"deep":[1,{"x":null}]},
          "scope_spans":[{"scope":{"name":"s","dropped_attributes_count":1,"extra":true},
            "schema_url":"ss-schema",
            "spans":[{"trace_id":"0102","span_id":"0a0B","parent_span_id":"",
              "trace_state":null,"name":"n","kind":"3","flags":"257",
              "start_time_unix_nano":"18446744073709551615","end_time_unix_nano":1.7e18,
              "attributes":[
                {"key":"b","value":{"bool_value":"false"}},
                {"key":"d","value":{"double_value":"-Infinity"}},
                {"key":"u","value":{"bytes_value":"-_8"}},
                {"key":"a","value":{"array_value":{"values":[{"string_value":"x"}]}}},
                {"key":"l","value":{"kvlist_value":{"values":[{"key":"z","value":null}]}}},
                {"key":"n","value":{"stringValue":null,"unknownValue":1}}
              ],
              "dropped_events_count":1,"dropped_links_count":2,
              "events":[{"time_unix_nano":"7","name":"e","dropped_attributes_count":1}],
              "links":[{"trace_id":"ff","span_id":"ee","trace_state":"t","flags":1}],
              "status":{"code":"1"}, "status_message_extra":"ignored"}]}]}]}"#;
        let req = decode_traces(body.as_bytes()).expect("decode");
        let rs = &req.resource_spans[0];
        assert_eq!(rs.schema_url, "rs-schema");
        let res = rs.resource.as_ref().expect("resource");
        assert_eq!(res.dropped_attributes_count, 2);
        assert_eq!(res.attributes, vec![kv("k", any_value::Value::IntValue(1))]);
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.schema_url, "ss-schema");
        assert_eq!(ss.scope.as_ref().expect("scope").dropped_attributes_count, 1);
        let sp = &ss.spans[0];
        assert_eq!(sp.trace_id, vec![1, 2]);
        assert_eq!(sp.span_id, vec![0x0a, 0x0b]);
        assert!(sp.parent_span_id.is_empty());
        assert_eq!(sp.trace_state, "");
        assert_eq!(sp.kind, 3);
        assert_eq!(sp.flags, 257);
        assert_eq!(sp.start_time_unix_nano, u64::MAX);
        assert_eq!(sp.end_time_unix_nano, 1_700_000_000_000_000_000);
        let vals: Vec<_> = sp.attributes.iter().map(|a| a.value.clone()).collect();
        assert_eq!(vals[0], Some(AnyValue { value: Some(any_value::Value::BoolValue(false)) }));
        assert_eq!(vals[1], Some(AnyValue { value: Some(any_value::Value::DoubleValue(f64::NEG_INFINITY)) }));
        assert_eq!(vals[2], Some(AnyValue { value: Some(any_value::Value::BytesValue(vec![0xfb, 0xff])) }));
        assert_eq!(
            vals[3],
            Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(s("x")) }]
                }))
            })
        );
        assert_eq!(
            vals[4],
            Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue { key: "z".into(), value: None, ..Default::default() }]
                }))
            })
        );
        assert_eq!(vals[5], Some(AnyValue { value: None }));
        assert_eq!(sp.dropped_events_count, 1);
        assert_eq!(sp.dropped_links_count, 2);
        assert_eq!(sp.events[0].time_unix_nano, 7);
        assert_eq!(sp.events[0].dropped_attributes_count, 1);
        assert_eq!(sp.links[0].trace_id, vec![0xff]);
        assert_eq!(sp.links[0].span_id, vec![0xee]);
        assert_eq!(sp.links[0].trace_state, "t");
        assert_eq!(sp.links[0].flags, 1);
        assert_eq!(sp.status.as_ref().expect("status").code, 1);

        let metrics = r#"{"resource_metrics":[{"scope_metrics":[{"metrics":[
            {"name":"h","exponential_histogram":{"aggregation_temporality":2,"data_points":[
              {"zero_count":1,"zero_threshold":"0.5","positive":{"offset":1,"bucket_counts":["4"]}}]}},
            {"name":"s","summary":{"data_points":[{"quantile_values":[{"quantile":"0.99","value":"NaN"}]}]}},
            {"name":"g","gauge":{"data_points":[{"as_int":-3,"start_time_unix_nano":"1",
              "exemplars":[{"as_double":2,"filtered_attributes":[],"span_id":"01","trace_id":"02"}]}]}}
            ]}]}]}"#;
        let req = decode_metrics(metrics.as_bytes()).expect("metrics");
        let m = &req.resource_metrics[0].scope_metrics[0].metrics;
        match &m[0].data {
            Some(metric::Data::ExponentialHistogram(h)) => {
                assert_eq!(h.aggregation_temporality, 2);
                assert_eq!(h.data_points[0].zero_count, 1);
                assert_eq!(h.data_points[0].zero_threshold, 0.5);
                let pos = h.data_points[0].positive.as_ref().expect("positive");
                assert_eq!((pos.offset, pos.bucket_counts.as_slice()), (1, &[4u64][..]));
            }
            other => panic!("{other:?}"),
        }
        match &m[1].data {
            Some(metric::Data::Summary(sm)) => {
                let qv = &sm.data_points[0].quantile_values[0];
                assert_eq!(qv.quantile, 0.99);
                assert!(qv.value.is_nan());
            }
            other => panic!("{other:?}"),
        }
        match &m[2].data {
            Some(metric::Data::Gauge(g)) => {
                let d = &g.data_points[0];
                assert_eq!(d.value, Some(number_data_point::Value::AsInt(-3)));
                assert_eq!(d.start_time_unix_nano, 1);
                assert_eq!(d.exemplars[0].value, Some(exemplar::Value::AsDouble(2.0)));
                assert_eq!(d.exemplars[0].span_id, vec![1]);
                assert_eq!(d.exemplars[0].trace_id, vec![2]);
            }
            other => panic!("{other:?}"),
        }

        let logs = r#"{"resource_logs":[{"scope_logs":[{"log_records":[{"severity_number":"SEVERITY_NUMBER_WARN",
            "severity_text":"W","event_name":"e","observed_time_unix_nano":"9","time_unix_nano":null,
            "trace_id":"AB","span_id":"cd","dropped_attributes_count":1}]}]}]}"#;
        let req = decode_logs(logs.as_bytes()).expect("logs");
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "W");
        assert_eq!(r.event_name, "e");
        assert_eq!(r.observed_time_unix_nano, 9);
        assert_eq!(r.time_unix_nano, 0);
        assert_eq!(r.trace_id, vec![0xab]);
        assert_eq!(r.span_id, vec![0xcd]);
        assert_eq!(r.dropped_attributes_count, 1);
    }

    #[test]
    fn empty_and_null_bodies() {
        assert_eq!(decode_traces(b"{}").expect("t"), ExportTraceServiceRequest::default());
        assert_eq!(decode_logs(b" {} ").expect("l"), ExportLogsServiceRequest::default());
        assert_eq!(decode_metrics(b"{}").expect("m"), ExportMetricsServiceRequest::default());
        assert_eq!(
            decode_traces(br#"{"resourceSpans":null,"other":[1]}"#).expect("t"),
            ExportTraceServiceRequest::default()
        );
        // A body for another signal decodes as an empty request of this one.
        assert_eq!(decode_traces(br#"{"resourceLogs":[{}]}"#).expect("t"), ExportTraceServiceRequest::default());
        let req =
            decode_metrics(br#"{"resourceMetrics":[{"resource":null,"scopeMetrics":[{"metrics":[{"name":"x"}]}]}]}"#)
                .expect("m");
        assert_eq!(req.resource_metrics[0].resource, None);
        assert_eq!(req.resource_metrics[0].scope_metrics[0].metrics[0].data, None);
        // Resource entity refs.
        let req = decode_traces(
            br#"{"resourceSpans":[{"resource":{"entityRefs":[{"type":"host","idKeys":["host.id"],
            "description_keys":["host.name"],"schemaUrl":"u"}]}}]}"#,
        )
        .expect("entity refs");
        let er = &req.resource_spans[0].resource.as_ref().expect("res").entity_refs[0];
        assert_eq!(er.r#type, "host");
        assert_eq!(er.id_keys, vec!["host.id".to_owned()]);
        assert_eq!(er.description_keys, vec!["host.name".to_owned()]);
        assert_eq!(er.schema_url, "u");
    }

    #[test]
    fn sniff() {
        assert_eq!(sniff_signal(JS_TRACES.as_bytes()), Some(Signal::Traces));
        assert_eq!(sniff_signal(br#"{"resource_spans":[]}"#), Some(Signal::Traces));
        assert_eq!(sniff_signal(br#"{"resourceLogs":[]}"#), Some(Signal::Logs));
        assert_eq!(sniff_signal(br#" {"resource_logs":null}"#), Some(Signal::Logs));
        assert_eq!(sniff_signal(br#"{"resourceMetrics":[]}"#), Some(Signal::Metrics));
        assert_eq!(sniff_signal(br#"{"resource_metrics":[]}"#), Some(Signal::Metrics));
        // Key after other fields whose values contain decoy keys and quotes.
        assert_eq!(
            sniff_signal(
                br#"{"meta":{"resourceSpans":1},"s":"\"resourceLogs\",","a":[{"resourceSpans":2}],
                    "resourceMetrics":[]}"#
            ),
            Some(Signal::Metrics)
        );
        // Values that look like keys do not count.
        assert_eq!(sniff_signal(br#"{"kind":"resourceSpans"}"#), None);
        assert_eq!(sniff_signal(br#"{"foo":"bar","n":[1,2]}"#), None);
        assert_eq!(sniff_signal(b"{}"), None);
        assert_eq!(sniff_signal(b"[{\"resourceSpans\":[]}]"), None);
        assert_eq!(sniff_signal(b""), None);
        assert_eq!(sniff_signal(b"{\"resourceSp"), None);
        assert_eq!(sniff_signal(b"{\"a\\"), None);
    }

    #[test]
    fn no_panic_on_truncated_or_mangled_input() {
        let bodies = [JS_TRACES, PROTO3_TRACES];
        for body in bodies {
            let b = body.as_bytes();
            for cut in 0..b.len() {
                let part = &b[..cut];
                let _ = sniff_signal(part);
                assert!(decode_traces(part).is_err() || part.trim_ascii().ends_with(b"}"));
                let _ = decode_logs(part);
                let _ = decode_metrics(part);
            }
            // Replace each structural character in turn with a quote / digit.
            for (i, &c) in b.iter().enumerate() {
                if matches!(c, b'{' | b'}' | b'[' | b']' | b':' | b',') {
                    for r in [b'"', b'1'] {
                        let mut m = b.to_vec();
                        m[i] = r;
                        let _ = sniff_signal(&m);
                        let _ = decode_traces(&m);
                    }
                }
            }
        }
    }

    // 7. Round trip: hand-built prost message == hand-written JSON, also through protobuf bytes.
    #[test]
    fn round_trip_hand_built() {
        let built = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("rt"))],
                    dropped_attributes_count: 0,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "2.0".into(),
                        attributes: vec![kv("x", any_value::Value::DoubleValue(-0.5))],
                        dropped_attributes_count: 4,
                    }),
                    spans: vec![
                        Span {
                            trace_id: vec![0x11; 16],
                            span_id: vec![0x22; 8],
                            name: "root".into(),
                            kind: span::SpanKind::Client as i32,
                            start_time_unix_nano: 1,
                            end_time_unix_nano: u64::MAX,
                            status: Some(Status { message: String::new(), code: 1 }),
                            ..Default::default()
                        },
                        Span {
                            trace_id: vec![0x11; 16],
                            span_id: vec![0x33; 8],
                            parent_span_id: vec![0x22; 8],
                            name: "child".into(),
                            kind: span::SpanKind::Internal as i32,
                            attributes: vec![kv("big", any_value::Value::IntValue(i64::MIN))],
                            ..Default::default()
                        },
                    ],
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: String::new(),
            }],
        };
        let json = r#"{"resourceSpans":[{
          "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"rt"}}]},
          "scopeSpans":[{
            "scope":{"name":"lib","version":"2.0","droppedAttributesCount":4,
                     "attributes":[{"key":"x","value":{"doubleValue":-0.5}}]},
            "spans":[
              {"traceId":"11111111111111111111111111111111","spanId":"2222222222222222",
               "name":"root","kind":3,"startTimeUnixNano":"1",
               "endTimeUnixNano":"18446744073709551615","status":{"code":1}},
              {"traceId":"11111111111111111111111111111111","spanId":"3333333333333333",
               "parentSpanId":"2222222222222222","name":"child","kind":"SPAN_KIND_INTERNAL",
               "attributes":[{"key":"big","value":{"intValue":"-9223372036854775808"}}]}
            ],
            "schemaUrl":"https://opentelemetry.io/schemas/1.26.0"}]}]}"#;
        let decoded = decode_traces(json.as_bytes()).expect("decode");
        assert_eq!(decoded, built);
        let bytes = decoded.encode_to_vec();
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("protobuf decode");
        assert_eq!(back, built);
        assert_eq!(built.encode_to_vec(), bytes);
    }

    #[test]
    fn number_edge_cases() {
        let p = Path::Root;
        let v = |j: &str| serde_json::from_str::<Value>(j).expect("json");
        assert_eq!(u64_val(&v("1.7e18"), &p).ok(), Some(1_700_000_000_000_000_000));
        assert_eq!(u64_val(&v("\"1.7e18\""), &p).ok(), Some(1_700_000_000_000_000_000));
        assert_eq!(u64_val(&v("18446744073709551615"), &p).ok(), Some(u64::MAX));
        assert_eq!(u64_val(&v("-0"), &p).ok(), Some(0));
        assert_eq!(u64_val(&v("\"-0\""), &p).ok(), Some(0));
        assert!(u64_val(&v("18446744073709551616"), &p).is_err());
        assert!(u64_val(&v("\"1.5\""), &p).is_err());
        assert!(u64_val(&v("\"\""), &p).is_err());
        assert!(u64_val(&v("\"NaN\""), &p).is_err());
        assert_eq!(i64_val(&v("-9223372036854775808"), &p).ok(), Some(i64::MIN));
        assert_eq!(i64_val(&v("\"9223372036854775807\""), &p).ok(), Some(i64::MAX));
        assert!(i64_val(&v("9223372036854775808"), &p).is_err());
        assert!(i64_val(&v("1e19"), &p).is_err());
        assert_eq!(i64_val(&v("-2e3"), &p).ok(), Some(-2000));
        assert_eq!(i32_val(&v("\"-7\""), &p).ok(), Some(-7));
        assert!(i32_val(&v("2147483648"), &p).is_err());
        assert_eq!(u32_val(&v("4294967295"), &p).ok(), Some(u32::MAX));
        assert!(u32_val(&v("-1"), &p).is_err());
        assert_eq!(f64_val(&v("\"Infinity\""), &p).ok(), Some(f64::INFINITY));
        assert_eq!(f64_val(&v("\"-1.25e2\""), &p).ok(), Some(-125.0));
        assert_eq!(f64_val(&v("3"), &p).ok(), Some(3.0));
        assert!(f64_val(&v("\"\""), &p).is_err());
        assert!(f64_val(&v("[]"), &p).is_err());
        assert_eq!(base64_val(&v("\"aGk\""), &p).ok(), Some(b"hi".to_vec()));
        assert_eq!(base64_val(&v("\"+/8=\""), &p).ok(), Some(vec![0xfb, 0xff]));
        assert_eq!(base64_val(&v("\"\""), &p).ok(), Some(vec![]));
        assert!(base64_val(&v("\"a\""), &p).is_err());
        assert!(matches!(
            u64_val(&v("\"x\""), &p),
            Err(JsonDecodeError::InvalidInteger { ref path, .. }) if path == "$"
        ));
    }
}
