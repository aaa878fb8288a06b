//! Registration decisions, batched token refreshes and the shared state transition.

use super::fixtures::*;
use crate::rotation::{
    Action, ApplyError, KeyState, Observed, OnLost, Outcome, Reason, RegistrationKind, TokenDue,
    TokenPolicy, apply, calls_authorization_server, plan, registration_due,
};

fn answered() -> (crate::rotation::Policy, Observed) {
    let mut policy = policy();
    policy.registration = RegistrationKind::Answered;
    let mut seen = steady();
    seen.registered = false;
    seen.tokens.clear();
    (policy, seen)
}

fn registers(p: &crate::rotation::Plan) -> Option<Reason> {
    p.actions.iter().find_map(|a| match a {
        Action::Register { reason } => Some(*reason),
        _ => None,
    })
}

#[test]
fn a_static_client_is_never_registered() {
    let mut seen = steady();
    seen.registered = true;
    assert_eq!(registration_due(&policy(), &seen), None);
    assert_eq!(registers(&plan(&policy(), &seen, at(10))), None);
}

#[test]
fn an_answered_client_registers_once_a_signing_key_is_active_and_a_certificate_exists() {
    let (policy, seen) = answered();
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), Some(Reason::NotRegistered));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. })),
        "no token before registration"
    );
}

#[test]
fn registration_waits_for_the_key_and_certificate_it_carries() {
    let (policy, mut seen) = answered();
    seen.keys.clear();
    seen.certificate = None;
    let first = plan(&policy, &seen, at(0));
    assert_eq!(reasons(&first), [Reason::NoKey, Reason::CertificateMissing]);
    seen.keys.push(sig("k1", KeyState::Pending, at(0)));
    seen.certificate = Some(cert("c1", at(0), at(90 * DAY)));
    let second = plan(&policy, &seen, at(0));
    assert_eq!(
        reasons(&second),
        [Reason::KeyUnpublished, Reason::Bootstrap],
        "the key is activated first; registration comes in the next plan"
    );
}

#[test]
fn registration_waits_while_the_plan_generates_a_certificate() {
    let (policy, mut seen) = answered();
    seen.certificate = Some(cert("c1", at(0), at(10)));
    let p = plan(&policy, &seen, at(20));
    assert_eq!(registers(&p), None);
    assert!(p.actions.contains(&Action::RenewCertificate {
        reason: Reason::CertificateExpired
    }));
}

#[test]
fn an_attempt_without_a_persisted_answer_registers_again_with_its_own_reason() {
    let (policy, mut seen) = answered();
    seen.registration_unanswered = true;
    assert_eq!(
        registers(&plan(&policy, &seen, at(10))),
        Some(Reason::RegistrationUnanswered)
    );
}

#[test]
fn a_registered_answered_client_is_not_registered_again() {
    let (policy, mut seen) = answered();
    seen.registered = true;
    assert_eq!(registration_due(&policy, &seen), None);
}

#[test]
fn a_hub_is_onboarded_with_the_current_certificate_before_any_token() {
    let mut policy = policy();
    policy.registration = RegistrationKind::Onboarded;
    let mut seen = steady();
    seen.registered = true;
    seen.onboarded_x5t_s256 = Some("c0".into());
    seen.tokens = vec![token("payments", at(0), at(3_600), "c0")];
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), Some(Reason::CertificateChanged));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. })),
        "tokens bound to c1 wait until the hub has seen c1: {p:?}"
    );
    let onboarded = apply(
        &policy,
        &seen,
        &Action::Register {
            reason: Reason::CertificateChanged,
        },
        Outcome::Done,
        at(10),
    )
    .expect("applies");
    assert_eq!(onboarded.onboarded_x5t_s256.as_deref(), Some("c1"));
    let after = plan(&policy, &onboarded, at(10));
    assert_eq!(registers(&after), None);
    assert_eq!(reasons(&after), [Reason::CertificateChanged]);
}

#[test]
fn a_hub_renewing_its_certificate_plans_no_token_until_it_is_onboarded_again() {
    let mut policy = policy();
    policy.registration = RegistrationKind::Onboarded;
    let mut seen = steady();
    seen.onboarded_x5t_s256 = Some("c1".into());
    seen.triggers.renew_certificate.requested = Some("now".into());
    let p = plan(&policy, &seen, at(10));
    assert!(p.actions.contains(&Action::RenewCertificate {
        reason: Reason::ManualTrigger
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. }))
    );
}

