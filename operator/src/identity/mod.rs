//! Identity material: keys, JWKs and JWK sets, X.509 transport certificates, client
//! assertions and signed registration requests.
//!
//! Contract: CPU only, no I/O, no hidden clock (every function that needs the time takes
//! `now`). Private material lives in redacting containers from the moment it exists and is
//! exposed only through explicitly named calls (`expose_*`, `to_*_pem`, `to_private_jwk_json`).
//! RSA key generation is slow: call it from a bounded blocking pool.
//!
//! - [`keys`]: generation, PKCS#8/PEM, private/public JWK, RFC 7638 `kid`, hand-offs.
//! - [`signer`]: a parsed, cacheable JWS signer (aws-lc-rs).
//! - [`jwk`] and [`jwks`]: JWK serde types, thumbprints, the published JWK set.
//! - [`cert`] and [`dn`]: self-signed transport certificates, CSRs, parsing, `x5t#S256`.
//! - [`assertion`]: `private_key_jwt` client assertions.
//! - [`signed_request`]: the signed DCR request (docs/protocol.md §3.4).
//! - [`jwt`]: reading JWTs (fractional NumericDates) and verifying them against a JWK.

pub mod assertion;
pub mod cert;
mod der;
pub mod dn;
pub mod error;
pub mod jwk;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod signed_request;
pub mod signer;

pub use error::IdentityError;
pub use jwk::{Jwk, KeyType, KeyUse};
pub use keys::{KeyAlgorithm, PrivateKey};
pub use signer::Signer;
