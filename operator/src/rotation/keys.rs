//! Key lifecycle planning: `Pending → Published → (propagation delay, approval) → Active →
//! Retiring → (retire delay) → removed`, for signing and encryption keys alike.
//!
//! Contract: given the persisted keys, decides generation, publication, activation,
//! retirement and removal, and the instants at which those become due. Two keys are published
//! during every switch; a scheduled rotation waits until no key is retiring, a manual one until
//! at most one is, so at most three keys of a use are ever published. A signing key replacing
//! another is activated with a self-test (`super::self_test`): after a refusal its activation
//! waits for the next one. Pure, no I/O.

use jiff::Timestamp;

use super::Draft;
use super::action::{Action, Reason};
use super::model::{KeyPolicy, KeyRecord, KeyState, KeyUse, Observed, Policy, Publication};
use super::self_test::{key_needs_self_test, waiting};
use super::time::after;

/// Plans every key action; returns whether a pending `rotate-keys` trigger is now satisfied
/// (a rotation of every enabled use is planned or already under way).
pub(super) fn plan_keys(
    policy: &Policy,
    seen: &Observed,
    now: Timestamp,
    draft: &mut Draft,
) -> bool {
    let rotate_requested = seen.triggers.rotate_keys.pending().is_some();
    let uses = [
        (KeyUse::Sig, Some(&policy.signing)),
        (KeyUse::Enc, policy.encryption.as_ref()),
    ];
    let lifecycles: Vec<(Lifecycle<'_>, Option<&KeyPolicy>)> = uses
        .iter()
        .map(|(use_, key_policy)| (Lifecycle::of(seen, *use_), *key_policy))
        .collect();

    let mut generating = false;
    let mut rotation_started = true;
    for (use_, (lifecycle, key_policy)) in uses.iter().map(|u| u.0).zip(&lifecycles) {
        if let Some(key_policy) = key_policy {
            let started =
                plan_generation(use_, key_policy, lifecycle, rotate_requested, now, draft);
            generating |= draft.generates(use_);
            rotation_started &= started;
        }
    }

    let mut bootstraps = Vec::new();
    for ((use_, _), (lifecycle, key_policy)) in uses.iter().zip(&lifecycles) {
        match key_policy {
            Some(key_policy) => {
                if let Some(bootstrap) =
                    plan_progress(*use_, key_policy, lifecycle, policy, seen, now, draft)
                {
                    bootstraps.push(bootstrap);
                }
            }
            None => plan_disabled(lifecycle, policy, now, draft),
        }
    }

    // Publish after generating (a new key joins on the next pass) and without the keys this
    // pass removes.
    let removed = draft.removed_kids();
    let kept = || {
        seen.keys
            .iter()
            .filter(|k| !removed.contains(k.kid.as_str()))
    };
    let publishing = !generating && kept().any(needs_publication);
    if publishing {
        let mut kept: Vec<&KeyRecord> = kept().collect();
        kept.sort_by(|a, b| (a.use_, a.created_at, &a.kid).cmp(&(b.use_, b.created_at, &b.kid)));
        draft.act(Action::PublishKeys {
            kids: kept.iter().map(|k| k.kid.clone()).collect(),
            reason: Reason::KeyUnpublished,
        });
    }
    for (key, retire) in bootstraps {
        if publishing || !needs_publication(key) {
            draft.act(Action::ActivateKey {
                kid: key.kid.clone(),
                retire,
                reason: Reason::Bootstrap,
                self_test: false,
            });
        }
    }
    rotate_requested && rotation_started
}

/// The keys of one use, sorted into their roles.
struct Lifecycle<'a> {
    /// The newest Active key.
    current: Option<&'a KeyRecord>,
    /// Older Active keys (a state that should not exist; they are retired).
    extra_active: Vec<&'a KeyRecord>,
    /// The new key furthest along (Published before Pending, oldest first).
    successor: Option<&'a KeyRecord>,
    /// Other new keys.
    superseded: Vec<&'a KeyRecord>,
    retiring: Vec<&'a KeyRecord>,
}

impl<'a> Lifecycle<'a> {
    fn of(seen: &'a Observed, use_: KeyUse) -> Self {
        let mut keys: Vec<&KeyRecord> = seen.keys.iter().filter(|k| k.use_ == use_).collect();
        keys.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        let in_state = |state: KeyState| -> Vec<&'a KeyRecord> {
            keys.iter().copied().filter(|k| k.state == state).collect()
        };

        let mut active = in_state(KeyState::Active);
        active.sort_by_key(|k| (k.activated_at.unwrap_or(k.created_at), k.created_at, &k.kid));
        let current = active.pop();

        let mut candidates = in_state(KeyState::Pending);
        candidates.extend(in_state(KeyState::Published));
        candidates.sort_by_key(|k| {
            let published = published_since(k);
            (published.is_none(), published, k.created_at, &k.kid)
        });
        let mut candidates = candidates.into_iter();
        let successor = candidates.next();

        Lifecycle {
            current,
            extra_active: active,
            successor,
            superseded: candidates.collect(),
            retiring: in_state(KeyState::Retiring),
        }
    }
}

