//! Floors on every schedule, so that no spec can make the operator renew, rotate or call the
//! authorization server faster than the figures in docs/security.md ("Rate of work per
//! client"). The CRD refuses values below these floors at apply time (CEL rules); the planner
//! clamps again because an object stored under an older, looser schema is never re-validated.
//!
//! Contract: [`clamp`] is pure and idempotent; a clamped policy is never faster than the
//! original one. The token refresh margin is bounded where the token's lifetime is known
//! ([`super::refresh_at`]: at most half the lifetime) and the certificate's renew-before where
//! the certificate's lifetime is known ([`super::certificate`]: at most half of it). No I/O.

use jiff::SignedDuration;

use super::model::{KeyPolicy, Policy};

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
