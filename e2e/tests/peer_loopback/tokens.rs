//! Certificate-bound tokens: minted over mTLS with a client assertion, introspected and
//! revoked by the operator's client, refused once the client is deleted.

use super::*;

#[tokio::test]
async fn private_key_jwt_client_registers_and_gets_a_token_bound_to_its_certificate() -> Result<()>
{
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-pkjwt,O=Example TPP").await?;
    let persister = MemoryPersister::default();
    let reg = register_pkjwt(&peer, &meta, &transport, jwks(&[&signing])?, &persister).await?;
    assert_eq!(
        persister.count(),
        1,
        "the registration is persisted before it is returned"
    );
    assert!(reg.registration_access_token.is_some());
    assert_eq!(
        reg.metadata
            .get("tls_client_certificate_bound_access_tokens"),
        Some(&json!(true))
    );

    let client = mtls_client(&peer, &transport)?;
    let token = with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&reg.client_id, &signing)?).await,
    )?;
    assert_eq!(token.scope.as_deref(), Some("accounts"));
    assert_eq!(
        token.bound_x5t_s256.as_deref(),
        Some(transport.x5t_s256.as_str())
    );

    let seen = peer.introspect(&token.access_token).await?;
    assert_eq!(seen["active"], json!(true), "{seen}");
    assert_eq!(seen["client_id"], json!(reg.client_id));
    assert_eq!(seen["cnf"]["x5t#S256"], json!(transport.x5t_s256));
    Ok(())
}

#[tokio::test]
async fn the_operator_introspects_and_revokes_its_own_token() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-introspect,O=Example TPP").await?;
    let reg = register_pkjwt(
        &peer,
        &meta,
        &transport,
        jwks(&[&signing])?,
        &MemoryPersister::default(),
    )
    .await?;
    let client = mtls_client(&peer, &transport)?;
    let authn = pkjwt(&reg.client_id, &signing)?;
    let token = with_log(&peer, token_for(&client, &meta, &authn).await)?;
    assert_eq!(
        token.expires_in.as_secs(),
        600,
        "the peer's ClientCredentials ttl"
    );

    let own = with_log(
        &peer,
        endpoints::introspect(&client, &meta, &authn, &token.access_token).await,
    )?;
    assert!(own.active);
    assert_eq!(own.client_id.as_deref(), Some(reg.client_id.as_str()));
    assert_eq!(
        own.cnf_x5t_s256.as_deref(),
        Some(transport.x5t_s256.as_str())
    );
    let exp = own.exp.context("introspection has no exp")?;
    let skew = exp.duration_since(token.expires_at).as_secs().abs();
    assert!(
        skew <= 2,
        "introspected exp and computed expires_at differ by {skew} s"
    );

    with_log(
        &peer,
        endpoints::revoke(
            &client,
            &meta,
            &authn,
            &token.access_token,
            Some("access_token"),
        )
        .await,
    )?;
    let after = with_log(
        &peer,
        endpoints::introspect(&client, &meta, &authn, &token.access_token).await,
    )?;
    assert!(!after.active, "a revoked token is inactive");
    Ok(())
}

#[tokio::test]
async fn a_deleted_client_gets_invalid_client_at_the_token_endpoint() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-deleted,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let reg = register_pkjwt(
        &peer,
        &meta,
        &transport,
        jwks(&[&signing])?,
        &MemoryPersister::default(),
    )
    .await?;
    with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&reg.client_id, &signing)?).await,
    )?;

    let outcome = with_log(
        &peer,
        management::delete_client(&client, target(&peer, &meta), &reg).await,
    )?;
    assert_eq!(outcome, DeleteOutcome::Deleted);
    let err = token_for(&client, &meta, &pkjwt(&reg.client_id, &signing)?)
        .await
        .err()
        .context("a deleted client got a token")?;
    assert_rejected(&err, 401, "invalid_client");
    let again = with_log(
        &peer,
        management::delete_client(&client, target(&peer, &meta), &reg).await,
    )?;
    assert_eq!(
        again,
        DeleteOutcome::Refused,
        "oidc-provider answers a deleted client's token with 401: refused, not proof of deletion"
    );
    Ok(())
}
