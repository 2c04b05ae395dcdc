//! A minimal HTTP/1.1 client over std `TcpStream` (http:// only, no TLS): one `POST` per
//! connection (`Connection: close`), every step bounded by the run's deadline. Reads the status
//! line and headers only (the decision header; OTLP response bodies are not needed).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use agent_console_conventions::hook;

/// Why a request did not get a usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The endpoint is not an `http://host[:port][/prefix]` URL.
    BadEndpoint(String),
    /// Connect, write or read failed or ran out of time: try again later.
    Unreachable(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::BadEndpoint(m) => write!(f, "bad endpoint: {m}"),
            ClientError::Unreachable(m) => write!(f, "collector unreachable: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A parsed collector base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    host: String,
    port: u16,
    prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadEndpoint(format!("{url:?} (only http://host:port is supported)"));
        let rest = url.trim().strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => (h, 80),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint { host: host.to_string(), port, prefix: path.trim_end_matches('/').to_string() })
    }
}

/// What the collector answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The decoded `x-agent-console-hook-output` header, when present and valid.
    pub hook_output: Option<String>,
}

impl Response {
    /// 5xx and 429: keep the record and retry later.
    pub fn retryable(&self) -> bool {
        self.status == 429 || self.status >= 500
    }
}

fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ClientError::Unreachable("deadline reached".into()))
}

/// `POST <endpoint><path>` with a protobuf body, before `deadline`.
pub fn post(
    ep: &Endpoint,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    deadline: Instant,
) -> Result<Response, ClientError> {
    let unreachable = |e: std::io::Error| ClientError::Unreachable(e.to_string());
    let addrs = (ep.host.as_str(), ep.port).to_socket_addrs().map_err(unreachable)?;
    let mut stream = None;
    let mut last = ClientError::Unreachable(format!("no address for {}", ep.host));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = unreachable(e),
        }
    }
    let mut s = stream.ok_or(last)?;
    let _ = s.set_nodelay(true);
    let host =
        if ep.host.contains(':') { format!("[{}]:{}", ep.host, ep.port) } else { format!("{}:{}", ep.host, ep.port) };
    let mut req = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\
         Connection: close\r\nUser-Agent: agent-console-hook/{}\r\n",
        ep.prefix,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        req.push_str("Authorization: Bearer ");
        req.push_str(t);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut buf = Vec::with_capacity(req.len() + body.len());
    buf.extend_from_slice(req.as_bytes());
    buf.extend_from_slice(body);
    s.set_write_timeout(Some(remaining(deadline)?)).map_err(unreachable)?;
    s.write_all(&buf).map_err(unreachable)?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 2048];
    loop {
        s.set_read_timeout(Some(remaining(deadline)?)).map_err(unreachable)?;
        let n = s.read(&mut chunk).map_err(unreachable)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 64 * 1024 {
            break;
        }
    }
    parse_head(&head).ok_or_else(|| ClientError::Unreachable("malformed HTTP response".into()))
}

/// Status line and the hook-output header of a response head.
pub fn parse_head(head: &[u8]) -> Option<Response> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len());
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse::<u16>().ok()?;
    let hook_output = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(hook::OUTPUT_HEADER))
        .and_then(|(_, v)| base64_decode(v.trim()))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|s| serde_json::from_str::<serde_json::Value>(s).is_ok());
    Some(Response { status, hook_output })
}

/// Standard-alphabet base64 (padding optional). `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let data = s.trim_end_matches('=').as_bytes();
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:4318").expect("parse");
        assert_eq!((e.host.as_str(), e.port, e.prefix.as_str()), ("127.0.0.1", 4318, ""));
        let e = Endpoint::parse("http://collector/otel/").expect("parse");
        assert_eq!((e.host.as_str(), e.port, e.prefix.as_str()), ("collector", 80, "/otel"));
        let e = Endpoint::parse("http://[::1]:9").expect("parse");
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        assert!(Endpoint::parse("https://x:1").is_err());
        assert!(Endpoint::parse("http://:1").is_err());
    }

    #[test]
    fn base64_round_trips_known_vectors() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg")] {
            assert_eq!(base64_decode(enc).as_deref(), Some(plain.as_bytes()), "{enc}");
        }
        assert_eq!(base64_decode("eyJhIjoxfQ==").as_deref(), Some(&b"{\"a\":1}"[..]));
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
    }

    #[test]
    fn response_head() {
        let r = parse_head(b"HTTP/1.1 200 OK\r\nX-Agent-Console-Hook-Output: eyJhIjoxfQ==\r\n\r\nbody").expect("head");
        assert_eq!(r, Response { status: 200, hook_output: Some("{\"a\":1}".into()) });
        let r = parse_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").expect("head");
        assert!(r.retryable() && r.hook_output.is_none());
        // Not JSON once decoded: ignored, never printed.
        let r = parse_head(b"HTTP/1.1 200 OK\r\nx-agent-console-hook-output: aGVsbG8=\r\n\r\n").expect("head");
        assert!(r.hook_output.is_none());
        assert!(parse_head(b"garbage").is_none());
    }
}
