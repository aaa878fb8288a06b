//! Each registration mode end to end: register (or provision out of band), then a
//! `client_credentials` token whose binding the sandbox's admin introspection confirms.

use std::sync::Arc;

use josekit::jws::JwsHeader;
use josekit::jwt::JwtPayload;
use sandbox_as::pki::TestCa;
use serde_json::{Value, json};
use tpp_operator::identity::cert::parse_pem;
use tpp_operator::identity::jwks::{PublishedAlg, PublishedKey, build_jwks};
use tpp_operator::identity::signed_request::{
    ClientMetadata, RegistrationRequest, TokenEndpointAuth, signed_registration_request,
};
use tpp_operator::identity::{KeyAlgorithm, KeyUse, PrivateKey};
use tpp_operator::oauth::registration::{
    hub_onboard, register_dynamic, register_signed, register_static,
};
use tpp_operator::oauth::{
    AsClient, AudiencePolicy, ClientAuth, ClientAuthn, ClientIdentity, Clock as _,
    SignedContentType, SystemClock, endpoints,
};

use super::persist::{Persister, Store};
use super::support::{Harness, SCOPE, Tpp};

#[tokio::test]
async fn dynamic_registration_with_an_initial_access_token_yields_a_certificate_bound_token()
-> anyhow::Result<()> {
    let h = Harness::start(|cfg| {
        cfg.initial_access_token = Some(super::support::INITIAL_ACCESS_TOKEN.into())
    })
    .await?;
    let tpp = Tpp::generate("tpp-dynamic", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::default());
    let persister = Persister::new(store.clone(), h.rec.clone());

    let refused = h.expect_err(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert_eq!(refused.reason(), "RegistrationRejected");
    assert_eq!(refused.status(), Some(401));
    assert!(!refused.is_transient());

    let iat = h.initial_access_token();
    let registration = h.expect_ok(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            Some(&iat),
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert_eq!(
        store.rats().len(),
        1,
        "the RAT was persisted before the call returned"
    );
    assert_eq!(
        store.last().map(|r| r.client_id),
        Some(registration.client_id.clone())
    );
    assert_eq!(h.sandbox.counters().registrations_created, 1);

    let authn = tpp.authn(&registration.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    let seen =
        h.expect_ok(endpoints::introspect(&client, &h.meta, &authn, &token.access_token).await)?;
    assert!(seen.active);
    assert_eq!(seen.cnf_x5t_s256.as_deref(), Some(tpp.x5t()));
    assert_eq!(
        seen.client_id.as_deref(),
        Some(registration.client_id.as_str())
    );
    h.finish();
    Ok(())
}

#[tokio::test]
async fn dynamic_registration_without_an_initial_access_token_yields_a_certificate_bound_token()
-> anyhow::Result<()> {
    let h = Harness::start(|cfg| cfg.initial_access_token = None).await?;
    let tpp = Tpp::generate("tpp-open-dcr", &h.rec)?;
    let client = tpp.client(&h)?;
    let store = Arc::new(Store::default());
    let persister = Persister::new(store.clone(), h.rec.clone());
    let registration = h.expect_ok(
        register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &persister,
        )
        .await,
    )?;
    assert_eq!(store.rats().len(), 1);
    let authn = tpp.authn(&registration.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    assert_eq!(token.scope.as_deref(), Some(SCOPE));
    h.finish();
    Ok(())
}

/// Signs a software statement as the directory would (the directory is not the operator).
fn software_statement(directory: &PrivateKey, software_jwks: Value) -> anyhow::Result<String> {
    let now = SystemClock.now().as_second();
    let claims = json!({"iss": "loopback directory", "software_id": "sw-loopback", "iat": now,
        "exp": now + 3600, "software_jwks": software_jwks});
    let payload = JwtPayload::from_map(claims.as_object().cloned().unwrap_or_default())?;
    Ok(josekit::jwt::encode_with_signer(
        &payload,
        &JwsHeader::new(),
        &directory.signer()?,
    )?)
}

#[tokio::test]
async fn signed_request_registration_with_a_directory_signed_statement_yields_a_certificate_bound_token()
-> anyhow::Result<()> {
    let directory = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
    let directory_jwks = serde_json::to_value(build_jwks([PublishedKey {
        jwk: directory.public_jwk(),
        key_use: KeyUse::Sig,
        alg: PublishedAlg::Ps256,
        certificate_chain: Vec::new(),
    }])?)?;
    let h = Harness::start(|cfg| cfg.directory_jwks = Some(directory_jwks)).await?;
    let tpp = Tpp::generate("tpp-signed", &h.rec)?;
    let client = tpp.client(&h)?;
    let ssa = software_statement(&directory, tpp.jwks()?)?;
    h.rec.secret(&ssa);
    let metadata = ClientMetadata {
        redirect_uris: vec!["https://tpp.example/cb".into()],
        auth: TokenEndpointAuth::PrivateKeyJwt,
        grant_types: vec!["client_credentials".into()],
        response_types: vec!["code".into()],
        scopes: vec![SCOPE.into()],
    }
    .to_map();
    let request = signed_registration_request(
        &tpp.signer,
        RegistrationRequest {
            software_id: "sw-loopback",
            software_statement: &ssa,
            audience: &h.meta.issuer,
            metadata: &metadata,
        },
        SystemClock.now(),
    )?;
    h.rec.secret(secrecy::ExposeSecret::expose_secret(&request));
    let store = Arc::new(Store::default());
    let persister = Persister::new(store.clone(), h.rec.clone());
    let registration = h.expect_ok(
        register_signed(
            &client,
            h.registration_endpoint(),
            request,
            SignedContentType::Jwt,
            &persister,
        )
        .await,
    )?;
    assert_eq!(store.rats().len(), 1);
    assert_eq!(
        registration.metadata.get("software_id"),
        Some(&json!("sw-loopback"))
    );
    assert_eq!(h.sandbox.counters().registrations_created, 1);

    let authn = tpp.authn(&registration.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn hub_onboarding_answers_204_and_an_out_of_band_client_gets_a_certificate_bound_token()
-> anyhow::Result<()> {
    let directory_ca = TestCa::new("loopback directory CA")?;
    let ca_pem = directory_ca.cert_pem.clone();
    let h = Harness::start(|cfg| cfg.client_ca_pem = Some(ca_pem)).await?;
    let issued = directory_ca.issue_client(&[
        (rcgen::DnType::CountryName, "GB"),
        (rcgen::DnType::OrganizationName, "Example TPP"),
        (rcgen::DnType::CommonName, "tpp-hub"),
    ])?;
    h.rec.pem(&issued.key_pem);
    let info = parse_pem(&issued.cert_pem)?;
    let identity =
        ClientIdentity::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.clone().into())?;
    assert_eq!(identity.x5t_s256(), info.x5t_s256);
    let client = AsClient::new(&h.transport, Some(&identity))?;

    let plain = AsClient::new(&h.transport, None)?;
    let refused = h.expect_err(hub_onboard(&plain, h.registration_endpoint()).await)?;
    assert_eq!(refused.reason(), "ClientCertificateMissing");

    h.expect_ok(hub_onboard(&client, h.registration_endpoint()).await)?;
    let onboardings = h.sandbox.onboardings();
    assert_eq!(onboardings.len(), 1);
    assert_eq!(onboardings[0].x5t_s256, info.x5t_s256);
    assert_eq!(
        h.sandbox.counters().registrations_created,
        0,
        "no client is created by the hub call"
    );

    // The hub operator activates the client out of band, keyed on the certificate's subject DN
    // as identity renders it.
    let client_id = h.sandbox.provision_client(json!({
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": info.subject,
        "scope": SCOPE,
    }))?;
    let authn = ClientAuthn {
        client_id,
        auth: ClientAuth::TlsClientAuth,
        within_jwks_propagation: false,
    };
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, &info.x5t_s256).await?;
    h.finish();
    Ok(())
}

#[tokio::test]
async fn static_client_provisioned_out_of_band_gets_a_certificate_bound_token() -> anyhow::Result<()>
{
    let h = Harness::start(|_| {}).await?;
    let tpp = Tpp::generate("tpp-static", &h.rec)?;
    let client_id = h.sandbox.provision_client(json!({
        "client_id": "55aa605c-89ef-4473-aa88-47709f0ff383",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": tpp.jwks()?,
        "scope": SCOPE,
    }))?;
    let registration = register_static(client_id.clone());
    assert!(registration.registration_access_token.is_none());
    let client = tpp.client(&h)?;
    let authn = tpp.authn(&registration.client_id, &h.rec, AudiencePolicy::Issuer);
    let token = h.expect_ok(h.token(&client, &authn).await)?;
    h.assert_bound(&token, tpp.x5t()).await?;
    let counters = h.sandbox.counters();
    assert_eq!(
        counters.registrations_created, 0,
        "static sends nothing to register"
    );
    assert_eq!(counters.requests_to(sandbox_as::Endpoint::Registration), 0);
    h.finish();
    Ok(())
}
