//! The operator binary on a real kube-apiserver against oidc-provider 9.13.3 — an independent,
//! OpenID-certified AS — with no peer-specific code in the operator: Dynamic registration with
//! `private_key_jwt` and with `tls_client_auth`, certificate renewal, key rotation through RFC
//! 7592 with RAT rotation, SignedRequest through the peer's middleware, deletion, and the
//! discovery preflight.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::{
    TestContext,
    fixtures::*,
    peer::{OidcPeer, Par, PeerOptions},
    with_namespace,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(120);

/// An AuthorizationServer for the peer, and the initial access token in a Secret.
async fn peer_server(ctx: &TestContext, peer: &OidcPeer, name: &str) -> Result<()> {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "peer-iat"},
        "stringData": {"token": peer.initial_access_token().expose_secret()}});
    ctx.api::<Secret>()
        .patch(
            "peer-iat",
            &PatchParams::apply("e2e-user"),
            &Patch::Apply(&secret),
        )
        .await?;
    apply(
        ctx,
        json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "AuthorizationServer", "metadata": {"name": name}, "spec": {
            "issuer": peer.issuer(), "caBundle": peer.ca_pem(), "jwksCacheTtl": "1s",
            "registration": {"initialAccessTokenRef": {"name": "peer-iat", "key": "token"}},
        }}),
    )
    .await?;
    Ok(())
}

/// The Secret's token is active at the peer, for the Secret's client, bound to its tls.crt.
async fn assert_bound(peer: &OidcPeer, secret: &Secret) -> Result<()> {
    let token = SecretString::from(secret_text(secret, "accounts.access_token").context("token")?);
    let info = peer.introspect(&token).await?;
    ensure!(info["active"] == true, "not active at the peer: {info}");
    ensure!(
        info["client_id"]
            == secret_text(secret, "client_id")
                .context("client_id")?
                .as_str(),
        "wrong client: {info}"
    );
    let x5t = x5t_of_pem(&secret_text(secret, "tls.crt").context("crt")?)?;
    ensure!(
        info["cnf"]["x5t#S256"] == x5t.as_str(),
        "not bound to the Secret's certificate: {info}"
    );
    Ok(())
}

