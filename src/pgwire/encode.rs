//! Arrow -> Postgres: the type OID each DuckDB column goes out as, and each cell in Postgres text
//! format (what psql, lib/pq and pgx parse: `2026-11-21 10:00:00.123+00`, `t`/`f`, ...) or binary
//! format (what tokio-postgres and asyncpg ask for). Also decodes bound parameters (text or
//! binary) into DuckDB values.

use crate::civil::civil_from_days;
use bytes::{BufMut, BytesMut};
use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::*;
use duckdb::types::Value;
use pgwire::api::Type;

/// Seconds and days between the Unix epoch and the Postgres epoch (2000-01-01).
const PG_EPOCH_SECS: i64 = 946_684_800;
const PG_EPOCH_DAYS: i64 = 10_957;

/// How one result column goes out: its Postgres type, type modifier and encoding path.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    pub name: String,
    pub ty: Type,
    pub typmod: i32,
}

/// Extra facts about a column that Arrow does not carry (read from DuckDB's logical type).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Logical {
    pub json: bool,
    pub uuid: bool,
}

/// The Postgres type for an Arrow column. Never an OID clients would have to look up.
pub fn pg_type(dt: &DataType, logical: Logical) -> (Type, i32) {
    let t = match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            let s = i32::from((*s).max(0));
            return (Type::NUMERIC, ((i32::from(*p) << 16) | s) + 4);
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if logical.json => Type::JSON,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if logical.uuid => Type::UUID,
        DataType::FixedSizeBinary(16) if logical.uuid => Type::UUID,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        // Every stored time is UTC (plain TIMESTAMP only because DuckDB lacks ICU, see
        // store/schema/0002): present them as the instants they are.
        DataType::Timestamp(_, _) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        _ => Type::TEXT,
    };
    (t, -1)
}

/// Postgres spelling of a DuckDB `data_type` (as `information_schema.columns` reports it).
pub fn pg_type_name(duckdb_type: &str) -> String {
    let u = duckdb_type.trim().to_ascii_uppercase();
    let name = match u.as_str() {
        "BIGINT" | "INT8" | "LONG" => "bigint",
        "INTEGER" | "INT" | "INT4" | "SIGNED" => "integer",
        "SMALLINT" | "INT2" | "SHORT" | "TINYINT" | "INT1" => "smallint",
        "UTINYINT" => "smallint",
        "USMALLINT" => "integer",
        "UINTEGER" => "bigint",
        "UBIGINT" | "HUGEINT" | "UHUGEINT" => "numeric",
        "DOUBLE" | "FLOAT8" => "double precision",
        "FLOAT" | "REAL" | "FLOAT4" => "real",
        "BOOLEAN" | "BOOL" => "boolean",
        "VARCHAR" | "TEXT" | "STRING" => "text",
        "JSON" => "json",
        "UUID" => "uuid",
        "BLOB" | "BYTEA" => "bytea",
        "DATE" => "date",
        "TIME" => "time without time zone",
        "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => "timestamp with time zone",
        // Stored times are UTC instants (see `pg_type`).
        "TIMESTAMP" | "DATETIME" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" => "timestamp with time zone",
        "INTERVAL" => "interval",
        _ if u.starts_with("DECIMAL") || u.starts_with("NUMERIC") => "numeric",
        _ if u.starts_with("VARCHAR") => "character varying",
        _ if u.ends_with("[]") => "ARRAY",
        _ => "text",
    };
    name.to_string()
}

