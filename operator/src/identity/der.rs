//! Private-key encodings: minimal DER readers for PKCS#8 `PrivateKeyInfo` (RFC 5208) and
//! PKCS#1 `RSAPrivateKey` (RFC 8017 §A.1.2) via `yasna`, normalisation of any accepted key
//! encoding to aws-lc-rs's canonical PKCS#8, and PEM writing.
//!
//! aws-lc-rs does not expose RSA private components, yet a private JWK needs them, and
//! josekit writes PS256 keys as PKCS#8 with the `id-RSASSA-PSS` OID, which aws-lc-rs and
//! rcgen refuse; reading the structure lets `keys.rs` re-wrap such keys. Every buffer holding
//! private bytes is `Zeroizing`. Pure functions, no I/O.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
use base64::Engine as _;
use yasna::models::ObjectIdentifier;
use zeroize::Zeroizing;

use super::error::IdentityError;

/// `rsaEncryption`.
pub(crate) const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
/// `id-RSASSA-PSS` (josekit's PS256 PKCS#8 export).
pub(crate) const OID_RSASSA_PSS: &[u64] = &[1, 2, 840, 113549, 1, 1, 10];
/// `id-ecPublicKey`.
pub(crate) const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];

/// The outer layer of a PKCS#8 key: its algorithm OID and the inner private key bytes.
pub(crate) struct Pkcs8Parts {
    /// The `privateKeyAlgorithm` OID components.
    pub algorithm: Vec<u64>,
    /// The `privateKey` OCTET STRING contents (PKCS#1 for RSA, SEC1 for EC).
    pub private_key: Zeroizing<Vec<u8>>,
}

/// The integers of a two-prime PKCS#1 `RSAPrivateKey`, unsigned big-endian, minimal.
pub(crate) struct RsaPrivateParts {
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qi: Zeroizing<Vec<u8>>,
}

fn malformed(what: &str) -> IdentityError {
    IdentityError::ParsePrivateKey {
        reason: format!("malformed {what}"),
    }
}

/// Reads a PKCS#8 v1/v2 `PrivateKeyInfo` (unencrypted).
pub(crate) fn read_pkcs8(der: &[u8]) -> Result<Pkcs8Parts, IdentityError> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            if version > 1 {
                return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
            }
            let algorithm = r.next().read_sequence(|r| {
                let oid: ObjectIdentifier = r.next().read_oid()?;
                let _params = r.read_optional(|r| r.read_der())?;
                Ok(oid.components().clone())
            })?;
            let private_key = Zeroizing::new(r.next().read_bytes()?);
            let _attributes = r.read_optional(|r| r.read_der())?;
            let _public_key = r.read_optional(|r| r.read_der())?;
            Ok(Pkcs8Parts {
                algorithm,
                private_key,
            })
        })
    })
    .map_err(|_| malformed("PKCS#8 PrivateKeyInfo"))
}

/// Reads a PKCS#1 `RSAPrivateKey` with two primes.
pub(crate) fn read_pkcs1_rsa(der: &[u8]) -> Result<RsaPrivateParts, IdentityError> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            if version != 0 {
                // Version 1 means multi-prime, which JWK export here does not support.
                return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
            }
            let mut int = || -> yasna::ASN1Result<Vec<u8>> {
                let (bytes, non_negative) = r.next().read_bigint_bytes()?;
                if !non_negative {
                    return Err(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid));
                }
                let start = bytes
                    .iter()
                    .position(|b| *b != 0)
                    .unwrap_or(bytes.len().saturating_sub(1));
                Ok(bytes[start..].to_vec())
            };
            let (_n, _e) = (int()?, int()?);
            Ok(RsaPrivateParts {
                d: Zeroizing::new(int()?),
                p: Zeroizing::new(int()?),
                q: Zeroizing::new(int()?),
                dp: Zeroizing::new(int()?),
                dq: Zeroizing::new(int()?),
                qi: Zeroizing::new(int()?),
            })
        })
    })
    .map_err(|_| malformed("PKCS#1 RSAPrivateKey"))
}

fn rejected(e: aws_lc_rs::error::KeyRejected) -> IdentityError {
    IdentityError::ParsePrivateKey {
        reason: format!("key rejected: {e}"),
    }
}

/// Turns any accepted DER private key into the canonical aws-lc-rs PKCS#8 encoding.
pub(crate) fn normalise_to_pkcs8(input: &[u8]) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let reencode = |der: Result<aws_lc_rs::encoding::Pkcs8V1Der<'static>, _>| {
        der.map(|d| Zeroizing::new(d.as_ref().to_vec()))
            .map_err(|_| IdentityError::ParsePrivateKey {
                reason: "re-encoding failed".to_owned(),
            })
    };
    match read_pkcs8(input) {
        Ok(parts) if parts.algorithm == OID_RSA_ENCRYPTION => {
            reencode(RsaKeyPair::from_pkcs8(input).map_err(rejected)?.as_der())
        }
        Ok(parts) if parts.algorithm == OID_RSASSA_PSS => {
            // josekit's PS256 export: the inner key is a plain PKCS#1 RSAPrivateKey.
            reencode(
                RsaKeyPair::from_der(&parts.private_key)
                    .map_err(rejected)?
                    .as_der(),
            )
        }
        Ok(parts) if parts.algorithm == OID_EC_PUBLIC_KEY => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, input)
                .map_err(rejected)?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| IdentityError::ParsePrivateKey {
                    reason: "re-encoding failed".to_owned(),
                })?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        }
        Ok(_) => Err(IdentityError::ParsePrivateKey {
            reason: "unsupported key algorithm OID".to_owned(),
        }),
        Err(_) => {
            if let Ok(pair) = RsaKeyPair::from_der(input) {
                return reencode(pair.as_der());
            }
            let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, input)
                .map_err(|_| IdentityError::ParsePrivateKey {
                    reason: "not PKCS#8, PKCS#1 or SEC1 DER".to_owned(),
                })?;
            let doc = pair
                .to_pkcs8v1()
                .map_err(|_| IdentityError::ParsePrivateKey {
                    reason: "re-encoding failed".to_owned(),
                })?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        }
    }
}

/// PEM-encodes DER with 64-column standard base64 (RFC 7468). The result may hold secrets,
/// so it is zeroized on drop.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(body.len() + body.len() / 64 + 64));
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_truncated_pkcs8() {
        assert!(read_pkcs8(&[0x30, 0x05, 0x02, 0x01]).is_err());
    }

    #[test]
    fn rejects_garbage_pkcs1() {
        assert!(read_pkcs1_rsa(b"not der at all").is_err());
    }
}
