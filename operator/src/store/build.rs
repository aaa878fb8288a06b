//! Pure builders of every object the operator writes: owned by the TppClient, labelled, with the
//! user's `secretTemplate`, ready for server-side apply. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};

use super::{
    layout::{self, credentials as ck},
    state::{KeysState, RegistrationState, StoredToken, issued_at_key, scope_key},
};
use crate::crd::{DeletionPolicy, RegistrationMode, TppClient};

/// Whether the client's `<name>-keys` and `<name>-registration` Secrets carry the
/// deregistration finalizer: a Dynamic or SignedRequest client with `deletionPolicy: Delete`
/// needs its registration access token and transport key until the RFC 7592 DELETE is done,
/// also when its namespace is deleted and every Secret in it with it (docs/reliability.md,
/// "Deletion"). The finalizer is removed by the cleanup once the client is deregistered (or
/// given up, with a Warning); a client switched to `Orphan` loses it at the next apply.
pub fn keeps_for_deregistration(client: &TppClient) -> bool {
    matches!(
        client.spec.registration.mode,
        RegistrationMode::Dynamic | RegistrationMode::SignedRequest
    ) && client.spec.registration.deletion_policy == DeletionPolicy::Delete
}

/// [`meta`] with the deregistration finalizer when [`keeps_for_deregistration`].
fn kept_meta(client: &TppClient, name: String, component: &str) -> ObjectMeta {
    let mut m = meta(client, name, component);
    if keeps_for_deregistration(client) {
        m.finalizers = Some(vec![layout::FINALIZER.to_owned()]);
    }
    m
}

/// The controller owner reference to `client`.
pub fn owner_ref(client: &TppClient) -> OwnerReference {
    let mut r = client
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: "tpp.dev/v1alpha1".into(),
            kind: "TppClient".into(),
            name: client.name_any(),
            uid: client.uid().unwrap_or_default(),
            controller: Some(true),
            ..Default::default()
        });
    r.block_owner_deletion = Some(true);
    r
}

fn meta(client: &TppClient, name: String, component: &str) -> ObjectMeta {
    let template = client.spec.secret_template.as_ref();
    ObjectMeta {
        name: Some(name),
        namespace: client.namespace(),
        labels: Some(layout::labels(
            &client.name_any(),
            component,
            template.map(|t| &t.labels),
        )),
        annotations: template
            .map(|t| t.annotations.clone())
            .filter(|a| !a.is_empty()),
        owner_references: Some(vec![owner_ref(client)]),
        ..Default::default()
    }
}

/// `<name>-keys`: the private key set and generated certificate (operator only).
pub fn keys_secret(client: &TppClient, state: &KeysState) -> Secret {
    Secret {
        metadata: kept_meta(client, layout::keys_name(&client.name_any()), "keys"),
        type_: Some("Opaque".into()),
        data: Some(state.to_data()),
        ..Default::default()
    }
}

/// `<name>-registration`: the AS's answer (operator only).
pub fn registration_secret(client: &TppClient, state: &RegistrationState) -> Secret {
    Secret {
        metadata: kept_meta(
            client,
            layout::registration_name(&client.name_any()),
            "registration",
        ),
        type_: Some("Opaque".into()),
        data: Some(state.to_data()),
        ..Default::default()
    }
}

/// `<name>-jwks`: the public JWK set.
pub fn jwks_configmap(client: &TppClient, jwks_json: String) -> ConfigMap {
    ConfigMap {
        metadata: meta(client, layout::jwks_name(&client.name_any()), "jwks"),
        data: Some(BTreeMap::from([(layout::JWKS_KEY.to_owned(), jwks_json)])),
        ..Default::default()
    }
}

/// Everything that goes into `<name>-credentials`.
pub struct CredentialsContent<'a> {
    /// Transport certificate PEM.
    pub cert_pem: &'a str,
    /// Transport key PEM.
    pub key_pem: &'a str,
    /// The AS's CA bundle PEM.
    pub ca_pem: &'a str,
    /// Client id.
    pub client_id: &'a str,
    /// Issuer.
    pub issuer: &'a str,
    /// Effective token endpoint.
    pub token_endpoint: &'a str,
    /// Active signing key (PKCS#8 PEM) and kid. The PEM is written only when the spec asks
    /// (`credentials.includeSigningKey`); the kid always.
    pub signing: Option<(&'a str, &'a str)>,
    /// Tokens bound to `cert_pem`.
    pub tokens: &'a BTreeMap<String, StoredToken>,
}