#[test]
fn a_static_client_renewing_its_certificate_refreshes_its_tokens_in_the_same_plan() {
    let mut seen = steady();
    seen.triggers.renew_certificate.requested = Some("now".into());
    let p = plan(&policy(), &seen, at(10));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. }))
    );
}

#[test]
fn registration_is_an_authorization_server_call_withheld_under_backoff() {
    let (policy, mut seen) = answered();
    seen.backoff_until = Some(at(100));
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), None);
    assert!(
        p.withheld
            .iter()
            .any(|a| calls_authorization_server(a, &policy, &seen)
                && matches!(a, Action::Register { .. }))
    );
    assert_eq!(p.next_wakeup, Some(at(100)));
}

#[test]
fn every_token_due_comes_in_one_refresh_with_its_own_reason() {
    let mut policy = policy();
    policy.tokens.push(TokenPolicy {
        name: "accounts".into(),
        refresh_before: None,
        revoke_replaced: false,
    });
    let seen = steady();
    let p = plan(&policy, &seen, at(3_600));
    let refreshes: Vec<&Action> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::RefreshTokens { .. }))
        .collect();
    assert_eq!(
        refreshes,
        [&Action::RefreshTokens {
            tokens: vec![
                TokenDue {
                    name: "payments".into(),
                    reason: Reason::TokenExpired,
                    revoke_replaced: false,
                },
                TokenDue {
                    name: "accounts".into(),
                    reason: Reason::TokenMissing,
                    revoke_replaced: false,
                },
            ],
            certificate: crate::rotation::TokenCertificate::Current,
        }]
    );
}

#[test]
fn publishing_a_published_record_without_its_instant_records_the_instant() {
    let mut seen = steady();
    let mut k2 = sig("k2", KeyState::Published, at(5));
    k2.published_at = None;
    seen.keys.push(k2);
    let action = Action::PublishKeys {
        kids: vec!["k1".into(), "k2".into()],
        reason: Reason::KeyUnpublished,
    };
    let next = apply(&policy(), &seen, &action, Outcome::Done, at(10)).expect("applies");
    let k2 = next.keys.iter().find(|k| k.kid == "k2").expect("k2");
    assert_eq!(k2.published_at, Some(at(10)));
    assert!(
        !plan(&policy(), &next, at(10))
            .actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. })),
        "published once, not on every pass"
    );
}

#[test]
fn a_refused_registration_access_token_changes_nothing_at_the_as_and_is_remembered() {
    let seen = steady();
    let action = Action::RemoveKey {
        kid: "k1".into(),
        reason: Reason::RetireElapsed,
    };
    let next =
        apply(&policy(), &seen, &action, Outcome::RegistrationLost, at(10)).expect("applies");
    assert!(next.registered, "the client id still works for tokens");
    assert!(next.registration_access_token_lost);
    assert_eq!(next.tokens, seen.tokens);
    assert_eq!(next.keys, seen.keys, "the AS still has the key");
}

fn lost(on_lost: OnLost) -> (crate::rotation::Policy, Observed) {
    let (mut policy, mut seen) = answered();
    policy.publication = crate::rotation::Publication::Immediate;
    policy.on_lost = on_lost;
    seen.registered = true;
    seen.registration_access_token_lost = true;
    seen.tokens = steady().tokens;
    // A rotation under way: its publication would be an RFC 7592 PUT.
    seen.keys.push(sig("k2", KeyState::Pending, at(0)));
    (policy, seen)
}

#[test]
fn with_on_lost_fail_a_refused_token_halts_registration_and_plans_no_call_with_it() {
    let (policy, seen) = lost(OnLost::Fail);
    let p = plan(&policy, &seen, at(10));
    assert!(
        p.actions.contains(&Action::HaltRegistration {
            reason: Reason::RegistrationAccessTokenLost
        }),
        "{p:?}"
    );
    assert_eq!(registers(&p), None);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. } | Action::RemoveKey { .. })),
        "no RFC 7592 call with a refused token: {p:?}"
    );
}

#[test]
fn with_on_lost_fail_tokens_of_the_client_left_at_the_as_stay_fresh() {
    let (policy, mut seen) = lost(OnLost::Fail);
    seen.tokens = vec![token("payments", at(0), at(600), "c1")];
    let p = plan(&policy, &seen, at(3_000));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. })),
        "{p:?}"
    );
}

