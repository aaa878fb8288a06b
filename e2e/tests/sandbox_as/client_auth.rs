//! Client authentication at the token endpoint (private_key_jwt rules, tls_client_auth,
//! jwks_uri caching) and what tokens are good for (binding, scope, revocation, PAR).

use std::time::Duration;

use e2e::sandbox::{AudPolicy, pki::TestCa};
use rcgen::DnType;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn replayed_assertion_is_refused_with_invalid_client() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let assertion = key.assertion(&id, sb.issuer(), 0.0, 300.0)?;
    assert_eq!(token_request(&sb, &http, &id, &assertion).await?.0, 200);
    let (status, body) = token_request(&sb, &http, &id, &assertion).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(sb.counters().rejects_for("jti_replay"), 1);
    Ok(())
}

#[tokio::test]
async fn rs256_assertion_is_refused() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let now = now();
    let assertion = key.sign_with(
        "RS256",
        &json!({"iss": id, "sub": id, "aud": sb.issuer(),
        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 60.0}),
    )?;
    let (status, body) = token_request(&sb, &http, &id, &assertion).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(sb.counters().rejects_for("alg_not_ps256"), 1);
    Ok(())
}

#[tokio::test]
async fn strict_policy_accepts_only_the_issuer_as_audience() -> anyhow::Result<()> {
    let sb = start(|cfg| cfg.aud_policy = AudPolicy::Strict).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let (status, body) = token_request(
        &sb,
        &http,
        &id,
        &key.assertion(&id, &sb.token_endpoint(), 0.0, 60.0)?,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(
        token_request(
            &sb,
            &http,
            &id,
            &key.assertion(&id, sb.issuer(), 0.0, 60.0)?
        )
        .await?
        .0,
        200
    );
    Ok(())
}

#[tokio::test]
async fn lenient_policy_accepts_the_token_url_as_audience() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    assert_eq!(
        token_request(
            &sb,
            &http,
            &id,
            &key.assertion(&id, &sb.token_endpoint(), 0.0, 60.0)?
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        token_request(
            &sb,
            &http,
            &id,
            &key.assertion(&id, "https://elsewhere.invalid", 0.0, 60.0)?
        )
        .await?
        .0,
        401
    );
    Ok(())
}

#[tokio::test]
async fn clock_ahead_up_to_ten_seconds_is_accepted_and_sixty_refused() -> anyhow::Result<()> {
    let strict = start(|cfg| cfg.aud_policy = AudPolicy::Strict).await?;
    let lenient = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let key = SigningKey::generate("k1")?;
    for (sb, thirty_ahead) in [(&strict, 401), (&lenient, 200)] {
        let http = http(sb, Some(&cert))?;
        let id = client_id(&register_pkjwt(sb, &http, key.jwks()).await?)?;
        let ask = |offset: f64| key.assertion(&id, sb.issuer(), offset, 120.0);
        assert_eq!(
            token_request(sb, &http, &id, &ask(8.5)?).await?.0,
            200,
            "fractional iat 8.5 s ahead"
        );
        assert_eq!(
            token_request(sb, &http, &id, &ask(30.0)?).await?.0,
            thirty_ahead,
            "30 s ahead"
        );
        assert_eq!(
            token_request(sb, &http, &id, &ask(61.0)?).await?.0,
            401,
            "61 s ahead"
        );
    }
    Ok(())
}

#[tokio::test]
async fn assertion_lifetime_of_400_seconds_is_refused_in_strict_mode_only() -> anyhow::Result<()> {
    let strict = start(|cfg| cfg.aud_policy = AudPolicy::Strict).await?;
    let lenient = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let key = SigningKey::generate("k1")?;
    for (sb, expected) in [(&strict, 401), (&lenient, 200)] {
        let http = http(sb, Some(&cert))?;
        let id = client_id(&register_pkjwt(sb, &http, key.jwks()).await?)?;
        let assertion = key.assertion(&id, sb.issuer(), 0.0, 400.0)?;
        assert_eq!(token_request(sb, &http, &id, &assertion).await?.0, expected);
    }
    assert_eq!(
        strict.counters().rejects_for("assertion_lifetime_too_long"),
        1
    );
    Ok(())
}

#[tokio::test]
async fn token_request_without_client_certificate_is_refused() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http(&sb, Some(&cert))?, key.jwks()).await?)?;
    let no_cert = http(&sb, None)?;
    let (status, body) = token_request(
        &sb,
        &no_cert,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 60.0)?,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(sb.counters().rejects_for("no_client_certificate"), 1);
    Ok(())
}

#[tokio::test]
async fn token_presented_with_another_certificate_is_refused_at_userinfo() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let other = transport_cert("tpp")?;
    let http_a = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http_a, key.jwks()).await?)?;
    let (_, body) = token_request(
        &sb,
        &http_a,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 60.0)?,
    )
    .await?;
    let token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let userinfo = format!("{}/userinfo", sb.mtls_base());
    assert_eq!(
        http_a
            .get(&userinfo)
            .bearer_auth(&token)
            .send()
            .await?
            .status(),
        200
    );
    let refused = http(&sb, Some(&other))?
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        http(&sb, None)?
            .get(&userinfo)
            .bearer_auth(&token)
            .send()
            .await?
            .status(),
        401
    );
    Ok(())
}

