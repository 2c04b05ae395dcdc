//! Postgres wire protocol (default 127.0.0.1:5433, `pgwire` crate): the same read-only SQL as
//! `/api/sql`, for psql, drivers and Grafana's PostgreSQL datasource. This file owns the accept
//! loop, TLS (answering SSLRequest with 'S' when a certificate and key are configured, 'N'
//! otherwise) and the module's error type. `sql` lexes and splits, `chatter` answers session and
//! catalogue chatter, `encode` maps Arrow to Postgres values, `auth` does startup, `handler`
//! runs queries.

pub mod auth;
pub mod chatter;
pub mod encode;
pub mod handler;
pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
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
    if has("Parser Error") || has("syntax error") {
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

/// Everything one connection needs.
struct Handlers {
    query: Arc<handler::QueryHandler>,
    startup: Arc<auth::Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// A configured Postgres front end, ready to serve a listener.
pub struct PgServer {
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
}

impl PgServer {
    /// `read_token`: when set, clients must give it as their password. `tls`: PEM certificate
    /// chain and private key; without them SSLRequest is answered 'N'.
    pub fn new(reader: Arc<Reader>, read_token: Option<String>, tls: Option<(&Path, &Path)>) -> Result<Self, PgError> {
        let manager = Arc::new(ConnectionManager::new());
        let tls = tls.map(|(cert, key)| tls_acceptor(cert, key)).transpose()?;
        Ok(Self {
            handlers: Arc::new(Handlers {
                query: Arc::new(handler::QueryHandler::new(reader)),
                startup: Arc::new(auth::Startup::new(read_token, manager.clone())),
                cancel: Arc::new(DefaultCancelHandler::new(manager)),
            }),
            tls,
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

/// Accept connections until `cancel` fires, then close every open connection.
pub async fn serve(listener: TcpListener, server: PgServer, cancel: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let handlers = server.handlers.clone();
                    let tls = server.tls.clone();
                    conns.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
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
