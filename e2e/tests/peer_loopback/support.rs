//! Test support for the oidc-provider loopback tests: operator-made identities (signing keys,
//! transport certificates), operator-built client metadata, an in-memory registration
//! persister, and shortcuts around the operator's oauth client. Loopback only.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use e2e::peer::{OidcPeer, PeerOptions};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};
use tpp_operator::identity::cert::{self, CertificateProfile};
use tpp_operator::identity::dn::SubjectDn;
use tpp_operator::identity::jwks::{PublishedAlg, PublishedKey, build_jwks};
use tpp_operator::identity::signed_request::{ClientMetadata, TokenEndpointAuth};
use tpp_operator::identity::{KeyAlgorithm, KeyUse, PrivateKey};
use tpp_operator::oauth::{
    AccessToken, AsClient, AudiencePolicy, ClientAuth, ClientAuthn, ClientIdentity, OauthError,
    PersistError, ProviderMetadata, Registration, RegistrationPersister, SignerMinter,
    TransportConfig, discovery, token,
};

/// Starts a peer, failing the test (never skipping) when Node is missing.
pub async fn peer() -> Result<OidcPeer> {
    OidcPeer::start(PeerOptions::default()).await
}

/// An RSA-2048 key (signing or transport), generated off the async threads.
pub async fn rsa_key() -> Result<PrivateKey> {
    Ok(tokio::task::spawn_blocking(|| PrivateKey::generate(KeyAlgorithm::Rsa2048)).await??)
}

/// A JWKS publishing `keys` for signatures (PS256 for RSA, ES256 for P-256).
pub fn jwks(keys: &[&PrivateKey]) -> Result<Value> {
    let set = build_jwks(keys.iter().map(|k| PublishedKey {
        jwk: k.public_jwk(),
        key_use: KeyUse::Sig,
        alg: if k.algorithm().is_rsa() {
            PublishedAlg::Ps256
        } else {
            PublishedAlg::Es256
        },
        certificate_chain: Vec::new(),
    }))?;
    Ok(serde_json::to_value(set)?)
}

/// A transport identity: the key, its certificate PEM and the oauth `ClientIdentity`.
pub struct Transport {
    pub key: PrivateKey,
    pub cert_pem: String,
    pub x5t_s256: String,
}

impl Transport {
    /// A self-signed transport certificate for `subject` (what the operator makes).
    pub async fn self_signed(subject: &str) -> Result<Self> {
        let key = rsa_key().await?;
        let profile = CertificateProfile::new(subject, Duration::from_secs(3600))?;
        let issued = cert::self_signed(&key, &profile, jiff::Timestamp::now())?;
        Ok(Self {
            key,
            cert_pem: issued.pem,
            x5t_s256: issued.info.x5t_s256,
        })
    }

    /// A transport certificate for `subject` issued by the peer's test CA.
    pub async fn ca_issued(peer: &OidcPeer, subject: &str) -> Result<Self> {
        let key = rsa_key().await?;
        let pair = peer.ca().client_cert_for(
            SubjectDn::parse(subject)?.to_rcgen()?,
            key.to_rcgen_key_pair()?,
        )?;
        let info = cert::parse_pem(&pair.cert_pem)?;
        Ok(Self {
            key,
            cert_pem: pair.cert_pem,
            x5t_s256: info.x5t_s256,
        })
    }

    /// The RFC 4514 subject as read back from the certificate.
    pub fn subject(&self) -> Result<String> {
        Ok(cert::parse_pem(&self.cert_pem)?.subject)
    }

    pub fn identity(&self) -> Result<ClientIdentity> {
        Ok(ClientIdentity::from_pem(
            self.cert_pem.as_bytes(),
            self.key.to_pkcs8_pem(),
        )?)
    }
}

pub fn transport_config(peer: &OidcPeer) -> TransportConfig {
    let mut config = TransportConfig::new(peer.ca_pem().as_bytes().to_vec());
    config.connect_timeout = Duration::from_secs(5);
    config.timeout = Duration::from_secs(10);
    config
}

/// The operator's AS client over mTLS with `transport`.
pub fn mtls_client(peer: &OidcPeer, transport: &Transport) -> Result<AsClient> {
    Ok(AsClient::new(
        &transport_config(peer),
        Some(&transport.identity()?),
    )?)
}

