//! Loopback tests of registration (Dynamic, SignedRequest, HubOnboarding) and RFC 7592
//! management with RAT persistence, against an in-test TLS server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

mod support;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use support::Reply;
use support::fixture::*;
use tpp_operator::oauth::management::{self, DeleteOutcome, ManagementTarget};
use tpp_operator::oauth::registration::{self, SignedContentType};
use tpp_operator::oauth::{OauthError, Registration};

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
    let reg = registration::register_dynamic(
        &fx.mtls_client(),
        &server.url("/reg"),
        Some(&iat),
        &metadata(),
        &persister,
    )
    .await
    .expect("registered");
    assert_eq!(
        persister.stored(),
        [("c1".to_owned(), Some(RAT_1.to_owned()))]
    );
    assert_eq!(reg.registration_client_uri, Some(server.url("/reg/c1")));
    assert_eq!(
        reg.client_id_issued_at.map(|t| t.as_second()),
        Some(1_598_013_607)
    );
    assert!(
        !reg.metadata.contains_key("client_secret")
            && !reg.metadata.contains_key("registration_access_token")
    );
    let seen = &server.seen()[0];
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/reg"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {INITIAL_TOKEN}"))
    );
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(seen.json(), Value::Object(metadata()));
    assert!(seen.client_cert.is_some());
}

#[tokio::test]
async fn a_persistence_failure_fails_the_registration() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| {
            Reply::json(
                201,
                json!({"client_id":"c1","registration_access_token":RAT_1}),
            )
        })
        .await;
    let err = registration::register_dynamic(
        &fx.mtls_client(),
        &server.url("/reg"),
        None,
        &metadata(),
        &Persister::failing(),
    )
    .await
    .expect_err("persistence failed");
    fx.assert_redacted(&err);
    assert!(
        matches!(err, OauthError::PersistRegistration { .. }),
        "{err:?}"
    );
    assert_eq!(server.seen()[0].header("authorization"), None);
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn registration_errors_are_permanent_rejections() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| {
            Reply::json(
                400,
                json!({"error":"invalid_software_statement","error_description":"ssa expired"}),
            )
        })
        .await;
    let err = registration::register_dynamic(
        &fx.mtls_client(),
        &server.url("/reg"),
        None,
        &metadata(),
        &Persister::default(),
    )
    .await
    .expect_err("rejected");
    fx.assert_redacted(&err);
    assert_eq!(
        (err.reason().as_str(), err.oauth_error()),
        ("RegistrationRejected", Some("invalid_software_statement"))
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn update_sends_full_metadata_with_the_rat_and_persists_a_rotated_rat() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| {
            Reply::json(
                200,
                json!({"client_id":"c1","registration_access_token":RAT_2,"client_name":"shop"}),
            )
        })
        .await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let persister = Persister::default();
    let mut desired = metadata();
    desired.insert("registration_access_token".into(), json!(RAT_1));
    let next = management::update_client(&fx.mtls_client(), target, &current, &desired, &persister)
        .await
        .expect("updated");
    assert_eq!(
        persister.stored(),
        [("c1".to_owned(), Some(RAT_2.to_owned()))]
    );
    assert_eq!(
        next.registration_access_token
            .as_ref()
            .map(|t| t.expose_secret()),
        Some(RAT_2)
    );
    assert_eq!(next.registration_client_uri, Some(server.url("/reg/c1")));
    let seen = &server.seen()[0];
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("PUT", "/reg/c1")
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {RAT_1}"))
    );
    let body = seen.json();
    assert_eq!(body.get("client_id"), Some(&json!("c1")));
    assert!(body.get("registration_access_token").is_none());
}

#[tokio::test]
async fn read_without_a_new_rat_keeps_the_current_one_and_persists_nothing() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| Reply::json(200, json!({"client_id":"c1","client_name":"shop"})))
        .await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let persister = Persister::default();
    let next = management::read_client(&fx.mtls_client(), target, &current, &persister)
        .await
        .expect("read");
    assert!(persister.stored().is_empty());
    assert_eq!(
        next.registration_access_token
            .as_ref()
            .map(|t| t.expose_secret()),
        Some(RAT_1)
    );
    assert_eq!(server.seen()[0].method, "GET");
}