/// Append one cell (length-prefixed, -1 for NULL) to a DataRow buffer.
pub fn put_cell(buf: &mut BytesMut, a: &dyn Array, i: usize, ty: &Type, binary: bool) {
    if a.is_null(i) {
        buf.put_i32(-1);
        return;
    }
    let at = buf.len();
    buf.put_i32(0);
    if !(binary && put_binary(buf, a, i, ty)) {
        let mut s = String::new();
        text(a, i, ty, &mut s);
        if binary && *ty == Type::NUMERIC {
            numeric_binary(buf, &s);
        } else if binary && *ty == Type::UUID {
            uuid_binary(buf, &s);
        } else {
            buf.put_slice(s.as_bytes());
        }
    }
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The value's Postgres text form, or a plain rendering when `ty` is text (e.g. a described
/// `text` column whose runtime type turned out different).
pub fn text(a: &dyn Array, i: usize, ty: &Type, out: &mut String) {
    use std::fmt::Write as _;
    macro_rules! prim {
        ($t:ty) => {
            a.as_primitive::<$t>().value(i)
        };
    }
    match a.data_type() {
        DataType::Boolean => out.push_str(if a.as_boolean().value(i) { "t" } else { "f" }),
        DataType::Int8 => push_display(out, prim!(Int8Type)),
        DataType::Int16 => push_display(out, prim!(Int16Type)),
        DataType::Int32 => push_display(out, prim!(Int32Type)),
        DataType::Int64 => push_display(out, prim!(Int64Type)),
        DataType::UInt8 => push_display(out, prim!(UInt8Type)),
        DataType::UInt16 => push_display(out, prim!(UInt16Type)),
        DataType::UInt32 => push_display(out, prim!(UInt32Type)),
        DataType::UInt64 => push_display(out, prim!(UInt64Type)),
        DataType::Float32 => float_text(out, f64::from(prim!(Float32Type)), true),
        DataType::Float64 => float_text(out, prim!(Float64Type), false),
        DataType::Decimal128(_, s) => decimal_text(out, prim!(Decimal128Type), *s),
        DataType::Utf8 => out.push_str(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => out.push_str(a.as_string::<i64>().value(i)),
        DataType::Utf8View => out.push_str(a.as_string_view().value(i)),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_)
            if *ty == Type::UUID =>
        {
            if let Some(b) = bytes_of(a, i) {
                uuid_text(out, b);
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            if let Some(b) = bytes_of(a, i) {
                out.push_str("\\x");
                out.push_str(&hex::encode(b));
            }
        }
        DataType::Date32 => date_text(out, i64::from(prim!(Date32Type))),
        DataType::Date64 => date_text(out, prim!(Date64Type).div_euclid(86_400_000)),
        DataType::Time32(_) | DataType::Time64(_) => {
            if let Some(us) = time_micros(a, i) {
                time_text(out, us);
            }
        }
        DataType::Timestamp(_, _) => {
            // Always with the UTC offset: stored times are UTC instants (see `pg_type`).
            if let Some(us) = timestamp_micros(a, i) {
                timestamp_text(out, us, true);
            }
        }
        DataType::Interval(_) | DataType::Duration(_) => {
            if let Some((months, days, micros)) = interval_parts(a, i) {
                interval_text(out, months, days, micros);
            }
        }
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Struct(_)
        | DataType::Map(_, _) => {
            let _ = write!(out, "{}", crate::store::reader::json_value(a, i));
        }
        _ => {
            if let Ok(f) = duckdb::arrow::util::display::ArrayFormatter::try_new(a, &Default::default()) {
                let _ = write!(out, "{}", f.value(i));
            }
        }
    }
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    use std::fmt::Write as _;
    let _ = write!(out, "{v}");
}

/// Binary form for the types that have one here; false means "use the text bytes" (text, json,
/// and anything rendered as text).
fn put_binary(buf: &mut BytesMut, a: &dyn Array, i: usize, ty: &Type) -> bool {
    macro_rules! prim {
        ($t:ty) => {
            a.as_primitive::<$t>().value(i)
        };
    }
    // Integers go out at the width their Postgres type promises.
    let int = |buf: &mut BytesMut, v: i64| -> bool {
        match *ty {
            Type::INT2 => buf.put_i16(v as i16),
            Type::INT4 => buf.put_i32(v as i32),
            Type::INT8 => buf.put_i64(v),
            _ => return false,
        }
        true
    };
    match a.data_type() {
        DataType::Boolean if *ty == Type::BOOL => buf.put_u8(u8::from(a.as_boolean().value(i))),
        DataType::Int8 => return int(buf, i64::from(prim!(Int8Type))),
        DataType::Int16 => return int(buf, i64::from(prim!(Int16Type))),
        DataType::Int32 => return int(buf, i64::from(prim!(Int32Type))),
        DataType::Int64 => return int(buf, prim!(Int64Type)),
        DataType::UInt8 => return int(buf, i64::from(prim!(UInt8Type))),
        DataType::UInt16 => return int(buf, i64::from(prim!(UInt16Type))),
        DataType::UInt32 => return int(buf, i64::from(prim!(UInt32Type))),
        DataType::Float32 if *ty == Type::FLOAT4 => buf.put_f32(prim!(Float32Type)),
        DataType::Float64 if *ty == Type::FLOAT8 => buf.put_f64(prim!(Float64Type)),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_)
            if *ty == Type::BYTEA || *ty == Type::UUID =>
        {
            match bytes_of(a, i) {
                Some(b) => buf.put_slice(b),
                None => return false,
            }
        }
        DataType::Date32 if *ty == Type::DATE => buf.put_i32((i64::from(prim!(Date32Type)) - PG_EPOCH_DAYS) as i32),
        DataType::Date64 if *ty == Type::DATE => {
            buf.put_i32((prim!(Date64Type).div_euclid(86_400_000) - PG_EPOCH_DAYS) as i32)
        }
        DataType::Time32(_) | DataType::Time64(_) if *ty == Type::TIME => match time_micros(a, i) {
            Some(us) => buf.put_i64(us),
            None => return false,
        },
        DataType::Timestamp(_, _) if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP => {
            match timestamp_micros(a, i) {
                Some(us) => buf.put_i64(us - PG_EPOCH_SECS * 1_000_000),
                None => return false,
            }
        }
        DataType::Interval(_) | DataType::Duration(_) if *ty == Type::INTERVAL => match interval_parts(a, i) {
            Some((months, days, micros)) => {
                buf.put_i64(micros);
                buf.put_i32(days);
                buf.put_i32(months);
            }
            None => return false,
        },
        _ => return false,
    }
    true
}

fn bytes_of(a: &dyn Array, i: usize) -> Option<&[u8]> {
    Some(match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().value(i),
        DataType::LargeBinary => a.as_binary::<i64>().value(i),
        DataType::BinaryView => a.as_binary_view().value(i),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value(i),
        _ => return None,
    })
}

