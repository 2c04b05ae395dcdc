//! The smallest OTLP/HTTP client that does the job: one hand-written HTTP/1.1 POST per flush over a
//! std `TcpStream`, or rustls over it for an `https://` collector (a remote collector behind a
//! TLS-terminating proxy; `agent-console-shim-tls`: Mozilla roots plus `--ca-file` /
//! `AGENT_CONSOLE_CA_FILE`). The TLS configuration is built on the first https request only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use agent_console_shim_tls::{Stream, Tls};

/// The process's TLS trust (set once from the command line; Mozilla roots only when unset).
static TLS: OnceLock<Tls> = OnceLock::new();

/// Trust `ca_file` (PEM) for https collectors, besides the Mozilla roots. Call before the first
/// request; later calls are ignored.
pub fn set_ca_file(ca_file: Option<PathBuf>) {
    let _ = TLS.set(Tls::new(ca_file));
}

fn tls() -> &'static Tls {
    TLS.get_or_init(|| Tls::new(None))
}

/// Why a POST failed (hand-written `Display`: one dependency fewer for a shim that builds in seconds).
#[derive(Debug)]
pub enum HttpError {
    Url(String),
    Io(std::io::Error),
    /// TLS could not be set up (unknown issuer, wrong name, unusable CA file).
    Tls(agent_console_shim_tls::TlsError),
    Status(u16, String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Url(u) => write!(f, "bad endpoint {u:?} (expected http://host:port or https://host[:port])"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Tls(e) => write!(f, "{e}"),
            HttpError::Status(c, body) => write!(f, "collector answered {c}: {body}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// `http://host:port[/base]` -> (host:port, base path without trailing slash).
pub fn split_url(url: &str, scheme: &str, default_port: u16) -> Option<(String, String)> {
    let rest = url.trim().strip_prefix(scheme)?.strip_prefix("://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return None;
    }
    let has_port = hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !hostport.ends_with(']');
    let hostport = if has_port { hostport.to_string() } else { format!("{hostport}:{default_port}") };
    Some((hostport, path.trim_end_matches('/').to_string()))
}

/// A collector base URL: `http://` or `https://`.
struct Target {
    hostport: String,
    base: String,
    https: bool,
}

fn target(endpoint: &str) -> Result<Target, HttpError> {
    if let Some((hostport, base)) = split_url(endpoint, "http", 80) {
        return Ok(Target { hostport, base, https: false });
    }
    let (hostport, base) = split_url(endpoint, "https", 443).ok_or_else(|| HttpError::Url(endpoint.to_string()))?;
    Ok(Target { hostport, base, https: true })
}

/// The host of `host:port` / `[v6]:port`, as TLS names it.
fn host_of(hostport: &str) -> &str {
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Connect (TLS for https, the handshake bounded by `write_timeout`), with the timeouts set.
fn open(t: &Target, connect: Duration, read_timeout: Duration, write_timeout: Duration) -> Result<Stream, HttpError> {
    let addr = t.hostport.to_socket_addrs()?.next().ok_or_else(|| HttpError::Url(t.hostport.clone()))?;
    let tcp = TcpStream::connect_timeout(&addr, connect)?;
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(write_timeout))?;
    if !t.https {
        tcp.set_read_timeout(Some(read_timeout))?;
        return Ok(Stream::Plain(tcp));
    }
    tcp.set_read_timeout(Some(write_timeout))?;
    let s = tls().connect(tcp, host_of(&t.hostport)).map_err(HttpError::Tls)?;
    s.tcp().set_read_timeout(Some(read_timeout))?;
    Ok(s)
}

/// POST `body` to `<endpoint>/v1/logs` as OTLP protobuf; Ok on any 2xx.
pub fn post_logs(endpoint: &str, token: Option<&str>, body: &[u8], timeout: Duration) -> Result<(), HttpError> {
    let t = target(endpoint)?;
    let (hostport, base) = (t.hostport.as_str(), t.base.as_str());
    let mut stream = open(&t, timeout, timeout, timeout)?;
    let mut head = format!(
        "POST {base}/v1/logs HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: agent-console-openclaw/{}\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
    if (200..300).contains(&code) {
        return Ok(());
    }
    let mut rest = Vec::new();
    let _ = reader.take(4096).read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
    Err(HttpError::Status(code, body))
}

/// POST `body` (JSON) to `<endpoint><path>`; the status and the response body (read to the end:
/// `Connection: close`; a chunked body is decoded).
pub fn post_json(
    endpoint: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let t = target(endpoint)?;
    let (hostport, base) = (t.hostport.as_str(), t.base.as_str());
    let short = Duration::from_secs(5).min(timeout);
    let mut stream = open(&t, short, timeout, short)?;
    let mut head = format!(
        "POST {base}{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: agent-console-openclaw/{}\r\n",
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    stream.flush()?;
    let mut raw = Vec::new();
    // Answers are small JSON; 4 MiB bounds a misbehaving peer.
    stream.take(4 << 20).read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
        HttpError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "incomplete HTTP answer"))
    })?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
    let body = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_vec() };
    Ok((code, body))
}

/// Undo `Transfer-Encoding: chunked` (what arrived of it).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || size > b.len() {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(split_url("http://127.0.0.1:4318", "http", 80), Some(("127.0.0.1:4318".into(), "".into())));
        assert_eq!(split_url("http://h/otlp/", "http", 80), Some(("h:80".into(), "/otlp".into())));
        assert_eq!(split_url("ws://[::1]:18789/x", "ws", 80), Some(("[::1]:18789".into(), "/x".into())));
        assert_eq!(split_url("https://h", "http", 80), None);
        let t = target("https://collector.example/otel/").expect("https");
        assert_eq!((t.hostport.as_str(), t.base.as_str(), t.https), ("collector.example:443", "/otel", true));
        assert!(!target("http://127.0.0.1:4318").expect("http").https);
        assert!(target("ftp://h").is_err());
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("collector.example:8443"), "collector.example");
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n"), b"hello world".to_vec());
        assert_eq!(dechunk(b"ff\r\nshort"), Vec::<u8>::new());
    }
}
