//! Signed (OBIE-style) registration through the peer's middleware: a directory-signed software
//! statement accepted, one from an unknown directory key refused.

use super::*;

/// A software statement signed by `directory` naming `software_id` and `software_keys`.
fn software_statement(
    directory: &tpp_operator::identity::PrivateKey,
    software_id: &str,
    software_keys: Value,
) -> Result<String> {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "iss": "e2e-directory", "iat": now, "exp": now + 3600, "jti": uuid::Uuid::new_v4().to_string(),
        "software_id": software_id, "software_client_name": "tpp-operator e2e",
        "software_jwks": software_keys,
    });
    let payload =
        josekit::jwt::JwtPayload::from_map(claims.as_object().cloned().unwrap_or_default())?;
    Ok(josekit::jwt::encode_with_signer(
        &payload,
        &josekit::jws::JwsHeader::new(),
        &directory.signer()?,
    )?)
}

fn signed_request(
    peer: &OidcPeer,
    signing: &tpp_operator::identity::PrivateKey,
    statement: &str,
    software_id: &str,
) -> Result<secrecy::SecretString> {
    let metadata = metadata(TokenEndpointAuth::PrivateKeyJwt);
    Ok(signed_registration_request(
        &signing.signer()?,
        RegistrationRequest {
            software_id,
            software_statement: statement,
            audience: peer.issuer(),
            metadata: &metadata,
        },
        jiff::Timestamp::now(),
    )?)
}

#[tokio::test]
async fn a_signed_request_through_the_middleware_registers_a_working_client() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let directory = rsa_key().await?;
    peer.set_directory_jwks(&jwks(&[&directory])?)?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-signed,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let software_id = format!("sw-{}", uuid::Uuid::new_v4());
    let statement = software_statement(&directory, &software_id, jwks(&[&signing])?)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let persister = MemoryPersister::default();

    let request = signed_request(&peer, &signing, &statement, &software_id)?;
    let reg = with_log(
        &peer,
        registration::register_signed(
            &client,
            &endpoint,
            request,
            SignedContentType::Jwt,
            &persister,
        )
        .await,
    )?;
    assert_eq!(reg.metadata.get("software_id"), Some(&json!(software_id)));
    assert_eq!(
        reg.metadata.get("token_endpoint_auth_method"),
        Some(&json!("private_key_jwt"))
    );
    // The jwks came from the statement's software_jwks: the signing key authenticates.
    let token = with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&reg.client_id, &signing)?).await,
    )?;
    assert_eq!(
        peer.introspect(&token.access_token).await?["cnf"]["x5t#S256"],
        json!(transport.x5t_s256)
    );

    // A signed PUT (fresh JWT, all claims) is accepted and rotates the RAT.
    let request = signed_request(&peer, &signing, &statement, &software_id)?;
    let updated = with_log(
        &peer,
        management::update_client_signed(
            &client,
            target(&peer, &meta),
            &reg,
            request,
            SignedContentType::Jwt,
            &persister,
        )
        .await,
    )?;
    assert_eq!(updated.client_id, reg.client_id);
    assert_eq!(persister.count(), 2, "the rotated RAT is persisted");
    Ok(())
}

#[tokio::test]
async fn a_statement_from_an_unknown_directory_key_is_a_permanent_registration_rejection()
-> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let directory = rsa_key().await?;
    let impostor = rsa_key().await?;
    peer.set_directory_jwks(&jwks(&[&directory])?)?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-impostor,O=Example TPP").await?;
    let statement = software_statement(&impostor, "sw-impostor", jwks(&[&signing])?)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let persister = MemoryPersister::default();

    let err = registration::register_signed(
        &mtls_client(&peer, &transport)?,
        &endpoint,
        signed_request(&peer, &signing, &statement, "sw-impostor")?,
        SignedContentType::Jwt,
        &persister,
    )
    .await
    .err()
    .context("a statement signed by an unknown key was accepted")?;
    assert_rejected(&err, 400, "invalid_software_statement");
    assert_eq!(err.reason(), "RegistrationRejected");
    assert_eq!(persister.count(), 0);
    assert!(
        peer.log_tail(4000).contains("signed_registration.error"),
        "the peer logs why"
    );
    Ok(())
}
