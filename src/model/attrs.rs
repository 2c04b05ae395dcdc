//! Attribute access for the normaliser: a one-pass index of the keys we care about, lenient value
//! coercion (numbers sent as strings, `"true"` flags) and a fast AnyValue -> JSON writer used to
//! keep every raw attribute.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use base64::Engine as _;

use super::semconv;
use super::view::{AnyValue, KeyValue, Value};

/// FNV-1a: short keys, no DoS concern (fixed key tables, series ids).
#[derive(Default)]
pub struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

const SLOTS: usize = 128;

static KEY_SLOTS: LazyLock<FnvMap<&'static str, usize>> = LazyLock::new(|| {
    let mut m = FnvMap::default();
    for k in semconv::all_keys() {
        let n = m.len();
        m.entry(k).or_insert(n);
    }
    assert!(m.len() <= SLOTS, "raise SLOTS");
    m
});

/// Slot cache: a direct-mapped table from a static key's (address, length) to its slot, shared
/// by every thread (one atomic word per entry: address << 16 | length << 8 | slot + 1; 0 empty).
const CACHE_BITS: u32 = 10;
static SLOT_CACHE: [std::sync::atomic::AtomicU64; 1 << CACHE_BITS] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 1 << CACHE_BITS];

fn slot_of(key: &'static str) -> Option<usize> {
    use std::sync::atomic::Ordering::Relaxed;
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let (addr, len) = (key.as_ptr() as u64, key.len() as u64);
    if addr >> 48 != 0 || len > 255 {
        return KEY_SLOTS.get(key).copied();
    }
    let tag = (addr << 16) | (len << 8);
    let i = ((addr ^ len.wrapping_mul(K)).wrapping_mul(K) >> (64 - CACHE_BITS)) as usize;
    let e = SLOT_CACHE[i].load(Relaxed);
    if e & !0xff == tag {
        return (e & 0xff).checked_sub(1).map(|s| s as usize);
    }
    let slot = KEY_SLOTS.get(key).copied();
    SLOT_CACHE[i].store(tag | slot.map_or(0, |s| s as u64 + 1), Relaxed);
    slot
}

/// The known attributes of one record (span, log record, data point or resource).
pub struct AttrIndex<'a> {
    slots: [Option<&'a AnyValue<'a>>; SLOTS],
}

impl<'a> AttrIndex<'a> {
    pub fn build(kvs: &'a [KeyValue<'a>]) -> Self {
        let mut slots = [None; SLOTS];
        let table = &*KEY_SLOTS;
        for kv in kvs {
            if let Some(i) = table.get(kv.key) {
                if let Some(v) = kv.value.as_ref() {
                    if v.value.is_some() {
                        slots[*i] = Some(v);
                    }
                }
            }
        }
        Self { slots }
    }

    pub fn empty() -> Self {
        Self { slots: [None; SLOTS] }
    }

    /// The value of a known key. Keys are the normaliser's constants, so their slot is cached by
    /// the key's address (a static string never moves or is freed): no hashing of the key's bytes
    /// and no string compare per lookup (those were a quarter of the mapping time).
    pub fn get(&self, key: &'static str) -> Option<&'a AnyValue<'a>> {
        slot_of(key).and_then(|i| self.slots[i])
    }

    pub fn str(&self, key: &'static str) -> Option<&'a str> {
        self.get(key).and_then(as_str).map(str::trim).filter(|s| !s.is_empty())
    }

    /// First non-empty string among `keys`, with the key that matched.
    pub fn first_str(&self, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
        keys.iter().find_map(|k| self.str(k).map(|v| (*k, v)))
    }

    pub fn i64(&self, key: &'static str) -> Option<i64> {
        self.get(key).and_then(as_i64)
    }

    pub fn first_i64(&self, keys: &[&'static str]) -> Option<(&'static str, i64)> {
        keys.iter().find_map(|k| self.i64(k).map(|v| (*k, v)))
    }

    pub fn f64(&self, key: &'static str) -> Option<f64> {
        self.get(key).and_then(as_f64)
    }

    pub fn first_f64(&self, keys: &[&'static str]) -> Option<f64> {
        keys.iter().find_map(|k| self.f64(k))
    }

    pub fn bool(&self, key: &'static str) -> Option<bool> {
        self.get(key).and_then(as_bool)
    }
}

/// A string attribute; other scalar kinds are not strings (use the typed getters).
pub fn as_str<'a>(v: &AnyValue<'a>) -> Option<&'a str> {
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Integers sent as ints, integral doubles or decimal strings (Claude Code < 2.1.122 sent strings).
pub fn as_i64(v: &AnyValue) -> Option<i64> {
    match v.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::DoubleValue(d) if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e18 => Some(*d as i64),
        Value::StringValue(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && d.fract() == 0.0 && d.abs() < 9.0e18)
                    .map(|d| d as i64)
            })
        }
        _ => None,
    }
}

