//! TLS material for talking to an AS: [`TransportConfig`] (the AS's CA bundle as the only
//! trust roots, timeouts, body limit), [`ClientIdentity`] (mTLS certificate chain and key, with
//! its RFC 8705 `x5t#S256`), and the rustls configuration built from them with the aws-lc-rs
//! provider set explicitly. CPU only; no I/O. The private key stays a [`SecretString`] (PEM)
//! and is parsed only when a configuration is built.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest as _;

use super::error::OauthError;

/// Default response body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// How to reach one AS.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// PEM bundle of the CAs that issued the AS's server certificates: the only trust roots.
    pub ca_bundle_pem: Vec<u8>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub body_limit: usize,
    /// How long an idle connection is kept for the next call; zero (the default) keeps none.
    /// One client's calls come minutes apart (a refresh), so a kept connection was never
    /// reused and each cost several KiB (BENCHMARKS.md, "Memory"); the next call resumes the
    /// TLS session instead (oauth/session_store.rs), one round trip more than a kept one.
    pub idle_connection: Duration,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("ca_bundle_bytes", &self.ca_bundle_pem.len())
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("body_limit", &self.body_limit)
            .field("idle_connection", &self.idle_connection)
            .finish()
    }
}

impl TransportConfig {
    /// Defaults (10 s connect, 30 s total, 1 MiB, no idle connection kept) for a CA bundle.
    pub fn new(ca_bundle_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_bundle_pem: ca_bundle_pem.into(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            body_limit: DEFAULT_BODY_LIMIT,
            idle_connection: Duration::ZERO,
        }
    }
}

/// A client certificate chain and its private key, for mTLS.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key_pem: SecretString,
    x5t_s256: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("x5t_s256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

pub(crate) fn config_error(
    what: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> OauthError {
    OauthError::TransportConfig {
        what: what.to_owned(),
        source: Some(Box::new(source)),
    }
}

impl ClientIdentity {
    /// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, or PKCS#1/SEC1).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: SecretString) -> Result<Self, OauthError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| config_error("client certificate chain is not valid pem", e))?;
        let leaf = chain.first().ok_or_else(|| OauthError::TransportConfig {
            what: "client certificate chain is empty".into(),
            source: None,
        })?;
        PrivateKeyDer::from_pem_slice(key_pem.expose_secret().as_bytes()).map_err(|_| {
            OauthError::TransportConfig {
                what: "client private key is not valid pem".into(),
                source: None,
            }
        })?;
        let x5t_s256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(leaf.as_ref()));
        Ok(Self {
            chain,
            key_pem,
            x5t_s256,
        })
    }

    /// RFC 8705 `x5t#S256` of the leaf certificate (unpadded base64url SHA-256 of its DER).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, OauthError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.expose_secret().as_bytes()).map_err(|_| {
            OauthError::TransportConfig {
                what: "client private key is not valid pem".into(),
                source: None,
            }
        })
    }
}

/// Builds the rustls configuration: the CA bundle as the only roots, aws-lc-rs, optional
/// client certificate.
pub fn tls_config(
    ca_bundle_pem: &[u8],
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, OauthError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle_pem) {
        let cert = cert.map_err(|e| config_error("ca bundle is not valid pem", e))?;
        roots
            .add(cert)
            .map_err(|e| config_error("ca bundle holds an unusable certificate", e))?;
    }
    if roots.is_empty() {
        return Err(OauthError::TransportConfig {
            what: "ca bundle contains no certificate".into(),
            source: None,
        });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("tls protocol versions", e))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key()?)
            .map_err(|e| config_error("client certificate and key do not match", e))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // One AS per config, one ticket per server name (oauth/session_store.rs): rustls's own
    // cache keeps eight tickets per server, each with a copy of the server's chain.
    config.resumption =
        rustls::client::Resumption::store(Arc::new(super::session_store::LatestTicket::default()));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_debug_shows_the_thumbprint_and_never_the_key() {
        let key = rcgen::KeyPair::generate().ok();
        let cert = key.as_ref().and_then(|k| {
            rcgen::CertificateParams::new(vec!["client".into()])
                .ok()?
                .self_signed(k)
                .ok()
        });
        let (Some(key), Some(cert)) = (key, cert) else {
            panic!("rcgen could not make a certificate");
        };
        let key_pem = key.serialize_pem();
        let id =
            ClientIdentity::from_pem(cert.pem().as_bytes(), SecretString::from(key_pem.clone()));
        let id = id.ok();
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(cert.der().as_ref()));
        assert_eq!(id.as_ref().map(|i| i.x5t_s256()), Some(expected.as_str()));
        let debug = format!("{id:?}");
        let key_body: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!debug.contains(&key_body[..40]));
        assert!(debug.contains(&expected));
    }

    #[test]
    fn rejects_garbage_certificates_and_keys() {
        let bad = ClientIdentity::from_pem(b"not pem", SecretString::from("nope"));
        assert_eq!(
            bad.err().map(|e| e.reason().as_str()),
            Some("InvalidTransportConfig")
        );
        assert!(
            tls_config(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                None
            )
            .is_err()
        );
    }
}
