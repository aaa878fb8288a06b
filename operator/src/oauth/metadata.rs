//! The AS discovery document (OpenID Connect Discovery / RFC 8414, docs/protocol.md §2) as a
//! lenient serde type, and endpoint selection with RFC 8705 `mtls_endpoint_aliases`. Pure; no I/O.
//!
//! Lenient: every field is optional (lists default to empty), and fields this type does not
//! name are kept in [`ProviderMetadata::other`]. URLs stay strings; callers parse them at use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The discovery document of an authorization server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderMetadata {
    /// Exact issuer string: assertion `aud`, id_token `iss`.
    pub issuer: String,
    /// Browser-facing authorization endpoint (never aliased, no mTLS).
    pub authorization_endpoint: Option<String>,
    /// Token endpoint.
    pub token_endpoint: Option<String>,
    /// Registration endpoint (RFC 7591 or Ozone hub onboarding).
    pub registration_endpoint: Option<String>,
    /// The AS's public keys.
    pub jwks_uri: Option<String>,
    /// OIDC userinfo endpoint.
    pub userinfo_endpoint: Option<String>,
    /// RFC 7662 introspection endpoint.
    pub introspection_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    pub revocation_endpoint: Option<String>,
    /// RFC 9126 PAR endpoint.
    pub pushed_authorization_request_endpoint: Option<String>,
    /// RFC 8705 §5: endpoints to use when calling with a client certificate.
    pub mtls_endpoint_aliases: BTreeMap<String, String>,
    /// Supported scopes.
    pub scopes_supported: Vec<String>,
    /// Supported response types.
    pub response_types_supported: Vec<String>,
    /// Supported response modes.
    pub response_modes_supported: Vec<String>,
    /// Supported grant types (RFC 8414 default when absent: authorization_code, implicit).
    pub grant_types_supported: Vec<String>,
    /// Supported token endpoint client authentication methods.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Supported client assertion algorithms.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// Supported id_token signing algorithms.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Supported request object signing algorithms.
    pub request_object_signing_alg_values_supported: Vec<String>,
    /// Supported userinfo signing algorithms.
    pub userinfo_signing_alg_values_supported: Vec<String>,
    /// PKCE methods.
    pub code_challenge_methods_supported: Vec<String>,
    /// OIDC claims.
    pub claims_supported: Vec<String>,
    /// OIDC claim types.
    pub claim_types_supported: Vec<String>,
    /// OIDC subject types.
    pub subject_types_supported: Vec<String>,
    /// RFC 9396 authorization details types.
    pub authorization_details_types_supported: Vec<String>,
    /// OIDC `claims` parameter support.
    pub claims_parameter_supported: Option<bool>,
    /// JAR by value.
    pub request_parameter_supported: Option<bool>,
    /// JAR by reference.
    pub request_uri_parameter_supported: Option<bool>,
    /// Only pre-registered request URIs (PAR `urn:` URIs are exempt).
    pub require_request_uri_registration: Option<bool>,
    /// RFC 8705 certificate-bound access tokens.
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
    /// RFC 9126: the authorization endpoint only takes PAR request URIs.
    pub require_pushed_authorization_requests: Option<bool>,
    /// RFC 9207 `iss` in authorization responses.
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// Every field not named above, kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// An endpoint of the discovery document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `authorization_endpoint`.
    Authorization,
    /// `token_endpoint`.
    Token,
    /// `registration_endpoint`.
    Registration,
    /// `userinfo_endpoint`.
    Userinfo,
    /// `introspection_endpoint`.
    Introspection,
    /// `revocation_endpoint`.
    Revocation,
    /// `pushed_authorization_request_endpoint`.
    PushedAuthorizationRequest,
}

impl EndpointKind {
    /// The metadata field name (also the key in `mtls_endpoint_aliases`).
    pub fn field(self) -> &'static str {
        match self {
            EndpointKind::Authorization => "authorization_endpoint",
            EndpointKind::Token => "token_endpoint",
            EndpointKind::Registration => "registration_endpoint",
            EndpointKind::Userinfo => "userinfo_endpoint",
            EndpointKind::Introspection => "introspection_endpoint",
            EndpointKind::Revocation => "revocation_endpoint",
            EndpointKind::PushedAuthorizationRequest => "pushed_authorization_request_endpoint",
        }
    }
}

impl ProviderMetadata {
    /// The top-level URL of an endpoint, if advertised.
    pub fn endpoint(&self, kind: EndpointKind) -> Option<&str> {
        let url = match kind {
            EndpointKind::Authorization => &self.authorization_endpoint,
            EndpointKind::Token => &self.token_endpoint,
            EndpointKind::Registration => &self.registration_endpoint,
            EndpointKind::Userinfo => &self.userinfo_endpoint,
            EndpointKind::Introspection => &self.introspection_endpoint,
            EndpointKind::Revocation => &self.revocation_endpoint,
            EndpointKind::PushedAuthorizationRequest => &self.pushed_authorization_request_endpoint,
        };
        url.as_deref().filter(|u| !u.is_empty())
    }