fn time_micros(a: &dyn Array, i: usize) -> Option<i64> {
    Some(match a.data_type() {
        DataType::Time32(TimeUnit::Second) => i64::from(a.as_primitive::<Time32SecondType>().value(i)) * 1_000_000,
        DataType::Time32(TimeUnit::Millisecond) => {
            i64::from(a.as_primitive::<Time32MillisecondType>().value(i)) * 1_000
        }
        DataType::Time64(TimeUnit::Microsecond) => a.as_primitive::<Time64MicrosecondType>().value(i),
        DataType::Time64(TimeUnit::Nanosecond) => a.as_primitive::<Time64NanosecondType>().value(i) / 1_000,
        _ => return None,
    })
}

fn timestamp_micros(a: &dyn Array, i: usize) -> Option<i64> {
    Some(match a.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => a.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => a.as_primitive::<TimestampMillisecondType>().value(i) * 1_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => a.as_primitive::<TimestampMicrosecondType>().value(i),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            a.as_primitive::<TimestampNanosecondType>().value(i).div_euclid(1_000)
        }
        _ => return None,
    })
}

/// (months, days, microseconds) of an interval or duration cell.
fn interval_parts(a: &dyn Array, i: usize) -> Option<(i32, i32, i64)> {
    Some(match a.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            (v.months, v.days, v.nanoseconds / 1_000)
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = a.as_primitive::<IntervalDayTimeType>().value(i);
            (0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        DataType::Interval(IntervalUnit::YearMonth) => (a.as_primitive::<IntervalYearMonthType>().value(i), 0, 0),
        DataType::Duration(TimeUnit::Second) => (0, 0, a.as_primitive::<DurationSecondType>().value(i) * 1_000_000),
        DataType::Duration(TimeUnit::Millisecond) => {
            (0, 0, a.as_primitive::<DurationMillisecondType>().value(i) * 1_000)
        }
        DataType::Duration(TimeUnit::Microsecond) => (0, 0, a.as_primitive::<DurationMicrosecondType>().value(i)),
        DataType::Duration(TimeUnit::Nanosecond) => (0, 0, a.as_primitive::<DurationNanosecondType>().value(i) / 1_000),
        _ => return None,
    })
}

/// Postgres float output: shortest round-trip digits, `Infinity`/`NaN`, exponent for the
/// very large and very small.
fn float_text(out: &mut String, v: f64, single: bool) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let a = v.abs();
        let s = if single { format!("{}", v as f32) } else { format!("{v}") };
        if a != 0.0 && !(1e-4..1e15).contains(&a) {
            let e = if single { format!("{:e}", v as f32) } else { format!("{v:e}") };
            // Rust writes `1e20` / `1e-7`; Postgres writes `1e+20` / `1e-07`.
            if let Some((m, exp)) = e.split_once('e') {
                let (sign, digits) = exp.strip_prefix('-').map(|d| ('-', d)).unwrap_or(('+', exp));
                let _ = write!(out, "{m}e{sign}{digits:0>2}");
                return;
            }
        }
        out.push_str(&s);
    }
}

