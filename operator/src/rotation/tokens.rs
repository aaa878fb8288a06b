//! Access token refresh: ordered checks per token, the first that fires gives the reason, and a
//! deterministic jittered refresh point.
//!
//! Contract: a token is refreshed when missing, bound to a certificate other than the current
//! one (or the one being issued), expired, on the manual trigger, or at its refresh point:
//! `expiresAt - refreshBefore - jitter`, where `refreshBefore` defaults to a third of the
//! lifetime and is at most half of it (so a token is refreshed no earlier than 2/5 of its
//! lifetime after issuance: docs/security.md, "Rate of work per client"), the jitter is at least a small lead (a hundredth of the lifetime, at most 1 s) and
//! below a tenth of the lifetime, derived from (jitter seed, token
//! name, issuedAt), and the point is never later than `expiresAt -` [`TOKEN_SAFETY_FLOOR`]
//! (capped at a tenth of the lifetime) nor earlier than a tenth of the lifetime after
//! issuance. Nothing is planned before registration (or while the hub has yet to see the
//! current certificate) or without a certificate to bind to. Every token due comes in one
//! [`Action::RefreshTokens`]: one credentials write. Tokens move to a new certificate together
//! ([`TokenCertificate::Switch`], the certificate's self-test); after the AS refused that, they
//! are refreshed with the certificate they are bound to ([`TokenCertificate::Previous`]) until
//! the next self-test is due. A token whose policy says `revoke_replaced` is marked for
//! revocation of the token it replaces ([`TokenDue::revoke_replaced`]) while that one is still
//! valid at `now`; the reconciler revokes it after the credentials write. Pure, no I/O.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::Draft;
use super::action::{Action, Reason, TokenCertificate, TokenDue};
use super::model::{KeyState, KeyUse, Observed, Policy, TokenPolicy, TokenRecord};
use super::self_test;
use super::time::{after, before, fraction};

/// The latest a refresh point may be before expiry (for lifetimes of at least ten times this).
pub const TOKEN_SAFETY_FLOOR: SignedDuration = SignedDuration::from_secs(30);

/// What the token checks look at.
struct Input<'a> {
    record: Option<&'a TokenRecord>,
    /// The thumbprint tokens must be bound to; `None` while a new certificate is being issued.
    bound_to: Option<&'a str>,
    manual: bool,
    refresh_at: Option<Timestamp>,
    now: Timestamp,
}

