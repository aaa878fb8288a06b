//! `TppClient`: one OAuth client of one authorization server, kept registered, keyed and
//! tokened. Invalid combinations are refused at apply time by CEL rules whose messages say what
//! to fix. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::refs::{LocalSecretRef, SecretKeyRef};
use crate::duration::Duration;

/// The desired OAuth client: which authorization server, how it is registered and authenticates,
/// its signing key and transport certificate, and the access tokens to keep fresh.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tpp.dev",
    version = "v1alpha1",
    kind = "TppClient",
    namespaced,
    shortname = "tppc",
    category = "tpp",
    doc = "An OAuth client of one Open Finance authorization server, kept registered, keyed and tokened by tpp-operator: PS256 signing keys, an mTLS transport certificate, the registration at the AS, and certificate-bound access tokens in the Secret `<name>-credentials` that workloads mount. Ready=True when all of it is in place. Reference: docs/api-reference.md.",
    status = "TppClientStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".status.clientId"}"#,
    printcolumn = r#"{"name":"Cert Expiry","type":"string","jsonPath":".status.certificate.notAfter"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.authentication.method != 'tls_client_auth' || self.transportCertificate.source == 'SecretRef'").message("tls_client_auth requires transportCertificate.source SecretRef (a certificate issued by a CA the AS trusts): a self-signed certificate can never pass tls_client_auth"))]
pub struct TppClientSpec {
    /// The AuthorizationServer or ClusterAuthorizationServer this client belongs to.
    /// Immutable: a registration cannot move between servers; create a new TppClient instead.
    #[x_kube(validation = Rule::new("self == oldSelf").message("authorizationServerRef is immutable: create a new TppClient to use another authorization server"))]
    pub authorization_server_ref: AuthorizationServerRef,

    /// How the client is registered at the AS.
    pub registration: Registration,

    /// How the client authenticates at the token endpoint.
    #[serde(default)]
    pub authentication: Authentication,

    /// The JWS signing key (client assertions, signed registration requests).
    #[serde(default)]
    pub signing_key: SigningKey,

    /// An optional encryption key (`RSA-OAEP-256`) published for encrypted responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<EncryptionKey>,

    /// The mTLS transport certificate presented on every call to the AS.
    #[serde(default)]
    pub transport_certificate: TransportCertificate,

    /// Access tokens to keep fresh in the credentials Secret (grant `client_credentials`).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("token names must be unique within tokens[]"))]
    #[schemars(length(max = 16))]
    pub tokens: Vec<TokenSpec>,

    /// Labels and annotations added to every Secret the operator writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// Stop every call to the AS; keep all material. Tokens are not refreshed while suspended.
    #[serde(default)]
    pub suspend: bool,

    /// Workloads that read the credentials only at start, restarted when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<super::Consumers>,

    /// What goes into the credentials Secret `<name>-credentials` beyond the certificate, the
    /// tokens and the public facts (client id, issuer, token endpoint, `signing.kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsOptions>,
}

/// Options of the credentials Secret.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsOptions {
    /// Put the active private signing key into the Secret as `signing.key` (PKCS#8 PEM), for
    /// workloads that sign request objects or PAR requests themselves. Default `false`: every
    /// pod that mounts the Secret would otherwise hold the key that authenticates the client
    /// at the AS.
    #[serde(default)]
    pub include_signing_key: bool,
}

impl TppClientSpec {
    /// Whether `signing.key` goes into the credentials Secret (`credentials.includeSigningKey`).
    pub fn includes_signing_key(&self) -> bool {
        self.credentials
            .as_ref()
            .is_some_and(|c| c.include_signing_key)
    }
}

/// Which authorization server object a TppClient uses.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationServerRef {
    /// `AuthorizationServer` (default, same namespace) or `ClusterAuthorizationServer`.
    #[serde(default)]
    pub kind: AuthorizationServerKind,
    /// Name of the object.
    #[x_kube(validation = Rule::new("self != ''").message("authorizationServerRef.name must not be empty"))]
    #[schemars(length(max = 253))]
    pub name: String,
}

/// Kinds of authorization server objects.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum AuthorizationServerKind {
    /// Namespaced, in the TppClient's namespace.
    #[default]
    AuthorizationServer,
    /// Cluster-scoped, subject to its `allowedNamespaces`.
    ClusterAuthorizationServer,
}

