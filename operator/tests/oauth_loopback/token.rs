//! Token requests: the right key and certificate succeed; an unregistered key, a wrong `aud`,
//! a replayed `jti` and a missing certificate fail with the right classification; a token
//! shown at `/userinfo` with another certificate is refused.

use std::sync::Arc;

use secrecy::ExposeSecret as _;
use tpp_operator::oauth::registration::register_dynamic;
use tpp_operator::oauth::wire::ErrorBody;
use tpp_operator::oauth::{
    AsClient, AsRequest, AudiencePolicy, ClientAuth, ClientAuthn, EndpointKind, OauthError,
    RequestBody, Step,
};

use super::persist::{Persister, Store};
use super::support::{Harness, IdentityMinter, ReplayingMinter, Tpp};

async fn register(h: &Harness, tpp: &Tpp, client: &AsClient) -> anyhow::Result<String> {
    let persister = Persister::new(Arc::new(Store::default()), h.rec.clone());
    let registration = h.expect_ok(
        register_dynamic(
            client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    Ok(registration.client_id)
}

fn assert_permanent_invalid_client(err: &OauthError) {
    assert_eq!(err.reason(), "InvalidClient");
    assert_eq!(err.oauth_error(), Some("invalid_client"));
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_token_signed_with_an_unregistered_key_is_refused_as_invalid_client() -> anyhow::Result<()>
{
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-wrong-key", &h.rec)?;
    let stranger = Tpp::generate("tpp-stranger", &h.rec)?;
    let client = tpp.client(&h)?;
    let client_id = register(&h, &tpp, &client).await?;

    let wrong = stranger.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let err = h.expect_err(h.token(&client, &wrong).await)?;
    assert_permanent_invalid_client(&err);
    assert_eq!(h.sandbox.counters().rejects_for("unknown_kid"), 1);

    // Inside a JWKS propagation window the same refusal is cache lag: transient.
    let mut propagating = stranger.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    propagating.within_jwks_propagation = true;
    let err = h.expect_err(h.token(&client, &propagating).await)?;
    assert!(err.is_transient());

    let right = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &right).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_strict_as_refuses_an_assertion_whose_aud_is_not_the_issuer() -> anyhow::Result<()> {
    let h = Harness::start(|cfg| cfg.aud_policy = sandbox_as::AudPolicy::Strict).await?;
    let tpp = Tpp::generate("tpp-aud", &h.rec)?;
    let client = tpp.client(&h)?;
    let client_id = register(&h, &tpp, &client).await?;
    let token_endpoint = h.sandbox.token_endpoint();

    let literal = tpp.authn(&client_id, &h.rec, AudiencePolicy::Literal(token_endpoint));
    let err = h.expect_err(h.token(&client, &literal).await)?;
    assert_permanent_invalid_client(&err);
    assert_eq!(h.sandbox.counters().rejects_for("bad_audience"), 1);

    let issuer = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &issuer).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_replayed_assertion_is_refused_as_permanent_invalid_client() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-replay", &h.rec)?;
    let client = tpp.client(&h)?;
    let client_id = register(&h, &tpp, &client).await?;
    let authn = ClientAuthn {
        client_id: client_id.clone(),
        auth: ClientAuth::PrivateKeyJwt {
            minter: Arc::new(ReplayingMinter::new(IdentityMinter::new(
                tpp.signer.clone(),
                &client_id,
                h.rec.clone(),
            ))),
            audience: AudiencePolicy::Issuer,
        },
        within_jwks_propagation: false,
    };
    let first = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&first, tpp.x5t()).await?;
    let err = h.expect_err(h.token(&client, &authn).await)?;
    assert_permanent_invalid_client(&err);
    assert_eq!(h.sandbox.counters().rejects_for("jti_replay"), 1);
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_token_request_without_a_client_certificate_is_refused() -> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-no-cert", &h.rec)?;
    let client_id = register(&h, &tpp, &tpp.client(&h)?).await?;
    let plain = AsClient::new(&h.transport, None)?;
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);

    // The client refuses before sending (and before minting an assertion).
    let err = h.expect_err(h.token(&plain, &authn).await)?;
    assert_eq!(err.reason(), "ClientCertificateMissing");
    assert!(!err.is_transient());
    assert_eq!(
        h.sandbox
            .counters()
            .requests_to(sandbox_as::Endpoint::Token),
        0
    );

    // And the AS refuses such a request anyway.
    let url = url::Url::parse(&h.sandbox.token_endpoint())?;
    let form = format!("grant_type=client_credentials&client_id={client_id}");
    let response = h.expect_ok(
        plain
            .send(
                Step::Token,
                AsRequest::new(reqwest::Method::POST, url).body(
                    "application/x-www-form-urlencoded",
                    RequestBody::Public(form.into_bytes()),
                ),
            )
            .await,
    )?;
    assert_eq!(response.status, 401);
    assert!(ErrorBody::parse(&response.body).is("invalid_client"));
    h.finish();
    Ok(())
}

#[tokio::test]
async fn a_token_presented_at_userinfo_with_another_certificate_is_refused_with_401()
-> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-userinfo", &h.rec)?;
    let other = Tpp::generate("tpp-thief", &h.rec)?;
    let client = tpp.client(&h)?;
    let client_id = register(&h, &tpp, &client).await?;
    let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    let userinfo = h
        .meta
        .effective_endpoint(EndpointKind::Userinfo, true)
        .map(url::Url::parse)
        .transpose()?
        .ok_or_else(|| anyhow::anyhow!("no userinfo endpoint"))?;

    let call = |c: AsClient, url: url::Url, token: secrecy::SecretString| async move {
        c.send(
            Step::Introspection,
            AsRequest::new(reqwest::Method::GET, url).bearer(&token),
        )
        .await
    };
    let own =
        h.expect_ok(call(client.clone(), userinfo.clone(), token.access_token.clone()).await)?;
    assert_eq!(own.status, 200, "the bound certificate may use the token");

    let stolen =
        h.expect_ok(call(other.client(&h)?, userinfo, token.access_token.clone()).await)?;
    assert_eq!(stolen.status, 401);
    assert!(ErrorBody::parse(&stolen.body).is("invalid_token"));
    h.rec.text(format!("{stolen:?}"));
    assert!(!String::from_utf8_lossy(&stolen.body).contains(token.access_token.expose_secret()));
    h.finish();
    Ok(())
}
