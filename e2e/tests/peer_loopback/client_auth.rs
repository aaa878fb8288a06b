//! Client authentication: `tls_client_auth` with a CA-issued certificate (and a self-signed
//! look-alike refused), and an ES256 signing key.

use super::*;

#[tokio::test]
async fn tls_client_auth_with_a_ca_issued_certificate_gets_a_token() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let transport = Transport::ca_issued(&peer, "CN=tpp-mtls,OU=e2e,O=Example TPP,C=MY").await?;
    let client = mtls_client(&peer, &transport)?;
    let mut body = tls_metadata(&transport, &rsa_key().await?)?;
    body.insert("client_name".into(), json!("tls client"));
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let persister = MemoryPersister::default();
    let reg = with_log(
        &peer,
        registration::register_dynamic(
            &client,
            &endpoint,
            Some(peer.initial_access_token()),
            &body,
            &persister,
        )
        .await,
    )?;

    let token = with_log(
        &peer,
        token_for(&client, &meta, &tls_auth(&reg.client_id)).await,
    )?;
    let seen = peer.introspect(&token.access_token).await?;
    assert_eq!(seen["active"], json!(true), "{seen}");
    assert_eq!(seen["client_id"], json!(reg.client_id));
    assert_eq!(seen["cnf"]["x5t#S256"], json!(transport.x5t_s256));
    Ok(())
}

#[tokio::test]
async fn a_self_signed_look_alike_with_the_registered_subject_is_refused() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let subject = "CN=tpp-mtls,OU=e2e,O=Example TPP,C=MY";
    let genuine = Transport::ca_issued(&peer, subject).await?;
    let body = tls_metadata(&genuine, &rsa_key().await?)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let reg = with_log(
        &peer,
        registration::register_dynamic(
            &mtls_client(&peer, &genuine)?,
            &endpoint,
            Some(peer.initial_access_token()),
            &body,
            &MemoryPersister::default(),
        )
        .await,
    )?;

    let look_alike = Transport::self_signed(subject).await?;
    assert_eq!(look_alike.subject()?, genuine.subject()?);
    let err = token_for(
        &mtls_client(&peer, &look_alike)?,
        &meta,
        &tls_auth(&reg.client_id),
    )
    .await
    .err()
    .context("a self-signed look-alike got a token")?;
    assert_rejected(&err, 401, "invalid_client");
    assert_eq!(err.reason(), "InvalidClient");
    Ok(())
}

#[tokio::test]
async fn an_es256_signing_key_registers_es256_and_authenticates() -> Result<()> {
    // The peer accepts both; the operator must register the algorithm its key signs with.
    let algs = vec!["PS256".into(), "ES256".into()];
    let peer = OidcPeer::start(PeerOptions {
        client_auth_algs: algs,
        ..PeerOptions::default()
    })
    .await?;
    let meta = discover(&peer).await?;
    let signing =
        tpp_operator::identity::PrivateKey::generate(tpp_operator::identity::KeyAlgorithm::EcP256)?;
    let transport = Transport::self_signed("CN=tpp-es256,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let body = pkjwt_metadata_for(jwks(&[&signing])?, signing.algorithm());
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
    assert_eq!(
        reg.metadata.get("token_endpoint_auth_signing_alg"),
        Some(&json!("ES256"))
    );
    with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&reg.client_id, &signing)?).await,
    )?;
    Ok(())
}
