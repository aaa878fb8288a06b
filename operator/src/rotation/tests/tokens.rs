//! Access token triggers and the refresh point.

use super::fixtures::*;
use crate::rotation::{
    Action, Observed, Reason, TOKEN_SAFETY_FLOOR, TokenPolicy, TriggerKind, plan, refresh_at,
};

fn refreshes(seen: &Observed, second: i64) -> Vec<Reason> {
    refreshes_at(seen, at(second))
}

fn refreshes_at(seen: &Observed, now: jiff::Timestamp) -> Vec<Reason> {
    plan(&policy(), seen, now)
        .actions
        .iter()
        .flat_map(|a| match a {
            Action::RefreshTokens { tokens, .. } => tokens.iter().map(|t| t.reason).collect(),
            _ => vec![],
        })
        .collect()
}

fn payments(refresh_before: Option<jiff::SignedDuration>) -> TokenPolicy {
    TokenPolicy {
        name: "payments".into(),
        refresh_before,
        revoke_replaced: false,
    }
}

#[test]
fn refreshes_a_missing_token() {
    let mut seen = steady();
    seen.tokens.clear();
    assert_eq!(refreshes(&seen, 0), [Reason::TokenMissing]);
}

#[test]
fn refreshes_a_token_bound_to_another_certificate() {
    let mut seen = steady();
    seen.tokens = vec![token("payments", at(0), at(3_600), "c0")];
    assert_eq!(refreshes(&seen, 10), [Reason::CertificateChanged]);
}

#[test]
fn refreshes_an_expired_token() {
    let seen = steady();
    assert_eq!(refreshes(&seen, 3_600), [Reason::TokenExpired]);
}

#[test]
fn refreshes_token_at_its_jittered_refresh_point_and_not_before() {
    let seen = steady();
    let record = &seen.tokens[0];
    let point = refresh_at(&payments(None), record, policy().jitter_seed);
    // Default refresh_before is a third of the hour; jitter is under a tenth of it.
    assert!(point <= at(3_600 - 1_200) && point > at(3_600 - 1_200 - 360));
    let just_before = point - jiff::SignedDuration::from_nanos(1);
    assert_eq!(refreshes_at(&seen, just_before), []);
    assert_eq!(plan(&policy(), &seen, just_before).next_wakeup, Some(point));
    assert_eq!(refreshes_at(&seen, point), [Reason::RefreshDue]);
}

#[test]
fn jitter_differs_between_clients_but_is_stable_for_one() {
    let record = token("payments", at(0), at(3_600), "c1");
    let points: Vec<_> = (0..8)
        .map(|seed| refresh_at(&payments(None), &record, seed))
        .collect();
    assert!(points.iter().any(|p| *p != points[0]));
    assert_eq!(points[3], refresh_at(&payments(None), &record, 3));
}

#[test]
fn refresh_point_is_never_later_than_expiry_minus_the_safety_floor() {
    let record = token("payments", at(0), at(3_600), "c1");
    let point = refresh_at(&payments(Some(secs(1))), &record, 1);
    assert!(point <= at(3_600).checked_sub(TOKEN_SAFETY_FLOOR).unwrap_or(at(0)));
}

#[test]
fn refresh_point_is_never_earlier_than_a_tenth_of_the_lifetime() {
    let record = token("payments", at(0), at(3_600), "c1");
    let point = refresh_at(&payments(Some(secs(3_599))), &record, 1);
    assert!(point >= at(360));
    let silly = refresh_at(&payments(Some(hours(5))), &record, 1);
    assert!(silly >= at(3_600 - 1_200 - 360) && silly <= at(3_600 - 1_200));
}

#[test]
fn manual_renew_tokens_trigger_refreshes_every_token_then_acknowledges() {
    let mut policy = policy();
    policy.tokens.push(TokenPolicy {
        name: "accounts".into(),
        refresh_before: None,
        revoke_replaced: false,
    });
    let mut seen = steady();
    seen.tokens.push(token("accounts", at(0), at(3_600), "c1"));
    seen.triggers.renew_tokens.requested = Some("x".into());
    let p = plan(&policy, &seen, at(10));
    assert_eq!(
        p.actions.first(),
        Some(&Action::RefreshTokens {
            tokens: ["payments", "accounts"]
                .map(|name| crate::rotation::TokenDue {
                    name: name.into(),
                    reason: Reason::ManualTrigger,
                    revoke_replaced: false,
                })
                .to_vec(),
            certificate: crate::rotation::TokenCertificate::Current,
        }),
        "every token in one refresh"
    );
    assert_eq!(p.actions.len(), 2);
    assert_eq!(
        p.actions.last(),
        Some(&Action::AcknowledgeTrigger {
            trigger: TriggerKind::RenewTokens,
            value: "x".into()
        })
    );
}

#[test]
fn plans_no_token_before_registration() {
    let mut seen = steady();
    seen.registered = false;
    seen.tokens.clear();
    assert_eq!(refreshes(&seen, 0), []);
}

#[test]
fn plans_no_token_without_a_certificate_to_bind_it_to() {
    let mut policy = policy();
    policy.certificate.managed = false;
    let mut seen = steady();
    seen.certificate = None;
    let p = plan(&policy, &seen, at(3_600));
    assert!(p.actions.is_empty());
}

#[test]
fn plans_no_token_before_a_signing_key_is_active_when_tokens_need_one() {
    let mut seen = steady();
    seen.tokens.clear();
    seen.tokens_need_signing_key = true;
    seen.keys = vec![sig("k1", crate::rotation::KeyState::Published, at(0))];
    assert!(
        refreshes(&seen, 0).is_empty(),
        "no key to sign the assertion with yet"
    );
    seen.keys = vec![sig("k1", crate::rotation::KeyState::Active, at(0))];
    assert_eq!(refreshes(&seen, 0), [Reason::TokenMissing]);
}

/// Each token the plan at `now` refreshes: why, and whether what it replaces is to be revoked.
fn revocation_marks(
    policy: &crate::rotation::Policy,
    seen: &Observed,
    now: jiff::Timestamp,
) -> Vec<(Reason, bool)> {
    plan(policy, seen, now)
        .actions
        .iter()
        .flat_map(|a| match a {
            Action::RefreshTokens { tokens, .. } => tokens
                .iter()
                .map(|t| (t.reason, t.revoke_replaced))
                .collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn a_replaced_token_is_marked_for_revocation_only_when_its_policy_asks_and_it_is_still_valid() {
    let mut asks = policy();
    asks.tokens[0].revoke_replaced = true;
    let seen = steady();
    let point = refresh_at(&asks.tokens[0], &seen.tokens[0], asks.jitter_seed);
    assert_eq!(
        revocation_marks(&asks, &seen, point),
        [(Reason::RefreshDue, true)]
    );
    let mut moved = steady();
    moved.tokens = vec![token("payments", at(0), at(3_600), "c0")];
    assert_eq!(
        revocation_marks(&asks, &moved, at(10)),
        [(Reason::CertificateChanged, true)],
        "a token bound to the old certificate is replaced too"
    );
    assert_eq!(
        revocation_marks(&asks, &seen, at(3_600)),
        [(Reason::TokenExpired, false)],
        "an expired token needs no revocation"
    );
    let mut missing = steady();
    missing.tokens.clear();
    assert_eq!(
        revocation_marks(&asks, &missing, at(10)),
        [(Reason::TokenMissing, false)],
        "nothing is replaced"
    );
    assert_eq!(
        revocation_marks(&policy(), &seen, point),
        [(Reason::RefreshDue, false)],
        "off by default"
    );
}
