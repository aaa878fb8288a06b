//! The `jwks_uri` cache: fetches a client's JWK Set over http(s) from loopback hosts only
//! and reuses it for the configured TTL, so signing-key rotation timing is observable (a new
//! `kid` fails until the cached copy expires). Does network I/O (loopback only).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use serde_json::Value;

use super::state::lock;

/// Most cached documents.
const MAX_ENTRIES: usize = 1_000;
/// Largest accepted document.
const MAX_BYTES: usize = 256 * 1024;

/// Why a `jwks_uri` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksFetch {
    /// Not an http(s) URL on 127.0.0.1, ::1 or localhost.
    #[error("jwks_uri is not a loopback http(s) url")]
    NotLoopback,
    /// Request failed or returned a non-2xx status.
    #[error("fetching jwks_uri failed")]
    Request(#[source] reqwest::Error),
    /// Body is not a JWK Set.
    #[error("jwks_uri did not return a jwk set")]
    NotAKeySet,
}

/// uri → (fetched at, document).
type Entries = HashMap<String, (Instant, Arc<Value>)>;

/// Cached `jwks_uri` documents.
#[derive(Clone)]
pub struct JwksCache {
    http: reqwest::Client,
    ttl: Duration,
    entries: Arc<Mutex<Entries>>,
}

impl JwksCache {
    /// A cache whose https client trusts the PEM roots given (sandbox CA, client CA, extras).
    pub fn new(ttl: Duration, trusted_pems: &[&str]) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for pem in trusted_pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.context("parse trusted pem")?)
                    .context("add trusted root")?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()
            .context("tls versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .context("build jwks http client")?;
        Ok(Self {
            http,
            ttl,
            entries: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The key set at `uri`, from cache while fresh.
    pub async fn get(&self, uri: &str) -> Result<Arc<Value>, JwksFetch> {
        if let Some((fetched, doc)) = lock(&self.entries).get(uri)
            && fetched.elapsed() < self.ttl
        {
            return Ok(doc.clone());
        }
        if !is_loopback_url(uri) {
            return Err(JwksFetch::NotLoopback);
        }
        let response = self
            .http
            .get(uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(JwksFetch::Request)?;
        let bytes = response.bytes().await.map_err(JwksFetch::Request)?;
        if bytes.len() > MAX_BYTES {
            return Err(JwksFetch::NotAKeySet);
        }
        let doc: Value = serde_json::from_slice(&bytes).map_err(|_| JwksFetch::NotAKeySet)?;
        if !doc.get("keys").is_some_and(Value::is_array) {
            return Err(JwksFetch::NotAKeySet);
        }
        let doc = Arc::new(doc);
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(uri.to_string(), (Instant::now(), doc.clone()));
        Ok(doc)
    }

    /// Forgets every cached document.
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// True for `http`/`https` URLs whose host is 127.0.0.1, ::1 or localhost.
pub fn is_loopback_url(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_jwks_uris_are_fetched() {
        assert!(is_loopback_url("https://127.0.0.1:8443/jwks"));
        assert!(is_loopback_url("http://localhost/jwks"));
        assert!(is_loopback_url("http://[::1]:9/k"));
        assert!(!is_loopback_url("https://example.com/jwks"));
        assert!(!is_loopback_url("https://10.0.0.1/jwks"));
        assert!(!is_loopback_url("file:///etc/passwd"));
    }
}
