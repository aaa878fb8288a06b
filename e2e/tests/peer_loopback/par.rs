//! Pushed authorization requests with a signed request object, accepted by the authorization
//! endpoint.

use super::*;

/// A PS256 request object (JAR) for the code flow, docs/protocol.md §6.
fn request_object(
    peer: &OidcPeer,
    client_id: &str,
    key: &tpp_operator::identity::PrivateKey,
) -> Result<secrecy::SecretString> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let verifier = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "aud": peer.issuer(), "iss": client_id, "client_id": client_id,
        "nbf": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
        "scope": "openid accounts", "redirect_uri": CALLBACK, "response_type": "code",
        "nonce": uuid::Uuid::new_v4().to_string(), "state": uuid::Uuid::new_v4().to_string(),
        "code_challenge_method": "S256", "code_challenge": challenge, "max_age": 3600,
    });
    let payload =
        josekit::jwt::JwtPayload::from_map(claims.as_object().cloned().unwrap_or_default())?;
    let jws = josekit::jwt::encode_with_signer(
        &payload,
        &josekit::jws::JwsHeader::new(),
        &key.signer()?,
    )?;
    Ok(secrecy::SecretString::from(jws))
}

const CALLBACK: &str = "https://127.0.0.1:1/callback";

#[tokio::test]
async fn a_pushed_request_object_yields_a_request_uri_the_authorization_endpoint_accepts()
-> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-par,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let mut body = pkjwt_metadata(jwks(&[&signing])?);
    body.insert(
        "grant_types".into(),
        json!(["authorization_code", "refresh_token", "client_credentials"]),
    );
    body.insert("response_types".into(), json!(["code"]));
    body.insert("redirect_uris".into(), json!([CALLBACK]));
    body.insert("scope".into(), json!("openid accounts profile"));
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let reg = with_log(
        &peer,
        registration::register_dynamic(
            &client,
            &endpoint,
            Some(peer.initial_access_token()),
            &body,
            &MemoryPersister::default(),
        )
        .await,
    )?;
    let authn = pkjwt(&reg.client_id, &signing)?;
    let pushed = with_log(
        &peer,
        endpoints::push_authorization_request(
            &client,
            &meta,
            &authn,
            request_object(&peer, &reg.client_id, &signing)?,
        )
        .await,
    )?;
    assert!(
        pushed
            .request_uri
            .starts_with("urn:ietf:params:oauth:request_uri:"),
        "{}",
        pushed.request_uri
    );
    assert!(pushed.expires_in > 0);

    // The browser leg (no client certificate): /auth takes the request_uri and starts the login.
    let mut auth = url::Url::parse(
        meta.authorization_endpoint
            .as_deref()
            .context("no authorization_endpoint")?,
    )?;
    auth.query_pairs_mut()
        .append_pair("client_id", &reg.client_id)
        .append_pair("request_uri", &pushed.request_uri);
    let response = peer.http_client(None)?.get(auth).send().await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        response.status().is_redirection(),
        "{}: {}",
        response.status(),
        peer.log_tail(3000)
    );
    assert!(location.starts_with("/interaction/"), "{location}");
    Ok(())
}
