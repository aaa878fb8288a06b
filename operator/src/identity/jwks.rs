//! The public JWK set the operator publishes (ConfigMap, `/jwks/...`, inline `jwks`).
//!
//! Contract: every entry has `kty`, `kid` (RFC 7638 thumbprint unless the caller set one),
//! `use`, `alg` (`PS256`, `ES256` or `RSA-OAEP-256`, checked against the key type and use),
//! the public members, and, when a certificate chain belongs to the key, `x5c` (standard
//! base64 DER, leaf first) and `x5t#S256` of the leaf; the leaf's public key must be the
//! JWK's. Entries are sorted by `kid` (byte order), so the set is identical whatever order
//! keys are given in; a repeated `kid` is an error. Never private members. Pure, no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::cert::x5t_s256;
use super::error::IdentityError;
use super::jwk::{Jwk, KeyType, KeyUse};

/// A JWK set (RFC 7517 §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The algorithms a published key may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishedAlg {
    /// RSASSA-PSS SHA-256 signatures (RSA, `use: sig`).
    Ps256,
    /// ECDSA P-256 SHA-256 signatures (EC, `use: sig`).
    Es256,
    /// RSA-OAEP with SHA-256 key encryption (RSA, `use: enc`).
    RsaOaep256,
}

impl PublishedAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    fn fits(self, kty: KeyType, key_use: KeyUse) -> bool {
        matches!(
            (self, kty, key_use),
            (Self::Ps256, KeyType::Rsa, KeyUse::Sig)
                | (Self::Es256, KeyType::Ec, KeyUse::Sig)
                | (Self::RsaOaep256, KeyType::Rsa, KeyUse::Enc)
        )
    }
}

/// One key to publish.
#[derive(Clone, Debug)]
pub struct PublishedKey {
    /// The public JWK (e.g. [`super::PrivateKey::public_jwk`]).
    pub jwk: Jwk,
    /// `use`.
    pub key_use: KeyUse,
    /// `alg`.
    pub alg: PublishedAlg,
    /// Certificate chain as DER, leaf first; empty when no certificate belongs to the key.
    pub certificate_chain: Vec<Vec<u8>>,
}

/// Builds the public set, sorted by `kid`.
pub fn build_jwks(keys: impl IntoIterator<Item = PublishedKey>) -> Result<JwkSet, IdentityError> {
    let mut out: Vec<Jwk> = Vec::new();
    for key in keys {
        if !key.alg.fits(key.jwk.kty, key.key_use) {
            return Err(IdentityError::ReadJwk {
                reason: format!(
                    "alg {} does not fit a {:?} key used for {:?}",
                    key.alg.as_str(),
                    key.jwk.kty,
                    key.key_use
                ),
            });
        }
        let thumbprint = key.jwk.thumbprint()?;
        // Only public members: rebuild from the thumbprinted ones.
        let mut jwk = match key.jwk.kty {
            KeyType::Rsa => Jwk {
                n: key.jwk.n.clone(),
                e: key.jwk.e.clone(),
                ..bare(KeyType::Rsa)
            },
            KeyType::Ec => Jwk {
                crv: key.jwk.crv.clone(),
                x: key.jwk.x.clone(),
                y: key.jwk.y.clone(),
                ..bare(KeyType::Ec)
            },
        };
        jwk.kid = Some(key.jwk.kid.clone().unwrap_or(thumbprint));
        jwk.key_use = Some(key.key_use);
        jwk.alg = Some(key.alg.as_str().to_owned());
        if let Some(leaf) = key.certificate_chain.first() {
            if certificate_public_jwk(leaf)?.thumbprint()? != jwk.thumbprint()? {
                return Err(IdentityError::ReadJwk {
                    reason: format!(
                        "the certificate for kid {} holds another public key",
                        jwk.kid.as_deref().unwrap_or("")
                    ),
                });
            }
            jwk.x5c = Some(
                key.certificate_chain
                    .iter()
                    .map(|der| STANDARD.encode(der))
                    .collect(),
            );
            jwk.x5t_s256 = Some(x5t_s256(leaf));
        }
        out.push(jwk);
    }
    out.sort_by(|a, b| a.kid.cmp(&b.kid));
    if let Some(pair) = out.windows(2).find(|pair| pair[0].kid == pair[1].kid) {
        return Err(IdentityError::DuplicateKid {
            kid: pair[0].kid.clone().unwrap_or_default(),
        });
    }
    Ok(JwkSet { keys: out })
}

fn is_p256(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    let params = cert.public_key().algorithm.parameters.as_ref();
    params
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid == x509_parser::oid_registry::OID_EC_P256)
}

fn bare(kty: KeyType) -> Jwk {
    Jwk {
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

/// The public JWK of a DER certificate's subject key (RSA or P-256).
pub fn certificate_public_jwk(der: &[u8]) -> Result<Jwk, IdentityError> {
    use x509_parser::public_key::PublicKey;
    let invalid = |reason: &str| IdentityError::ParseCertificate {
        reason: reason.to_owned(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| invalid("invalid DER"))?;
    match cert
        .public_key()
        .parsed()
        .map_err(|_| invalid("unreadable public key"))?
    {
        PublicKey::RSA(rsa) => Ok(Jwk::rsa(rsa.modulus, rsa.exponent)),
        PublicKey::EC(point) => match point.data() {
            _ if !is_p256(&cert) => Err(invalid("only P-256 EC keys are supported")),
            [0x04, rest @ ..] if rest.len() == 64 => Ok(Jwk::p256(&rest[..32], &rest[32..])),
            _ => Err(invalid("only uncompressed P-256 EC keys are supported")),
        },
        _ => Err(invalid("unsupported public key type")),
    }
}
