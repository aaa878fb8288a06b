//! Which targets to restart, and when: a fingerprint of what the workloads read (only public
//! parts: the certificate, the signing key's kid, the tokens' expiry times), compared with the
//! stamp the last restart left on each target's pod template, under a debounce. No I/O.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use crate::{crd::RestartOn, hex::hex, store::layout::credentials as keys};

/// Prefix of the pod template annotation that records, per TppClient, which credentials a
/// workload was last restarted for: `restart.tpp.dev/<client>: <fingerprint>@<RFC 3339 time>`.
pub const ANNOTATION_PREFIX: &str = "restart.tpp.dev/";

/// The annotation key for the TppClient `client`. An annotation's name part holds at most 63
/// characters: longer client names are cut and suffixed with a hash of the whole name.
pub fn annotation_key(client: &str) -> String {
    if client.len() <= 63 {
        return format!("{ANNOTATION_PREFIX}{client}");
    }
    let digest = hex(&Sha256::digest(client.as_bytes()))[..8].to_owned();
    let head = client[..54].trim_end_matches(['-', '.']);
    format!("{ANNOTATION_PREFIX}{head}-{digest}")
}

/// What the workloads read, reduced to a short hash of its public parts selected by
/// `restart_on`. `None` while the Secret holds no certificate yet (nothing to consume).
pub fn fingerprint(
    data: &BTreeMap<String, ByteString>,
    restart_on: &[RestartOn],
) -> Option<String> {
    data.get(keys::TLS_CRT)?;
    let mut h = Sha256::new();
    let mut add = |key: &str| {
        h.update(key.as_bytes());
        h.update([0]);
        if let Some(v) = data.get(key) {
            h.update(&v.0);
        }
        h.update([0]);
    };
    let mut on = restart_on.to_vec();
    on.sort();
    on.dedup();
    for part in on {
        match part {
            RestartOn::Certificate => add(keys::TLS_CRT),
            RestartOn::SigningKey => add(keys::SIGNING_KID),
            RestartOn::Tokens => {
                for key in data.keys().filter(|k| k.ends_with(".expires_at")) {
                    add(key);
                }
            }
        }
    }
    Some(hex(&h.finalize())[..16].to_owned())
}

/// What the last restart for this TppClient left on a target: the fingerprint it was restarted
/// for, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// [`fingerprint`] of the credentials the target was restarted for.
    pub fingerprint: String,
    /// When it was restarted.
    pub at: Timestamp,
}

impl Stamp {
    /// Parse an annotation value; `None` for anything else (then the target is restarted).
    pub fn parse(value: &str) -> Option<Self> {
        let (fingerprint, at) = value.rsplit_once('@')?;
        Some(Self {
            fingerprint: fingerprint.to_owned(),
            at: at.parse().ok()?,
        })
    }

    /// The annotation value.
    pub fn render(&self) -> String {
        format!("{}@{}", self.fingerprint, self.at)
    }
}

/// What to do with one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It was restarted for the current credentials.
    UpToDate,
    /// Restart it now, leaving this stamp.
    Restart(Stamp),
    /// The credentials changed inside the debounce interval: restart at this instant.
    WaitUntil(Timestamp),
}