/// The peer's discovery document, fetched and issuer-checked by the operator.
pub async fn discover(peer: &OidcPeer) -> Result<ProviderMetadata> {
    let client = AsClient::new(&transport_config(peer), None)?;
    let url = discovery::discovery_url(peer.issuer(), None)?;
    Ok(discovery::fetch(&client, url, peer.issuer()).await?)
}

/// Client metadata as the operator builds it: client_credentials, scope `accounts`, an RSA
/// (PS256) signing key, certificate-bound tokens.
pub fn metadata(auth: TokenEndpointAuth) -> Map<String, Value> {
    metadata_for(auth, KeyAlgorithm::Rsa2048)
}

/// [`metadata`] for a signing key of `algorithm`.
pub fn metadata_for(auth: TokenEndpointAuth, algorithm: KeyAlgorithm) -> Map<String, Value> {
    ClientMetadata {
        redirect_uris: Vec::new(),
        auth,
        grant_types: vec!["client_credentials".into()],
        response_types: Vec::new(),
        scopes: vec!["accounts".into()],
    }
    .to_map_for_key(algorithm)
}

/// [`metadata`] for `private_key_jwt` with inline `jwks`.
pub fn pkjwt_metadata(jwks: Value) -> Map<String, Value> {
    pkjwt_metadata_for(jwks, KeyAlgorithm::Rsa2048)
}

/// [`pkjwt_metadata`] for a signing key of `algorithm`.
pub fn pkjwt_metadata_for(jwks: Value, algorithm: KeyAlgorithm) -> Map<String, Value> {
    let mut map = metadata_for(TokenEndpointAuth::PrivateKeyJwt, algorithm);
    map.insert("client_name".into(), json!("tpp-operator peer test"));
    map.insert("jwks".into(), jwks);
    map
}

/// [`metadata`] for `tls_client_auth` with the transport certificate's subject. It still
/// registers the signing key's `jwks`: the metadata declares `request_object_signing_alg`, and
/// an AS that verifies request objects (oidc-provider with JAR on) refuses such a client
/// without keys ("jwks or jwks_uri is mandatory for this client").
pub fn tls_metadata(transport: &Transport, signing: &PrivateKey) -> Result<Map<String, Value>> {
    let mut map = metadata(TokenEndpointAuth::TlsClientAuth {
        subject_dn: transport.subject()?,
    });
    map.insert("jwks".into(), jwks(&[signing])?);
    Ok(map)
}

/// Keeps every registration it is handed (the latest last).
#[derive(Default)]
pub struct MemoryPersister {
    pub stored: Mutex<Vec<Registration>>,
}

impl MemoryPersister {
    pub fn count(&self) -> usize {
        self.stored.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn latest_rat(&self) -> Option<String> {
        let stored = self.stored.lock().ok()?;
        stored
            .last()?
            .registration_access_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
    }
}

impl RegistrationPersister for MemoryPersister {
    async fn persist(&self, registration: &Registration) -> Result<(), PersistError> {
        self.stored
            .lock()
            .map_err(|_| PersistError::new("poisoned"))?
            .push(registration.clone());
        Ok(())
    }
}

/// `private_key_jwt` authentication for `client_id` with `key`, `aud` = issuer.
pub fn pkjwt(client_id: &str, key: &PrivateKey) -> Result<ClientAuthn> {
    Ok(ClientAuthn {
        client_id: client_id.to_owned(),
        auth: ClientAuth::PrivateKeyJwt {
            minter: Arc::new(SignerMinter::new(key.signer()?, client_id)),
            audience: AudiencePolicy::Issuer,
        },
        within_jwks_propagation: false,
    })
}

/// `tls_client_auth` authentication for `client_id`.
pub fn tls_auth(client_id: &str) -> ClientAuthn {
    ClientAuthn {
        client_id: client_id.to_owned(),
        auth: ClientAuth::TlsClientAuth,
        within_jwks_propagation: false,
    }
}

/// A `client_credentials` token for scope `accounts`.
pub async fn token_for(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
) -> Result<AccessToken, OauthError> {
    token::client_credentials(client, meta, authn, "accounts").await
}

/// Adds the peer's log to a failed expectation.
pub fn with_log<T>(peer: &OidcPeer, result: Result<T, OauthError>) -> Result<T> {
    result.with_context(|| format!("peer log:\n{}", peer.log_tail(6000)))
}

/// The secret's text, for assertions.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}
