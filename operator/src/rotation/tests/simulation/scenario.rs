//! Random scenarios: a policy, token lifetime, human approval lag, time steps, manual
//! triggers and crash points.

use jiff::SignedDuration;
use proptest::prelude::*;

use crate::rotation::tests::fixtures::secs;
use crate::rotation::{
    CertPolicy, KeyPolicy, Policy, Publication, RegistrationKind, TokenPolicy, TriggerKind,
};

#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) policy: Policy,
    pub(super) token_lifetime: SignedDuration,
    pub(super) approval_lag: SignedDuration,
    pub(super) steps: Vec<i64>,
    pub(super) triggers: Vec<(usize, TriggerKind)>,
    /// Cycled per executed action: `true` means the reconciler dies right after that action.
    pub(super) crashes: Vec<bool>,
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

pub(super) fn scenario(max_step: i64, max_steps: usize) -> impl Strategy<Value = Scenario> {
    let publication = prop_oneof![
        Just(Publication::Immediate),
        Just(Publication::JwksUri),
        Just(Publication::ApprovalGate),
    ];
    let certificate =
        (3_600..=14_400i64, 600..=20_000i64).prop_map(|(duration, before)| CertPolicy {
            duration: secs(duration),
            renew_before: secs(before),
            managed: true,
        });
    let tokens =
        proptest::collection::vec(proptest::option::of(60..=2_000i64), 0..=2).prop_map(|befores| {
            befores
                .into_iter()
                .enumerate()
                .map(|(i, before)| TokenPolicy {
                    name: format!("token-{i}"),
                    refresh_before: before.map(secs),
                    revoke_replaced: false,
                })
                .collect::<Vec<_>>()
        });
    let registration = prop_oneof![
        Just(RegistrationKind::Answered),
        Just(RegistrationKind::Onboarded),
    ];
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
            registration,
        ),
        300..=1_800i64,
        0..=900i64,
        proptest::collection::vec(1..=max_step, 1..=max_steps),
        proptest::collection::vec((0..max_steps, trigger_kind), 0..=12),
        proptest::collection::vec(proptest::bool::weighted(0.1), 1..=32),
    )
        .prop_map(
            |(
                (signing, encryption, certificate, tokens, publication, jitter_seed, registration),
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
                    registration,
                    max_unknown_attempts: 1,
                    on_lost: crate::rotation::OnLost::Fail,
                },
                token_lifetime: secs(lifetime),
                approval_lag: secs(lag),
                steps,
                triggers,
                crashes,
            },
        )
}

/// A scenario whose schedules are hostile: rotation periods, certificate durations and
/// renew-before windows and token refresh margins down to zero or beyond the lifetime (values
/// the CRD refuses today, but an object stored under an older schema may still carry).
pub(super) fn hostile_scenario(max_step: i64, max_steps: usize) -> impl Strategy<Value = Scenario> {
    let keys = || {
        (
            proptest::option::weighted(0.9, 0..=7_200i64),
            0..=600i64,
            0..=600i64,
        )
            .prop_map(|(every, propagation, retire)| KeyPolicy {
                every: every.map(secs),
                propagation_delay: secs(propagation),
                retire_after: secs(retire),
            })
    };
    (
        scenario(max_step, max_steps),
        keys(),
        proptest::option::of(keys()),
        0..=14_400i64,
        0..=20_000i64,
        proptest::collection::vec(proptest::option::of(0..=4_000i64), 0..=2),
    )
        .prop_map(|(mut sc, signing, encryption, duration, before, befores)| {
            sc.policy.signing = signing;
            sc.policy.encryption = encryption;
            sc.policy.certificate.duration = secs(duration);
            sc.policy.certificate.renew_before = secs(before);
            sc.policy.tokens = befores
                .into_iter()
                .enumerate()
                .map(|(i, before)| TokenPolicy {
                    name: format!("token-{i}"),
                    refresh_before: before.map(secs),
                    revoke_replaced: false,
                })
                .collect();
            sc
        })
}