#[test]
fn with_on_lost_register_a_refused_token_registers_a_new_client() {
    let (policy, seen) = lost(OnLost::Register);
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), Some(Reason::RegistrationAccessTokenLost));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::HaltRegistration { .. })),
        "{p:?}"
    );
    let next = apply(
        &policy,
        &seen,
        &Action::Register {
            reason: Reason::RegistrationAccessTokenLost,
        },
        Outcome::Done,
        at(10),
    )
    .expect("applies");
    assert!(!next.registration_access_token_lost);
    assert!(next.tokens.is_empty(), "tokens of the old client go");
}

fn overwritten(on_lost: OnLost) -> (crate::rotation::Policy, Observed) {
    let (mut policy, mut seen) = answered();
    policy.publication = crate::rotation::Publication::Immediate;
    policy.on_lost = on_lost;
    seen.registered = true;
    seen.registration_access_token_foreign = true;
    seen.tokens = vec![token("payments", at(0), at(600), "c1")];
    // A rotation under way: its publication would be an RFC 7592 PUT with the foreign token.
    seen.keys.push(sig("k2", KeyState::Pending, at(0)));
    (policy, seen)
}

#[test]
fn an_overwritten_registration_access_token_halts_at_once_with_no_call_and_tokens_stay_fresh() {
    for on_lost in [OnLost::Fail, OnLost::Register] {
        let (policy, seen) = overwritten(on_lost);
        let p = plan(&policy, &seen, at(3_000));
        assert!(
            p.actions.contains(&Action::HaltRegistration {
                reason: Reason::RegistrationAccessTokenOverwritten
            }),
            "{on_lost:?}: {p:?}"
        );
        assert_eq!(registers(&p), None, "{on_lost:?}: nothing registered");
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::PublishKeys { .. } | Action::RemoveKey { .. })),
            "{on_lost:?}: no RFC 7592 call with a foreign token: {p:?}"
        );
        assert!(
            p.actions
                .iter()
                .any(|a| matches!(a, Action::RefreshTokens { .. })),
            "{on_lost:?}: tokens keep coming: {p:?}"
        );
        assert_eq!(
            crate::rotation::registration_halted(&policy, &seen),
            Some(Reason::RegistrationAccessTokenOverwritten)
        );
    }
    // Overwritten and refused: still no new registration, even with onLost: Register.
    let (policy, mut seen) = overwritten(OnLost::Register);
    seen.registration_access_token_lost = true;
    assert_eq!(registers(&plan(&policy, &seen, at(10))), None);
    // Put back: the rotation publishes again.
    let (policy, mut seen) = overwritten(OnLost::Fail);
    seen.registration_access_token_foreign = false;
    let p = plan(&policy, &seen, at(10));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::HaltRegistration { .. })),
        "{p:?}"
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::PublishKeys { .. })),
        "{p:?}"
    );
}

#[test]
fn a_static_or_onboarded_client_is_not_halted_by_a_registration_access_token() {
    for kind in [RegistrationKind::Static, RegistrationKind::Onboarded] {
        let (mut policy, seen) = overwritten(OnLost::Fail);
        policy.registration = kind;
        assert_eq!(
            crate::rotation::registration_halted(&policy, &seen),
            None,
            "{kind:?}"
        );
    }
}

fn forgotten(on_lost: OnLost) -> (crate::rotation::Policy, Observed) {
    let (mut policy, mut seen) = answered();
    policy.on_lost = on_lost;
    // `<name>-registration` deleted by hand: no answer, but the status names a client.
    seen.registration_forgotten = true;
    seen.tokens = steady().tokens;
    (policy, seen)
}

#[test]
fn a_client_whose_registration_secret_is_gone_is_halted_not_registered_anew() {
    let (policy, seen) = forgotten(OnLost::Fail);
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), None, "a silent new registration: {p:?}");
    assert!(
        p.actions.iter().any(|a| matches!(
            a,
            Action::HaltRegistration {
                reason: Reason::RegistrationSecretLost
            }
        )),
        "{p:?}"
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| calls_authorization_server(a, &policy, &seen)),
        "nothing is asked of the AS without the client's answer: {p:?}"
    );
}

#[test]
fn a_lost_registration_secret_registers_anew_only_when_asked_and_drops_the_old_tokens() {
    for (policy, seen) in [
        {
            let (policy, mut seen) = forgotten(OnLost::Fail);
            seen.registration_retry_requested = true;
            (policy, seen)
        },
        forgotten(OnLost::Register),
    ] {
        let p = plan(&policy, &seen, at(10));
        assert_eq!(registers(&p), Some(Reason::RegistrationSecretLost), "{p:?}");
        let next = apply(
            &policy,
            &seen,
            &Action::Register {
                reason: Reason::RegistrationSecretLost,
            },
            Outcome::Done,
            at(10),
        )
        .expect("applies");
        assert!(next.registered && !next.registration_forgotten);
        assert!(next.tokens.is_empty(), "tokens of the old client go");
    }
}

