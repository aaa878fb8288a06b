//! When the AuthorizationServer controller may next resolve (discover) an AS after failures:
//! exponential backoff with jitter, capped, per AS and per generation of its spec
//! (docs/reliability.md, "Discovery failures and request budgets").
//!
//! Whatever triggers a reconcile of a failing AS (our own status write, another controller's
//! label, a relist), no discovery request goes out before the backoff has passed; only a new
//! generation of the spec (the user fixed something) or a `tpp.dev/refresh-discovery` request
//! tries at once. In memory, no I/O; the instant is passed in (the injected clock).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use jiff::Timestamp;

use crate::rotation::retry_delay;

/// How long a permanent failure (wrong issuer, a 404 discovery path, preflight findings)
/// waits before the next attempt at the same generation, before jitter.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(5 * 60);

/// The wait after the `failures`th failure in a row: transient failures 2 s, 4 s, … capped at
/// [`crate::rotation::MAX_BACKOFF`]; permanent ones [`PERMANENT_RETRY`]; both scaled by
/// `jitter` (clamped to `[0.8, 1.2]`) and never shorter than the AS's `Retry-After`.
pub fn delay(
    failures: u32,
    transient: bool,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if transient {
        return retry_delay(failures, true, retry_after, jitter);
    }
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.8, 1.2)
    } else {
        1.0
    };
    let wait = PERMANENT_RETRY.mul_f64(jitter);
    retry_after.map_or(wait, |r| wait.max(r))
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    generation: Option<i64>,
    failures: u32,
    not_before: Timestamp,
}

/// The failure streak of every AS being retried, by AS key.
#[derive(Debug, Default)]
pub struct ServerBackoff {
    failing: Mutex<HashMap<String, Failing>>,
}

impl ServerBackoff {
    /// How long the AS `key` at `generation` must still wait at `now`; `None` when it may be
    /// resolved now (no failure streak, a new generation, or the wait is over).
    pub fn wait(&self, key: &str, generation: Option<i64>, now: Timestamp) -> Option<Duration> {
        let failing = self.lock();
        let f = failing.get(key)?;
        if f.generation != generation || f.not_before <= now {
            return None;
        }
        Duration::try_from(f.not_before.duration_since(now)).ok()
    }

    /// Record a failed resolution of `key` at `generation` at `now`; returns the wait before
    /// the next attempt. A failure at another generation than the streak's starts a new one.
    pub fn failed(
        &self,
        key: &str,
        generation: Option<i64>,
        now: Timestamp,
        transient: bool,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let mut failing = self.lock();
        let failures = match failing.get(key) {
            Some(f) if f.generation == generation => f.failures.saturating_add(1),
            _ => 1,
        };
        let wait = delay(failures, transient, retry_after, jitter);
        let not_before = jiff::SignedDuration::try_from(wait)
            .ok()
            .and_then(|w| now.checked_add(w).ok())
            .unwrap_or(Timestamp::MAX);
        failing.insert(
            key.to_owned(),
            Failing {
                generation,
                failures,
                not_before,
            },
        );
        wait
    }

    /// Forget the streak of `key` (a success, or the AS is gone).
    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).map_or(0, |f| f.failures)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_failing_server_waits_out_its_backoff_whatever_triggers_the_reconcile() {
        let b = ServerBackoff::default();
        assert_eq!(
            b.wait("as/ns/a", Some(1), at(0)),
            None,
            "no streak: resolve now"
        );
        let first = b.failed("as/ns/a", Some(1), at(0), true, None, 1.0);
        assert_eq!(first, Duration::from_secs(2));
        assert_eq!(
            b.wait("as/ns/a", Some(1), at(1)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.wait("as/ns/a", Some(1), at(2)), None, "the wait is over");
        let second = b.failed("as/ns/a", Some(1), at(2), true, None, 1.0);
        assert_eq!(second, Duration::from_secs(4), "exponential");
        assert_eq!(b.wait("as/ns/b", Some(1), at(3)), None, "per AS");
    }

    #[test]
    fn a_new_generation_is_tried_at_once_and_starts_a_new_streak() {
        let b = ServerBackoff::default();
        for i in 0..5 {
            b.failed("k", Some(1), at(i), true, None, 1.0);
        }
        assert!(b.wait("k", Some(1), at(5)).is_some());
        assert_eq!(
            b.wait("k", Some(2), at(5)),
            None,
            "the user changed the spec"
        );
        assert_eq!(
            b.failed("k", Some(2), at(5), true, None, 1.0),
            Duration::from_secs(2)
        );
        b.succeeded("k");
        assert_eq!(b.failures("k"), 0);
        assert_eq!(b.wait("k", Some(2), at(6)), None);
    }

    #[test]
    fn a_permanent_failure_waits_minutes_and_retry_after_is_a_floor() {
        assert_eq!(delay(1, false, None, 1.0), PERMANENT_RETRY);
        assert_eq!(delay(1, false, None, 0.5), PERMANENT_RETRY.mul_f64(0.8));
        assert_eq!(
            delay(1, true, Some(Duration::from_secs(30)), 1.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(40, true, None, 1.2),
            Duration::from_secs(72),
            "capped, plus jitter"
        );
    }

    /// Attempts against an AS that is down (every attempt fails, transient) for `window`,
    /// on a simulated clock, with the jitter `jitter(i)` for the `i`th wait.
    fn attempts_while_down(window: Duration, mut jitter: impl FnMut(u32) -> f64) -> u32 {
        let b = ServerBackoff::default();
        let mut now = at(0);
        let end = at(0) + SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
        let mut attempts = 0;
        while now < end && attempts < 100_000 {
            if let Some(wait) = b.wait("k", Some(1), now) {
                now += SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
                continue;
            }
            attempts += 1;
            b.failed("k", Some(1), now, true, None, jitter(attempts));
        }
        attempts
    }

    /// The figure in docs/reliability.md: an AS down for an hour sees at most 79 discovery
    /// attempts from the AS controller (one a minute once the backoff is capped; fewer with
    /// the jitter above 1), and the same schedule bounds each client's retries.
    #[test]
    fn an_authorization_server_down_for_an_hour_gets_about_one_request_a_minute() {
        let hour = Duration::from_secs(3_600);
        let fastest = attempts_while_down(hour, |_| 0.8);
        let nominal = attempts_while_down(hour, |_| 1.0);
        let slowest = attempts_while_down(hour, |_| 1.2);
        assert_eq!((fastest, nominal, slowest), (79, 64, 54));
        let mut seed = 0x2545_f491_u64;
        let random = attempts_while_down(hour, |_| {
            // xorshift: a reproducible jitter in [0.8, 1.2)
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            0.8 + (seed % 4_000) as f64 / 10_000.0
        });
        assert!((54..=79).contains(&random), "{random}");
    }
}
