//! `kubectl tpp status` on built objects: what it shows, and that no secret value reaches it.

use super::*;
use crate::credentials::{CredentialsSummary, tests::secret};
use serde_json::json;
use tpp_operator::crd::TppClient;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ready_client() -> TppClient {
    serde_json::from_value(json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
        "metadata": {"name": "payments", "namespace": "bank", "generation": 1, "uid": "0b6c1f4e-5a57-4f43-9d43-5b3a4c1d2e10"},
        "spec": {
            "authorizationServerRef": {"name": "ofm-sandbox"},
            "registration": {"mode": "Dynamic"},
            "tokens": [{"name": "accounts", "scope": "accounts"}]
        },
        "status": {
            "observedGeneration": 1,
            "clientId": "3e5ae210-2591-4a79-a8f0-06e64e2059f2",
            "conditions": [
                {"type": "TokensReady", "status": "True", "reason": "TokensIssued", "message": "1 token(s) in Secret payments-credentials", "lastTransitionTime": "2026-12-03T09:00:06Z"},
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "registered, keyed, certified and tokened", "lastTransitionTime": "2026-12-03T09:00:06Z"}
            ],
            "signingKeys": [{"kid": "Wq3PiJ3xWjkPo7RrKxWb5rUZ0xkXn3cUvsnzNEnqoSQ", "use": "sig", "state": "Active", "createdAt": "2026-12-03T09:00:01Z", "activateAt": "2026-12-03T09:00:04Z"}],
            "certificate": {"notAfter": "2027-12-03T09:00:03Z", "renewalTime": "2027-11-03T09:00:03Z", "subject": "CN=bank.payments", "x5tS256": "jXVjuhQbkdImsU3067eRXZP6hc--zNWr8Tj4P1ehgnU"},
            "history": [{"time": "2026-12-03T09:00:04Z", "reason": "KeyActive", "message": "key Wq3P active"}]
        }
    }))
    .unwrap()
}

#[test]
fn status_shows_conditions_ids_dates_and_the_operators_next_refresh() {
    let c = ready_client();
    let creds = CredentialsSummary::from_secret(&secret());
    let now = ts("2026-12-03T09:00:30Z");
    let text = render(&c, Some(&creds), None, now, 5);
    for want in [
        "TppClient bank/payments: Dynamic registration, private_key_jwt, AuthorizationServer/ofm-sandbox",
        "Ready:        True (Reconciled) since 24s ago: registered, keyed, certified and tokened",
        "3e5ae210-2591-4a79-a8f0-06e64e2059f2",
        "Not after:    2027-12-03T09:00:03Z (in 364d)",
        "Renewal:      2027-11-03T09:00:03Z (in 334d)",
        "Active (signs)",
        "Next rotation: 2027-03-03T09:00:01Z (in 89d)",
        "2026-12-03T09:01:00Z (in 30s)",
        "KeyActive",
        "Token URL:    https://127.0.0.1:8443/token",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Ready first, then the parts.
    assert!(
        text.find("Ready  ").unwrap() < text.find("TokensReady").unwrap(),
        "{text}"
    );
    // The next refresh is the planner's point for this token, uid and issue time.
    let policy = policy::rotation_policy(&c, "0b6c1f4e-5a57-4f43-9d43-5b3a4c1d2e10");
    let at = refresh_at(
        &policy.tokens[0],
        &TokenRecord {
            name: "accounts".into(),
            issued_at: ts("2026-12-03T09:00:00Z"),
            expires_at: ts("2026-12-03T09:01:00Z"),
            cert_x5t_s256: String::new(),
        },
        policy::jitter_seed("0b6c1f4e-5a57-4f43-9d43-5b3a4c1d2e10"),
    );
    assert!(at > now && at < ts("2026-12-03T09:01:00Z"));
    assert!(text.contains(&with_relative(at, now)), "{text}");
}

#[test]
fn status_never_shows_a_secret_value() {
    let creds = CredentialsSummary::from_secret(&secret());
    let text = render(
        &ready_client(),
        Some(&creds),
        None,
        ts("2026-12-03T09:00:30Z"),
        5,
    );
    assert!(!text.contains("SECRET"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[test]
fn status_of_a_new_client_says_what_is_missing() {
    let mut c = ready_client();
    c.status = None;
    c.metadata.generation = Some(2);
    let text = render(&c, None, None, ts("2026-12-03T09:00:30Z"), 5);
    assert!(text.contains("no status yet"), "{text}");
    assert!(text.contains("Generation:   2, observed none"), "{text}");
    assert!(text.contains("(not registered yet)"), "{text}");
    assert!(text.contains("not issued yet"), "{text}");
}

#[test]
fn status_of_a_gated_client_lists_the_kids_awaiting_approval() {
    let mut c = ready_client();
    c.spec.registration.mode = tpp_operator::crd::RegistrationMode::Static;
    c.spec.registration.client_id = Some("manual-client".into());
    if let Some(s) = c.status.as_mut() {
        s.signing_keys[0].state = "Published".into();
    }
    let text = render(&c, None, None, ts("2026-12-03T09:00:30Z"), 5);
    assert!(
        text.contains("Pending approval: Wq3PiJ3xWjkPo7RrKxWb5rUZ0xkXn3cUvsnzNEnqoSQ (upload to the AS, then `kubectl tpp approve payments`)"),
        "{text}"
    );
}

#[test]
fn status_names_the_authorization_server_and_why_it_is_not_ready() {
    let c = ready_client();
    let now = ts("2026-12-03T09:00:30Z");
    let missing = render(&c, None, Some(&ServerView::Missing), now, 5);
    assert!(
        missing.contains("Server:       AuthorizationServer ofm-sandbox not found"),
        "{missing}"
    );
    let down = ServerView::Found {
        issuer: "https://auth1.sandbox.mya.ozoneapi.io".into(),
        ready: Some(Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "DiscoveryFailed".into(),
            message: "fetching the discovery document: connection refused".into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        }),
    };
    let text = render(&c, None, Some(&down), now, 5);
    assert!(
        text.contains("Server:       not ready (DiscoveryFailed): fetching the discovery document: connection refused")
            && text.contains("Issuer:       https://auth1.sandbox.mya.ozoneapi.io"),
        "{text}"
    );
}
