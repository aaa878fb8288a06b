//! From a TppClient (and its AuthorizationServer) to the inputs of the planner, the preflight
//! and the registration request: pure mappings, plus the spec checks CEL cannot do. No I/O.

use jiff::SignedDuration;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    crd::{
        AuthMethod, AuthorizationServerSpec, CertificateKeyAlgorithm, CertificateSource, Profile,
        RegistrationMode, SigningAlgorithm, TppClient,
    },
    error::Error,
    identity::{KeyAlgorithm, jwks::JwkSet},
    oauth::{AudiencePolicy, ClientNeeds},
    reason::Reason,
    rotation::{self, CertPolicy, KeyPolicy, Policy, Publication, RegistrationKind, TokenPolicy},
};

/// Metadata fields the operator manages itself (refused in `metadata.extra`).
pub const MANAGED_METADATA: [&str; 8] = [
    "jwks",
    "jwks_uri",
    "client_id",
    "token_endpoint_auth_method",
    "token_endpoint_auth_signing_alg",
    "tls_client_auth_subject_dn",
    "registration_access_token",
    "software_statement",
];

/// Checks CEL cannot make: references into other namespaces, managed metadata fields.
pub fn check_spec(client: &TppClient, namespace: &str) -> Result<(), Error> {
    let reg = &client.spec.registration;
    for (field, r) in [
        (
            "registration.softwareStatementRef",
            &reg.software_statement_ref,
        ),
        (
            "registration.initialAccessTokenRef",
            &reg.initial_access_token_ref,
        ),
    ] {
        if let Some(ns) = r
            .as_ref()
            .and_then(|r| r.namespace.as_deref())
            .filter(|ns| *ns != namespace)
        {
            return Err(Error::InvalidSpec {
                reason: Reason::CrossNamespaceReference,
                message: format!(
                    "{field} names namespace {ns:?}: a TppClient may only read Secrets in its own namespace ({namespace:?}); remove the namespace or copy the Secret"
                ),
            });
        }
    }
    if let Some(extra) = &reg.metadata.extra
        && let Some(k) = MANAGED_METADATA.iter().find(|k| extra.contains_key(**k))
    {
        return Err(Error::InvalidSpec {
            reason: Reason::InvalidSpec,
            message: format!(
                "registration.metadata.extra sets {k:?}, which the operator manages; remove it"
            ),
        });
    }
    Ok(())
}

/// The transport certificate subject: the spec's, else `CN=<namespace>.<name>`.
pub fn certificate_subject(client: &TppClient, namespace: &str, name: &str) -> String {
    client
        .spec
        .transport_certificate
        .subject
        .clone()
        .unwrap_or_else(|| format!("CN={namespace}.{name}"))
}

/// The signing key algorithm.
pub fn signing_algorithm(client: &TppClient) -> KeyAlgorithm {
    match (
        client.spec.signing_key.algorithm,
        client.spec.signing_key.size,
    ) {
        (SigningAlgorithm::ES256, _) => KeyAlgorithm::EcP256,
        (SigningAlgorithm::PS256, Some(3072)) => KeyAlgorithm::Rsa3072,
        (SigningAlgorithm::PS256, Some(4096)) => KeyAlgorithm::Rsa4096,
        (SigningAlgorithm::PS256, _) => KeyAlgorithm::Rsa2048,
    }
}

/// The encryption key algorithm (RSA-OAEP-256 keys are RSA).
pub fn encryption_algorithm(client: &TppClient) -> KeyAlgorithm {
    match client.spec.encryption_key.as_ref().and_then(|e| e.size) {
        Some(3072) => KeyAlgorithm::Rsa3072,
        Some(4096) => KeyAlgorithm::Rsa4096,
        _ => KeyAlgorithm::Rsa2048,
    }
}

/// The transport key algorithm.
pub fn transport_algorithm(client: &TppClient) -> KeyAlgorithm {
    match client.spec.transport_certificate.key_algorithm {
        CertificateKeyAlgorithm::RSA => KeyAlgorithm::Rsa2048,
        CertificateKeyAlgorithm::ECDSA => KeyAlgorithm::EcP256,
    }
}

/// How the AS learns the client's keys.
pub fn publication(client: &TppClient) -> Publication {
    let reg = &client.spec.registration;
    match (reg.mode, reg.jwks_uri.is_some()) {
        (_, true) => Publication::JwksUri,
        (RegistrationMode::Dynamic | RegistrationMode::SignedRequest, false) => {
            Publication::Immediate
        }
        (RegistrationMode::Static | RegistrationMode::HubOnboarding, false) => {
            Publication::ApprovalGate
        }
    }
}

fn key_policy(r: &crate::crd::KeyRotation) -> KeyPolicy {
    KeyPolicy {
        every: r.every.map(|d| d.signed()),
        propagation_delay: r.propagation_delay.signed(),
        retire_after: r.retire_after.signed(),
    }
}

