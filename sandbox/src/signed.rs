//! Signed (OBIE-style) registration requests: verifies the embedded software statement (PS256)
//! against the directory JWKS, then the request JWT (PS256, `aud` = issuer, `iat`/`exp`/`jti`,
//! `exp - iat` ≤ 300 s, single-use `jti`) against the statement's inline `software_jwks`, and
//! returns the client metadata it carries. With `strict_signed_registration`, `iss` is required
//! and the client's keys must be the statement's `software_jwks`. Every failure is 400
//! `invalid_software_statement`.
//! Pure apart from the shared `jti` table; no I/O.

use serde_json::{Map, Value};

use super::{
    jws,
    reply::OAuthError,
    state::{AppState, lock, now_f64},
};

/// Longest accepted `exp - iat` of a registration request.
const MAX_REQUEST_LIFETIME_SECS: f64 = 300.0;
/// Claims that belong to the JWT, not to the client.
const JWT_ONLY: [&str; 8] = [
    "iss",
    "aud",
    "iat",
    "exp",
    "nbf",
    "jti",
    "software_statement",
    "software_jwks",
];
/// `jti` namespace of registration requests.
const JTI_SCOPE: &str = "\u{0}signed-registration";

fn refuse(reason: &'static str, description: &str) -> OAuthError {
    tracing::info!(reason, "signed registration refused");
    OAuthError::invalid_software_statement(reason, description.to_string())
}

/// The public keys of a JWK set, comparable regardless of order and of members that are not
/// key material (`kid`, `kty`, and the public parameters `n`, `e`, `crv`, `x`, `y`).
fn key_set(jwks: &Value) -> std::collections::BTreeSet<Vec<Option<String>>> {
    const MEMBERS: [&str; 7] = ["kid", "kty", "n", "e", "crv", "x", "y"];
    jwks.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|key| {
            MEMBERS
                .iter()
                .map(|m| key.get(*m).and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Verifies a signed registration body and returns the client metadata.
pub fn verified_metadata(state: &AppState, body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    let token = std::str::from_utf8(body)
        .map(str::trim)
        .map_err(|_| refuse("request_not_utf8", "request is not a compact jws"))?;
    let directory = state
        .cfg
        .directory_jwks
        .as_ref()
        .ok_or_else(|| refuse("no_directory_configured", "no directory keys configured"))?;
    let untrusted = jws::unverified_claims(token)
        .map_err(|e| refuse(e.reason(), "request is not a compact jws"))?;
    let statement = untrusted
        .get("software_statement")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                "missing_software_statement",
                "software_statement is required",
            )
        })?;
    let ssa = jws::verify_ps256(statement, directory).map_err(|e| {
        refuse(
            "software_statement_unverified",
            &format!("software statement: {e}"),
        )
    })?;
    let now = now_f64();
    if jws::numeric(&ssa, "exp").is_some_and(|exp| exp <= now) {
        return Err(refuse(
            "software_statement_expired",
            "software statement expired",
        ));
    }
    let software_jwks = ssa
        .get("software_jwks")
        .filter(|v| v.get("keys").is_some_and(Value::is_array))
        .ok_or_else(|| {
            refuse(
                "missing_software_jwks",
                "software statement carries no software_jwks",
            )
        })?;
    let claims = jws::verify_ps256(token, software_jwks)
        .map_err(|e| refuse("request_unverified", &format!("registration request: {e}")))?;
    let software_id = ssa.get("software_id").and_then(Value::as_str);
    let strict = state.cfg.strict_signed_registration;
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if software_id.is_some_and(|id| id != iss) => {
            return Err(refuse("iss_not_software_id", "iss must be the software_id"));
        }
        None if strict => return Err(refuse("request_missing_iss", "iss is required")),
        _ => {}
    }
    if strict {
        if claims.contains_key("jwks_uri") {
            return Err(refuse(
                "jwks_not_software_jwks",
                "the client's keys are the software statement's: no jwks_uri",
            ));
        }
        if let Some(jwks) = claims.get("jwks")
            && key_set(jwks) != key_set(software_jwks)
        {
            return Err(refuse(
                "jwks_not_software_jwks",
                "jwks must be the software statement's software_jwks",
            ));
        }
    }
    let issuer = state.urls.issuer.as_str();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => s == issuer,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(issuer)),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse("request_bad_audience", "aud must be the issuer"));
    }
    let (Some(iat), Some(exp)) = (jws::numeric(&claims, "iat"), jws::numeric(&claims, "exp"))
    else {
        return Err(refuse("request_missing_times", "iat and exp are required"));
    };
    if exp <= now || iat - now >= 60.0 || exp - iat > MAX_REQUEST_LIFETIME_SECS {
        return Err(refuse(
            "request_times_out_of_bounds",
            "iat/exp out of bounds",
        ));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("request_missing_jti", "jti is required"))?;
    if lock(&state.store)
        .remember_jti(JTI_SCOPE, jti, exp.ceil() as u64)
        .is_err()
    {
        return Err(refuse("request_jti_replay", "jti already used"));
    }

    let mut metadata = claims;
    for claim in JWT_ONLY {
        metadata.remove(claim);
    }
    if let Some(id) = software_id {
        metadata.insert("software_id".into(), Value::String(id.to_string()));
    }
    if !metadata.contains_key("jwks") && !metadata.contains_key("jwks_uri") {
        metadata.insert("jwks".into(), software_jwks.clone());
    }
    Ok(metadata)
}
