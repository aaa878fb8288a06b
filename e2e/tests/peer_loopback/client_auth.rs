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

/// The peer is an AS that does not forget: after more tokens than oidc-provider's default
/// store holds (an LRU of 1,000 entries, which dropped the oldest clients, tokens and initial
/// access tokens once about 2,000 entries had been written after them), the first token
/// still introspects active and the initial access token still registers. The chaos campaign
/// against the peer failed on that (a signed registration refused `invalid_token`); the peer
/// now keeps every entry until its own expiry (`e2e/peers/oidc-provider/store.mjs`).
#[tokio::test]
async fn the_peer_forgets_nothing_live_after_more_tokens_than_its_default_store_held() -> Result<()>
{
    use futures::StreamExt as _;
    const TOKENS: usize = 2_100;
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    let transport = Transport::ca_issued(&peer, "CN=tpp-many,OU=e2e,O=Example TPP,C=MY").await?;
    let client = mtls_client(&peer, &transport)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    let register = || async {
        let body = tls_metadata(&transport, &rsa_key().await?)?;
        with_log(
            &peer,
            registration::register_dynamic(
                &client,
                &endpoint,
                Some(peer.initial_access_token()),
                &body,
                &MemoryPersister::default(),
            )
            .await,
        )
    };
    let reg = register().await?;
    let authn = tls_auth(&reg.client_id);
    let first = with_log(&peer, token_for(&client, &meta, &authn).await)?;
    // A bounded burst: TOKENS requests, eight at a time.
    let minted = futures::stream::iter(0..TOKENS)
        .map(|_| token_for(&client, &meta, &authn))
        .buffer_unordered(8)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(minted, TOKENS, "every token request answered");
    let seen = peer.introspect(&first.access_token).await?;
    assert_eq!(
        seen["active"],
        json!(true),
        "the first token is forgotten: {seen}"
    );
    register()
        .await
        .context("the initial access token no longer registers")?;
    Ok(())
}
