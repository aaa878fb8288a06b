//! The one set of reasons: every `reason` a condition, an event, a status history entry or a
//! metric label carries is a [`Reason`], PascalCase on the wire. `docs/troubleshooting.md`
//! lists every one with its cause and what to do (a test checks it). No I/O, no dependencies:
//! every layer may name a reason.

use std::fmt;

/// Why a condition is what it is, why an event was published, why a reconcile failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Everything is in place (Ready=True), or an AuthorizationServer passed discovery and
    /// preflight.
    Reconciled,
    /// Onboarding is under way: a key, certificate, registration or token is not there yet.
    Pending,
    /// `spec.suspend` is true: no calls to the AS, material kept.
    Suspended,
    /// The referenced AuthorizationServer has not passed discovery and preflight yet; the client
    /// waits for it.
    AuthorizationServerNotReady,
    /// The client is registered at the AS (or onboarded at the hub, or Static).
    Registered,
    /// A signing key is active.
    KeyActive,
    /// A new signing key became active and the previous one is retiring.
    KeyRotated,
    /// A transport certificate was issued and is valid.
    CertificateIssued,
    /// The transport certificate was renewed.
    CertificateRotated,
    /// Every configured token is in the credentials Secret.
    TokensIssued,
    /// The client was deleted at the AS when the TppClient was deleted.
    Deregistered,
    /// A new key waits for a human to upload the JWKS and approve the kid.
    AwaitingKeyApproval,
    /// The spec is valid for the schema but cannot work.
    InvalidSpec,
    /// A reference names another namespace.
    CrossNamespaceReference,
    /// The referenced AuthorizationServer does not exist.
    AuthorizationServerNotFound,
    /// The ClusterAuthorizationServer does not serve this namespace.
    NamespaceNotAllowed,
    /// A referenced Secret, ConfigMap or key is missing.
    ReferenceNotFound,
    /// The AS's discovery document could not be fetched or read.
    DiscoveryFailed,
    /// The discovery document's issuer differs from `spec.issuer`.
    IssuerMismatch,
    /// The AS does not advertise what the client needs.
    PreflightFailed,
    /// The AS did not answer, or answered 5xx.
    AuthorizationServerUnavailable,
    /// The AS answered 429.
    RateLimited,
    /// The TLS handshake with the AS failed.
    TlsFailure,
    /// The CA bundle or client certificate cannot configure TLS.
    InvalidTransportConfig,
    /// An mTLS endpoint was called without a client certificate.
    ClientCertificateMissing,
    /// The AS refused registration or an RFC 7592 update.
    RegistrationRejected,
    /// Registration failed without an answer from the AS that says why.
    RegistrationFailed,
    /// The AS's registration_client_uri points outside its registration endpoint.
    ForeignRegistrationUri,
    /// An AS URL names a host the egress policy (`--allowed-as-hosts`) does not allow.
    EgressRefused,
    /// The AS's registration answer could not be written to `<name>-registration`.
    PersistRegistrationFailed,
    /// A registration was lost (a request without a persisted answer, or a refused registration
    /// access token); a new one is made.
    RegistrationLost,
    /// More registration requests of unknown outcome (sent, no answer persisted) than
    /// `registration.maxUnknownAttempts` allows: no further attempt until a human checked the AS
    /// and set the `tpp.dev/retry-registration` annotation.
    RegistrationOutcomeUnknown,
    /// The AS refused the registration access token on evidence (an RFC 7592 call and a GET
    /// with the stored token): with `registration.onLost: Fail` the registration is no longer
    /// managed; the client id named is left at the AS.
    RegistrationAccessTokenLost,
    /// `<name>-registration` (client id, registration access token) is gone while the status
    /// names a registered client: with `registration.onLost: Fail` nothing is registered until a
    /// human decides; the client id named is left at the AS.
    RegistrationSecretLost,
    /// The registration access token in `<name>-registration` is not the one the operator
    /// received from the AS (it does not match `registration_access_token.sha256`, written in
    /// the same apply): no RFC 7592 call carries it and nothing is registered in its place;
    /// tokens keep coming for the client id.
    RegistrationAccessTokenOverwritten,
    /// The AS refused the token minted with a new signing key or transport certificate before
    /// the switch to it (the self-test): the old material stays in use, the switch waits and is
    /// tested again after a backoff.
    SelfTestRefused,
    /// The hub refused the onboarding request.
    HubOnboardingRejected,
    /// Onboarding at the hub failed without an answer that says why.
    HubOnboardingFailed,
    /// The token endpoint refused the client (`invalid_client`).
    InvalidClient,
    /// The token request failed.
    TokenRequestFailed,
    /// The token endpoint's answer is unusable.
    InvalidTokenResponse,
    /// The client assertion could not be minted.
    ClientAssertionFailed,
    /// Token introspection failed.
    IntrospectionFailed,
    /// Token revocation failed.
    RevocationFailed,
    /// A pushed authorization request failed.
    PushedAuthorizationFailed,
    /// The RFC 7592 DELETE failed at deletion.
    DeregistrationFailed,
    /// A key could not be generated.
    KeyGenerationFailed,
    /// A stored private key could not be read.
    PrivateKeyInvalid,
    /// A JWK could not be read.
    JwkInvalid,
    /// Two keys have the same kid.
    DuplicateKid,
    /// Signing failed.
    SigningFailed,
    /// A JWT could not be built.
    JwtBuildFailed,
    /// The client assertion lifetime is out of range.
    AssertionLifetimeInvalid,
    /// The client assertion's `iat` backdate is out of range.
    AssertionBackdateInvalid,
    /// A JWT (e.g. the software statement) could not be read.
    JwtInvalid,
    /// `registration.metadata` sets a claim the operator manages.
    RegistrationMetadataInvalid,
    /// A signature did not verify.
    SignatureInvalid,
    /// `transportCertificate.subject` is not a valid distinguished name.
    SubjectInvalid,
    /// The transport certificate parameters are out of range.
    CertificateParamsInvalid,
    /// The transport certificate could not be issued.
    CertificateGenerationFailed,
    /// The transport certificate is unreadable, expired, or its key does not match.
    CertificateInvalid,
    /// A read from the Kubernetes API failed.
    ReadFailed,
    /// A write to the Kubernetes API failed.
    WriteFailed,
    /// The persisted state in one of the client's Secrets is unreadable.
    CorruptState,
    /// The operator is shutting down.
    ShuttingDown,
    /// A reconcile took longer than its bound.
    ReconcileTimeout,
    /// The `<name>-jwks` ConfigMap was changed or deleted by someone else and was restored
    /// from the key state.
    JwksRestored,
    /// An object the client would write (`<name>-credentials`, ...) exists and is neither owned
    /// by this TppClient nor labelled for it: nothing is written.
    NameConflict,
    /// A verb annotation (`tpp.dev/rotate-keys`, `tpp.dev/renew-certificate`,
    /// `tpp.dev/renew-tokens`) carries a new value, but the same verb was acted on less than
    /// 10 minutes ago: the request waits until the instant the event names.
    TriggerDeferred,
}

