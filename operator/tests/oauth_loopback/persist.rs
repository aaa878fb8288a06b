//! Registration persistence for the tests: a [`Store`] that can fail its first writes (an API
//! server hiccup, or the process dying before the write landed) and a [`Persister`] that writes
//! into it once or with bounded retries, recording every RAT it sees for the redaction check.
//! In memory; no I/O.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret as _;
use tpp_operator::oauth::{PersistError, Registration, RegistrationPersister};

use super::support::Recorder;

/// The durable store behind a persister: what was written, and how many writes to fail.
#[derive(Default)]
pub struct Store {
    pub written: Mutex<Vec<Registration>>,
    pub attempts: AtomicUsize,
    fail_first: usize,
}

impl Store {
    /// A store whose first `n` writes fail (an API server hiccup, or the process dying before
    /// the write landed).
    pub fn failing_first(n: usize) -> Self {
        Self {
            fail_first: n,
            ..Self::default()
        }
    }

    fn write(&self, registration: &Registration) -> Result<(), PersistError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.fail_first {
            return Err(PersistError::new(
                "registration secret could not be written",
            ));
        }
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(registration.clone());
        Ok(())
    }

    /// The RATs written, oldest first.
    pub fn rats(&self) -> Vec<String> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|r| r.registration_access_token.as_ref())
            .map(|t| t.expose_secret().to_owned())
            .collect()
    }

    /// The last registration written.
    pub fn last(&self) -> Option<Registration> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }
}

/// Persists into a [`Store`] with one attempt (`retries` = 0) or up to `1 + retries`.
pub struct Persister {
    pub store: Arc<Store>,
    retries: usize,
    rec: Arc<Recorder>,
}

impl Persister {
    pub fn new(store: Arc<Store>, rec: Arc<Recorder>) -> Self {
        Self {
            store,
            retries: 0,
            rec,
        }
    }

    /// Retries a failed write up to `retries` more times, as a production persister should.
    pub fn retrying(store: Arc<Store>, retries: usize, rec: Arc<Recorder>) -> Self {
        Self {
            store,
            retries,
            rec,
        }
    }
}

impl RegistrationPersister for Persister {
    async fn persist(&self, registration: &Registration) -> Result<(), PersistError> {
        if let Some(rat) = &registration.registration_access_token {
            self.rec.secret(rat.expose_secret());
        }
        self.rec.text(format!("{registration:?}"));
        let mut last = None;
        for _ in 0..=self.retries {
            match self.store.write(registration) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PersistError::new("no attempt made")))
    }
}
