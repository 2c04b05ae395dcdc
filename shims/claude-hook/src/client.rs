//! A minimal HTTP/1.1 client over std `TcpStream`, or rustls over it for `https://` endpoints
//! (`agent-console-shim-tls`: Mozilla roots plus an optional CA file; the TLS configuration is
//! built only when an https endpoint is used, so plain http costs what it did): one `POST` per
//! connection (`Connection: close`), every step bounded by the run's deadline. Reads the status
//! line, the headers and a body of at most 1 MiB (the collector's answer envelope).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(feature = "https")]
use agent_console_shim_tls::{Stream, Tls};
#[cfg(feature = "https")]
use std::sync::Arc;

/// The TLS trust of an `https://` endpoint (nothing to hold without the `https` feature).
#[cfg(feature = "https")]
type TlsRef = Arc<Tls>;
#[cfg(not(feature = "https"))]
type TlsRef = ();

/// Why a request did not get a usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// The endpoint is not an `http(s)://host[:port][/prefix]` URL.
    BadEndpoint(String),
    /// Connect, write or read failed or ran out of time: try again later.
    Unreachable(String),
    /// TLS could not be set up (unknown issuer, wrong name, unusable CA file): kept and retried
    /// like an unreachable collector, and worth telling the operator.
    Tls(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::BadEndpoint(m) => write!(f, "bad endpoint: {m}"),
            ClientError::Unreachable(m) => write!(f, "collector unreachable: {m}"),
            ClientError::Tls(m) => write!(f, "collector unreachable over https: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A parsed collector base URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    prefix: String,
    /// `https://`: TLS with this trust (None for `http://`).
    tls: Option<TlsRef>,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        Endpoint::parse_with_ca(url, None)
    }

    /// `ca_file` (PEM) is trusted in addition to the Mozilla roots for an `https://` endpoint.
    pub fn parse_with_ca(url: &str, ca_file: Option<PathBuf>) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadEndpoint(format!("{url:?} (expected http://host:port or https://host[:port])"));
        let url = url.trim();
        let (rest, https) = match url.strip_prefix("http://") {
            Some(r) => (r, false),
            None => (url.strip_prefix("https://").ok_or_else(bad)?, true),
        };
        let default_port = if https { 443 } else { 80 };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
            tls: if https { Some(tls_for(url, ca_file)?) } else { None },
        })
    }

    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// The collector is on this machine (a loopback address or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

#[cfg(feature = "https")]
fn tls_for(_url: &str, ca_file: Option<PathBuf>) -> Result<TlsRef, ClientError> {
    Ok(Arc::new(Tls::new(ca_file)))
}

#[cfg(not(feature = "https"))]
fn tls_for(url: &str, _ca_file: Option<PathBuf>) -> Result<TlsRef, ClientError> {
    Err(ClientError::BadEndpoint(format!("{url:?}: this build has no https support (the `https` feature)")))
}

/// The connection: TLS for an https endpoint (handshake bounded by the deadline).
#[cfg(feature = "https")]
fn open(ep: &Endpoint, tcp: TcpStream, deadline: Instant) -> Result<Stream, ClientError> {
    let Some(tls) = &ep.tls else { return Ok(Stream::Plain(tcp)) };
    let left = remaining(deadline)?;
    let io = |e: std::io::Error| ClientError::Unreachable(e.to_string());
    tcp.set_read_timeout(Some(left)).map_err(io)?;
    tcp.set_write_timeout(Some(left)).map_err(io)?;
    tls.connect(tcp, &ep.host).map_err(|e| ClientError::Tls(e.to_string()))
}

#[cfg(feature = "https")]
fn sock(s: &Stream) -> &TcpStream {
    s.tcp()
}

#[cfg(not(feature = "https"))]
fn open(_ep: &Endpoint, tcp: TcpStream, _deadline: Instant) -> Result<TcpStream, ClientError> {
    Ok(tcp)
}