pub fn as_f64(v: &AnyValue) -> Option<f64> {
    match v.value.as_ref()? {
        Value::DoubleValue(d) if d.is_finite() => Some(*d),
        Value::IntValue(i) => Some(*i as f64),
        Value::StringValue(s) => s.trim().parse::<f64>().ok().filter(|d| d.is_finite()),
        _ => None,
    }
}

pub fn as_bool(v: &AnyValue) -> Option<bool> {
    match v.value.as_ref()? {
        Value::BoolValue(b) => Some(*b),
        Value::IntValue(i) => Some(*i != 0),
        Value::StringValue(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Render a value as display text (log bodies): strings verbatim, everything else as JSON.
pub fn display_text(v: &AnyValue) -> String {
    match v.value.as_ref() {
        Some(Value::StringValue(s)) => s.to_string(),
        None => String::new(),
        Some(_) => {
            let mut out = String::new();
            write_any_json(v, &mut out, 0);
            out
        }
    }
}

/// `{"key": value, ...}` for a list of attributes; keys keep their order, a repeated key keeps
/// its last value when read back.
///
/// Written into this thread's scratch buffer (it keeps its capacity, so writing never grows an
/// allocation after the first few calls), then copied into a string of exactly its length: the
/// rows wait in the pipeline's queues and the live stream's ring, and an estimate sized for the
/// widest numbers left ~22% of a load generator span's attribute bytes unused (BENCHMARKS.md,
/// issue 11).
pub fn attrs_json(kvs: &[KeyValue]) -> String {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        write_kvs_json(kvs, buf, 0);
        let out = String::from(buf.as_str());
        if buf.capacity() > SCRATCH_KEEP {
            // One huge record does not pin its size for the thread's life.
            *buf = String::new();
        }
        out
    })
}

/// Largest scratch buffer a thread keeps between calls.
const SCRATCH_KEEP: usize = 256 << 10;

const MAX_DEPTH: usize = 32;

fn write_kvs_json(kvs: &[KeyValue], out: &mut String, depth: usize) {
    out.push('{');
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(kv.key, out);
        out.push(':');
        match kv.value.as_ref() {
            Some(v) => write_any_json(v, out, depth + 1),
            None => out.push_str("null"),
        }
    }
    out.push('}');
}

fn write_any_json(v: &AnyValue, out: &mut String, depth: usize) {
    use std::fmt::Write as _;
    if depth > MAX_DEPTH {
        out.push_str("null");
        return;
    }
    match v.value.as_ref() {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => write_json_str(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) => {
            if d.is_finite() {
                let _ = write!(out, "{d}");
            } else {
                // JSON has no NaN/Infinity: keep the information as a string.
                write_json_str(&d.to_string(), out);
            }
        }
        Some(Value::BytesValue(b)) => {
            write_json_str(&base64::engine::general_purpose::STANDARD.encode(b), out);
        }
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_any_json(item, out, depth + 1);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => write_kvs_json(kv, out, depth + 1),
        Some(Value::Other) => out.push_str("null"),
    }
}

/// A byte JSON needs escaped: `"`, `\` and the control characters.
#[inline(always)]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Does any byte of `chunk` (at most 16 bytes) need an escape? One branch-free test over 16
/// bytes (the compiler vectorises it); a shorter chunk is padded with clean bytes first, so a
/// short value or the tail of a long one is tested whole rather than byte by byte.
#[inline(always)]
fn chunk_needs_escape(chunk: &[u8]) -> bool {
    let mut padded = [b'a'; 16];
    let full: &[u8; 16] = match <&[u8; 16]>::try_from(chunk) {
        Ok(full) => full,
        Err(_) => {
            let n = chunk.len().min(16);
            padded[..n].copy_from_slice(&chunk[..n]);
            &padded
        }
    };
    full.iter().fold(false, |acc, &b| acc | needs_escape(b))
}