/// Decides whether to generate a key of `use_`; returns whether a requested rotation is under
/// way for this use.
fn plan_generation(
    use_: KeyUse,
    key_policy: &KeyPolicy,
    lifecycle: &Lifecycle<'_>,
    rotate_requested: bool,
    now: Timestamp,
    draft: &mut Draft,
) -> bool {
    let generate = |draft: &mut Draft, reason| draft.act(Action::GenerateKey { use_, reason });
    if lifecycle.successor.is_some() {
        return true;
    }
    let Some(current) = lifecycle.current else {
        generate(draft, Reason::NoKey);
        return true;
    };
    if rotate_requested && lifecycle.retiring.len() <= 1 {
        generate(draft, Reason::ManualTrigger);
        return true;
    }
    if let Some(every) = key_policy.every.filter(|every| every.is_positive()) {
        // A scheduled rotation waits for the last switch to finish; the removal wakes us.
        let due = after(current.created_at, every);
        if lifecycle.retiring.is_empty() {
            if now >= due {
                generate(draft, Reason::RotationDue);
            } else {
                draft.wake_at(due);
            }
        }
    }
    false
}

/// Plans approval, activation, retirement and removal for an enabled use. Returns the
/// successor to activate at once (with the keys it retires) when not yet registered.
fn plan_progress<'a>(
    use_: KeyUse,
    key_policy: &KeyPolicy,
    lifecycle: &Lifecycle<'a>,
    policy: &Policy,
    seen: &Observed,
    now: Timestamp,
    draft: &mut Draft,
) -> Option<(&'a KeyRecord, Vec<String>)> {
    for key in &lifecycle.extra_active {
        draft.act(Action::RetireKey {
            kid: key.kid.clone(),
            reason: Reason::DuplicateActive,
        });
    }
    for key in &lifecycle.superseded {
        draft.act(Action::RemoveKey {
            kid: key.kid.clone(),
            reason: Reason::Superseded,
        });
    }
    for key in &lifecycle.retiring {
        plan_removal(key, key_policy.retire_after, now, draft);
    }

    let successor = lifecycle.successor?;
    let retire: Vec<String> = lifecycle.current.iter().map(|k| k.kid.clone()).collect();
    if !seen.registered {
        return Some((successor, retire));
    }
    let published_at = published_since(successor)?;
    let approved = policy.publication != Publication::ApprovalGate
        || seen.approved_kids.contains(&successor.kid);
    if !approved {
        // Approval arrives as a change to the object, which triggers a reconcile: no wake-up.
        draft.act(Action::AwaitApproval {
            kid: successor.kid.clone(),
        });
        return None;
    }
    let mut ready = after(published_at, key_policy.propagation_delay);
    let self_test =
        use_ == KeyUse::Sig && key_needs_self_test(policy, seen, lifecycle.current.is_some());
    if self_test && let Some((_, retry_at)) = waiting(policy, seen, &successor.kid, now) {
        // The AS refused the last self-test: the current key stays in use until the next one.
        ready = ready.max(retry_at);
    }
    if now >= ready {
        draft.act(Action::ActivateKey {
            kid: successor.kid.clone(),
            retire,
            reason: Reason::PropagationElapsed,
            self_test,
        });
    } else {
        draft.wake_at(ready);
    }
    None
}

/// Winds down the keys of a use the policy no longer asks for.
fn plan_disabled(lifecycle: &Lifecycle<'_>, policy: &Policy, now: Timestamp, draft: &mut Draft) {
    let reason = Reason::KeyUseDisabled;
    for key in lifecycle.successor.iter().chain(&lifecycle.superseded) {
        draft.act(Action::RemoveKey {
            kid: key.kid.clone(),
            reason,
        });
    }
    for key in lifecycle.current.iter().chain(&lifecycle.extra_active) {
        draft.act(Action::RetireKey {
            kid: key.kid.clone(),
            reason,
        });
    }
    for key in &lifecycle.retiring {
        plan_removal(key, policy.signing.retire_after, now, draft);
    }
}

fn plan_removal(
    key: &KeyRecord,
    retire_after: jiff::SignedDuration,
    now: Timestamp,
    draft: &mut Draft,
) {
    // Without a retiring instant, count from the latest instant the record knows.
    let since = key.retiring_at.unwrap_or_else(|| {
        [key.published_at, key.activated_at]
            .into_iter()
            .flatten()
            .fold(key.created_at, Timestamp::max)
    });
    let due = after(since, retire_after);
    if now >= due {
        draft.act(Action::RemoveKey {
            kid: key.kid.clone(),
            reason: Reason::RetireElapsed,
        });
    } else {
        draft.wake_at(due);
    }
}

/// When a Published key became visible; `None` for a Pending key or a record without the
/// instant (it is published again rather than trusted).
fn published_since(key: &KeyRecord) -> Option<Timestamp> {
    match key.state {
        KeyState::Pending => None,
        _ => key.published_at,
    }
}

/// Whether a key still has to be made visible.
fn needs_publication(key: &KeyRecord) -> bool {
    matches!(key.state, KeyState::Pending | KeyState::Published) && published_since(key).is_none()
}
