//! RFC 7591 registration refusals and RFC 7592 management: registration access token
//! rotation on every PUT and a key swap that retires the old key.

use super::*;

#[tokio::test]
async fn registration_without_the_initial_access_token_or_against_policy_is_permanently_rejected()
-> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let signing = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-refused,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let persister = MemoryPersister::default();
    let body = pkjwt_metadata(jwks(&[&signing])?);

    let wrong = secrecy::SecretString::from("not-the-initial-access-token");
    for token in [None, Some(&wrong)] {
        let err = registration::register_dynamic(&client, &endpoint, token, &body, &persister)
            .await
            .err()
            .context("registration without a valid initial access token succeeded")?;
        assert_rejected(&err, 401, "invalid_token");
        assert_eq!(err.reason(), "RegistrationRejected");
    }
    let mut unbound = body.clone();
    unbound.insert(
        "tls_client_certificate_bound_access_tokens".into(),
        json!(false),
    );
    let err = registration::register_dynamic(
        &client,
        &endpoint,
        Some(peer.initial_access_token()),
        &unbound,
        &persister,
    )
    .await
    .err()
    .context("the policy let an unbound client register")?;
    assert_rejected(&err, 400, "invalid_client_metadata");
    assert_eq!(
        persister.count(),
        0,
        "nothing is persisted from a rejection"
    );
    Ok(())
}

#[tokio::test]
async fn rfc7592_put_rotates_the_rat_and_a_key_swap_retires_the_old_key() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let old = rsa_key().await?;
    let new = rsa_key().await?;
    let transport = Transport::self_signed("CN=tpp-rotating,O=Example TPP").await?;
    let client = mtls_client(&peer, &transport)?;
    let persister = MemoryPersister::default();
    let first = register_pkjwt(&peer, &meta, &transport, jwks(&[&old])?, &persister).await?;

    // {old} -> {old, new}: a new RAT, persisted; the old RAT dies at once.
    let both = pkjwt_metadata(jwks(&[&old, &new])?);
    let second = with_log(
        &peer,
        management::update_client(&client, target(&peer, &meta), &first, &both, &persister).await,
    )?;
    assert_eq!(persister.count(), 2, "the rotated RAT is persisted");
    assert_ne!(
        persister.latest_rat(),
        first
            .registration_access_token
            .as_ref()
            .map(|t| expose(t).to_owned())
    );
    let stale = management::read_client(&client, target(&peer, &meta), &first, &persister)
        .await
        .err()
        .context("the old RAT still reads the client")?;
    assert_rejected(&stale, 401, "invalid_token");
    let old_rat = first
        .registration_access_token
        .as_ref()
        .map(|t| expose(t).to_owned())
        .unwrap_or_default();
    assert!(
        !old_rat.is_empty() && !format!("{stale} {stale:?}").contains(&old_rat),
        "the error never shows a RAT"
    );
    with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&first.client_id, &old)?).await,
    )?;
    with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&first.client_id, &new)?).await,
    )?;

    // {old, new} -> {new}: the old key is refused from now on.
    let only_new = pkjwt_metadata(jwks(&[&new])?);
    let third = with_log(
        &peer,
        management::update_client(
            &client,
            target(&peer, &meta),
            &second,
            &only_new,
            &persister,
        )
        .await,
    )?;
    assert_eq!(persister.count(), 3);
    let read = with_log(
        &peer,
        management::read_client(&client, target(&peer, &meta), &third, &persister).await,
    )?;
    assert_eq!(
        read.metadata["jwks"]["keys"].as_array().map(Vec::len),
        Some(1),
        "the AS holds only the new key"
    );
    with_log(
        &peer,
        token_for(&client, &meta, &pkjwt(&third.client_id, &new)?).await,
    )?;
    let refused = token_for(&client, &meta, &pkjwt(&third.client_id, &old)?)
        .await
        .err()
        .context("the retired key still authenticates")?;
    assert_rejected(&refused, 401, "invalid_client");
    Ok(())
}
