//! `AuthorizationServer` (namespaced) and `ClusterAuthorizationServer` (cluster-scoped): one
//! object per AS, referenced by many TppClients, like cert-manager's Issuer/ClusterIssuer. No I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::refs::{KeyRef, SecretKeyRef};
use super::tpp_client::RegistrationMode;
use crate::duration::Duration;

/// Everything the operator needs to know about one authorization server.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tpp.dev",
    version = "v1alpha1",
    kind = "AuthorizationServer",
    namespaced,
    shortname = "tppas",
    category = "tpp",
    doc = "An Open Finance authorization server (one bank's AS) for the TppClients of its namespace: its issuer and discovery document, the CA bundle trusted for its TLS servers, registration defaults, the client-assertion audience and the client-side rate limit. The cluster-wide variant is ClusterAuthorizationServer. Reference: docs/api-reference.md.",
    status = "AuthorizationServerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","jsonPath":".spec.issuer"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.caBundle) && has(self.caBundleRef))").message("set caBundle or caBundleRef, not both"))]
pub struct AuthorizationServerSpec {
    /// The issuer identifier, exactly as the AS's discovery document states it (an `https://`
    /// URL). Discovery is fetched from `<issuer>/.well-known/openid-configuration` unless
    /// `discoveryUrl` is set, and the document's `issuer` must equal this string exactly.
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("issuer must be an https:// URL"))]
    #[schemars(length(max = 2048))]
    pub issuer: String,

    /// Where to fetch the discovery document instead of the issuer's well-known URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("discoveryUrl must be an https:// URL"))]
    #[schemars(length(max = 2048))]
    pub discovery_url: Option<String>,

    /// PEM bundle of the CAs trusted for the AS's TLS servers. When neither this nor
    /// `caBundleRef` is set, no connection can be made (public web roots are never trusted
    /// implicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub ca_bundle: Option<String>,

    /// A ConfigMap or Secret key holding the PEM CA bundle (see `caBundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<KeyRef>,

    /// Registration defaults for clients of this AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<AsRegistration>,

    /// How clients build `private_key_jwt` client assertions for this AS.
    #[serde(default)]
    pub client_assertion: ClientAssertionPolicy,

    /// How long the AS may cache a client's JWKS (15 minutes on the OFM sandbox).
    /// It is the minimum propagation delay for a new signing key; a TppClient whose
    /// `signingKey.rotation.propagationDelay` is shorter gets a warning condition. Default `15m`.
    #[serde(default = "default_jwks_cache_ttl")]
    pub jwks_cache_ttl: Duration,

    /// Client-side rate limit for all calls to this AS, shared by every TppClient using it.
    #[serde(default)]
    pub rate_limit: RateLimit,

    /// Discovery preflight profile: `FAPI2` (default) checks that the AS advertises what
    /// clients need (PS256, the auth method, certificate-bound tokens, PAR, the grant);
    /// `None` skips the checks.
    #[serde(default)]
    pub profile: Profile,
}

fn default_jwks_cache_ttl() -> Duration {
    Duration::from_mins(15)
}

/// Registration defaults at the AS level.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AsRegistration {
    /// Mode used by TppClients that do not set `registration.mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<RegistrationMode>,
    /// Secret key with the RFC 7591 initial access token, for Dynamic registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_access_token_ref: Option<SecretKeyRef>,
    /// Secret key with the software statement (a directory-signed JWT), for SignedRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_statement_ref: Option<SecretKeyRef>,
    /// Registration endpoint to use instead of the discovered `registration_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://')").message("registration.endpoint must be an https:// URL"))]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,
    /// Content type of SignedRequest bodies: `application/jwt` (default) or `application/jose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['application/jwt', 'application/jose']").message("signedRequestContentType must be application/jwt or application/jose"))]
    #[schemars(length(max = 32))]
    pub signed_request_content_type: Option<String>,
}

/// The `aud` and timing of client assertions.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(backdate_at_most_a_minute()).message("clientAssertion.backdate must be at most 60s"),
    validation = Rule::new(backdate_at_most_half_the_lifetime()).message("clientAssertion.backdate must be at most half of clientAssertion.lifetime: the assertion expires backdate earlier")
)]
pub struct ClientAssertionPolicy {
    /// `Issuer` (default: the issuer string, as FAPI 2.0 requires), `TokenEndpoint` (the
    /// effective token endpoint URL), or any other string used literally.
    #[serde(default = "default_audience")]
    #[x_kube(validation = Rule::new("self != ''").message("clientAssertion.audience must not be empty"))]
    #[schemars(length(max = 2048))]
    pub audience: String,
    /// Lifetime of each assertion (`exp - iat`). Default `5m`; at most `10m`.
    #[serde(default = "default_assertion_lifetime")]
    pub lifetime: Duration,
    /// How far `iat` (and `nbf`) of each assertion is set before now, so that an AS whose
    /// clock runs behind the operator's does not refuse the assertion as issued in the future.
    /// `exp - iat` stays `lifetime`, so the assertion expires this much earlier. Whole seconds
    /// (a fraction is dropped); at most `60s` and at most half of `lifetime`. Default `5s`;
    /// `0s` sets `iat` to now.
    #[serde(default = "default_assertion_backdate")]
    pub backdate: Duration,
}

