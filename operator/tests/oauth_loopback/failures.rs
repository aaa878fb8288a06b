//! Failures of the conversation itself, each a typed error with the right `reason()` and
//! `is_transient()`, never a panic: issuer mismatch, a foreign `registration_client_uri`, an
//! oversized body, a slow AS, a non-JSON success, a server certificate from another CA, 429
//! with `Retry-After` and 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sandbox_as::pki::{ServerPki, TestCa};
use sandbox_as::{Endpoint, Fault, FaultKind, FaultTarget};
use serde_json::json;
use tpp_operator::oauth::discovery;
use tpp_operator::oauth::management::read_client;
use tpp_operator::oauth::registration::register_dynamic;
use tpp_operator::oauth::{
    AsClient, AudiencePolicy, Discovery, ManagementTarget, OauthError, TransportConfig,
};

use super::fake::{Canned, FakeAs};
use super::persist::{Persister, Store};
use super::support::{Harness, Tpp};

fn fake_transport(fake: &FakeAs) -> TransportConfig {
    let mut config = TransportConfig::new(fake.ca_pem.as_bytes().to_vec());
    config.connect_timeout = Duration::from_secs(5);
    config.timeout = Duration::from_secs(10);
    config
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_an_issuer_mismatch() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    // Configured as the mTLS host: the document there says `https://localhost:PORT`.
    let wrong_issuer = h.sandbox.mtls_base().to_owned();
    let plain = AsClient::new(&h.transport, None)?;
    let err = h.expect_err(Discovery::default().get(&plain, &wrong_issuer, None).await)?;
    assert!(
        matches!(&err, OauthError::IssuerMismatch { found, .. } if found == h.sandbox.issuer())
    );
    assert_eq!(err.reason(), "IssuerMismatch");
    assert!(!err.is_transient());
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_registration_client_uri_on_another_origin_never_receives_the_rat() -> anyhow::Result<()>
{
    // The sandbox plays the foreign origin; a fake AS answers the registration with a
    // management URI pointing there.
    let h = Harness::start(|_| {}).await?;
    let foreign = format!("{}/tpp-registration/c-foreign", h.sandbox.mtls_base());
    let rat = "rat-foreign-0c5d3e1f-secret";
    h.rec.secret(rat);
    let body = json!({"client_id": "c-foreign", "registration_access_token": rat,
        "registration_client_uri": foreign, "token_endpoint_auth_method": "private_key_jwt"});
    let fake = FakeAs::start(HashMap::from([(
        "/register".to_owned(),
        Canned {
            status: 201,
            content_type: "application/json",
            body: serde_json::to_vec(&body)?,
        },
    )]))
    .await?;
    let tpp = Tpp::generate("tpp-foreign", &h.rec)?;
    let client = AsClient::new(&fake_transport(&fake), Some(&tpp.identity()?))?;
    let store = Arc::new(Store::default());
    let persister = Persister::new(store.clone(), h.rec.clone());
    let endpoint = format!("{}/register", fake.base());
    let registration = h.expect_ok(
        register_dynamic(&client, &endpoint, None, &tpp.metadata()?, &persister).await,
    )?;
    assert_eq!(
        registration.registration_client_uri.as_deref(),
        Some(foreign.as_str())
    );

    let target = ManagementTarget {
        registration_endpoint: &endpoint,
        issuer: &fake.base(),
    };
    let err = h.expect_err(read_client(&client, target, &registration, &persister).await)?;
    assert!(
        matches!(&err, OauthError::ForeignRegistrationUri { found } if *found == h.sandbox.mtls_base())
    );
    assert_eq!(err.reason(), "ForeignRegistrationUri");
    assert!(!err.is_transient());
    assert_eq!(
        h.sandbox.counters().requests_to(Endpoint::Registration),
        0,
        "nothing, so no RAT, reached the foreign origin"
    );
    // `finish` needs one captured call to the sandbox's port: the harness's discovery.
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_response_larger_than_the_body_limit_is_refused_while_reading() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    // A 2 MiB "discovery document" against the default 1 MiB limit.
    let fake = FakeAs::start(HashMap::from([(
        "/.well-known/openid-configuration".to_owned(),
        Canned {
            status: 200,
            content_type: "application/json",
            body: vec![b' '; 2 * 1024 * 1024],
        },
    )]))
    .await?;
    let plain = AsClient::new(&fake_transport(&fake), None)?;
    let err = h.expect_err(
        discovery::fetch(
            &plain,
            discovery::discovery_url(&fake.base(), None)?,
            &fake.base(),
        )
        .await,
    )?;
    assert!(matches!(err, OauthError::BodyTooLarge { limit, .. } if limit == 1024 * 1024));
    assert_eq!(err.reason(), "DiscoveryFailed");
    assert!(!err.is_transient());

    // The sandbox's own document against a small limit.
    let mut small = h.transport.clone();
    small.body_limit = 512;
    let plain = AsClient::new(&small, None)?;
    let err = h.expect_err(
        discovery::fetch(
            &plain,
            discovery::discovery_url(h.sandbox.issuer(), None)?,
            h.sandbox.issuer(),
        )
        .await,
    )?;
    assert!(matches!(err, OauthError::BodyTooLarge { limit: 512, .. }));
    h.finish();
    Ok(())
}

#[tokio::test]
async fn an_as_slower_than_the_client_timeout_gives_a_transient_timeout() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-slow", &h.rec)?;
    let mut impatient = h.transport.clone();
    impatient.timeout = Duration::from_millis(500);
    let client = AsClient::new(&impatient, Some(&tpp.identity()?))?;
    let client_id = h.sandbox.provision_client(json!({
        "token_endpoint_auth_method": "private_key_jwt", "jwks": tpp.jwks()?, "scope": "accounts"}))?;
    assert!(h.sandbox.add_fault(Fault {
        endpoint: FaultTarget::Token,
        kind: FaultKind::Delay { ms: 2_000 },
        count: 1,
    }));
    let started = std::time::Instant::now();
    let err = h.expect_err(
        h.token(
            &client,
            &tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer),
        )
        .await,
    )?;
    assert!(
        started.elapsed() < Duration::from_millis(1_900),
        "gave up at its own timeout"
    );
    assert!(matches!(err, OauthError::Timeout { .. }), "{err}");
    assert_eq!(err.reason(), "AuthorizationServerUnavailable");
    assert!(err.is_transient());
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_success_that_is_not_json_is_invalid_json_without_quoting_the_body() -> anyhow::Result<()>
{
    let h = Harness::start(|_| {}).await?;
    let page = "<html>access_token=leaked-looking-page</html>";
    let mut meta = json!({"issuer": "x", "token_endpoint": "x"});
    let fake = FakeAs::start(HashMap::from([(
        "/token".to_owned(),
        Canned {
            status: 200,
            content_type: "text/html",
            body: page.as_bytes().to_vec(),
        },
    )]))
    .await?;
    meta["issuer"] = json!(fake.base());
    meta["token_endpoint"] = json!(format!("{}/token", fake.base()));
    let meta = discovery::parse(&serde_json::to_vec(&meta)?)?;
    let tpp = Tpp::generate("tpp-html", &h.rec)?;
    let client = AsClient::new(&fake_transport(&fake), Some(&tpp.identity()?))?;
    let authn = tpp.authn("c-html", &h.rec, AudiencePolicy::Issuer);
    let err = h.expect_err(
        tpp_operator::oauth::token::client_credentials(&client, &meta, &authn, "accounts").await,
    )?;
    assert!(
        matches!(
            err,
            OauthError::InvalidJson {
                category: "syntax",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "TokenRequestFailed");
    assert!(!err.is_transient());
    assert!(!format!("{err} {err:?}").contains("html"));
    assert_eq!(fake.requests(), 1);
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_the_tls_handshake() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    // An unrelated CA, and an impostor CA with the sandbox CA's very name.
    let unrelated = TestCa::new("some other CA")?.cert_pem;
    let impostor = ServerPki::generate()?.ca_pem;
    for (ca_pem, expected) in [(unrelated, "UnknownIssuer"), (impostor, "BadSignature")] {
        let mut config = h.transport.clone();
        config.ca_bundle_pem = ca_pem.into_bytes();
        let plain = AsClient::new(&config, None)?;
        let url = discovery::discovery_url(h.sandbox.issuer(), None)?;
        let err = h.expect_err(discovery::fetch(&plain, url, h.sandbox.issuer()).await)?;
        assert!(
            matches!(&err, OauthError::Tls { detail, .. } if detail.contains(expected)),
            "{err}"
        );
        assert_eq!(err.reason(), "TlsFailure");
        assert!(!err.is_transient());
    }
    h.finish();
    Ok(())
}

async fn provisioned(h: &Harness, tpp: &Tpp) -> anyhow::Result<(AsClient, String)> {
    let client_id = h.sandbox.provision_client(json!({
        "token_endpoint_auth_method": "private_key_jwt", "jwks": tpp.jwks()?, "scope": "accounts"}))?;
    Ok((tpp.client(h)?, client_id))
}

#[tokio::test]
async fn a_429_with_retry_after_is_rate_limited_for_that_long() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-429", &h.rec)?;
    let (client, client_id) = provisioned(&h, &tpp).await?;
    assert!(h.sandbox.add_fault(Fault {
        endpoint: FaultTarget::Token,
        kind: FaultKind::Status {
            code: 429,
            retry_after_secs: Some(7)
        },
        count: 1,
    }));
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let err = h.expect_err(h.token(&client, &authn).await)?;
    assert!(matches!(err, OauthError::RateLimited { .. }));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(err.reason(), "RateLimited");
    assert!(err.is_transient());
    // The fault was one-shot: the next attempt, with a fresh assertion, succeeds.
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_503_is_a_transient_unavailability() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-503", &h.rec)?;
    let (client, client_id) = provisioned(&h, &tpp).await?;
    assert!(h.sandbox.add_fault(Fault {
        endpoint: FaultTarget::Token,
        kind: FaultKind::Status {
            code: 503,
            retry_after_secs: None
        },
        count: 1,
    }));
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let err = h.expect_err(h.token(&client, &authn).await)?;
    assert!(matches!(err, OauthError::Unavailable { status: 503, .. }));
    assert_eq!(err.reason(), "AuthorizationServerUnavailable");
    assert_eq!(err.retry_after(), None);
    assert!(err.is_transient());
    h.finish();
    Ok(())
}
