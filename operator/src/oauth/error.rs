//! [`OauthError`]: every failure of a call to the authorization server, named for the failed
//! step and classified transient (back off and retry) or permanent (fix spec, credential or
//! registration first), as tabled in docs/architecture.md ("Failures"). Pure; no I/O.
//!
//! Redaction contract: no variant holds a request body, a response body, a token, a
//! registration access token, a client assertion or a key. Response bodies reach an error only
//! as the parsed, sanitised [`ErrorBody`] fields (and not at all from a discovery request: that
//! server is not yet trusted); JSON parse failures keep only the category and position (serde
//! messages can quote input).
//!
//! Stability contract: the Display of every variant is the same for the same failure; no
//! per-request value (the `x-fapi-interaction-id`, a time) enters it, because conditions and
//! events carry these messages and a message that changes on every attempt makes every status
//! write a change (and so another reconcile: the discovery storm of docs/reliability.md). The
//! interaction id is kept in the variant for logs ([`OauthError::interaction_id`]).

use std::time::Duration;

use jiff::Timestamp;

use super::client_auth::MintError;
use super::registration::PersistError;
use super::wire::{ErrorBody, parse_retry_after};
use crate::reason::Reason;

/// The step of the OAuth conversation that failed; drives [`OauthError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetching the discovery document.
    Discovery,
    /// Creating a client (RFC 7591 JSON or a signed request).
    Register,
    /// RFC 7592 GET of the client configuration.
    ReadRegistration,
    /// RFC 7592 PUT of the client configuration.
    UpdateRegistration,
    /// RFC 7592 DELETE of the client.
    DeleteRegistration,
    /// Ozone hub onboarding (`POST {}` over mTLS).
    HubOnboarding,
    /// Token endpoint (`client_credentials`).
    Token,
    /// RFC 7662 introspection.
    Introspection,
    /// RFC 7009 revocation.
    Revocation,
    /// RFC 9126 pushed authorization request.
    PushedAuthorization,
}

impl Step {
    /// PascalCase reason for a failure at this step that has no more specific reason.
    pub fn reason(self) -> Reason {
        match self {
            Step::Discovery => Reason::DiscoveryFailed,
            Step::Register
            | Step::ReadRegistration
            | Step::UpdateRegistration
            | Step::DeleteRegistration => Reason::RegistrationFailed,
            Step::HubOnboarding => Reason::HubOnboardingFailed,
            Step::Token => Reason::TokenRequestFailed,
            Step::Introspection => Reason::IntrospectionFailed,
            Step::Revocation => Reason::RevocationFailed,
            Step::PushedAuthorization => Reason::PushedAuthorizationFailed,
        }
    }

    fn rejected_reason(self) -> Reason {
        match self {
            Step::Register
            | Step::ReadRegistration
            | Step::UpdateRegistration
            | Step::DeleteRegistration => Reason::RegistrationRejected,
            Step::HubOnboarding => Reason::HubOnboardingRejected,
            other => other.reason(),
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Discovery => "discovery",
            Step::Register => "client registration",
            Step::ReadRegistration => "reading the client registration",
            Step::UpdateRegistration => "updating the client registration",
            Step::DeleteRegistration => "deleting the client registration",
            Step::HubOnboarding => "hub onboarding",
            Step::Token => "token request",
            Step::Introspection => "token introspection",
            Step::Revocation => "token revocation",
            Step::PushedAuthorization => "pushed authorization request",
        })
    }
}

