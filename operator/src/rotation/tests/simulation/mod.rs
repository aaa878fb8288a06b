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

use jiff::SignedDuration;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::rotation::tests::fixtures::secs;
use crate::rotation::{RegistrationKind, TriggerKind};
use reconciler::Sim;
use scenario::{Scenario, scenario};

/// How the simulated reconciler chooses its next instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    ArbitrarySteps,
    WakeUpDriven,
}

fn run(sc: &Scenario, driver: Driver, slack: SignedDuration) -> Result<(), TestCaseError> {
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
