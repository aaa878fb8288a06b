//! Property tests: the planner drives a simulated reconciler that applies each action to the
//! observed state, while time advances by arbitrary steps (bounded loops, bounded time).
//!
//! Two drivers: `arbitrary_steps` reconciles at arbitrary instants (steps under a minute, whatever
//! the planner asked for), `wake_up_driven` sleeps until the planner's wake-up (or an arbitrary
//! earlier event). Invariants checked after every single action: a published, propagated signing
//! key is always active; nothing is activated before its propagation delay (the bootstrap key
//! excepted) or approval; at most two keys of a use are published (three after a manual rotation);
//! no active key is unpublished or removed; certificates are renewed no later than their
//! renew-before window (plus the step slack) and never expire; tokens are refreshed before they
//! expire and, once settled, bound to the current certificate (even after a crash between renewal
//! and refresh); a manual trigger is acted on once; wake-ups are never in the past; each instant
//! settles in a few passes; the plan does not depend on record order; under backoff no
//! authorization-server call is planned; registration happens once the first keys are active,
//! exactly once for an answered registration, and again after every certificate renewal for a hub
//! (before any token bound to the new certificate). The simulator carries actions out with the
//! operator's own [`crate::rotation::apply`].

mod checks;
mod reconciler;
mod scenario;

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::rotation::tests::fixtures::secs;
use crate::rotation::{Action, KeyUse, Reason, RegistrationKind, TriggerKind, floors};
use reconciler::Sim;
use scenario::{Scenario, hostile_scenario, scenario};

/// How the simulated reconciler chooses its next instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    ArbitrarySteps,
    WakeUpDriven,
}

fn run(sc: &Scenario, driver: Driver, slack: SignedDuration) -> Result<(), TestCaseError> {
    run_sim(sc, driver, slack).map(drop)
}

fn run_sim(sc: &Scenario, driver: Driver, slack: SignedDuration) -> Result<Sim<'_>, TestCaseError> {
    let mut sim = Sim::new(sc, slack);
    // The planner bootstraps the keys, then registers the client: registration carries them.
    let mut wake = sim.settle()?;
    prop_assert!(sim.seen.registered, "not registered once settled");
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
    if sc.policy.registration == RegistrationKind::Answered {
        prop_assert_eq!(
            sim.registrations,
            1,
            "an answered registration is made once"
        );
    }
    Ok(sim)
}

/// The figures of docs/security.md ("Rate of work per client"), counted over everything the
/// simulated reconciler did on a schedule (manual triggers and first issuance excepted): in
/// any hour at most [`floors::MAX_CERTIFICATE_RENEWALS_PER_HOUR`] certificate renewals and
/// [`floors::MAX_KEY_ROTATIONS_PER_HOUR`] key rotation per use, and a token requested on its
/// refresh point no sooner than 2/5 of its lifetime after it was last issued.
fn check_rates(sc: &Scenario, log: &[(Timestamp, Action)]) -> Result<(), TestCaseError> {
    let hour = SignedDuration::from_hours(1);
    let most_in_an_hour = |instants: &[Timestamp]| {
        instants
            .iter()
            .map(|start| {
                instants
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + hour)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let renewals: Vec<Timestamp> = log
        .iter()
        .filter(|(_, a)| {
            matches!(a, Action::RenewCertificate { reason }
                if !matches!(reason, Reason::ManualTrigger | Reason::CertificateMissing))
        })
        .map(|(t, _)| *t)
        .collect();
    prop_assert!(
        most_in_an_hour(&renewals) <= floors::MAX_CERTIFICATE_RENEWALS_PER_HOUR as usize,
        "certificate renewed more than {} times in an hour: {renewals:?}",
        floors::MAX_CERTIFICATE_RENEWALS_PER_HOUR
    );
    for use_ in [KeyUse::Sig, KeyUse::Enc] {
        let rotations: Vec<Timestamp> = log
            .iter()
            .filter(|(_, a)| {
                matches!(a, Action::GenerateKey { use_: u, reason: Reason::RotationDue } if *u == use_)
            })
            .map(|(t, _)| *t)
            .collect();
        prop_assert!(
            most_in_an_hour(&rotations) <= floors::MAX_KEY_ROTATIONS_PER_HOUR as usize,
            "{use_:?} key rotated more than once in an hour: {rotations:?}"
        );
    }
    let least_interval = sc.token_lifetime * 2 / 5;
    let mut last_issued: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for (t, action) in log {
        if let Action::RefreshTokens { tokens, .. } = action {
            for due in tokens {
                if let (Reason::RefreshDue, Some(last)) =
                    (due.reason, last_issued.get(due.name.as_str()))
                {
                    prop_assert!(
                        *t >= *last + least_interval,
                        "token {} refreshed at {t}, issued at {last}",
                        due.name
                    );
                }
                last_issued.insert(due.name.as_str(), *t);
            }
        }
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
    fn no_schedule_renews_rotates_or_refreshes_faster_than_the_stated_rate(
        sc in hostile_scenario(6 * 3_600, 150)
    ) {
        let sim = run_sim(&sc, Driver::WakeUpDriven, SignedDuration::ZERO)?;
        check_rates(&sc, &sim.log)?;
    }

    #[test]
    fn invariants_hold_when_reconciling_only_at_the_planned_wake_ups(
        sc in scenario(6 * 3_600, 150)
    ) {
        run(&sc, Driver::WakeUpDriven, SignedDuration::ZERO)?;
    }
}
