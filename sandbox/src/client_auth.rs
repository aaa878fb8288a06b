//! Client authentication at the token, introspection, revocation and PAR endpoints:
//! `private_key_jwt` (PS256, registered `kid`, iss = sub = client_id, `aud` per policy, single-use
//! `jti`, clock and lifetime bounds, fractional NumericDates) and `tls_client_auth` (chain to the
//! client CA and a matching registered subject). A client certificate is required either way.
//! I/O only through the `jwks_uri` cache.

use std::{collections::HashMap, sync::Arc};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::{
    config::AudPolicy,
    dn, jws,
    reply::OAuthError,
    state::{AppState, AuthMethod, JtiRefusal, KeySource, SubjectMatch, lock, now_f64},
    tls::{Peer, PeerCert},
};

/// RFC 7523 assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An authenticated client and the certificate it presented.
#[derive(Debug)]
pub struct Authenticated {
    /// `client_id`.
    pub client_id: String,
    /// The presented transport certificate.
    pub cert: Arc<PeerCert>,
}

/// Parses an `application/x-www-form-urlencoded` body (last value wins).
pub fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Authenticates the client of a form request at `endpoint_url`.
pub async fn authenticate(
    state: &AppState,
    form: &HashMap<String, String>,
    peer: &Peer,
    endpoint_url: &str,
) -> Result<Authenticated, OAuthError> {
    let cert = peer.0.clone().ok_or_else(|| {
        OAuthError::invalid_client("no_client_certificate", "a client certificate is required")
    })?;
    let assertion = form.get("client_assertion");
    let claimed_id = match (form.get("client_id"), assertion) {
        (Some(id), _) => id.clone(),
        (None, Some(a)) => jws::unverified_claims(a)
            .ok()
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| OAuthError::invalid_client("missing_client_id", "client_id missing"))?,
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "missing_client_id",
                "client_id missing",
            ));
        }
    };
    let (method, keys, subject) = {
        let store = lock(&state.store);
        let client = store.clients.get(&claimed_id).ok_or_else(|| {
            OAuthError::invalid_client("unknown_client", "client authentication failed")
        })?;
        (client.auth, client.keys.clone(), client.subject.clone())
    };
    match method {
        AuthMethod::PrivateKeyJwt => {
            if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
                return Err(OAuthError::invalid_client(
                    "bad_assertion_type",
                    "client_assertion_type must be jwt-bearer",
                ));
            }
            let assertion = assertion.ok_or_else(|| {
                OAuthError::invalid_client("missing_assertion", "client_assertion missing")
            })?;
            verify_assertion(state, &claimed_id, &keys, assertion, endpoint_url).await?;
        }
        AuthMethod::TlsClientAuth => {
            if assertion.is_some() {
                return Err(OAuthError::invalid_client(
                    "unexpected_assertion",
                    "client is registered for tls_client_auth",
                ));
            }
            if !cert.chains_to_client_ca {
                return Err(OAuthError::invalid_client(
                    "certificate_not_trusted",
                    "certificate does not chain to a trusted CA",
                ));
            }
            if !subject.as_ref().is_some_and(|s| subject_matches(s, &cert)) {
                return Err(OAuthError::invalid_client(
                    "certificate_subject_mismatch",
                    "certificate does not match the registered subject",
                ));
            }
        }
    }
    Ok(Authenticated {
        client_id: claimed_id,
        cert,
    })
}

/// True when the presented certificate carries the registered subject value.
pub fn subject_matches(subject: &SubjectMatch, cert: &PeerCert) -> bool {
    match subject {
        SubjectMatch::Dn(registered) => dn::same_dn(registered, &cert.subject),
        SubjectMatch::SanDns(v) => cert.sans.dns.iter().any(|d| d.eq_ignore_ascii_case(v)),
        SubjectMatch::SanUri(v) => cert.sans.uri.contains(v),
        SubjectMatch::SanIp(v) => cert.sans.ip.contains(v),
        SubjectMatch::SanEmail(v) => cert.sans.email.contains(v),
    }
}

