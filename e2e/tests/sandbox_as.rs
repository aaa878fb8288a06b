//! The sandbox AS emulator over real TLS on loopback, driven with reqwest (aws-lc-rs), client
//! certificates from rcgen and assertions signed with josekit.

#[path = "sandbox_as/support.rs"]
mod support;

use std::time::Duration;

use e2e::sandbox::{AudPolicy, Endpoint, Fault, FaultKind, FaultTarget, pki::TestCa};
use rcgen::DnType;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn discovery_is_served_with_loopback_hosts_and_no_client_certificate() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let doc: Value = http(&sb, None)?.get(sb.discovery_url()).send().await?.error_for_status()?.json().await?;
    assert_eq!(doc["issuer"], sb.issuer());
    assert_eq!(doc["token_endpoint"], format!("https://127.0.0.1:{}/token", sb.port()));
    assert_eq!(doc["mtls_endpoint_aliases"]["pushed_authorization_request_endpoint"], format!("https://127.0.0.1:{}/par", sb.port()));
    assert_eq!(doc["authorization_endpoint"], format!("https://localhost:{}/auth", sb.port()));
    assert_ne!(doc["issuer"].as_str().map(|s| &s[..18]), doc["token_endpoint"].as_str().map(|s| &s[..18]), "issuer host differs from token host");
    assert_eq!(doc["token_endpoint_auth_signing_alg_values_supported"], json!(["PS256"]));
    Ok(())
}

#[tokio::test]
async fn discovery_patch_can_drop_par_and_advertise_rs256() -> anyhow::Result<()> {
    let sb = start(|cfg| {
        cfg.discovery_patch = Some(json!({
            "pushed_authorization_request_endpoint": null,
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        }))
    })
    .await?;
    let doc: Value = http(&sb, None)?.get(sb.discovery_url()).send().await?.json().await?;
    assert!(doc.get("pushed_authorization_request_endpoint").is_none());
    assert_eq!(doc["token_endpoint_auth_signing_alg_values_supported"], json!(["RS256"]));
    Ok(())
}

#[tokio::test]
async fn dynamic_registration_then_token_is_bound_to_the_presented_certificate() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;

    let unauthorised = http.post(sb.registration_endpoint()).json(&json!({"jwks": key.jwks()})).send().await?;
    assert_eq!(unauthorised.status(), 401, "no initial access token");

    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let id = client_id(&reg)?;
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(reg["registration_client_uri"], format!("{}/tpp-registration/{id}", sb.issuer()));
    assert!(reg["registration_access_token"].is_string());
    assert_eq!(reg["token_endpoint_auth_signing_alg"], "PS256");

    let (status, body) = token_request(&sb, &http, &id, &key.assertion(&id, sb.issuer(), 0.0, 300.0)?).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "accounts");
    let token = body["access_token"].as_str().unwrap_or_default().to_string();

    let introspected: Value = http
        .post(format!("{}/introspection", sb.mtls_base()))
        .form(&[
            ("token", token.as_str()),
            ("client_id", id.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &key.assertion(&id, sb.issuer(), 0.0, 60.0)?),
        ])
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["client_id"], id.as_str());
    assert_eq!(introspected["cnf"]["x5t#S256"], cert.x5t_s256());

    let admin: Value = http.post(format!("{}/introspect", sb.admin_url())).json(&json!({"token": token})).send().await?.json().await?;
    assert_eq!(admin["cnf"]["x5t#S256"], cert.x5t_s256());
    assert_eq!(sb.counters().registrations_created, 1);
    Ok(())
}

