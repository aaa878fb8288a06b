//! Self-test before a switch: before a new signing key or a new transport certificate becomes
//! the material tokens are minted with, one token is minted with it. When the AS refuses that
//! token the switch waits, the old material stays in use (tokens keep being refreshed with it),
//! and the next self-test comes after the same backoff as any other failure
//! ([`super::retry_delay`], 2 s doubling to a minute, with a jitter derived from the client's
//! seed so the plan stays a pure function). docs/reliability.md, "Self-test before a switch".
//!
//! Contract: pure, no I/O; the refusals are part of [`Observed`].

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::model::{KeyState, Observed, Policy, SelfTestRefusal};
use super::time::after;

/// Whether activating a new signing key needs a self-test: tokens are minted with an
/// assertion it signs (`private_key_jwt`), some are configured, the client is registered and
/// another key is in use now (the first key has nothing to fall back to).
pub(super) fn key_needs_self_test(policy: &Policy, seen: &Observed, has_current: bool) -> bool {
    seen.registered && seen.tokens_need_signing_key && !policy.tokens.is_empty() && has_current
}

/// When material whose self-test the AS refused may be tested again.
pub fn next_self_test(refusal: &SelfTestRefusal, jitter_seed: u64, material: &str) -> Timestamp {
    let delay = super::retry_delay(
        refusal.attempts.max(1),
        true,
        None,
        jitter(jitter_seed, material, refusal.attempts),
    );
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::MAX);
    after(refusal.at, delay)
}

/// The refusal on record for `material`, when its next self-test is not due yet at `now`.
pub(super) fn waiting<'a>(
    policy: &Policy,
    seen: &'a Observed,
    material: &str,
    now: Timestamp,
) -> Option<(&'a SelfTestRefusal, Timestamp)> {
    let refusal = seen.self_test_refusals.get(material)?;
    let at = next_self_test(refusal, policy.jitter_seed, material);
    (now < at).then_some((refusal, at))
}

/// The refusals worth keeping in `next`: those of signing keys not active yet and of the
/// current certificate while tokens are bound to another one.
pub(super) fn prune(next: &mut Observed) {
    let current = next.certificate.as_ref().map(|c| c.x5t_s256.clone());
    let tokens_bound_elsewhere = next
        .tokens
        .first()
        .is_some_and(|t| Some(&t.cert_x5t_s256) != current.as_ref());
    let waiting_keys: Vec<String> = next
        .keys
        .iter()
        .filter(|k| matches!(k.state, KeyState::Pending | KeyState::Published))
        .map(|k| k.kid.clone())
        .collect();
    next.self_test_refusals.retain(|material, _| {
        waiting_keys.contains(material)
            || (tokens_bound_elsewhere && Some(material) == current.as_ref())
    });
}

/// A deterministic factor in `[0.8, 1.2)` from (seed, material, attempts).
fn jitter(seed: u64, material: &str, attempts: u32) -> f64 {
    let mut hash = Sha256::new();
    hash.update(seed.to_be_bytes());
    hash.update(material.as_bytes());
    hash.update(attempts.to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    0.8 + 0.4 * f64::from(u32::from_be_bytes(first)) / (f64::from(u32::MAX) + 1.0)
}
