//! The simulated reconciler: plans, executes each action on the observed state (asserting the
//! per-action invariants as it goes), may crash between actions, and repeats until idle.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::checks::renew_point;
use super::scenario::Scenario;
use crate::rotation::tests::fixtures::at;
use crate::rotation::{
    Action, CertRecord, KeyPolicy, KeyRecord, KeyState, KeyUse, Observed, Outcome, Policy,
    Publication, Reason, TokenDue, TokenRecord, apply, plan,
};

/// Plans at one instant before it must have settled.
const MAX_PASSES: usize = 12;
/// Passes at one instant in which the simulated reconciler may crash.
const CRASHING_PASSES: usize = 4;

/// The reconciler's memory: the observed state plus what the checks need to remember.
pub(super) struct Sim<'a> {
    pub(super) sc: &'a Scenario,
    pub(super) seen: Observed,
    pub(super) now: Timestamp,
    pub(super) next_id: u64,
    /// Allowed lateness of a certificate renewal.
    pub(super) slack: SignedDuration,
    pub(super) bootstrapped: BTreeSet<String>,
    pub(super) manual_rotation_requested: bool,
    pub(super) manual_keys: BTreeSet<(String, KeyUse)>,
    /// Manual certificate renewals done, with the crash count when last done.
    pub(super) manual_certificates: BTreeMap<String, usize>,
    pub(super) executed: usize,
    pub(super) crashed: usize,
    /// Registrations carried out (onboardings included).
    pub(super) registrations: usize,
    /// Every action carried out, with the instant.
    pub(super) log: Vec<(Timestamp, Action)>,
}

impl<'a> Sim<'a> {
    pub(super) fn new(sc: &'a Scenario, slack: SignedDuration) -> Self {
        Sim {
            sc,
            seen: Observed::default(),
            now: at(0),
            next_id: 0,
            slack,
            bootstrapped: BTreeSet::new(),
            manual_rotation_requested: false,
            manual_keys: BTreeSet::new(),
            manual_certificates: BTreeMap::new(),
            executed: 0,
            crashed: 0,
            registrations: 0,
            log: Vec::new(),
        }
    }

