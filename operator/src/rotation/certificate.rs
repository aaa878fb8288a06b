//! Transport certificate renewal: small ordered checks over one input, the first that fires
//! gives the reason (as cert-manager's `policies.go`).
//!
//! Contract: a managed certificate is renewed when missing, expired, on the manual trigger, or
//! once inside its renew-before window; an unmanaged one (user-supplied) never is. Pure, no I/O.

use jiff::{SignedDuration, Timestamp};

use super::Draft;
use super::action::{Action, Reason};
use super::model::{CertPolicy, CertRecord, Observed};
use super::time::{before, fraction};

/// What the certificate checks look at.
struct Input<'a> {
    policy: &'a CertPolicy,
    certificate: Option<&'a CertRecord>,
    manual: bool,
    now: Timestamp,
}

type Check = fn(&Input<'_>) -> Option<Reason>;

/// In order: the first check that fires decides.
const CHECKS: [Check; 4] = [missing, expired, manual_trigger, inside_renew_before];

fn missing(input: &Input<'_>) -> Option<Reason> {
    input
        .certificate
        .is_none()
        .then_some(Reason::CertificateMissing)
}

fn expired(input: &Input<'_>) -> Option<Reason> {
    let cert = input.certificate?;
    (input.now >= cert.not_after).then_some(Reason::CertificateExpired)
}

fn manual_trigger(input: &Input<'_>) -> Option<Reason> {
    input.manual.then_some(Reason::ManualTrigger)
}

fn inside_renew_before(input: &Input<'_>) -> Option<Reason> {
    let cert = input.certificate?;
    (input.now >= renew_at(input.policy, cert)).then_some(Reason::InsideRenewBefore)
}

/// When a certificate enters its renew-before window. A `renew_before` outside
/// `(0, lifetime)` would renew at once, forever: a third of the lifetime is used instead; and
/// it is at most half the lifetime, so a certificate is renewed no earlier than half-way
/// through its life (docs/security.md, "Rate of work per client").
pub(super) fn renew_at(policy: &CertPolicy, cert: &CertRecord) -> Timestamp {
    let lifetime = cert
        .not_after
        .duration_since(cert.not_before)
        .max(SignedDuration::ZERO);
    let renew_before = if policy.renew_before.is_positive() && policy.renew_before < lifetime {
        policy.renew_before.min(fraction(lifetime, 2))
    } else {
        fraction(lifetime, 3)
    };
    before(cert.not_after, renew_before)
}

/// Plans the certificate; returns the renewal reason when a renewal is planned.
pub(super) fn plan_certificate(
    policy: &CertPolicy,
    seen: &Observed,
    now: Timestamp,
    draft: &mut Draft,
) -> Option<Reason> {
    if !policy.managed {
        return None;
    }
    let input = Input {
        policy,
        certificate: seen.certificate.as_ref(),
        manual: seen.triggers.renew_certificate.pending().is_some(),
        now,
    };
    let reason = CHECKS.iter().find_map(|check| check(&input));
    match (reason, input.certificate) {
        (Some(reason), _) => draft.act(Action::RenewCertificate { reason }),
        (None, Some(cert)) => draft.wake_at(renew_at(policy, cert)),
        (None, None) => {}
    }
    // Expiry is never earlier than the renew point, so it needs no wake-up of its own.
    reason
}