/// A stable seed for this client's refresh jitter.
pub fn jitter_seed(uid: &str) -> u64 {
    let digest = Sha256::digest(uid.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// The planner's policy for this client, every schedule raised to its floor
/// ([`rotation::floors::clamp`]): a certificate is issued for at least the minimum duration
/// even when the stored spec predates the CRD's minimums.
pub fn rotation_policy(client: &TppClient, uid: &str) -> Policy {
    let spec = &client.spec;
    rotation::floors::clamp(&Policy {
        signing: key_policy(&spec.signing_key.rotation),
        encryption: spec
            .encryption_key
            .as_ref()
            .map(|e| key_policy(&e.rotation)),
        certificate: CertPolicy {
            duration: spec.transport_certificate.duration.signed(),
            renew_before: spec.transport_certificate.renew_before.signed(),
            managed: spec.transport_certificate.source == CertificateSource::SelfSigned,
        },
        tokens: spec
            .tokens
            .iter()
            .map(|t| TokenPolicy {
                name: t.name.clone(),
                refresh_before: t.refresh_before.map(|d| d.signed()),
                revoke_replaced: t.revoke_replaced,
            })
            .collect(),
        publication: publication(client),
        jitter_seed: jitter_seed(uid),
        registration: match spec.registration.mode {
            RegistrationMode::Static => RegistrationKind::Static,
            RegistrationMode::Dynamic | RegistrationMode::SignedRequest => {
                RegistrationKind::Answered
            }
            RegistrationMode::HubOnboarding => RegistrationKind::Onboarded,
        },
        max_unknown_attempts: spec.registration.max_unknown_attempts,
        on_lost: match spec.registration.on_lost {
            crate::crd::OnLost::Fail => rotation::OnLost::Fail,
            crate::crd::OnLost::Register => rotation::OnLost::Register,
        },
    })
}

/// What the preflight checks for this client.
pub fn client_needs(client: &TppClient, server: &AuthorizationServerSpec) -> ClientNeeds {
    ClientNeeds {
        auth_method: auth_method_name(client.spec.authentication.method).into(),
        signing_alg: match client.spec.signing_key.algorithm {
            SigningAlgorithm::PS256 => "PS256".into(),
            SigningAlgorithm::ES256 => "ES256".into(),
        },
        grant: "client_credentials".into(),
        registration_endpoint: client.spec.registration.mode != RegistrationMode::Static,
        fapi2: server.profile == Profile::FAPI2,
    }
}

/// `private_key_jwt` or `tls_client_auth`.
pub fn auth_method_name(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::PrivateKeyJwt => "private_key_jwt",
        AuthMethod::TlsClientAuth => "tls_client_auth",
    }
}

/// The assertion audience policy of the AS.
pub fn audience_policy(server: &AuthorizationServerSpec) -> AudiencePolicy {
    match server.client_assertion.audience.as_str() {
        "Issuer" => AudiencePolicy::Issuer,
        "TokenEndpoint" => AudiencePolicy::TokenEndpoint,
        other => AudiencePolicy::Literal(other.to_owned()),
    }
}

/// The scope to register: the spec's, else the union of the tokens' scopes.
pub fn registration_scope(client: &TppClient) -> String {
    if let Some(s) = &client.spec.registration.metadata.scope {
        return s.clone();
    }
    let mut scopes: Vec<&str> = client
        .spec
        .tokens
        .iter()
        .flat_map(|t| t.scope.split_whitespace())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        "accounts".into()
    } else {
        scopes.join(" ")
    }
}

/// The client metadata sent at registration and in every RFC 7592 PUT (RFC 7591 names).
pub fn registration_metadata(
    client: &TppClient,
    namespace: &str,
    name: &str,
    jwks: Option<&JwkSet>,
) -> Map<String, Value> {
    let spec = &client.spec;
    let md = &spec.registration.metadata;
    let mut m = Map::new();
    if let Some(extra) = &md.extra {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    m.insert(
        "client_name".into(),
        json!(
            md.client_name
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}"))
        ),
    );
    let grants = if md.grant_types.is_empty() {
        vec!["client_credentials".to_owned()]
    } else {
        md.grant_types.clone()
    };
    let response_types: Vec<&str> = if grants.iter().any(|g| g == "authorization_code") {
        vec!["code"]
    } else {
        vec![]
    };
    m.insert("grant_types".into(), json!(grants));
    m.insert("response_types".into(), json!(response_types));
    if !md.redirect_uris.is_empty() {
        m.insert("redirect_uris".into(), json!(md.redirect_uris));
    }
    m.insert("scope".into(), json!(registration_scope(client)));
    m.insert(
        "token_endpoint_auth_method".into(),
        json!(auth_method_name(spec.authentication.method)),
    );
    match spec.authentication.method {
        AuthMethod::PrivateKeyJwt => {
            let alg = match spec.signing_key.algorithm {
                SigningAlgorithm::PS256 => "PS256",
                SigningAlgorithm::ES256 => "ES256",
            };
            m.insert("token_endpoint_auth_signing_alg".into(), json!(alg));
        }
        AuthMethod::TlsClientAuth => {
            m.insert(
                "tls_client_auth_subject_dn".into(),
                json!(spec.authentication.subject_dn.clone().unwrap_or_default()),
            );
        }
    }
    m.insert("id_token_signed_response_alg".into(), json!("PS256"));
    m.insert(
        "tls_client_certificate_bound_access_tokens".into(),
        json!(true),
    );
    match (&spec.registration.jwks_uri, jwks) {
        (Some(uri), _) => {
            m.insert("jwks_uri".into(), json!(uri));
        }
        (None, Some(set)) => {
            m.insert(
                "jwks".into(),
                serde_json::to_value(set).unwrap_or(Value::Null),
            );
        }
        (None, None) => {}
    }
    if let Some(id) = &md.software_id {
        m.insert("software_id".into(), json!(id));
    }
    m
}