/// The current key set of a client (inline, or `jwks_uri` through the cache).
pub async fn client_keys(state: &AppState, keys: &KeySource) -> Result<Arc<Value>, OAuthError> {
    match keys {
        KeySource::Inline(set) => Ok(Arc::new(set.clone())),
        KeySource::Uri(uri) => state.jwks.get(uri).await.map_err(|e| {
            tracing::warn!(error = %e, "jwks_uri unusable");
            OAuthError::invalid_client("jwks_uri_unusable", "client keys could not be fetched")
        }),
        KeySource::None => Err(OAuthError::invalid_client(
            "no_client_keys",
            "client has no registered keys",
        )),
    }
}

async fn verify_assertion(
    state: &AppState,
    client_id: &str,
    keys: &KeySource,
    assertion: &str,
    endpoint_url: &str,
) -> Result<(), OAuthError> {
    let refuse = |reason: &'static str, description: &str| {
        tracing::info!(client_id, reason, "client assertion refused");
        OAuthError::invalid_client(reason, description.to_string())
    };
    let kid = jws::ps256_kid(assertion).map_err(|e| refuse(e.reason(), &e.to_string()))?;
    let set = client_keys(state, keys).await?;
    let claims = jws::verify_ps256(assertion, &set).map_err(|e| {
        tracing::info!(
            client_id,
            kid,
            reason = e.reason(),
            "client assertion signature refused"
        );
        OAuthError::invalid_client(e.reason(), e.to_string())
    })?;
    let str_claim = |name: &str| claims.get(name).and_then(Value::as_str);
    if str_claim("iss") != Some(client_id) || str_claim("sub") != Some(client_id) {
        return Err(refuse(
            "iss_sub_mismatch",
            "iss and sub must both be the client_id",
        ));
    }
    let aud = claims.get("aud").cloned().unwrap_or(Value::Null);
    if !aud_accepted(state, &aud, endpoint_url) {
        return Err(refuse("bad_audience", "aud is not accepted"));
    }
    let now = now_f64();
    let (Some(iat), Some(exp)) = (jws::numeric(&claims, "iat"), jws::numeric(&claims, "exp"))
    else {
        return Err(refuse("missing_time_claims", "iat and exp are required"));
    };
    if exp <= now {
        return Err(refuse("assertion_expired", "assertion expired"));
    }
    let nbf = jws::numeric(&claims, "nbf").unwrap_or(iat);
    let ahead = iat.max(nbf) - now;
    if ahead >= 60.0 || (state.cfg.aud_policy == AudPolicy::Strict && ahead > 10.0) {
        return Err(refuse("issued_in_future", "iat/nbf too far in the future"));
    }
    if exp - iat > state.cfg.effective_max_assertion_lifetime().as_secs_f64() {
        return Err(refuse(
            "assertion_lifetime_too_long",
            "exp - iat exceeds the maximum lifetime",
        ));
    }
    let jti = str_claim("jti").ok_or_else(|| refuse("missing_jti", "jti is required"))?;
    let remembered = lock(&state.store).remember_jti(client_id, jti, exp.ceil() as u64);
    match remembered {
        Ok(()) => Ok(()),
        Err(JtiRefusal::Replay) => {
            tracing::info!(client_id, kid, jti_sha256 = %short_hash(jti), "replayed jti");
            Err(OAuthError::invalid_client("jti_replay", "jti already used"))
        }
        Err(JtiRefusal::Full) => Err(refuse("jti_table_full", "too many outstanding assertions")),
    }
}

fn aud_accepted(state: &AppState, aud: &Value, endpoint_url: &str) -> bool {
    let issuer = state.urls.issuer.as_str();
    match state.cfg.aud_policy {
        AudPolicy::Strict => aud.as_str() == Some(issuer),
        AudPolicy::Lenient => {
            let mut accepted = vec![
                issuer.to_string(),
                state.urls.token(),
                state.urls.par(),
                endpoint_url.to_string(),
            ];
            let alias = |u: &String| u.replace("https://127.0.0.1:", "https://localhost:");
            accepted.extend(accepted.clone().iter().map(alias));
            match aud {
                Value::String(s) => accepted.contains(s),
                Value::Array(items) => items
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| accepted.iter().any(|a| a == s))),
                _ => false,
            }
        }
    }
}

/// First 8 bytes of SHA-256, hex: enough to correlate a value in logs without revealing it.
pub fn short_hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
