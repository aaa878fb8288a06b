//! Self-test before a switch: a new signing key or certificate becomes what tokens are minted
//! with only after the AS accepted a token minted with it.

use super::fixtures::*;
use crate::rotation::{
    Action, KeyState, Observed, Outcome, Reason, SelfTestRefusal, TokenCertificate, apply,
    next_self_test, plan,
};

/// [`steady`] for a `private_key_jwt` client with a new key "k2" published at 0 (activation
/// due at 20 min).
fn rotating() -> Observed {
    let mut seen = steady();
    seen.tokens_need_signing_key = true;
    seen.keys.push(sig("k2", KeyState::Published, at(0)));
    seen
}

fn activation(p: &crate::rotation::Plan) -> Option<&Action> {
    p.actions
        .iter()
        .find(|a| matches!(a, Action::ActivateKey { .. }))
}

fn refusal(second: i64, attempts: u32) -> SelfTestRefusal {
    SelfTestRefusal {
        at: at(second),
        attempts,
    }
}

#[test]
fn a_signing_key_replacing_another_is_activated_with_a_self_test() {
    let p = plan(&policy(), &rotating(), at(20 * 60));
    assert_eq!(
        activation(&p),
        Some(&Action::ActivateKey {
            kid: "k2".into(),
            retire: vec!["k1".into()],
            reason: Reason::PropagationElapsed,
            self_test: true,
        })
    );
}

#[test]
fn a_key_that_signs_no_token_or_replaces_none_is_activated_without_a_self_test() {
    let mut tls_client_auth = rotating();
    tls_client_auth.tokens_need_signing_key = false;
    let mut no_tokens = policy();
    no_tokens.tokens.clear();
    let mut first = rotating();
    first.keys.retain(|k| k.kid == "k2");
    for (policy, seen) in [
        (policy(), tls_client_auth),
        (no_tokens, rotating()),
        (policy(), first),
    ] {
        let p = plan(&policy, &seen, at(20 * 60));
        assert!(
            matches!(
                activation(&p),
                Some(Action::ActivateKey {
                    self_test: false,
                    ..
                })
            ),
            "{p:?}"
        );
    }
}

#[test]
fn after_a_refused_key_self_test_the_activation_waits_for_the_backoff() {
    let mut seen = rotating();
    seen.self_test_refusals
        .insert("k2".into(), refusal(20 * 60, 3));
    let retry = next_self_test(&refusal(20 * 60, 3), policy().jitter_seed, "k2");
    assert!(retry > at(20 * 60 + 6), "about 8 s after a third refusal");
    let waiting = plan(&policy(), &seen, at(20 * 60 + 1));
    assert_eq!(activation(&waiting), None, "the old key stays active");
    assert_eq!(waiting.next_wakeup, Some(retry));
    let due = plan(&policy(), &seen, retry);
    assert!(matches!(
        activation(&due),
        Some(Action::ActivateKey {
            self_test: true,
            ..
        })
    ));
}

#[test]
fn a_key_self_test_is_an_authorization_server_call_held_back_by_backoff() {
    let mut seen = rotating();
    seen.backoff_until = Some(at(30 * 60));
    let p = plan(&policy(), &seen, at(20 * 60));
    assert_eq!(activation(&p), None);
    assert!(p.withheld.iter().any(|a| matches!(
        a,
        Action::ActivateKey {
            self_test: true,
            ..
        }
    )));
}

#[test]
fn self_tests_back_off_like_other_failures_capped_at_about_a_minute() {
    let seed = policy().jitter_seed;
    let delays: Vec<i64> = (1..=10)
        .map(|n| {
            next_self_test(&refusal(0, n), seed, "c2")
                .duration_since(at(0))
                .as_secs()
        })
        .collect();
    assert!(delays.windows(2).take(4).all(|w| w[0] < w[1]), "{delays:?}");
    assert!(delays.iter().all(|d| (1..=72).contains(d)), "{delays:?}");
    assert!(delays[9] >= 48, "capped near a minute: {delays:?}");
}

/// A renewed certificate "c2" whose switch the AS refused at 100 s; the tokens are bound to
/// "c1" (issued at 0, valid an hour).
fn certificate_refused() -> Observed {
    let mut seen = steady();
    seen.certificate = Some(cert("c2", at(100), at(90 * DAY)));
    seen.self_test_refusals.insert("c2".into(), refusal(100, 1));
    seen
}