/// Registration modes.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationMode {
    /// RFC 7591 JSON registration and RFC 7592 management.
    Dynamic,
    /// OBIE-style `application/jwt` registration carrying a software statement.
    SignedRequest,
    /// Ozone hub onboarding: mTLS `POST {}`; the client id is issued out of band.
    HubOnboarding,
    /// Nothing sent: the client id was issued out of band (the OFM default).
    Static,
}

/// Registration of the client.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.mode in ['Static', 'HubOnboarding']) || has(self.clientId)").message("Static and HubOnboarding registration require clientId (the client id issued out of band)"),
    validation = Rule::new("!(self.mode in ['Dynamic', 'SignedRequest']) || !has(self.clientId)").message("clientId must not be set for Dynamic or SignedRequest registration: the authorization server issues it"),
    validation = Rule::new("self.mode == 'Dynamic' || !has(self.initialAccessTokenRef)").message("initialAccessTokenRef applies to Dynamic registration only"),
    validation = Rule::new("self.mode == 'SignedRequest' || !has(self.softwareStatementRef)").message("softwareStatementRef applies to SignedRequest registration only")
)]
pub struct Registration {
    /// `Dynamic`, `SignedRequest`, `HubOnboarding` or `Static`. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("registration.mode is immutable: create a new TppClient to change it"))]
    pub mode: RegistrationMode,

    /// The client id issued out of band (required for Static and HubOnboarding, forbidden
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self != ''").message("clientId must not be empty"))]
    #[schemars(length(max = 255))]
    pub client_id: Option<String>,

    /// Client metadata sent at registration.
    #[serde(default)]
    pub metadata: ClientMetadata,

    /// Secret key with the software statement (SignedRequest); overrides the AS default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_statement_ref: Option<SecretKeyRef>,

    /// Secret key with the RFC 7591 initial access token (Dynamic); overrides the AS default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_access_token_ref: Option<SecretKeyRef>,

    /// What happens at the AS when the TppClient is deleted: `Delete` (default; the access
    /// tokens are revoked, then RFC 7592 DELETE for Dynamic and SignedRequest; Static and
    /// HubOnboarding clients stay registered) or `Orphan` (leave the client and its tokens).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The URL at which the AS can fetch this client's public JWKS (the operator serves it at
    /// `/jwks/{namespace}/{name}`). When set, it is registered as `jwks_uri` instead of an
    /// inline `jwks`, and new signing keys wait for the AS's `jwksCacheTtl`. `https://` only
    /// (an AS trusts whatever keys it fetches there); plain `http://` is accepted for a loopback
    /// host alone (`127.0.0.1`, `localhost`), which no remote AS can reach: local development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(127[.]0[.]0[.]1|localhost)(:[0-9]+)?/')").message("jwksUri must be an https:// URL (plain http only on loopback, for local development)"))]
    #[schemars(length(max = 2048))]
    pub jwks_uri: Option<String>,

    /// How many times a registration request whose outcome is unknown (it was sent and no
    /// answer was persisted: a timeout, a reset connection, a 5xx, a crash) is retried
    /// (Dynamic, SignedRequest). Each such request may have created a client at the AS; after
    /// this many retries the client stops with `RegistrationOutcomeUnknown` until the
    /// `tpp.dev/retry-registration` annotation is set to a new value (docs/reliability.md).
    /// 0 to 10, default 1: at most two registrations for one TppClient.
    #[serde(default = "default_max_unknown_attempts")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("registration.maxUnknownAttempts must be between 0 and 10"))]
    #[schemars(range(min = 0, max = 10))]
    pub max_unknown_attempts: u32,

    /// What to do when the AS no longer accepts the registration access token (RFC 7592 PUT
    /// and a GET with the stored token both refused): `Fail` (default; the client keeps its
    /// client id and tokens, key rotation stops, `RegistrationAccessTokenLost` names the
    /// client at the AS) or `Register` (register a new client; the old one is named in a
    /// Warning event and may remain at the AS).
    #[serde(default)]
    pub on_lost: OnLost,
}

fn default_max_unknown_attempts() -> u32 {
    1
}

/// What to do when the registration access token is refused on evidence.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum OnLost {
    /// Stop managing the registration and say which client is left at the AS.
    #[default]
    Fail,
    /// Register a new client (new client id) and say which one is left at the AS.
    Register,
}

