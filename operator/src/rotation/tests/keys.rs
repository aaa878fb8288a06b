//! Key lifecycle triggers.

use super::fixtures::*;
use crate::rotation::{
    Action, KeyPolicy, KeyState, KeyUse, Observed, Publication, Reason, TriggerKind, plan,
};

fn generate(use_: KeyUse, reason: Reason) -> Action {
    Action::GenerateKey { use_, reason }
}

#[test]
fn generates_first_key_and_replans_at_once_when_none_exists() {
    let seen = Observed::default();
    let p = plan(&policy(), &seen, at(0));
    assert_eq!(
        p.actions.first(),
        Some(&generate(KeyUse::Sig, Reason::NoKey))
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. }))
    );
    assert_eq!(p.next_wakeup, Some(at(0)));
}

#[test]
fn activates_the_first_key_at_once_before_registration() {
    let seen = Observed {
        keys: vec![sig("k1", KeyState::Pending, at(0))],
        ..Observed::default()
    };
    let p = plan(&policy(), &seen, at(0));
    let keys: Vec<&Action> = p.actions.iter().filter(|a| a.phase() <= 3).collect();
    assert_eq!(
        keys,
        [
            &Action::PublishKeys {
                kids: vec!["k1".into()],
                reason: Reason::KeyUnpublished
            },
            &Action::ActivateKey {
                kid: "k1".into(),
                retire: vec![],
                reason: Reason::Bootstrap,
                self_test: false,
            },
        ]
    );
}

#[test]
fn publishes_a_pending_key_beside_every_published_key() {
    let mut seen = steady();
    seen.keys.push(sig("k0", KeyState::Retiring, at(-10)));
    seen.keys.push(sig("k2", KeyState::Pending, at(5)));
    let p = plan(&policy(), &seen, at(5));
    assert!(p.actions.contains(&Action::PublishKeys {
        kids: vec!["k0".into(), "k1".into(), "k2".into()],
        reason: Reason::KeyUnpublished,
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ActivateKey { .. }))
    );
}

#[test]
fn activates_key_only_after_propagation_delay() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Published, at(100)));
    let ready = at(100 + 20 * 60);

    let early = plan(&policy(), &seen, at(100 + 20 * 60 - 1));
    assert!(
        !early
            .actions
            .iter()
            .any(|a| matches!(a, Action::ActivateKey { .. }))
    );
    assert_eq!(early.next_wakeup, Some(ready));

    let due = plan(&policy(), &seen, ready);
    assert!(due.actions.contains(&Action::ActivateKey {
        kid: "k2".into(),
        retire: vec!["k1".into()],
        reason: Reason::PropagationElapsed,
        self_test: false,
    }));
}

#[test]
fn starts_rotation_when_active_key_reaches_rotation_age() {
    let (policy, seen) = keys_only();

    let before = plan(&policy, &seen, at(30 * DAY - 1));
    assert!(before.actions.is_empty());
    assert_eq!(before.next_wakeup, Some(at(30 * DAY)));

    let due = plan(&policy, &seen, at(30 * DAY));
    assert_eq!(due.actions, [generate(KeyUse::Sig, Reason::RotationDue)]);
}

#[test]
fn never_rotates_without_an_interval_and_then_never_wakes_up() {
    let (mut policy, seen) = keys_only();
    policy.signing.every = None;
    let p = plan(&policy, &seen, at(400 * DAY));
    assert!(p.actions.is_empty());
    assert_eq!(p.next_wakeup, None);
}

#[test]
fn scheduled_rotation_waits_until_the_retiring_key_is_removed() {
    let (policy, mut seen) = keys_only();
    seen.keys.push(sig("k0", KeyState::Retiring, at(30 * DAY)));
    let p = plan(&policy, &seen, at(30 * DAY + 60));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { .. }))
    );
    assert_eq!(p.next_wakeup, Some(at(30 * DAY + 20 * 60)));
}

#[test]
fn removes_retiring_key_once_retire_after_has_elapsed() {
    let mut seen = steady();
    seen.keys.push(sig("k0", KeyState::Retiring, at(-60)));
    let kept = plan(&policy(), &seen, at(20 * 60 - 61));
    assert!(
        !kept
            .actions
            .iter()
            .any(|a| matches!(a, Action::RemoveKey { .. }))
    );
    let removed = plan(&policy(), &seen, at(20 * 60 - 60));
    assert!(removed.actions.contains(&Action::RemoveKey {
        kid: "k0".into(),
        reason: Reason::RetireElapsed,
    }));
}

#[test]
fn manual_rotate_trigger_is_acted_on_once() {
    let mut seen = steady();
    seen.triggers.rotate_keys.requested = Some("2026-11-26T06:00:00Z".into());
    let first = plan(&policy(), &seen, at(60));
    assert_eq!(
        first.actions,
        [
            generate(KeyUse::Sig, Reason::ManualTrigger),
            Action::AcknowledgeTrigger {
                trigger: TriggerKind::RotateKeys,
                value: "2026-11-26T06:00:00Z".into()
            }
        ]
    );

    // Crash after persisting the key, before the acknowledgement: acknowledge, no second key.
    seen.keys.push(sig("k2", KeyState::Pending, at(60)));
    let resumed = plan(&policy(), &seen, at(60));
    assert!(
        !resumed
            .actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { .. }))
    );
    assert!(
        resumed
            .actions
            .iter()
            .any(|a| matches!(a, Action::AcknowledgeTrigger { .. }))
    );

    // Once handled, the trigger no longer fires, even after the switch is over.
    seen.triggers.rotate_keys.handled = seen.triggers.rotate_keys.requested.clone();
    seen.keys = vec![
        sig("k1", KeyState::Retiring, at(0)),
        sig("k2", KeyState::Active, at(60)),
    ];
    let after = plan(&policy(), &seen, at(2 * 3_600));
    assert!(
        !after
            .actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { .. }))
    );
    assert!(
        !after
            .actions
            .iter()
            .any(|a| matches!(a, Action::AcknowledgeTrigger { .. }))
    );
}

