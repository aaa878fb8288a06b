//! Shared in-memory state of the sandbox: registered clients, issued tokens, seen assertion
//! `jti`s, hub onboardings, counters and faults, each map bounded. No I/O; callers lock
//! briefly and never across an `.await`.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use super::{
    authorize::Flows, config::SandboxConfig, counters::Counters, dn, faults::Faults,
    jwks::JwksCache, tls::ClientCaCheck,
};

/// Most clients kept.
pub const MAX_CLIENTS: usize = 10_000;
/// Most live tokens kept.
pub const MAX_TOKENS: usize = 100_000;
/// Most remembered `jti`s.
pub const MAX_JTIS: usize = 100_000;
/// Most remembered onboardings.
pub const MAX_ONBOARDINGS: usize = 1_000;

/// Seconds since the Unix epoch, as a float (fractional NumericDate).
pub fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whole seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Locks a mutex, recovering the data if a holder panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The URLs the sandbox advertises.
#[derive(Clone, Debug)]
pub struct Urls {
    /// `https://localhost:PORT`
    pub issuer: String,
    /// `https://127.0.0.1:PORT` (mTLS endpoints)
    pub mtls_base: String,
}

impl Urls {
    /// URLs for `port`.
    pub fn new(port: u16) -> Self {
        Self {
            issuer: format!("https://localhost:{port}"),
            mtls_base: format!("https://127.0.0.1:{port}"),
        }
    }

    /// The token endpoint.
    pub fn token(&self) -> String {
        format!("{}/token", self.mtls_base)
    }

    /// The PAR endpoint.
    pub fn par(&self) -> String {
        format!("{}/par", self.mtls_base)
    }

    /// The registration endpoint.
    pub fn registration(&self) -> String {
        format!("{}/tpp-registration", self.mtls_base)
    }

    /// RFC 7592 client configuration URI.
    pub fn registration_client_uri(&self, client_id: &str) -> String {
        format!("{}/tpp-registration/{client_id}", self.issuer)
    }
}

/// The client authentication method of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// RFC 7523 assertion signed with a registered key.
    PrivateKeyJwt,
    /// RFC 8705 PKI mTLS.
    TlsClientAuth,
}

/// Where a client's public keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Inline `jwks` (a JWK Set object).
    Inline(serde_json::Value),
    /// `jwks_uri`, fetched and cached.
    Uri(String),
    /// No keys registered.
    None,
}

/// The registered `tls_client_auth` subject value.
#[derive(Clone, Debug)]
pub enum SubjectMatch {
    /// `tls_client_auth_subject_dn`.
    Dn(Vec<dn::Attribute>),
    /// `tls_client_auth_san_dns`.
    SanDns(String),
    /// `tls_client_auth_san_uri`.
    SanUri(String),
    /// `tls_client_auth_san_ip`.
    SanIp(String),
    /// `tls_client_auth_san_email`.
    SanEmail(String),
}

/// How a client came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Provisioned through the admin API (Static / HubOnboarding).
    Admin,
    /// RFC 7591 JSON registration.
    Dynamic,
    /// Signed (software statement) registration.
    Signed,
}

/// A registered client.
pub struct Client {
    /// `client_id`.
    pub client_id: String,
    /// Metadata as echoed (includes `client_id`, `client_id_issued_at`).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Authentication method.
    pub auth: AuthMethod,
    /// Public keys.
    pub keys: KeySource,
    /// `tls_client_auth` subject.
    pub subject: Option<SubjectMatch>,
    /// Registered scopes.
    pub scopes: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Current registration access token.
    pub rat: Option<SecretString>,
    /// Origin.
    pub origin: Origin,
}

/// An issued access token (the token value is the map key, never stored here).
#[derive(Clone, Debug, Serialize)]
pub struct IssuedToken {
    /// Owner.
    pub client_id: String,
    /// Granted scope (space-delimited).
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// `x5t#S256` the token is bound to.
    pub x5t_s256: String,
    /// The RFC 8707 `resource` the token was requested for (its audience), if any.
    pub resource: Option<String>,
}

/// A recorded hub onboarding.
#[derive(Clone, Debug, Serialize)]
pub struct Onboarding {
    /// Subject DN of the presented certificate (RFC 4514-style).
    pub subject_dn: String,
    /// Its `x5t#S256`.
    pub x5t_s256: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// Clients, tokens, `jti`s, onboardings.
#[derive(Default)]
pub struct Store {
    /// client_id → client.
    pub clients: HashMap<String, Client>,
    tokens: HashMap<String, IssuedToken>,
    jtis: HashMap<String, u64>,
    /// Accepted onboardings, oldest first.
    pub onboardings: Vec<Onboarding>,
}

impl Store {
    /// Adds or replaces a client; false when full.
    pub fn put_client(&mut self, client: Client) -> bool {
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&client.client_id) {
            return false;
        }
        self.clients.insert(client.client_id.clone(), client);
        true
    }

