//! Reading compact JWS/JWTs: base64url segments, JSON header and claims, NumericDates that
//! may be fractional (`iat=1769766702.739`, as OFM samples carry), and signature checks
//! against a public [`Jwk`] (PS256 or ES256, via aws-lc-rs).
//!
//! Used by tests and by the sandbox AS; the operator itself only emits integer
//! NumericDates. Pure functions, no I/O.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::error::IdentityError;
use super::jwk::{Jwk, KeyType};

fn invalid(reason: impl Into<String>) -> IdentityError {
    IdentityError::ReadJwt {
        reason: reason.into(),
    }
}

/// Converts a JSON NumericDate (integer or fractional seconds since the epoch) to a timestamp.
/// Fractions keep their decimal digits exactly (to the nanosecond).
pub fn numeric_date(value: &Value) -> Result<Timestamp, IdentityError> {
    let Value::Number(number) = value else {
        return Err(invalid("NumericDate is not a number"));
    };
    if let Some(seconds) = number.as_i64() {
        return Timestamp::from_second(seconds).map_err(|_| invalid("NumericDate out of range"));
    }
    // serde_json prints an f64 as its shortest round-trip decimal, e.g. "1769766702.739".
    let text = number.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if fraction.bytes().all(|b| b.is_ascii_digit()) && !fraction.is_empty() {
        let seconds: i64 = whole
            .parse()
            .map_err(|_| invalid("NumericDate out of range"))?;
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        let mut nanos: i32 = digits
            .parse()
            .map_err(|_| invalid("NumericDate fraction"))?;
        if seconds < 0 || whole.starts_with('-') {
            nanos = -nanos;
        }
        return Timestamp::new(seconds, nanos).map_err(|_| invalid("NumericDate out of range"));
    }
    // Exponent notation: fall back to float arithmetic (sub-microsecond precision lost).
    let float = number
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| invalid("NumericDate is not finite"))?;
    let nanos = (float * 1e9).round();
    if nanos.abs() > 1e19 {
        return Err(invalid("NumericDate out of range"));
    }
    // Range checked above, so the cast cannot saturate unexpectedly.
    Timestamp::from_nanosecond(nanos as i128).map_err(|_| invalid("NumericDate out of range"))
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Clone, Debug)]
pub struct DecodedJwt {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The claims.
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl DecodedJwt {
    /// A string claim, if present and a string.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A NumericDate claim (`iat`, `nbf`, `exp`), integer or fractional; `None` if absent.
    pub fn time_claim(&self, name: &str) -> Result<Option<Timestamp>, IdentityError> {
        self.claims.get(name).map(numeric_date).transpose()
    }

    /// The header's `alg`.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Checks the signature with `jwk`: `PS256` needs an RSA key, `ES256` a P-256 key; any
    /// other `alg` (including `none`) is refused.
    pub fn verify_with(&self, jwk: &Jwk) -> Result<(), IdentityError> {
        let b64 = |member: &Option<String>| -> Result<Vec<u8>, IdentityError> {
            URL_SAFE_NO_PAD
                .decode(
                    member
                        .as_deref()
                        .ok_or_else(|| invalid("JWK lacks a public member"))?,
                )
                .map_err(|_| invalid("JWK member is not base64url"))
        };
        let message = self.signing_input.as_bytes();
        let result = match (self.alg(), jwk.kty) {
            (Some("PS256"), KeyType::Rsa) => signature::RsaPublicKeyComponents {
                n: b64(&jwk.n)?,
                e: b64(&jwk.e)?,
            }
            .verify(
                &signature::RSA_PSS_2048_8192_SHA256,
                message,
                &self.signature,
            ),
            (Some("ES256"), KeyType::Ec) if jwk.crv.as_deref() == Some("P-256") => {
                let mut point = vec![0x04];
                point.extend(b64(&jwk.x)?);
                point.extend(b64(&jwk.y)?);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &self.signature)
            }
            _ => return Err(invalid("alg does not match the key or is not PS256/ES256")),
        };
        result.map_err(|_| IdentityError::VerifySignature)
    }
}

/// Splits and decodes a compact JWS without verifying it.
pub fn decode_unverified(compact: &str) -> Result<DecodedJwt, IdentityError> {
    let mut parts = compact.trim().split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not three dot-separated segments"));
    };
    let json = |segment: &str, what: &str| -> Result<Map<String, Value>, IdentityError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| invalid(format!("{what} is not base64url")))?;
        serde_json::from_slice(&bytes).map_err(|_| invalid(format!("{what} is not a JSON object")))
    };
    Ok(DecodedJwt {
        header: json(header, "header")?,
        claims: json(claims, "claims")?,
        signing_input: format!("{header}.{claims}"),
        signature: URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| invalid("signature is not base64url"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_numeric_dates_keep_their_milliseconds() {
        let iat = numeric_date(&serde_json::json!(1769766702.739)).unwrap();
        assert_eq!(iat.as_millisecond(), 1_769_766_702_739);
        let exp = numeric_date(&serde_json::json!(1769767012.739)).unwrap();
        assert_eq!(exp.duration_since(iat).as_secs(), 310);
    }

    #[test]
    fn integer_numeric_dates_parse_exactly() {
        assert_eq!(
            numeric_date(&serde_json::json!(1769766702))
                .unwrap()
                .as_second(),
            1_769_766_702
        );
    }

    #[test]
    fn exponent_notation_numeric_dates_parse() {
        let t = numeric_date(&serde_json::from_str::<Value>("1.7697667027e9").unwrap()).unwrap();
        assert_eq!(t.as_millisecond(), 1_769_766_702_700);
    }

    #[test]
    fn non_numeric_dates_are_rejected() {
        for bad in [
            serde_json::json!("1769766702"),
            serde_json::json!(null),
            serde_json::json!(1e300),
        ] {
            assert!(numeric_date(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_compact_jws_is_rejected() {
        for bad in ["a.b", "a.b.c.d", "!!.e30.AA", "e30.bm90IGpzb24.AA"] {
            assert!(
                matches!(decode_unverified(bad), Err(IdentityError::ReadJwt { .. })),
                "{bad}"
            );
        }
    }
}
