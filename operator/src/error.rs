//! The reconciler's error type: every failure named for the step that failed, classified
//! transient (retry with backoff) or permanent (set the condition, wait for a change), with a
//! PascalCase reason shared by conditions, events and metrics. Messages never carry secrets:
//! the wrapped errors are built not to (oauth scrubs bodies; identity prints kids only).

use std::time::Duration;

use crate::{crd::condition::reasons, identity::IdentityError, oauth::OauthError};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is valid for the schema but cannot work (e.g. a cross-namespace reference).
    #[error("{message}")]
    InvalidSpec {
        /// Reason for conditions.
        reason: &'static str,
        /// What to fix.
        message: String,
    },
    /// The referenced AuthorizationServer is missing, not allowed, or unusable.
    #[error("{message}")]
    AuthorizationServer {
        /// Reason for conditions.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A referenced Secret/ConfigMap or key is missing.
    #[error("{0}")]
    ReferenceNotFound(String),
    /// Discovery failed or the issuer did not match.
    #[error("discovery of the authorization server failed: {0}")]
    Discovery(#[source] OauthError),
    /// The AS does not advertise what the client needs.
    #[error("preflight against the authorization server's discovery document failed: {0}")]
    Preflight(String),
    /// Registration failed.
    #[error("registration failed: {0}")]
    RegisterClient(#[source] OauthError),
    /// Updating the registration (RFC 7592) failed.
    #[error("updating the registration failed: {0}")]
    UpdateRegistration(#[source] OauthError),
    /// The token request failed.
    #[error("token request failed: {0}")]
    FetchToken(#[source] OauthError),
    /// Key, certificate or JWT work failed.
    #[error("{step}: {source}")]
    Identity {
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: IdentityError,
    },
    /// A Kubernetes read failed.
    #[error("reading {what} failed: {source}")]
    ReadObject {
        /// What was read.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A server-side apply failed.
    #[error("writing {what} failed: {source}")]
    ApplyObject {
        /// What was written.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Persisted state could not be parsed.
    #[error("the persisted state in {what} is unreadable: {message}")]
    CorruptState {
        /// Which object.
        what: String,
        /// Parser message.
        message: String,
    },
    /// A reconcile took longer than its bound and was abandoned (retried with backoff).
    #[error("the reconcile took longer than {0:?} and was abandoned")]
    ReconcileTimeout(Duration),
    /// The blocking crypto pool is gone (shutdown).
    #[error("the crypto worker pool is shut down")]
    CryptoPool,
}

impl Error {
    /// Whether retrying later may succeed without a change to the spec.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Discovery(e)
            | Error::RegisterClient(e)
            | Error::UpdateRegistration(e)
            | Error::FetchToken(e) => e.is_transient(),
            Error::ReadObject { source, .. } | Error::ApplyObject { source, .. } => {
                kube_transient(source)
            }
            Error::Identity { source, .. } => source.is_transient(),
            Error::ReferenceNotFound(_) | Error::CryptoPool | Error::ReconcileTimeout(_) => true,
            Error::InvalidSpec { .. }
            | Error::AuthorizationServer { .. }
            | Error::Preflight(_)
            | Error::CorruptState { .. } => false,
        }
    }

    /// How long the AS asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Discovery(e)
            | Error::RegisterClient(e)
            | Error::UpdateRegistration(e)
            | Error::FetchToken(e) => e.retry_after(),
            _ => None,
        }
    }

    /// PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec { reason, .. } | Error::AuthorizationServer { reason, .. } => reason,
            Error::ReferenceNotFound(_) => reasons::REFERENCE_NOT_FOUND,
            Error::Discovery(e) => match e.reason() {
                "IssuerMismatch" => reasons::ISSUER_MISMATCH,
                "DiscoveryFailed" => reasons::DISCOVERY_FAILED,
                other => other,
            },
            Error::Preflight(_) => reasons::PREFLIGHT_FAILED,
            Error::RegisterClient(e) | Error::UpdateRegistration(e) => match e.reason() {
                "RateLimited" | "AsUnavailable" | "TlsFailure" => e.reason(),
                _ => reasons::REGISTRATION_REJECTED,
            },
            Error::FetchToken(e) => match e.reason() {
                "RateLimited" => reasons::RATE_LIMITED,
                "AsUnavailable" => reasons::AS_UNAVAILABLE,
                other => other,
            },
            Error::Identity { source, .. } => source.reason(),
            Error::ReadObject { .. } => "ReadFailed",
            Error::ApplyObject { .. } => "WriteFailed",
            Error::CorruptState { .. } => "CorruptState",
            Error::CryptoPool => "ShuttingDown",
            Error::ReconcileTimeout(_) => "ReconcileTimeout",
        }
    }

    /// The message with its whole cause chain, capped for events (1 kB) and conditions.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        if out.len() > 1000 {
            let mut cut = 1000;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }
}

fn kube_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_not_retried_and_name_their_reason() {
        let e = Error::InvalidSpec {
            reason: reasons::CROSS_NAMESPACE_REFERENCE,
            message: "no".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "CrossNamespaceReference");
        assert!(!Error::Preflight("PAR".into()).is_transient());
    }

    #[test]
    fn conflicts_and_server_errors_from_the_apiserver_are_transient() {
        let api = |code| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    ..Default::default()
                }
                .boxed(),
            )
        };
        assert!(
            Error::ApplyObject {
                what: "x".into(),
                source: api(409)
            }
            .is_transient()
        );
        assert!(
            Error::ApplyObject {
                what: "x".into(),
                source: api(503)
            }
            .is_transient()
        );
        assert!(
            !Error::ApplyObject {
                what: "x".into(),
                source: api(403)
            }
            .is_transient()
        );
    }

    #[test]
    fn the_chain_is_capped_for_events() {
        let e = Error::Preflight("x".repeat(5000));
        assert!(e.chain().len() <= 1004);
    }
}
