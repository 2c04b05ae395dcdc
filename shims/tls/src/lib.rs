//! `https://` for the shims' hand-written HTTP/1.1 clients (`agent-console-hook`,
//! `agent-console-openclaw`): a [`Stream`] that is either the plain `TcpStream` or rustls over it.
//!
//! The collector itself serves plain HTTP; a remote collector is deployed behind a TLS-terminating
//! proxy or load balancer, and the shims reach it with `https://host[:port][/prefix]`. Trust: the
//! Mozilla roots (`webpki-roots`, compiled in, so start-up reads no files) plus, optionally, the
//! certificates of one PEM file (`AGENT_CONSOLE_CA_FILE`) for a private CA. Nothing here runs for
//! `http://` endpoints: the TLS configuration is built on the first https connection only.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// Why a TLS connection could not be set up (hand-written `Display`: the shims keep few
/// dependencies).
#[derive(Debug, Clone, PartialEq)]
pub enum TlsError {
    /// The CA file could not be read or holds no usable certificate: a configuration error.
    CaFile(String),
    /// The host is neither a DNS name nor an IP address.
    Name(String),
    /// The handshake failed (unknown issuer, wrong name, expired, not TLS, ...).
    Handshake(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::CaFile(m) => write!(f, "CA file (AGENT_CONSOLE_CA_FILE) unusable: {m}"),
            TlsError::Name(h) => write!(f, "TLS: {h:?} is not a valid server name"),
            TlsError::Handshake(m) => write!(f, "TLS handshake failed: {m}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The client side of TLS for one process: the optional CA file, and the rustls configuration
/// built from it on first use (then shared by every connection).
#[derive(Debug, Default)]
pub struct Tls {
    ca_file: Option<PathBuf>,
    config: OnceLock<Result<Arc<ClientConfig>, TlsError>>,
}

impl Tls {
    /// `ca_file`: a PEM file whose certificates are trusted in addition to the Mozilla roots.
    pub fn new(ca_file: Option<PathBuf>) -> Tls {
        Tls { ca_file: ca_file.filter(|p| !p.as_os_str().is_empty()), config: OnceLock::new() }
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The rustls configuration (built once).
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.config.get_or_init(|| client_config(self.ca_file.as_deref())).clone()
    }

    /// TLS over a connected socket to `host` (a DNS name or an IP address); the handshake runs
    /// here, bounded by the socket's read and write timeouts, so a certificate problem is reported
    /// at once and clearly rather than as a failed read later.
    pub fn connect(&self, mut tcp: TcpStream, host: &str) -> Result<Stream, TlsError> {
        let config = self.config()?;
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::Name(host.to_string()))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| TlsError::Handshake(e.to_string()))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let hint = if self.ca_file.is_none() && e.to_string().contains("UnknownIssuer") {
                    " (a private CA? set AGENT_CONSOLE_CA_FILE to its PEM file)"
                } else {
                    ""
                };
                return Err(TlsError::Handshake(format!("with {host}: {e}{hint}")));
            }
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

/// Mozilla roots plus the CA file's certificates, the `ring` provider, TLS 1.2 and 1.3.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display();
        let mut added = 0;
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| TlsError::CaFile(format!("{shown}: {e}")))?;
        for cert in certs {
            let cert = cert.map_err(|e| TlsError::CaFile(format!("{shown}: {e}")))?;
            roots.add(cert).map_err(|e| TlsError::CaFile(format!("{shown}: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::CaFile(format!("{shown}: no PEM certificate in it")));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Handshake(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection to the collector: plain or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath (timeouts, nodelay).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            // A peer that closes without close_notify (common for proxies after
            // `Connection: close`) ends the answer like a plain close does; the callers bound the
            // body by Content-Length or parse what arrived, as for plain HTTP.
            Stream::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_are_clear() {
        let dir = std::env::temp_dir().join(format!("ac-shim-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        let e = client_config(Some(&missing)).expect_err("missing file");
        assert!(matches!(&e, TlsError::CaFile(m) if m.contains("missing.pem")), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = client_config(Some(&empty)).expect_err("no certificate");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        assert!(client_config(None).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn server_names() {
        let tls = Tls::new(None);
        let (a, _b) = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            (a, l)
        };
        assert!(matches!(tls.connect(a, "bad name!"), Err(TlsError::Name(_))));
    }
}
