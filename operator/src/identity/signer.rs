//! A parsed, reusable JWS signer backed by aws-lc-rs.
//!
//! Contract: [`Signer`] holds the key already parsed, so each signature costs one RSA-PSS
//! (salt 32, MGF1-SHA256) or ECDSA P-256 (fixed `r||s`) operation and nothing else. It
//! implements josekit's `JwsSigner`, so josekit builds the JWS around it, and it clones
//! cheaply (`Arc`), so a reconciler can cache one per active key. `Debug` shows only `alg` and
//! `kid`. CPU only, no I/O.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, RSA_PSS_SHA256, RsaKeyPair};
use josekit::JoseError;
use josekit::jws::{JwsAlgorithm, JwsSigner};

use super::error::IdentityError;
use super::keys::PrivateKey;

/// A key parsed for signing (once, when the [`PrivateKey`] was read).
pub(crate) enum ParsedKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A cached signer for one key: `PS256` for RSA keys, `ES256` for P-256 keys.
#[derive(Clone)]
pub struct Signer {
    key: Arc<ParsedKey>,
    kid: Arc<str>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer over the key `key` parsed when it was read (no second parse).
    pub(crate) fn from_key(key: &PrivateKey) -> Self {
        Self {
            key: key.parsed(),
            kid: Arc::from(key.kid()),
        }
    }

    /// The key id placed in JWS headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS `alg`: `PS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match *self.key {
            ParsedKey::Rsa(_) => "PS256",
            ParsedKey::Ec(_) => "ES256",
        }
    }

    /// Signs `message` (the JWS signing input) and returns the raw JWS signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let rng = SystemRandom::new();
        let failed = || IdentityError::Sign {
            kid: self.kid.to_string(),
        };
        match &*self.key {
            ParsedKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PSS_SHA256, &rng, message, &mut signature)
                    .map_err(|_| failed())?;
                Ok(signature)
            }
            ParsedKey::Ec(pair) => Ok(pair
                .sign(&rng, message)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec()),
        }
    }
}

impl JwsSigner for Signer {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        match *self.key {
            ParsedKey::Rsa(_) => &josekit::jws::PS256,
            ParsedKey::Ec(_) => &josekit::jws::ES256,
        }
    }

    fn key_id(&self) -> Option<&str> {
        Some(&self.kid)
    }

    fn signature_len(&self) -> usize {
        match &*self.key {
            ParsedKey::Rsa(pair) => pair.public_modulus_len(),
            ParsedKey::Ec(_) => 64,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        Signer::sign(self, message).map_err(|e| JoseError::InvalidSignature(e.into()))
    }

    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}
