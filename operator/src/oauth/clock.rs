//! The time source of the oauth client: a tiny trait so tests can fix "now". No I/O.
//!
//! Kept local to `oauth` and replaceable by the crate-wide clock: any type giving a
//! [`jiff::Timestamp`] can implement it.

use jiff::Timestamp;

/// Gives the current time. Production uses [`SystemClock`]; tests use a fixed clock.
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

impl<F> Clock for F
where
    F: Fn() -> Timestamp + Send + Sync,
{
    fn now(&self) -> Timestamp {
        self()
    }
}
