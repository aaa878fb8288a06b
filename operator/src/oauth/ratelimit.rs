//! Per-AS token-bucket rate limiting (requests/second + burst) shared by every client of one
//! authorization server, on the `governor` crate. No network I/O; waiting is async and never
//! an error.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A token bucket: `per_second` sustained requests, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Largest burst.
    pub burst: NonZeroU32,
}

/// A shared limiter; cloning shares the bucket.
#[derive(Clone)]
pub struct Limiter(Arc<DefaultDirectRateLimiter>);

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl Limiter {
    /// A fresh bucket, initially full.
    pub fn new(rate: RateLimit) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Self(Arc::new(RateLimiter::direct(quota)))
    }

    /// Waits until a request may go out.
    pub async fn until_ready(&self) {
        self.0.until_ready().await;
    }

    /// Takes a permit without waiting; false when the bucket is empty.
    pub fn try_acquire(&self) -> bool {
        self.0.check().is_ok()
    }
}

/// The limiters of every AS, keyed by an AS identity (e.g. `namespace/name` of the
/// AuthorizationServer object). A changed rate replaces the bucket.
#[derive(Debug, Default)]
pub struct AsLimiters {
    inner: Mutex<HashMap<String, (RateLimit, Limiter)>>,
}

impl AsLimiters {
    /// The limiter shared by all clients of `as_key` at `rate`.
    pub fn get(&self, as_key: &str, rate: RateLimit) -> Limiter {
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get(as_key) {
            Some((existing, limiter)) if *existing == rate => limiter.clone(),
            _ => {
                let limiter = Limiter::new(rate);
                map.insert(as_key.to_owned(), (rate, limiter.clone()));
                limiter
            }
        }
    }

    /// Drops the limiter of an AS that no longer exists.
    pub fn remove(&self, as_key: &str) {
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(as_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_second: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    #[test]
    fn clients_of_one_as_share_one_bucket() {
        let limiters = AsLimiters::default();
        let a = limiters.get("ns/as", rate(1, 2));
        let b = limiters.get("ns/as", rate(1, 2));
        assert!(a.try_acquire());
        assert!(b.try_acquire());
        assert!(!a.try_acquire(), "burst of 2 is spent across both handles");
        let other = limiters.get("ns/other", rate(1, 2));
        assert!(other.try_acquire(), "another AS has its own bucket");
    }

    #[test]
    fn a_changed_rate_replaces_the_bucket() {
        let limiters = AsLimiters::default();
        let a = limiters.get("ns/as", rate(1, 1));
        assert!(a.try_acquire());
        let b = limiters.get("ns/as", rate(1, 3));
        assert!(b.try_acquire());
    }

    #[tokio::test]
    async fn waiting_for_a_permit_completes_without_error() {
        let limiter = Limiter::new(rate(50, 1));
        let start = std::time::Instant::now();
        limiter.until_ready().await;
        limiter.until_ready().await;
        assert!(start.elapsed() >= std::time::Duration::from_millis(10));
    }
}
