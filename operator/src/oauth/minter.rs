//! [`SignerMinter`]: the production [`AssertionMinter`], minting `private_key_jwt` client
//! assertions with [`crate::identity::assertion::client_assertion`] from a cached
//! [`Signer`]. CPU only (one signature per call), no I/O; the time comes from the injected
//! [`Clock`].
//!
//! Contract: every call mints a new assertion (fresh `jti`, `iat` = the clock's now minus the backdate, `exp` = `iat` + lifetime) whose
//! `aud` is exactly the audience the oauth client asks for (it already applied the
//! [`super::AudiencePolicy`]); `iss` = `sub` = the client id. A minting failure carries the
//! identity error's message only, never key material, and is permanent (a broken key does not
//! heal on retry).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::client_auth::{AssertionMinter, MintError};
use super::clock::{Clock, SystemClock};
use crate::identity::Signer;
use crate::identity::assertion::{
    AssertionPolicy, AssertionTarget, Audience, DEFAULT_BACKDATE, DEFAULT_LIFETIME,
    client_assertion,
};

/// Mints client assertions for one client with one signing key.
#[derive(Clone)]
pub struct SignerMinter {
    signer: Signer,
    client_id: String,
    lifetime: Duration,
    include_nbf: bool,
    backdate: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SignerMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerMinter")
            .field("signer", &self.signer)
            .field("client_id", &self.client_id)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl SignerMinter {
    /// A minter for `client_id` signing with `signer`: 300 s lifetime, no `nbf`, system clock.
    pub fn new(signer: Signer, client_id: impl Into<String>) -> Self {
        Self {
            signer,
            client_id: client_id.into(),
            lifetime: DEFAULT_LIFETIME,
            include_nbf: false,
            backdate: DEFAULT_BACKDATE,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets `exp - iat` (whole seconds, at most 600; checked at mint time).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Adds `nbf` = `iat` to every assertion.
    pub fn with_nbf(mut self, include_nbf: bool) -> Self {
        self.include_nbf = include_nbf;
        self
    }

    /// Sets how far `iat` is set before now (default [`DEFAULT_BACKDATE`], at most 60 s and
    /// half the lifetime; checked at mint time). `exp - iat` stays the lifetime.
    pub fn with_backdate(mut self, backdate: Duration) -> Self {
        self.backdate = backdate;
        self
    }

    /// Replaces the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }
}

impl AssertionMinter for SignerMinter {
    fn mint(&self, audience: &str) -> Result<SecretString, MintError> {
        let policy = AssertionPolicy {
            audience: Audience::Literal(audience.to_owned()),
            lifetime: self.lifetime,
            include_nbf: self.include_nbf,
            backdate: self.backdate,
        };
        let target = AssertionTarget {
            client_id: &self.client_id,
            issuer: audience,
            token_endpoint: audience,
        };
        client_assertion(&self.signer, target, &policy, self.clock.now()).map_err(|e| {
            MintError::permanent(format!("could not sign a client assertion: {e}")).with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::identity::jwt::decode_unverified;
    use crate::identity::{KeyAlgorithm, PrivateKey};

    fn fixed() -> Arc<dyn Clock> {
        Arc::new(|| {
            jiff::Timestamp::from_second(1_769_766_702).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        })
    }

    #[test]
    fn mints_a_fresh_verifiable_assertion_for_the_requested_audience() {
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).expect("key");
        let minter =
            SignerMinter::new(key.signer().expect("signer"), "client-1").with_clock(fixed());
        let first = minter.mint("https://issuer.example").expect("mint");
        let second = minter.mint("https://issuer.example").expect("mint");
        let a = decode_unverified(first.expose_secret()).expect("decode");
        let b = decode_unverified(second.expose_secret()).expect("decode");
        a.verify_with(&key.public_jwk())
            .expect("signature verifies");
        assert_eq!(a.str_claim("aud"), Some("https://issuer.example"));
        assert_eq!(a.str_claim("iss"), Some("client-1"));
        assert_eq!(a.str_claim("sub"), Some("client-1"));
        assert_eq!(a.kid(), Some(key.kid()));
        assert_eq!(
            a.time_claim("iat").ok().flatten().map(|t| t.as_second()),
            Some(1_769_766_702 - 5),
            "iat is backdated by DEFAULT_BACKDATE"
        );
        assert_eq!(
            a.time_claim("exp").ok().flatten().map(|t| t.as_second()),
            Some(1_769_766_702 - 5 + 300),
            "exp - iat is the lifetime"
        );
        assert_ne!(a.str_claim("jti"), b.str_claim("jti"));
    }

    #[test]
    fn an_unusable_lifetime_is_a_permanent_mint_error() {
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).expect("key");
        let minter = SignerMinter::new(key.signer().expect("signer"), "c")
            .with_lifetime(Duration::from_secs(3600));
        let err = minter.mint("https://issuer.example").err();
        assert!(err.is_some_and(|e| !e.is_transient()));
    }
}
