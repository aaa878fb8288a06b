//! Shared fixtures for the oauth loopback tests: PKI, transport configs, a recording minter
//! and persister, and the redaction check.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tpp_operator::oauth::{
    AsClient, AssertionMinter, ClientIdentity, MintError, OauthError, PersistError, Registration,
    RegistrationPersister, TransportConfig,
};

use super::{ClientCerts, Pki, Reply, Seen, Server, client_pki, pki, serve};

pub const RAT_1: &str = "rat-SECRET-1111-aaaa-bbbb";
pub const RAT_2: &str = "rat-SECRET-2222-cccc-dddd";
pub const ACCESS_TOKEN: &str = "tok-SECRET-26e0bf38-9fab-48e5";
pub const INITIAL_TOKEN: &str = "iat-SECRET-initial-access";
pub const ASSERTION_PREFIX: &str = "assertion-SECRET-";
pub const SIGNED_REQUEST: &str = "eyJhbGciOiJQUzI1NiJ9.c2lnbmVkLXJlcXVlc3QtU0VDUkVU.c2ln";

/// Server and client PKI for one test.
pub struct Fixture {
    pub server: Pki,
    pub client: Pki,
    pub other_client: Pki,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            server: pki("as-ca", &["127.0.0.1", "localhost"]),
            client: client_pki("client-ca", "client.example"),
            other_client: client_pki("client-ca-2", "client.example"),
        }
    }

    pub fn config(&self) -> TransportConfig {
        let mut config = TransportConfig::new(self.server.ca_pem.clone().into_bytes());
        config.connect_timeout = Duration::from_secs(5);
        config.timeout = Duration::from_secs(5);
        config
    }

    pub fn identity(&self) -> ClientIdentity {
        identity_of(&self.client)
    }

    pub fn mtls_client(&self) -> AsClient {
        AsClient::new(&self.config(), Some(&self.identity())).expect("mtls client")
    }

    pub fn plain_client(&self) -> AsClient {
        AsClient::new(&self.config(), None).expect("client")
    }

    /// A server trusting both client CAs, client certificates optional.
    pub async fn serve(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let both = format!("{}{}", self.client.ca_pem, self.other_client.ca_pem);
        serve(&self.server, ClientCerts::Optional(&both), handler).await
    }

    /// Every secret string these tests use.
    pub fn secrets(&self) -> Vec<String> {
        let key_body: String = self
            .client
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        vec![
            RAT_1.into(),
            RAT_2.into(),
            ACCESS_TOKEN.into(),
            INITIAL_TOKEN.into(),
            ASSERTION_PREFIX.into(),
            SIGNED_REQUEST.into(),
            "c2lnbmVkLXJlcXVlc3QtU0VDUkVU".into(),
            key_body.chars().take(40).collect(),
        ]
    }

    /// Neither `{err}`, `{err:?}` nor any source in the chain shows a secret.
    pub fn assert_redacted(&self, err: &OauthError) {
        let mut text = format!("{err} {err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            text.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        for secret in self.secrets() {
            assert!(!text.contains(&secret), "error text leaks {secret}: {text}");
        }
    }
}

pub fn identity_of(p: &Pki) -> ClientIdentity {
    ClientIdentity::from_pem(p.cert_pem.as_bytes(), SecretString::from(p.key_pem.clone()))
        .expect("identity")
}

/// Mints `assertion-SECRET-<n>` and records each audience.
#[derive(Default)]
pub struct Minter {
    pub audiences: Mutex<Vec<String>>,
}

impl AssertionMinter for Minter {
    fn mint(&self, audience: &str) -> Result<SecretString, MintError> {
        let mut audiences = self
            .audiences
            .lock()
            .map_err(|_| MintError::permanent("poisoned"))?;
        audiences.push(audience.to_owned());
        Ok(SecretString::from(format!(
            "{ASSERTION_PREFIX}{}",
            audiences.len()
        )))
    }
}

/// Records what it persisted (client id, RAT); fails when told to.
#[derive(Default)]
pub struct Persister {
    pub fail: bool,
    pub stored: Mutex<Vec<(String, Option<String>)>>,
}

impl Persister {
    pub fn failing() -> Self {
        Self {
            fail: true,
            ..Self::default()
        }
    }
    pub fn stored(&self) -> Vec<(String, Option<String>)> {
        self.stored.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl RegistrationPersister for Persister {
    async fn persist(&self, registration: &Registration) -> Result<(), PersistError> {
        if self.fail {
            return Err(PersistError::new("secret store unavailable"));
        }
        if let Ok(mut stored) = self.stored.lock() {
            stored.push((
                registration.client_id.clone(),
                registration
                    .registration_access_token
                    .as_ref()
                    .map(|t| t.expose_secret().to_owned()),
            ));
        }
        Ok(())
    }
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
