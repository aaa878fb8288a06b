//! Admission of key generation: a reconcile that must generate keys or a certificate (a new
//! client, a rotation) takes one of a few slots first, or is deferred. Without it, applying
//! thousands of TppClients at once fills every controller slot with reconciles waiting for the
//! two-core crypto pool, and the token refreshes of clients already running — due later, so
//! queued behind the whole backlog — are served only once it drains: tokens expire. With it,
//! the other controller slots stay free for refreshes. Deferred clients retry at a random
//! point within the backlog's estimated drain time, so retries stay at a few per second
//! whatever the backlog. No I/O.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// CPU time of one client's key generation on one core (two RSA-2048 keys), an estimate for
/// the drain time only.
const KEYGEN_PER_CLIENT: Duration = Duration::from_millis(150);
/// Bounds of a deferral.
const MIN_DEFER: Duration = Duration::from_millis(500);
const MAX_DEFER: Duration = Duration::from_secs(300);

/// See the module docs.
pub struct KeygenAdmission {
    slots: Arc<Semaphore>,
    workers: usize,
    deferred: Mutex<HashSet<String>>,
}

impl KeygenAdmission {
    /// `slots` reconciles may generate at once, on `workers` crypto threads.
    pub fn new(slots: usize, workers: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            workers: workers.max(1),
            deferred: Mutex::new(HashSet::new()),
        }
    }

    /// The slots for a controller of `concurrency` on `workers` crypto threads: enough to keep
    /// the crypto pool busy through the network steps of onboarding, and at least four
    /// controller slots left for everything else.
    pub fn for_controller(concurrency: usize, workers: usize) -> Self {
        let slots = (workers * 3)
            .max(2)
            .min(concurrency.saturating_sub(4).max(1));
        Self::new(slots, workers)
    }

    /// A slot for `key`, or how long to wait before trying again.
    pub fn admit(&self, key: &str) -> Result<OwnedSemaphorePermit, Duration> {
        let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                deferred.remove(key);
                Ok(permit)
            }
            Err(_) => {
                deferred.insert(key.to_owned());
                Err(defer_for(
                    deferred.len(),
                    self.workers,
                    rand::random::<f64>(),
                ))
            }
        }
    }

    /// Forget `key` (deleted while deferred).
    pub fn forget(&self, key: &str) {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Clients waiting for a slot.
    pub fn backlog(&self) -> usize {
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// A point in `[MIN_DEFER, drain]` (`u` in `0..1`), where `drain` is how long `backlog`
/// clients take on `workers` threads.
fn defer_for(backlog: usize, workers: usize, u: f64) -> Duration {
    let drain = KEYGEN_PER_CLIENT
        .mul_f64(backlog as f64 / workers as f64)
        .clamp(MIN_DEFER, MAX_DEFER);
    MIN_DEFER + (drain - MIN_DEFER).mul_f64(u.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_as_many_reconciles_as_slots_generate_and_the_rest_are_deferred() {
        let a = KeygenAdmission::new(2, 2);
        let p1 = a.admit("a").expect("slot");
        let _p2 = a.admit("b").expect("slot");
        assert!(a.admit("c").is_err());
        assert!(a.admit("d").is_err());
        assert_eq!(a.backlog(), 2);
        drop(p1);
        let _p3 = a.admit("c").expect("a freed slot");
        assert_eq!(a.backlog(), 1, "an admitted client leaves the backlog");
        a.forget("d");
        assert_eq!(a.backlog(), 0);
    }

    #[test]
    fn deferrals_spread_over_the_backlogs_drain_time() {
        assert_eq!(defer_for(1, 2, 1.0), MIN_DEFER);
        // 1,000 waiting on 2 threads drain in ~75 s: retries land anywhere in it.
        assert_eq!(defer_for(1000, 2, 0.0), MIN_DEFER);
        assert_eq!(defer_for(1000, 2, 1.0), Duration::from_secs(75));
        assert_eq!(defer_for(100_000, 2, 1.0), MAX_DEFER);
    }

    #[test]
    fn a_controller_keeps_slots_free_for_refreshes() {
        assert_eq!(
            KeygenAdmission::for_controller(16, 2)
                .slots
                .available_permits(),
            6
        );
        assert_eq!(
            KeygenAdmission::for_controller(6, 2)
                .slots
                .available_permits(),
            2
        );
        assert_eq!(
            KeygenAdmission::for_controller(2, 8)
                .slots
                .available_permits(),
            1
        );
    }
}
