//! Loopback tests of registration (Dynamic, SignedRequest, HubOnboarding), RFC 7592
//! management with RAT persistence, the token endpoint (private_key_jwt, tls_client_auth),
//! PAR, introspection and revocation, against an in-test TLS server on 127.0.0.1.

mod support;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use support::Reply;
use support::fixture::*;
use tpp_operator::oauth::management::{self, DeleteOutcome, ManagementTarget};
use tpp_operator::oauth::registration::{self, SignedContentType};
use tpp_operator::oauth::{
    AsClient, AudiencePolicy, ClientAuth, ClientAuthn, OauthError, ProviderMetadata, Registration, endpoints, token,
};

fn metadata() -> Map<String, Value> {
    json!({"client_name":"shop","token_endpoint_auth_method":"private_key_jwt","scope":"accounts"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn registered(uri: String, rat: &str) -> Registration {
    let mut reg = registration::register_static("c1");
    reg.registration_client_uri = Some(uri);
    reg.registration_access_token = Some(SecretString::from(rat.to_owned()));
    reg
}

#[tokio::test]
async fn dynamic_registration_sends_the_initial_access_token_and_persists_before_returning() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            Reply::json(201, json!({
                "client_id": "c1", "registration_access_token": RAT_1, "client_secret": "cs-SECRET-x",
                "registration_client_uri": format!("https://{}/reg/c1", seen.header("host").unwrap_or_default()),
                "client_id_issued_at": 1598013607665u64, "client_name": "shop"
            }))
        })
        .await;
    let persister = Persister::default();
    let iat = SecretString::from(INITIAL_TOKEN);
    let reg = registration::register_dynamic(&fx.mtls_client(), &server.url("/reg"), Some(&iat), &metadata(), &persister)
        .await
        .expect("registered");
    assert_eq!(persister.stored(), [("c1".to_owned(), Some(RAT_1.to_owned()))]);
    assert_eq!(reg.registration_client_uri, Some(server.url("/reg/c1")));
    assert_eq!(reg.client_id_issued_at.map(|t| t.as_second()), Some(1_598_013_607));
    assert!(!reg.metadata.contains_key("client_secret") && !reg.metadata.contains_key("registration_access_token"));
    let seen = &server.seen()[0];
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/reg"));
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {INITIAL_TOKEN}")));
    assert_eq!(seen.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(seen.json(), Value::Object(metadata()));
    assert!(seen.client_cert.is_some());
}

#[tokio::test]
async fn a_persistence_failure_fails_the_registration() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::json(201, json!({"client_id":"c1","registration_access_token":RAT_1}))).await;
    let err = registration::register_dynamic(&fx.mtls_client(), &server.url("/reg"), None, &metadata(), &Persister::failing())
        .await
        .expect_err("persistence failed");
    assert!(matches!(err, OauthError::PersistRegistration { .. }), "{err:?}");
    assert_eq!(server.seen()[0].header("authorization"), None);
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn registration_errors_are_permanent_rejections() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| Reply::json(400, json!({"error":"invalid_software_statement","error_description":"ssa expired"})))
        .await;
    let err = registration::register_dynamic(&fx.mtls_client(), &server.url("/reg"), None, &metadata(), &Persister::default())
        .await
        .expect_err("rejected");
    assert_eq!((err.reason(), err.oauth_error()), ("RegistrationRejected", Some("invalid_software_statement")));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn update_sends_full_metadata_with_the_rat_and_persists_a_rotated_rat() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::json(200, json!({"client_id":"c1","registration_access_token":RAT_2,"client_name":"shop"}))).await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget { registration_endpoint: &server.url("/reg"), issuer: "https://issuer.example" };
    let persister = Persister::default();
    let mut desired = metadata();
    desired.insert("registration_access_token".into(), json!(RAT_1));
    let next = management::update_client(&fx.mtls_client(), target, &current, &desired, &persister).await.expect("updated");
    assert_eq!(persister.stored(), [("c1".to_owned(), Some(RAT_2.to_owned()))]);
    assert_eq!(next.registration_access_token.as_ref().map(|t| t.expose_secret()), Some(RAT_2));
    assert_eq!(next.registration_client_uri, Some(server.url("/reg/c1")));
    let seen = &server.seen()[0];
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("PUT", "/reg/c1"));
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {RAT_1}")));
    let body = seen.json();
    assert_eq!(body.get("client_id"), Some(&json!("c1")));
    assert!(body.get("registration_access_token").is_none());
}

#[tokio::test]
async fn read_without_a_new_rat_keeps_the_current_one_and_persists_nothing() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::json(200, json!({"client_id":"c1","client_name":"shop"}))).await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget { registration_endpoint: &server.url("/reg"), issuer: "https://issuer.example" };
    let persister = Persister::default();
    let next = management::read_client(&fx.mtls_client(), target, &current, &persister).await.expect("read");
    assert!(persister.stored().is_empty());
    assert_eq!(next.registration_access_token.as_ref().map(|t| t.expose_secret()), Some(RAT_1));
    assert_eq!(server.seen()[0].method, "GET");
}

