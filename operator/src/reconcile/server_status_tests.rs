//! The AuthorizationServer status, checked with the kstatus rules a GitOps tool applies to it
//! (sigs.k8s.io/cli-utils `kstatus`, docs/gitops.md): generation not observed or
//! `Reconciling=True` is InProgress, `Stalled=True` is Failed, anything else is Current.

use jiff::Timestamp;

use super::*;
use crate::oauth::{OauthError, Step};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// What kstatus concludes from a status.
#[derive(Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
}

fn kstatus(generation: i64, st: &AuthorizationServerStatus) -> KStatus {
    let is_true = |t: &str| crate::crd::condition::is_true(&st.conditions, t);
    if st.observed_generation != Some(generation) || is_true(types::RECONCILING) {
        KStatus::InProgress
    } else if is_true(types::STALLED) {
        KStatus::Failed
    } else {
        KStatus::Current
    }
}

fn condition<'s>(st: &'s AuthorizationServerStatus, type_: &str) -> (&'s str, &'s str) {
    crate::crd::condition::find(&st.conditions, type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", st.conditions))
}

fn discovered() -> AuthorizationServerStatus {
    AuthorizationServerStatus {
        endpoints: Some(DiscoveredEndpoints {
            token: Some("https://as.example/token".into()),
            ..Default::default()
        }),
        auth_methods: vec!["private_key_jwt".into()],
        ..Default::default()
    }
}

fn unavailable() -> Error {
    Error::Discovery(OauthError::Unavailable {
        step: Step::Discovery,
        status: 503,
        retry_after: None,
        interaction_id: "i-1".into(),
    })
}

fn issuer_mismatch() -> Error {
    Error::Discovery(OauthError::IssuerMismatch {
        expected: "https://as.example".into(),
        found: "https://other.example".into(),
    })
}

#[test]
fn a_server_that_passed_discovery_and_preflight_is_current() {
    let st = with_conditions(discovered(), None, Some(3), None, at(0));
    assert_eq!(st.observed_generation, Some(3));
    assert_eq!(condition(&st, types::READY), ("True", "Reconciled"));
    assert_eq!(condition(&st, types::RECONCILING), ("False", "Reconciled"));
    assert_eq!(condition(&st, types::STALLED), ("False", "Reconciled"));
    assert_eq!(kstatus(3, &st), KStatus::Current);
}

#[test]
fn a_server_whose_discovery_is_retried_is_in_progress_not_current() {
    let e = unavailable();
    assert!(e.is_transient(), "the premise: a 503 is retried");
    let st = with_conditions(Default::default(), None, Some(1), Some(&e), at(0));
    assert_eq!(
        condition(&st, types::READY),
        ("False", "AuthorizationServerUnavailable")
    );
    assert_eq!(
        condition(&st, types::RECONCILING),
        ("True", "AuthorizationServerUnavailable")
    );
    assert_eq!(
        condition(&st, types::STALLED),
        ("False", "AuthorizationServerUnavailable")
    );
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
}

#[test]
fn a_server_with_a_missing_ca_bundle_is_in_progress_until_it_appears() {
    let e = Error::ReferenceNotFound("ConfigMap bank/ofm-ca".into());
    let st = with_conditions(Default::default(), None, Some(1), Some(&e), at(0));
    assert_eq!(condition(&st, types::RECONCILING).0, "True");
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
}

#[test]
fn an_issuer_mismatch_stalls_the_server_and_kstatus_calls_it_failed() {
    let e = issuer_mismatch();
    assert!(!e.is_transient(), "the premise: only a change helps");
    let st = with_conditions(Default::default(), None, Some(2), Some(&e), at(0));
    assert_eq!(condition(&st, types::READY), ("False", "IssuerMismatch"));
    assert_eq!(condition(&st, types::STALLED), ("True", "IssuerMismatch"));
    assert_eq!(
        condition(&st, types::RECONCILING),
        ("False", "IssuerMismatch")
    );
    assert_eq!(kstatus(2, &st), KStatus::Failed);
}

#[test]
fn preflight_findings_stall_the_server() {
    let e = Error::Preflight(
        "the discovery document has no pushed_authorization_request_endpoint".into(),
    );
    let st = with_conditions(Default::default(), None, Some(1), Some(&e), at(0));
    assert_eq!(condition(&st, types::STALLED).0, "True");
    assert_eq!(kstatus(1, &st), KStatus::Failed);
}

#[test]
fn a_fixed_server_clears_stalled_and_becomes_current_at_the_new_generation() {
    let stalled = with_conditions(
        Default::default(),
        None,
        Some(1),
        Some(&issuer_mismatch()),
        at(0),
    );
    let st = with_conditions(discovered(), Some(&stalled), Some(2), None, at(60));
    assert_eq!(condition(&st, types::STALLED), ("False", "Reconciled"));
    assert_eq!(condition(&st, types::READY).0, "True");
    assert!(
        st.conditions
            .iter()
            .all(|c| c.observed_generation == Some(2)),
        "every condition observed the new generation: {:?}",
        st.conditions
    );
    assert_eq!(kstatus(2, &st), KStatus::Current);
}

#[test]
fn a_status_of_an_older_generation_is_in_progress() {
    let st = with_conditions(discovered(), None, Some(1), None, at(0));
    assert_eq!(kstatus(2, &st), KStatus::InProgress);
}

#[test]
fn a_failed_rediscovery_keeps_what_was_last_discovered() {
    let ready = with_conditions(discovered(), None, Some(1), None, at(0));
    let st = with_conditions(
        Default::default(),
        Some(&ready),
        Some(1),
        Some(&unavailable()),
        at(60),
    );
    assert_eq!(st.endpoints, ready.endpoints);
    assert_eq!(st.auth_methods, ready.auth_methods);
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
}

/// A discovery answered 404 (an issuer with a wrong path), as the transport builds it.
fn not_found(interaction_id: &str) -> Error {
    Error::Discovery(OauthError::from_status(
        Step::Discovery,
        404,
        None,
        b"",
        interaction_id,
        at(0),
    ))
}

#[test]
fn a_repeated_failure_with_a_new_interaction_id_leaves_the_status_unchanged() {
    for (first, second) in [
        (not_found("4f1d-first"), not_found("a09c-second")),
        (unavailable(), {
            Error::Discovery(OauthError::Unavailable {
                step: Step::Discovery,
                status: 503,
                retry_after: None,
                interaction_id: "i-2".into(),
            })
        }),
    ] {
        let before = with_conditions(Default::default(), None, Some(1), Some(&first), at(0));
        let after = with_conditions(
            Default::default(),
            Some(&before),
            Some(1),
            Some(&second),
            at(30),
        );
        let message = |st: &AuthorizationServerStatus| {
            crate::crd::condition::find(&st.conditions, types::READY).map(|c| c.message.clone())
        };
        assert_eq!(message(&before), message(&after));
        assert!(
            message(&after).is_some_and(|m| !m.contains("4f1d") && !m.contains("i-2")),
            "{:?}",
            message(&after)
        );
        assert!(
            unchanged(Some(&before), &after),
            "no status write, so no watch event and no new reconcile: {before:?} -> {after:?}"
        );
    }
}

fn spec_with(extra: serde_json::Value) -> AuthorizationServerSpec {
    let mut v = serde_json::json!({"issuer": "https://bank.example.com"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap_or_else(|e| panic!("a valid spec: {e}"))
}

fn meta_with(token_endpoint: &str) -> crate::oauth::ProviderMetadata {
    serde_json::from_value(serde_json::json!({
        "issuer": "https://bank.example.com",
        "token_endpoint": token_endpoint,
        "registration_endpoint": "https://bank.example.com/register",
    }))
    .unwrap_or_else(|e| panic!("metadata: {e}"))
}

#[test]
fn an_authorization_server_whose_endpoints_point_inward_is_refused_at_resolution() {
    let policy = crate::oauth::EgressPolicy::new::<&str>(&[]);
    let public = meta_with("https://bank.example.com/token");
    assert!(check_egress(&spec_with(serde_json::json!({})), &public, Some(&policy)).is_ok());
    let inward_registration = spec_with(serde_json::json!({
        "registration": {"endpoint": "https://kubernetes.default.svc/register"}
    }));
    let e = check_egress(&inward_registration, &public, Some(&policy))
        .expect_err("a registration endpoint inside the cluster");
    assert_eq!(e.reason(), Reason::EgressRefused);
    assert!(
        e.to_string().contains("kubernetes.default.svc")
            || e.chain().contains("kubernetes.default.svc")
    );
    let inward_token = meta_with("https://10.0.0.7/token");
    let e = check_egress(
        &spec_with(serde_json::json!({})),
        &inward_token,
        Some(&policy),
    )
    .expect_err("a discovered token endpoint on a private address");
    assert_eq!(e.reason(), Reason::EgressRefused);
    // Without an installed policy (unit tests of other modules, the loopback tier) nothing is
    // checked here; the transport still checks its own.
    assert!(check_egress(&inward_registration, &inward_token, None).is_ok());
}

#[test]
fn an_authorization_server_for_tls_client_auth_clients_only_passes_its_preflight() {
    let meta = |methods: &[&str]| -> crate::oauth::ProviderMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://bank.example.com",
            "token_endpoint_auth_methods_supported": methods,
        }))
        .unwrap_or_else(|e| panic!("metadata: {e}"))
    };
    assert_eq!(
        server_auth_method(&meta(&["tls_client_auth"])),
        "tls_client_auth"
    );
    assert_eq!(
        server_auth_method(&meta(&["private_key_jwt", "tls_client_auth"])),
        "private_key_jwt"
    );
    // Neither: checked (and reported) as private_key_jwt.
    assert_eq!(
        server_auth_method(&meta(&["client_secret_basic"])),
        "private_key_jwt"
    );
}

