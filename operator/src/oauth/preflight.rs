//! FAPI 2.0 preflight: compares a discovery document with what a client needs and lists every
//! mismatch as a typed [`Finding`] with a message naming it. Pure; no I/O.
//!
//! Absent `*_supported` lists count as "not advertised" (RFC 8414 gives no useful default for
//! algorithms and a default without `client_credentials` for grants), so they produce findings.

use super::metadata::{EndpointKind, ProviderMetadata};

/// What a client will use at the AS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNeeds {
    /// `private_key_jwt` or `tls_client_auth`.
    pub auth_method: String,
    /// Client assertion algorithm (only checked for `private_key_jwt`).
    pub signing_alg: String,
    /// Grant type used for tokens.
    pub grant: String,
    /// True for Dynamic, SignedRequest and HubOnboarding registration.
    pub registration_endpoint: bool,
    /// True under the FAPI 2.0 profile: cert-bound tokens and PAR are expected.
    pub fapi2: bool,
}

impl Default for ClientNeeds {
    fn default() -> Self {
        Self {
            auth_method: "private_key_jwt".into(),
            signing_alg: "PS256".into(),
            grant: "client_credentials".into(),
            registration_endpoint: false,
            fapi2: true,
        }
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The client cannot work against this AS.
    Error,
    /// The AS departs from the profile but the client can still work.
    Warning,
}

/// One mismatch between the discovery document and the client's needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// No token endpoint is advertised.
    TokenEndpointMissing,
    /// The client assertion algorithm is not in `token_endpoint_auth_signing_alg_values_supported`.
    AlgNotSupported { alg: String },
    /// The auth method is not in `token_endpoint_auth_methods_supported`.
    AuthMethodNotSupported { method: String },
    /// `tls_client_certificate_bound_access_tokens` is not `true`.
    CertBoundTokensNotAdvertised,
    /// `require_pushed_authorization_requests` is not `true`.
    ParNotRequired,
    /// No `pushed_authorization_request_endpoint`.
    ParEndpointMissing,
    /// The grant is not in `grant_types_supported`.
    GrantNotSupported { grant: String },
    /// The registration mode needs a `registration_endpoint`, and there is none.
    NoRegistrationEndpoint,
}

impl Finding {
    /// Whether the client can still work.
    pub fn severity(&self) -> Severity {
        match self {
            // PAR offered but optional: consent flows still work. No PAR at all under FAPI 2.0:
            // an error (set the AuthorizationServer's profile to None to accept such an AS).
            Finding::ParNotRequired => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::TokenEndpointMissing => f.write_str("the discovery document has no token_endpoint"),
            Finding::AlgNotSupported { alg } => write!(
                f,
                "client assertion algorithm {alg} is not in token_endpoint_auth_signing_alg_values_supported"
            ),
            Finding::AuthMethodNotSupported { method } => write!(
                f,
                "client authentication method {method} is not in token_endpoint_auth_methods_supported"
            ),
            Finding::CertBoundTokensNotAdvertised => f.write_str(
                "tls_client_certificate_bound_access_tokens is not true: tokens may not be bound to the transport certificate",
            ),
            Finding::ParNotRequired => f.write_str(
                "require_pushed_authorization_requests is not true, as fapi 2.0 expects",
            ),
            Finding::ParEndpointMissing => {
                f.write_str("the discovery document has no pushed_authorization_request_endpoint")
            }
            Finding::GrantNotSupported { grant } => {
                write!(f, "grant type {grant} is not in grant_types_supported")
            }
            Finding::NoRegistrationEndpoint => f.write_str(
                "the registration mode needs a registration_endpoint and the discovery document has none",
            ),
        }
    }
}

