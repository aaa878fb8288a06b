//! JSON Web Key types (RFC 7517/7518) and the RFC 7638 thumbprint used as `kid`.
//!
//! [`Jwk`] is the public form, safe to publish and log. Private members never live in a
//! `Jwk`: they travel only inside `RawPrivateJwk`, which zeroizes on drop, has a redacting
//! `Debug`, and is only reachable from `keys.rs`. Pure functions, no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroize;

use super::error::IdentityError;

/// `kty`: the key family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// RSA (RFC 7518 §6.3).
    #[serde(rename = "RSA")]
    Rsa,
    /// Elliptic curve (RFC 7518 §6.2).
    #[serde(rename = "EC")]
    Ec,
}

/// `use`: what a published key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyUse {
    /// Signature verification.
    Sig,
    /// Encryption.
    Enc,
}

/// A public JWK. Member names follow RFC 7517/7518; absent members are omitted when
/// serialised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type.
    pub kty: KeyType,
    /// Key id (the RFC 7638 thumbprint for keys made by this crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended use.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<KeyUse>,
    /// Algorithm (`PS256`, `ES256`, `RSA-OAEP-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// RSA modulus, base64url unsigned big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent, base64url unsigned big-endian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve (`P-256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate, base64url, full field length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate, base64url, full field length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Certificate chain, standard base64 (not url-safe) DER, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
    /// Unpadded base64url SHA-256 of the leaf certificate's DER.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Jwk {
    /// A bare RSA public JWK (`kty`, `n`, `e`) from unsigned big-endian bytes.
    pub fn rsa(n: &[u8], e: &[u8]) -> Self {
        Self {
            n: Some(b64url(strip_leading_zeros(n))),
            e: Some(b64url(strip_leading_zeros(e))),
            ..Self::empty(KeyType::Rsa)
        }
    }

    /// A bare P-256 public JWK (`kty`, `crv`, `x`, `y`) from 32-byte coordinates.
    pub fn p256(x: &[u8], y: &[u8]) -> Self {
        Self {
            crv: Some("P-256".to_owned()),
            x: Some(b64url(x)),
            y: Some(b64url(y)),
            ..Self::empty(KeyType::Ec)
        }
    }

    fn empty(kty: KeyType) -> Self {
        Self {
            kty,
            kid: None,
            key_use: None,
            alg: None,
            n: None,
            e: None,
            crv: None,
            x: None,
            y: None,
            x5c: None,
            x5t_s256: None,
        }
    }

    /// The RFC 7638 thumbprint: unpadded base64url SHA-256 over the required members in
    /// lexicographic order, no whitespace. Always 43 characters.
    pub fn thumbprint(&self) -> Result<String, IdentityError> {
        let canonical = match self.kty {
            KeyType::Rsa => serde_json::json!({
                "e": required(&self.e, "e")?,
                "kty": "RSA",
                "n": required(&self.n, "n")?,
            }),
            KeyType::Ec => serde_json::json!({
                "crv": required(&self.crv, "crv")?,
                "kty": "EC",
                "x": required(&self.x, "x")?,
                "y": required(&self.y, "y")?,
            }),
        };
        // serde_json's default Map is a BTreeMap: keys serialise in lexicographic order.
        let bytes = serde_json::to_vec(&canonical).map_err(|e| IdentityError::ReadJwk {
            reason: format!("canonical form: {e}"),
        })?;
        Ok(b64url(Sha256::digest(&bytes)))
    }
}

fn required<'a>(member: &'a Option<String>, name: &str) -> Result<&'a str, IdentityError> {
    member.as_deref().ok_or_else(|| IdentityError::ReadJwk {
        reason: format!("missing member {name}"),
    })
}

/// All members of a private JWK as read from or written to JSON. Crate-internal: it is the
/// only place private members exist as text, it zeroizes on drop, and its `Debug` is redacted.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct RawPrivateJwk {
    pub kty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
}

impl RawPrivateJwk {
    /// Decodes a private (or public) member, failing with the member's name only.
    pub fn member(
        &self,
        value: &Option<String>,
        name: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, IdentityError> {
        let text = required(value, name)?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map(zeroize::Zeroizing::new)
            .map_err(|_| IdentityError::ReadJwk {
                reason: format!("member {name} is not base64url"),
            })
    }
}

impl std::fmt::Debug for RawPrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPrivateJwk")
            .field("kty", &self.kty)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Drop for RawPrivateJwk {
    fn drop(&mut self) {
        for member in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
        ] {
            member.zeroize();
        }
    }
}

/// Unpadded base64url.
pub(crate) fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Drops leading zero bytes (Base64urlUInt is minimal, RFC 7518 §2), keeping at least one byte.
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn thumbprint_matches_rfc7638_section_3_1_example() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_ignores_optional_members() {
        let bare: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}))
                .unwrap();
        let mut dressed = bare.clone();
        dressed.kid = Some("x".into());
        dressed.key_use = Some(KeyUse::Sig);
        dressed.x5t_s256 = Some("y".into());
        assert_eq!(bare.thumbprint().unwrap(), dressed.thumbprint().unwrap());
    }

    #[test]
    fn thumbprint_of_incomplete_key_is_an_error() {
        let jwk: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA"}))
                .unwrap();
        assert!(matches!(
            jwk.thumbprint(),
            Err(IdentityError::ReadJwk { .. })
        ));
    }

    #[test]
    fn serialises_use_and_x5t_s256_member_names() {
        let mut jwk = Jwk::rsa(&[0, 0, 1, 2], &[1, 0, 1]);
        jwk.key_use = Some(KeyUse::Sig);
        jwk.x5t_s256 = Some("t".into());
        let v = serde_json::to_value(&jwk).unwrap();
        assert_eq!(v["use"], "sig");
        assert_eq!(v["x5t#S256"], "t");
        assert_eq!(v["n"], "AQI", "leading zeros are stripped");
        assert!(v.get("crv").is_none());
    }
}