#[tokio::test]
async fn registration_access_token_rotates_on_get_and_put_and_the_old_one_dies() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let uri = reg["registration_client_uri"].as_str().unwrap_or_default().to_string();
    let rat0 = reg["registration_access_token"].as_str().unwrap_or_default().to_string();

    let got = http.get(&uri).bearer_auth(&rat0).send().await?;
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await?;
    let rat1 = got["registration_access_token"].as_str().unwrap_or_default().to_string();
    assert_ne!(rat1, rat0);
    assert_eq!(http.get(&uri).bearer_auth(&rat0).send().await?.status(), 401, "old RAT dies at once");

    let mut metadata = got.as_object().cloned().unwrap_or_default();
    metadata.remove("registration_client_uri");
    metadata.insert("scope".into(), json!("accounts profile"));
    let with_rat = http.put(&uri).bearer_auth(&rat1).json(&metadata).send().await?;
    assert_eq!(with_rat.status(), 400, "registration_access_token must not be sent");
    metadata.remove("registration_access_token");
    metadata.remove("client_id_issued_at");
    let mut without_id = metadata.clone();
    without_id.remove("client_id");
    assert_eq!(http.put(&uri).bearer_auth(&rat1).json(&without_id).send().await?.status(), 400);

    let put = http.put(&uri).bearer_auth(&rat1).json(&metadata).send().await?;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await?;
    assert_eq!(put["scope"], "accounts profile");
    let rat2 = put["registration_access_token"].as_str().unwrap_or_default().to_string();
    assert_ne!(rat2, rat1);
    assert_eq!(http.get(&uri).bearer_auth(&rat1).send().await?.status(), 401);
    assert_eq!(http.get(&uri).bearer_auth(&rat2).send().await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn deleted_client_gets_invalid_client_at_the_token_endpoint() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let id = client_id(&reg)?;
    let uri = reg["registration_client_uri"].as_str().unwrap_or_default().to_string();
    let rat = reg["registration_access_token"].as_str().unwrap_or_default().to_string();
    assert_eq!(http.delete(&uri).bearer_auth(&rat).send().await?.status(), 204);
    assert_eq!(http.get(&uri).bearer_auth(&rat).send().await?.status(), 401);
    let (status, body) = token_request(&sb, &http, &id, &key.assertion(&id, sb.issuer(), 0.0, 300.0)?).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    Ok(())
}

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
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
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
    let assertion = key.sign_with("RS256", &json!({"iss": id, "sub": id, "aud": sb.issuer(),
        "jti": uuid::Uuid::new_v4().to_string(), "iat": now, "exp": now + 60.0}))?;
    let (status, body) = token_request(&sb, &http, &id, &assertion).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
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
    let (status, body) = token_request(&sb, &http, &id, &key.assertion(&id, &sb.token_endpoint(), 0.0, 60.0)?).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert_eq!(token_request(&sb, &http, &id, &key.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn lenient_policy_accepts_the_token_url_as_audience() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    assert_eq!(token_request(&sb, &http, &id, &key.assertion(&id, &sb.token_endpoint(), 0.0, 60.0)?).await?.0, 200);
    assert_eq!(token_request(&sb, &http, &id, &key.assertion(&id, "https://elsewhere.invalid", 0.0, 60.0)?).await?.0, 401);
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
        assert_eq!(token_request(sb, &http, &id, &ask(8.5)?).await?.0, 200, "fractional iat 8.5 s ahead");
        assert_eq!(token_request(sb, &http, &id, &ask(30.0)?).await?.0, thirty_ahead, "30 s ahead");
        assert_eq!(token_request(sb, &http, &id, &ask(61.0)?).await?.0, 401, "61 s ahead");
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
    assert_eq!(strict.counters().rejects_for("assertion_lifetime_too_long"), 1);
    Ok(())
}

#[tokio::test]
async fn token_request_without_client_certificate_is_refused() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http(&sb, Some(&cert))?, key.jwks()).await?)?;
    let no_cert = http(&sb, None)?;
    let (status, body) = token_request(&sb, &no_cert, &id, &key.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
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
    let (_, body) = token_request(&sb, &http_a, &id, &key.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?;
    let token = body["access_token"].as_str().unwrap_or_default().to_string();
    let userinfo = format!("{}/userinfo", sb.mtls_base());
    assert_eq!(http_a.get(&userinfo).bearer_auth(&token).send().await?.status(), 200);
    let refused = http(&sb, Some(&other))?.get(&userinfo).bearer_auth(&token).send().await?;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(http(&sb, None)?.get(&userinfo).bearer_auth(&token).send().await?.status(), 401);
    Ok(())
}

#[tokio::test]
async fn tls_client_auth_accepts_a_ca_issued_cert_and_refuses_a_self_signed_look_alike() -> anyhow::Result<()> {
    let ca = TestCa::generate("client ca")?;
    let pem = ca.pem();
    let sb = start(|cfg| cfg.client_ca_pem = Some(pem)).await?;
    let subject = [(DnType::CountryName, "MY"), (DnType::OrganizationName, "Org"), (DnType::CommonName, "tpp-1")];
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
    let form = [("grant_type", "client_credentials"), ("client_id", id.as_str()), ("scope", "accounts")];
    let ok = http_ok.post(sb.token_endpoint()).form(&form).send().await?;
    assert_eq!(ok.status(), 200);
    let refused = http(&sb, Some(&look_alike))?.post(sb.token_endpoint()).form(&form).send().await?;
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
async fn hub_onboarding_answers_204_and_records_the_certificate() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("hub-tpp")?;
    let response = http(&sb, Some(&cert))?.post(sb.registration_endpoint()).json(&json!({})).send().await?;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await?.is_empty());
    let onboarded = sb.onboardings();
    assert_eq!(onboarded.len(), 1);
    assert_eq!(onboarded[0].x5t_s256, cert.x5t_s256());
    assert_eq!(onboarded[0].subject_dn, "CN=hub-tpp");
    let no_cert = http(&sb, None)?.post(sb.registration_endpoint()).json(&json!({})).send().await?;
    assert_eq!(no_cert.status(), 401);
    let body: Value = no_cert.json().await?;
    assert!(body["Errors"][0]["Code"].is_string());
    Ok(())
}