/// A failed call to the authorization server.
#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    /// A configured or advertised URL does not parse.
    #[error("{step}: invalid {what} url")]
    InvalidUrl {
        step: Step,
        what: &'static str,
        #[source]
        source: url::ParseError,
    },
    /// A host the operator's egress policy refuses (see [`super::egress`]): nothing is sent.
    #[error(
        "{step}: the operator does not call {host}: loopback, link-local, private-range and \
         cluster-internal hosts are refused unless listed in {flag}",
        flag = super::egress::FLAG
    )]
    EgressRefused { step: Step, host: String },
    /// A name the policy allows as written, whose every DNS address it refuses (see
    /// [`super::egress::EgressResolver`]): nothing is sent.
    #[error(
        "{step}: the operator does not call {host}: it resolves only to loopback, link-local, \
         private-range or unspecified addresses ({addrs}), which are refused unless the host or \
         the address is listed in {flag}",
        flag = super::egress::FLAG
    )]
    EgressResolvedInternal {
        step: Step,
        host: String,
        addrs: String,
    },
    /// A URL that is not `https`: nothing is sent over plain HTTP.
    #[error("{step}: refusing to call {origin} without tls")]
    InsecureUrl { step: Step, origin: String },
    /// The discovery document lacks an endpoint this call needs.
    #[error("{step}: the authorization server does not advertise a {endpoint}")]
    EndpointNotAdvertised { step: Step, endpoint: &'static str },
    /// The CA bundle, client certificate or key could not be turned into a TLS configuration.
    #[error("invalid transport configuration: {what}")]
    TransportConfig {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The call needs mTLS but the client has no certificate.
    #[error("{step}: a client certificate is required (mtls) but none is configured")]
    ClientCertificateMissing { step: Step },
    /// TCP/DNS connection failure.
    #[error("{step}: could not connect to {origin}")]
    Connect {
        step: Step,
        origin: String,
        #[source]
        source: reqwest::Error,
    },
    /// Connect or total timeout elapsed.
    #[error("{step}: request to {origin} timed out")]
    Timeout {
        step: Step,
        origin: String,
        #[source]
        source: reqwest::Error,
    },
    /// TLS handshake failed (untrusted server, rejected client certificate, alert).
    #[error("{step}: tls handshake with {origin} failed: {detail}")]
    Tls {
        step: Step,
        origin: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// Other transport failure (connection reset, broken body stream).
    #[error("{step}: request to {origin} failed")]
    Http {
        step: Step,
        origin: String,
        #[source]
        source: reqwest::Error,
    },
    /// The response body exceeded the configured limit; reading stopped there.
    #[error("{step}: response body from {origin} exceeds {limit} bytes")]
    BodyTooLarge {
        step: Step,
        origin: String,
        limit: usize,
    },
    /// A success body is not JSON (only category and position are kept).
    #[error(
        "{step}: response is not valid json ({category} error at line {line}, column {column})"
    )]
    InvalidJson {
        step: Step,
        category: &'static str,
        line: usize,
        column: usize,
    },
    /// A success body is JSON but misses or mistypes a required field.
    #[error("{step}: invalid response: {what}")]
    InvalidResponse { step: Step, what: &'static str },
    /// The token response misses `access_token`, has a non-Bearer type or a bad `expires_in`.
    #[error("invalid token response: {what}")]
    InvalidTokenResponse { what: &'static str },
    /// HTTP 429.
    #[error("{step}: rate limited by the authorization server (http 429)")]
    RateLimited {
        step: Step,
        retry_after: Option<Duration>,
        interaction_id: String,
    },
    /// HTTP 5xx or 408.
    #[error("{step}: authorization server unavailable (http {status})")]
    Unavailable {
        step: Step,
        status: u16,
        retry_after: Option<Duration>,
        interaction_id: String,
    },
    /// Any other non-success status, with the parsed OAuth error fields.
    #[error("{step}: rejected with http {status}: {body}")]
    Rejected {
        step: Step,
        status: u16,
        body: ErrorBody,
        interaction_id: String,
        /// The caller said a new signing key or registration may not have reached the AS yet.
        within_jwks_propagation: bool,
    },
    /// The discovery document names another issuer.
    #[error(
        "discovery document issuer {found:?} does not equal the configured issuer {expected:?}"
    )]
    IssuerMismatch { expected: String, found: String },
    /// A `registration_client_uri` on another origin than the AS: a RAT is never sent there.
    #[error(
        "registration client uri origin {found} is neither the registration endpoint's nor the issuer's origin"
    )]
    ForeignRegistrationUri { found: String },
    /// The persistence callback failed; the caller must not assume the new RAT is stored.
    #[error("could not persist the registration response")]
    PersistRegistration {
        #[source]
        source: PersistError,
    },
    /// A failpoint (`failpoints` feature, docs/reliability.md) failed the call: before it was
    /// sent, or after its answer arrived (the answer is then lost, like a dropped connection).
    #[error("{step}: failpoint {failpoint} injected a failure")]
    Injected { step: Step, failpoint: &'static str },
    /// The assertion minter failed.
    #[error("could not mint a client assertion")]
    MintAssertion {
        #[source]
        source: MintError,
    },
}