    pub(super) fn policy(&self) -> &'a Policy {
        &self.sc.policy
    }

    pub(super) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    pub(super) fn key_policy(&self, use_: KeyUse) -> Option<&'a KeyPolicy> {
        match use_ {
            KeyUse::Sig => Some(&self.policy().signing),
            KeyUse::Enc => self.policy().encryption.as_ref(),
        }
    }

    /// The human approving every published kid `approval_lag` after publication.
    pub(super) fn approve(&mut self) {
        if self.policy().publication != Publication::ApprovalGate {
            return;
        }
        let lag = self.sc.approval_lag;
        let now = self.now;
        let due: Vec<String> = self
            .seen
            .keys
            .iter()
            .filter(|k| k.published_at.is_some_and(|p| p + lag <= now))
            .map(|k| k.kid.clone())
            .collect();
        self.seen.approved_kids.extend(due);
    }

    /// The next instant the human approves something.
    pub(super) fn next_approval(&self) -> Option<Timestamp> {
        if self.policy().publication != Publication::ApprovalGate {
            return None;
        }
        self.seen
            .keys
            .iter()
            .filter(|k| !self.seen.approved_kids.contains(&k.kid))
            .filter_map(|k| k.published_at.map(|p| p + self.sc.approval_lag))
            .filter(|t| *t > self.now)
            .min()
    }

    /// Plans and executes until the plan is idle; returns its wake-up.
    pub(super) fn settle(&mut self) -> Result<Option<Timestamp>, TestCaseError> {
        for pass in 0..MAX_PASSES {
            self.approve();
            let p = plan(self.policy(), &self.seen, self.now);
            self.check_plan(&p)?;
            if !p.actions.iter().any(Action::changes_state) {
                prop_assert!(
                    p.next_wakeup.is_none_or(|w| w > self.now),
                    "an idle plan asks to be re-run at once: {p:?}"
                );
                self.check_wake_up_is_tight(p.next_wakeup)?;
                if let Some(cert) = self
                    .seen
                    .certificate
                    .as_ref()
                    .filter(|_| self.seen.registered)
                {
                    for token in &self.seen.tokens {
                        prop_assert_eq!(
                            &token.cert_x5t_s256,
                            &cert.x5t_s256,
                            "token on an old cert"
                        );
                    }
                }
                return Ok(p.next_wakeup);
            }
            for action in p.actions {
                self.apply(&action)?;
                self.check_state()?;
                let crashes = &self.sc.crashes;
                self.executed += 1;
                let crash = crashes.get(self.executed % crashes.len().max(1)) == Some(&true);
                // A reconciler that dies on every attempt never gets anywhere: only early passes.
                if crash && pass < CRASHING_PASSES {
                    self.crashed += 1;
                    break;
                }
            }
        }
        Err(TestCaseError::fail(format!(
            "no idle plan after {MAX_PASSES} passes at {}: {:?}",
            self.now, self.seen
        )))
    }

    pub(super) fn key_mut(&mut self, kid: &str) -> Result<&mut KeyRecord, TestCaseError> {
        self.seen
            .keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| TestCaseError::fail(format!("action names unknown kid {kid}")))
    }

    /// Checks the per-action invariants, then carries the action out with the operator's own
    /// state transition ([`crate::rotation::apply`]).
    pub(super) fn apply(&mut self, action: &Action) -> Result<(), TestCaseError> {
        let now = self.now;
        self.log.push((now, action.clone()));
        let outcome = match action {
            Action::GenerateKey { use_, reason } => {
                if *reason == Reason::ManualTrigger {
                    let value = self.seen.triggers.rotate_keys.pending().unwrap_or_default();
                    prop_assert!(
                        self.manual_keys.insert((value.to_owned(), *use_)),
                        "manual rotation {value} acted on twice"
                    );
                }
                Outcome::KeyGenerated { kid: self.id("k") }
            }
            Action::PublishKeys { kids, .. } => {
                for key in &self.seen.keys {
                    if key.state == KeyState::Active {
                        prop_assert!(
                            kids.contains(&key.kid),
                            "active key {} unpublished",
                            key.kid
                        );
                    }
                }
                Outcome::Done
            }
            Action::AwaitApproval { .. } => Outcome::Done,
            Action::ActivateKey { kid, retire, .. } => {
                let registered = self.seen.registered;
                let gated = self.policy().publication == Publication::ApprovalGate;
                let approved = self.seen.approved_kids.contains(kid);
                let key = self.key_mut(kid)?.clone();
                let delay = self
                    .key_policy(key.use_)
                    .map_or(SignedDuration::ZERO, |p| p.propagation_delay);
                prop_assert_eq!(
                    key.state,
                    KeyState::Published,
                    "{} activated unpublished",
                    kid
                );
                if registered {
                    prop_assert!(
                        key.published_at.is_some_and(|p| p + delay <= now),
                        "{kid} activated before its propagation delay"
                    );
                    prop_assert!(!gated || approved, "{kid} activated without approval");
                } else {
                    self.bootstrapped.insert(kid.clone());
                }
                for old in retire {
                    prop_assert_eq!(self.key_mut(old)?.state, KeyState::Active);
                }
                Outcome::Done
            }
            Action::RetireKey { .. } => Outcome::Done,
            Action::RemoveKey { kid, .. } => {
                prop_assert!(
                    self.key_mut(kid)?.state != KeyState::Active,
                    "active {kid} removed"
                );
                Outcome::Done
            }
            Action::Register { .. } => {
                prop_assert!(
                    crate::rotation::registration_ready(&self.seen),
                    "registered without an active signing key and a certificate"
                );
                self.registrations += 1;
                Outcome::Done
            }
            Action::RenewCertificate { reason } => self.renew_certificate(*reason)?,
            Action::RefreshTokens { tokens, .. } => self.refresh_tokens(tokens)?,
            Action::AcknowledgeTrigger { .. } => Outcome::Done,
            Action::HaltRegistration { reason } => {
                return Err(TestCaseError::fail(format!(
                    "registration halted ({reason:?}) without a lost answer or a refused token"
                )));
            }
        };
        self.seen = apply(self.policy(), &self.seen, action, outcome, now)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        Ok(())
    }

    pub(super) fn renew_certificate(&mut self, reason: Reason) -> Result<Outcome, TestCaseError> {
        let now = self.now;
        if reason == Reason::ManualTrigger {
            let value = self
                .seen
                .triggers
                .renew_certificate
                .pending()
                .unwrap_or_default();
            // At least once: only a crash before the acknowledgement may repeat it.
            let previous = self
                .manual_certificates
                .insert(value.to_owned(), self.crashed);
            prop_assert!(
                previous.is_none_or(|crashes| crashes < self.crashed),
                "manual renewal {value} repeated without a crash"
            );
        }
        if let Some(old) = &self.seen.certificate {
            let latest = renew_point(&self.policy().certificate, old) + self.slack;
            prop_assert!(
                now <= latest,
                "certificate renewed at {now}, later than {latest}"
            );
            prop_assert!(now < old.not_after, "certificate expired before renewal");
        }
        let x5t_s256 = self.id("c");
        Ok(Outcome::CertificateIssued(CertRecord {
            not_before: now,
            // The reconciler issues for the clamped duration (reconcile::policy).
            not_after: now
                + crate::rotation::floors::clamp(self.policy())
                    .certificate
                    .duration,
            x5t_s256,
        }))
    }

    pub(super) fn refresh_tokens(&mut self, due: &[TokenDue]) -> Result<Outcome, TestCaseError> {
        let now = self.now;
        prop_assert!(self.seen.registered, "token minted before registration");
        prop_assert!(
            crate::rotation::registration_due(self.policy(), &self.seen).is_none(),
            "token minted while the registration is due"
        );
        let Some(cert) = &self.seen.certificate else {
            return Err(TestCaseError::fail("token minted without a certificate"));
        };
        let mut minted = Vec::new();
        for TokenDue { name, .. } in due {
            if let Some(old) = self.seen.tokens.iter().find(|t| &t.name == name) {
                prop_assert!(
                    now < old.expires_at,
                    "token {name} refreshed only after expiry"
                );
            }
            minted.push(TokenRecord {
                name: name.clone(),
                issued_at: now,
                expires_at: now + self.sc.token_lifetime,
                cert_x5t_s256: cert.x5t_s256.clone(),
            });
        }
        Ok(Outcome::TokensMinted(minted))
    }
}
