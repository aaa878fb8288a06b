//! Condition types and reasons, shared by status, events and metrics; one upsert function.
//!
//! Types are states (`Ready`, `Registered`, ...); reasons are PascalCase causes. The upsert sets
//! `observedGeneration` and moves `lastTransitionTime` only when the status flips. No I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

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
}

/// Reasons, PascalCase, reused by conditions, events and metric labels.
pub mod reasons {
    #![allow(missing_docs)]
    pub const RECONCILED: &str = "Reconciled";
    pub const PENDING: &str = "Pending";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SUSPENDED: &str = "Suspended";
    pub const DISCOVERY_FAILED: &str = "DiscoveryFailed";
    pub const ISSUER_MISMATCH: &str = "IssuerMismatch";
    pub const PREFLIGHT_FAILED: &str = "PreflightFailed";
    pub const AUTHORIZATION_SERVER_NOT_FOUND: &str = "AuthorizationServerNotFound";
    pub const AUTHORIZATION_SERVER_NOT_READY: &str = "AuthorizationServerNotReady";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const CROSS_NAMESPACE_REFERENCE: &str = "CrossNamespaceReference";
    pub const REFERENCE_NOT_FOUND: &str = "ReferenceNotFound";
    pub const REGISTERED: &str = "Registered";
    pub const REGISTRATION_REJECTED: &str = "RegistrationRejected";
    pub const REGISTRATION_LOST: &str = "RegistrationLost";
    pub const AWAITING_KEY_APPROVAL: &str = "AwaitingKeyApproval";
    pub const KEY_ACTIVE: &str = "KeyActive";
    pub const KEY_ROTATED: &str = "KeyRotated";
    pub const KEY_ROTATION_IN_PROGRESS: &str = "KeyRotationInProgress";
    pub const CERTIFICATE_ISSUED: &str = "CertificateIssued";
    pub const CERTIFICATE_ROTATED: &str = "CertificateRotated";
    pub const CERTIFICATE_INVALID: &str = "CertificateInvalid";
    pub const TOKENS_ISSUED: &str = "TokensIssued";
    pub const TOKEN_REQUEST_FAILED: &str = "TokenRequestFailed";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const AS_UNAVAILABLE: &str = "AuthorizationServerUnavailable";
    pub const DEREGISTRATION_FAILED: &str = "DeregistrationFailed";
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
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> bool {
    let status = status_str(ok);
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
            reasons::PENDING,
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
            reasons::PENDING,
            "a",
            Some(1),
            t(10),
        );
        upsert(
            &mut c,
            types::READY,
            Some(false),
            reasons::DISCOVERY_FAILED,
            "b",
            Some(1),
            t(20),
        );
        assert_eq!(c[0].last_transition_time, Time(t(10)));
        assert_eq!(c[0].reason, reasons::DISCOVERY_FAILED);
        upsert(
            &mut c,
            types::READY,
            Some(true),
            reasons::RECONCILED,
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
            reasons::RECONCILED,
            "ok",
            Some(1),
            t(10),
        );
        assert!(!upsert(
            &mut c,
            types::READY,
            Some(true),
            reasons::RECONCILED,
            "ok",
            Some(1),
            t(99)
        ));
        assert!(is_true(&c, types::READY));
    }
}
