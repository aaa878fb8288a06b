//! The reconciler's error type: every failure named for the step that failed (a typed
//! [`Stage`] for key and certificate work), classified transient (retry with backoff) or
//! permanent (set the condition, wait for a change), with a [`Reason`] shared by conditions,
//! events and metrics, and the condition it shows at ([`Error::condition`]). Messages never
//! carry secrets: the wrapped errors are built not to (oauth scrubs bodies; identity prints
//! kids only).

use std::{fmt, time::Duration};

use crate::{crd::condition::types, identity::IdentityError, oauth::OauthError, reason::Reason};

/// Which key, certificate or JWT work failed: the condition it shows at, and its wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Generating a key.
    GenerateKey,
    /// Exporting a key.
    ExportKey,
    /// Reading the active key.
    ReadActiveKey,
    /// Reading a key to publish.
    ReadKeyToPublish,
    /// Building the JWKS.
    BuildJwks,
    /// Loading the signing key.
    LoadSigningKey,
    /// Signing the registration request.
    SignRegistrationRequest,
    /// Reading transportCertificate.subject.
    ReadCertificateSubject,
    /// Issuing the transport certificate.
    IssueCertificate,
    /// Reading the transport certificate.
    ReadTransportCertificate,
    /// Checking the transport key.
    CheckTransportKey,
}