/// How long the AS may still be serving a stale view of our keys or registration.
pub fn propagation_window(server: &AuthorizationServerSpec) -> SignedDuration {
    server.jwks_cache_ttl.signed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::*;

    fn client(mode: RegistrationMode) -> TppClient {
        let yaml = format!(
            "apiVersion: tpp.dev/v1alpha1\nkind: TppClient\nmetadata: {{name: c, namespace: ns}}\nspec:\n  authorizationServerRef: {{name: as}}\n  registration: {{mode: {mode:?}}}\n  tokens: [{{name: a, scope: accounts}}, {{name: b, scope: 'profile accounts'}}]\n"
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    #[test]
    fn dynamic_registration_with_private_key_jwt_sends_ps256_and_inline_jwks() {
        let c = client(RegistrationMode::Dynamic);
        let set = JwkSet { keys: vec![] };
        let m = registration_metadata(&c, "ns", "c", Some(&set));
        assert_eq!(m["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(m["token_endpoint_auth_signing_alg"], "PS256");
        assert_eq!(m["tls_client_certificate_bound_access_tokens"], true);
        assert_eq!(m["scope"], "accounts profile");
        assert_eq!(m["client_name"], "ns/c");
        assert!(m.contains_key("jwks") && !m.contains_key("jwks_uri"));
        assert!(!m.contains_key("tls_client_auth_subject_dn"));
    }

    #[test]
    fn tls_client_auth_sends_the_subject_dn_and_no_signing_alg() {
        let mut c = client(RegistrationMode::Dynamic);
        c.spec.authentication = Authentication {
            method: AuthMethod::TlsClientAuth,
            subject_dn: Some("CN=app".into()),
        };
        let m = registration_metadata(&c, "ns", "c", None);
        assert_eq!(m["tls_client_auth_subject_dn"], "CN=app");
        assert!(!m.contains_key("token_endpoint_auth_signing_alg"));
    }

    #[test]
    fn publication_follows_mode_and_jwks_uri() {
        assert_eq!(
            publication(&client(RegistrationMode::Dynamic)),
            Publication::Immediate
        );
        assert_eq!(
            publication(&client(RegistrationMode::Static)),
            Publication::ApprovalGate
        );
        let mut c = client(RegistrationMode::Static);
        c.spec.registration.jwks_uri = Some("https://op/jwks/ns/c".into());
        assert_eq!(publication(&c), Publication::JwksUri);
    }

    #[test]
    fn cross_namespace_references_are_refused_with_a_clear_reason() {
        let mut c = client(RegistrationMode::Dynamic);
        c.spec.registration.initial_access_token_ref = Some(SecretKeyRef {
            name: "iat".into(),
            key: "t".into(),
            namespace: Some("other".into()),
        });
        let e = check_spec(&c, "ns").unwrap_err();
        assert_eq!(e.reason(), "CrossNamespaceReference");
        assert!(e.to_string().contains("own namespace"));
        c.spec
            .registration
            .initial_access_token_ref
            .as_mut()
            .unwrap()
            .namespace = Some("ns".into());
        assert!(check_spec(&c, "ns").is_ok());
    }

    #[test]
    fn managed_metadata_in_extra_is_refused() {
        let mut c = client(RegistrationMode::Dynamic);
        c.spec.registration.metadata.extra =
            Some([("jwks_uri".to_owned(), json!("https://evil"))].into());
        assert_eq!(check_spec(&c, "ns").unwrap_err().reason(), "InvalidSpec");
    }

    #[test]
    fn jitter_seed_is_stable_per_uid() {
        assert_eq!(jitter_seed("a"), jitter_seed("a"));
        assert_ne!(jitter_seed("a"), jitter_seed("b"));
    }
}
