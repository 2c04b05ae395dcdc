//! Postgres wire protocol (default 127.0.0.1:5433, `pgwire` crate): the same read-only SQL as
//! `/api/sql`, for psql, drivers and Grafana's PostgreSQL datasource. This file owns the accept
//! loop (with the connection cap), TLS (answering SSLRequest with 'S' when a certificate and key
//! are configured, 'N' otherwise) and the module's error type. `conn` runs one connection (message
//! size cap, idle and stalled-reader timeouts), `sql` lexes and splits, `chatter` answers session
//! and catalogue chatter, `encode` maps Arrow to Postgres values, `auth` does startup (SCRAM-SHA-256
//! with the read token), `handler` runs queries.

pub mod auth;
pub mod chatter;
pub mod conn;
pub mod encode;
pub mod handler;
pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::ConnectionManager;
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::reader::Reader;
use crate::store::StoreError;

/// Errors of the Postgres front end: configuration (TLS files) and SQL errors with a SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot load TLS {what} from {path}: {message}")]
    TlsFile { what: &'static str, path: PathBuf, message: String },
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("{message}")]
    Sql { code: &'static str, message: String },
}

impl PgError {
    /// The SQLSTATE sent to the client.
    pub fn code(&self) -> &'static str {
        match self {
            PgError::Sql { code, .. } => code,
            _ => "XX000",
        }
    }
}

impl From<StoreError> for PgError {
    fn from(e: StoreError) -> Self {
        let (code, message) = match e {
            StoreError::Refused(m) => {
                let code = if m.contains("not allowed") {
                    "42501"
                } else if m.contains("nest more than") {
                    "54001"
                } else if m.contains("exactly one statement") {
                    "42601"
                } else if m.contains("the limit is") {
                    "54000"
                } else {
                    "25006"
                };
                (code, m)
            }
            StoreError::Query(m) => (duckdb_sqlstate(&m), m),
            StoreError::Timeout(ms) => ("57014", format!("canceling statement due to statement timeout ({ms} ms)")),
            StoreError::Overloaded | StoreError::Closed => ("53300", e.to_string()),
            // serialization_failure: the class clients retry.
            StoreError::Evicted => ("40001", e.to_string()),
            other => ("XX000", other.to_string()),
        };
        PgError::Sql { code, message }
    }
}

impl From<PgError> for PgWireError {
    fn from(e: PgError) -> Self {
        PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), e.code().into(), e.to_string())))
    }
}

/// SQLSTATE for a DuckDB error message.
fn duckdb_sqlstate(m: &str) -> &'static str {
    let has = |s: &str| m.contains(s);
    if has("expression depth") || has("memory exhausted") {
        "54001"
    } else if has("Parser Error") || has("syntax error") {
        "42601"
    } else if has("Table with name") || has("Catalog Error: Table") {
        "42P01"
    } else if has("Function with name") || has("Scalar Function") || has("No function matches") {
        "42883"
    } else if has("Catalog Error") {
        "42704"
    } else if has("Referenced column") || has("column") && has("not found") {
        "42703"
    } else if has("Division by zero") {
        "22012"
    } else if has("Conversion Error") || has("Could not convert") {
        "22P02"
    } else if has("Out of Range") {
        "22003"
    } else if has("INTERRUPT") || has("Interrupted") {
        "57014"
    } else if has("Permission Error") {
        "42501"
    } else if has("Not implemented") {
        "0A000"
    } else if has("Invalid Input Error") {
        "22023"
    } else {
        "42000"
    }
}

/// A configured Postgres front end, ready to serve a listener.
pub struct PgServer {
    handlers: Arc<conn::Handlers>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    conn_limits: conn::ConnLimits,
}

impl PgServer {
    /// `read_token`: when set, clients must give it as their password. `tls`: PEM certificate
    /// chain and private key; without them SSLRequest is answered 'N'.
    pub fn new(reader: Arc<Reader>, read_token: Option<String>, tls: Option<(&Path, &Path)>) -> Result<Self, PgError> {
        let manager = Arc::new(ConnectionManager::new());
        let tls = tls.map(|(cert, key)| tls_acceptor(cert, key)).transpose()?;
        let limits = reader.limits().clone();
        Ok(Self {
            handlers: Arc::new(conn::Handlers {
                query: Arc::new(handler::QueryHandler::new(reader)),
                startup: Arc::new(auth::Startup::new(read_token, manager.clone())),
                cancel: Arc::new(DefaultCancelHandler::new(manager)),
            }),
            tls,
            max_connections: limits.pg_max_connections.max(1),
            conn_limits: conn::ConnLimits {
                // The SQL size cap plus room for Bind parameters; larger messages close the
                // connection (smaller over-long SQL gets a 54000 error and the session goes on).
                max_message_bytes: limits.max_sql_bytes + 64 * 1024,
                idle_timeout: limits.pg_idle_timeout,
                write_timeout: limits.send_timeout,
            },
        })
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }
}

/// A TLS acceptor (rustls, ring provider) from PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, PgError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PgError::TlsFile { what: "certificate", path: cert.to_path_buf(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(PgError::TlsFile {
            what: "certificate",
            path: cert.to_path_buf(),
            message: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| PgError::TlsFile {
        what: "private key",
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| PgError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections until `cancel` fires, then close every open connection. Past
/// `max_connections` open ones, a new connection gets `FATAL 53300` and is closed.
pub async fn serve(listener: TcpListener, server: PgServer, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(server.max_connections));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, max = server.max_connections, "postgres connection refused: too many connections");
                        conns.spawn(refuse_connection(socket, server.max_connections));
                        continue;
                    };
                    let handlers = server.handlers.clone();
                    let tls = server.tls.clone();
                    let limits = server.conn_limits.clone();
                    conns.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = conn::serve(socket, tls, handlers, limits).await {
                            tracing::debug!(%peer, error = %e, "postgres connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Answer a connection over the cap as Postgres does (`FATAL 53300 too_many_connections`) and
/// close it. Written before reading anything: libpq and the drivers report an ErrorResponse in
/// place of the SSL answer or the authentication request alike.
async fn refuse_connection(mut socket: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL".to_string()),
        (b'V', "FATAL".to_string()),
        (b'C', "53300".to_string()),
        (b'M', format!("sorry, too many clients already (agent-console accepts {max} Postgres connections)")),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&body);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let _ = socket.write_all(&msg).await;
        let _ = socket.shutdown().await;
        // Drain what the client sent until it hangs up, so closing does not reset the connection
        // before the client has read the error.
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_get_sqlstates() {
        let code = |e: StoreError| PgError::from(e).code();
        assert_eq!(code(StoreError::Refused("function read_csv() is not allowed: x".into())), "42501");
        assert_eq!(code(StoreError::Refused("only read-only SELECT queries are allowed".into())), "25006");
        assert_eq!(code(StoreError::Query("Catalog Error: Table with name nope does not exist!".into())), "42P01");
        assert_eq!(code(StoreError::Query("Parser Error: syntax error at or near \"x\"".into())), "42601");
        assert_eq!(code(StoreError::Timeout(5)), "57014");
    }

    #[test]
    fn missing_tls_files_are_reported() {
        let err = tls_acceptor(Path::new("/nonexistent/cert.pem"), Path::new("/nonexistent/key.pem"));
        assert!(matches!(err, Err(PgError::TlsFile { what: "certificate", .. })));
    }
}
