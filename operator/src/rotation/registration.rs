//! Registration planning: whether the client must be made known to the AS now, and why.
//!
//! Contract: a `Static` client is never registered by the operator; an `Answered` client
//! (`Dynamic`, `SignedRequest`) is registered once, and again only when its registration is
//! gone: an attempt whose answer was never persisted is retried at most
//! `Policy::max_unknown_attempts` times (each may have created a client at the AS), then
//! registration halts until a human asks for another attempt; a registration access token
//! refused on evidence halts too (`OnLost::Fail`) or registers anew (`OnLost::Register`), and
//! no RFC 7592 call is planned with the refused token. An `Onboarded` client (`HubOnboarding`)
//! is onboarded whenever the hub has not seen the current certificate. A registration access
//! token someone else wrote into `<name>-registration` halts at once
//! (`RegistrationAccessTokenOverwritten`): no RFC 7592 call carries it and nothing is
//! registered in its place, while tokens keep coming for the client id. Registration carries
//! an active signing key and a certificate, both persisted first: it waits for them, and for any
//! key or certificate the same plan generates. While a registration is due no token is planned.
//! Pure, no I/O.

use super::Draft;
use super::action::{Action, Reason};
use super::model::{KeyState, KeyUse, Observed, OnLost, Policy, RegistrationKind};

/// Why the client must be (re-)registered, whether or not it can be yet; `None` when the AS
/// knows the client with what it has now.
pub fn registration_due(policy: &Policy, seen: &Observed) -> Option<Reason> {
    match policy.registration {
        RegistrationKind::Static => None,
        RegistrationKind::Answered if seen.registered => {
            (seen.registration_access_token_lost).then_some(Reason::RegistrationAccessTokenLost)
        }
        RegistrationKind::Answered if seen.registration_forgotten => {
            Some(Reason::RegistrationSecretLost)
        }
        RegistrationKind::Answered => Some(if seen.registration_unanswered {
            Reason::RegistrationUnanswered
        } else {
            Reason::NotRegistered
        }),
        RegistrationKind::Onboarded => {
            let current = seen.certificate.as_ref().map(|c| c.x5t_s256.as_str());
            (current != seen.onboarded_x5t_s256.as_deref()).then_some(
                match seen.onboarded_x5t_s256 {
                    None => Reason::NotRegistered,
                    Some(_) => Reason::CertificateChanged,
                },
            )
        }
    }
}

/// Why registration must wait for a human, if it must: more attempts of unknown outcome than
/// the policy retries (and no retry asked for), or a refused registration access token with
/// [`OnLost::Fail`].
pub fn registration_halted(policy: &Policy, seen: &Observed) -> Option<Reason> {
    if access_token_overwritten(policy, seen) {
        return Some(Reason::RegistrationAccessTokenOverwritten);
    }
    match registration_due(policy, seen)? {
        Reason::RegistrationUnanswered
            if seen.registration_unknown_attempts > policy.max_unknown_attempts
                && !seen.registration_retry_requested =>
        {
            Some(Reason::RegistrationOutcomeUnknown)
        }
        Reason::RegistrationAccessTokenLost if policy.on_lost == OnLost::Fail => {
            Some(Reason::RegistrationAccessTokenLost)
        }
        // The answer that held the client id and its registration access token is gone: never
        // a silent new registration (the old client would stay at the AS, unmanaged).
        Reason::RegistrationSecretLost
            if policy.on_lost == OnLost::Fail && !seen.registration_retry_requested =>
        {
            Some(Reason::RegistrationSecretLost)
        }
        _ => None,
    }
}

/// Whether the registration access token of an answered, registered client is not the one the
/// operator received: it outranks every other registration decision (a refused token with
/// `onLost: Register` included), since nothing may be done with, or instead of, a token whose
/// origin is unknown.
pub fn access_token_overwritten(policy: &Policy, seen: &Observed) -> bool {
    policy.registration == RegistrationKind::Answered
        && seen.registered
        && seen.registration_access_token_foreign
}

/// Whether what registration carries is in place: an active signing key and a certificate.
pub fn registration_ready(seen: &Observed) -> bool {
    seen.certificate.is_some()
        && seen
            .keys
            .iter()
            .any(|k| k.use_ == KeyUse::Sig && k.state == KeyState::Active)
}

/// Plans registration after the key and certificate checks; returns whether the client is
/// (or, after this plan's certificate renewal, will be) waiting for a registration, so that
/// no token is planned before it.
pub(super) fn plan_registration(policy: &Policy, seen: &Observed, draft: &mut Draft) -> bool {
    let renewing = draft
        .actions
        .iter()
        .any(|a| matches!(a, Action::RenewCertificate { .. }));
    if access_token_overwritten(policy, seen) {
        // Reported at once; the client id still works for tokens.
        draft.act(Action::HaltRegistration {
            reason: Reason::RegistrationAccessTokenOverwritten,
        });
        return false;
    }
    let Some(reason) = registration_due(policy, seen) else {
        // A hub sees the new certificate before any token bound to it is requested.
        return renewing && policy.registration == RegistrationKind::Onboarded;
    };
    if let Some(halt) = registration_halted(policy, seen) {
        draft.act(Action::HaltRegistration { reason: halt });
        // A client whose token was refused still has its client id: its tokens stay fresh.
        return halt != Reason::RegistrationAccessTokenLost;
    }
    let generating = renewing
        || draft
            .actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { .. }));
    if registration_ready(seen) && !generating {
        draft.act(Action::Register { reason });
    }
    true
}