#[tokio::test]
async fn tls_client_auth_accepts_a_ca_issued_cert_and_refuses_a_self_signed_look_alike()
-> anyhow::Result<()> {
    let ca = TestCa::new("client ca")?;
    let pem = ca.cert_pem.clone();
    let sb = start(|cfg| cfg.client_ca_pem = Some(pem)).await?;
    let subject = [
        (DnType::CountryName, "MY"),
        (DnType::OrganizationName, "Org"),
        (DnType::CommonName, "tpp-1"),
    ];
    let issued = ca.issue_client(&subject)?;
    let look_alike = e2e::sandbox::pki::self_signed_client(&subject)?;
    let http_ok = http(&sb, Some(&issued))?;
    let reg = http_ok
        .post(sb.registration_endpoint())
        .bearer_auth(IAT)
        .json(&json!({"token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=tpp-1,O=Org,C=MY", "scope": "accounts",
            "grant_types": ["client_credentials"], "tls_client_certificate_bound_access_tokens": true}))
        .send()
        .await?;
    assert_eq!(reg.status(), 201);
    let id = client_id(&reg.json().await?)?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("scope", "accounts"),
    ];
    let ok = http_ok.post(sb.token_endpoint()).form(&form).send().await?;
    assert_eq!(ok.status(), 200);
    let refused = http(&sb, Some(&look_alike))?
        .post(sb.token_endpoint())
        .form(&form)
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    assert_eq!(sb.counters().rejects_for("certificate_not_trusted"), 1);

    let with_alg = http_ok.post(sb.registration_endpoint()).bearer_auth(IAT)
        .json(&json!({"token_endpoint_auth_method": "tls_client_auth", "token_endpoint_auth_signing_alg": "PS256",
            "tls_client_auth_subject_dn": "CN=tpp-1"}))
        .send().await?;
    assert_eq!(with_alg.status(), 400, "signing alg with tls_client_auth");
    Ok(())
}

#[tokio::test]
async fn jwks_uri_cache_refuses_a_new_kid_until_the_ttl_elapses() -> anyhow::Result<()> {
    let k1 = SigningKey::generate("k1")?;
    let k2 = SigningKey::generate("k2")?;
    let served = std::sync::Arc::new(std::sync::Mutex::new(k1.jwks()));
    let jwks_server = {
        let served = served.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let doc = served.lock().map(|d| d.clone()).unwrap_or(Value::Null);
                async move { axum::Json(doc) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks")
    };
    let sb = start(|cfg| cfg.jwks_cache_ttl = Duration::from_secs(2)).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let reg = http
        .post(sb.registration_endpoint())
        .bearer_auth(IAT)
        .json(
            &json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_server,
            "grant_types": ["client_credentials"], "scope": "accounts"}),
        )
        .send()
        .await?;
    assert_eq!(reg.status(), 201);
    let id = client_id(&reg.json().await?)?;
    assert_eq!(
        token_request(&sb, &http, &id, &k1.assertion(&id, sb.issuer(), 0.0, 60.0)?)
            .await?
            .0,
        200
    );

    if let Ok(mut doc) = served.lock() {
        *doc = json!({"keys": [k1.public_jwk(), k2.public_jwk()]});
    }
    assert_eq!(
        token_request(&sb, &http, &id, &k2.assertion(&id, sb.issuer(), 0.0, 60.0)?)
            .await?
            .0,
        401,
        "cached set lacks k2"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        token_request(&sb, &http, &id, &k2.assertion(&id, sb.issuer(), 0.0, 60.0)?)
            .await?
            .0,
        200,
        "refetched after TTL"
    );
    assert_eq!(sb.counters().rejects_for("unknown_kid"), 1);
    Ok(())
}

#[tokio::test]
async fn openid_scope_is_invalid_for_client_credentials() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    for scope in ["openid", "profile"] {
        let response = http
            .post(sb.token_endpoint())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("scope", scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                (
                    "client_assertion",
                    &key.assertion(&id, sb.issuer(), 0.0, 60.0)?,
                ),
            ])
            .send()
            .await?;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "invalid_scope", "{scope}");
    }
    Ok(())
}

#[tokio::test]
async fn revoked_token_is_inactive() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let (_, body) = token_request(
        &sb,
        &http,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 60.0)?,
    )
    .await?;
    let token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let revoked = http
        .post(format!("{}/token/revoke", sb.mtls_base()))
        .form(&[
            ("token", token.as_str()),
            ("client_id", &id),
            ("client_assertion_type", assertion_type),
            (
                "client_assertion",
                &key.assertion(&id, sb.issuer(), 0.0, 60.0)?,
            ),
        ])
        .send()
        .await?;
    assert_eq!(revoked.status(), 200);
    assert_eq!(sb.introspect(&token)["active"], false);

    Ok(())
}
