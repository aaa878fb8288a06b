//! Private keys: generation (aws-lc-rs), PKCS#8 DER/PEM, private and public JWK, the RFC 7638
//! `kid`, and hand-off to a cached [`Signer`], an rcgen `KeyPair` and josekit.
//!
//! Contract: a [`PrivateKey`] always holds a canonical PKCS#8 v1 DER (`rsaEncryption` or
//! `id-ecPublicKey`/P-256) as produced by aws-lc-rs, inside a zeroizing `SecretSlice`; its
//! `Debug`/`Display` show only the algorithm and the `kid`. Every export of private material
//! returns a secrecy container. Keys from josekit (PKCS#8 with the `id-RSASSA-PSS` OID, which
//! rcgen and aws-lc-rs refuse) are re-wrapped on import. Key generation is CPU-heavy
//! (RSA-3072/4096 take tens to hundreds of milliseconds): call [`PrivateKey::generate`] from a
//! blocking pool. No I/O.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPairComponents, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use secrecy::{ExposeSecret as _, SecretSlice, SecretString};
use zeroize::Zeroizing;

use super::der;
use super::error::IdentityError;
use super::jwk::{Jwk, RawPrivateJwk, b64url};
use super::signer::{ParsedKey, Signer};

/// The key algorithms the operator generates and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA, 2048-bit modulus (signs PS256).
    Rsa2048,
    /// RSA, 3072-bit modulus (signs PS256).
    Rsa3072,
    /// RSA, 4096-bit modulus (signs PS256).
    Rsa4096,
    /// ECDSA on P-256 (signs ES256).
    EcP256,
}

impl KeyAlgorithm {
    /// A short, loggable name (`RSA-2048`, `EC-P256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::Rsa3072 => "RSA-3072",
            Self::Rsa4096 => "RSA-4096",
            Self::EcP256 => "EC-P256",
        }
    }

    /// The JWS algorithm this key signs with: `PS256` for RSA, `ES256` for P-256.
    pub fn jws_alg(self) -> &'static str {
        if self.is_rsa() { "PS256" } else { "ES256" }
    }

    /// Whether this is an RSA key.
    pub fn is_rsa(self) -> bool {
        !matches!(self, Self::EcP256)
    }

    fn from_modulus_bits(bits: usize) -> Result<Self, IdentityError> {
        match bits {
            2048 => Ok(Self::Rsa2048),
            3072 => Ok(Self::Rsa3072),
            4096 => Ok(Self::Rsa4096),
            other => Err(IdentityError::ParsePrivateKey {
                reason: format!("unsupported RSA modulus of {other} bits (2048, 3072, 4096)"),
            }),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private signing key with its public JWK and `kid`, parsed once when read (so a
/// [`Signer`] costs no second parse: an RSA parse validates the key and takes about as long as
/// a signature). Cheap to clone.
#[derive(Clone)]
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: SecretSlice<u8>,
    public: Jwk,
    parsed: Arc<ParsedKey>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("alg", &self.algorithm.name())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.algorithm.name(), self.kid())
    }
}