    /// The URL to call: with a client certificate (`mtls`), the `mtls_endpoint_aliases` entry
    /// when present, else the top-level URL (RFC 8705 §5). The authorization endpoint is
    /// browser-facing and never aliased.
    pub fn effective_endpoint(&self, kind: EndpointKind, mtls: bool) -> Option<&str> {
        if mtls
            && kind != EndpointKind::Authorization
            && let Some(alias) = self
                .mtls_endpoint_aliases
                .get(kind.field())
                .filter(|u| !u.is_empty())
        {
            return Some(alias);
        }
        self.endpoint(kind)
    }

    /// True when `list` (a `*_supported` field) contains `value`.
    pub fn supports(list: &[String], value: &str) -> bool {
        list.iter().any(|v| v == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX: &str = include_str!("../../tests/data/sandbox-discovery.json");

    fn sandbox() -> ProviderMetadata {
        serde_json::from_str(SANDBOX).unwrap_or_default()
    }

    #[test]
    fn parses_every_field_of_the_sandbox_document() {
        let meta = sandbox();
        assert_eq!(meta.issuer, "https://auth1.sandbox.mya.ozoneapi.io");
        assert_eq!(
            meta.token_endpoint.as_deref(),
            Some("https://as1.sandbox.mya.ozoneapi.io/token")
        );
        assert_eq!(
            meta.registration_endpoint.as_deref(),
            Some("https://rs1.sandbox.mya.ozoneapi.io/tpp-registration")
        );
        assert_eq!(
            meta.token_endpoint_auth_methods_supported,
            ["private_key_jwt", "tls_client_auth"]
        );
        assert_eq!(
            meta.token_endpoint_auth_signing_alg_values_supported,
            ["PS256"]
        );
        assert_eq!(
            meta.grant_types_supported,
            ["authorization_code", "client_credentials", "refresh_token"]
        );
        assert_eq!(meta.tls_client_certificate_bound_access_tokens, Some(true));
        assert_eq!(meta.require_pushed_authorization_requests, Some(true));
        assert_eq!(
            meta.authorization_response_iss_parameter_supported,
            Some(true)
        );
        assert_eq!(meta.mtls_endpoint_aliases.len(), 5);
        assert_eq!(meta.claims_supported.len(), 14);
        assert_eq!(
            meta.authorization_details_types_supported,
            ["urn:openfinance-ml:account-access-consent:v1.2"]
        );
        assert!(
            meta.other.is_empty(),
            "every sandbox field is named: {:?}",
            meta.other.keys()
        );
    }

    #[test]
    fn keeps_unknown_fields() {
        let meta: ProviderMetadata = serde_json::from_str(
            r#"{"issuer":"https://i","dpop_signing_alg_values_supported":["PS256"]}"#,
        )
        .unwrap_or_default();
        assert_eq!(meta.issuer, "https://i");
        assert!(meta.other.contains_key("dpop_signing_alg_values_supported"));
    }

    #[test]
    fn uses_the_mtls_alias_only_over_mtls() {
        let meta: ProviderMetadata = serde_json::from_str(
            r#"{"issuer":"https://i","token_endpoint":"https://i/token",
                "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.i/token"}}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            meta.effective_endpoint(EndpointKind::Token, true),
            Some("https://mtls.i/token")
        );
        assert_eq!(
            meta.effective_endpoint(EndpointKind::Token, false),
            Some("https://i/token")
        );
    }

    #[test]
    fn falls_back_to_the_top_level_url_without_an_alias() {
        let meta: ProviderMetadata = serde_json::from_str(
            r#"{"issuer":"https://i","introspection_endpoint":"https://i/introspect",
                "mtls_endpoint_aliases":{"token_endpoint":"https://mtls.i/token"}}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            meta.effective_endpoint(EndpointKind::Introspection, true),
            Some("https://i/introspect")
        );
        assert_eq!(
            meta.effective_endpoint(EndpointKind::Revocation, true),
            None
        );
    }

    #[test]
    fn sandbox_aliases_resolve_for_every_mtls_endpoint() {
        let meta = sandbox();
        for (kind, url) in [
            (
                EndpointKind::Token,
                "https://as1.sandbox.mya.ozoneapi.io/token",
            ),
            (
                EndpointKind::Revocation,
                "https://as1.sandbox.mya.ozoneapi.io/token/revoke",
            ),
            (
                EndpointKind::Introspection,
                "https://as1.sandbox.mya.ozoneapi.io/introspection",
            ),
            (
                EndpointKind::PushedAuthorizationRequest,
                "https://as1.sandbox.mya.ozoneapi.io/par",
            ),
            (
                EndpointKind::Userinfo,
                "https://as1.sandbox.mya.ozoneapi.io/userinfo",
            ),
            (
                EndpointKind::Registration,
                "https://rs1.sandbox.mya.ozoneapi.io/tpp-registration",
            ),
        ] {
            assert_eq!(meta.effective_endpoint(kind, true), Some(url), "{kind:?}");
        }
    }
}