/// `<name>-credentials` (type `kubernetes.io/tls`): certificate, key and the tokens bound to it
/// in ONE object, so the kubelet swaps them together.
pub fn credentials_secret(client: &TppClient, c: &CredentialsContent<'_>) -> Secret {
    let mut d: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: String, v: &str| {
        d.insert(k, ByteString(v.as_bytes().to_vec()));
    };
    put(ck::TLS_CRT.into(), c.cert_pem);
    put(ck::TLS_KEY.into(), c.key_pem);
    put(ck::CA_CRT.into(), &certificates_only(c.ca_pem));
    put(ck::CLIENT_ID.into(), c.client_id);
    put(ck::ISSUER.into(), c.issuer);
    put(ck::TOKEN_ENDPOINT.into(), c.token_endpoint);
    if let Some((pem, kid)) = c.signing {
        if client.spec.includes_signing_key() {
            put(ck::SIGNING_KEY.into(), pem);
        }
        put(ck::SIGNING_KID.into(), kid);
    }
    for (name, t) in c.tokens {
        put(ck::access_token(name), t.access_token.expose());
        put(ck::expires_at(name), &t.record.expires_at.to_string());
        put(issued_at_key(name), &t.record.issued_at.to_string());
        put(scope_key(name), &t.scope);
    }
    Secret {
        metadata: meta(
            client,
            layout::credentials_name(&client.name_any()),
            "credentials",
        ),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(d),
        ..Default::default()
    }
}

