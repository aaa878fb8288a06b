//! Fetches and caches the discovery document. Network I/O (through [`AsClient`]).
//!
//! Contract: `GET <issuer>/.well-known/openid-configuration` (or an override URL) without a
//! client certificate; the document's `issuer` must equal the configured issuer exactly
//! ([`OauthError::IssuerMismatch`], permanent); a valid document is cached per URL and trust
//! (the SHA-256 of the CA bundle the fetching client trusts: a document fetched under one
//! tenant's CA is never served to an AuthorizationServer with other trust, issue 13 item 5) for
//! a TTL (default 15 min) measured on the injected [`Clock`]; concurrent misses for one key
//! share a single fetch. Failures are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use url::Url;

use super::clock::{Clock, SystemClock};
use super::error::{OauthError, Step};
use super::metadata::ProviderMetadata;
use super::transport::{AsClient, AsRequest};

/// Default cache lifetime of a discovery document.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// `<issuer>/.well-known/openid-configuration` (one slash between them), or `override_url`.
pub fn discovery_url(issuer: &str, override_url: Option<&str>) -> Result<Url, OauthError> {
    let raw = match override_url {
        Some(url) => url.to_owned(),
        None => format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    };
    Url::parse(&raw).map_err(|source| OauthError::InvalidUrl {
        step: Step::Discovery,
        what: "discovery",
        source,
    })
}

/// A per-URL-and-trust cache of validated discovery documents.
pub struct Discovery {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    slots: Mutex<HashMap<String, Slot>>,
}

/// One (URL, trust) key's cached document; the async lock makes concurrent misses share one fetch.
type Slot = Arc<tokio::sync::Mutex<Option<(Timestamp, Arc<ProviderMetadata>)>>>;

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for Discovery {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, Arc::new(SystemClock))
    }
}

impl Discovery {
    /// A cache with `ttl` on `clock`.
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl,
            clock,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The document for `issuer`: from the cache while fresh, else fetched with `client` (which
    /// should present no client certificate) and validated. Concurrent callers for one URL
    /// share a single fetch; a cached document is re-checked against `issuer`.
    pub async fn get(
        &self,
        client: &AsClient,
        issuer: &str,
        override_url: Option<&str>,
    ) -> Result<Arc<ProviderMetadata>, OauthError> {
        let url = discovery_url(issuer, override_url)?;
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cache_key(&url, client.trust_id()))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        let ttl = jiff::SignedDuration::try_from(self.ttl).unwrap_or(jiff::SignedDuration::MAX);
        if let Some((at, meta)) = cached.as_ref()
            && self.clock.now().duration_since(*at) < ttl
        {
            check_issuer(meta, issuer)?;
            return Ok(meta.clone());
        }
        let meta = Arc::new(fetch(client, url, issuer).await?);
        *cached = Some((self.clock.now(), meta.clone()));
        Ok(meta)
    }

    /// Forgets the cached documents of `issuer`, under every trust (e.g. after an endpoint
    /// answered 404).
    pub fn invalidate(&self, issuer: &str, override_url: Option<&str>) {
        if let Ok(url) = discovery_url(issuer, override_url) {
            let prefix = cache_key(&url, "");
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|key, _| !key.starts_with(&prefix));
        }
    }
}

/// The cache key: the URL, a space (never in a parsed URL), then the trust id.
fn cache_key(url: &Url, trust: &str) -> String {
    format!("{url} {trust}")
}

/// Fetches and validates one discovery document, uncached.
pub async fn fetch(
    client: &AsClient,
    url: Url,
    issuer: &str,
) -> Result<ProviderMetadata, OauthError> {
    let response = client
        .send(Step::Discovery, AsRequest::new(reqwest::Method::GET, url))
        .await?;
    if !response.is_success() {
        return Err(response.error(Step::Discovery, client.now()));
    }
    let meta = parse(&response.body)?;
    check_issuer(&meta, issuer)?;
    Ok(meta)
}

/// Parses a discovery document.
pub fn parse(body: &[u8]) -> Result<ProviderMetadata, OauthError> {
    serde_json::from_slice(body).map_err(|e| OauthError::invalid_json(Step::Discovery, &e))
}

/// The document's `issuer` must equal the configured one, byte for byte.
pub fn check_issuer(meta: &ProviderMetadata, issuer: &str) -> Result<(), OauthError> {
    if meta.issuer == issuer {
        Ok(())
    } else {
        Err(OauthError::IssuerMismatch {
            expected: super::wire::strip_url_queries(issuer),
            found: super::wire::sanitize(&meta.issuer).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_well_known_url_from_the_issuer() {
        let url =
            discovery_url("https://auth1.sandbox.mya.ozoneapi.io", None).map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("https://auth1.sandbox.mya.ozoneapi.io/.well-known/openid-configuration")
        );
        let url = discovery_url("https://as.example/tenant/", None).map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("https://as.example/tenant/.well-known/openid-configuration")
        );
    }

    #[test]
    fn an_override_url_wins() {
        let url = discovery_url("https://i", Some("https://other/disco")).map(|u| u.to_string());
        assert_eq!(url.ok().as_deref(), Some("https://other/disco"));
    }

    #[test]
    fn issuer_must_match_exactly() {
        let meta = parse(include_bytes!("../../tests/data/sandbox-discovery.json"));
        let meta = meta.unwrap_or_default();
        assert!(check_issuer(&meta, "https://auth1.sandbox.mya.ozoneapi.io").is_ok());
        let err = check_issuer(&meta, "https://auth1.sandbox.mya.ozoneapi.io/").err();
        assert_eq!(
            err.as_ref().map(|e| e.reason().as_str()),
            Some("IssuerMismatch")
        );
        assert!(err.is_some_and(|e| !e.is_transient()));
    }

    #[test]
    fn a_non_json_document_is_invalid_json() {
        assert_eq!(
            parse(b"<html>").err().map(|e| e.reason().as_str()),
            Some("DiscoveryFailed")
        );
    }
}
