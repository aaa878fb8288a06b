//! Floors on schedules (docs/security.md, "Rate of work per client"): the hostile schedules of
//! issue 13 (`duration: 2m, renewBefore: 119s`; `rotation.every: 1s`) are clamped by the
//! planner even when the stored spec carries them.

use super::fixtures::*;
use crate::rotation::{
    Action, KeyState, KeyUse, Observed, Outcome, Policy, Reason, TokenPolicy, Trigger, TriggerKind,
    apply, floors, plan, refresh_at,
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
            revoke_replaced: false,
        };
        let point = refresh_at(&margin, &record, seed);
        assert!(point >= at(1_440), "seed {seed}: {point}");
        assert!(point <= at(1_800), "seed {seed}: {point}");
    }
}

/// The verbs acknowledged by the plan at `second`.
fn acknowledged(plan: &crate::rotation::Plan) -> Vec<TriggerKind> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::AcknowledgeTrigger { trigger, .. } => Some(*trigger),
            _ => None,
        })
        .collect()
}

fn manual_refreshes(plan: &crate::rotation::Plan) -> usize {
    plan.actions
        .iter()
        .filter(|a| {
            matches!(a, Action::RefreshTokens { tokens, .. } if tokens.iter().any(|t| t.reason == Reason::ManualTrigger))
        })
        .count()
}

#[test]
fn a_renew_tokens_request_inside_the_floor_is_deferred_and_acted_on_once_it_has_passed() {
    let policy = policy();
    let mut seen = steady();
    seen.triggers.renew_tokens = Trigger {
        requested: Some("2".into()),
        handled: Some("1".into()),
        handled_at: Some(at(0)),
    };
    let inside = plan(&policy, &seen, at(60));
    assert_eq!(manual_refreshes(&inside), 0, "{inside:?}");
    assert!(acknowledged(&inside).is_empty(), "{inside:?}");
    assert_eq!(inside.deferred, vec![(TriggerKind::RenewTokens, at(600))]);
    assert!(inside.next_wakeup.is_some_and(|w| w <= at(600)));

    let after = plan(&policy, &seen, at(600));
    assert_eq!(manual_refreshes(&after), 1, "{after:?}");
    assert_eq!(acknowledged(&after), vec![TriggerKind::RenewTokens]);
    assert!(after.deferred.is_empty());
}

#[test]
fn the_first_request_of_a_verb_is_acted_on_at_once() {
    let policy = policy();
    let mut seen = steady();
    // Never acted on, or acted on by a version that did not record when.
    for handled in [None, Some("1".to_owned())] {
        seen.triggers.renew_tokens = Trigger {
            requested: Some("2".into()),
            handled,
            handled_at: None,
        };
        let now = plan(&policy, &seen, at(1));
        assert_eq!(manual_refreshes(&now), 1, "{now:?}");
        assert!(now.deferred.is_empty());
    }
}

#[test]
fn a_last_action_time_in_the_future_does_not_hold_a_request_forever() {
    let policy = policy();
    let mut seen = steady();
    seen.triggers.renew_tokens = Trigger {
        requested: Some("2".into()),
        handled: Some("1".into()),
        handled_at: Some(at(100 * DAY)),
    };
    assert_eq!(manual_refreshes(&plan(&policy, &seen, at(1))), 1);
}

#[test]
fn a_patch_loop_of_every_verb_each_minute_is_acted_on_at_most_six_times_an_hour_per_verb() {
    let policy = policy();
    let mut seen = steady();
    let mut acted: Vec<(TriggerKind, i64)> = vec![];
    // A new value of every verb every minute for three hours; acknowledgements are applied as
    // the reconciler applies them (the rest of each plan is not needed to count).
    for minute in 0..180 {
        let now = minute * 60;
        for kind in TriggerKind::ALL {
            seen.triggers.get_mut(kind).requested = Some(format!("v{minute}"));
        }
        let p = plan(&policy, &seen, at(now));
        for action in &p.actions {
            if let Action::AcknowledgeTrigger { trigger, .. } = action {
                acted.push((*trigger, now));
                seen = apply(&policy, &seen, action, Outcome::Done, at(now)).unwrap();
            }
        }
        for kind in TriggerKind::ALL {
            let waiting = seen.triggers.get(kind).pending().is_some();
            assert_eq!(
                waiting,
                p.deferred.iter().any(|(k, _)| *k == kind),
                "minute {minute}: a pending {kind:?} must be reported as deferred"
            );
        }
    }
    for kind in TriggerKind::ALL {
        let times: Vec<i64> = acted
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            times.len() >= 18,
            "{kind:?} acted on only {} times: requests were dropped",
            times.len()
        );
        for (i, start) in times.iter().enumerate() {
            let in_hour = times[i..]
                .iter()
                .take_while(|t| **t < start + 3_600)
                .count();
            assert!(
                in_hour <= floors::MAX_TRIGGERED_ACTIONS_PER_HOUR as usize,
                "{kind:?}: {in_hour} actions in the hour from {start}"
            );
        }
    }
}