/// Append `s` as a JSON string literal. Most values need no escape at all: each run of 16 bytes
/// (or fewer, at the end) is tested at once and, clean, copied with the rest of its run; only a
/// run that holds an escape is walked byte by byte. (The byte-by-byte walk of values shorter than
/// 16 bytes and of every value's tail was most of this function's time, BENCHMARKS.md.)
pub fn write_json_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = (i + 16).min(bytes.len());
        let chunk = &bytes[i..end];
        if !chunk_needs_escape(chunk) {
            i = end;
            continue;
        }
        for (k, &b) in chunk.iter().enumerate() {
            if needs_escape(b) {
                let at = i + k;
                // Escapes are ASCII, so `at` is a char boundary.
                out.push_str(&s[start..at]);
                match b {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    _ => {
                        use std::fmt::Write as _;
                        let _ = write!(out, "\\u{:04x}", b);
                    }
                }
                start = at + 1;
            }
        }
        i = end;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv<'a>(key: &'a str, v: Value<'a>) -> KeyValue<'a> {
        KeyValue { key, value: Some(AnyValue { value: Some(v) }) }
    }

    #[test]
    fn attribute_json_is_exactly_as_long_as_its_text() {
        let long = "x".repeat(SCRATCH_KEEP + 10);
        let cases: Vec<Vec<KeyValue<'_>>> = vec![
            vec![],
            vec![kv("a", Value::IntValue(7)), kv("b", Value::DoubleValue(0.25)), kv("c", Value::BoolValue(true))],
            vec![kv("n", Value::IntValue(i64::MIN)), kv("s", Value::StringValue("quote \" and \\ and \n"))],
            // Larger than the scratch buffer a thread keeps: it is given up, the next call still works.
            vec![kv("big", Value::StringValue(&long))],
            vec![kv("after", Value::StringValue("small"))],
        ];
        for kvs in &cases {
            let json = attrs_json(kvs);
            assert_eq!(json.len(), json.capacity(), "{json:.80}");
            let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(v.as_object().map(|o| o.len()), Some(kvs.len()));
        }
        assert_eq!(attrs_json(&cases[4]), r#"{"after":"small"}"#);
    }

    #[test]
    fn the_slot_cache_agrees_with_the_key_table() {
        for _ in 0..3 {
            for k in semconv::all_keys() {
                assert_eq!(slot_of(k), KEY_SLOTS.get(k).copied(), "{k}");
            }
            assert_eq!(slot_of("not.a.key.the.index.keeps"), None);
        }
        let kvs = [kv(semconv::SERVICE_NAME, Value::StringValue("svc"))];
        let idx = AttrIndex::build(&kvs);
        assert_eq!(idx.str(semconv::SERVICE_NAME), Some("svc"));
    }

    #[test]
    fn json_strings_round_trip_around_the_fast_path() {
        let mut cases: Vec<String> = vec![String::new(), "plain".into(), "é ü 日本 🎉".into()];
        for special in ["\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}", "\u{7f}", "é"] {
            for at in [0, 1, 15, 16, 17, 31, 32, 40] {
                let mut v = "x".repeat(at);
                v.push_str(special);
                v.push_str(&"y".repeat(20));
                cases.push(v.clone());
                cases.push(format!("{v}{special}{v}"));
            }
        }
        // Short values and tails: every length up to 33, a special byte at every position.
        for len in 0..34 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é'] {
                    let mut v: Vec<char> = "abcdefghijklmnopqrstuvwxyz0123456789".chars().take(len).collect();
                    v[at] = special;
                    cases.push(v.into_iter().collect());
                }
            }
        }
        for c in cases {
            let mut out = String::new();
            write_json_str(&c, &mut out);
            let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(back, c);
        }
    }

    #[test]
    fn json_of_every_value_kind() {
        let attrs = vec![
            kv("s", Value::StringValue("a\"b\n\u{1}")),
            kv("b", Value::BoolValue(true)),
            kv("i", Value::IntValue(-7)),
            kv("d", Value::DoubleValue(1.5)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("bytes", Value::BytesValue(&[1, 2, 3])),
            kv("arr", Value::ArrayValue(vec![AnyValue { value: Some(Value::IntValue(1)) }, AnyValue { value: None }])),
            kv("kv", Value::KvlistValue(vec![kv("x", Value::StringValue("y"))])),
        ];
        let json = attrs_json(&attrs);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid json");
        assert_eq!(parsed["s"], "a\"b\n\u{1}");
        assert_eq!(parsed["b"], true);
        assert_eq!(parsed["i"], -7);
        assert_eq!(parsed["d"], 1.5);
        assert_eq!(parsed["nan"], "NaN");
        assert_eq!(parsed["bytes"], "AQID");
        assert_eq!(parsed["arr"], serde_json::json!([1, null]));
        assert_eq!(parsed["kv"]["x"], "y");
    }

    #[test]
    fn coercions() {
        let s = |x: &'static str| AnyValue { value: Some(Value::StringValue(x)) };
        assert_eq!(as_i64(&s(" 2100 ")), Some(2100));
        assert_eq!(as_i64(&s("1e3")), Some(1000));
        assert_eq!(as_i64(&s("x")), None);
        assert_eq!(as_i64(&AnyValue { value: Some(Value::DoubleValue(3.0)) }), Some(3));
        assert_eq!(as_i64(&AnyValue { value: Some(Value::DoubleValue(3.5)) }), None);
        assert_eq!(as_f64(&s("0.25")), Some(0.25));
        assert_eq!(as_bool(&s("TRUE")), Some(true));
        assert_eq!(as_bool(&s("false")), Some(false));
    }

    #[test]
    fn index_finds_known_keys_only() {
        let attrs = vec![
            kv("session.id", Value::StringValue("s1")),
            kv("unrelated", Value::StringValue("x")),
            kv("input_tokens", Value::StringValue("12")),
        ];
        let idx = AttrIndex::build(&attrs);
        assert_eq!(idx.str("session.id"), Some("s1"));
        assert_eq!(idx.get("unrelated"), None);
        assert_eq!(idx.first_i64(semconv::INPUT_TOKENS), Some(("input_tokens", 12)));
    }
}