#[cfg(not(feature = "https"))]
fn sock(s: &TcpStream) -> &TcpStream {
    s
}

/// What the collector answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// 5xx and 429: keep the record and retry later.
    pub fn retryable(&self) -> bool {
        self.status == 429 || self.status >= 500
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn remaining(deadline: Instant) -> Result<Duration, ClientError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ClientError::Unreachable("deadline reached".into()))
}

/// Largest answer body read.
const MAX_BODY: usize = 1024 * 1024;

/// `POST <endpoint><path>` with `body` of `content_type` and extra headers, before `deadline`.
pub fn post(
    ep: &Endpoint,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    headers: &[(&str, String)],
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
    let tcp = stream.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    let mut s = open(ep, tcp, deadline)?;
    let host =
        if ep.host.contains(':') { format!("[{}]:{}", ep.host, ep.port) } else { format!("{}:{}", ep.host, ep.port) };
    let mut req = format!(
        "POST {}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
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
    for (k, v) in headers {
        // Header values we send are ours (hex, numbers, config); drop anything that could split.
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut buf = Vec::with_capacity(req.len() + body.len());
    buf.extend_from_slice(req.as_bytes());
    buf.extend_from_slice(body);
    sock(&s).set_write_timeout(Some(remaining(deadline)?)).map_err(unreachable)?;
    s.write_all(&buf).and_then(|_| s.flush()).map_err(unreachable)?;
    let mut data = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut head_len = None;
    let mut want: Option<usize> = None;
    loop {
        if let (Some(h), Some(w)) = (head_len, want) {
            if data.len() >= h + w {
                break;
            }
        }
        sock(&s).set_read_timeout(Some(remaining(deadline)?)).map_err(unreachable)?;
        let n = s.read(&mut chunk).map_err(unreachable)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        if head_len.is_none() {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                head_len = Some(i + 4);
                want = parse_head(&data[..i + 4]).and_then(|r| r.header("content-length").and_then(|v| v.parse().ok()));
            } else if data.len() > 64 * 1024 {
                break;
            }
        }
        if data.len() > MAX_BODY + 64 * 1024 {
            break;
        }
    }
    let mut r = parse_head(&data).ok_or_else(|| ClientError::Unreachable("malformed HTTP response".into()))?;
    if let Some(h) = head_len {
        let end = want.map_or(data.len(), |w| (h + w).min(data.len()));
        r.body = data[h..end].to_vec();
    }
    Ok(r)
}

/// Status line and headers of a response head.
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
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Response { status, headers, body: Vec::new() })
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
        assert!(Endpoint::parse("ftp://x:1").is_err());
        assert!(Endpoint::parse("http://:1").is_err());
        assert!(Endpoint::parse("http://127.0.0.2:1").expect("parse").is_loopback());
        assert!(Endpoint::parse("http://[::1]:1").expect("parse").is_loopback());
        assert!(!Endpoint::parse("http://10.0.0.1:1").expect("parse").is_loopback());
    }

    #[cfg(feature = "https")]
    #[test]
    fn https_endpoints() {
        let e = Endpoint::parse("https://collector.example/otel").expect("parse");
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str(), e.is_https()),
            ("collector.example", 443, "/otel", true)
        );
        let e = Endpoint::parse("https://[::1]:8443").expect("parse");
        assert_eq!((e.host.as_str(), e.port, e.is_https()), ("::1", 8443, true));
        assert!(!Endpoint::parse("http://h").expect("parse").is_https());
    }

    #[test]
    fn response_head() {
        let r = parse_head(b"HTTP/1.1 200 OK\r\nX-Agent-Console-Signature: ab\r\nContent-Length: 2\r\n\r\n{}")
            .expect("head");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-agent-console-signature"), Some("ab"));
        assert_eq!(r.header("content-length"), Some("2"));
        let r = parse_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").expect("head");
        assert!(r.retryable());
        assert!(parse_head(b"garbage").is_none());
    }
}