impl Reason {
    /// Every reason, for the catalogue test and documentation.
    pub const ALL: [Reason; 69] = [
        Reason::Reconciled,
        Reason::Pending,
        Reason::Suspended,
        Reason::AuthorizationServerNotReady,
        Reason::Registered,
        Reason::KeyActive,
        Reason::KeyRotated,
        Reason::CertificateIssued,
        Reason::CertificateRotated,
        Reason::TokensIssued,
        Reason::Deregistered,
        Reason::AwaitingKeyApproval,
        Reason::InvalidSpec,
        Reason::CrossNamespaceReference,
        Reason::AuthorizationServerNotFound,
        Reason::NamespaceNotAllowed,
        Reason::ReferenceNotFound,
        Reason::DiscoveryFailed,
        Reason::IssuerMismatch,
        Reason::PreflightFailed,
        Reason::AuthorizationServerUnavailable,
        Reason::RateLimited,
        Reason::TlsFailure,
        Reason::InvalidTransportConfig,
        Reason::ClientCertificateMissing,
        Reason::RegistrationRejected,
        Reason::RegistrationFailed,
        Reason::ForeignRegistrationUri,
        Reason::EgressRefused,
        Reason::PersistRegistrationFailed,
        Reason::RegistrationLost,
        Reason::RegistrationOutcomeUnknown,
        Reason::RegistrationAccessTokenLost,
        Reason::RegistrationSecretLost,
        Reason::RegistrationAccessTokenOverwritten,
        Reason::SelfTestRefused,
        Reason::HubOnboardingRejected,
        Reason::HubOnboardingFailed,
        Reason::InvalidClient,
        Reason::TokenRequestFailed,
        Reason::InvalidTokenResponse,
        Reason::ClientAssertionFailed,
        Reason::IntrospectionFailed,
        Reason::RevocationFailed,
        Reason::PushedAuthorizationFailed,
        Reason::DeregistrationFailed,
        Reason::KeyGenerationFailed,
        Reason::PrivateKeyInvalid,
        Reason::JwkInvalid,
        Reason::DuplicateKid,
        Reason::SigningFailed,
        Reason::JwtBuildFailed,
        Reason::AssertionLifetimeInvalid,
        Reason::AssertionBackdateInvalid,
        Reason::JwtInvalid,
        Reason::RegistrationMetadataInvalid,
        Reason::SignatureInvalid,
        Reason::SubjectInvalid,
        Reason::CertificateParamsInvalid,
        Reason::CertificateGenerationFailed,
        Reason::CertificateInvalid,
        Reason::ReadFailed,
        Reason::WriteFailed,
        Reason::CorruptState,
        Reason::ShuttingDown,
        Reason::ReconcileTimeout,
        Reason::JwksRestored,
        Reason::NameConflict,
        Reason::TriggerDeferred,
    ];

