//! Loopback tests of the token endpoint (private_key_jwt, tls_client_auth), PAR,
//! introspection and revocation over mTLS aliases, against an in-test TLS server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

mod support;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use support::Reply;
use support::fixture::*;
use tpp_operator::oauth::{
    AsClient, AudiencePolicy, ClientAuth, ClientAuthn, ProviderMetadata, endpoints, token,
};

fn as_metadata(server: &support::Server) -> ProviderMetadata {
    serde_json::from_value(json!({
        "issuer": "https://issuer.example",
        "token_endpoint": "https://127.0.0.1:1/not-over-mtls",
        "mtls_endpoint_aliases": {
            "token_endpoint": server.url("/mtls/token"),
            "introspection_endpoint": server.url("/mtls/introspect"),
            "revocation_endpoint": server.url("/mtls/revoke"),
            "pushed_authorization_request_endpoint": server.url("/mtls/par")
        }
    }))
    .unwrap_or_default()
}

fn private_key_jwt(minter: Arc<Minter>, within_jwks_propagation: bool) -> ClientAuthn {
    ClientAuthn {
        client_id: "c1".into(),
        auth: ClientAuth::PrivateKeyJwt {
            minter,
            audience: AudiencePolicy::Issuer,
        },
        within_jwks_propagation,
    }
}

fn token_server_reply(seen: &support::Seen) -> Reply {
    match seen.path.as_str() {
        "/mtls/token" if seen.form_value("client_id").as_deref() == Some("c1") => Reply::json(
            200,
            json!({"access_token":ACCESS_TOKEN,"token_type":"bearer","expires_in":600,"scope":"accounts"}),
        ),
        "/mtls/token" => Reply::json(
            401,
            json!({"error":"invalid_client","error_description":"client authentication failed"}),
        ),
        "/mtls/introspect" => Reply::json(200, json!({"active":true,"cnf":{"x5t#S256":"abc"}})),
        "/mtls/revoke" => Reply::raw(200, ""),
        "/mtls/par" => Reply::json(
            201,
            json!({"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":90}),
        ),
        _ => Reply::raw(404, ""),
    }
}

#[tokio::test]
async fn client_credentials_with_private_key_jwt_uses_the_alias_a_fresh_assertion_and_the_issuer_audience()
 {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let fixed: jiff::Timestamp = "2026-01-30T10:00:00Z".parse().expect("ts");
    let client = fx.mtls_client().with_clock(Arc::new(move || fixed));
    let minter = Arc::new(Minter::default());
    let authn = private_key_jwt(minter.clone(), false);
    let meta = as_metadata(&server);
    let first = token::client_credentials(&client, &meta, &authn, "accounts")
        .await
        .expect("token");
    token::client_credentials(&client, &meta, &authn, "accounts")
        .await
        .expect("second token");
    assert_eq!(first.access_token.expose_secret(), ACCESS_TOKEN);
    assert_eq!(
        (first.received_at, first.expires_at.as_second()),
        (fixed, fixed.as_second() + 600)
    );
    assert_eq!(
        first.bound_x5t_s256.as_deref(),
        Some(fx.identity().x5t_s256())
    );
    let seen = server.seen();
    let form: Vec<(String, String)> = seen[0].form();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "grant_type",
            "client_id",
            "scope",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(
        seen[0].form_value("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(
        seen[0].form_value("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let assertions: Vec<Option<String>> = seen
        .iter()
        .map(|s| s.form_value("client_assertion"))
        .collect();
    assert_eq!(
        assertions,
        [
            Some(format!("{ASSERTION_PREFIX}1")),
            Some(format!("{ASSERTION_PREFIX}2"))
        ]
    );
    assert_eq!(
        minter
            .audiences
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default(),
        ["https://issuer.example"; 2]
    );
    assert!(
        seen.iter()
            .all(|s| s.path == "/mtls/token" && s.client_cert.is_some())
    );
}

#[tokio::test]
async fn client_credentials_with_tls_client_auth_sends_no_assertion() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let authn = ClientAuthn {
        client_id: "c1".into(),
        auth: ClientAuth::TlsClientAuth,
        within_jwks_propagation: false,
    };
    token::client_credentials(&fx.mtls_client(), &as_metadata(&server), &authn, "accounts")
        .await
        .expect("token");
    assert_eq!(
        server.seen()[0].body,
        b"grant_type=client_credentials&client_id=c1&scope=accounts"
    );
    let no_cert = token::client_credentials(
        &fx.plain_client(),
        &as_metadata(&server),
        &authn,
        "accounts",
    )
    .await
    .expect_err("needs mtls");
    assert_eq!(no_cert.reason(), "ClientCertificateMissing");
    fx.assert_redacted(&no_cert);
}

#[tokio::test]
async fn a_token_for_a_resource_carries_the_rfc_8707_resource_parameter() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let authn = ClientAuthn {
        client_id: "c1".into(),
        auth: ClientAuth::TlsClientAuth,
        within_jwks_propagation: false,
    };
    token::client_credentials_for(
        &fx.mtls_client(),
        &as_metadata(&server),
        &authn,
        "accounts",
        Some("https://rs.bank.example/open-banking"),
    )
    .await
    .expect("token");
    assert_eq!(
        server.seen()[0].form_value("resource").as_deref(),
        Some("https://rs.bank.example/open-banking")
    );
    token::client_credentials_for(
        &fx.mtls_client(),
        &as_metadata(&server),
        &authn,
        "accounts",
        None,
    )
    .await
    .expect("token");
    assert_eq!(server.seen()[1].form_value("resource"), None);
}

#[tokio::test]
async fn invalid_client_is_permanent_unless_within_jwks_propagation() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let meta = as_metadata(&server);
    let client: AsClient = fx.mtls_client();
    let mut authn = private_key_jwt(Arc::new(Minter::default()), false);
    authn.client_id = "unknown".into();
    let err = token::client_credentials(&client, &meta, &authn, "accounts")
        .await
        .expect_err("invalid_client");
    fx.assert_redacted(&err);
    assert_eq!(
        (err.reason().as_str(), err.is_transient(), err.status()),
        ("InvalidClient", false, Some(401))
    );
    fx.assert_redacted(&err);
    authn.within_jwks_propagation = true;
    let err = token::client_credentials(&client, &meta, &authn, "accounts")
        .await
        .expect_err("invalid_client");
    fx.assert_redacted(&err);
    assert!(err.is_transient());
}

