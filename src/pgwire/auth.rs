//! Startup and authentication. Without a read token every connection is trusted (the default bind
//! is 127.0.0.1); with one, the password must equal the token, whatever the user name, proven
//! with SCRAM-SHA-256 (RFC 5802/7677, as Postgres 10+ does): the token never crosses the network,
//! not even hashed, and a sniffer of the exchange gets nothing to brute-force offline except a
//! 4096-iteration PBKDF2 verifier with a per-server random salt (MD5, which the collector used
//! before, lets one test billions of guesses per second). psql/libpq, tokio-postgres, psycopg,
//! asyncpg, pgx and lib/pq (Grafana) all speak it. The exchange is the same inside TLS (no
//! channel binding: `SCRAM-SHA-256-PLUS` is not offered). Sends Postgres' usual ParameterStatus
//! set and BackendKeyData.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth, ScramSecret, SCRAM_ITERATIONS};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome, AuthSource, LoginInfo,
    Password, ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::chatter;

/// ParameterStatus after authentication (see `chatter::startup_parameters`).
#[derive(Debug, Default)]
pub struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut params: HashMap<String, String> = chatter::startup_parameters().into_iter().collect();
        if let Some(user) = client.metadata().get(METADATA_USER) {
            params.insert("session_authorization".into(), user.clone());
        }
        if let Some(app) = client.metadata().get("application_name") {
            params.insert("application_name".into(), app.clone());
        }
        Some(params)
    }
}

/// The startup handler: trust, or SCRAM-SHA-256 with the read token as the password.
pub struct Startup {
    scram: Option<ScramAuth>,
    driver: AuthDriver<Parameters>,
}

impl Startup {
    pub fn new(token: Option<String>, manager: Arc<ConnectionManager>) -> Self {
        let scram = token.filter(|t| !t.is_empty()).map(|t| {
            let mut auth = ScramAuth::new(Arc::new(TokenVerifier::new(&t)));
            auth.set_iterations(SCRAM_ITERATIONS);
            auth
        });
        Self { scram, driver: AuthDriver::new(Parameters).with_connection_manager(manager) }
    }
}

/// The read token as a SCRAM verifier (stored key and server key under a random salt), derived
/// once at startup; the token itself is not kept.
struct TokenVerifier {
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("salt", &self.salt).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    fn new(token: &str) -> Self {
        let salt = random_salt();
        let salted = gen_salted_password(token, &salt, SCRAM_ITERATIONS);
        match ScramSecret::verifier_from_salted_password(salt.clone(), salted, SCRAM_ITERATIONS) {
            ScramSecret::Verifier { salt, stored_key, server_key, .. } => Self { salt, stored_key, server_key },
            // `verifier_from_salted_password` always builds a verifier.
            ScramSecret::SaltedPassword { .. } => Self { salt, stored_key: Vec::new(), server_key: Vec::new() },
        }
    }
}

#[async_trait]
impl AuthSource for TokenVerifier {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered, and it asks `get_scram_secret`.
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn get_scram_secret(&self, _login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        Ok((
            ScramSecret::Verifier {
                salt: self.salt.clone(),
                iterations: SCRAM_ITERATIONS,
                stored_key: self.stored_key.clone(),
                server_key: self.server_key.clone(),
            },
            None,
        ))
    }
}

/// A random SCRAM salt: 18 bytes from pgwire's random generator (base64 text, as Postgres' salts
/// are arbitrary bytes).
fn random_salt() -> Vec<u8> {
    pgwire::api::auth::sasl::scram::random_nonce().into_bytes()
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let mechanism: Box<dyn AuthMechanism> = match &self.scram {
                    None => Box::new(Trust),
                    Some(scram) => scram.create(),
                };
                self.driver.begin_authentication(client, mechanism).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => self.driver.advance_authentication(client, m).await,
            _ => return Ok(()),
        };
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(()),
            Ok(AuthOutcome::Authenticated { final_message, .. }) => {
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                tracing::debug!(%user, peer = %client.socket_addr(), tls = client.is_secure(), "postgres client authenticated");
                self.driver.complete_authentication(client, final_message).await
            }
            Err(e) => {
                // SCRAM carries no user name (libpq sends an empty one): name the startup user.
                let e = match e {
                    PgWireError::InvalidPassword(_) => {
                        PgWireError::InvalidPassword(client.metadata().get(METADATA_USER).cloned().unwrap_or_default())
                    }
                    other => other,
                };
                tracing::info!(peer = %client.socket_addr(), error = %e, "postgres authentication failed");
                Err(e)
            }
        }
    }
}

/// No token configured: accept.
struct Trust;

#[async_trait]
impl AuthMechanism for Trust {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok { final_message: None, identity: None })
    }

    async fn next(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
        _message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok { final_message: None, identity: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_does_not_keep_the_token_and_salts_differ() {
        let a = TokenVerifier::new("s3cret");
        let b = TokenVerifier::new("s3cret");
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.stored_key.len(), 32);
        assert_ne!(a.stored_key, b.stored_key, "a new salt gives a new verifier");
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