impl OauthError {
    /// Classifies a non-success HTTP response.
    pub fn from_status(
        step: Step,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
        interaction_id: &str,
        now: Timestamp,
    ) -> Self {
        let retry_after = retry_after.and_then(|v| parse_retry_after(v, now));
        let interaction_id = interaction_id.to_owned();
        match status {
            429 => OauthError::RateLimited {
                step,
                retry_after,
                interaction_id,
            },
            408 | 500..=599 => OauthError::Unavailable {
                step,
                status,
                retry_after,
                interaction_id,
            },
            _ => OauthError::Rejected {
                step,
                status,
                // A discovery answer comes from a server not yet shown to be the AS (its issuer
                // is unchecked; the URL may point anywhere a tenant chose): its body is not
                // echoed into conditions, events or logs, only its status (issue 13, item 5).
                body: if step == Step::Discovery {
                    ErrorBody::default()
                } else {
                    ErrorBody::parse(body)
                },
                interaction_id,
                within_jwks_propagation: false,
            },
        }
    }

    /// Records that the caller is inside a JWKS propagation window, which makes a later
    /// `invalid_client` transient (cache lag at the AS, docs/protocol.md §7).
    pub fn within_jwks_propagation(mut self, within: bool) -> Self {
        if let OauthError::Rejected {
            within_jwks_propagation,
            ..
        } = &mut self
        {
            *within_jwks_propagation = within;
        }
        self
    }

    /// Maps a serde_json failure without keeping its message.
    pub fn invalid_json(step: Step, err: &serde_json::Error) -> Self {
        let category = match err.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        OauthError::InvalidJson {
            step,
            category,
            line: err.line(),
            column: err.column(),
        }
    }

    /// True when retrying later (with backoff and a fresh assertion) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            OauthError::Connect { .. }
            | OauthError::Timeout { .. }
            | OauthError::Http { .. }
            | OauthError::RateLimited { .. }
            | OauthError::Unavailable { .. }
            | OauthError::Injected { .. }
            | OauthError::PersistRegistration { .. } => true,
            OauthError::Rejected {
                body,
                within_jwks_propagation,
                ..
            } => *within_jwks_propagation && body.is("invalid_client"),
            OauthError::MintAssertion { source } => source.is_transient(),
            _ => false,
        }
    }

    /// How long the AS asked us to wait (429/5xx `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OauthError::RateLimited { retry_after, .. }
            | OauthError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `x-fapi-interaction-id` of the answered request, for logs (never for conditions or
    /// events: see the module docs).
    pub fn interaction_id(&self) -> Option<&str> {
        match self {
            OauthError::RateLimited { interaction_id, .. }
            | OauthError::Unavailable { interaction_id, .. }
            | OauthError::Rejected { interaction_id, .. } => Some(interaction_id),
            _ => None,
        }
    }

    /// HTTP status of the response, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OauthError::RateLimited { .. } => Some(429),
            OauthError::Unavailable { status, .. } | OauthError::Rejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The OAuth `error` code (or hub `Code`) of a rejection.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            OauthError::Rejected { body, .. } => body.error.as_deref(),
            _ => None,
        }
    }

    /// Stable PascalCase cause for conditions, events and metric labels.
    pub fn reason(&self) -> Reason {
        match self {
            OauthError::Connect { .. }
            | OauthError::Timeout { .. }
            | OauthError::Http { .. }
            | OauthError::Injected { .. }
            | OauthError::Unavailable { .. } => Reason::AuthorizationServerUnavailable,
            OauthError::RateLimited { .. } => Reason::RateLimited,
            OauthError::Tls { .. } => Reason::TlsFailure,
            OauthError::TransportConfig { .. } => Reason::InvalidTransportConfig,
            OauthError::ClientCertificateMissing { .. } => Reason::ClientCertificateMissing,
            OauthError::IssuerMismatch { .. } => Reason::IssuerMismatch,
            OauthError::EgressRefused { .. } | OauthError::EgressResolvedInternal { .. } => {
                Reason::EgressRefused
            }
            OauthError::ForeignRegistrationUri { .. } => Reason::ForeignRegistrationUri,
            OauthError::PersistRegistration { .. } => Reason::PersistRegistrationFailed,
            OauthError::MintAssertion { .. } => Reason::ClientAssertionFailed,
            OauthError::InvalidTokenResponse { .. } => Reason::InvalidTokenResponse,
            OauthError::Rejected { step, body, .. } => {
                if *step == Step::Token && body.is("invalid_client") {
                    Reason::InvalidClient
                } else {
                    step.rejected_reason()
                }
            }
            OauthError::InvalidUrl { step, .. }
            | OauthError::InsecureUrl { step, .. }
            | OauthError::EndpointNotAdvertised { step, .. }
            | OauthError::BodyTooLarge { step, .. }
            | OauthError::InvalidJson { step, .. }
            | OauthError::InvalidResponse { step, .. } => step.reason(),
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
