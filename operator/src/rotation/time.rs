//! Saturating timestamp arithmetic for the planner: a policy with absurd durations gives
//! far-away instants, never an overflow or a panic. No I/O.

use jiff::{SignedDuration, Timestamp};

/// `t + d`, clamped to the timestamp range.
pub(super) fn after(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `t - d`, clamped to the timestamp range.
pub(super) fn before(t: Timestamp, d: SignedDuration) -> Timestamp {
    after(t, SignedDuration::ZERO.saturating_sub(d))
}

/// `d / n` for a small positive `n`.
pub(super) fn fraction(d: SignedDuration, n: i32) -> SignedDuration {
    d.checked_div(n).unwrap_or(SignedDuration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_at_the_ends_of_time() {
        assert_eq!(after(Timestamp::MAX, SignedDuration::MAX), Timestamp::MAX);
        assert_eq!(before(Timestamp::MIN, SignedDuration::MAX), Timestamp::MIN);
        assert_eq!(before(Timestamp::MAX, SignedDuration::MIN), Timestamp::MAX);
    }

    #[test]
    fn fraction_divides_durations() {
        assert_eq!(
            fraction(SignedDuration::from_secs(300), 3),
            SignedDuration::from_secs(100)
        );
    }
}
