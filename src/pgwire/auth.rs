//! Startup and authentication. Without a read token every connection is trusted (the default bind
//! is 127.0.0.1); with one, the password must equal the token, whatever the user name: asked for
//! in cleartext on TLS connections and as an MD5 challenge on plain ones (so the token never
//! crosses the network in the clear). Sends Postgres' usual ParameterStatus set and BackendKeyData.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::md5pass::hash_md5_password;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthState};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
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

/// The startup handler: trust, or password = read token.
pub struct Startup {
    token: Option<Arc<str>>,
    driver: AuthDriver<Parameters>,
}

impl Startup {
    pub fn new(token: Option<String>, manager: Arc<ConnectionManager>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
            driver: AuthDriver::new(Parameters).with_connection_manager(manager),
        }
    }
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
                let mechanism: Box<dyn AuthMechanism> = match &self.token {
                    None => Box::new(Trust),
                    Some(token) => Box::new(TokenAuth { token: token.clone(), md5_salt: None }),
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

/// Password must be the read token: cleartext over TLS, MD5 challenge otherwise.
struct TokenAuth {
    token: Arc<str>,
    md5_salt: Option<[u8; 4]>,
}

#[async_trait]
impl AuthMechanism for TokenAuth {
    async fn begin(&mut self, client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        if client.is_secure() {
            Ok(AuthState::InProgress(Authentication::CleartextPassword))
        } else {
            let salt = salt();
            self.md5_salt = Some(salt);
            Ok(AuthState::InProgress(Authentication::MD5Password(salt.to_vec())))
        }
    }

    async fn next(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        let given = message.into_password()?.password;
        let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        let expected = match self.md5_salt {
            Some(salt) => hash_md5_password(&user, &self.token, &salt),
            None => self.token.to_string(),
        };
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(AuthState::Ok { final_message: None, identity: None })
        } else {
            Ok(AuthState::Failed(PgWireError::InvalidPassword(user)))
        }
    }
}

/// A per-connection MD5 salt: SipHash with the process' random keys over a counter.
fn salt() -> [u8; 4] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let v = h.finish().to_le_bytes();
    [v[0], v[1], v[2], v[3]]
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_differ_and_compare_is_exact() {
        assert_ne!(salt(), salt());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