/// A hostile discovery document: `issuer` as given, and a marker (`LEAK`) in every other field
/// a status could echo.
fn hostile_document(issuer: &str, token_endpoint: &str) -> crate::oauth::ProviderMetadata {
    let body = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": token_endpoint,
        "registration_endpoint": "https://bank.example.com/LEAK-register",
        "jwks_uri": "https://bank.example.com/LEAK-jwks",
        "token_endpoint_auth_methods_supported": ["LEAK-method"],
        "token_endpoint_auth_signing_alg_values_supported": ["LEAK-alg"],
        "service_documentation": "LEAK-docs",
    });
    crate::oauth::discovery::parse(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("a JSON document: {e}"))
}

/// Every condition message of `st`: bounded, free of control characters and of the marker.
fn assert_echoes_nothing_else(st: &AuthorizationServerStatus, bound: usize) {
    for c in &st.conditions {
        let m = &c.message;
        assert!(!m.contains("LEAK"), "{}: {m}", c.type_);
        assert!(!m.contains("SECRET"), "{}: {m}", c.type_);
        assert!(!m.chars().any(char::is_control), "{}: {m:?}", c.type_);
        assert!(m.chars().count() <= bound, "{}: {} chars", c.type_, m.len());
    }
    let fields = serde_json::to_string(&(&st.endpoints, &st.auth_methods, &st.signing_algorithms))
        .unwrap_or_default();
    assert!(!fields.contains("LEAK"), "{fields}");
}

