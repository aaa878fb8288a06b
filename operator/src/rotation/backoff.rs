//! When to try again after a failed reconcile: exponential backoff for transient failures,
//! never shorter than the AS's `Retry-After`, a long pause for permanent ones. The reconciler
//! records `now +` this delay as [`Observed::backoff_until`](super::Observed), so a reconcile
//! triggered earlier (a spec or Secret change) still plans no AS call before it. Pure: the
//! jitter is an argument.

use std::time::Duration;

/// The longest transient backoff: well inside a token's lifetime, so a transient failure
/// never outlasts a token.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The pause after a permanent failure (a changed spec triggers a reconcile sooner).
pub const PERMANENT_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The delay after the `failures`th failure in a row: 2 s, 4 s, ... capped at
/// [`MAX_BACKOFF`], scaled by `jitter` (clamped to `[0.8, 1.2]`), and never shorter than
/// `retry_after`. A permanent failure waits [`PERMANENT_PAUSE`].
pub fn retry_delay(
    failures: u32,
    transient: bool,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if !transient {
        return retry_after.map_or(PERMANENT_PAUSE, |r| r.max(PERMANENT_PAUSE));
    }
    let base = 2u64
        .saturating_pow(failures.min(16))
        .min(MAX_BACKOFF.as_secs());
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.8, 1.2)
    } else {
        1.0
    };
    let delay = Duration::from_secs_f64(base as f64 * jitter);
    retry_after.map_or(delay, |r| delay.max(r))
}

/// The shortest wait [`within_token_life`] leaves.
const MIN_WAIT_BEFORE_EXPIRY: Duration = Duration::from_secs(1);

/// A transient failure's `delay` capped so that the next attempt comes while the client's
/// earliest token is still valid: at most half the time left before `earliest_expiry` (at
/// least a second). An AS's `Retry-After` is honoured up to the token's refresh window, never
/// past it (issue 13, item 8): with 90 s tokens refreshed 30 s before expiry, a `Retry-After:
/// 60` would otherwise let the token expire. `None` (no token yet) or a permanent failure keeps
/// `delay`.
pub fn within_token_life(
    delay: Duration,
    transient: bool,
    earliest_expiry: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Duration {
    let Some(expiry) = earliest_expiry.filter(|_| transient) else {
        return delay;
    };
    let left = expiry.duration_since(now);
    if !left.is_positive() {
        return delay;
    }
    let half = Duration::try_from(left).unwrap_or(Duration::ZERO) / 2;
    delay.min(half.max(MIN_WAIT_BEFORE_EXPIRY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap_or_default()
    }

    #[test]
    fn a_retry_after_longer_than_the_tokens_remaining_life_is_cut_to_half_of_it() {
        // 30 s left: Retry-After 60 would let the token expire; the retry comes at 15 s.
        assert_eq!(
            within_token_life(Duration::from_secs(60), true, Some(at(130)), at(100)),
            Duration::from_secs(15)
        );
        // Plenty left: the delay stands.
        assert_eq!(
            within_token_life(Duration::from_secs(60), true, Some(at(1_000)), at(100)),
            Duration::from_secs(60)
        );
        // Almost expired: at least a second.
        assert_eq!(
            within_token_life(Duration::from_secs(60), true, Some(at(101)), at(100)),
            MIN_WAIT_BEFORE_EXPIRY
        );
    }

    #[test]
    fn permanent_failures_expired_tokens_and_clients_without_tokens_keep_their_delay() {
        let d = Duration::from_secs(60);
        assert_eq!(within_token_life(d, false, Some(at(130)), at(100)), d);
        assert_eq!(within_token_life(d, true, None, at(100)), d);
        assert_eq!(within_token_life(d, true, Some(at(90)), at(100)), d);
    }

    #[test]
    fn transient_backoff_doubles_then_caps_at_a_minute_with_jitter() {
        assert_eq!(retry_delay(1, true, None, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(3, true, None, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(30, true, None, 1.0), MAX_BACKOFF);
        assert_eq!(
            retry_delay(30, true, None, 5.0),
            Duration::from_secs(72),
            "jitter is clamped to +20 %"
        );
        assert_eq!(retry_delay(30, true, None, f64::NAN), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_is_a_floor_for_transient_and_permanent_failures() {
        let hour = Duration::from_secs(3_600);
        assert_eq!(retry_delay(1, true, Some(hour), 1.0), hour);
        assert_eq!(retry_delay(1, false, Some(hour), 1.0), hour);
        assert_eq!(retry_delay(1, false, None, 1.0), PERMANENT_PAUSE);
    }
}
