//! Compact JWS handling for the sandbox: read the header without trusting it, pick a key from a
//! JWK Set by `kid`, verify a PS256 signature and return the claims as JSON (so fractional
//! NumericDates survive). Pure; no I/O.
//!
//! Verification uses aws-lc-rs, not josekit: josekit goes through the system OpenSSL 3.0, whose
//! first concurrent public-key decodes in a process can fail ("decode error"), which made
//! parallel tests see a valid key refused (docs/reliability.md, "A CI flake").

use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
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
    /// The key cannot be used (not RSA, wrong `use`/`alg`, bad modulus); says why.
    #[error("key unusable for PS256: {0}")]
    UnusableKey(String),
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
            Self::UnusableKey(_) => "unusable_key",
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
    let (n, e) = ps256_components(key).map_err(JwsRefusal::UnusableKey)?;
    let header = header(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("PS256") {
        return Err(JwsRefusal::AlgNotPs256);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwsRefusal::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwsRefusal::Malformed)?;
    RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &RSA_PSS_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| JwsRefusal::BadSignature)?;
    let payload = signing_input
        .split('.')
        .nth(1)
        .ok_or(JwsRefusal::Malformed)?;
    decode_object(payload).ok_or(JwsRefusal::BadPayload)
}

/// The modulus and exponent of a JWK usable for PS256 verification, or why it is not usable:
/// `kty` RSA, `use` (if any) `sig`, `alg` (if any) PS256, `key_ops` (if any) with `verify`, a
/// modulus of 2048 to 8192 bits (RFC 7518 §3.5 asks for at least 2048) and an odd exponent.
pub fn ps256_components(key: &Map<String, Value>) -> Result<(Vec<u8>, Vec<u8>), String> {
    let field = |name: &str| key.get(name).and_then(Value::as_str);
    if field("kty") != Some("RSA") {
        return Err(format!("kty is {:?}, not RSA", field("kty").unwrap_or("")));
    }
    if let Some(u) = field("use").filter(|u| *u != "sig") {
        return Err(format!("use is {u:?}, not sig"));
    }
    if let Some(a) = field("alg").filter(|a| *a != "PS256") {
        return Err(format!("alg is {a:?}, not PS256"));
    }
    if let Some(ops) = key.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops does not allow verify".into());
        }
    }
    let decode = |name: &str| -> Result<Vec<u8>, String> {
        let text = field(name).ok_or_else(|| format!("{name} is missing"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| format!("{name} is not base64url: {e}"))
    };
    let n = decode("n")?;
    let e = decode("e")?;
    let n_bits = n
        .iter()
        .position(|b| *b != 0)
        .map_or(0, |i| (n.len() - i) * 8 - n[i].leading_zeros() as usize);
    if !(2048..=8192).contains(&n_bits) {
        return Err(format!("modulus has {n_bits} bits, not 2048 to 8192"));
    }
    if e.last().is_none_or(|b| b % 2 == 0) || e.len() > 4 {
        return Err("exponent is not an odd number of at most 32 bits".into());
    }
    Ok((n, e))
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
        if map.get("kty").and_then(Value::as_str) == Some("RSA") {
            ps256_components(map)
                .map_err(|why| format!("key {kid} is not usable for PS256: {why}"))?;
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
    fn a_short_modulus_or_an_enc_key_is_refused_with_the_reason() {
        let short =
            json!({"kty":"RSA","kid":"s","n": URL_SAFE_NO_PAD.encode([0xC1u8; 128]),"e":"AQAB"});
        let why = ps256_components(short.as_object().cloned().as_ref().unwrap_or(&Map::new()));
        assert_eq!(
            why,
            Err("modulus has 1024 bits, not 2048 to 8192".to_string())
        );
        let enc = json!({"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"});
        let why = ps256_components(enc.as_object().cloned().as_ref().unwrap_or(&Map::new()));
        assert_eq!(why, Err("use is \"enc\", not sig".to_string()));
    }

    #[test]
    fn a_token_signed_with_another_alg_header_is_refused_even_with_the_right_key()
    -> Result<(), Box<dyn std::error::Error>> {
        let pair = josekit::jws::PS256.generate_key_pair(2048)?;
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("k1");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let token = format!("{header}.e30.c2ln");
        assert_eq!(
            verify_with_key(&token, public.as_ref()),
            Err(JwsRefusal::AlgNotPs256)
        );
        Ok(())
    }

    #[test]
    fn keys_verify_from_many_threads_at_once() -> Result<(), Box<dyn std::error::Error>> {
        // The OpenSSL 3.0 race showed as "not usable for PS256" on the first concurrent decodes;
        // aws-lc-rs has no such start-up state. 8 threads x 25 verifications each.
        let pair = josekit::jws::PS256.generate_key_pair(2048)?;
        let mut private = pair.to_jwk_key_pair();
        private.set_key_id("k1");
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("k1");
        let signer = josekit::jws::PS256.signer_from_jwk(&private)?;
        let mut header = josekit::jws::JwsHeader::new();
        header.set_algorithm("PS256");
        header.set_key_id("k1");
        let token = josekit::jws::serialize_compact(br#"{"iat":1}"#, &header, &signer)?;
        let jwks = json!({"keys": [Value::Object(public.as_ref().clone())]});
        let failures: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..25)
                            .filter(|_| {
                                check_key_set(&jwks).is_err()
                                    || verify_ps256(&token, &jwks).is_err()
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(25)).sum()
        });
        assert_eq!(failures, 0);
        Ok(())
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let set = json!({"keys": [{"kty":"oct","kid":"a","use":"enc"},{"kty":"oct","kid":"a","use":"enc"}]});
        assert!(check_key_set(&set).is_err());
    }
}
