//! The time source of the operator.
//!
//! Contract: decisions never read the system clock themselves; they take a
//! [`jiff::Timestamp`] from a [`Clock`]. Production uses [`SystemClock`]; tests use
//! [`FixedClock`], which only moves when told to. No I/O besides reading the system time in
//! [`SystemClock`].

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until it is set or advanced; safe to share between threads.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<Timestamp>,
}

impl FixedClock {
    /// A clock showing `now`.
    pub fn new(now: Timestamp) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Shows `now` from here on.
    pub fn set(&self, now: Timestamp) {
        *self.lock() = now;
    }

    /// Moves the clock by `by` (negative moves it back), saturating at the ends of the
    /// timestamp range, and returns the new instant.
    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        let mut now = self.lock();
        *now = saturating_add(*now, by);
        *now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A poisoned lock still holds a valid Timestamp: keep going rather than panic.
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Any `Fn() -> Timestamp` is a clock (handy in tests).
impl<F> Clock for F
where
    F: Fn() -> Timestamp + Send + Sync,
{
    fn now(&self) -> Timestamp {
        self()
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

fn saturating_add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn fixed_clock_stands_still_until_told() {
        let clock = FixedClock::new(at(1_000));
        assert_eq!(clock.now(), at(1_000));
        assert_eq!(clock.now(), at(1_000));
    }

    #[test]
    fn fixed_clock_can_be_set_and_advanced() {
        let clock = FixedClock::new(at(1_000));
        clock.set(at(5_000));
        assert_eq!(clock.now(), at(5_000));
        assert_eq!(clock.advance(SignedDuration::from_secs(60)), at(5_060));
        assert_eq!(clock.advance(SignedDuration::from_secs(-10)), at(5_050));
        assert_eq!(clock.now(), at(5_050));
    }

    #[test]
    fn fixed_clock_saturates_instead_of_overflowing() {
        let clock = FixedClock::new(Timestamp::MAX);
        assert_eq!(clock.advance(SignedDuration::MAX), Timestamp::MAX);
        clock.set(Timestamp::MIN);
        assert_eq!(clock.advance(SignedDuration::MIN), Timestamp::MIN);
    }

    #[test]
    fn fixed_clock_is_shareable_as_a_clock_object() {
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(FixedClock::new(at(42)));
        let other = std::sync::Arc::clone(&clock);
        let seen = std::thread::spawn(move || other.now()).join();
        assert_eq!(seen.ok(), Some(at(42)));
    }

    #[test]
    fn system_clock_is_after_the_year_2020() {
        assert!(SystemClock.now() > at(1_577_836_800));
    }
}