#[tokio::test]
async fn credentials_echoed_in_an_error_description_are_redacted() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            let echoed = format!(
                "bad assertion {}",
                seen.form_value("client_assertion").unwrap_or_default()
            );
            Reply::json(
                400,
                json!({"error":"invalid_request","error_description":echoed}),
            )
        })
        .await;
    let authn = private_key_jwt(Arc::new(Minter::default()), false);
    let err =
        token::client_credentials(&fx.mtls_client(), &as_metadata(&server), &authn, "accounts")
            .await
            .expect_err("rejected");
    fx.assert_redacted(&err);
    assert!(
        err.to_string().contains("bad assertion [redacted]"),
        "{err}"
    );
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn par_introspection_and_revocation_use_client_auth_over_the_aliases() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let meta = as_metadata(&server);
    let client = fx.mtls_client();
    let authn = private_key_jwt(Arc::new(Minter::default()), false);
    let token = SecretString::from(ACCESS_TOKEN);
    let pushed = endpoints::push_authorization_request(
        &client,
        &meta,
        &authn,
        SecretString::from(SIGNED_REQUEST),
    )
    .await;
    assert_eq!(pushed.ok().map(|p| p.expires_in), Some(90));
    let info = endpoints::introspect(&client, &meta, &authn, &token)
        .await
        .expect("introspected");
    assert_eq!(info.cnf_x5t_s256.as_deref(), Some("abc"));
    endpoints::revoke(&client, &meta, &authn, &token, Some("access_token"))
        .await
        .expect("revoked");
    let seen = server.seen();
    assert_eq!(
        seen[0].form_value("request").as_deref(),
        Some(SIGNED_REQUEST)
    );
    assert_eq!(seen[1].form_value("token").as_deref(), Some(ACCESS_TOKEN));
    assert_eq!(
        seen[2].form_value("token_type_hint").as_deref(),
        Some("access_token")
    );
    assert!(
        seen.iter()
            .all(|s| s.form_value("client_assertion").is_some() && s.client_cert.is_some())
    );
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_and_errors_can_cross_threads() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<tpp_operator::oauth::OauthError>();
    let fx = Fixture::new();
    let client = fx.mtls_client();
    let meta = ProviderMetadata::default();
    let authn = private_key_jwt(Arc::new(Minter::default()), false);
    assert_send(&token::client_credentials(
        &client, &meta, &authn, "accounts",
    ));
    let persister = Persister::default();
    let metadata = serde_json::Map::new();
    assert_send(&tpp_operator::oauth::registration::register_dynamic(
        &client,
        "https://x",
        None,
        &metadata,
        &persister,
    ));
    let discovery = tpp_operator::oauth::Discovery::default();
    assert_send(&discovery.get(&client, "https://x", None));
}
