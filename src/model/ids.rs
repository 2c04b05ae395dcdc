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

/// Lower-case hex of `bytes` (ids are hexed for every span: a table, no per-char iterator).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
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
    fn trace_id_lengths_and_zero() {
        assert_eq!(TraceId::parse(&[1; 5]), Err(IdError::TraceIdLength(5)));
        assert_eq!(TraceId::parse(&[0; 16]), Err(IdError::TraceIdZero));
        assert_eq!(TraceId::parse_optional(&[]), Ok(None));
        assert_eq!(TraceId::parse(&[0xab; 16]).map(|t| t.to_hex()), Ok("ab".repeat(16)));
        assert_eq!(SpanId::parse(&[1; 9]), Err(IdError::SpanIdLength(9)));
        assert_eq!(SpanId::parse_optional(&[0; 8]), Ok(None));
    }
}
