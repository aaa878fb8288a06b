//! Condition types, one upsert function and a small builder over it ([`Conditions`]).
//!
//! Types are states (`Ready`, `Registered`, ...); reasons are [`Reason`]s, the one set shared
//! with events and metrics. The upsert sets `observedGeneration` and moves
//! `lastTransitionTime` only when the status flips. `Reconciling` and `Stalled` follow the
//! kstatus conventions (abnormal-true: present and `False` when all is well). No I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use crate::reason::Reason;

/// Condition types of a TppClient.
pub mod types {
    /// Everything below is true: a workload can mount the credentials Secret and call the AS.
    pub const READY: &str = "Ready";
    /// The client is registered at the AS (or, for Static, configured with its client id).
    pub const REGISTERED: &str = "Registered";
    /// An active signing key is published and usable for assertions.
    pub const SIGNING_KEY_READY: &str = "SigningKeyReady";
    /// The transport certificate is present and not inside its renewal window.
    pub const TRANSPORT_CERTIFICATE_READY: &str = "TransportCertificateReady";
    /// Every configured token is present and not expired.
    pub const TOKENS_READY: &str = "TokensReady";
    /// kstatus: the operator is working toward Ready (onboarding, a transient failure being
    /// retried); `False` once Ready or stalled.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: a permanent error the operator cannot get past without a change (spec, AS,
    /// persisted state); `False` otherwise.
    pub const STALLED: &str = "Stalled";
}

/// `True`/`False`/`Unknown` as the API spells them.
pub fn status_str(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Insert or update the condition of `type_` in `conditions`.
///
/// `lastTransitionTime` moves only when `status` changes; reason, message and
/// `observedGeneration` are always refreshed. Returns whether anything a user reads changed.
pub fn upsert(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: Option<bool>,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let status = status_str(ok);
    let reason = reason.as_str();
    // Whole seconds, as the API server stores them (so an unchanged condition compares equal).
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let changed = c.status != status
            || c.reason != reason
            || c.message != message
            || c.observed_generation != generation;
        if c.status != status {
            c.last_transition_time = Time(now);
        }
        c.status = status.to_owned();
        c.reason = reason.to_owned();
        c.message = message.to_owned();
        c.observed_generation = generation;
        changed
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: Time(now),
        });
        true
    }
}

/// The conditions of one object at one generation and instant: `set` is [`upsert`] without
/// repeating them.
pub struct Conditions<'a> {
    conditions: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: jiff::Timestamp,
}

impl<'a> Conditions<'a> {
    /// Conditions of `generation`, changed at `now`.
    pub fn new(
        conditions: &'a mut Vec<Condition>,
        generation: Option<i64>,
        now: jiff::Timestamp,
    ) -> Self {
        Self {
            conditions,
            generation,
            now,
        }
    }

    /// Set `type_` to `ok` with `reason` and `message`; returns whether anything changed.
    pub fn set(&mut self, type_: &str, ok: bool, reason: Reason, message: &str) -> bool {
        upsert(
            self.conditions,
            type_,
            Some(ok),
            reason,
            message,
            self.generation,
            self.now,
        )
    }

    /// The condition of `type_`, if set.
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        find(self.conditions, type_)
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        is_true(self.conditions, type_)
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn upsert_adds_a_missing_condition() {
        let mut c = vec![];
        assert!(upsert(
            &mut c,
            types::READY,
            Some(false),
            Reason::Pending,
            "waiting",
            Some(1),
            t(10)
        ));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].last_transition_time, Time(t(10)));
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = vec![];
        upsert(
            &mut c,
            types::READY,
            Some(false),
            Reason::Pending,
            "a",
            Some(1),
            t(10),
        );
        upsert(
            &mut c,
            types::READY,
            Some(false),
            Reason::DiscoveryFailed,
            "b",
            Some(1),
            t(20),
        );
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(c[0].reason, "DiscoveryFailed");
        upsert(
            &mut c,
            types::READY,
            Some(true),
            Reason::Reconciled,
            "ok",
            Some(2),
            t(30),
        );
        assert_eq!(c[0].last_transition_time, Time(t(30)));
        assert_eq!(c[0].observed_generation, Some(2));
    }

    #[test]
    fn upsert_reports_no_change_for_an_identical_condition() {
        let mut c = vec![];
        upsert(
            &mut c,
            types::READY,
            Some(true),
            Reason::Reconciled,
            "ok",
            Some(1),
            t(10),
        );
        assert!(!upsert(
            &mut c,
            types::READY,
            Some(true),
            Reason::Reconciled,
            "ok",
            Some(1),
            t(99)
        ));
        assert!(is_true(&c, types::READY));
    }
}