/// What to do at the AS on deletion.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum DeletionPolicy {
    /// Revoke the tokens and deregister (RFC 7592 DELETE, Dynamic and SignedRequest) before the
    /// object goes away.
    #[default]
    Delete,
    /// Leave the client and its tokens at the AS.
    Orphan,
}

/// Client metadata (RFC 7591 §2), sent by Dynamic and SignedRequest registration.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientMetadata {
    /// `client_name`. Defaults to `<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub client_name: Option<String>,
    /// `redirect_uris` (for consent flows run by workloads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 2048)))]
    pub redirect_uris: Vec<String>,
    /// `grant_types`. Default `[client_credentials]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 128)))]
    pub grant_types: Vec<String>,
    /// `scope`, space-delimited. Default: the union of `tokens[].scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub scope: Option<String>,
    /// The software id (SignedRequest `iss` and `software_id`); default: the statement's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub software_id: Option<String>,
    /// Further metadata fields sent as given (e.g. `contacts`, `logo_uri`). Fields the operator
    /// manages (`jwks`, `jwks_uri`, `client_id`, `token_endpoint_auth_method`, ...) are refused
    /// with an `InvalidSpec` condition (CEL cannot iterate an object of arbitrary values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub extra: Option<BTreeMap<String, serde_json::Value>>,
}

/// Token endpoint authentication methods.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum AuthMethod {
    /// A PS256/ES256 client assertion signed with the signing key (OFM's recommendation).
    #[default]
    #[serde(rename = "private_key_jwt")]
    PrivateKeyJwt,
    /// The mTLS handshake is the credential; the AS matches the certificate's subject DN.
    #[serde(rename = "tls_client_auth")]
    TlsClientAuth,
}

/// Client authentication at the token endpoint.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.method != 'tls_client_auth' || has(self.subjectDn)").message("tls_client_auth requires authentication.subjectDn (the RFC 4514 subject DN the AS matches, e.g. CN=app,O=Example,C=GB)"))]
pub struct Authentication {
    /// `private_key_jwt` (default) or `tls_client_auth`.
    #[serde(default)]
    pub method: AuthMethod,
    /// RFC 4514 subject DN registered as `tls_client_auth_subject_dn` (tls_client_auth only).
    /// It must equal the transport certificate's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub subject_dn: Option<String>,
}

/// Signing algorithms.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum SigningAlgorithm {
    /// RSASSA-PSS with SHA-256 (FAPI 2.0, OFM).
    #[default]
    PS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// The signing key and its rotation.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.algorithm != 'ES256' || !has(self.size)").message("signingKey.size applies to RSA (PS256) keys only; remove it for ES256"))]
pub struct SigningKey {
    /// `PS256` (default) or `ES256`.
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// RSA modulus size in bits: 2048 (default), 3072 or 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [2048, 3072, 4096]").message("signingKey.size must be 2048, 3072 or 4096 (RSA keys below 2048 bits are refused)"))]
    #[schemars(range(max = 4096))]
    pub size: Option<u32>,
    /// Rotation schedule.
    #[serde(default)]
    pub rotation: KeyRotation,
}

impl Default for SigningKey {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::PS256,
            size: None,
            rotation: KeyRotation::default(),
        }
    }
}

/// Make-before-break key rotation (docs/architecture.md, "Where each decision lives").
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(retire_after_positive()).message("rotation.retireAfter must be greater than 0: the old key must stay published while assertions signed with it are still valid"),
    validation = Rule::new(rotation_every_minimum()).message("rotation.every must be at least 1h (a key rotates at most once an hour: docs/security.md); remove it to disable scheduled rotation"),
    validation = Rule::new(propagation_delay_minimum()).message("rotation.propagationDelay must be at least 1s: a new key must be published before it signs anything")
)]
pub struct KeyRotation {
    /// Rotate the key this often. At least `1h`; default `90d`. Unset (`null`) disables
    /// scheduled rotation; the `tpp.dev/rotate-keys` annotation still works.
    #[serde(
        default = "default_rotate_every",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    /// How long a new key is published before it signs anything; at least the AS's
    /// `jwksCacheTtl` (plus a margin), and at least `1s`. Default `20m`.
    #[serde(default = "default_propagation_delay")]
    pub propagation_delay: Duration,
    /// How long the previous key stays published after the switch. Default `20m`.
    #[serde(default = "default_retire_after")]
    pub retire_after: Duration,
}

fn retire_after_positive() -> String {
    format!("{} > 0", crate::duration::cel_seconds("self.retireAfter"))
}

