//! The docs/protocol.md §8 classification table, one row per test.

use std::time::Duration;

use jiff::Timestamp;

use super::*;

fn rejected(step: Step, status: u16, body: &str) -> OauthError {
    OauthError::from_status(
        step,
        status,
        None,
        body.as_bytes(),
        "iid",
        Timestamp::UNIX_EPOCH,
    )
}

#[test]
fn server_errors_are_transient_and_name_the_as_unavailable() {
    for status in [500, 502, 503, 504, 408] {
        let err = rejected(Step::Token, status, "");
        assert!(err.is_transient(), "{status}");
        assert_eq!(err.reason(), "AuthorizationServerUnavailable");
    }
}

#[test]
fn too_many_requests_is_transient_with_retry_after() {
    let err = OauthError::from_status(
        Step::Token,
        429,
        Some("3"),
        b"",
        "iid",
        Timestamp::UNIX_EPOCH,
    );
    assert!(err.is_transient());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(err.reason(), "RateLimited");
}

#[test]
fn invalid_client_is_permanent_outside_the_jwks_window() {
    let err = rejected(Step::Token, 401, r#"{"error":"invalid_client"}"#);
    assert!(!err.is_transient());
    assert_eq!(err.reason(), "InvalidClient");
    assert_eq!(err.oauth_error(), Some("invalid_client"));
}

#[test]
fn invalid_client_is_transient_inside_the_jwks_window() {
    let err =
        rejected(Step::Token, 401, r#"{"error":"invalid_client"}"#).within_jwks_propagation(true);
    assert!(err.is_transient());
}

#[test]
fn jwks_window_does_not_make_other_rejections_transient() {
    let err =
        rejected(Step::Token, 400, r#"{"error":"invalid_scope"}"#).within_jwks_propagation(true);
    assert!(!err.is_transient());
}

#[test]
fn token_endpoint_client_errors_are_permanent() {
    for code in [
        "invalid_request",
        "invalid_scope",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_grant",
    ] {
        let err = rejected(Step::Token, 400, &format!(r#"{{"error":"{code}"}}"#));
        assert!(!err.is_transient(), "{code}");
        assert_eq!(err.reason(), "TokenRequestFailed");
        assert_eq!(err.oauth_error(), Some(code));
    }
}

#[test]
fn registration_client_errors_are_permanent_rejections() {
    for code in [
        "invalid_client_metadata",
        "invalid_redirect_uri",
        "invalid_software_statement",
        "unapproved_software_statement",
    ] {
        let err = rejected(Step::Register, 400, &format!(r#"{{"error":"{code}"}}"#));
        assert!(!err.is_transient(), "{code}");
        assert_eq!(err.reason(), "RegistrationRejected");
    }
}

#[test]
fn unauthorized_registration_access_is_permanent() {
    let err = rejected(Step::ReadRegistration, 401, "");
    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(401));
}

#[test]
fn hub_onboarding_rejection_carries_code_and_message() {
    let err = rejected(
        Step::HubOnboarding,
        403,
        r#"{"Errors":[{"Code":"AccessToken.Unauthorized","Message":"unknown tpp"}]}"#,
    );
    assert!(!err.is_transient());
    assert_eq!(err.reason(), "HubOnboardingRejected");
    assert_eq!(err.oauth_error(), Some("AccessToken.Unauthorized"));
    assert!(err.to_string().contains("unknown tpp"));
}

#[test]
fn issuer_mismatch_and_foreign_uri_are_permanent() {
    let mismatch = OauthError::IssuerMismatch {
        expected: "https://a".into(),
        found: "https://b".into(),
    };
    assert!(!mismatch.is_transient());
    assert_eq!(mismatch.reason(), "IssuerMismatch");
    let foreign = OauthError::ForeignRegistrationUri {
        found: "https://evil:443".into(),
    };
    assert!(!foreign.is_transient());
    assert_eq!(foreign.reason(), "ForeignRegistrationUri");
}

#[test]
fn body_too_large_and_invalid_json_are_permanent() {
    let big = OauthError::BodyTooLarge {
        step: Step::Discovery,
        origin: "https://a".into(),
        limit: 10,
    };
    assert!(!big.is_transient());
    assert_eq!(big.reason(), "DiscoveryFailed");
    let json_err = serde_json::from_slice::<serde_json::Value>(b"{nope").err();
    let err = json_err.map(|e| OauthError::invalid_json(Step::Token, &e));
    assert!(err.as_ref().is_some_and(|e| !e.is_transient()));
    assert_eq!(err.map(|e| e.reason().as_str()), Some("TokenRequestFailed"));
}

#[test]
fn invalid_json_error_does_not_quote_the_body() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct T {
        expires_in: u64,
    }
    let Err(e) = serde_json::from_slice::<T>(br#"{"expires_in":"tok-SECRET-123"}"#) else {
        panic!("string where a number is expected must fail");
    };
    assert!(
        e.to_string().contains("tok-SECRET-123"),
        "serde quotes input, hence the mapping"
    );
    let err = OauthError::invalid_json(Step::Token, &e);
    assert!(!format!("{err} {err:?}").contains("tok-SECRET-123"));
}

#[test]
fn rejection_message_is_lower_case_and_names_status_and_error() {
    let err = rejected(
        Step::Token,
        400,
        r#"{"error":"invalid_scope","error_description":"openid not allowed"}"#,
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("token request: rejected with http 400: invalid_scope: openid not allowed"),
        "{msg}"
    );
}

#[test]
fn the_message_of_a_failure_does_not_change_with_the_interaction_id() {
    for status in [404, 429, 503] {
        let answer = |id: &str| {
            OauthError::from_status(
                Step::Discovery,
                status,
                None,
                br#"{"error":"not_found"}"#,
                id,
                Timestamp::UNIX_EPOCH,
            )
        };
        let (first, second) = (answer("3b1c-first"), answer("9f2e-second"));
        assert_eq!(first.to_string(), second.to_string(), "http {status}");
        assert!(!first.to_string().contains("3b1c-first"), "{first}");
        assert_eq!(first.interaction_id(), Some("3b1c-first"), "kept for logs");
    }
}

#[test]
fn a_discovery_rejection_echoes_only_its_status_never_the_untrusted_body() {
    let body = r#"{"error":"LEAK-code","error_description":"LEAK internal service banner\r\n"}"#;
    let err = rejected(Step::Discovery, 400, body);
    assert_eq!(err.reason(), "DiscoveryFailed");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.oauth_error(), None);
    let text = err.to_string();
    assert!(!text.contains("LEAK"), "{text}");
    assert_eq!(text, "discovery: rejected with http 400: no error details");
    // Other steps talk to an AS whose discovery document was verified: its error fields stay.
    assert!(
        rejected(Step::Token, 400, body)
            .to_string()
            .contains("LEAK-code")
    );
}
