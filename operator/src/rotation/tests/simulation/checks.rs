//! Invariants checked by the simulated reconciler.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::reconciler::Sim;
use crate::rotation::{
    Action, CertPolicy, CertRecord, KeyState, KeyUse, Plan, Publication,
    calls_authorization_server, plan,
};

/// The backoff probed at every instant.
const PROBE_BACKOFF: SignedDuration = SignedDuration::from_secs(120);

impl Sim<'_> {
    /// Every plan: wake-up not in the past, independent of record order, deterministic, and
    /// under backoff free of authorization-server calls.
    pub(super) fn check_plan(&self, p: &Plan) -> Result<(), TestCaseError> {
        prop_assert!(
            p.next_wakeup.is_none_or(|w| w >= self.now),
            "wake-up in the past"
        );

        let mut reordered = self.seen.clone();
        reordered.keys.reverse();
        reordered.tokens.reverse();
        prop_assert_eq!(
            p,
            &plan(self.policy(), &reordered, self.now),
            "order-dependent plan"
        );
        prop_assert_eq!(p, &plan(self.policy(), &self.seen.clone(), self.now));

        let mut backed_off = self.seen.clone();
        let until = self.now + PROBE_BACKOFF;
        backed_off.backoff_until = Some(until);
        let held = plan(self.policy(), &backed_off, self.now);
        let immediate = self.policy().publication == Publication::Immediate;
        let registered = self.seen.registered;
        let calls_as = |a: &Action| match a {
            Action::RefreshTokens { .. } | Action::Register { .. } => true,
            Action::ActivateKey { self_test, .. } => *self_test,
            Action::RenewCertificate { .. } => registered,
            Action::PublishKeys { .. } | Action::RemoveKey { .. } => registered && immediate,
            _ => false,
        };
        prop_assert!(
            !held.actions.iter().any(calls_as),
            "AS call planned under backoff: {held:?}"
        );
        for action in held.actions.iter().chain(&held.withheld) {
            prop_assert_eq!(
                calls_as(action),
                calls_authorization_server(action, self.policy(), &backed_off)
            );
        }
        prop_assert!(held.next_wakeup.is_none_or(|w| w >= self.now));
        if !held.withheld.is_empty() {
            prop_assert!(held.next_wakeup.is_some_and(|w| w <= until));
        }
        Ok(())
    }

    /// Nothing becomes due before the wake-up (due conditions only ever turn on as time
    /// passes, so probing just before it covers the whole interval), and something is due at it.
    pub(super) fn check_wake_up_is_tight(
        &self,
        wake: Option<Timestamp>,
    ) -> Result<(), TestCaseError> {
        let busy = |at: Timestamp| {
            plan(self.policy(), &self.seen, at)
                .actions
                .iter()
                .any(Action::changes_state)
        };
        match wake {
            Some(wake) => {
                let just_before = wake - SignedDuration::from_nanos(1);
                prop_assert!(!busy(just_before), "work due before the wake-up at {wake}");
                prop_assert!(busy(wake), "nothing due at the wake-up {wake}");
            }
            None => prop_assert!(!busy(self.now + SignedDuration::from_hours(24 * 365))),
        }
        Ok(())
    }

    /// Invariants that hold after every action once the client is registered.
    pub(super) fn check_state(&self) -> Result<(), TestCaseError> {
        if !self.seen.registered {
            return Ok(());
        }
        let delay = self.policy().signing.propagation_delay;
        let usable = self.seen.keys.iter().any(|k| {
            k.use_ == KeyUse::Sig
                && k.state == KeyState::Active
                && k.published_at.is_some_and(|p| {
                    self.bootstrapped.contains(&k.kid)
                        || k.activated_at
                            .is_some_and(|a| p + delay <= a && a <= self.now)
                })
        });
        prop_assert!(
            usable,
            "no usable signing key at {}: {:?}",
            self.now,
            self.seen.keys
        );
        for use_ in [KeyUse::Sig, KeyUse::Enc] {
            let published = self
                .seen
                .keys
                .iter()
                .filter(|k| k.use_ == use_ && k.state != KeyState::Pending)
                .count();
            let limit = if self.manual_rotation_requested { 3 } else { 2 };
            prop_assert!(published <= limit, "{published} {use_:?} keys published");
        }
        Ok(())
    }

    /// Invariants that hold whenever time has passed, before the reconciler acts.
    pub(super) fn check_time(&self) -> Result<(), TestCaseError> {
        for token in &self.seen.tokens {
            prop_assert!(token.expires_at > self.now, "token {} expired", token.name);
        }
        if let Some(cert) = &self.seen.certificate {
            prop_assert!(cert.not_after > self.now, "certificate expired");
        }
        Ok(())
    }
}

/// The renew point, computed independently of the planner: `notAfter - renewBefore`, or a third
/// of the lifetime when `renewBefore` is not inside it, and never earlier than half-way.
pub(super) fn renew_point(policy: &CertPolicy, cert: &CertRecord) -> Timestamp {
    let lifetime = cert.not_after.duration_since(cert.not_before);
    let before = if policy.renew_before > SignedDuration::ZERO && policy.renew_before < lifetime {
        policy.renew_before.min(lifetime / 2)
    } else {
        lifetime / 3
    };
    cert.not_after - before
}
