//! Whole-plan behaviour: ordering, backoff, wake-ups, determinism, persistence format.

use super::fixtures::*;
use crate::rotation::{
    Action, KeyState, KeyUse, Observed, Publication, Reason, Trigger, calls_authorization_server,
    plan,
};

#[test]
fn orders_actions_persist_publish_activate_remove_then_certificate_and_tokens() {
    let mut seen = steady();
    seen.keys = vec![
        sig("k0", KeyState::Retiring, at(-DAY)),
        sig("k1", KeyState::Active, at(-DAY)),
        sig("k2", KeyState::Published, at(-DAY)),
        sig("k3", KeyState::Pending, at(-DAY + 1)),
    ];
    seen.triggers.renew_certificate.requested = Some("r".into());
    let mut policy = policy();
    policy.encryption = Some(policy.signing);
    let p = plan(&policy, &seen, at(0));
    let phases: Vec<u8> = p.actions.iter().map(Action::phase).collect();
    let mut sorted = phases.clone();
    sorted.sort();
    assert_eq!(phases, sorted);
    assert_eq!(
        reasons(&p),
        [
            Reason::NoKey,              // encryption key persisted first
            Reason::PropagationElapsed, // k2 replaces k1
            Reason::Superseded,         // k3 is dropped
            Reason::RetireElapsed,      // k0 goes
            Reason::ManualTrigger,      // certificate
            Reason::CertificateChanged, // token follows it
            Reason::ManualTrigger,      // acknowledgement
        ]
    );
}

#[test]
fn backoff_withholds_authorization_server_calls_but_not_local_work() {
    let mut policy = policy();
    policy.publication = Publication::Immediate;
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Pending, at(10)));
    seen.keys
        .push(key("e1", KeyUse::Enc, KeyState::Active, at(0)));
    seen.backoff_until = Some(at(3_700));
    seen.triggers.renew_tokens.requested = Some("t".into());
    let p = plan(&policy, &seen, at(3_600));
    assert!(
        p.actions
            .iter()
            .all(|a| !calls_authorization_server(a, &policy, &seen))
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::RetireKey { .. }))
    );
    assert!(
        p.withheld
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. }))
    );
    assert!(
        p.withheld
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. }))
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::AcknowledgeTrigger { .. }))
    );
    assert_eq!(
        p.next_wakeup,
        Some(at(3_600)),
        "the retirement asks for a re-plan"
    );

    seen.keys.retain(|k| k.use_ == KeyUse::Sig);
    let waiting = plan(&policy, &seen, at(3_600));
    assert!(waiting.actions.is_empty());
    assert_eq!(waiting.next_wakeup, Some(at(3_700)));
}

#[test]
fn publishing_to_a_served_jwks_uri_is_local_and_ignores_backoff() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Pending, at(10)));
    seen.backoff_until = Some(at(100));
    let p = plan(&policy(), &seen, at(20));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. }))
    );
}

#[test]
fn an_elapsed_backoff_holds_nothing_back() {
    let mut seen = steady();
    seen.backoff_until = Some(at(3_599));
    let p = plan(&policy(), &seen, at(3_600));
    assert!(p.withheld.is_empty());
    assert_eq!(reasons(&p), [Reason::TokenExpired]);
}

#[test]
fn wake_up_is_the_earliest_future_due_instant() {
    let seen = steady();
    let p = plan(&policy(), &seen, at(60));
    let token_point = crate::rotation::refresh_at(&policy().tokens[0], &seen.tokens[0], 7);
    assert!(p.actions.is_empty());
    assert_eq!(p.next_wakeup, Some(token_point));
}

#[test]
fn wake_up_is_never_in_the_past_even_for_records_from_the_future() {
    let mut seen = steady();
    seen.keys = vec![sig("k1", KeyState::Active, at(10 * DAY))];
    let p = plan(&policy(), &seen, at(0));
    assert!(p.next_wakeup.is_some_and(|w| w >= at(0)));
}

#[test]
fn same_input_gives_the_same_plan_whatever_the_record_order() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Published, at(-DAY)));
    seen.keys.push(sig("k0", KeyState::Retiring, at(-DAY)));
    seen.keys.push(sig("k3", KeyState::Pending, at(-DAY)));
    let mut shuffled = seen.clone();
    shuffled.keys.reverse();
    let a = plan(&policy(), &seen, at(0));
    assert_eq!(a, plan(&policy(), &seen.clone(), at(0)));
    assert_eq!(a, plan(&policy(), &shuffled, at(0)));
}

#[test]
fn records_persist_as_camel_case_json_and_read_back() {
    let mut record = sig("k1", KeyState::Retiring, at(0));
    record.published_at = None;
    let json = serde_json::to_value(&record).unwrap_or_default();
    assert_eq!(json["use"], "sig");
    assert_eq!(json["state"], "Retiring");
    assert!(json.get("createdAt").is_some() && json.get("retiringAt").is_some());
    assert!(json.get("publishedAt").is_none());
    let back: Result<crate::rotation::KeyRecord, _> = serde_json::from_value(json);
    assert_eq!(back.ok(), Some(record));

    let token = token("payments", at(0), at(60), "c1");
    let json = serde_json::to_value(&token).unwrap_or_default();
    assert_eq!(json["certX5tS256"], "c1");
    assert!(json.get("expiresAt").is_some());

    let trigger = Trigger {
        requested: Some("b".into()),
        handled: Some("a".into()),
        handled_at: None,
    };
    let json = serde_json::to_string(&trigger).unwrap_or_default();
    assert_eq!(json, r#"{"requested":"b","handled":"a"}"#);
}

#[test]
fn a_trigger_is_pending_only_while_its_request_is_unhandled() {
    let mut trigger = Trigger::default();
    assert_eq!(trigger.pending(), None);
    trigger.requested = Some("1".into());
    assert_eq!(trigger.pending(), Some("1"));
    trigger.handled = Some("1".into());
    assert_eq!(trigger.pending(), None);
    trigger.requested = Some("2".into());
    assert_eq!(trigger.pending(), Some("2"));
}

#[test]
fn reasons_are_pascal_case_names() {
    for reason in [
        Reason::NoKey,
        Reason::RotationDue,
        Reason::PropagationElapsed,
        Reason::InsideRenewBefore,
        Reason::CertificateChanged,
    ] {
        assert_eq!(reason.to_string(), format!("{reason:?}"));
    }
}

#[test]
fn an_unregistered_client_gets_keys_and_a_certificate_without_waiting() {
    let seen = Observed::default();
    let mut seen_after = seen.clone();
    let first = plan(&policy(), &seen, at(0));
    assert_eq!(reasons(&first), [Reason::NoKey, Reason::CertificateMissing]);
    seen_after.keys.push(sig("k1", KeyState::Pending, at(0)));
    seen_after.certificate = Some(cert("c1", at(0), at(90 * DAY)));
    let second = plan(&policy(), &seen_after, at(0));
    assert_eq!(
        reasons(&second),
        [Reason::KeyUnpublished, Reason::Bootstrap]
    );
}