fn decimal_text(out: &mut String, v: i128, scale: i8) {
    if scale <= 0 {
        push_display(out, v);
        if scale < 0 {
            out.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        }
        return;
    }
    let scale = usize::from(scale.unsigned_abs());
    let digits = v.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    if v < 0 {
        out.push('-');
    }
    let (int, frac) = digits.split_at(digits.len() - scale);
    out.push_str(int);
    out.push('.');
    out.push_str(frac);
}

/// Binary `numeric` from its decimal text (`-12.3400`, `NaN`).
pub fn numeric_binary(buf: &mut BytesMut, s: &str) {
    let s = s.trim();
    if s.eq_ignore_ascii_case("nan") {
        buf.put_slice(&[0, 0, 0, 0, 0xC0, 0, 0, 0]);
        return;
    }
    let (neg, s) = s.strip_prefix('-').map(|r| (true, r)).unwrap_or((false, s.strip_prefix('+').unwrap_or(s)));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let dscale = frac.len() as i16;
    // Base-10000 groups aligned on the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let int_digits = format!("{}{int}", "0".repeat(int_pad));
    let frac_pad = (4 - frac.len() % 4) % 4;
    let frac_digits = format!("{frac}{}", "0".repeat(frac_pad));
    let group = |chunk: &[u8]| chunk.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d.wrapping_sub(b'0') % 10));
    let mut groups: Vec<i16> = int_digits.as_bytes().chunks(4).map(group).collect();
    let mut weight = groups.len() as i16 - 1;
    groups.extend(frac_digits.as_bytes().chunks(4).map(group));
    let lead = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..lead);
    weight -= lead as i16;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    buf.put_i16(groups.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    buf.put_i16(dscale);
    for g in groups {
        buf.put_i16(g);
    }
}

fn uuid_binary(buf: &mut BytesMut, s: &str) {
    let hexed: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    match hex::decode(&hexed) {
        Ok(b) if b.len() == 16 => buf.put_slice(&b),
        _ => buf.put_slice(&[0u8; 16]),
    }
}

fn uuid_text(out: &mut String, b: &[u8]) {
    let h = hex::encode(b);
    if h.len() == 32 {
        out.push_str(&format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]));
    } else {
        out.push_str(&h);
    }
}

/// `YYYY-MM-DD` (years before 1 get Postgres' ` BC`, added by the caller's suffix).
fn date_parts(days: i64) -> (String, bool) {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        (format!("{:04}-{m:02}-{d:02}", 1 - y), true)
    } else {
        (format!("{y:04}-{m:02}-{d:02}"), false)
    }
}

fn date_text(out: &mut String, days: i64) {
    let (s, bc) = date_parts(days);
    out.push_str(&s);
    if bc {
        out.push_str(" BC");
    }
}

fn time_text(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    out.push_str(&format!("{:02}:{:02}:{:02}", secs / 3600, (secs % 3600) / 60, secs % 60));
    frac_text(out, frac);
}