#[test]
fn manual_rotation_waits_while_two_keys_are_retiring() {
    let mut seen = steady();
    seen.keys.push(sig("k0", KeyState::Retiring, at(-30)));
    seen.keys.push(sig("kx", KeyState::Retiring, at(-20)));
    seen.triggers.rotate_keys.requested = Some("1".into());
    let p = plan(&policy(), &seen, at(0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { .. }))
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::AcknowledgeTrigger { .. }))
    );
}

#[test]
fn approval_gate_blocks_activation_until_approved() {
    let (mut policy, mut seen) = keys_only();
    policy.publication = Publication::ApprovalGate;
    seen.keys.push(sig("k2", KeyState::Published, at(100)));
    let late = at(100 + 3_600);

    let waiting = plan(&policy, &seen, late);
    assert!(
        waiting
            .actions
            .contains(&Action::AwaitApproval { kid: "k2".into() })
    );
    assert!(
        !waiting
            .actions
            .iter()
            .any(|a| matches!(a, Action::ActivateKey { .. }))
    );
    // No busy loop: waiting for a human asks for no re-plan now.
    assert!(waiting.next_wakeup.is_none_or(|w| w > late));

    seen.approved_kids.insert("k2".into());
    let approved = plan(&policy, &seen, late);
    assert!(approved.actions.iter().any(
        |a| matches!(a, Action::ActivateKey { kid, reason: Reason::PropagationElapsed, .. } if kid == "k2")
    ));
}

#[test]
fn approval_does_not_shorten_the_propagation_delay() {
    let mut policy = policy();
    policy.publication = Publication::ApprovalGate;
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Published, at(100)));
    seen.approved_kids.insert("k2".into());
    let p = plan(&policy, &seen, at(200));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ActivateKey { .. }))
    );
    assert_eq!(p.next_wakeup, Some(at(100 + 20 * 60)));
}

#[test]
fn keeps_the_new_key_furthest_along_and_drops_the_others() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Published, at(100)));
    seen.keys.push(sig("k3", KeyState::Pending, at(50)));
    let p = plan(&policy(), &seen, at(200));
    assert!(p.actions.contains(&Action::RemoveKey {
        kid: "k3".into(),
        reason: Reason::Superseded
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. }))
    );
}

#[test]
fn retires_all_but_the_newest_of_several_active_keys() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Active, at(50)));
    let p = plan(&policy(), &seen, at(100));
    assert!(p.actions.contains(&Action::RetireKey {
        kid: "k1".into(),
        reason: Reason::DuplicateActive
    }));
}

#[test]
fn encryption_keys_follow_the_same_lifecycle() {
    let mut policy = policy();
    policy.encryption = Some(KeyPolicy {
        every: None,
        propagation_delay: mins(15),
        retire_after: mins(15),
    });
    let seen = steady();
    let p = plan(&policy, &seen, at(60));
    assert_eq!(p.actions, [generate(KeyUse::Enc, Reason::NoKey)]);

    let mut seen = steady();
    seen.keys
        .push(key("e1", KeyUse::Enc, KeyState::Published, at(60)));
    let p = plan(&policy, &seen, at(60 + 15 * 60));
    assert!(p.actions.contains(&Action::ActivateKey {
        kid: "e1".into(),
        retire: vec![],
        reason: Reason::PropagationElapsed,
        self_test: false,
    }));
}

#[test]
fn disabling_encryption_retires_then_removes_its_keys() {
    let mut seen = steady();
    seen.keys
        .push(key("e1", KeyUse::Enc, KeyState::Active, at(0)));
    seen.keys
        .push(key("e2", KeyUse::Enc, KeyState::Pending, at(5)));
    let p = plan(&policy(), &seen, at(10));
    assert!(p.actions.contains(&Action::RetireKey {
        kid: "e1".into(),
        reason: Reason::KeyUseDisabled
    }));
    assert!(p.actions.contains(&Action::RemoveKey {
        kid: "e2".into(),
        reason: Reason::KeyUseDisabled
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. }))
    );
}

#[test]
fn republishes_a_published_key_that_lost_its_publication_instant() {
    let mut seen = steady();
    let mut k2 = sig("k2", KeyState::Published, at(100));
    k2.published_at = None;
    seen.keys.push(k2);
    let p = plan(&policy(), &seen, at(10 * DAY));
    assert_eq!(reasons(&p).first(), Some(&Reason::KeyUnpublished));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ActivateKey { .. }))
    );
}

#[test]
fn a_retiring_key_without_its_retiring_instant_counts_from_its_last_known_instant() {
    let (policy, mut seen) = keys_only();
    let mut old = sig("k0", KeyState::Retiring, at(-DAY));
    old.retiring_at = None;
    old.activated_at = Some(at(100));
    seen.keys.push(old);
    let kept = plan(&policy, &seen, at(99 + 20 * 60));
    assert!(kept.actions.is_empty());
    assert_eq!(kept.next_wakeup, Some(at(100 + 20 * 60)));
    let removed = plan(&policy, &seen, at(100 + 20 * 60));
    assert_eq!(reasons(&removed), [Reason::RetireElapsed]);
}