#[tokio::test]
async fn signed_registration_accepts_a_directory_signed_statement_and_refuses_an_unknown_key() -> anyhow::Result<()> {
    let directory = SigningKey::generate("dir-1")?;
    let impostor = SigningKey::generate("dir-1")?;
    let software = SigningKey::generate("sw-1")?;
    let directory_jwks = directory.jwks();
    let sb = start(|cfg| cfg.directory_jwks = Some(directory_jwks)).await?;
    let http = http(&sb, Some(&transport_cert("tpp")?))?;
    let request = |signer: &SigningKey| -> anyhow::Result<String> {
        let now = now();
        let ssa = signer.sign(&json!({"iss": "directory", "software_id": "sw-123", "iat": now,
            "software_jwks": software.jwks()}))?;
        software.sign(&json!({"iss": "sw-123", "aud": sb.issuer(), "iat": now, "exp": now + 300.0,
            "jti": uuid::Uuid::new_v4().to_string(), "software_statement": ssa,
            "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials"], "scope": "accounts", "application_type": "web",
            "tls_client_certificate_bound_access_tokens": true}))
    };
    let accepted = http.post(sb.registration_endpoint()).header("content-type", "application/jwt")
        .body(request(&directory)?).send().await?;
    assert_eq!(accepted.status(), 201);
    let body: Value = accepted.json().await?;
    assert_eq!(body["software_id"], "sw-123");
    assert!(body["client_id_issued_at"].as_u64().is_some_and(|t| t < 100_000_000_000), "seconds, not ms");
    assert_eq!(body["jwks"]["keys"][0]["kid"], "sw-1");

    let refused = http.post(sb.registration_endpoint()).header("content-type", "application/jose")
        .body(request(&impostor)?).send().await?;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "invalid_software_statement");
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
    let reg = http.post(sb.registration_endpoint()).bearer_auth(IAT)
        .json(&json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_server,
            "grant_types": ["client_credentials"], "scope": "accounts"}))
        .send().await?;
    assert_eq!(reg.status(), 201);
    let id = client_id(&reg.json().await?)?;
    assert_eq!(token_request(&sb, &http, &id, &k1.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?.0, 200);

    if let Ok(mut doc) = served.lock() {
        *doc = json!({"keys": [k1.public_jwk(), k2.public_jwk()]});
    }
    assert_eq!(token_request(&sb, &http, &id, &k2.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?.0, 401, "cached set lacks k2");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(token_request(&sb, &http, &id, &k2.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?.0, 200, "refetched after TTL");
    assert_eq!(sb.counters().rejects_for("unknown_kid"), 1);
    Ok(())
}

#[tokio::test]
async fn injected_429_is_returned_count_times_then_the_request_succeeds() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let fault = http.post(format!("{}/faults", sb.admin_url()))
        .json(&json!({"endpoint": "token", "kind": {"status": {"code": 429, "retry_after_secs": 3}}, "count": 2}))
        .send().await?;
    assert_eq!(fault.status(), 201);
    for _ in 0..2 {
        let response = http.post(sb.token_endpoint()).header("x-fapi-interaction-id", "abc-123")
            .form(&[("grant_type", "client_credentials")]).send().await?;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
        assert_eq!(response.headers().get("x-fapi-interaction-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
    }
    assert_eq!(token_request(&sb, &http, &id, &key.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?.0, 200);
    let counters: Value = http.get(format!("{}/counters", sb.admin_url())).send().await?.json().await?;
    assert_eq!(counters["requests"]["token"]["429"], 2);
    assert_eq!(counters["requests"]["token"]["200"], 1);
    let snapshot = sb.counters();
    assert_eq!(snapshot.token_requests_per_second.values().sum::<u64>(), 3);
    assert!(snapshot.handshakes.full >= 1);
    Ok(())
}

#[tokio::test]
async fn dropped_connection_fault_closes_without_an_answer() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    assert!(sb.add_fault(Fault { endpoint: FaultTarget::Discovery, kind: FaultKind::Drop, count: 1 }));
    let http = http(&sb, None)?;
    assert!(http.get(sb.discovery_url()).send().await.is_err());
    assert_eq!(http.get(sb.discovery_url()).send().await?.status(), 200);
    assert_eq!(sb.counters().requests_with(Endpoint::Discovery, "dropped"), 1);
    Ok(())
}

#[tokio::test]
async fn admin_provisioned_client_gets_tokens_until_deleted_behind_its_back() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = "55aa605c-89ef-4473-aa88-47709f0ff383";
    let created = http.post(format!("{}/clients", sb.admin_url()))
        .json(&json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(), "scope": "accounts"}))
        .send().await?;
    assert_eq!(created.status(), 201);
    assert_eq!(http.get(format!("{}/clients/{id}", sb.admin_url())).send().await?.status(), 200);
    assert_eq!(token_request(&sb, &http, id, &key.assertion(id, sb.issuer(), 0.0, 60.0)?).await?.0, 200);
    assert_eq!(http.delete(format!("{}/clients/{id}", sb.admin_url())).send().await?.status(), 204);
    let (status, body) = token_request(&sb, &http, id, &key.assertion(id, sb.issuer(), 0.0, 60.0)?).await?;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
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
        let response = http.post(sb.token_endpoint()).form(&[
            ("grant_type", "client_credentials"), ("client_id", id.as_str()), ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &key.assertion(&id, sb.issuer(), 0.0, 60.0)?),
        ]).send().await?;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await?;
        assert_eq!(body["error"], "invalid_scope", "{scope}");
    }
    Ok(())
}