#[tokio::test]
async fn dynamic_private_key_jwt_client_of_oidc_provider_is_ready_with_a_bound_token() {
    with_namespace("peer-dyn", |ctx| async move {
        let peer = OidcPeer::start(PeerOptions::default()).await?;
        let _op = start_operator(&ctx).await?;
        peer_server(&ctx, &peer, "peer").await?;
        apply(&ctx, client("payments", "peer", json!({}))).await?;
        let ready = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await;
        if ready.is_err() {
            eprintln!("peer log:\n{}", peer.log_tail(6000));
        }
        ready?;
        assert_bound(&peer, &credentials(&ctx, "payments").await?).await?;
        // Renewing the certificate re-binds the token to the new certificate.
        let before = x5t_of_pem(
            &secret_text(&credentials(&ctx, "payments").await?, "tls.crt").context("crt")?,
        )?;
        let patch = json!({"metadata": {"annotations": {"tpp.dev/renew-certificate": "1"}}});
        api(&ctx, "TppClient")
            .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = credentials(&ctx, "payments").await?;
            if x5t_of_pem(&secret_text(&s, "tls.crt").context("crt")?)? != before {
                assert_bound(&peer, &s).await?;
                break;
            }
            ensure!(Instant::now() < deadline, "certificate not renewed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn key_rotation_through_rfc7592_with_rat_rotation_is_never_refused_and_retires_the_old_key() {
    with_namespace("peer-rot", |ctx| async move {
        let peer = OidcPeer::start(PeerOptions::default()).await?;
        let _op = start_operator(&ctx).await?;
        peer_server(&ctx, &peer, "peer").await?;
        apply(&ctx, client("payments", "peer", json!({"signingKey": {"rotation": {"propagationDelay": "2s", "retireAfter": "3s"}}}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let cms: Api<ConfigMap> = ctx.api();
        let kids = |cm: &ConfigMap| -> Vec<String> {
            let v: Value = serde_json::from_str(cm.data.as_ref().and_then(|d| d.get("jwks.json")).map(String::as_str).unwrap_or("{}")).unwrap_or_default();
            v["keys"].as_array().map(|k| k.iter().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let before = kids(&cms.get("payments-jwks").await?);
        let patch = json!({"metadata": {"annotations": {"tpp.dev/rotate-keys": "1"}}});
        api(&ctx, "TppClient").patch("payments", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut after;
        loop {
            after = kids(&cms.get("payments-jwks").await?);
            if after.len() == 1 && after != before {
                break;
            }
            ensure!(Instant::now() < deadline, "rotation did not finish: {after:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A token minted with the new key after the switch, and nothing refused on the way.
        let renew = json!({"metadata": {"annotations": {"tpp.dev/renew-tokens": "after-rotation"}}});
        api(&ctx, "TppClient").patch("payments", &PatchParams::default(), &Patch::Merge(&renew)).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = credentials(&ctx, "payments").await?;
            if secret_text(&s, "signing.kid").as_deref() == after.first().map(String::as_str) {
                assert_bound(&peer, &s).await?;
                break;
            }
            ensure!(Instant::now() < deadline, "the new key never signed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = peer.log_tail(200_000);
        ensure!(!log.contains("grant.error"), "the peer refused a token request during the rotation:\n{log}");
        ensure!(!log.contains("registration_update.error"), "the peer refused an RFC 7592 update:\n{log}");
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn tls_client_auth_with_a_ca_issued_certificate_works_and_a_self_signed_look_alike_is_refused()
 {
    with_namespace("peer-tls", |ctx| async move {
        let peer = OidcPeer::start(PeerOptions::default()).await?;
        let _op = start_operator(&ctx).await?;
        peer_server(&ctx, &peer, "peer").await?;
        let subject = "CN=payments-mtls,O=Example TPP,C=MY";
        let subject_parts = [
            (rcgen::DnType::CommonName, "payments-mtls"),
            (rcgen::DnType::OrganizationName, "Example TPP"),
            (rcgen::DnType::CountryName, "MY"),
        ];
        let issued = peer.ca().client_cert_for(
            e2e::pki::dn(&subject_parts),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                .or_else(|_| rcgen::KeyPair::generate())?,
        )?;
        let tls_secret = |name: &str, cert: &str, key: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name}, "stringData": {"tls.crt": cert, "tls.key": key}})
        };
        ctx.api::<Secret>()
            .patch(
                "issued",
                &PatchParams::apply("e2e-user"),
                &Patch::Apply(&tls_secret("issued", &issued.cert_pem, &issued.key_pem)),
            )
            .await?;
        // The look-alike: same subject, self-signed.
        let fake = e2e::pki::self_signed_client(&subject_parts)?;
        ctx.api::<Secret>()
            .patch(
                "lookalike",
                &PatchParams::apply("e2e-user"),
                &Patch::Apply(&tls_secret("lookalike", &fake.cert_pem, &fake.key_pem)),
            )
            .await?;
        let spec = |secret: &str| {
            json!({
                "authentication": {"method": "tls_client_auth", "subjectDn": subject},
                "transportCertificate": {"source": "SecretRef", "secretRef": {"name": secret}},
            })
        };
        apply(&ctx, client("genuine", "peer", spec("issued"))).await?;
        apply(&ctx, client("impostor", "peer", spec("lookalike"))).await?;
        wait_condition(&ctx, "TppClient", "genuine", "Ready", "True", READY).await?;
        assert_bound(&peer, &credentials(&ctx, "genuine").await?).await?;
        let o = wait_for(&ctx, "TppClient", "impostor", READY, |o| {
            condition(o, "TokensReady")
                .is_some_and(|c| c["status"] == "False" && c["reason"] != "Pending")
        })
        .await?;
        let c = condition(&o, "TokensReady").unwrap_or_default();
        ensure!(
            c["reason"] == "InvalidClient",
            "a clear reason for the refusal: {c}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deletion_deregisters_so_the_peer_refuses_the_old_client() {
    with_namespace("peer-del", |ctx| async move {
        let peer = OidcPeer::start(PeerOptions::default()).await?;
        let _op = start_operator(&ctx).await?;
        peer_server(&ctx, &peer, "peer").await?;
        // The test signs an assertion as the deleted client: it asks for the signing key.
        apply(
            &ctx,
            client(
                "payments",
                "peer",
                json!({"credentials": {"includeSigningKey": true}}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let s = credentials(&ctx, "payments").await?;
        let token = SecretString::from(secret_text(&s, "accounts.access_token").context("token")?);
        api(&ctx, "TppClient")
            .delete("payments", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while api(&ctx, "TppClient").get_opt("payments").await?.is_some() {
            ensure!(Instant::now() < deadline, "not deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The client is gone at the peer: a token request with its credentials gets 401.
        let _ = token;
        let http = peer.http_client(None)?;
        let cert = e2e::pki::CertPair::from_pem(
            secret_text(&s, "tls.crt").context("crt")?,
            secret_text(&s, "tls.key").context("key")?,
        )?;
        let mtls = peer.http_client(Some(&cert))?;
        let _ = http;
        let client_id = secret_text(&s, "client_id").context("client_id")?;
        let key = tpp_operator::identity::PrivateKey::from_pem(
            &secret_text(&s, "signing.key").context("signing.key")?,
        )?;
        let now = jiff::Timestamp::now();
        let assertion = tpp_operator::identity::assertion::client_assertion(
            &key.signer()?,
            tpp_operator::identity::assertion::AssertionTarget {
                client_id: &client_id,
                issuer: peer.issuer(),
                token_endpoint: &format!("{}/token", peer.issuer()),
            },
            &Default::default(),
            now,
        )?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &client_id)
            .append_pair("scope", "accounts")
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion.expose_secret())
            .finish();
        let r = mtls
            .post(format!("{}/token", peer.issuer()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        ensure!(
            status == 401 && body["error"] == "invalid_client",
            "the deleted client still authenticates: {status} {body}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn preflight_names_what_the_peer_does_not_advertise() {
    with_namespace("peer-pre", |ctx| async move {
        let _op = start_operator(&ctx).await?;
        let no_par = OidcPeer::start(PeerOptions { par: Par::Off, ..Default::default() }).await?;
        let rs256 = OidcPeer::start(PeerOptions { client_auth_algs: vec!["RS256".into()], ..Default::default() }).await?;
        peer_server(&ctx, &no_par, "no-par").await?;
        let o = wait_condition(&ctx, "AuthorizationServer", "no-par", "Ready", "False", READY).await?;
        let c = condition(&o, "Ready").unwrap_or_default();
        ensure!(c["reason"] == "PreflightFailed" && c["message"].as_str().unwrap_or("").contains("pushed_authorization_request"), "PAR mismatch named: {c}");
        apply(&ctx, json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "AuthorizationServer", "metadata": {"name": "rs256"}, "spec": {"issuer": rs256.issuer(), "caBundle": rs256.ca_pem()}})).await?;
        let o = wait_condition(&ctx, "AuthorizationServer", "rs256", "Ready", "False", READY).await?;
        let c = condition(&o, "Ready").unwrap_or_default();
        ensure!(c["reason"] == "PreflightFailed" && c["message"].as_str().unwrap_or("").contains("PS256"), "algorithm mismatch named: {c}");
        Ok(())
    })
    .await;
}

/// A directory-signed software statement carrying `jwks` as `software_jwks`.
fn software_statement(
    directory: &tpp_operator::identity::PrivateKey,
    software_id: &str,
    jwks: Value,
) -> Result<String> {
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    let mut payload = josekit::jwt::JwtPayload::new();
    payload.set_claim("software_id", Some(json!(software_id)))?;
    payload.set_claim("software_jwks", Some(jwks))?;
    payload.set_issuer("test-directory");
    payload.set_issued_at(&std::time::SystemTime::now());
    Ok(josekit::jwt::encode_with_signer(
        &payload,
        &header,
        &directory.signer()?,
    )?)
}

/// Apply a SignedRequest TppClient; once its first key is published, issue the statement (as a
/// directory would after the TPP uploads its key) with `signed_by`.
async fn signed_client(
    ctx: &TestContext,
    name: &str,
    signed_by: &tpp_operator::identity::PrivateKey,
) -> Result<()> {
    apply(ctx, client(name, "peer", json!({"registration": {"mode": "SignedRequest", "softwareStatementRef": {"name": format!("{name}-ssa"), "key": "ssa.jwt"}, "metadata": {"softwareId": format!("sw-{name}")}}}))).await?;
    let cms: Api<ConfigMap> = ctx.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    let jwks = loop {
        if let Some(cm) = cms.get_opt(&format!("{name}-jwks")).await?
            && let Some(text) = cm.data.and_then(|d| d.get("jwks.json").cloned())
        {
            break serde_json::from_str::<Value>(&text)?;
        }
        ensure!(Instant::now() < deadline, "no JWKS published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ssa = software_statement(signed_by, &format!("sw-{name}"), jwks)?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-ssa")}, "stringData": {"ssa.jwt": ssa}});
    ctx.api::<Secret>()
        .patch(
            &format!("{name}-ssa"),
            &PatchParams::apply("e2e-user"),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn signed_request_registration_passes_the_peers_verifier_and_an_unknown_directory_key_is_rejected()
 {
    with_namespace("peer-ssa", |ctx| async move {
        use tpp_operator::identity::{KeyAlgorithm, PrivateKey};
        let directory = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
        let stranger = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
        let peer = OidcPeer::start(PeerOptions {
            directory_jwks: json!({"keys": [serde_json::to_value(directory.public_jwk())?]}),
            ..Default::default()
        })
        .await?;
        let _op = start_operator(&ctx).await?;
        peer_server(&ctx, &peer, "peer").await?;
        signed_client(&ctx, "trusted", &directory).await?;
        signed_client(&ctx, "untrusted", &stranger).await?;
        let ready = wait_condition(&ctx, "TppClient", "trusted", "Ready", "True", READY).await;
        if ready.is_err() {
            eprintln!("peer log:\n{}", peer.log_tail(6000));
        }
        ready?;
        assert_bound(&peer, &credentials(&ctx, "trusted").await?).await?;
        let o = wait_for(&ctx, "TppClient", "untrusted", READY, |o| {
            condition(o, "Registered").is_some_and(|c| c["reason"] == "RegistrationRejected")
        })
        .await?;
        let msg = condition(&o, "Registered")
            .map(|c| c["message"].to_string())
            .unwrap_or_default();
        ensure!(
            msg.contains("invalid_software_statement"),
            "the condition carries the AS's error: {msg}"
        );
        Ok(())
    })
    .await;
}