#[tokio::test]
async fn a_rotated_rat_that_cannot_be_persisted_fails_the_read() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::json(200, json!({"client_id":"c1","registration_access_token":RAT_2}))).await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget { registration_endpoint: &server.url("/reg"), issuer: "https://issuer.example" };
    let err = management::read_client(&fx.mtls_client(), target, &current, &Persister::failing()).await.expect_err("fails");
    assert_eq!(err.reason(), "PersistRegistrationFailed");
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn refuses_to_send_the_rat_to_a_foreign_registration_client_uri() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(204, "")).await;
    let foreign = server.url("/reg/c1").replace("127.0.0.1", "localhost");
    let current = registered(foreign, RAT_1);
    let target = ManagementTarget { registration_endpoint: &server.url("/reg"), issuer: "https://issuer.example" };
    let err = management::delete_client(&fx.mtls_client(), target, &current).await.expect_err("foreign");
    assert!(matches!(err, OauthError::ForeignRegistrationUri { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(server.seen().is_empty(), "nothing was sent");
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn delete_reports_deleted_then_already_gone() {
    let fx = Fixture::new();
    let server = fx.serve(|seen| if seen.path == "/reg/c1" { Reply::raw(204, "") } else { Reply::raw(401, "") }).await;
    let target = ManagementTarget { registration_endpoint: &server.url("/reg"), issuer: "https://issuer.example" };
    let client = fx.mtls_client();
    let gone = management::delete_client(&client, target, &registered(server.url("/reg/c1"), RAT_1)).await;
    assert_eq!(gone.ok(), Some(DeleteOutcome::Deleted));
    let again = management::delete_client(&client, target, &registered(server.url("/reg/c2"), RAT_1)).await;
    assert_eq!(again.ok(), Some(DeleteOutcome::AlreadyGone));
}

#[tokio::test]
async fn signed_request_posts_the_jws_and_falls_back_to_endpoint_slash_client_id() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::json(201, json!({"client_id":"1c5a9aeb","registration_access_token":RAT_1}))).await;
    let persister = Persister::default();
    let reg = registration::register_signed(
        &fx.mtls_client(),
        &server.url("/register"),
        SecretString::from(SIGNED_REQUEST),
        SignedContentType::Jose,
        &persister,
    )
    .await
    .expect("registered");
    assert_eq!(reg.registration_client_uri, Some(server.url("/register/1c5a9aeb")));
    assert_eq!(persister.stored().len(), 1);
    let seen = &server.seen()[0];
    assert_eq!(seen.header("content-type").as_deref(), Some("application/jose"));
    assert_eq!(seen.body, SIGNED_REQUEST.as_bytes());
}

#[tokio::test]
async fn hub_onboarding_accepts_any_2xx_and_surfaces_the_hub_error_code() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| match seen.path.as_str() {
            "/ok" => Reply::raw(204, ""),
            _ => Reply::json(403, json!({"Errors":[{"Code":"AccessToken.Unauthorized","Message":"tpp unknown","Path":"","Url":""}]})),
        })
        .await;
    let client = fx.mtls_client();
    registration::hub_onboard(&client, &server.url("/ok")).await.expect("onboarded");
    let seen = &server.seen()[0];
    assert_eq!((seen.body.as_slice(), seen.header("content-type").as_deref()), (&b"{}"[..], Some("application/json")));
    assert!(seen.client_cert.is_some());
    let err = registration::hub_onboard(&client, &server.url("/no")).await.expect_err("rejected");
    assert_eq!((err.reason(), err.oauth_error()), ("HubOnboardingRejected", Some("AccessToken.Unauthorized")));
    assert!(err.to_string().contains("tpp unknown") && !err.is_transient());
    let no_cert = registration::hub_onboard(&fx.plain_client(), &server.url("/ok")).await.expect_err("needs mtls");
    assert_eq!(no_cert.reason(), "ClientCertificateMissing");
}

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
        auth: ClientAuth::PrivateKeyJwt { minter, audience: AudiencePolicy::Issuer },
        within_jwks_propagation,
    }
}

fn token_server_reply(seen: &support::Seen) -> Reply {
    match seen.path.as_str() {
        "/mtls/token" if seen.form_value("client_id").as_deref() == Some("c1") => Reply::json(
            200,
            json!({"access_token":ACCESS_TOKEN,"token_type":"bearer","expires_in":600,"scope":"accounts"}),
        ),
        "/mtls/token" => Reply::json(401, json!({"error":"invalid_client","error_description":"client authentication failed"})),
        "/mtls/introspect" => Reply::json(200, json!({"active":true,"cnf":{"x5t#S256":"abc"}})),
        "/mtls/revoke" => Reply::raw(200, ""),
        "/mtls/par" => Reply::json(201, json!({"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":90})),
        _ => Reply::raw(404, ""),
    }
}