#[tokio::test]
async fn revoked_token_is_inactive_and_par_returns_a_request_uri() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = client_id(&register_pkjwt(&sb, &http, key.jwks()).await?)?;
    let (_, body) = token_request(&sb, &http, &id, &key.assertion(&id, sb.issuer(), 0.0, 60.0)?).await?;
    let token = body["access_token"].as_str().unwrap_or_default().to_string();
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let revoked = http.post(format!("{}/token/revoke", sb.mtls_base())).form(&[
        ("token", token.as_str()), ("client_id", &id), ("client_assertion_type", assertion_type),
        ("client_assertion", &key.assertion(&id, sb.issuer(), 0.0, 60.0)?),
    ]).send().await?;
    assert_eq!(revoked.status(), 200);
    assert_eq!(sb.introspect(&token)["active"], false);

    let now = now();
    let request = key.sign(&json!({"iss": id, "client_id": id, "aud": sb.issuer(), "exp": now + 300.0,
        "nbf": now, "response_type": "code", "scope": "accounts", "code_challenge_method": "S256"}))?;
    let par = http.post(format!("{}/par", sb.mtls_base())).form(&[
        ("client_id", id.as_str()), ("request", &request), ("client_assertion_type", assertion_type),
        ("client_assertion", &key.assertion(&id, &format!("{}/par", sb.mtls_base()), 0.0, 60.0)?),
    ]).send().await?;
    assert_eq!(par.status(), 201);
    let body: Value = par.json().await?;
    assert_eq!(body["expires_in"], 90);
    assert!(body["request_uri"].as_str().is_some_and(|u| u.starts_with("urn:ietf:params:oauth:request_uri:")));
    Ok(())
}

#[tokio::test]
async fn binary_prints_its_ready_line_and_serves_discovery_with_the_printed_ca() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox-as"))
        .arg("--state-dir")
        .arg(dir.path())
        .env("SANDBOX_AS_AUD_POLICY", "strict")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await??;
    let ready: Value = serde_json::from_str(&line.unwrap_or_default())?;
    let issuer = ready["issuer"].as_str().unwrap_or_default().to_string();
    let port: u16 = issuer.rsplit(':').next().unwrap_or_default().parse()?;
    assert_eq!(ready["admin"], format!("https://127.0.0.1:{port}/_sandbox"));
    let ca = std::fs::read_to_string(ready["ca"].as_str().unwrap_or_default())?;
    let doc: Value = http_with(&ca, port, None)?
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send().await?.error_for_status()?.json().await?;
    assert_eq!(doc["issuer"], issuer.as_str());
    child.start_kill()?;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await?;
    Ok(())
}

#[tokio::test]
async fn handshakes_are_counted_as_full_or_resumed() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let config = tls_config(sb.ca_pem(), Some(&cert))?;
    for _ in 0..2 {
        let fresh_pool = http_from(config.clone(), sb.port())?;
        assert_eq!(fresh_pool.get(sb.discovery_url()).send().await?.status(), 200);
    }
    let handshakes = sb.counters().handshakes;
    assert_eq!((handshakes.full, handshakes.resumed), (1, 1), "second connection resumes the first session");
    Ok(())
}
