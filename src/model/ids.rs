//! Typed identifiers: OTLP trace/span ids (validated byte lengths, hex on the way out) and the
//! string ids of the agent model (session, agent, task), so they cannot be swapped by accident.

use std::fmt;

/// Why an id from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("trace id must be 16 bytes, got {0}")]
    TraceIdLength(usize),
    #[error("span id must be 8 bytes, got {0}")]
    SpanIdLength(usize),
    #[error("trace id is all zeroes")]
    TraceIdZero,
    #[error("span id is all zeroes")]
    SpanIdZero,
}

/// The two lower-case hex digits of `b` (ids are hexed for every span: a table, no per-char
/// iterator).
#[inline(always)]
fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let [hi, lo] = hex_pair(b);
        out.push(char::from(hi));
        out.push(char::from(lo));
    }
    out
}

/// Longest id held inline: a W3C trace id in hex.
const INLINE: usize = 32;

/// An id as the rows hold it: OTLP ids in lower-case hex (32 or 16 characters), or a hook's or
/// an SDK's own text. Up to 32 bytes are held inline, so an OTLP span's ids cost no allocation
/// (they were 6-8 of a model span's allocations, each freed later on another thread); longer
/// ids are boxed. Compares, hashes and prints as the text it holds.
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes of `buf`, always a whole `str` (copied from one, or ASCII hex digits).
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    Heap(Box<str>),
}

impl Id {
    pub fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Id(Repr::Inline { len: s.len() as u8, buf })
        } else {
            Id(Repr::Heap(s.into()))
        }
    }

    /// Lower-case hex of `bytes` (at most 16 bytes stay inline).
    pub fn hex(bytes: &[u8]) -> Self {
        if bytes.len() * 2 > INLINE {
            return Id(Repr::Heap(hex_lower(bytes).into()));
        }
        let mut buf = [0u8; INLINE];
        for (pair, &b) in buf.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&hex_pair(b));
        }
        Id(Repr::Inline { len: (bytes.len() * 2) as u8, buf })
    }

    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: an inline id's first `len` bytes were copied whole from a `str` (`new`) or
            // are ASCII hex digits (`hex`), so they are valid UTF-8; `len <= INLINE`.
            Repr::Inline { len, buf } => unsafe { std::str::from_utf8_unchecked(&buf[..usize::from(*len)]) },
            Repr::Heap(s) => s,
        }
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Id {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::new(s)
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::new(&s)
    }
}

impl From<&String> for Id {
    fn from(s: &String) -> Self {
        Id::new(s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        id.as_str().to_string()
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A W3C trace id (16 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span id (8 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// Required id: empty or malformed is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| IdError::TraceIdLength(bytes.len()))?;
        if arr == [0; 16] {
            return Err(IdError::TraceIdZero);
        }
        Ok(Self(arr))
    }
    /// Optional id (log records, links): empty or all-zero means absent.
    pub fn parse_optional(bytes: &[u8]) -> Result<Option<Self>, IdError> {
        if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Self::parse(bytes).map(Some)
    }
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
    pub fn to_id(&self) -> Id {
        Id::hex(&self.0)
    }
}

impl SpanId {
    pub fn parse(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| IdError::SpanIdLength(bytes.len()))?;
        if arr == [0; 8] {
            return Err(IdError::SpanIdZero);
        }
        Ok(Self(arr))
    }
    pub fn parse_optional(bytes: &[u8]) -> Result<Option<Self>, IdError> {
        if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        Self::parse(bytes).map(Some)
    }
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }
    pub fn to_id(&self) -> Id {
        Id::hex(&self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A conversation / agent session (Claude Code `session.id`, `gen_ai.conversation.id`, ...).
    SessionId
);
string_id!(
    /// An agent: explicit `gen_ai.agent.id`, else the agent's name, else the service name.
    AgentId
);
string_id!(
    /// The operator's unit of work: `agent_console.task.id`.
    TaskId
);

#[cfg(test)]
mod tests {
    #[test]
    fn hex_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_lower(&bytes), hex::encode(&bytes));
        assert_eq!(super::hex_lower(&[]), "");
    }

    use super::*;

    #[test]
    fn ids_inline_or_boxed_read_as_their_text() {
        let bytes: Vec<u8> = (0..=255).collect();
        for n in [0, 1, 8, 15, 16, 17, 40] {
            let id = Id::hex(&bytes[..n]);
            assert_eq!(id.as_str(), hex::encode(&bytes[..n]));
            assert_eq!(id, Id::new(&hex::encode(&bytes[..n])));
        }
        for s in ["", "t", "sess-1", "é".repeat(16).as_str(), "x".repeat(32).as_str(), "y".repeat(33).as_str()] {
            let id = Id::from(s);
            assert_eq!((&*id, id.len()), (s, s.len()));
            assert_eq!(format!("{id}"), s);
            assert_eq!(format!("{id:?}"), format!("{s:?}"));
            assert_eq!(serde_json::to_string(&id).expect("json"), serde_json::to_string(s).expect("json"));
        }
        let mut set = std::collections::HashSet::new();
        set.insert(Id::from("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(set.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "looked up by &str");
        assert_eq!(TraceId::parse(&[0xab; 16]).map(|t| t.to_id()), Ok(Id::from("ab".repeat(16))));
    }

    #[test]
    fn trace_id_lengths_and_zero() {
        assert_eq!(TraceId::parse(&[1; 5]), Err(IdError::TraceIdLength(5)));
        assert_eq!(TraceId::parse(&[0; 16]), Err(IdError::TraceIdZero));
        assert_eq!(TraceId::parse_optional(&[]), Ok(None));
        assert_eq!(TraceId::parse(&[0xab; 16]).map(|t| t.to_hex()), Ok("ab".repeat(16)));
        assert_eq!(SpanId::parse(&[1; 9]), Err(IdError::SpanIdLength(9)));
        assert_eq!(SpanId::parse_optional(&[0; 8]), Ok(None));
    }
}
