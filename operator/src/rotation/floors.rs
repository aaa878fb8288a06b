//! Floors on every schedule, so that no spec can make the operator renew, rotate or call the
//! authorization server faster than the figures in docs/security.md ("Rate of work per
//! client"). The CRD refuses values below these floors at apply time (CEL rules); the planner
//! clamps again because an object stored under an older, looser schema is never re-validated.
//!
//! Contract: [`clamp`] is pure and idempotent; a clamped policy is never faster than the
//! original one. The token refresh margin is bounded where the token's lifetime is known
//! ([`super::refresh_at`]: at most half the lifetime) and the certificate's renew-before where
//! the certificate's lifetime is known (`rotation::certificate`: at most half of it). The verb
//! annotations (`tpp.dev/rotate-keys`, ...) have a floor too: a new value is acted on no sooner
//! than [`MIN_TRIGGER_INTERVAL`] after the last one of the same verb ([`trigger_deferred_until`]);
//! until then it is deferred, not dropped. No I/O.

use jiff::{SignedDuration, Timestamp};

use super::action::TriggerKind;
use super::model::{KeyPolicy, Observed, Policy, Trigger};

/// The shortest validity of a generated transport certificate (`transportCertificate.duration`).
pub const MIN_CERTIFICATE_DURATION: SignedDuration = SignedDuration::from_hours(1);

/// The shortest scheduled key rotation period (`signingKey.rotation.every`,
/// `encryptionKey.rotation.every`).
pub const MIN_ROTATION_PERIOD: SignedDuration = SignedDuration::from_hours(1);

/// The shortest `propagationDelay` and `retireAfter`. They do not set the rate (a scheduled
/// rotation starts at most once per [`MIN_ROTATION_PERIOD`]); the floor keeps a new key from
/// signing before anything could have fetched it, and an old one published for a moment.
pub const MIN_KEY_DELAY: SignedDuration = SignedDuration::from_secs(1);

/// The shortest `tokens[].refreshBefore` (CRD rule; the planner bounds it by the lifetime).
pub const MIN_REFRESH_BEFORE: SignedDuration = SignedDuration::from_secs(1);

/// Most scheduled certificate renewals per hour per client: a certificate lives at least
/// [`MIN_CERTIFICATE_DURATION`] and is renewed no earlier than half its lifetime.
pub const MAX_CERTIFICATE_RENEWALS_PER_HOUR: u32 = 2;

/// Most scheduled key generations per hour per client and key use.
pub const MAX_KEY_ROTATIONS_PER_HOUR: u32 = 1;

/// The shortest interval between two acted-on values of one verb annotation
/// (`tpp.dev/rotate-keys`, `tpp.dev/renew-certificate`, `tpp.dev/renew-tokens`): a tenant
/// patching its TppClient in a loop gets one action per verb per interval.
pub const MIN_TRIGGER_INTERVAL: SignedDuration = SignedDuration::from_mins(10);

/// Most actions per hour per client and verb annotation, from [`MIN_TRIGGER_INTERVAL`].
pub const MAX_TRIGGERED_ACTIONS_PER_HOUR: u32 = 6;

/// When a pending trigger may be acted on, if not now: [`MIN_TRIGGER_INTERVAL`] after the last
/// value of the same verb was acted on. `None` when nothing is pending, when no value was acted
/// on yet (or the time of it is unknown, as in a state written before the floor existed), and
/// when that time lies in the future (a clock set back must not hold requests forever).
pub fn trigger_deferred_until(trigger: &Trigger, now: Timestamp) -> Option<Timestamp> {
    trigger.pending()?;
    let last = trigger.handled_at.filter(|at| *at <= now)?;
    let at = last.checked_add(MIN_TRIGGER_INTERVAL).ok()?;
    (at > now).then_some(at)
}

/// Every pending trigger that must wait, with the instant it may be acted on.
pub fn deferred_triggers(seen: &Observed, now: Timestamp) -> Vec<(TriggerKind, Timestamp)> {
    TriggerKind::ALL
        .into_iter()
        .filter_map(|kind| {
            trigger_deferred_until(seen.triggers.get(kind), now).map(|at| (kind, at))
        })
        .collect()
}

/// `seen` with the `deferred` triggers held back: planned as if their value were handled.
pub fn hold_triggers(seen: &Observed, deferred: &[(TriggerKind, Timestamp)]) -> Observed {
    let mut held = seen.clone();
    for (kind, _) in deferred {
        let trigger = held.triggers.get_mut(*kind);
        trigger.requested = trigger.handled.clone();
    }
    held
}

/// The policy with every schedule raised to its floor.
pub fn clamp(policy: &Policy) -> Policy {
    let mut clamped = policy.clone();
    clamped.signing = clamp_keys(policy.signing);
    clamped.encryption = policy.encryption.map(clamp_keys);
    clamped.certificate.duration = policy.certificate.duration.max(MIN_CERTIFICATE_DURATION);
    clamped
}

fn clamp_keys(keys: KeyPolicy) -> KeyPolicy {
    KeyPolicy {
        // A non-positive period means no scheduled rotation (see `keys`); it stays that way.
        every: keys.every.map(|every| {
            if every.is_positive() {
                every.max(MIN_ROTATION_PERIOD)
            } else {
                every
            }
        }),
        propagation_delay: keys.propagation_delay.max(MIN_KEY_DELAY),
        retire_after: keys.retire_after.max(MIN_KEY_DELAY),
    }
}
