//! Pushed authorization requests through the operator's client: a PS256 request object signed
//! with identity's [`Signer`](tpp_operator::identity::Signer), pushed over mTLS with
//! `private_key_jwt`, then redeemed at the sandbox's auto-approving authorization endpoint.

use std::sync::Arc;

use base64::Engine as _;
use josekit::jws::JwsHeader;
use josekit::jwt::JwtPayload;
use secrecy::SecretString;
use serde_json::json;
use sha2::Digest as _;
use tpp_operator::oauth::endpoints::push_authorization_request;
use tpp_operator::oauth::registration::register_dynamic;
use tpp_operator::oauth::{AsRequest, AudiencePolicy, Clock as _, EndpointKind, Step, SystemClock};

use super::persist::{Persister, Store};
use super::support::{Harness, Tpp};

const REDIRECT_URI: &str = "https://tpp.example/cb";

fn request_object(
    tpp: &Tpp,
    client_id: &str,
    issuer: &str,
    challenge: &str,
) -> anyhow::Result<SecretString> {
    let now = SystemClock.now().as_second();
    let claims = json!({"iss": client_id, "client_id": client_id, "aud": issuer,
        "nbf": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
        "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid accounts",
        "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256"});
    let payload = JwtPayload::from_map(claims.as_object().cloned().unwrap_or_default())?;
    let mut header = JwsHeader::new();
    header.set_token_type("oauth-authz-req+jwt");
    Ok(SecretString::from(josekit::jwt::encode_with_signer(
        &payload,
        &header,
        &tpp.signer,
    )?))
}

#[tokio::test]
async fn a_pushed_authorization_request_yields_a_request_uri_the_authorization_endpoint_redeems()
-> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-par", &h.rec)?;
    let client = tpp.client(&h)?;
    let mut metadata = tpp.metadata()?;
    metadata.insert(
        "grant_types".into(),
        json!(["client_credentials", "authorization_code"]),
    );
    metadata.insert("response_types".into(), json!(["code"]));
    let persister = Persister::new(Arc::new(Store::default()), h.rec.clone());
    let registration = h.expect_ok(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &metadata,
            &persister,
        )
        .await,
    )?;
    let client_id = registration.client_id;
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    h.rec.secret(&verifier);

    let object = request_object(&tpp, &client_id, &h.meta.issuer, &challenge)?;
    h.rec.secret(secrecy::ExposeSecret::expose_secret(&object));
    let pushed = h.expect_ok(push_authorization_request(&client, &h.meta, &authn, object).await)?;
    assert!(
        pushed
            .request_uri
            .starts_with("urn:ietf:params:oauth:request_uri:")
    );
    assert_eq!(pushed.expires_in, 90);

    let mut authorize = url::Url::parse(
        h.meta
            .effective_endpoint(EndpointKind::Authorization, false)
            .unwrap_or_default(),
    )?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &client_id)
        .append_pair("request_uri", &pushed.request_uri);
    let browser = tpp_operator::oauth::AsClient::new(&h.transport, None)?;
    let answer = h.expect_ok(
        browser
            .send(
                Step::PushedAuthorization,
                AsRequest::new(reqwest::Method::GET, authorize.clone()),
            )
            .await,
    )?;
    assert_eq!(answer.status, 303);
    let location = answer
        .headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(url::Url::parse)
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("no location"))?;
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    if let Some(code) = query.get("code") {
        h.rec.secret(code);
    }
    assert!(location.as_str().starts_with(REDIRECT_URI));
    assert_eq!(query.get("iss"), Some(&h.meta.issuer));
    assert_eq!(query.get("state").map(String::as_str), Some("st-1"));
    assert!(query.contains_key("code"));

    let replay = h.expect_ok(
        browser
            .send(
                Step::PushedAuthorization,
                AsRequest::new(reqwest::Method::GET, authorize),
            )
            .await,
    )?;
    assert_eq!(replay.status, 400, "a request_uri is single-use");
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_request_object_signed_with_an_unregistered_key_is_refused() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-par-bad", &h.rec)?;
    let stranger = Tpp::generate("tpp-par-stranger", &h.rec)?;
    let client = tpp.client(&h)?;
    let mut metadata = tpp.metadata()?;
    metadata.insert("grant_types".into(), json!(["authorization_code"]));
    metadata.insert("response_types".into(), json!(["code"]));
    let persister = Persister::new(Arc::new(Store::default()), h.rec.clone());
    let client_id = h
        .expect_ok(
            register_dynamic(
                &client,
                h.registration_endpoint(),
                None,
                &metadata,
                &persister,
            )
            .await,
        )?
        .client_id;
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let object = request_object(
        &stranger,
        &client_id,
        &h.meta.issuer,
        "x".repeat(43).as_str(),
    )?;
    h.rec.secret(secrecy::ExposeSecret::expose_secret(&object));
    let err = h.expect_err(push_authorization_request(&client, &h.meta, &authn, object).await)?;
    assert_eq!(err.reason(), "PushedAuthorizationFailed");
    assert_eq!(err.oauth_error(), Some("invalid_request_object"));
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_transient());
    h.finish();
    Ok(())
}