type Check = fn(&Input<'_>) -> Option<Reason>;

/// In order: the first check that fires decides.
const CHECKS: [Check; 5] = [
    missing,
    certificate_changed,
    expired,
    manual_trigger,
    refresh_due,
];

fn missing(input: &Input<'_>) -> Option<Reason> {
    input.record.is_none().then_some(Reason::TokenMissing)
}

fn certificate_changed(input: &Input<'_>) -> Option<Reason> {
    let record = input.record?;
    (input.bound_to != Some(record.cert_x5t_s256.as_str())).then_some(Reason::CertificateChanged)
}

fn expired(input: &Input<'_>) -> Option<Reason> {
    let record = input.record?;
    (input.now >= record.expires_at).then_some(Reason::TokenExpired)
}

fn manual_trigger(input: &Input<'_>) -> Option<Reason> {
    input.manual.then_some(Reason::ManualTrigger)
}

fn refresh_due(input: &Input<'_>) -> Option<Reason> {
    (input.now >= input.refresh_at?).then_some(Reason::RefreshDue)
}

/// Plans every token; returns whether a pending `renew-tokens` trigger is satisfied by it.
/// `renewing_certificate` says a new certificate is planned: every token follows it.
/// `registering` says the client is not (or no longer) known to the AS with what it has now.
pub(super) fn plan_tokens(
    policy: &Policy,
    seen: &Observed,
    now: Timestamp,
    renewing_certificate: bool,
    registering: bool,
    draft: &mut Draft,
) -> bool {
    if !seen.registered || registering {
        return false;
    }
    let signing_key_active = seen
        .keys
        .iter()
        .any(|k| k.use_ == KeyUse::Sig && k.state == KeyState::Active);
    if seen.tokens_need_signing_key && !signing_key_active {
        return false;
    }
    // Tokens move to a new certificate all together (the switch is its self-test); after a
    // refusal they stay with the certificate they are bound to until the next self-test.
    let held = seen.tokens.first().map(|t| t.cert_x5t_s256.as_str());
    let (bound_to, certificate) = if renewing_certificate {
        let certificate = match held {
            Some(_) => TokenCertificate::Switch,
            None => TokenCertificate::Current,
        };
        (None, certificate)
    } else {
        let Some(current) = seen.certificate.as_ref().map(|c| c.x5t_s256.as_str()) else {
            return false;
        };
        match held.filter(|held| *held != current) {
            None => (Some(current), TokenCertificate::Current),
            Some(held) => match self_test::waiting(policy, seen, current, now) {
                Some((_, retry_at)) => {
                    draft.wake_at(retry_at);
                    (Some(held), TokenCertificate::Previous)
                }
                None => (Some(current), TokenCertificate::Switch),
            },
        }
    };
    let manual = seen.triggers.renew_tokens.pending().is_some();
    let mut planned = BTreeSet::new();
    let mut due = Vec::new();
    for token in &policy.tokens {
        if !planned.insert(token.name.as_str()) {
            continue;
        }
        let record = seen
            .tokens
            .iter()
            .filter(|r| r.name == token.name)
            .max_by(|a, b| (a.issued_at, a.expires_at).cmp(&(b.issued_at, b.expires_at)));
        let refresh_at = record.map(|r| refresh_at(token, r, policy.jitter_seed));
        let input = Input {
            record,
            bound_to,
            manual,
            refresh_at,
            now,
        };
        match CHECKS.iter().find_map(|check| check(&input)) {
            Some(reason) => due.push(TokenDue {
                name: token.name.clone(),
                reason,
                revoke_replaced: token.revoke_replaced
                    && record.is_some_and(|r| now < r.expires_at),
            }),
            None => {
                if let Some(at) = refresh_at {
                    draft.wake_at(at);
                }
            }
        }
    }
    if !due.is_empty() {
        draft.act(Action::RefreshTokens {
            tokens: due,
            certificate,
        });
    }
    manual
}

/// Most a refresh starts ahead of its latest point to absorb its own latency.
const REFRESH_LEAD: SignedDuration = SignedDuration::from_secs(1);

/// The instant at which `record` is due for refresh under `token`'s policy.
pub fn refresh_at(token: &TokenPolicy, record: &TokenRecord, jitter_seed: u64) -> Timestamp {
    let lifetime = record.expires_at.duration_since(record.issued_at);
    if !lifetime.is_positive() {
        return record.expires_at;
    }
    let refresh_before = token
        .refresh_before
        .filter(|d| d.is_positive() && *d < lifetime)
        .unwrap_or_else(|| fraction(lifetime, 3))
        .min(fraction(lifetime, 2));
    let tenth = fraction(lifetime, 10);
    // The jitter starts at a small lead (a hundredth of the lifetime, at most 1 s), so the new
    // token is in the Secret by the latest refresh point, not one request's latency after it.
    let lead = fraction(lifetime, 100).min(REFRESH_LEAD);
    let jitter = lead.saturating_add(jitter(
        tenth.saturating_sub(lead),
        jitter_seed,
        &token.name,
        record.issued_at,
    ));
    let floor = TOKEN_SAFETY_FLOOR.min(tenth);
    let point = before(record.expires_at, refresh_before.saturating_add(jitter))
        .min(before(record.expires_at, floor));
    point.max(after(record.issued_at, tenth))
}

/// A deterministic duration in `[0, bound)` from (seed, name, issued_at).
fn jitter(bound: SignedDuration, seed: u64, name: &str, issued_at: Timestamp) -> SignedDuration {
    let mut hash = Sha256::new();
    hash.update(seed.to_be_bytes());
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(issued_at.as_nanosecond().to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    let unit = i128::from(u32::from_be_bytes(first));
    // bound < 2^94 ns for any SignedDuration, so the product stays below 2^126.
    let nanos = (bound.as_nanos().max(0) * unit) >> 32;
    SignedDuration::from_nanos_i128(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn jitter_stays_below_its_bound_and_depends_on_every_input() {
        let bound = SignedDuration::from_secs(60);
        let base = jitter(bound, 1, "payments", at(1_000));
        assert!(base >= SignedDuration::ZERO && base < bound);
        assert_eq!(base, jitter(bound, 1, "payments", at(1_000)));
        let variants = [
            jitter(bound, 2, "payments", at(1_000)),
            jitter(bound, 1, "accounts", at(1_000)),
            jitter(bound, 1, "payments", at(1_001)),
        ];
        assert!(variants.iter().any(|v| *v != base));
        assert!(
            variants
                .iter()
                .all(|v| *v >= SignedDuration::ZERO && *v < bound)
        );
    }

    #[test]
    fn a_refresh_is_due_a_lead_before_the_latest_point_and_within_a_tenth_of_the_lifetime() {
        let token = TokenPolicy {
            name: "accounts".into(),
            refresh_before: None,
            revoke_replaced: false,
        };
        for (lifetime, lead) in [(30, 300), (600, 1_000)] {
            for seed in 0..200u64 {
                let record = TokenRecord {
                    name: "accounts".into(),
                    issued_at: at(1_000),
                    expires_at: at(1_000 + lifetime),
                    cert_x5t_s256: "x".into(),
                };
                let point = refresh_at(&token, &record, seed);
                let latest = at(1_000 + lifetime)
                    .checked_sub(SignedDuration::from_secs(lifetime / 3))
                    .unwrap();
                let earliest = latest
                    .checked_sub(SignedDuration::from_secs(lifetime / 10))
                    .unwrap();
                assert!(
                    point
                        <= latest
                            .checked_sub(SignedDuration::from_millis(lead))
                            .unwrap(),
                    "seed {seed}: {point} is within the lead of {latest}"
                );
                assert!(point >= earliest, "seed {seed}: {point} before {earliest}");
            }
        }
    }

    #[test]
    fn jitter_of_the_largest_duration_does_not_overflow() {
        let j = jitter(SignedDuration::MAX, u64::MAX, "t", Timestamp::MAX);
        assert!(j >= SignedDuration::ZERO && j <= SignedDuration::MAX);
    }
}