    /// The PascalCase name, as in conditions, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reconciled => "Reconciled",
            Reason::Pending => "Pending",
            Reason::Suspended => "Suspended",
            Reason::AuthorizationServerNotReady => "AuthorizationServerNotReady",
            Reason::Registered => "Registered",
            Reason::KeyActive => "KeyActive",
            Reason::KeyRotated => "KeyRotated",
            Reason::CertificateIssued => "CertificateIssued",
            Reason::CertificateRotated => "CertificateRotated",
            Reason::TokensIssued => "TokensIssued",
            Reason::Deregistered => "Deregistered",
            Reason::AwaitingKeyApproval => "AwaitingKeyApproval",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::CrossNamespaceReference => "CrossNamespaceReference",
            Reason::AuthorizationServerNotFound => "AuthorizationServerNotFound",
            Reason::NamespaceNotAllowed => "NamespaceNotAllowed",
            Reason::ReferenceNotFound => "ReferenceNotFound",
            Reason::DiscoveryFailed => "DiscoveryFailed",
            Reason::IssuerMismatch => "IssuerMismatch",
            Reason::PreflightFailed => "PreflightFailed",
            Reason::AuthorizationServerUnavailable => "AuthorizationServerUnavailable",
            Reason::RateLimited => "RateLimited",
            Reason::TlsFailure => "TlsFailure",
            Reason::InvalidTransportConfig => "InvalidTransportConfig",
            Reason::ClientCertificateMissing => "ClientCertificateMissing",
            Reason::RegistrationRejected => "RegistrationRejected",
            Reason::RegistrationFailed => "RegistrationFailed",
            Reason::ForeignRegistrationUri => "ForeignRegistrationUri",
            Reason::EgressRefused => "EgressRefused",
            Reason::PersistRegistrationFailed => "PersistRegistrationFailed",
            Reason::RegistrationLost => "RegistrationLost",
            Reason::RegistrationOutcomeUnknown => "RegistrationOutcomeUnknown",
            Reason::RegistrationAccessTokenLost => "RegistrationAccessTokenLost",
            Reason::RegistrationSecretLost => "RegistrationSecretLost",
            Reason::RegistrationAccessTokenOverwritten => "RegistrationAccessTokenOverwritten",
            Reason::SelfTestRefused => "SelfTestRefused",
            Reason::HubOnboardingRejected => "HubOnboardingRejected",
            Reason::HubOnboardingFailed => "HubOnboardingFailed",
            Reason::InvalidClient => "InvalidClient",
            Reason::TokenRequestFailed => "TokenRequestFailed",
            Reason::InvalidTokenResponse => "InvalidTokenResponse",
            Reason::ClientAssertionFailed => "ClientAssertionFailed",
            Reason::IntrospectionFailed => "IntrospectionFailed",
            Reason::RevocationFailed => "RevocationFailed",
            Reason::PushedAuthorizationFailed => "PushedAuthorizationFailed",
            Reason::DeregistrationFailed => "DeregistrationFailed",
            Reason::KeyGenerationFailed => "KeyGenerationFailed",
            Reason::PrivateKeyInvalid => "PrivateKeyInvalid",
            Reason::JwkInvalid => "JwkInvalid",
            Reason::DuplicateKid => "DuplicateKid",
            Reason::SigningFailed => "SigningFailed",
            Reason::JwtBuildFailed => "JwtBuildFailed",
            Reason::AssertionLifetimeInvalid => "AssertionLifetimeInvalid",
            Reason::AssertionBackdateInvalid => "AssertionBackdateInvalid",
            Reason::JwtInvalid => "JwtInvalid",
            Reason::RegistrationMetadataInvalid => "RegistrationMetadataInvalid",
            Reason::SignatureInvalid => "SignatureInvalid",
            Reason::SubjectInvalid => "SubjectInvalid",
            Reason::CertificateParamsInvalid => "CertificateParamsInvalid",
            Reason::CertificateGenerationFailed => "CertificateGenerationFailed",
            Reason::CertificateInvalid => "CertificateInvalid",
            Reason::ReadFailed => "ReadFailed",
            Reason::WriteFailed => "WriteFailed",
            Reason::CorruptState => "CorruptState",
            Reason::ShuttingDown => "ShuttingDown",
            Reason::ReconcileTimeout => "ReconcileTimeout",
            Reason::JwksRestored => "JwksRestored",
            Reason::NameConflict => "NameConflict",
            Reason::TriggerDeferred => "TriggerDeferred",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_reason_has_a_distinct_pascal_case_name_equal_to_its_variant() {
        let names: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
            assert!(
                reason
                    .as_str()
                    .starts_with(|c: char| c.is_ascii_uppercase())
            );
            assert!(reason.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn the_troubleshooting_guide_lists_every_reason_with_a_cause_and_a_remedy() {
        let guide = include_str!("../../docs/troubleshooting.md");
        let mut missing = vec![];
        for reason in Reason::ALL {
            let row = guide
                .lines()
                .find(|l| l.starts_with(&format!("| `{reason}` |")));
            match row {
                Some(row) => {
                    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                    // "", reason, cause, what to do, ""
                    assert!(
                        cells.len() >= 5 && !cells[2].is_empty() && !cells[3].is_empty(),
                        "{reason}: the row needs a cause and what to do: {row}"
                    );
                }
                None => missing.push(reason.as_str()),
            }
        }
        assert!(
            missing.is_empty(),
            "docs/troubleshooting.md lacks rows for {missing:?}"
        );
    }

    #[test]
    fn the_troubleshooting_guide_lists_no_reason_the_operator_does_not_have() {
        let guide = include_str!("../../docs/troubleshooting.md");
        for line in guide.lines().filter(|l| l.starts_with("| `")) {
            let name = line
                .trim_start_matches("| `")
                .split('`')
                .next()
                .unwrap_or_default();
            assert!(
                Reason::ALL.iter().any(|r| r.as_str() == name),
                "docs/troubleshooting.md lists {name}, which is no reason"
            );
        }
    }
}
