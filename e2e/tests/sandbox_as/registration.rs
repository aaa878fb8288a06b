//! Registration: RFC 7591/7592 (with RAT rotation), hub onboarding, signed registration and
//! admin provisioning.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn dynamic_registration_then_token_is_bound_to_the_presented_certificate()
-> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;

    let unauthorised = http
        .post(sb.registration_endpoint())
        .json(&json!({"jwks": key.jwks()}))
        .send()
        .await?;
    assert_eq!(unauthorised.status(), 401, "no initial access token");

    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let id = client_id(&reg)?;
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(
        reg["registration_client_uri"],
        format!("{}/tpp-registration/{id}", sb.issuer())
    );
    assert!(reg["registration_access_token"].is_string());
    assert_eq!(reg["token_endpoint_auth_signing_alg"], "PS256");

    let (status, body) = token_request(
        &sb,
        &http,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 300.0)?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "accounts");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let introspected: Value = http
        .post(format!("{}/introspection", sb.mtls_base()))
        .form(&[
            ("token", token.as_str()),
            ("client_id", id.as_str()),
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
        .await?
        .json()
        .await?;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["client_id"], id.as_str());
    assert_eq!(introspected["cnf"]["x5t#S256"], cert.x5t_s256());

    let admin: Value = http
        .post(format!("{}/introspect", sb.admin_url()))
        .json(&json!({"token": token}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(admin["cnf"]["x5t#S256"], cert.x5t_s256());
    assert_eq!(sb.counters().registrations_created, 1);
    Ok(())
}

#[tokio::test]
async fn registration_access_token_rotates_on_get_and_put_and_the_old_one_dies()
-> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let uri = reg["registration_client_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rat0 = reg["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let got = http.get(&uri).bearer_auth(&rat0).send().await?;
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await?;
    let rat1 = got["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(rat1, rat0);
    assert_eq!(
        http.get(&uri).bearer_auth(&rat0).send().await?.status(),
        401,
        "old RAT dies at once"
    );

    let mut metadata = got.as_object().cloned().unwrap_or_default();
    metadata.remove("registration_client_uri");
    metadata.insert("scope".into(), json!("accounts profile"));
    let with_rat = http
        .put(&uri)
        .bearer_auth(&rat1)
        .json(&metadata)
        .send()
        .await?;
    assert_eq!(
        with_rat.status(),
        400,
        "registration_access_token must not be sent"
    );
    metadata.remove("registration_access_token");
    metadata.remove("client_id_issued_at");
    let mut without_id = metadata.clone();
    without_id.remove("client_id");
    assert_eq!(
        http.put(&uri)
            .bearer_auth(&rat1)
            .json(&without_id)
            .send()
            .await?
            .status(),
        400
    );

    let put = http
        .put(&uri)
        .bearer_auth(&rat1)
        .json(&metadata)
        .send()
        .await?;
    assert_eq!(put.status(), 200);
    let put: Value = put.json().await?;
    assert_eq!(put["scope"], "accounts profile");
    let rat2 = put["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(rat2, rat1);
    assert_eq!(
        http.get(&uri).bearer_auth(&rat1).send().await?.status(),
        401
    );
    assert_eq!(
        http.get(&uri).bearer_auth(&rat2).send().await?.status(),
        200
    );
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
    let uri = reg["registration_client_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rat = reg["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        http.delete(&uri).bearer_auth(&rat).send().await?.status(),
        204
    );
    assert_eq!(http.get(&uri).bearer_auth(&rat).send().await?.status(), 401);
    let (status, body) = token_request(
        &sb,
        &http,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 300.0)?,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    Ok(())
}

#[tokio::test]
async fn hub_onboarding_answers_204_and_records_the_certificate() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("hub-tpp")?;
    let response = http(&sb, Some(&cert))?
        .post(sb.registration_endpoint())
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await?.is_empty());
    let onboarded = sb.onboardings();
    assert_eq!(onboarded.len(), 1);
    assert_eq!(onboarded[0].x5t_s256, cert.x5t_s256());
    assert_eq!(onboarded[0].subject_dn, "CN=hub-tpp");
    let no_cert = http(&sb, None)?
        .post(sb.registration_endpoint())
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(no_cert.status(), 401);
    let body: Value = no_cert.json().await?;
    assert!(body["Errors"][0]["Code"].is_string());
    Ok(())
}

#[tokio::test]
async fn signed_registration_accepts_a_directory_signed_statement_and_refuses_an_unknown_key()
-> anyhow::Result<()> {
    let directory = SigningKey::generate("dir-1")?;
    let impostor = SigningKey::generate("dir-1")?;
    let software = SigningKey::generate("sw-1")?;
    let directory_jwks = directory.jwks();
    let sb = start(|cfg| cfg.directory_jwks = Some(directory_jwks)).await?;
    let http = http(&sb, Some(&transport_cert("tpp")?))?;
    let request = |signer: &SigningKey| -> anyhow::Result<String> {
        let now = now();
        let ssa = signer.sign(
            &json!({"iss": "directory", "software_id": "sw-123", "iat": now,
            "software_jwks": software.jwks()}),
        )?;
        software.sign(&json!({"iss": "sw-123", "aud": sb.issuer(), "iat": now, "exp": now + 300.0,
            "jti": uuid::Uuid::new_v4().to_string(), "software_statement": ssa,
            "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials"], "scope": "accounts", "application_type": "web",
            "tls_client_certificate_bound_access_tokens": true}))
    };
    let accepted = http
        .post(sb.registration_endpoint())
        .header("content-type", "application/jwt")
        .body(request(&directory)?)
        .send()
        .await?;
    assert_eq!(accepted.status(), 201);
    let body: Value = accepted.json().await?;
    assert_eq!(body["software_id"], "sw-123");
    assert!(
        body["client_id_issued_at"]
            .as_u64()
            .is_some_and(|t| t < 100_000_000_000),
        "seconds, not ms"
    );
    assert_eq!(body["jwks"]["keys"][0]["kid"], "sw-1");

    let refused = http
        .post(sb.registration_endpoint())
        .header("content-type", "application/jose")
        .body(request(&impostor)?)
        .send()
        .await?;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await?;
    assert_eq!(body["error"], "invalid_software_statement");
    Ok(())
}

#[tokio::test]
async fn admin_provisioned_client_gets_tokens_until_deleted_behind_its_back() -> anyhow::Result<()>
{
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let id = "55aa605c-89ef-4473-aa88-47709f0ff383";
    let created = http.post(format!("{}/clients", sb.admin_url()))
        .json(&json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(), "scope": "accounts"}))
        .send().await?;
    assert_eq!(created.status(), 201);
    assert_eq!(
        http.get(format!("{}/clients/{id}", sb.admin_url()))
            .send()
            .await?
            .status(),
        200
    );
    assert_eq!(
        token_request(&sb, &http, id, &key.assertion(id, sb.issuer(), 0.0, 60.0)?)
            .await?
            .0,
        200
    );
    assert_eq!(
        http.delete(format!("{}/clients/{id}", sb.admin_url()))
            .send()
            .await?
            .status(),
        204
    );
    let (status, body) =
        token_request(&sb, &http, id, &key.assertion(id, sb.issuer(), 0.0, 60.0)?).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    Ok(())
}