fn frac_text(out: &mut String, micros: i64) {
    if micros != 0 {
        let f = format!("{micros:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

/// `2026-11-21 10:00:00.123+00` (with time zone) or `2026-11-21 10:00:00.123`: a space, not `T`.
pub fn timestamp_text(out: &mut String, micros: i64, tz: bool) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (date, bc) = date_parts(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    out.push_str(&date);
    out.push_str(&format!(" {:02}:{:02}:{:02}", sod / 3600, (sod % 3600) / 60, sod % 60));
    frac_text(out, frac);
    if tz {
        out.push_str("+00");
    }
    if bc {
        out.push_str(" BC");
    }
}

/// Postgres `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06.789`.
fn interval_text(out: &mut String, months: i32, days: i32, micros: i64) {
    let mut parts: Vec<String> = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(unit(i64::from(years), "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(i64::from(mons), "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(i64::from(days), "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let secs = m / 1_000_000;
        let mut t =
            format!("{}{:02}:{:02}:{:02}", if neg { "-" } else { "" }, secs / 3600, (secs % 3600) / 60, secs % 60);
        frac_text_into(&mut t, (m % 1_000_000) as i64);
        parts.push(t);
    }
    out.push_str(&parts.join(" "));
}

fn frac_text_into(out: &mut String, micros: i64) {
    frac_text(out, micros);
}

/// A bound parameter as a DuckDB value. Text-format values go to DuckDB as strings (DuckDB
/// casts them to the parameter's type); binary ones are decoded by their declared type.
pub fn param_value(raw: Option<&[u8]>, ty: &Type, binary: bool) -> Result<Value, String> {
    let Some(raw) = raw else { return Ok(Value::Null) };
    if !binary {
        let s = std::str::from_utf8(raw).map_err(|_| "parameter is not valid UTF-8".to_string())?;
        if *ty == Type::BYTEA {
            if let Some(h) = s.strip_prefix("\\x") {
                return hex::decode(h).map(Value::Blob).map_err(|e| format!("bad bytea parameter: {e}"));
            }
        }
        return Ok(Value::Text(s.to_string()));
    }
    let fixed = |n: usize| -> Result<&[u8], String> {
        if raw.len() == n {
            Ok(raw)
        } else {
            Err(format!("binary {} parameter has {} bytes, expected {n}", ty.name(), raw.len()))
        }
    };
    let be8 = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        a
    };
    Ok(match *ty {
        Type::BOOL => Value::Boolean(fixed(1)?[0] != 0),
        Type::INT2 => {
            let b = fixed(2)?;
            Value::SmallInt(i16::from_be_bytes([b[0], b[1]]))
        }
        Type::INT4 => {
            let b = fixed(4)?;
            Value::Int(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        Type::INT8 => Value::BigInt(i64::from_be_bytes(be8(fixed(8)?))),
        Type::OID => {
            let b = fixed(4)?;
            Value::BigInt(i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        }
        Type::FLOAT4 => {
            let b = fixed(4)?;
            Value::Float(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        Type::FLOAT8 => Value::Double(f64::from_be_bytes(be8(fixed(8)?))),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let us = i64::from_be_bytes(be8(fixed(8)?)).saturating_add(PG_EPOCH_SECS * 1_000_000);
            let mut s = String::new();
            timestamp_text(&mut s, us, *ty == Type::TIMESTAMPTZ);
            Value::Text(s)
        }
        Type::DATE => {
            let b = fixed(4)?;
            let days = i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])) + PG_EPOCH_DAYS;
            let mut s = String::new();
            date_text(&mut s, days);
            Value::Text(s)
        }
        Type::NUMERIC => Value::Text(numeric_from_binary(raw)?),
        Type::UUID => {
            let mut s = String::new();
            uuid_text(&mut s, fixed(16)?);
            Value::Text(s)
        }
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::JSONB => {
            // Version byte 1, then the JSON text.
            let body = raw.strip_prefix(&[1u8]).unwrap_or(raw);
            Value::Text(String::from_utf8_lossy(body).into_owned())
        }
        _ => Value::Text(
            std::str::from_utf8(raw).map_err(|_| format!("binary {} parameter is not UTF-8", ty.name()))?.to_string(),
        ),
    })
}

/// Decimal text of a binary `numeric`.
fn numeric_from_binary(raw: &[u8]) -> Result<String, String> {
    if raw.len() < 8 {
        return Err("short binary numeric parameter".into());
    }
    let rd = |k: usize| i16::from_be_bytes([raw[k], raw[k + 1]]);
    let (ndigits, weight, sign, dscale) = (rd(0), rd(2), u16::from_be_bytes([raw[4], raw[5]]), rd(6));
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let n = usize::try_from(ndigits).map_err(|_| "bad numeric")?;
    if raw.len() < 8 + 2 * n {
        return Err("short binary numeric parameter".into());
    }
    let digits: Vec<i16> = (0..n).map(|k| rd(8 + 2 * k)).collect();
    let mut int = String::new();
    for w in (0..=i32::from(weight)).rev() {
        let idx = i32::from(weight) - w;
        let d = usize::try_from(idx).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut idx = i32::from(weight) + 1;
    while (frac.len() as i32) < i32::from(dscale) {
        let d = if idx < 0 { 0 } else { usize::try_from(idx).ok().and_then(|i| digits.get(i)).copied().unwrap_or(0) };
        frac.push_str(&format!("{d:04}"));
        idx += 1;
    }
    frac.truncate(usize::try_from(dscale).unwrap_or(0));
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::*;
    use std::sync::Arc;

    fn cell(a: &dyn Array, ty: &Type, binary: bool) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_cell(&mut b, a, 0, ty, binary);
        b[4..].to_vec()
    }

    fn txt(a: &dyn Array) -> String {
        let (ty, _) = pg_type(a.data_type(), Logical::default());
        String::from_utf8(cell(a, &ty, false)).expect("utf8")
    }

    #[test]
    fn text_formats_match_postgres() {
        let ts = TimestampMicrosecondArray::from(vec![1_795_255_200_123_000]).with_timezone("UTC");
        assert_eq!(txt(&ts), "2026-11-21 10:00:00.123+00");
        let ts = TimestampMicrosecondArray::from(vec![1_795_255_200_000_000]);
        assert_eq!(txt(&ts), "2026-11-21 10:00:00+00");
        assert_eq!(txt(&Date32Array::from(vec![20_413])), "2025-11-21");
        assert_eq!(txt(&BooleanArray::from(vec![true])), "t");
        assert_eq!(txt(&Float64Array::from(vec![1.5])), "1.5");
        assert_eq!(txt(&Float64Array::from(vec![1e20])), "1e+20");
        assert_eq!(txt(&Float64Array::from(vec![f64::INFINITY])), "Infinity");
        let d = Decimal128Array::from(vec![-12_340]).with_precision_and_scale(10, 3).expect("dec");
        assert_eq!(txt(&d), "-12.340");
        let d = Decimal128Array::from(vec![5]).with_precision_and_scale(10, 3).expect("dec");
        assert_eq!(txt(&d), "0.005");
        assert_eq!(txt(&BinaryArray::from(vec![&b"\x01\xff"[..]])), "\\x01ff");
        let iv = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(14, 3, 14_706_789_000_000)]);
        assert_eq!(txt(&iv), "1 year 2 mons 3 days 04:05:06.789");
        let iv = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(0, 0, 0)]);
        assert_eq!(txt(&iv), "00:00:00");
        let l = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), Some(2)])]);
        assert_eq!(txt(&l), "[1,2]");
    }

    #[test]
    fn binary_formats() {
        let ts = TimestampMicrosecondArray::from(vec![PG_EPOCH_SECS * 1_000_000 + 5]).with_timezone("UTC");
        assert_eq!(cell(&ts, &Type::TIMESTAMPTZ, true), 5i64.to_be_bytes());
        assert_eq!(cell(&Int32Array::from(vec![7]), &Type::INT4, true), 7i32.to_be_bytes());
        assert_eq!(cell(&Int64Array::from(vec![7]), &Type::INT8, true), 7i64.to_be_bytes());
        assert_eq!(cell(&StringArray::from(vec!["{}"]), &Type::JSON, true), b"{}");
        let mut b = BytesMut::new();
        put_cell(&mut b, &Int64Array::from(vec![None::<i64>]), 0, &Type::INT8, true);
        assert_eq!(&b[..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn numeric_round_trips() {
        for s in ["0", "1", "-12.340", "123456789.000001", "0.005", "10000", "99999999999999999999999999999999999999"] {
            let mut b = BytesMut::new();
            numeric_binary(&mut b, s);
            assert_eq!(numeric_from_binary(&b).expect("decode"), s, "{s}");
        }
        // 12.34 -> ndigits 2, weight 0, [12, 3400], dscale 2
        let mut b = BytesMut::new();
        numeric_binary(&mut b, "12.34");
        assert_eq!(&b[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x0d, 0x48]);
    }

    #[test]
    fn params_decode() {
        let v = param_value(Some(&5i64.to_be_bytes()), &Type::INT8, true).expect("int8");
        assert_eq!(v, Value::BigInt(5));
        let v = param_value(Some(&0i64.to_be_bytes()), &Type::TIMESTAMPTZ, true).expect("ts");
        assert_eq!(v, Value::Text("2000-01-01 00:00:00+00".into()));
        assert_eq!(param_value(Some(b"abc"), &Type::TEXT, false).expect("text"), Value::Text("abc".into()));
        assert_eq!(param_value(None, &Type::TEXT, false).expect("null"), Value::Null);
        assert!(param_value(Some(b"abc"), &Type::INT8, true).is_err());
        let _ = Arc::new(0);
    }

    #[test]
    fn type_names() {
        assert_eq!(pg_type_name("TIMESTAMP WITH TIME ZONE"), "timestamp with time zone");
        assert_eq!(pg_type_name("DOUBLE"), "double precision");
        assert_eq!(pg_type_name("VARCHAR"), "text");
        assert_eq!(pg_type_name("DECIMAL(18,3)"), "numeric");
        assert_eq!(pg_type_name("BIGINT"), "bigint");
    }
}