/// The `CERTIFICATE` blocks of a PEM bundle, nothing else: a CA bundle is tenant input (an
/// AuthorizationServer's `caBundle` or a referenced ConfigMap/Secret), and a private key block
/// pasted into it with the certificate must not be copied into every workload's `ca.crt`
/// (issue 13, item 8). Text outside blocks and blocks of any other label are dropped; each kept
/// block ends with a newline.
pub fn certificates_only(pem: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = String::new();
    let mut block: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim_end();
        match &mut block {
            None if line == BEGIN => block = Some(format!("{BEGIN}\n")),
            None => {}
            Some(_) if line.starts_with("-----BEGIN ") => {
                // A new block inside an unterminated one: drop the broken block.
                block = (line == BEGIN).then(|| format!("{BEGIN}\n"));
            }
            Some(b) if line == END => {
                out.push_str(b);
                out.push_str(END);
                out.push('\n');
                block = None;
            }
            Some(_) if line.starts_with("-----END ") => block = None,
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AuthorizationServerRef, Registration, RegistrationMode, SecretTemplate, TppClientSpec,
    };
    use crate::redact::Sensitive;
    use crate::rotation::TokenRecord;

    pub(crate) fn client() -> TppClient {
        let mut c = TppClient::new(
            "payments",
            TppClientSpec {
                authorization_server_ref: AuthorizationServerRef {
                    name: "as".into(),
                    ..Default::default()
                },
                registration: Registration {
                    mode: RegistrationMode::Dynamic,
                    client_id: None,
                    metadata: Default::default(),
                    software_statement_ref: None,
                    initial_access_token_ref: None,
                    deletion_policy: Default::default(),
                    jwks_uri: None,
                    max_unknown_attempts: 1,
                    on_lost: Default::default(),
                },
                authentication: Default::default(),
                signing_key: Default::default(),
                encryption_key: None,
                transport_certificate: Default::default(),
                tokens: vec![],
                secret_template: Some(SecretTemplate {
                    labels: BTreeMap::from([("team".into(), "pay".into())]),
                    annotations: BTreeMap::from([("note".into(), "x".into())]),
                }),
                suspend: false,
                consumers: None,
                credentials: None,
            },
        );
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn the_keys_and_registration_secrets_of_a_client_deleted_with_delete_keep_a_finalizer() {
        let finalizers = |c: &TppClient| {
            (
                keys_secret(c, &KeysState::default()).metadata.finalizers,
                registration_secret(c, &RegistrationState::default())
                    .metadata
                    .finalizers,
            )
        };
        let kept = Some(vec![layout::FINALIZER.to_owned()]);
        assert_eq!(finalizers(&client()), (kept.clone(), kept));
        let mut orphan = client();
        orphan.spec.registration.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(finalizers(&orphan), (None, None));
        let mut hub = client();
        hub.spec.registration.mode = RegistrationMode::HubOnboarding;
        assert_eq!(finalizers(&hub), (None, None), "nothing to deregister");
    }

    #[test]
    fn credentials_hold_certificate_key_and_tokens_in_one_tls_secret() {
        let ts = jiff::Timestamp::from_second(1000).unwrap();
        let tokens = BTreeMap::from([(
            "accounts".to_owned(),
            StoredToken {
                record: TokenRecord {
                    name: "accounts".into(),
                    issued_at: ts,
                    expires_at: ts,
                    cert_x5t_s256: "x".into(),
                },
                access_token: Sensitive::new("tok".into()),
                scope: "accounts".into(),
            },
        )]);
        let s = credentials_secret(
            &client(),
            &CredentialsContent {
                cert_pem: "CERT",
                key_pem: "KEY",
                ca_pem: "CA",
                client_id: "c1",
                issuer: "https://as",
                token_endpoint: "https://as/token",
                signing: Some(("SK", "kid1")),
                tokens: &tokens,
            },
        );
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let d = s.data.as_ref().unwrap();
        for k in [
            "tls.crt",
            "tls.key",
            "ca.crt",
            "client_id",
            "issuer",
            "token_endpoint",
            "signing.kid",
            "accounts.access_token",
            "accounts.expires_at",
        ] {
            assert!(d.contains_key(k), "missing {k}");
        }
        assert!(
            !d.contains_key("signing.key"),
            "the private signing key only when the spec asks"
        );
        assert_eq!(s.metadata.name.as_deref(), Some("payments-credentials"));
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("TppClient", "uid-1", Some(true))
        );
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "pay");
        assert_eq!(labels["tpp.dev/client"], "payments");
        assert_eq!(s.metadata.annotations.as_ref().unwrap()["note"], "x");
    }

    #[test]
    fn the_private_signing_key_goes_into_the_credentials_secret_only_when_the_spec_asks() {
        let tokens = BTreeMap::new();
        let content = CredentialsContent {
            cert_pem: "CERT",
            key_pem: "KEY",
            ca_pem: "CA",
            client_id: "c1",
            issuer: "https://as",
            token_endpoint: "https://as/token",
            signing: Some(("SK", "kid1")),
            tokens: &tokens,
        };
        for (include, expected) in [(None, None), (Some(false), None), (Some(true), Some("SK"))] {
            let mut c = client();
            c.spec.credentials =
                include.map(|include_signing_key| crate::crd::CredentialsOptions {
                    include_signing_key,
                });
            let s = credentials_secret(&c, &content);
            let d = s.data.unwrap_or_default();
            let key = d
                .get("signing.key")
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            assert_eq!(key.as_deref(), expected, "includeSigningKey {include:?}");
            assert!(
                d.contains_key("signing.kid"),
                "the kid is public: always there"
            );
        }
    }

    const CA_A: &str = "-----BEGIN CERTIFICATE-----\nQUFB\nQUFB\n-----END CERTIFICATE-----\n";
    const CA_B: &str = "-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nU0VDUkVU\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ca_crt_in_the_credentials_secret_holds_certificates_only() {
        let tokens = BTreeMap::new();
        let bundle = format!("# root\n{CA_A}{KEY}junk\n{CA_B}");
        let s = credentials_secret(
            &client(),
            &CredentialsContent {
                cert_pem: "CERT",
                key_pem: "KEY",
                ca_pem: &bundle,
                client_id: "c1",
                issuer: "https://as",
                token_endpoint: "https://as/token",
                signing: None,
                tokens: &tokens,
            },
        );
        let ca = String::from_utf8(s.data.unwrap()["ca.crt"].0.clone()).unwrap();
        assert_eq!(ca, format!("{CA_A}{CA_B}"));
        assert!(!ca.contains("PRIVATE KEY") && !ca.contains("U0VDUkVU"));
    }

    #[test]
    fn certificates_only_drops_every_other_block_and_broken_blocks() {
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nU0VDUkVU\n-----END RSA PRIVATE KEY-----\n";
        let ec = "-----BEGIN EC PRIVATE KEY-----\nU0VDUkVU\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(certificates_only(&format!("{rsa}{CA_A}{ec}")), CA_A);
        // CRLF line ends and a missing final newline are normalised.
        let crlf = CA_B.replace('\n', "\r\n");
        assert_eq!(certificates_only(crlf.trim_end()), CA_B);
        // A certificate block left open by a key block is not kept, nor is the key.
        let broken = "-----BEGIN CERTIFICATE-----\nQUFB\n-----BEGIN PRIVATE KEY-----\nU0VDUkVU\n-----END PRIVATE KEY-----\n";
        assert_eq!(certificates_only(broken), "");
        // A certificate closed by another label's END is dropped too.
        let mislabelled = "-----BEGIN CERTIFICATE-----\nU0VDUkVU\n-----END PRIVATE KEY-----\n";
        assert_eq!(certificates_only(mislabelled), "");
        assert_eq!(certificates_only(""), "");
    }
}