fn rotation_every_minimum() -> String {
    format!(
        "!has(self.every) || {} >= {}",
        crate::duration::cel_seconds("self.every"),
        crate::rotation::floors::MIN_ROTATION_PERIOD.as_secs()
    )
}

fn propagation_delay_minimum() -> String {
    format!(
        "{} >= {}",
        crate::duration::cel_seconds("self.propagationDelay"),
        crate::rotation::floors::MIN_KEY_DELAY.as_secs()
    )
}

impl Default for KeyRotation {
    fn default() -> Self {
        Self {
            every: default_rotate_every(),
            propagation_delay: default_propagation_delay(),
            retire_after: default_retire_after(),
        }
    }
}

fn default_rotate_every() -> Option<Duration> {
    Some(Duration::from_days(90))
}

fn default_propagation_delay() -> Duration {
    Duration::from_mins(20)
}

fn default_retire_after() -> Duration {
    Duration::from_mins(20)
}

/// An encryption key published for encrypted responses (`RSA-OAEP-256`).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionKey {
    /// RSA modulus size in bits: 2048 (default), 3072 or 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in [2048, 3072, 4096]").message("encryptionKey.size must be 2048, 3072 or 4096"))]
    #[schemars(range(max = 4096))]
    pub size: Option<u32>,
    /// Rotation schedule; the old private key is kept for decryption until `retireAfter`.
    #[serde(default)]
    pub rotation: KeyRotation,
}

/// Where the transport certificate comes from.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum CertificateSource {
    /// The operator generates a self-signed certificate and renews it.
    #[default]
    SelfSigned,
    /// A `kubernetes.io/tls` Secret issued elsewhere (e.g. by cert-manager); renewed by its
    /// issuer, followed by the operator.
    SecretRef,
}

/// Key algorithm of a generated transport certificate.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum CertificateKeyAlgorithm {
    /// RSA 2048.
    #[default]
    RSA,
    /// ECDSA P-256 (where the AS allows it).
    ECDSA,
}

/// The mTLS transport certificate.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.source != 'SecretRef' || has(self.secretRef)").message("transportCertificate.source SecretRef requires transportCertificate.secretRef (a kubernetes.io/tls Secret)"),
    validation = Rule::new("self.source == 'SecretRef' || !has(self.secretRef)").message("transportCertificate.secretRef is only used with source: SecretRef"),
    validation = Rule::new(certificate_duration_minimum()).message("transportCertificate.duration must be at least 1h (a certificate is renewed at most twice an hour: docs/security.md)"),
    validation = Rule::new(renew_before_at_most_half_the_duration()).message("transportCertificate.renewBefore must be at most half of transportCertificate.duration: a certificate is renewed no earlier than half-way through its life")
)]
pub struct TransportCertificate {
    /// `SelfSigned` (default) or `SecretRef`.
    #[serde(default)]
    pub source: CertificateSource,
    /// The `kubernetes.io/tls` Secret holding the certificate (source SecretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretRef>,
    /// RFC 4514 subject DN of generated certificates, kept identical across renewals.
    /// Default `CN=<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub subject: Option<String>,
    /// DNS subject alternative names of generated certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 253)))]
    pub dns_names: Vec<String>,
    /// `RSA` (default, 2048 bits) or `ECDSA` (P-256).
    #[serde(default)]
    pub key_algorithm: CertificateKeyAlgorithm,
    /// Validity of generated certificates: at least `1h`. Default `365d` (OFM asks for at
    /// least 12 months).
    #[serde(default = "default_cert_duration")]
    pub duration: Duration,
    /// Renew this long before `notAfter`: at most half of `duration`. Default `30d`.
    #[serde(default = "default_renew_before")]
    pub renew_before: Duration,
}

fn certificate_duration_minimum() -> String {
    format!(
        "{} >= {}",
        crate::duration::cel_seconds("self.duration"),
        crate::rotation::floors::MIN_CERTIFICATE_DURATION.as_secs()
    )
}

fn renew_before_at_most_half_the_duration() -> String {
    format!(
        "2 * {} <= {}",
        crate::duration::cel_seconds("self.renewBefore"),
        crate::duration::cel_seconds("self.duration")
    )
}