impl PrivateKey {
    /// Generates a fresh key with aws-lc-rs. Synchronous and CPU-heavy for RSA.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, IdentityError> {
        let failed = || IdentityError::GenerateKey {
            alg: algorithm.name(),
        };
        let pkcs8 = match algorithm {
            KeyAlgorithm::EcP256 => {
                let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| failed())?;
                Zeroizing::new(pair.to_pkcs8v1().map_err(|_| failed())?.as_ref().to_vec())
            }
            rsa => {
                let size = match rsa {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                let pair = RsaKeyPair::generate(size).map_err(|_| failed())?;
                Zeroizing::new(pair.as_der().map_err(|_| failed())?.as_ref().to_vec())
            }
        };
        Self::from_der(&pkcs8)
    }

    /// Reads a private key from DER: PKCS#8 (`rsaEncryption`, `id-RSASSA-PSS` as josekit writes
    /// it, or P-256 `id-ecPublicKey`), PKCS#1 `RSAPrivateKey`, or SEC1 `ECPrivateKey` (P-256).
    pub fn from_der(input: &[u8]) -> Result<Self, IdentityError> {
        let pkcs8 = der::normalise_to_pkcs8(input)?;
        Self::from_canonical_pkcs8(pkcs8)
    }

    /// Reads a PEM private key: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1). The first private key block in the input is used.
    pub fn from_pem(pem: &str) -> Result<Self, IdentityError> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            IdentityError::ParsePrivateKey {
                reason: "no PEM private key block found".to_owned(),
            }
        })?;
        Self::from_der(der.secret_der())
    }

    fn from_canonical_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, IdentityError> {
        let parts = der::read_pkcs8(&pkcs8)?;
        let parsed = if parts.algorithm == der::OID_EC_PUBLIC_KEY {
            ParsedKey::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(rejected)?,
            )
        } else {
            ParsedKey::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(rejected)?)
        };
        Self::from_parsed(pkcs8, parsed)
    }

    /// `pkcs8` (canonical) and the same key already parsed.
    fn from_parsed(pkcs8: Zeroizing<Vec<u8>>, parsed: ParsedKey) -> Result<Self, IdentityError> {
        let (algorithm, public) = match &parsed {
            ParsedKey::Ec(pair) => (
                KeyAlgorithm::EcP256,
                p256_public_jwk(pair.public_key().as_ref())?,
            ),
            ParsedKey::Rsa(pair) => {
                let public = pair.public_key();
                let algorithm = KeyAlgorithm::from_modulus_bits(public.modulus_len() * 8)?;
                let jwk = Jwk::rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                );
                (algorithm, jwk)
            }
        };
        let mut public = public;
        public.alg = Some(algorithm.jws_alg().to_owned());
        public.kid = Some(public.thumbprint()?);
        Ok(Self {
            algorithm,
            pkcs8: SecretSlice::from(pkcs8.to_vec()),
            public,
            parsed: Arc::new(parsed),
        })
    }

    /// The key as parsed when it was read.
    pub(crate) fn parsed(&self) -> Arc<ParsedKey> {
        self.parsed.clone()
    }

    /// The key algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public JWK (43 base64url chars).
    pub fn kid(&self) -> &str {
        self.public.kid.as_deref().unwrap_or_default()
    }

    /// The public JWK: `kty`, `kid`, `alg` and the public members (no `use`, no `x5c`).
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }

    /// The canonical PKCS#8 DER. Exposes private material: use only to hand the key to a
    /// library or a Secret builder.
    pub fn expose_pkcs8_der(&self) -> &[u8] {
        self.pkcs8.expose_secret()
    }

    /// The PKCS#8 PEM (a `PRIVATE KEY` PEM block), the `signing.key` a workload mounts.
    pub fn to_pkcs8_pem(&self) -> SecretString {
        SecretString::from(der::pem_encode("PRIVATE KEY", self.expose_pkcs8_der()).to_string())
    }

    /// The private JWK as JSON (RFC 7518 members `n,e,d,p,q,dp,dq,qi` or `crv,x,y,d`, plus
    /// `kty`, `kid`, `alg`).
    pub fn to_private_jwk_json(&self) -> Result<SecretString, IdentityError> {
        let mut raw = RawPrivateJwk::default();
        raw.kty = Some(if self.algorithm.is_rsa() { "RSA" } else { "EC" }.to_owned());
        raw.kid.clone_from(&self.public.kid);
        raw.alg.clone_from(&self.public.alg);
        raw.n.clone_from(&self.public.n);
        raw.e.clone_from(&self.public.e);
        raw.crv.clone_from(&self.public.crv);
        raw.x.clone_from(&self.public.x);
        raw.y.clone_from(&self.public.y);
        if self.algorithm.is_rsa() {
            let outer = der::read_pkcs8(self.expose_pkcs8_der())?;
            let rsa = der::read_pkcs1_rsa(&outer.private_key)?;
            raw.d = Some(b64url(&*rsa.d));
            raw.p = Some(b64url(&*rsa.p));
            raw.q = Some(b64url(&*rsa.q));
            raw.dp = Some(b64url(&*rsa.dp));
            raw.dq = Some(b64url(&*rsa.dq));
            raw.qi = Some(b64url(&*rsa.qi));
        } else {
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, self.expose_pkcs8_der())
                    .map_err(rejected)?;
            let d =
                pair.private_key()
                    .as_be_bytes()
                    .map_err(|_| IdentityError::ParsePrivateKey {
                        reason: "EC private scalar unavailable".to_owned(),
                    })?;
            raw.d = Some(b64url(d.as_ref()));
        }
        let json = Zeroizing::new(
            serde_json::to_string(&raw)
                .map_err(|_| jwk_invalid("serialising the private JWK failed"))?,
        );
        Ok(SecretString::from(json.as_str()))
    }

    /// Reads a private JWK (RSA with all CRT members, or EC P-256). A `kid` in the input is
    /// ignored: the key's `kid` is always its thumbprint.
    pub fn from_private_jwk_json(json: &str) -> Result<Self, IdentityError> {
        let raw: RawPrivateJwk =
            serde_json::from_str(json).map_err(|e| IdentityError::ReadJwk {
                // Only the position: serde's message could quote input text.
                reason: format!("invalid JSON at line {} column {}", e.line(), e.column()),
            })?;
        let (pkcs8, parsed) = match raw.kty.as_deref() {
            Some("RSA") => {
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: raw.member(&raw.n, "n")?,
                        e: raw.member(&raw.e, "e")?,
                    },
                    d: raw.member(&raw.d, "d")?,
                    p: raw.member(&raw.p, "p")?,
                    q: raw.member(&raw.q, "q")?,
                    dP: raw.member(&raw.dp, "dp")?,
                    dQ: raw.member(&raw.dq, "dq")?,
                    qInv: raw.member(&raw.qi, "qi")?,
                };
                let pair = RsaKeyPair::from_components(&components).map_err(rejected)?;
                let pkcs8 = Zeroizing::new(
                    pair.as_der()
                        .map_err(|_| jwk_invalid("RSA key re-encoding"))?
                        .as_ref()
                        .to_vec(),
                );
                (pkcs8, ParsedKey::Rsa(pair))
            }
            Some("EC") => {
                if raw.crv.as_deref() != Some("P-256") {
                    return Err(jwk_invalid("only the P-256 curve is supported"));
                }
                let (x, y) = (raw.member(&raw.x, "x")?, raw.member(&raw.y, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(jwk_invalid("P-256 coordinates must be 32 bytes"));
                }
                let mut point = Zeroizing::new(Vec::with_capacity(65));
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let d = raw.member(&raw.d, "d")?;
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &d,
                    &point,
                )
                .map_err(rejected)?;
                let pkcs8 = Zeroizing::new(
                    pair.to_pkcs8v1()
                        .map_err(|_| jwk_invalid("EC key re-encoding"))?
                        .as_ref()
                        .to_vec(),
                );
                (pkcs8, ParsedKey::Ec(pair))
            }
            _ => return Err(jwk_invalid("kty must be RSA or EC")),
        };
        Self::from_parsed(pkcs8, parsed)
    }

    /// A [`Signer`] over the key parsed when it was read (no parse here); cache and reuse it.
    pub fn signer(&self) -> Result<Signer, IdentityError> {
        Ok(Signer::from_key(self))
    }

    /// The same key as an rcgen `KeyPair` (signing certificates with SHA-256: RSA PKCS#1 v1.5
    /// or ECDSA P-256), for certificates and CSRs.
    pub fn to_rcgen_key_pair(&self) -> Result<rcgen::KeyPair, IdentityError> {
        let alg = if self.algorithm.is_rsa() {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.expose_pkcs8_der().to_vec());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            .map_err(|source| IdentityError::GenerateCertificate { source })
    }

    /// The same key as josekit's own (OpenSSL-backed) signer with `kid` set, for code that
    /// needs josekit's implementation; [`PrivateKey::signer`] is the faster choice.
    pub fn to_josekit_signer(&self) -> Result<Box<dyn josekit::jws::JwsSigner>, IdentityError> {
        let der = self.expose_pkcs8_der();
        let map = |source| IdentityError::BuildJwt { source };
        if self.algorithm.is_rsa() {
            let mut signer = josekit::jws::PS256.signer_from_der(der).map_err(map)?;
            signer.set_key_id(self.kid());
            Ok(Box::new(signer))
        } else {
            let mut signer = josekit::jws::ES256.signer_from_der(der).map_err(map)?;
            signer.set_key_id(self.kid());
            Ok(Box::new(signer))
        }
    }
}

fn rejected(e: aws_lc_rs::error::KeyRejected) -> IdentityError {
    IdentityError::ParsePrivateKey {
        reason: format!("key rejected: {e}"),
    }
}

fn jwk_invalid(reason: &str) -> IdentityError {
    IdentityError::ReadJwk {
        reason: reason.to_owned(),
    }
}

fn p256_public_jwk(point: &[u8]) -> Result<Jwk, IdentityError> {
    match point {
        [0x04, rest @ ..] if rest.len() == 64 => Ok(Jwk::p256(&rest[..32], &rest[32..])),
        _ => Err(IdentityError::ParsePrivateKey {
            reason: "unexpected P-256 public point".to_owned(),
        }),
    }
}