/// Decide for one target whose pod template carries `stamp`, the credentials now having
/// `current` as fingerprint. A target is restarted at most once per `min_interval`; a change
/// inside the interval is restarted for at its end (with whatever is current then).
pub fn decide(
    current: &str,
    stamp: Option<&Stamp>,
    now: Timestamp,
    min_interval: SignedDuration,
) -> Decision {
    let restart = Decision::Restart(Stamp {
        fingerprint: current.to_owned(),
        // Whole seconds: the stamp is read by people too.
        at: Timestamp::from_second(now.as_second()).unwrap_or(now),
    });
    match stamp {
        None => restart,
        Some(s) if s.fingerprint == current => Decision::UpToDate,
        Some(s) => {
            // A stamp from the future (a skewed clock elsewhere) counts as now.
            let since = s.at.min(now);
            let due = since.checked_add(min_interval).unwrap_or(since);
            if due > now {
                Decision::WaitUntil(due)
            } else {
                restart
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    fn secret(cert: &str, kid: &str, expires: &str) -> BTreeMap<String, ByteString> {
        data(&[
            ("tls.crt", cert),
            ("tls.key", "private"),
            ("signing.kid", kid),
            ("signing.key", "private"),
            ("accounts.access_token", "opaque"),
            ("accounts.expires_at", expires),
        ])
    }

    const DEFAULT: &[RestartOn] = &[RestartOn::Certificate, RestartOn::SigningKey];
    const ALL: &[RestartOn] = &[
        RestartOn::Certificate,
        RestartOn::SigningKey,
        RestartOn::Tokens,
    ];

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_refresh_does_not_change_the_default_fingerprint() {
        let before = secret("cert-1", "kid-1", "2026-12-03T10:00:00Z");
        let after = secret("cert-1", "kid-1", "2026-12-03T10:05:00Z");
        assert_eq!(fingerprint(&before, DEFAULT), fingerprint(&after, DEFAULT));
    }

    #[test]
    fn a_token_refresh_changes_the_fingerprint_when_restart_on_names_tokens() {
        let before = secret("cert-1", "kid-1", "2026-12-03T10:00:00Z");
        let after = secret("cert-1", "kid-1", "2026-12-03T10:05:00Z");
        assert_ne!(fingerprint(&before, ALL), fingerprint(&after, ALL));
    }

    #[test]
    fn a_certificate_renewal_changes_the_fingerprint() {
        let before = secret("cert-1", "kid-1", "x");
        let after = secret("cert-2", "kid-1", "x");
        assert_ne!(fingerprint(&before, DEFAULT), fingerprint(&after, DEFAULT));
        assert_eq!(
            fingerprint(&before, &[RestartOn::SigningKey]),
            fingerprint(&after, &[RestartOn::SigningKey])
        );
    }

    #[test]
    fn a_signing_key_rotation_changes_the_fingerprint() {
        let before = secret("cert-1", "kid-1", "x");
        let after = secret("cert-1", "kid-2", "x");
        assert_ne!(fingerprint(&before, DEFAULT), fingerprint(&after, DEFAULT));
        assert_eq!(
            fingerprint(&before, &[RestartOn::Certificate]),
            fingerprint(&after, &[RestartOn::Certificate])
        );
    }

    #[test]
    fn the_fingerprint_ignores_the_order_of_restart_on_and_holds_no_secret() {
        let s = secret("cert-1", "kid-1", "x");
        let a = fingerprint(&s, &[RestartOn::SigningKey, RestartOn::Certificate]).unwrap();
        let b = fingerprint(&s, DEFAULT).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        // Private parts do not enter it: changing them leaves it alone.
        let mut other = s.clone();
        other.insert("tls.key".into(), ByteString(b"another".to_vec()));
        other.insert(
            "accounts.access_token".into(),
            ByteString(b"another".to_vec()),
        );
        assert_eq!(fingerprint(&other, ALL), fingerprint(&s, ALL));
    }

    #[test]
    fn no_fingerprint_before_the_certificate_is_written() {
        assert_eq!(fingerprint(&data(&[("client_id", "c")]), DEFAULT), None);
    }

    #[test]
    fn a_target_without_a_stamp_is_restarted_now() {
        let now = t("2026-12-03T10:00:00Z");
        assert_eq!(
            decide("f1", None, now, SignedDuration::from_secs(60)),
            Decision::Restart(Stamp {
                fingerprint: "f1".into(),
                at: now
            })
        );
    }

    #[test]
    fn a_target_stamped_with_the_current_fingerprint_is_left_alone() {
        let stamp = Stamp {
            fingerprint: "f1".into(),
            at: t("2026-12-03T10:00:00Z"),
        };
        let now = t("2026-12-03T10:00:01Z");
        assert_eq!(
            decide("f1", Some(&stamp), now, SignedDuration::from_secs(60)),
            Decision::UpToDate
        );
    }

    #[test]
    fn a_change_inside_the_debounce_interval_waits_for_its_end() {
        let stamp = Stamp {
            fingerprint: "f1".into(),
            at: t("2026-12-03T10:00:00Z"),
        };
        let now = t("2026-12-03T10:00:20Z");
        assert_eq!(
            decide("f2", Some(&stamp), now, SignedDuration::from_secs(60)),
            Decision::WaitUntil(t("2026-12-03T10:01:00Z"))
        );
    }

    #[test]
    fn a_change_after_the_debounce_interval_restarts_now() {
        let stamp = Stamp {
            fingerprint: "f1".into(),
            at: t("2026-12-03T10:00:00Z"),
        };
        let now = t("2026-12-03T10:01:00Z");
        assert_eq!(
            decide("f2", Some(&stamp), now, SignedDuration::from_secs(60)),
            Decision::Restart(Stamp {
                fingerprint: "f2".into(),
                at: now
            })
        );
    }

    #[test]
    fn a_stamp_from_the_future_counts_as_now() {
        let stamp = Stamp {
            fingerprint: "f1".into(),
            at: t("2030-01-01T00:00:00Z"),
        };
        let now = t("2026-12-03T10:00:00Z");
        assert_eq!(
            decide("f2", Some(&stamp), now, SignedDuration::from_secs(60)),
            Decision::WaitUntil(t("2026-12-03T10:01:00Z"))
        );
    }

    #[test]
    fn stamps_round_trip_and_garbage_is_not_a_stamp() {
        let s = Stamp {
            fingerprint: "0123456789abcdef".into(),
            at: t("2026-12-03T10:00:00Z"),
        };
        assert_eq!(Stamp::parse(&s.render()), Some(s));
        assert_eq!(Stamp::parse("restarted by hand"), None);
        assert_eq!(Stamp::parse("f@not-a-time"), None);
    }

    #[test]
    fn annotation_keys_fit_the_63_character_name_limit() {
        assert_eq!(annotation_key("payments"), "restart.tpp.dev/payments");
        let long = "a".repeat(100);
        let key = annotation_key(&long);
        let name = key.strip_prefix(ANNOTATION_PREFIX).unwrap();
        assert!(name.len() <= 63, "{name}");
        assert_ne!(annotation_key(&"a".repeat(99)), key);
    }
}