impl Default for TransportCertificate {
    fn default() -> Self {
        Self {
            source: CertificateSource::SelfSigned,
            secret_ref: None,
            subject: None,
            dns_names: vec![],
            key_algorithm: CertificateKeyAlgorithm::RSA,
            duration: default_cert_duration(),
            renew_before: default_renew_before(),
        }
    }
}

fn default_cert_duration() -> Duration {
    Duration::from_days(365)
}

fn default_renew_before() -> Duration {
    Duration::from_days(30)
}

/// One access token kept fresh in the credentials Secret as `<name>.access_token` and
/// `<name>.expires_at`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(refresh_before_minimum()).message("tokens[].refreshBefore must be at least 1s"))]
pub struct TokenSpec {
    /// Name of the token: a DNS label, used as the Secret key prefix.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("token name must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Space-delimited scope requested. Default `accounts`.
    #[serde(default = "default_scope")]
    #[schemars(length(max = 2048))]
    pub scope: String,
    /// The protected resource the token is for, sent as the RFC 8707 `resource` parameter of
    /// the token request (the AS may restrict the token's audience to it): an absolute URI
    /// without a fragment, e.g. `https://rs.bank.example/open-banking`. Unset: no `resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*:[^#]+$')").message("tokens[].audience must be an absolute URI without a fragment (RFC 8707 resource indicator), e.g. https://rs.bank.example"))]
    #[schemars(length(max = 2048))]
    pub audience: Option<String>,
    /// Refresh this long before expiry: at least `1s`; the operator uses at most half of the
    /// token's lifetime (the AS's `expires_in`), so a token is requested again no sooner than
    /// 2/5 of its lifetime after issuance. Default: a third of the lifetime, jittered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_before: Option<Duration>,
    /// Revoke the token a refresh replaces at the AS's `revocation_endpoint` (RFC 7009, over
    /// mTLS), once the credentials Secret holds the new one. Default `false`: the replaced
    /// token stays valid until it expires. Best effort: a failed revocation is a Warning event
    /// `RevocationFailed` and never delays a refresh. Set it only when every workload re-reads
    /// the Secret and retries on a 401: a mounted Secret reaches a pod up to a kubelet sync
    /// period (about a minute) later, and until then the pod still sends the revoked token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_replaced: bool,
}

fn refresh_before_minimum() -> String {
    format!(
        "!has(self.refreshBefore) || {} >= {}",
        crate::duration::cel_seconds("self.refreshBefore"),
        crate::rotation::floors::MIN_REFRESH_BEFORE.as_secs()
    )
}

fn default_scope() -> String {
    "accounts".into()
}

/// Labels and annotations for the Secrets the operator writes.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Labels added to each Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to each Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of a TppClient.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TppClientStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Registered`, `SigningKeyReady`, `TransportCertificateReady`, `TokensReady`,
    /// and the kstatus conditions `Reconciling` (working toward Ready) and `Stalled` (a
    /// permanent error that needs a change); reasons are listed in docs/troubleshooting.md.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The client id at the AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Signing (and encryption) keys and their states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<KeyStatus>,
    /// The current transport certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// Tokens kept in the credentials Secret. Expiry times live in the Secret and in metrics,
    /// not here, so that a refresh does not cost a status write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenStatus>,
    /// Failures in a row of the current step (reset on success).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// The last rotations, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Values of the verb annotations (`tpp.dev/renew-tokens`, `tpp.dev/rotate-keys`,
    /// `tpp.dev/renew-certificate`) already acted on, so each request is acted on once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub handled_requests: BTreeMap<String, String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A key as users see it (no material).
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `sig` or `enc`.
    #[serde(rename = "use")]
    pub use_: String,
    /// `Pending`, `Published`, `Active` or `Retiring`.
    pub state: String,
    /// When the key was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When the key becomes (or became) active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_at: Option<Time>,
    /// When the key is (or was) retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<Time>,
}

/// The transport certificate as users see it.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// End of validity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// When the operator renews it (or, for SecretRef, expects its issuer to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// RFC 8705 `x5t#S256` thumbprint: tokens are bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    /// The certificate's subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A configured token as users see it.
#[derive(schemars::JsonSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// Token name.
    pub name: String,
    /// Scope granted.
    pub scope: String,
}

/// One rotation event.
#[derive(schemars::JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it happened.
    pub time: Time,
    /// What happened (a reason, e.g. `KeyRotated`, `CertificateRotated`).
    pub reason: String,
    /// Detail (kids, thumbprints; never material).
    pub message: String,
}