impl Stage {
    /// The condition type a failure at this stage belongs to.
    pub fn condition(self) -> &'static str {
        match self {
            Stage::GenerateKey
            | Stage::ExportKey
            | Stage::ReadActiveKey
            | Stage::ReadKeyToPublish
            | Stage::BuildJwks
            | Stage::LoadSigningKey => types::SIGNING_KEY_READY,
            Stage::SignRegistrationRequest => types::REGISTERED,
            Stage::ReadCertificateSubject
            | Stage::IssueCertificate
            | Stage::ReadTransportCertificate
            | Stage::CheckTransportKey => types::TRANSPORT_CERTIFICATE_READY,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::GenerateKey => "generating a key",
            Stage::ExportKey => "exporting a key",
            Stage::ReadActiveKey => "reading the active key",
            Stage::ReadKeyToPublish => "reading a key to publish",
            Stage::BuildJwks => "building the JWKS",
            Stage::LoadSigningKey => "loading the signing key",
            Stage::SignRegistrationRequest => "signing the registration request",
            Stage::ReadCertificateSubject => "reading transportCertificate.subject",
            Stage::IssueCertificate => "issuing the transport certificate",
            Stage::ReadTransportCertificate => "reading the transport certificate",
            Stage::CheckTransportKey => "checking the transport key",
        })
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is valid for the schema but cannot work (e.g. a cross-namespace reference).
    #[error("{message}")]
    InvalidSpec {
        /// Reason for conditions.
        reason: Reason,
        /// What to fix.
        message: String,
    },
    /// Registration cannot go on without a human (the planner halted it): what to check at
    /// the AS and how to go on are in the message.
    #[error("{message}")]
    RegistrationHalted {
        /// `RegistrationOutcomeUnknown` or `RegistrationAccessTokenLost`.
        reason: Reason,
        /// What is left at the AS and what to do.
        message: String,
    },
    /// The referenced AuthorizationServer is missing, not allowed, or unusable.
    #[error("{message}")]
    AuthorizationServer {
        /// Reason for conditions.
        reason: Reason,
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
    #[error("{stage}: {source}")]
    Identity {
        /// What was being done.
        stage: Stage,
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
    /// An object the client writes exists and belongs to someone else: nothing was written.
    #[error(transparent)]
    NameConflict(#[from] crate::store::ownership::NameConflict),
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
            // Retried with backoff: deleting or renaming the other object is not a change the
            // operator watches (it is not labelled as ours).
            Error::ReferenceNotFound(_)
            | Error::CryptoPool
            | Error::ReconcileTimeout(_)
            | Error::NameConflict(_) => true,
            Error::InvalidSpec { .. }
            | Error::RegistrationHalted { .. }
            | Error::AuthorizationServer { .. }
            | Error::Preflight(_)
            | Error::CorruptState { .. } => false,
        }
    }

    /// Whether the failure is an answer (or silence) of the authorization server, so that the
    /// backoff applies to calling it again.
    pub fn from_authorization_server(&self) -> bool {
        matches!(
            self,
            Error::Discovery(_)
                | Error::RegisterClient(_)
                | Error::UpdateRegistration(_)
                | Error::FetchToken(_)
        )
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

    /// The `x-fapi-interaction-id` of the AS answer behind this error, for logs only.
    pub fn interaction_id(&self) -> Option<&str> {
        match self {
            Error::Discovery(e)
            | Error::RegisterClient(e)
            | Error::UpdateRegistration(e)
            | Error::FetchToken(e) => e.interaction_id(),
            _ => None,
        }
    }

    /// The reason for conditions, events and metrics: an AS outage is
    /// `AuthorizationServerUnavailable` at every step.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidSpec { reason, .. }
            | Error::RegistrationHalted { reason, .. }
            | Error::AuthorizationServer { reason, .. } => *reason,
            Error::ReferenceNotFound(_) => Reason::ReferenceNotFound,
            Error::Discovery(e) | Error::FetchToken(e) => e.reason(),
            Error::Preflight(_) => Reason::PreflightFailed,
            Error::RegisterClient(e) | Error::UpdateRegistration(e) => match e.reason() {
                reason @ (Reason::RateLimited
                | Reason::AuthorizationServerUnavailable
                | Reason::TlsFailure
                | Reason::PersistRegistrationFailed
                | Reason::HubOnboardingRejected) => reason,
                _ => Reason::RegistrationRejected,
            },
            Error::Identity { source, .. } => source.reason(),
            Error::ReadObject { .. } => Reason::ReadFailed,
            Error::ApplyObject { .. } => Reason::WriteFailed,
            Error::NameConflict(_) => Reason::NameConflict,
            Error::CorruptState { .. } => Reason::CorruptState,
            Error::CryptoPool => Reason::ShuttingDown,
            Error::ReconcileTimeout(_) => Reason::ReconcileTimeout,
        }
    }

    /// The condition type of a TppClient this failure shows at (`Ready` when no narrower one).
    pub fn condition(&self) -> &'static str {
        match self {
            Error::RegisterClient(_)
            | Error::UpdateRegistration(_)
            | Error::RegistrationHalted { .. } => types::REGISTERED,
            Error::FetchToken(_) => types::TOKENS_READY,
            Error::Identity { stage, .. } => stage.condition(),
            _ => types::READY,
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

impl Error {
    /// A failed write of `what`: [`Error::NameConflict`] when the name belongs to someone
    /// else, else [`Error::ApplyObject`].
    pub fn write(what: String, e: crate::store::apply::WriteError) -> Self {
        match e {
            crate::store::apply::WriteError::Kube(source) => Error::ApplyObject { what, source },
            crate::store::apply::WriteError::NameConflict(c) => Error::NameConflict(c),
        }
    }
}

/// Whether a Kubernetes API failure is retried on the client's backoff (2 s doubling to 60 s)
/// rather than the 15-minute pause of a permanent failure. 401 and 403 are among them: a
/// kube-apiserver that has just restarted answers them until its authenticator and RBAC
/// caches are filled (seen in `e2e/tests/control_plane_faults.rs`: "clusterrole … not found"
/// for seconds after `/readyz` said ok), and a fixed RBAC binding is not an event the operator
/// watches; a real misconfiguration stays reported in the condition, retried once a minute.
fn kube_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 401 | 403 | 409 | 429) || s.code >= 500,
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
            reason: Reason::CrossNamespaceReference,
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
                source: api(422)
            }
            .is_transient(),
            "an invalid object stays invalid"
        );
    }

    #[test]
    fn an_rbac_refusal_from_the_apiserver_is_retried_on_the_backoff_not_paused() {
        let api = |code| {
            kube::Error::Api(
                kube::core::Status {
                    code,
                    ..Default::default()
                }
                .boxed(),
            )
        };
        for code in [401, 403] {
            assert!(
                Error::ReadObject {
                    what: "x".into(),
                    source: api(code)
                }
                .is_transient(),
                "{code} right after an apiserver restart must not pause the client 15 minutes"
            );
        }
    }

    #[test]
    fn a_name_conflict_is_retried_and_names_the_object() {
        let e = Error::write(
            "x".into(),
            crate::store::apply::WriteError::NameConflict(crate::store::ownership::NameConflict {
                kind: "Secret",
                name: "pay-credentials".into(),
            }),
        );
        assert_eq!(e.reason(), Reason::NameConflict);
        // Deleting the other object is not an event the operator watches: retry with backoff.
        assert!(e.is_transient());
        assert!(e.chain().contains("Secret \"pay-credentials\""));
    }

    #[test]
    fn the_chain_is_capped_for_events() {
        let e = Error::Preflight("x".repeat(5000));
        assert!(e.chain().len() <= 1004);
    }
}
