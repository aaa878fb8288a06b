//! Test-only builders for policies and observed state.

use jiff::{SignedDuration, Timestamp};

use crate::rotation::{
    Action, CertPolicy, CertRecord, KeyPolicy, KeyRecord, KeyState, KeyUse, Observed, Plan, Policy,
    Publication, Reason, RegistrationKind, TokenPolicy, TokenRecord,
};

/// An arbitrary fixed origin for test time.
pub const T0: i64 = 1_800_000_000;

/// `T0 + second` seconds.
pub fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T0 + second).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

pub fn mins(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

pub fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

pub const DAY: i64 = 86_400;

/// Signing keys every 30 days, 20 min propagation and retirement; a 90-day certificate renewed
/// 30 days ahead; one token "payments" with the default refresh; a served jwks_uri.
pub fn policy() -> Policy {
    Policy {
        signing: KeyPolicy {
            every: Some(hours(24 * 30)),
            propagation_delay: mins(20),
            retire_after: mins(20),
        },
        encryption: None,
        certificate: CertPolicy {
            duration: hours(24 * 90),
            renew_before: hours(24 * 30),
            managed: true,
        },
        tokens: vec![TokenPolicy {
            name: "payments".into(),
            refresh_before: None,
            revoke_replaced: false,
        }],
        publication: Publication::JwksUri,
        jitter_seed: 7,
        registration: RegistrationKind::Static,
        max_unknown_attempts: 1,
        on_lost: crate::rotation::OnLost::Fail,
    }
}

/// A key of `use_` in `state`, created at `created`, with the instants its state implies.
pub fn key(kid: &str, use_: KeyUse, state: KeyState, created: Timestamp) -> KeyRecord {
    let visible = state != KeyState::Pending;
    let used = matches!(state, KeyState::Active | KeyState::Retiring);
    KeyRecord {
        kid: kid.into(),
        use_,
        state,
        created_at: created,
        published_at: visible.then_some(created),
        activated_at: used.then_some(created),
        retiring_at: (state == KeyState::Retiring).then_some(created),
    }
}

pub fn sig(kid: &str, state: KeyState, created: Timestamp) -> KeyRecord {
    key(kid, KeyUse::Sig, state, created)
}

pub fn cert(x5t: &str, not_before: Timestamp, not_after: Timestamp) -> CertRecord {
    CertRecord {
        not_before,
        not_after,
        x5t_s256: x5t.into(),
    }
}

pub fn token(name: &str, issued: Timestamp, expires: Timestamp, x5t: &str) -> TokenRecord {
    TokenRecord {
        name: name.into(),
        issued_at: issued,
        expires_at: expires,
        cert_x5t_s256: x5t.into(),
    }
}

/// A registered client at `at(0)`: one active signing key "k1", certificate "c1" valid for 90
/// days, token "payments" issued now and valid for an hour.
pub fn steady() -> Observed {
    Observed {
        registered: true,
        keys: vec![sig("k1", KeyState::Active, at(0))],
        certificate: Some(cert("c1", at(0), at(90 * DAY))),
        tokens: vec![token("payments", at(0), at(3_600), "c1")],
        ..Observed::default()
    }
}

/// The reasons of the planned actions, in order.
pub fn reasons(plan: &Plan) -> Vec<Reason> {
    plan.actions.iter().map(Action::reason).collect()
}

/// [`policy`] and [`steady`] without tokens and with an unmanaged certificate: only keys move.
pub fn keys_only() -> (Policy, Observed) {
    let mut policy = policy();
    policy.tokens.clear();
    policy.certificate.managed = false;
    let mut seen = steady();
    seen.tokens.clear();
    (policy, seen)
}