fn refresh(p: &crate::rotation::Plan) -> Option<(TokenCertificate, Vec<Reason>)> {
    p.actions.iter().find_map(|a| match a {
        Action::RefreshTokens {
            tokens,
            certificate,
        } => Some((*certificate, tokens.iter().map(|t| t.reason).collect())),
        _ => None,
    })
}

#[test]
fn tokens_move_to_a_new_certificate_in_a_switch_and_stay_after_a_refusal() {
    let mut fresh = certificate_refused();
    fresh.self_test_refusals.clear();
    assert_eq!(
        refresh(&plan(&policy(), &fresh, at(100))),
        Some((TokenCertificate::Switch, vec![Reason::CertificateChanged]))
    );
    let seen = certificate_refused();
    let retry = next_self_test(&refusal(100, 1), policy().jitter_seed, "c2");
    let waiting = plan(&policy(), &seen, at(101));
    assert_eq!(
        refresh(&waiting),
        None,
        "nothing due with the old certificate"
    );
    assert_eq!(waiting.next_wakeup, Some(retry));
    assert_eq!(
        refresh(&plan(&policy(), &seen, retry)),
        Some((TokenCertificate::Switch, vec![Reason::CertificateChanged]))
    );
}

#[test]
fn while_a_certificate_switch_waits_tokens_are_refreshed_with_the_previous_one() {
    let mut seen = certificate_refused();
    // The token reaches its refresh point while the next self-test is still far.
    seen.self_test_refusals
        .insert("c2".into(), refusal(3_000, 1));
    assert_eq!(
        refresh(&plan(&policy(), &seen, at(3_001))),
        Some((TokenCertificate::Previous, vec![Reason::RefreshDue]))
    );
    let minted = vec![token("payments", at(3_001), at(6_601), "c1")];
    let action = Action::RefreshTokens {
        tokens: vec![crate::rotation::TokenDue {
            name: "payments".into(),
            reason: Reason::RefreshDue,
            revoke_replaced: false,
        }],
        certificate: TokenCertificate::Previous,
    };
    let next = apply(
        &policy(),
        &seen,
        &action,
        Outcome::TokensMinted(minted.clone()),
        at(3_001),
    )
    .expect("applies");
    assert_eq!(next.tokens, minted, "still bound to c1");
    assert!(
        next.self_test_refusals.contains_key("c2"),
        "the switch still waits"
    );
}

#[test]
fn a_refusal_is_counted_and_cleared_once_the_switch_happens() {
    let seen = certificate_refused();
    let switch = Action::RefreshTokens {
        tokens: vec![crate::rotation::TokenDue {
            name: "payments".into(),
            reason: Reason::CertificateChanged,
            revoke_replaced: false,
        }],
        certificate: TokenCertificate::Switch,
    };
    let refused =
        apply(&policy(), &seen, &switch, Outcome::SelfTestRefused, at(200)).expect("applies");
    assert_eq!(refused.self_test_refusals.get("c2"), Some(&refusal(200, 2)));
    assert_eq!(refused.tokens, seen.tokens, "the old tokens stay");
    let switched = apply(
        &policy(),
        &refused,
        &switch,
        Outcome::TokensMinted(vec![token("payments", at(300), at(3_900), "c2")]),
        at(300),
    )
    .expect("applies");
    assert!(switched.self_test_refusals.is_empty());

    let key = Action::ActivateKey {
        kid: "k2".into(),
        retire: vec!["k1".into()],
        reason: Reason::PropagationElapsed,
        self_test: true,
    };
    let refused = apply(
        &policy(),
        &rotating(),
        &key,
        Outcome::SelfTestRefused,
        at(1_200),
    )
    .expect("applies");
    let k2 = refused.keys.iter().find(|k| k.kid == "k2").map(|k| k.state);
    assert_eq!(k2, Some(KeyState::Published), "not activated");
    assert_eq!(
        refused.self_test_refusals.get("k2"),
        Some(&refusal(1_200, 1))
    );
    let activated = apply(&policy(), &refused, &key, Outcome::Done, at(1_300)).expect("applies");
    assert!(activated.self_test_refusals.is_empty());
}