#[tokio::test]
async fn in_process_provisioning_serves_tls_client_auth_until_deleted() -> anyhow::Result<()> {
    let ca = e2e::sandbox::pki::TestCa::new("client ca")?;
    let pem = ca.cert_pem.clone();
    let sb = start(|cfg| cfg.client_ca_pem = Some(pem)).await?;
    let cert = ca.issue_client(&[
        (rcgen::DnType::OrganizationName, "Org"),
        (rcgen::DnType::CommonName, "static-1"),
    ])?;
    let id = sb.provision_client(json!({"token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=static-1,O=Org", "scope": "accounts"}))?;
    let http = http(&sb, Some(&cert))?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
    ];
    assert_eq!(
        http.post(sb.token_endpoint())
            .form(&form)
            .send()
            .await?
            .status(),
        200
    );
    assert!(sb.delete_client(&id));
    assert_eq!(
        http.post(sb.token_endpoint())
            .form(&form)
            .send()
            .await?
            .status(),
        401
    );
    assert!(
        sb.provision_client(json!({"token_endpoint_auth_method": "private_key_jwt"}))
            .is_err(),
        "no keys"
    );
    Ok(())
}

#[tokio::test]
async fn the_audit_view_lists_registered_clients_with_their_current_rat_and_keeps_an_expired_tokens_binding()
-> anyhow::Result<()> {
    let sb = start(|c| c.token_lifetime = std::time::Duration::from_secs(1)).await?;
    let cert = transport_cert("tpp")?;
    let http = http(&sb, Some(&cert))?;
    let key = SigningKey::generate("k1")?;
    let reg = register_pkjwt(&sb, &http, key.jwks()).await?;
    let id = client_id(&reg)?;
    let rat0 = reg["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Admin-provisioned clients (Static, HubOnboarding) are not registrations.
    sb.provision_client(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": key.jwks(), "scope": "accounts"}))?;
    assert_eq!(
        sb.registered_clients(),
        vec![(id.clone(), Some(rat0.clone()))]
    );
    let uri = reg["registration_client_uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let got: Value = http
        .get(&uri)
        .bearer_auth(&rat0)
        .send()
        .await?
        .json()
        .await?;
    let rat1 = got["registration_access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        sb.registered_clients(),
        vec![(id.clone(), Some(rat1))],
        "the current RAT after a rotation"
    );

    let (status, body) = token_request(
        &sb,
        &http,
        &id,
        &key.assertion(&id, sb.issuer(), 0.0, 300.0)?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sb.introspect(&token)["active"] == true {
        assert!(
            std::time::Instant::now() < deadline,
            "a 1 s token still active after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let issued = sb
        .issued_token(&token)
        .expect("an expired token keeps its record");
    assert_eq!(issued["cnf"]["x5t#S256"], cert.x5t_s256());
    assert!(sb.issued_token("never-issued").is_none());
    Ok(())
}

#[tokio::test]
async fn a_strict_sandbox_refuses_signed_registrations_without_iss_or_with_other_keys_than_the_statements()
-> anyhow::Result<()> {
    let directory = SigningKey::generate("dir-1")?;
    let software = SigningKey::generate("sw-1")?;
    let other = SigningKey::generate("sw-2")?;
    let directory_jwks = directory.jwks();
    let sb = start(|cfg| {
        cfg.directory_jwks = Some(directory_jwks);
        cfg.strict_signed_registration = true;
    })
    .await?;
    let http = http(&sb, Some(&transport_cert("tpp")?))?;
    // `claims` are merged into a valid request signed by the software key.
    let request = |claims: Value| -> anyhow::Result<String> {
        let now = now();
        let ssa = directory.sign(
            &json!({"iss": "directory", "software_id": "sw-123", "iat": now,
            "software_jwks": software.jwks()}),
        )?;
        let mut body = json!({"iss": "sw-123", "aud": sb.issuer(), "iat": now, "exp": now + 300.0,
            "jti": uuid::Uuid::new_v4().to_string(), "software_statement": ssa,
            "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "PS256",
            "grant_types": ["client_credentials"], "scope": "accounts",
            "tls_client_certificate_bound_access_tokens": true});
        for (k, v) in claims.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                body.as_object_mut().map(|b| b.remove(&k));
            } else {
                body[k] = v;
            }
        }
        software.sign(&body)
    };
    let send = |body: String| {
        http.post(sb.registration_endpoint())
            .header("content-type", "application/jwt")
            .body(body)
            .send()
    };
    for (claims, reason) in [
        (json!({"iss": null}), "without iss"),
        (
            json!({"jwks": other.jwks()}),
            "with keys other than the statement's",
        ),
        (
            json!({"jwks_uri": "https://127.0.0.1:1/jwks"}),
            "with a jwks_uri instead of the statement's keys",
        ),
    ] {
        let refused = send(request(claims)?).await?;
        assert_eq!(refused.status(), 400, "{reason}");
        let body: Value = refused.json().await?;
        assert_eq!(body["error"], "invalid_software_statement", "{reason}");
    }
    let accepted = send(request(json!({"jwks": software.jwks()}))?).await?;
    assert_eq!(accepted.status(), 201, "the statement's own keys");
    let accepted = send(request(json!({}))?).await?;
    assert_eq!(accepted.status(), 201, "no jwks: the statement's are taken");
    Ok(())
}

#[tokio::test]
async fn with_bind_onboarding_a_hub_client_gets_tokens_only_over_an_onboarded_certificate()
-> anyhow::Result<()> {
    let sb = start(|cfg| cfg.bind_onboarding = true).await?;
    let onboarded = transport_cert("hub-tpp")?;
    let other = transport_cert("hub-tpp")?;
    let (http, other_http) = (http(&sb, Some(&onboarded))?, http(&sb, Some(&other))?);
    let key = SigningKey::generate("k1")?;
    let id = "8e3c0f4e-hub";
    sb.provision_client(
        json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt",
        "jwks": key.jwks(), "scope": "accounts", "hub_onboarding": true}),
    )?;
    let mint = || key.assertion(id, sb.issuer(), 0.0, 60.0);
    let (status, body) = token_request(&sb, &http, id, &mint()?).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "not onboarded yet"
    );
    let onboarding = http
        .post(sb.registration_endpoint())
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(onboarding.status(), 204);
    let (status, body) = token_request(&sb, &http, id, &mint()?).await?;
    assert_eq!(status, 200, "onboarded: {body}");
    let (status, _) = token_request(&sb, &other_http, id, &mint()?).await?;
    assert_eq!(status, 401, "another certificate was never onboarded");
    Ok(())
}
