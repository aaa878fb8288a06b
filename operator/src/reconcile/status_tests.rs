//! The computed status, checked with the kstatus rules a GitOps tool applies to it
//! (sigs.k8s.io/cli-utils `kstatus`): generation not observed or `Reconciling=True` is
//! InProgress, `Stalled=True` is Failed, anything else is Current.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::*;
use crate::{
    identity::IdentityError,
    oauth::{OauthError, Step},
    rotation::{KeyRecord, KeyState, KeyUse, TokenRecord},
};

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn client(generation: i64) -> TppClient {
    let mut c: TppClient = serde_json::from_value(serde_json::json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
        "metadata": {"name": "payments", "namespace": "ns"},
        "spec": {"authorizationServerRef": {"name": "as"}, "registration": {"mode": "Dynamic"}, "tokens": [{"name": "accounts", "scope": "accounts"}]},
    }))
    .unwrap_or_else(|e| panic!("a valid TppClient: {e}"));
    c.metadata.generation = Some(generation);
    c
}

/// What kstatus concludes from a status.
#[derive(Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
}

fn kstatus(generation: i64, st: &TppClientStatus) -> KStatus {
    let is_true = |t: &str| crate::crd::condition::is_true(&st.conditions, t);
    if st.observed_generation != Some(generation) || is_true(types::RECONCILING) {
        KStatus::InProgress
    } else if is_true(types::STALLED) {
        KStatus::Failed
    } else {
        KStatus::Current
    }
}

fn reason_of<'s>(st: &'s TppClientStatus, type_: &str) -> Option<&'s str> {
    crate::crd::condition::find(&st.conditions, type_).map(|c| c.reason.as_str())
}

fn active_key() -> KeyRecord {
    KeyRecord {
        kid: "k1".into(),
        use_: KeyUse::Sig,
        state: KeyState::Active,
        created_at: at(0),
        published_at: Some(at(0)),
        activated_at: Some(at(0)),
        retiring_at: None,
    }
}

fn certificate() -> (CertRecord, String) {
    (
        CertRecord {
            not_before: at(0),
            not_after: at(90 * 86_400),
            x5t_s256: "c1".into(),
        },
        "CN=ns.payments".into(),
    )
}

fn tokens(expires: i64) -> BTreeMap<String, StoredToken> {
    BTreeMap::from([(
        "accounts".to_owned(),
        StoredToken {
            record: TokenRecord {
                name: "accounts".into(),
                issued_at: at(0),
                expires_at: at(expires),
                cert_x5t_s256: "c1".into(),
            },
            access_token: crate::redact::Sensitive::new("token".to_owned()),
            scope: "accounts".into(),
        },
    )])
}

fn material<'a>(
    client: &'a TppClient,
    tokens: &'a BTreeMap<String, StoredToken>,
    complete: bool,
) -> Material<'a> {
    Material {
        client,
        client_id: complete.then(|| "client-1".to_owned()),
        registered: complete,
        keys: if complete { vec![active_key()] } else { vec![] },
        certificate: complete.then(certificate),
        tokens,
        self_test_refusals: BTreeMap::new(),
    }
}

fn unavailable() -> Error {
    Error::FetchToken(OauthError::Unavailable {
        step: Step::Token,
        status: 503,
        retry_after: None,
        interaction_id: "i".into(),
    })
}

#[test]
fn an_onboarding_client_is_in_progress_with_reconciling_true() {
    let c = client(1);
    let none = BTreeMap::new();
    let st = compute(
        &material(&c, &none, false),
        &TppClientStatus::default(),
        None,
        None,
        at(1),
    );
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
    assert_eq!(reason_of(&st, types::RECONCILING), Some("Pending"));
    assert_eq!(reason_of(&st, types::READY), Some("Pending"));
    assert!(!crate::crd::condition::is_true(
        &st.conditions,
        types::STALLED
    ));
}

#[test]
fn a_ready_client_is_current_with_its_generation_observed() {
    let c = client(3);
    let held = tokens(3_600);
    let st = compute(
        &material(&c, &held, true),
        &TppClientStatus::default(),
        None,
        None,
        at(1),
    );
    assert_eq!(kstatus(3, &st), KStatus::Current);
    assert_eq!(st.observed_generation, Some(3));
    assert!(crate::crd::condition::is_true(&st.conditions, types::READY));
    assert_eq!(reason_of(&st, types::RECONCILING), Some("Reconciled"));
    assert!(
        st.conditions
            .iter()
            .all(|cond| cond.observed_generation == Some(3))
    );
}

#[test]
fn a_status_of_an_older_generation_is_in_progress() {
    let c = client(3);
    let held = tokens(3_600);
    let st = compute(
        &material(&c, &held, true),
        &TppClientStatus::default(),
        None,
        None,
        at(1),
    );
    assert_eq!(kstatus(4, &st), KStatus::InProgress);
}

