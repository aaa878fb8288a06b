//! Minimal DER readers for private keys: PKCS#8 `PrivateKeyInfo` (RFC 5208) and PKCS#1
//! `RSAPrivateKey` (RFC 8017 §A.1.2), via `yasna`.
//!
//! aws-lc-rs does not expose RSA private components, yet a private JWK needs them, and
//! josekit writes PS256 keys as PKCS#8 with the `id-RSASSA-PSS` OID, which aws-lc-rs and
//! rcgen refuse; reading the structure lets `keys.rs` re-wrap such keys. Every buffer holding
//! private bytes is `Zeroizing`. Pure functions, no I/O.

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
