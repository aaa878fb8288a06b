//! Property tests: the planner drives a simulated reconciler that applies each action to the
//! observed state, while time advances by arbitrary steps (bounded loops, bounded time).
//!
//! Two drivers: `arbitrary_steps` reconciles at arbitrary instants (steps under a minute,
//! whatever the planner asked for), `wake_up_driven` sleeps until the planner's wake-up (or an
//! arbitrary earlier event). Invariants checked after every single action: a published,
//! propagated signing key is always active; nothing is activated before its propagation delay
//! (the bootstrap key excepted) or approval; at most two keys of a use are published (three
//! after a manual rotation); no active key is unpublished or removed; certificates are renewed
//! no later than their renew-before window (plus the step slack) and never expire; tokens are
//! refreshed before they expire and, once settled, bound to the current certificate (even after
//! a crash between renewal and refresh); a manual trigger is acted on once; wake-ups are never in the
//! past; each instant settles in a few passes; the plan does not depend on record order; under
//! backoff no authorization-server call is planned.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::fixtures::{at, secs};
use crate::rotation::{
    Action, CertPolicy, CertRecord, KeyPolicy, KeyRecord, KeyState, KeyUse, Observed, Plan,
    Policy, Publication, Reason, TokenPolicy, TokenRecord, TriggerKind, calls_authorization_server,
    plan,
};

/// Plans at one instant before it must have settled.
const MAX_PASSES: usize = 12;
/// Passes at one instant in which the simulated reconciler may crash.
const CRASHING_PASSES: usize = 4;
/// The backoff probed at every instant.
const PROBE_BACKOFF: SignedDuration = SignedDuration::from_secs(120);

#[derive(Debug, Clone)]
struct Scenario {
    policy: Policy,
    token_lifetime: SignedDuration,
    approval_lag: SignedDuration,
    steps: Vec<i64>,
    triggers: Vec<(usize, TriggerKind)>,
    /// Cycled per executed action: `true` means the reconciler dies right after that action.
    crashes: Vec<bool>,
}

fn key_policy() -> impl Strategy<Value = KeyPolicy> {
    (
        proptest::option::weighted(0.8, 600..=7_200i64),
        0..=600i64,
        0..=600i64,
    )
        .prop_map(|(every, propagation, retire)| KeyPolicy {
            every: every.map(secs),
            propagation_delay: secs(propagation),
            retire_after: secs(retire),
        })
}

fn scenario(max_step: i64, max_steps: usize) -> impl Strategy<Value = Scenario> {
    let publication = prop_oneof![
        Just(Publication::Immediate),
        Just(Publication::JwksUri),
        Just(Publication::ApprovalGate),
    ];
    let certificate = (3_600..=14_400i64, 600..=20_000i64).prop_map(|(duration, before)| {
        CertPolicy {
            duration: secs(duration),
            renew_before: secs(before),
            managed: true,
        }
    });
    let tokens = proptest::collection::vec(proptest::option::of(60..=2_000i64), 0..=2).prop_map(
        |befores| {
            befores
                .into_iter()
                .enumerate()
                .map(|(i, before)| TokenPolicy {
                    name: format!("token-{i}"),
                    refresh_before: before.map(secs),
                })
                .collect::<Vec<_>>()
        },
    );
    let trigger_kind = prop_oneof![
        Just(TriggerKind::RotateKeys),
        Just(TriggerKind::RenewCertificate),
        Just(TriggerKind::RenewTokens),
    ];
    (
        (
            key_policy(),
            proptest::option::of(key_policy()),
            certificate,
            tokens,
            publication,
            any::<u64>(),
        ),
        300..=1_800i64,
        0..=900i64,
        proptest::collection::vec(1..=max_step, 1..=max_steps),
        proptest::collection::vec((0..max_steps, trigger_kind), 0..=12),
        proptest::collection::vec(proptest::bool::weighted(0.1), 1..=32),
    )
        .prop_map(
            |(
                (signing, encryption, certificate, tokens, publication, jitter_seed),
                lifetime,
                lag,
                steps,
                triggers,
                crashes,
            )| Scenario {
                policy: Policy {
                    signing,
                    encryption,
                    certificate,
                    tokens,
                    publication,
                    jitter_seed,
                },
                token_lifetime: secs(lifetime),
                approval_lag: secs(lag),
                steps,
                triggers,
                crashes,
            },
        )
}

/// How the simulated reconciler chooses its next instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    ArbitrarySteps,
    WakeUpDriven,
}