/// Every mismatch between `meta` and `needs`, in a stable order; empty when all is well.
pub fn preflight(meta: &ProviderMetadata, needs: &ClientNeeds) -> Vec<Finding> {
    let mut findings = Vec::new();
    if meta.endpoint(EndpointKind::Token).is_none() {
        findings.push(Finding::TokenEndpointMissing);
    }
    if !ProviderMetadata::supports(
        &meta.token_endpoint_auth_methods_supported,
        &needs.auth_method,
    ) {
        findings.push(Finding::AuthMethodNotSupported {
            method: needs.auth_method.clone(),
        });
    }
    if needs.auth_method == "private_key_jwt"
        && !ProviderMetadata::supports(
            &meta.token_endpoint_auth_signing_alg_values_supported,
            &needs.signing_alg,
        )
    {
        findings.push(Finding::AlgNotSupported {
            alg: needs.signing_alg.clone(),
        });
    }
    if !ProviderMetadata::supports(&meta.grant_types_supported, &needs.grant) {
        findings.push(Finding::GrantNotSupported {
            grant: needs.grant.clone(),
        });
    }
    if needs.registration_endpoint && meta.endpoint(EndpointKind::Registration).is_none() {
        findings.push(Finding::NoRegistrationEndpoint);
    }
    if needs.fapi2 {
        if meta.tls_client_certificate_bound_access_tokens != Some(true) {
            findings.push(Finding::CertBoundTokensNotAdvertised);
        }
        // PAR belongs to the authorization endpoint: an AS for the client-credentials grant only
        // (FAPI 2.0's client-credentials profile, e.g. the OpenID conformance suite's plan in
        // docs/conformance.md) advertises neither, and is not missing anything.
        let authorizes = meta.endpoint(EndpointKind::Authorization).is_some();
        if authorizes
            && meta
                .endpoint(EndpointKind::PushedAuthorizationRequest)
                .is_none()
        {
            findings.push(Finding::ParEndpointMissing);
        }
        if authorizes && meta.require_pushed_authorization_requests != Some(true) {
            findings.push(Finding::ParNotRequired);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> ProviderMetadata {
        serde_json::from_str(include_str!("../../tests/data/sandbox-discovery.json"))
            .unwrap_or_default()
    }

    fn with(edit: impl FnOnce(&mut ProviderMetadata)) -> Vec<Finding> {
        let mut meta = sandbox();
        edit(&mut meta);
        preflight(
            &meta,
            &ClientNeeds {
                registration_endpoint: true,
                ..ClientNeeds::default()
            },
        )
    }

    #[test]
    fn sandbox_document_passes_the_fapi2_preflight() {
        assert_eq!(with(|_| {}), []);
        let tls = ClientNeeds {
            auth_method: "tls_client_auth".into(),
            ..ClientNeeds::default()
        };
        assert_eq!(preflight(&sandbox(), &tls), []);
    }

    #[test]
    fn reports_a_missing_token_endpoint() {
        assert_eq!(
            with(|m| m.token_endpoint = None),
            [Finding::TokenEndpointMissing]
        );
    }

    #[test]
    fn reports_an_unsupported_assertion_algorithm() {
        let findings =
            with(|m| m.token_endpoint_auth_signing_alg_values_supported = vec!["RS256".into()]);
        assert_eq!(
            findings,
            [Finding::AlgNotSupported {
                alg: "PS256".into()
            }]
        );
        assert!(findings[0].to_string().contains("PS256"));
    }

    #[test]
    fn reports_an_unsupported_auth_method() {
        let findings =
            with(|m| m.token_endpoint_auth_methods_supported = vec!["tls_client_auth".into()]);
        assert_eq!(
            findings,
            [Finding::AuthMethodNotSupported {
                method: "private_key_jwt".into()
            }]
        );
        assert!(findings[0].to_string().contains("private_key_jwt"));
    }

    #[test]
    fn reports_cert_bound_tokens_not_advertised() {
        assert_eq!(
            with(|m| m.tls_client_certificate_bound_access_tokens = None),
            [Finding::CertBoundTokensNotAdvertised]
        );
    }

    #[test]
    fn reports_par_not_required_as_a_warning() {
        let findings = with(|m| m.require_pushed_authorization_requests = Some(false));
        assert_eq!(findings, [Finding::ParNotRequired]);
        assert_eq!(findings[0].severity(), Severity::Warning);
    }

    #[test]
    fn reports_a_missing_par_endpoint_as_an_error() {
        assert_eq!(Finding::ParEndpointMissing.severity(), Severity::Error);
        assert_eq!(
            with(|m| m.pushed_authorization_request_endpoint = None),
            [Finding::ParEndpointMissing]
        );
    }

    #[test]
    fn an_authorization_server_for_the_client_credentials_grant_only_needs_no_par() {
        let findings = with(|m| {
            m.authorization_endpoint = None;
            m.pushed_authorization_request_endpoint = None;
            m.require_pushed_authorization_requests = None;
        });
        assert_eq!(findings, []);
    }

    #[test]
    fn reports_an_unsupported_grant() {
        let findings = with(|m| m.grant_types_supported = vec!["authorization_code".into()]);
        assert_eq!(
            findings,
            [Finding::GrantNotSupported {
                grant: "client_credentials".into()
            }]
        );
        assert_eq!(findings[0].severity(), Severity::Error);
    }

    #[test]
    fn reports_a_missing_registration_endpoint_only_when_needed() {
        assert_eq!(
            with(|m| m.registration_endpoint = None),
            [Finding::NoRegistrationEndpoint]
        );
        let mut meta = sandbox();
        meta.registration_endpoint = None;
        assert_eq!(preflight(&meta, &ClientNeeds::default()), []);
    }

    #[test]
    fn profile_none_skips_fapi_checks() {
        let mut meta = sandbox();
        meta.tls_client_certificate_bound_access_tokens = None;
        meta.require_pushed_authorization_requests = None;
        let needs = ClientNeeds {
            fapi2: false,
            ..ClientNeeds::default()
        };
        assert_eq!(preflight(&meta, &needs), []);
    }
}
