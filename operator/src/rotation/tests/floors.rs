//! Floors on schedules (docs/security.md, "Rate of work per client"): the hostile schedules of
//! issue 13 (`duration: 2m, renewBefore: 119s`; `rotation.every: 1s`) are clamped by the
//! planner even when the stored spec carries them.

use super::fixtures::*;
use crate::rotation::{
    Action, KeyState, KeyUse, Observed, Policy, Reason, TokenPolicy, floors, plan, refresh_at,
};

fn renewals(policy: &Policy, seen: &Observed, second: i64) -> Vec<Reason> {
    plan(policy, seen, at(second))
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RenewCertificate { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn generations(policy: &Policy, seen: &Observed, second: i64) -> Vec<Reason> {
    plan(policy, seen, at(second))
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::GenerateKey { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_two_minute_certificate_is_issued_for_an_hour_instead() {
    let mut policy = policy();
    policy.certificate.duration = secs(120);
    policy.certificate.renew_before = secs(119);
    assert_eq!(floors::clamp(&policy).certificate.duration, hours(1));
}

#[test]
fn a_renew_before_of_almost_the_lifetime_renews_half_way_and_not_before() {
    let (mut policy, mut seen) = keys_only();
    policy.certificate.managed = true;
    policy.certificate.duration = secs(3_600);
    policy.certificate.renew_before = secs(3_599);
    seen.certificate = Some(cert("c1", at(0), at(3_600)));
    assert_eq!(renewals(&policy, &seen, 1), []);
    assert_eq!(renewals(&policy, &seen, 1_799), []);
    assert_eq!(plan(&policy, &seen, at(1)).next_wakeup, Some(at(1_800)));
    assert_eq!(renewals(&policy, &seen, 1_800), [Reason::InsideRenewBefore]);
}

#[test]
fn a_one_second_rotation_period_rotates_once_an_hour() {
    let (mut policy, seen) = keys_only();
    policy.signing.every = Some(secs(1));
    assert_eq!(generations(&policy, &seen, 2), []);
    assert_eq!(generations(&policy, &seen, 3_599), []);
    assert_eq!(generations(&policy, &seen, 3_600), [Reason::RotationDue]);
}

#[test]
fn a_zero_rotation_period_still_means_no_scheduled_rotation() {
    let (mut policy, seen) = keys_only();
    policy.signing.every = Some(secs(0));
    assert_eq!(generations(&policy, &seen, 10 * DAY), []);
}

#[test]
fn a_zero_propagation_delay_waits_a_second_before_the_new_key_signs() {
    let (mut policy, mut seen) = keys_only();
    policy.signing.propagation_delay = secs(0);
    seen.keys
        .push(key("k2", KeyUse::Sig, KeyState::Published, at(100)));
    let activations = |second: i64| {
        plan(&policy, &seen, at(second))
            .actions
            .iter()
            .filter(|a| matches!(a, Action::ActivateKey { .. }))
            .count()
    };
    assert_eq!(activations(100), 0);
    assert_eq!(activations(101), 1);
}

#[test]
fn a_refresh_margin_of_almost_the_lifetime_refreshes_no_sooner_than_two_fifths_in() {
    let record = token("payments", at(0), at(3_600), "c1");
    for seed in 0..64 {
        let margin = TokenPolicy {
            name: "payments".into(),
            refresh_before: Some(secs(3_599)),
        };
        let point = refresh_at(&margin, &record, seed);
        assert!(point >= at(1_440), "seed {seed}: {point}");
        assert!(point <= at(1_800), "seed {seed}: {point}");
    }
}