#[test]
fn a_transient_failure_keeps_reconciling_and_does_not_stall() {
    let c = client(1);
    let held = tokens(10);
    let e = unavailable();
    let st = compute(
        &material(&c, &held, true),
        &TppClientStatus::default(),
        None,
        Some(&e),
        at(20),
    );
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
    assert_eq!(
        reason_of(&st, types::TOKENS_READY),
        Some("AuthorizationServerUnavailable")
    );
    assert_eq!(
        reason_of(&st, types::READY),
        Some("AuthorizationServerUnavailable")
    );
}

#[test]
fn a_permanent_failure_stalls_with_its_reason() {
    let c = client(2);
    let e = Error::InvalidSpec {
        reason: Reason::CrossNamespaceReference,
        message: "another namespace".into(),
    };
    let st = early_failure(&c, &TppClientStatus::default(), &e, at(1));
    assert_eq!(kstatus(2, &st), KStatus::Failed);
    assert_eq!(
        reason_of(&st, types::STALLED),
        Some("CrossNamespaceReference")
    );
    assert_eq!(
        reason_of(&st, types::READY),
        Some("CrossNamespaceReference")
    );
}

#[test]
fn a_client_waiting_for_its_authorization_server_is_in_progress() {
    let c = client(1);
    let st = waiting(
        &c,
        &TppClientStatus::default(),
        Reason::AuthorizationServerNotReady,
        "waiting",
        at(1),
    );
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
    assert_eq!(
        reason_of(&st, types::READY),
        Some("AuthorizationServerNotReady")
    );
}

#[test]
fn a_deferred_client_that_waited_for_its_server_shows_it_is_queued_once() {
    let c = client(1);
    let stale = waiting(
        &c,
        &TppClientStatus::default(),
        Reason::AuthorizationServerNotReady,
        "waiting for AuthorizationServer \"as\" to be resolved",
        at(1),
    );
    let st = queued(&c, &stale, at(2)).expect("the stale wait is replaced");
    assert_eq!(kstatus(1, &st), KStatus::InProgress);
    assert_eq!(reason_of(&st, types::READY), Some("Pending"));
    let message = st
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY)
        .map(|c| c.message.clone());
    assert_eq!(message.as_deref(), Some(QUEUED));
    assert_eq!(queued(&c, &st, at(3)), None, "a retry writes nothing");
}

#[test]
fn a_deferred_rotation_of_a_ready_client_leaves_its_status_alone() {
    let c = client(1);
    let mut ready = TppClientStatus::default();
    Conditions::new(&mut ready.conditions, Some(1), at(1)).set(
        types::READY,
        true,
        Reason::Reconciled,
        "ready",
    );
    assert_eq!(queued(&c, &ready, at(2)), None);
}

#[test]
fn a_suspended_client_is_current_and_not_ready() {
    let c = client(1);
    let st = suspended(&c, &TppClientStatus::default(), at(1));
    assert_eq!(kstatus(1, &st), KStatus::Current);
    assert_eq!(reason_of(&st, types::READY), Some("Suspended"));
}

#[test]
fn recovering_from_a_stall_clears_stalled() {
    let c = client(1);
    let held = tokens(3_600);
    let e = Error::Preflight("PAR".into());
    let stalled = early_failure(&c, &TppClientStatus::default(), &e, at(1));
    let st = compute(&material(&c, &held, true), &stalled, None, None, at(2));
    assert_eq!(kstatus(1, &st), KStatus::Current);
    assert_eq!(reason_of(&st, types::STALLED), Some("Reconciled"));
}

#[test]
fn a_certificate_stage_failure_shows_at_the_certificate_condition() {
    let c = client(1);
    let none = BTreeMap::new();
    let e = Error::Identity {
        stage: crate::error::Stage::IssueCertificate,
        source: IdentityError::CertificateParams {
            reason: "validity must be positive".into(),
        },
    };
    let st = compute(
        &material(&c, &none, false),
        &TppClientStatus::default(),
        None,
        Some(&e),
        at(1),
    );
    assert_eq!(
        reason_of(&st, types::TRANSPORT_CERTIFICATE_READY),
        Some("CertificateParamsInvalid")
    );
    assert_eq!(reason_of(&st, types::SIGNING_KEY_READY), Some("Pending"));
}

#[test]
fn a_token_refresh_does_not_change_the_status() {
    let c = client(1);
    let before = tokens(3_600);
    let after = tokens(7_200);
    let first = compute(
        &material(&c, &before, true),
        &TppClientStatus::default(),
        None,
        None,
        at(1),
    );
    let second = compute(&material(&c, &after, true), &first, None, None, at(3_000));
    assert_eq!(first, second);
}

#[test]
fn a_key_awaiting_approval_is_named_on_the_signing_key_condition() {
    let c = client(1);
    let held = tokens(3_600);
    let plan = Plan {
        actions: vec![Action::AwaitApproval { kid: "k2".into() }],
        withheld: vec![],
        next_wakeup: None,
        deferred: vec![],
    };
    let st = compute(
        &material(&c, &held, true),
        &TppClientStatus::default(),
        Some(&plan),
        None,
        at(1),
    );
    assert_eq!(
        reason_of(&st, types::SIGNING_KEY_READY),
        Some("AwaitingKeyApproval")
    );
    assert!(crate::crd::condition::is_true(&st.conditions, types::READY));
}