    /// Removes a client and every token it holds; true if it existed.
    pub fn remove_client(&mut self, client_id: &str) -> bool {
        self.tokens.retain(|_, t| t.client_id != client_id);
        self.clients.remove(client_id).is_some()
    }

    /// The client whose RAT is `rat`, if it is `client_id`.
    pub fn client_by_rat(&mut self, client_id: &str, rat: &str) -> Option<&mut Client> {
        self.clients.get_mut(client_id).filter(|c| {
            c.rat.as_ref().is_some_and(|current| {
                constant_time_eq(current.expose_secret().as_bytes(), rat.as_bytes())
            })
        })
    }

    /// Records a token; false when full even after dropping expired ones.
    pub fn put_token(&mut self, token: String, issued: IssuedToken) -> bool {
        if self.tokens.len() >= MAX_TOKENS {
            let now = now_secs();
            self.tokens.retain(|_, t| t.exp > now);
            if self.tokens.len() >= MAX_TOKENS {
                return false;
            }
        }
        self.tokens.insert(token, issued);
        true
    }

    /// The live (unexpired) token.
    pub fn token(&self, token: &str) -> Option<&IssuedToken> {
        self.tokens.get(token).filter(|t| t.exp > now_secs())
    }

    /// A token as issued, expired or not (until dropped to make room).
    pub fn issued(&self, token: &str) -> Option<&IssuedToken> {
        self.tokens.get(token)
    }

    /// Revokes a token; true if it existed.
    pub fn revoke(&mut self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    /// Remembers `jti` of `client_id` until `exp`; false if already seen (a replay) or full.
    pub fn remember_jti(&mut self, client_id: &str, jti: &str, exp: u64) -> Result<(), JtiRefusal> {
        let key = format!("{client_id}\u{0}{jti}");
        if self.jtis.contains_key(&key) {
            return Err(JtiRefusal::Replay);
        }
        if self.jtis.len() >= MAX_JTIS {
            let now = now_secs();
            self.jtis.retain(|_, until| *until >= now);
            if self.jtis.len() >= MAX_JTIS {
                return Err(JtiRefusal::Full);
            }
        }
        self.jtis.insert(key, exp);
        Ok(())
    }

    /// Records a hub onboarding (oldest dropped beyond the bound).
    pub fn onboard(&mut self, onboarding: Onboarding) {
        if self.onboardings.len() >= MAX_ONBOARDINGS {
            self.onboardings.remove(0);
        }
        self.onboardings.push(onboarding);
    }
}

/// Why a `jti` was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JtiRefusal {
    /// Seen before.
    Replay,
    /// The table is full of unexpired entries.
    Full,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Everything the handlers share.
pub struct AppState {
    /// Configuration.
    pub cfg: SandboxConfig,
    /// Advertised URLs.
    pub urls: Urls,
    /// Chain check for `tls_client_auth`.
    pub client_ca: Option<ClientCaCheck>,
    /// The served discovery document.
    pub discovery: serde_json::Value,
    /// Clients, tokens, jtis.
    pub store: Mutex<Store>,
    /// Counters.
    pub counters: Mutex<Counters>,
    /// Fault rules.
    pub faults: Mutex<Faults>,
    /// `jwks_uri` cache.
    pub jwks: JwksCache,
    /// Pushed requests, codes, refresh tokens.
    pub flows: Mutex<Flows>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_per_client() {
        let mut store = Store::default();
        assert_eq!(store.remember_jti("c1", "j", now_secs() + 60), Ok(()));
        assert_eq!(
            store.remember_jti("c1", "j", now_secs() + 60),
            Err(JtiRefusal::Replay)
        );
        assert_eq!(store.remember_jti("c2", "j", now_secs() + 60), Ok(()));
    }

    #[test]
    fn expired_tokens_are_not_live() {
        let mut store = Store::default();
        let t = |exp| IssuedToken {
            client_id: "c".into(),
            scope: "accounts".into(),
            iat: 0,
            exp,
            x5t_s256: "x".into(),
            resource: None,
        };
        store.put_token("old".into(), t(now_secs() - 1));
        store.put_token("new".into(), t(now_secs() + 60));
        assert!(store.token("old").is_none());
        assert!(store.token("new").is_some());
    }
}
