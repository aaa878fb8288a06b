//! Errors of the identity module: each variant names the step that failed.
//!
//! Messages never carry key material: at most an algorithm, a `kid` or a field name.
//! Every identity failure is permanent (the same input fails the same way), so
//! [`IdentityError::is_transient`] is always `false`; it exists so callers can treat
//! identity errors like every other operator error. No I/O.

/// A failure while generating, parsing or using identity material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The crypto library refused to generate a key pair.
    #[error("generating a {alg} key failed")]
    GenerateKey {
        /// The requested algorithm.
        alg: &'static str,
    },
    /// A private key (PKCS#8/PKCS#1 DER or PEM) could not be parsed or was inconsistent.
    #[error("parsing the private key failed: {reason}")]
    ParsePrivateKey {
        /// What was wrong (never key bytes).
        reason: String,
    },
    /// A JWK was malformed or described an unsupported key.
    #[error("reading the JWK failed: {reason}")]
    ReadJwk {
        /// What was wrong (never key bytes).
        reason: String,
    },
    /// Two keys in a JWK set share a `kid`.
    #[error("duplicate kid {kid} in the JWK set")]
    DuplicateKid {
        /// The repeated key id.
        kid: String,
    },
    /// Producing a signature failed.
    #[error("signing with key {kid} failed")]
    Sign {
        /// The key id of the signer.
        kid: String,
    },
    /// Building a JWS/JWT (header, claims, serialisation) failed.
    #[error("building the JWT failed")]
    BuildJwt {
        /// The underlying josekit error.
        #[source]
        source: josekit::JoseError,
    },
    /// A requested JWT lifetime is outside the allowed range.
    #[error("assertion lifetime {seconds}s is outside 1..={max}s")]
    Lifetime {
        /// The requested lifetime in seconds.
        seconds: u64,
        /// The maximum accepted.
        max: u64,
    },
    /// A requested `iat` backdate is outside the allowed range.
    #[error("assertion backdate {seconds}s is outside 0..={max}s (whole seconds)")]
    Backdate {
        /// The requested backdate in seconds.
        seconds: u64,
        /// The maximum accepted.
        max: u64,
    },
    /// A compact JWT could not be read (shape, base64, JSON or NumericDate).
    #[error("reading the JWT failed: {reason}")]
    ReadJwt {
        /// What was wrong.
        reason: String,
    },
    /// Registration metadata tried to set a claim the signed request sets itself.
    #[error("registration metadata may not set the {claim} claim")]
    ReservedClaim {
        /// The clashing claim name.
        claim: String,
    },
    /// A JWS signature did not verify.
    #[error("the JWS signature did not verify")]
    VerifySignature,
    /// A subject distinguished name was not valid RFC 4514 (or used an unsupported feature).
    #[error("parsing the subject DN failed: {reason}")]
    ParseSubject {
        /// What was wrong.
        reason: String,
    },
    /// A certificate parameter (validity, SAN) was invalid.
    #[error("invalid certificate parameters: {reason}")]
    CertificateParams {
        /// What was wrong.
        reason: String,
    },
    /// rcgen failed to build or sign a certificate or CSR.
    #[error("generating the certificate failed")]
    GenerateCertificate {
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM certificate could not be parsed.
    #[error("parsing the certificate failed: {reason}")]
    ParseCertificate {
        /// What was wrong.
        reason: String,
    },
}

impl IdentityError {
    /// Whether retrying the same call could succeed. Identity work is deterministic CPU work,
    /// so never.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// A PascalCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> crate::reason::Reason {
        match self {
            Self::GenerateKey { .. } => crate::reason::Reason::KeyGenerationFailed,
            Self::ParsePrivateKey { .. } => crate::reason::Reason::PrivateKeyInvalid,
            Self::ReadJwk { .. } => crate::reason::Reason::JwkInvalid,
            Self::DuplicateKid { .. } => crate::reason::Reason::DuplicateKid,
            Self::Sign { .. } => crate::reason::Reason::SigningFailed,
            Self::BuildJwt { .. } => crate::reason::Reason::JwtBuildFailed,
            Self::Lifetime { .. } => crate::reason::Reason::AssertionLifetimeInvalid,
            Self::Backdate { .. } => crate::reason::Reason::AssertionBackdateInvalid,
            Self::ReadJwt { .. } => crate::reason::Reason::JwtInvalid,
            Self::ReservedClaim { .. } => crate::reason::Reason::RegistrationMetadataInvalid,
            Self::VerifySignature => crate::reason::Reason::SignatureInvalid,
            Self::ParseSubject { .. } => crate::reason::Reason::SubjectInvalid,
            Self::CertificateParams { .. } => crate::reason::Reason::CertificateParamsInvalid,
            Self::GenerateCertificate { .. } => crate::reason::Reason::CertificateGenerationFailed,
            Self::ParseCertificate { .. } => crate::reason::Reason::CertificateInvalid,
        }
    }
}