#[tokio::test]
async fn client_credentials_with_private_key_jwt_uses_the_alias_a_fresh_assertion_and_the_issuer_audience() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let fixed: jiff::Timestamp = "2026-01-30T10:00:00Z".parse().expect("ts");
    let client = fx.mtls_client().with_clock(Arc::new(move || fixed));
    let minter = Arc::new(Minter::default());
    let authn = private_key_jwt(minter.clone(), false);
    let meta = as_metadata(&server);
    let first = token::client_credentials(&client, &meta, &authn, "accounts").await.expect("token");
    token::client_credentials(&client, &meta, &authn, "accounts").await.expect("second token");
    assert_eq!(first.access_token.expose_secret(), ACCESS_TOKEN);
    assert_eq!((first.received_at, first.expires_at.as_second()), (fixed, fixed.as_second() + 600));
    assert_eq!(first.bound_x5t_s256.as_deref(), Some(fx.identity().x5t_s256()));
    let seen = server.seen();
    let form: Vec<(String, String)> = seen[0].form();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["grant_type", "scope", "client_id", "client_assertion_type", "client_assertion"]);
    assert_eq!(seen[0].form_value("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(seen[0].form_value("client_assertion_type").as_deref(), Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
    let assertions: Vec<Option<String>> = seen.iter().map(|s| s.form_value("client_assertion")).collect();
    assert_eq!(assertions, [Some(format!("{ASSERTION_PREFIX}1")), Some(format!("{ASSERTION_PREFIX}2"))]);
    assert_eq!(minter.audiences.lock().map(|a| a.clone()).unwrap_or_default(), ["https://issuer.example"; 2]);
    assert!(seen.iter().all(|s| s.path == "/mtls/token" && s.client_cert.is_some()));
}

#[tokio::test]
async fn client_credentials_with_tls_client_auth_sends_no_assertion() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let authn = ClientAuthn { client_id: "c1".into(), auth: ClientAuth::TlsClientAuth, within_jwks_propagation: false };
    token::client_credentials(&fx.mtls_client(), &as_metadata(&server), &authn, "accounts").await.expect("token");
    assert_eq!(server.seen()[0].body, b"grant_type=client_credentials&scope=accounts&client_id=c1");
    let no_cert = token::client_credentials(&fx.plain_client(), &as_metadata(&server), &authn, "accounts").await;
    assert_eq!(no_cert.err().map(|e| e.reason()), Some("ClientCertificateMissing"));
}

#[tokio::test]
async fn invalid_client_is_permanent_unless_within_jwks_propagation() {
    let fx = Fixture::new();
    let server = fx.serve(token_server_reply).await;
    let meta = as_metadata(&server);
    let client: AsClient = fx.mtls_client();
    let mut authn = private_key_jwt(Arc::new(Minter::default()), false);
    authn.client_id = "unknown".into();
    let err = token::client_credentials(&client, &meta, &authn, "accounts").await.expect_err("invalid_client");
    assert_eq!((err.reason(), err.is_transient(), err.status()), ("InvalidClient", false, Some(401)));
    fx.assert_redacted(&err);
    authn.within_jwks_propagation = true;
    let err = token::client_credentials(&client, &meta, &authn, "accounts").await.expect_err("invalid_client");
    assert!(err.is_transient());
}

#[tokio::test]
async fn credentials_echoed_in_an_error_description_are_redacted() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            let echoed = format!("bad assertion {}", seen.form_value("client_assertion").unwrap_or_default());
            Reply::json(400, json!({"error":"invalid_request","error_description":echoed}))
        })
        .await;
    let authn = private_key_jwt(Arc::new(Minter::default()), false);
    let err = token::client_credentials(&fx.mtls_client(), &as_metadata(&server), &authn, "accounts").await.expect_err("rejected");
    assert!(err.to_string().contains("bad assertion [redacted]"), "{err}");
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
    let pushed = endpoints::push_authorization_request(&client, &meta, &authn, SecretString::from(SIGNED_REQUEST)).await;
    assert_eq!(pushed.ok().map(|p| p.expires_in), Some(90));
    let info = endpoints::introspect(&client, &meta, &authn, &token).await.expect("introspected");
    assert_eq!(info.cnf_x5t_s256.as_deref(), Some("abc"));
    endpoints::revoke(&client, &meta, &authn, &token, Some("access_token")).await.expect("revoked");
    let seen = server.seen();
    assert_eq!(seen[0].form_value("request").as_deref(), Some(SIGNED_REQUEST));
    assert_eq!(seen[1].form_value("token").as_deref(), Some(ACCESS_TOKEN));
    assert_eq!(seen[2].form_value("token_type_hint").as_deref(), Some("access_token"));
    assert!(seen.iter().all(|s| s.form_value("client_assertion").is_some() && s.client_cert.is_some()));
}