#[tokio::test]
async fn a_rotated_rat_that_cannot_be_persisted_fails_the_read() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| {
            Reply::json(
                200,
                json!({"client_id":"c1","registration_access_token":RAT_2}),
            )
        })
        .await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let err = management::read_client(&fx.mtls_client(), target, &current, &Persister::failing())
        .await
        .expect_err("fails");
    assert_eq!(err.reason(), "PersistRegistrationFailed");
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn refuses_to_send_the_rat_to_a_foreign_registration_client_uri() {
    let fx = Fixture::new();
    let server = fx.serve(|_| Reply::raw(204, "")).await;
    let foreign = server.url("/reg/c1").replace("127.0.0.1", "localhost");
    let current = registered(foreign, RAT_1);
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let err = management::delete_client(&fx.mtls_client(), target, &current)
        .await
        .expect_err("foreign");
    fx.assert_redacted(&err);
    assert!(
        matches!(err, OauthError::ForeignRegistrationUri { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(server.seen().is_empty(), "nothing was sent");
    fx.assert_redacted(&err);
}

#[tokio::test]
async fn delete_reports_deleted_already_gone_and_a_refused_token_apart() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| match seen.path.as_str() {
            "/reg/c1" => Reply::raw(204, ""),
            "/reg/c2" => Reply::raw(404, ""),
            _ => Reply::raw(401, ""),
        })
        .await;
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let client = fx.mtls_client();
    let gone =
        management::delete_client(&client, target, &registered(server.url("/reg/c1"), RAT_1)).await;
    assert_eq!(gone.ok(), Some(DeleteOutcome::Deleted));
    let again =
        management::delete_client(&client, target, &registered(server.url("/reg/c2"), RAT_1)).await;
    assert_eq!(again.ok(), Some(DeleteOutcome::AlreadyGone));
    let refused =
        management::delete_client(&client, target, &registered(server.url("/reg/c3"), RAT_1)).await;
    assert_eq!(
        refused.ok(),
        Some(DeleteOutcome::Refused),
        "a 401 is not evidence that the client is gone"
    );
}

#[tokio::test]
async fn signed_request_posts_the_jws_and_falls_back_to_endpoint_slash_client_id() {
    let fx = Fixture::new();
    let server = fx
        .serve(|_| {
            Reply::json(
                201,
                json!({"client_id":"1c5a9aeb","registration_access_token":RAT_1}),
            )
        })
        .await;
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
    assert_eq!(
        reg.registration_client_uri,
        Some(server.url("/register/1c5a9aeb"))
    );
    assert_eq!(persister.stored().len(), 1);
    let seen = &server.seen()[0];
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/jose")
    );
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
    registration::hub_onboard(&client, &server.url("/ok"))
        .await
        .expect("onboarded");
    let seen = &server.seen()[0];
    assert_eq!(
        (seen.body.as_slice(), seen.header("content-type").as_deref()),
        (&b"{}"[..], Some("application/json"))
    );
    assert!(seen.client_cert.is_some());
    let err = registration::hub_onboard(&client, &server.url("/no"))
        .await
        .expect_err("rejected");
    fx.assert_redacted(&err);
    assert_eq!(
        (err.reason().as_str(), err.oauth_error()),
        ("HubOnboardingRejected", Some("AccessToken.Unauthorized"))
    );
    assert!(err.to_string().contains("tpp unknown") && !err.is_transient());
    let no_cert = registration::hub_onboard(&fx.plain_client(), &server.url("/ok"))
        .await
        .expect_err("needs mtls");
    fx.assert_redacted(&no_cert);
    assert_eq!(no_cert.reason(), "ClientCertificateMissing");
}

#[tokio::test]
async fn an_error_echoing_the_rat_is_redacted() {
    let fx = Fixture::new();
    let server = fx
        .serve(|seen| {
            let echoed = format!(
                "bad credential {}",
                seen.header("authorization").unwrap_or_default()
            );
            Reply::json(
                400,
                json!({"error":"invalid_client_metadata","error_description":echoed}),
            )
        })
        .await;
    let current = registered(server.url("/reg/c1"), RAT_1);
    let target = ManagementTarget {
        registration_endpoint: &server.url("/reg"),
        issuer: "https://issuer.example",
    };
    let err = management::update_client(
        &fx.mtls_client(),
        target,
        &current,
        &metadata(),
        &Persister::default(),
    )
    .await
    .expect_err("rejected");
    assert!(
        err.to_string().contains("bad credential Bearer [redacted]"),
        "{err}"
    );
    fx.assert_redacted(&err);
}