#[test]
fn a_hostile_discovery_document_shows_only_its_bounded_sanitised_issuer_in_the_status() {
    let issuer = format!(
        "https://evil.example/{}?token=SECRET\r\n\u{1b}[31m{}LEAK",
        "x".repeat(100),
        "y".repeat(10_000)
    );
    let meta = hostile_document(&issuer, "https://bank.example.com/LEAK-token");
    let e = crate::oauth::discovery::check_issuer(&meta, "https://bank.example.com")
        .expect_err("another issuer");
    let st = with_conditions(
        AuthorizationServerStatus::default(),
        Some(&discovered()),
        Some(2),
        Some(&Error::Discovery(e)),
        at(0),
    );
    assert_eq!(condition(&st, types::STALLED), ("True", "IssuerMismatch"));
    assert_echoes_nothing_else(&st, 2 * crate::oauth::wire::MAX_FIELD_CHARS + 120);
    let ready = crate::crd::condition::find(&st.conditions, types::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(ready.contains("\"https://bank.example.com\""), "{ready}");
    assert!(
        ready.contains(&format!("https://evil.example/{}", "x".repeat(100))),
        "{ready}"
    );
    // What was discovered before stays; nothing of the refused document replaces it.
    assert_eq!(st.endpoints, discovered().endpoints);
}

#[test]
fn an_inward_endpoint_of_a_hostile_document_is_named_bounded_and_alone() {
    let policy = crate::oauth::EgressPolicy::new::<&str>(&[]);
    let long_host = vec!["a".repeat(60); 60].join(".") + ".svc.cluster.local";
    let meta = hostile_document(
        "https://bank.example.com",
        &format!("https://{long_host}/LEAK-token?SECRET=1"),
    );
    let e = check_egress(&spec_with(serde_json::json!({})), &meta, Some(&policy))
        .expect_err("a token endpoint inside the cluster");
    assert_eq!(e.reason(), Reason::EgressRefused);
    let st = with_conditions(
        AuthorizationServerStatus::default(),
        None,
        Some(1),
        Some(&e),
        at(0),
    );
    assert_eq!(condition(&st, types::STALLED), ("True", "EgressRefused"));
    assert_echoes_nothing_else(&st, crate::oauth::wire::MAX_FIELD_CHARS + 250);
    assert!(
        e.chain().contains(&format!("{}.", "a".repeat(60))),
        "names the refused host: {}",
        e.chain()
    );
}
