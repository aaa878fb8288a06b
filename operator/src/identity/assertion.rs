//! `private_key_jwt` client assertions (RFC 7523, docs/protocol.md §4.1), signed with a cached
//! [`Signer`] through josekit.
//!
//! Contract: header `{alg, kid, typ: "JWT"}` (`alg` is `PS256` for RSA keys, `ES256` for
//! P-256); claims `iss` = `sub` = client id, `aud` per [`Audience`] (a plain string),
//! `jti` a fresh UUIDv4, `iat` = `now` minus a backdate in integer seconds (default
//! [`DEFAULT_BACKDATE`], at most half the lifetime, so that an AS whose clock runs a few seconds
//! behind does not refuse an assertion "issued in the future"), `exp` = `iat` + lifetime
//! (default 300 s, at most 600 s), optional `nbf` = `iat`. `exp - iat` stays exactly the
//! lifetime because ASes check it against their maximum (a strict FAPI AS allows 300 s, the
//! default lifetime: `exp` = now + lifetime would make every default assertion 305 s long and
//! refused); the assertion therefore stops being valid `backdate` seconds earlier. Every call mints a new assertion; the result
//! is a bearer credential for its lifetime, so it is returned as a `SecretString`. `now` is a
//! parameter: no hidden clock. CPU only, no I/O.

use std::time::Duration;

use jiff::Timestamp;
use josekit::jws::JwsHeader;
use josekit::jwt::JwtPayload;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::error::IdentityError;
use super::signer::Signer;

/// The default assertion lifetime (docs/protocol.md Q3).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest lifetime accepted (the AS rejects more).
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// How far `iat` (and `nbf`) are set before now by default: covers an AS clock a few seconds
/// behind ours (issue 13, item 8).
pub const DEFAULT_BACKDATE: Duration = Duration::from_secs(5);
/// The largest backdate accepted.
pub const MAX_BACKDATE: Duration = Duration::from_secs(60);

/// What goes in `aud`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Audience {
    /// The AS issuer identifier, exactly as discovery gives it (the default).
    #[default]
    Issuer,
    /// The token endpoint URL in use.
    TokenEndpoint,
    /// A literal string.
    Literal(String),
}

/// How assertions are shaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionPolicy {
    /// `aud` choice.
    pub audience: Audience,
    /// `exp - iat`; whole seconds, 1..=600.
    pub lifetime: Duration,
    /// Whether to add `nbf` = `iat`.
    pub include_nbf: bool,
    /// How far `iat` is set before now (whole seconds, at most [`MAX_BACKDATE`], and at most
    /// half the lifetime); `exp` is `iat + lifetime`.
    pub backdate: Duration,
}

impl Default for AssertionPolicy {
    fn default() -> Self {
        Self {
            audience: Audience::Issuer,
            lifetime: DEFAULT_LIFETIME,
            include_nbf: false,
            backdate: DEFAULT_BACKDATE,
        }
    }
}

/// Who the assertion is from and for.
#[derive(Clone, Copy, Debug)]
pub struct AssertionTarget<'a> {
    /// The OAuth client id (`iss` and `sub`).
    pub client_id: &'a str,
    /// The AS issuer identifier.
    pub issuer: &'a str,
    /// The token endpoint the assertion accompanies.
    pub token_endpoint: &'a str,
}

/// Mints a fresh client assertion.
pub fn client_assertion(
    signer: &Signer,
    target: AssertionTarget<'_>,
    policy: &AssertionPolicy,
    now: Timestamp,
) -> Result<SecretString, IdentityError> {
    let lifetime = checked_lifetime(policy.lifetime)?;
    let aud = match &policy.audience {
        Audience::Issuer => target.issuer,
        Audience::TokenEndpoint => target.token_endpoint,
        Audience::Literal(aud) => aud.as_str(),
    };
    let iat = now
        .as_second()
        .saturating_sub(backdate(policy.backdate, lifetime)?);
    let exp = iat.saturating_add(lifetime);
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(target.client_id));
    claims.insert("sub".into(), json!(target.client_id));
    claims.insert("aud".into(), json!(aud));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(exp));
    if policy.include_nbf {
        claims.insert("nbf".into(), json!(iat));
    }
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    sign_claims(signer, claims, &header)
}

/// The backdate in seconds, at most half the lifetime (so that most of it lies ahead of now).
fn backdate(backdate: Duration, lifetime: i64) -> Result<i64, IdentityError> {
    if backdate > MAX_BACKDATE || backdate.subsec_nanos() != 0 {
        return Err(IdentityError::Backdate {
            seconds: backdate.as_secs(),
            max: MAX_BACKDATE.as_secs(),
        });
    }
    Ok(i64::try_from(backdate.as_secs())
        .unwrap_or(0)
        .min(lifetime / 2))
}

fn checked_lifetime(lifetime: Duration) -> Result<i64, IdentityError> {
    let seconds = lifetime.as_secs();
    if seconds == 0 || lifetime > MAX_LIFETIME || lifetime.subsec_nanos() != 0 {
        return Err(IdentityError::Lifetime {
            seconds,
            max: MAX_LIFETIME.as_secs(),
        });
    }
    // <= 600, so it fits.
    Ok(i64::try_from(seconds).unwrap_or(600))
}

/// Signs a claims object with josekit around our signer; josekit adds `alg` and `kid`.
pub(crate) fn sign_claims(
    signer: &Signer,
    claims: Map<String, Value>,
    header: &JwsHeader,
) -> Result<SecretString, IdentityError> {
    let payload =
        JwtPayload::from_map(claims).map_err(|source| IdentityError::BuildJwt { source })?;
    let jws = josekit::jwt::encode_with_signer(&payload, header, signer)
        .map_err(|source| IdentityError::BuildJwt { source })?;
    Ok(SecretString::from(jws))
}