struct Sim<'a> {
    sc: &'a Scenario,
    seen: Observed,
    now: Timestamp,
    next_id: u64,
    /// Allowed lateness of a certificate renewal.
    slack: SignedDuration,
    bootstrapped: BTreeSet<String>,
    manual_rotation_requested: bool,
    manual_keys: BTreeSet<(String, KeyUse)>,
    /// Manual certificate renewals done, with the crash count when last done.
    manual_certificates: BTreeMap<String, usize>,
    executed: usize,
    crashed: usize,
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, slack: SignedDuration) -> Self {
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
        }
    }

    fn policy(&self) -> &'a Policy {
        &self.sc.policy
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn key_policy(&self, use_: KeyUse) -> Option<&'a KeyPolicy> {
        match use_ {
            KeyUse::Sig => Some(&self.policy().signing),
            KeyUse::Enc => self.policy().encryption.as_ref(),
        }
    }

    /// The human approving every published kid `approval_lag` after publication.
    fn approve(&mut self) {
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
    fn next_approval(&self) -> Option<Timestamp> {
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
    fn settle(&mut self) -> Result<Option<Timestamp>, TestCaseError> {
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
                if let Some(cert) = self.seen.certificate.as_ref().filter(|_| self.seen.registered) {
                    for token in &self.seen.tokens {
                        prop_assert_eq!(&token.cert_x5t_s256, &cert.x5t_s256, "token on an old cert");
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

    fn check_plan(&self, p: &Plan) -> Result<(), TestCaseError> {
        prop_assert!(p.next_wakeup.is_none_or(|w| w >= self.now), "wake-up in the past");

        let mut reordered = self.seen.clone();
        reordered.keys.reverse();
        reordered.tokens.reverse();
        prop_assert_eq!(p, &plan(self.policy(), &reordered, self.now), "order-dependent plan");
        prop_assert_eq!(p, &plan(self.policy(), &self.seen.clone(), self.now));

        let mut backed_off = self.seen.clone();
        let until = self.now + PROBE_BACKOFF;
        backed_off.backoff_until = Some(until);
        let held = plan(self.policy(), &backed_off, self.now);
        let immediate = self.policy().publication == Publication::Immediate;
        let registered = self.seen.registered;
        let calls_as = |a: &Action| match a {
            Action::RefreshToken { .. } => true,
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
    fn check_wake_up_is_tight(&self, wake: Option<Timestamp>) -> Result<(), TestCaseError> {
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

    fn key_mut(&mut self, kid: &str) -> Result<&mut KeyRecord, TestCaseError> {
        self.seen
            .keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| TestCaseError::fail(format!("action names unknown kid {kid}")))
    }

    fn apply(&mut self, action: &Action) -> Result<(), TestCaseError> {
        let now = self.now;
        match action {
            Action::GenerateKey { use_, reason } => {
                if *reason == Reason::ManualTrigger {
                    let value = self.seen.triggers.rotate_keys.pending().unwrap_or_default();
                    prop_assert!(
                        self.manual_keys.insert((value.to_owned(), *use_)),
                        "manual rotation {value} acted on twice"
                    );
                }
                let kid = self.id("k");
                self.seen.keys.push(KeyRecord {
                    kid,
                    use_: *use_,
                    state: KeyState::Pending,
                    created_at: now,
                    published_at: None,
                    activated_at: None,
                    retiring_at: None,
                });
            }
            Action::PublishKeys { kids, .. } => {
                for key in &self.seen.keys {
                    if key.state == KeyState::Active {
                        prop_assert!(kids.contains(&key.kid), "active key {} unpublished", key.kid);
                    }
                }
                for kid in kids {
                    let key = self.key_mut(kid)?;
                    if key.published_at.is_none() {
                        key.published_at = Some(now);
                    }
                    if key.state == KeyState::Pending {
                        key.state = KeyState::Published;
                    }
                }
            }
            Action::AwaitApproval { .. } => {}
            Action::ActivateKey { kid, retire, .. } => {
                let registered = self.seen.registered;
                let gated = self.policy().publication == Publication::ApprovalGate;
                let approved = self.seen.approved_kids.contains(kid);
                let key = self.key_mut(kid)?.clone();
                let delay = self
                    .key_policy(key.use_)
                    .map_or(SignedDuration::ZERO, |p| p.propagation_delay);
                prop_assert_eq!(key.state, KeyState::Published, "{} activated unpublished", kid);
                if registered {
                    prop_assert!(
                        key.published_at.is_some_and(|p| p + delay <= now),
                        "{kid} activated before its propagation delay"
                    );
                    prop_assert!(!gated || approved, "{kid} activated without approval");
                } else {
                    self.bootstrapped.insert(kid.clone());
                }
                let key = self.key_mut(kid)?;
                key.state = KeyState::Active;
                key.activated_at = Some(now);
                key.published_at.get_or_insert(now);
                for old in retire {
                    let old = self.key_mut(old)?;
                    prop_assert_eq!(old.state, KeyState::Active);
                    old.state = KeyState::Retiring;
                    old.retiring_at = Some(now);
                }
            }
            Action::RetireKey { kid, .. } => {
                let key = self.key_mut(kid)?;
                key.state = KeyState::Retiring;
                key.retiring_at = Some(now);
            }
            Action::RemoveKey { kid, .. } => {
                prop_assert!(self.key_mut(kid)?.state != KeyState::Active, "active {kid} removed");
                self.seen.keys.retain(|k| &k.kid != kid);
            }
            Action::RenewCertificate { reason } => self.renew_certificate(*reason)?,
            Action::RefreshToken { name, .. } => self.refresh_token(name)?,
            Action::AcknowledgeTrigger { trigger, value } => {
                let handled = Some(value.clone());
                match trigger {
                    TriggerKind::RotateKeys => self.seen.triggers.rotate_keys.handled = handled,
                    TriggerKind::RenewCertificate => {
                        self.seen.triggers.renew_certificate.handled = handled
                    }
                    TriggerKind::RenewTokens => self.seen.triggers.renew_tokens.handled = handled,
                }
            }
        }
        Ok(())
    }

    fn renew_certificate(&mut self, reason: Reason) -> Result<(), TestCaseError> {
        let now = self.now;
        if reason == Reason::ManualTrigger {
            let value = self.seen.triggers.renew_certificate.pending().unwrap_or_default();
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
            prop_assert!(now <= latest, "certificate renewed at {now}, later than {latest}");
            prop_assert!(now < old.not_after, "certificate expired before renewal");
        }
        let x5t_s256 = self.id("c");
        self.seen.certificate = Some(CertRecord {
            not_before: now,
            not_after: now + self.policy().certificate.duration,
            x5t_s256,
        });
        Ok(())
    }

    fn refresh_token(&mut self, name: &str) -> Result<(), TestCaseError> {
        let now = self.now;
        prop_assert!(self.seen.registered, "token minted before registration");
        let Some(cert) = &self.seen.certificate else {
            return Err(TestCaseError::fail("token minted without a certificate"));
        };
        let record = TokenRecord {
            name: name.to_owned(),
            issued_at: now,
            expires_at: now + self.sc.token_lifetime,
            cert_x5t_s256: cert.x5t_s256.clone(),
        };
        if let Some(old) = self.seen.tokens.iter().find(|t| t.name == name) {
            prop_assert!(now < old.expires_at, "token {name} refreshed only after expiry");
        }
        self.seen.tokens.retain(|t| t.name != name);
        self.seen.tokens.push(record);
        Ok(())
    }

    /// Invariants that hold after every action once the client is registered.
    fn check_state(&self) -> Result<(), TestCaseError> {
        if !self.seen.registered {
            return Ok(());
        }
        let delay = self.policy().signing.propagation_delay;
        let usable = self.seen.keys.iter().any(|k| {
            k.use_ == KeyUse::Sig
                && k.state == KeyState::Active
                && k.published_at.is_some_and(|p| {
                    self.bootstrapped.contains(&k.kid)
                        || k.activated_at.is_some_and(|a| p + delay <= a && a <= self.now)
                })
        });
        prop_assert!(usable, "no usable signing key at {}: {:?}", self.now, self.seen.keys);
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
    fn check_time(&self) -> Result<(), TestCaseError> {
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
/// of the lifetime when `renewBefore` is not inside it.
fn renew_point(policy: &CertPolicy, cert: &CertRecord) -> Timestamp {
    let lifetime = cert.not_after.duration_since(cert.not_before);
    let before = if policy.renew_before > SignedDuration::ZERO && policy.renew_before < lifetime {
        policy.renew_before
    } else {
        lifetime / 3
    };
    cert.not_after - before
}

fn run(sc: &Scenario, driver: Driver, slack: SignedDuration) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(sc, slack);
    sim.settle()?;
    sim.seen.registered = true; // registration carries the bootstrap keys
    let mut wake = sim.settle()?;
    sim.check_state()?;
    for (i, step) in sc.steps.iter().enumerate() {
        for (_, kind) in sc.triggers.iter().filter(|(at_step, _)| *at_step == i) {
            let value = Some(format!("{}-{i}", kind.as_str()));
            match kind {
                TriggerKind::RotateKeys => {
                    sim.manual_rotation_requested = true;
                    sim.seen.triggers.rotate_keys.requested = value;
                }
                TriggerKind::RenewCertificate => {
                    sim.seen.triggers.renew_certificate.requested = value
                }
                TriggerKind::RenewTokens => sim.seen.triggers.renew_tokens.requested = value,
            }
        }
        let arbitrary = sim.now + secs(*step);
        sim.now = match driver {
            Driver::ArbitrarySteps => arbitrary,
            Driver::WakeUpDriven => [Some(arbitrary), wake, sim.next_approval()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(arbitrary),
        };
        sim.check_time()?;
        wake = sim.settle()?;
    }
    Ok(())
}

/// Token refresh windows are at least a minute and renew-before windows ten, so steps under a
/// minute never skip one.
const MAX_ARBITRARY_STEP: i64 = 59;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn invariants_hold_when_reconciling_at_arbitrary_instants(
        sc in scenario(MAX_ARBITRARY_STEP, 400)
    ) {
        run(&sc, Driver::ArbitrarySteps, secs(MAX_ARBITRARY_STEP))?;
    }

    #[test]
    fn invariants_hold_when_reconciling_only_at_the_planned_wake_ups(
        sc in scenario(6 * 3_600, 150)
    ) {
        run(&sc, Driver::WakeUpDriven, SignedDuration::ZERO)?;
    }
}
