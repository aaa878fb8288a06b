//! Transport certificate triggers.

use super::fixtures::*;
use crate::rotation::{Action, Observed, Reason, TriggerKind, plan};

fn renewals(seen: &Observed, second: i64) -> Vec<Reason> {
    plan(&policy(), seen, at(second))
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RenewCertificate { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn renews_a_missing_managed_certificate() {
    let mut seen = steady();
    seen.certificate = None;
    assert_eq!(renewals(&seen, 60), [Reason::CertificateMissing]);
}

#[test]
fn renews_certificate_inside_renew_before_window() {
    let seen = steady();
    let window = 60 * DAY; // 90-day certificate renewed 30 days ahead
    assert_eq!(renewals(&seen, window - 1), []);
    assert_eq!(renewals(&seen, window), [Reason::InsideRenewBefore]);
}

#[test]
fn wakes_up_exactly_when_the_renew_before_window_opens() {
    let (mut policy, mut seen) = keys_only();
    policy.signing.every = None;
    policy.certificate.managed = true;
    seen.certificate = Some(cert("c1", at(0), at(90 * DAY)));
    let p = plan(&policy, &seen, at(DAY));
    assert!(p.actions.is_empty());
    assert_eq!(p.next_wakeup, Some(at(60 * DAY)));
}

#[test]
fn renews_an_expired_certificate_as_expired() {
    let seen = steady();
    assert_eq!(renewals(&seen, 90 * DAY), [Reason::CertificateExpired]);
}

#[test]
fn never_renews_an_unmanaged_certificate_but_tokens_follow_its_thumbprint() {
    let mut policy = policy();
    policy.certificate.managed = false;
    let mut seen = steady();
    seen.certificate = Some(cert("user-2", at(0), at(DAY)));
    seen.triggers.renew_certificate.requested = Some("now".into());
    let p = plan(&policy, &seen, at(2 * DAY));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RenewCertificate { .. }))
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::AcknowledgeTrigger { .. }))
    );
    assert!(p.actions.contains(&Action::RefreshTokens {
        tokens: vec![crate::rotation::TokenDue {
            name: "payments".into(),
            reason: Reason::CertificateChanged,
            revoke_replaced: false,
        }],
        certificate: crate::rotation::TokenCertificate::Switch,
    }));
}

#[test]
fn manual_certificate_trigger_renews_once_and_is_acknowledged_last() {
    let mut seen = steady();
    seen.triggers.renew_certificate.requested = Some("a".into());
    let p = plan(&policy(), &seen, at(60));
    assert_eq!(
        p.actions.first(),
        Some(&Action::RenewCertificate {
            reason: Reason::ManualTrigger
        })
    );
    assert_eq!(
        p.actions.last(),
        Some(&Action::AcknowledgeTrigger {
            trigger: TriggerKind::RenewCertificate,
            value: "a".into()
        })
    );
    seen.triggers.renew_certificate.handled = Some("a".into());
    assert_eq!(renewals(&seen, 60), []);
}

#[test]
fn tokens_are_reminted_right_after_a_certificate_renewal() {
    let seen = steady();
    let p = plan(&policy(), &seen, at(60 * DAY));
    let tail: Vec<Reason> = p
        .actions
        .iter()
        .filter(|a| a.phase() >= 5)
        .map(Action::reason)
        .collect();
    assert_eq!(
        tail,
        [Reason::InsideRenewBefore, Reason::CertificateChanged]
    );
}

#[test]
fn renew_before_beyond_the_lifetime_falls_back_to_a_third_of_it() {
    let mut policy = policy();
    policy.certificate.renew_before = hours(24 * 365);
    let seen = steady();
    let renews = |second| {
        plan(&policy, &seen, at(second))
            .actions
            .iter()
            .any(|a| matches!(a, Action::RenewCertificate { .. }))
    };
    assert!(!renews(60 * DAY - 1));
    assert!(renews(60 * DAY));
}
