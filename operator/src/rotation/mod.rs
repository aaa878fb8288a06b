//! The rotation planner: given the policy, the observed state and the current instant, what to
//! do now, in which order, and when to look again.
//!
//! Contract: [`plan`] is a pure function (no I/O, no async, no system time: `now` is an
//! argument, see [`crate::clock`]); the same input gives the same plan. Actions come ordered so
//! that a reconciler executing them one at a time is always safe (persist before publish
//! before activate before remove, certificate before the tokens bound to it, acknowledgements
//! last). No action that calls the authorization server is planned before
//! `Observed::backoff_until`. Keys (`keys`), certificate (`certificate`), registration
//! (`registration`) and tokens (`tokens`) are decided by small ordered checks, each returning a
//! [`Reason`]; the retry delay after a failure by [`retry_delay`]. What each action does to the
//! state is [`apply()`], shared by the reconciler and the simulator. Every schedule has a floor
//! ([`floors`]). See docs/architecture.md.

mod action;
mod apply;
mod backoff;
mod certificate;
mod credentials;
pub mod floors;
mod keys;
mod model;
mod registration;
mod self_test;
mod time;
mod tokens;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use jiff::Timestamp;

pub use action::{Action, Plan, Reason, TokenCertificate, TokenDue, TriggerKind};
pub use apply::{ApplyError, Outcome, apply};
pub use backoff::{MAX_BACKOFF, PERMANENT_PAUSE, retry_delay, within_token_life};
pub use credentials::credentials_certificate;
pub use model::{
    CertPolicy, CertRecord, KeyPolicy, KeyRecord, KeyState, KeyUse, Observed, OnLost, Policy,
    Publication, RegistrationKind, SelfTestRefusal, TokenPolicy, TokenRecord, Trigger, Triggers,
};
pub use registration::{
    access_token_overwritten, registration_due, registration_halted, registration_ready,
};
pub use self_test::next_self_test;
pub use tokens::{TOKEN_SAFETY_FLOOR, refresh_at};

/// Decides what to do at `now`.
/// Every schedule is first raised to its floor ([`floors::clamp`]).
pub fn plan(policy: &Policy, seen: &Observed, now: Timestamp) -> Plan {
    let clamped = floors::clamp(policy);
    let policy = &clamped;
    // A verb annotation acted on less than the floor ago waits: planned as if handled.
    let deferred = floors::deferred_triggers(seen, now);
    let held;
    let seen = if deferred.is_empty() {
        seen
    } else {
        held = floors::hold_triggers(seen, &deferred);
        &held
    };
    let mut draft = Draft::default();
    let rotation_under_way = keys::plan_keys(policy, seen, now, &mut draft);
    let renewal = certificate::plan_certificate(&policy.certificate, seen, now, &mut draft);
    let registering = registration::plan_registration(policy, seen, &mut draft);
    if seen.registration_access_token_lost || registration::access_token_overwritten(policy, seen) {
        // No RFC 7592 call with a refused token, nor with one someone else wrote: a new
        // registration carries the keys, or nothing publishes them until a human acts.
        draft.actions.retain(|a| {
            !(matches!(a, Action::PublishKeys { .. } | Action::RemoveKey { .. })
                && calls_authorization_server(a, policy, seen))
        });
    }
    let tokens_follow_trigger = tokens::plan_tokens(
        policy,
        seen,
        now,
        renewal.is_some(),
        registering,
        &mut draft,
    );

    let backoff = seen.backoff_until.filter(|until| *until > now);
    let (mut actions, withheld): (Vec<Action>, Vec<Action>) = draft
        .actions
        .into_iter()
        .partition(|action| backoff.is_none() || !calls_authorization_server(action, policy, seen));

    // A trigger is acknowledged only together with the work it asked for.
    let certificate_renewed = actions
        .iter()
        .any(|a| matches!(a, Action::RenewCertificate { .. }));
    let tokens_withheld = withheld
        .iter()
        .any(|a| matches!(a, Action::RefreshTokens { .. }));
    for (trigger, satisfied) in [
        (TriggerKind::RotateKeys, rotation_under_way),
        (TriggerKind::RenewCertificate, certificate_renewed),
        (
            TriggerKind::RenewTokens,
            tokens_follow_trigger && !tokens_withheld,
        ),
    ] {
        if let (true, Some(value)) = (satisfied, seen.triggers.get(trigger).pending()) {
            actions.push(Action::AcknowledgeTrigger {
                trigger,
                value: value.to_owned(),
            });
        }
    }
    actions.sort_by_key(Action::phase);

    let follow_up = actions.iter().any(Action::changes_state).then_some(now);
    let after_backoff = backoff.filter(|_| !withheld.is_empty());
    let next_wakeup = draft
        .wakeups
        .into_iter()
        .filter(|at| *at > now)
        .chain(follow_up)
        .chain(after_backoff)
        .chain(deferred.iter().map(|(_, at)| *at))
        .min();
    Plan {
        actions,
        withheld,
        next_wakeup,
        deferred,
    }
}

/// Whether executing `action` calls the authorization server (and so must respect backoff).
pub fn calls_authorization_server(action: &Action, policy: &Policy, seen: &Observed) -> bool {
    match action {
        Action::PublishKeys { .. } | Action::RemoveKey { .. } => {
            seen.registered && policy.publication == Publication::Immediate
        }
        Action::RenewCertificate { .. } => seen.registered,
        Action::Register { .. } | Action::RefreshTokens { .. } => true,
        Action::ActivateKey { self_test, .. } => *self_test,
        Action::GenerateKey { .. }
        | Action::AwaitApproval { .. }
        | Action::HaltRegistration { .. }
        | Action::RetireKey { .. }
        | Action::AcknowledgeTrigger { .. } => false,
    }
}

/// Actions and wake-up instants gathered by the checks, before ordering and backoff.
#[derive(Debug, Default)]
struct Draft {
    actions: Vec<Action>,
    wakeups: Vec<Timestamp>,
}

impl Draft {
    fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    fn wake_at(&mut self, at: Timestamp) {
        self.wakeups.push(at);
    }

    fn generates(&self, use_: KeyUse) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::GenerateKey { use_: u, .. } if *u == use_))
    }

    fn removed_kids(&self) -> BTreeSet<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::RemoveKey { kid, .. } => Some(kid.clone()),
                _ => None,
            })
            .collect()
    }
}