#[test]
fn an_attempt_of_unknown_outcome_is_retried_up_to_max_unknown_attempts_then_halts() {
    let (mut policy, mut seen) = answered();
    policy.max_unknown_attempts = 1;
    seen.registration_unanswered = true;
    seen.registration_unknown_attempts = 1;
    assert_eq!(
        registers(&plan(&policy, &seen, at(10))),
        Some(Reason::RegistrationUnanswered),
        "the first attempt of unknown outcome is retried"
    );
    seen.registration_unknown_attempts = 2;
    let p = plan(&policy, &seen, at(10));
    assert_eq!(registers(&p), None, "no third registration: {p:?}");
    assert!(p.actions.contains(&Action::HaltRegistration {
        reason: Reason::RegistrationOutcomeUnknown
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RefreshTokens { .. })),
        "{p:?}"
    );
    policy.max_unknown_attempts = 0;
    seen.registration_unknown_attempts = 1;
    assert_eq!(
        registers(&plan(&policy, &seen, at(10))),
        None,
        "maxUnknownAttempts 0: never retried"
    );
}

#[test]
fn a_retry_annotation_allows_one_more_round_after_the_halt() {
    let (policy, mut seen) = answered();
    seen.registration_unanswered = true;
    seen.registration_unknown_attempts = 5;
    seen.registration_retry_requested = true;
    assert_eq!(
        registers(&plan(&policy, &seen, at(10))),
        Some(Reason::RegistrationUnanswered)
    );
}

#[test]
fn minted_tokens_replace_their_names_and_drop_tokens_of_an_old_certificate() {
    let mut policy = policy();
    policy.tokens.push(TokenPolicy {
        name: "accounts".into(),
        refresh_before: None,
        revoke_replaced: false,
    });
    let mut seen = steady();
    seen.tokens.push(token("accounts", at(0), at(3_600), "c0"));
    seen.tokens.push(token("gone", at(0), at(3_600), "c1"));
    let action = Action::RefreshTokens {
        tokens: vec![TokenDue {
            name: "payments".into(),
            reason: Reason::RefreshDue,
            revoke_replaced: false,
        }],
        certificate: crate::rotation::TokenCertificate::Current,
    };
    let minted = vec![token("payments", at(10), at(3_610), "c1")];
    let next = apply(
        &policy,
        &seen,
        &action,
        Outcome::TokensMinted(minted.clone()),
        at(10),
    )
    .expect("applies");
    assert_eq!(
        next.tokens, minted,
        "accounts (c0) and the unconfigured token leave"
    );
}

#[test]
fn an_outcome_that_does_not_fit_its_action_or_an_unknown_kid_is_refused() {
    let seen = steady();
    let retire = Action::RetireKey {
        kid: "nope".into(),
        reason: Reason::KeyUseDisabled,
    };
    assert_eq!(
        apply(&policy(), &seen, &retire, Outcome::Done, at(1)),
        Err(ApplyError::UnknownKid("nope".into()))
    );
    let retire = Action::RetireKey {
        kid: "k1".into(),
        reason: Reason::KeyUseDisabled,
    };
    assert!(matches!(
        apply(
            &policy(),
            &seen,
            &retire,
            Outcome::TokensMinted(vec![]),
            at(1)
        ),
        Err(ApplyError::Mismatch { .. })
    ));
}

#[test]
fn activation_records_its_instant_and_retires_the_predecessor() {
    let mut seen = steady();
    seen.keys.push(sig("k2", KeyState::Published, at(5)));
    let action = Action::ActivateKey {
        kid: "k2".into(),
        retire: vec!["k1".into()],
        reason: Reason::PropagationElapsed,
        self_test: false,
    };
    let next = apply(&policy(), &seen, &action, Outcome::Done, at(3_000)).expect("applies");
    let state = |kid: &str| {
        next.keys
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| (k.state, k.activated_at, k.retiring_at))
    };
    assert_eq!(state("k2"), Some((KeyState::Active, Some(at(3_000)), None)));
    assert_eq!(
        state("k1"),
        Some((KeyState::Retiring, Some(at(0)), Some(at(3_000))))
    );
}