fn backdate_at_most_a_minute() -> String {
    format!(
        "!has(self.backdate) || {} <= {}",
        crate::duration::cel_seconds("self.backdate"),
        crate::identity::assertion::MAX_BACKDATE.as_secs()
    )
}

fn backdate_at_most_half_the_lifetime() -> String {
    format!(
        "!has(self.backdate) || !has(self.lifetime) || 2 * {} <= {}",
        crate::duration::cel_seconds("self.backdate"),
        crate::duration::cel_seconds("self.lifetime")
    )
}

impl Default for ClientAssertionPolicy {
    fn default() -> Self {
        Self {
            audience: default_audience(),
            lifetime: default_assertion_lifetime(),
            backdate: default_assertion_backdate(),
        }
    }
}

fn default_audience() -> String {
    "Issuer".into()
}

fn default_assertion_lifetime() -> Duration {
    Duration::from_mins(5)
}

fn default_assertion_backdate() -> Duration {
    Duration::from_secs(crate::identity::assertion::DEFAULT_BACKDATE.as_secs())
}

/// A token bucket for calls to the AS.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per second, 1 to 10,000. Default 20.
    #[serde(default = "default_rps")]
    #[x_kube(validation = Rule::new("self >= 1").message("rateLimit.requestsPerSecond must be at least 1"))]
    #[schemars(range(max = 10000))]
    pub requests_per_second: u32,
    /// Burst size, 1 to 10,000. Default 40.
    #[serde(default = "default_burst")]
    #[x_kube(validation = Rule::new("self >= 1").message("rateLimit.burst must be at least 1"))]
    #[schemars(range(max = 10000))]
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: default_burst(),
        }
    }
}

fn default_rps() -> u32 {
    20
}

fn default_burst() -> u32 {
    40
}

/// Discovery preflight profile.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum Profile {
    /// FAPI 2.0 security profile checks.
    #[default]
    FAPI2,
    /// No checks.
    None,
}

/// Observed state of an authorization server.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationServerStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: discovery succeeded and the preflight found nothing missing. `Reconciling`:
    /// a transient failure is being retried. `Stalled`: a permanent failure (issuer mismatch,
    /// preflight findings, invalid spec) waits for a spec change (kstatus conventions).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Effective endpoints (after RFC 8705 mTLS aliases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<DiscoveredEndpoints>,
    /// When discovery last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_discovery_time: Option<Time>,
    /// `token_endpoint_auth_methods_supported` as advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_methods: Vec<String>,
    /// `token_endpoint_auth_signing_alg_values_supported` as advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_algorithms: Vec<String>,
}

/// Endpoints the operator uses, as resolved from discovery.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredEndpoints {
    /// Token endpoint (mTLS alias when advertised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Registration endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// Introspection endpoint (mTLS alias when advertised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<String>,
    /// Revocation endpoint (mTLS alias when advertised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// Pushed authorization request endpoint (mTLS alias when advertised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request: Option<String>,
    /// The AS's own JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// A cluster-wide authorization server, usable from the namespaces `allowedNamespaces` selects.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tpp.dev",
    version = "v1alpha1",
    kind = "ClusterAuthorizationServer",
    shortname = "tppcas",
    category = "tpp",
    doc = "A cluster-wide Open Finance authorization server (one bank's AS), usable by the TppClients of the namespaces `allowedNamespaces` selects; otherwise the same as AuthorizationServer. Reference: docs/api-reference.md.",
    status = "AuthorizationServerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","jsonPath":".spec.issuer"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthorizationServerSpec {
    /// The authorization server (same fields as an AuthorizationServer).
    #[serde(flatten)]
    pub server: AuthorizationServerSpec,
    /// Namespaces whose TppClients may use this AS (confused-deputy protection). Unset means
    /// none: a TppClient from a namespace not selected gets a `NamespaceNotAllowed` condition.
    /// `{}` selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<LabelSelector>,
}
