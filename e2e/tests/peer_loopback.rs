//! The operator's oauth client and identity material against oidc-provider 9.13.3, a real
//! third-party FAPI 2.0 authorization server, on loopback over real mTLS: dynamic registration,
//! both client authentication methods, certificate-bound tokens checked by introspection,
//! RFC 7592 rotation, signed (OBIE-style) registration, deletion and the FAPI preflight.
//! Every test starts its own peer (`node`, about half a second) and fails, never skips, when
//! Node.js is missing.

#[path = "peer_loopback/support.rs"]
mod support;

use anyhow::{Context as _, Result};
use e2e::peer::{OidcPeer, Par, PeerOptions};
use serde_json::{Value, json};
use support::*;
use tpp_operator::identity::signed_request::{
    RegistrationRequest, TokenEndpointAuth, signed_registration_request,
};
use tpp_operator::oauth::endpoints;
use tpp_operator::oauth::management::{self, DeleteOutcome, ManagementTarget};
use tpp_operator::oauth::preflight::{ClientNeeds, Finding, preflight};
use tpp_operator::oauth::registration::{self, Registration, SignedContentType};
use tpp_operator::oauth::{OauthError, ProviderMetadata};

fn target<'a>(peer: &'a OidcPeer, meta: &'a ProviderMetadata) -> ManagementTarget<'a> {
    ManagementTarget {
        registration_endpoint: meta.registration_endpoint.as_deref().unwrap_or_default(),
        issuer: peer.issuer(),
    }
}

/// Registers a `private_key_jwt` client with inline `jwks` through the operator.
async fn register_pkjwt(
    peer: &OidcPeer,
    meta: &ProviderMetadata,
    transport: &Transport,
    jwks: Value,
    persister: &MemoryPersister,
) -> Result<Registration> {
    let client = mtls_client(peer, transport)?;
    let endpoint = meta
        .registration_endpoint
        .clone()
        .context("no registration_endpoint")?;
    with_log(
        peer,
        registration::register_dynamic(
            &client,
            &endpoint,
            Some(peer.initial_access_token()),
            &pkjwt_metadata(jwks),
            persister,
        )
        .await,
    )
}

fn assert_rejected(err: &OauthError, status: u16, code: &str) {
    assert_eq!(err.status(), Some(status), "{err}");
    assert_eq!(err.oauth_error(), Some(code), "{err}");
    assert!(!err.is_transient(), "{err} must be permanent");
}

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
        DeleteOutcome::AlreadyGone,
        "a second delete finds nothing to delete"
    );
    Ok(())
}

#[tokio::test]
async fn the_default_peer_passes_the_fapi2_preflight() -> Result<()> {
    let peer = peer().await?;
    let meta = discover(&peer).await?;
    for auth_method in ["private_key_jwt", "tls_client_auth"] {
        let needs = ClientNeeds {
            auth_method: auth_method.into(),
            registration_endpoint: true,
            ..ClientNeeds::default()
        };
        assert_eq!(preflight(&meta, &needs), [], "{auth_method}");
    }
    Ok(())
}

#[tokio::test]
async fn preflight_names_a_peer_without_par() -> Result<()> {
    let peer = OidcPeer::start(PeerOptions {
        par: Par::Off,
        ..PeerOptions::default()
    })
    .await?;
    let findings = preflight(&discover(&peer).await?, &ClientNeeds::default());
    assert_eq!(
        findings,
        [Finding::ParEndpointMissing, Finding::ParNotRequired]
    );
    Ok(())
}

#[tokio::test]
async fn preflight_names_a_peer_advertising_only_rs256_assertions() -> Result<()> {
    let peer = OidcPeer::start(PeerOptions {
        client_auth_algs: vec!["RS256".into()],
        ..PeerOptions::default()
    })
    .await?;
    let findings = preflight(&discover(&peer).await?, &ClientNeeds::default());
    assert_eq!(
        findings,
        [Finding::AlgNotSupported {
            alg: "PS256".into()
        }]
    );
    assert!(findings[0].to_string().contains("PS256"));
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
