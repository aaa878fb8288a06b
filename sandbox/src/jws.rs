//! Compact JWS handling for the sandbox: read the header without trusting it, pick a key from a
//! JWK Set by `kid`, verify a PS256 signature (josekit) and return the claims as JSON (so
//! fractional NumericDates survive). Pure; no I/O.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use josekit::jwk::Jwk;
use serde_json::{Map, Value};

/// Why a JWS was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsRefusal {
    /// Not three base64url parts with a JSON header.
    #[error("malformed jws")]
    Malformed,
    /// `alg` is not PS256.
    #[error("alg is not PS256")]
    AlgNotPs256,
    /// No `kid` in the header.
    #[error("kid missing from header")]
    MissingKid,
    /// No key with that `kid`.
    #[error("kid not in the key set")]
    UnknownKid,
    /// The key cannot be used (not RSA, wrong `use`/`alg`).
    #[error("key unusable for PS256")]
    UnusableKey,
    /// Signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Payload is not a JSON object.
    #[error("payload is not a json object")]
    BadPayload,
}

impl JwsRefusal {
    /// Counter key.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_jws",
            Self::AlgNotPs256 => "alg_not_ps256",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::UnusableKey => "unusable_key",
            Self::BadSignature => "bad_signature",
            Self::BadPayload => "bad_payload",
        }
    }
}

/// The untrusted header of a compact JWS.
pub fn header(token: &str) -> Result<Map<String, Value>, JwsRefusal> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsRefusal::Malformed);
    };
    decode_object(h).ok_or(JwsRefusal::Malformed)
}

/// The untrusted payload of a compact JWS (to find e.g. the embedded software statement).
pub fn unverified_claims(token: &str) -> Result<Map<String, Value>, JwsRefusal> {
    let payload = token.split('.').nth(1).ok_or(JwsRefusal::Malformed)?;
    decode_object(payload).ok_or(JwsRefusal::BadPayload)
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The `kid` in the header of `token`, after checking `alg` is PS256.
pub fn ps256_kid(token: &str) -> Result<String, JwsRefusal> {
    let header = header(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("PS256") {
        return Err(JwsRefusal::AlgNotPs256);
    }
    header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(JwsRefusal::MissingKid)
}

/// The key with `kid` in a JWK Set.
pub fn find_key<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Map<String, Value>> {
    jwks.get("keys")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
}

/// Verifies a PS256 compact JWS against the key `kid` of `jwks`; returns the claims.
pub fn verify_ps256(token: &str, jwks: &Value) -> Result<Map<String, Value>, JwsRefusal> {
    let kid = ps256_kid(token)?;
    let key = find_key(jwks, &kid).ok_or(JwsRefusal::UnknownKid)?;
    verify_with_key(token, key)
}

/// Verifies a PS256 compact JWS against one JWK.
pub fn verify_with_key(
    token: &str,
    key: &Map<String, Value>,
) -> Result<Map<String, Value>, JwsRefusal> {
    let jwk = Jwk::from_map(key.clone()).map_err(|_| JwsRefusal::UnusableKey)?;
    let verifier = josekit::jws::PS256
        .verifier_from_jwk(&jwk)
        .map_err(|_| JwsRefusal::UnusableKey)?;
    let (payload, _) = josekit::jws::deserialize_compact(token, &verifier)
        .map_err(|_| JwsRefusal::BadSignature)?;
    match serde_json::from_slice(&payload) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwsRefusal::BadPayload),
    }
}

/// Checks that `jwks` is a JWK Set whose keys are usable PS256 verification keys with
/// distinct `kid`s; returns a description of the first problem.
pub fn check_key_set(jwks: &Value) -> Result<(), String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks must be an object with a keys array")?;
    let mut kids = std::collections::HashSet::new();
    for key in keys {
        let map = key.as_object().ok_or("every jwks key must be an object")?;
        let kid = map
            .get("kid")
            .and_then(Value::as_str)
            .ok_or("every jwks key needs a kid")?;
        if !kids.insert(kid) {
            return Err(format!("duplicate kid {kid}"));
        }
        if map.contains_key("d") {
            return Err(format!("key {kid} holds private material"));
        }
        let other_alg = map
            .get("alg")
            .and_then(Value::as_str)
            .is_some_and(|a| a != "PS256");
        if map.get("use").and_then(Value::as_str) == Some("enc") || other_alg {
            continue;
        }
        let jwk =
            Jwk::from_map(map.clone()).map_err(|_| format!("key {kid} is not a valid jwk"))?;
        if jwk.key_type() == "RSA" {
            josekit::jws::PS256
                .verifier_from_jwk(&jwk)
                .map_err(|_| format!("key {kid} is not usable for PS256"))?;
        }
    }
    Ok(())
}

/// A NumericDate claim, integer or fractional.
pub fn numeric(claims: &Map<String, Value>, name: &str) -> Option<f64> {
    claims.get(name).and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ps256_signature_round_trips_and_a_foreign_key_fails()
    -> Result<(), Box<dyn std::error::Error>> {
        let pair = josekit::jws::PS256.generate_key_pair(2048)?;
        let mut private = pair.to_jwk_key_pair();
        private.set_key_id("k1");
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("k1");
        let signer = josekit::jws::PS256.signer_from_jwk(&private)?;
        let mut header = josekit::jws::JwsHeader::new();
        header.set_algorithm("PS256");
        header.set_key_id("k1");
        let token = josekit::jws::serialize_compact(br#"{"iat":1.5}"#, &header, &signer)?;
        let jwks = json!({"keys": [Value::Object(public.as_ref().clone())]});
        let claims = verify_ps256(&token, &jwks)?;
        assert_eq!(numeric(&claims, "iat"), Some(1.5));
        let other = josekit::jws::PS256.generate_key_pair(2048)?;
        let mut other_public = other.to_jwk_public_key();
        other_public.set_key_id("k1");
        let other_set = json!({"keys": [Value::Object(other_public.as_ref().clone())]});
        assert_eq!(
            verify_ps256(&token, &other_set),
            Err(JwsRefusal::BadSignature)
        );
        Ok(())
    }

    #[test]
    fn fractional_numeric_dates_are_read() {
        let claims = json!({"iat": 1769766702.739, "exp": 1769767012})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(numeric(&claims, "iat"), Some(1769766702.739));
        assert_eq!(numeric(&claims, "exp"), Some(1769767012.0));
    }

    #[test]
    fn a_non_ps256_header_is_refused_before_any_key_lookup() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let token = format!("{header}.e30.sig");
        assert_eq!(ps256_kid(&token), Err(JwsRefusal::AlgNotPs256));
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let set = json!({"keys": [{"kty":"oct","kid":"a","use":"enc"},{"kty":"oct","kid":"a","use":"enc"}]});
        assert!(check_key_set(&set).is_err());
    }
}
