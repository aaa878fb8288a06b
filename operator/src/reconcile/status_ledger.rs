//! The status this process last wrote, per object, so that a status write is skipped only when
//! the API server already holds the same status.
//!
//! The object handed to a reconcile comes from the watch cache, which can lag behind the
//! operator's own last write. Seen after a restart: a first reconcile wrote "waiting for the
//! AuthorizationServer"; the next one, woken a moment later when the AS was resolved, still had
//! the cached object of before the restart (Ready), computed Ready again, found it equal to that
//! stale status and skipped the write. "Waiting" stayed on the server until the next token
//! refresh, minutes later, because a status-only change does not trigger a reconcile. Comparing
//! with what this process wrote last closes that window; comparing with the cached object too
//! restores a status someone else changed.
//!
//! Only a hash per object is kept (no status copies: memory stays flat at 10k clients).
//! Contract: in memory, no I/O.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Mutex,
};

use serde::Serialize;

/// Hashes of the statuses written last, by object key (`<namespace>/<name>`), with the uid of
/// the object they were written to (a re-created object starts afresh).
#[derive(Default)]
pub struct StatusLedger {
    written: Mutex<HashMap<String, (String, u64)>>,
}

fn digest<S: Serialize>(status: &S) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl StatusLedger {
    /// Whether `new` must be written to object `key` (uid `uid`) whose cached status is
    /// `cached`: when it differs from the cached status, or from the status this process wrote
    /// last to that object (the cache may not show that write yet).
    pub fn must_write<S: Serialize + PartialEq>(
        &self,
        key: &str,
        uid: &str,
        cached: &S,
        new: &S,
    ) -> bool {
        if cached != new {
            return true;
        }
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        match written.get(key) {
            Some((u, h)) if u == uid => *h != digest(new),
            _ => false,
        }
    }

    /// Record that `status` was written to object `key` (uid `uid`).
    pub fn wrote<S: Serialize>(&self, key: &str, uid: &str, status: &S) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), (uid.to_owned(), digest(status)));
    }

    /// Forget object `key` (deleted).
    pub fn forget(&self, key: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Keep only the objects for which `keep(key)` holds (after a relist).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(k));
    }

    /// Objects remembered.
    pub fn len(&self) -> usize {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, PartialEq)]
    struct St(&'static str);

    #[test]
    fn a_status_equal_to_a_stale_cache_is_written_when_this_process_wrote_another_since() {
        let ledger = StatusLedger::default();
        // Before the restart the server held Ready; the new process wrote Waiting.
        ledger.wrote("ns/a", "uid-1", &St("waiting"));
        // The cache still shows Ready; the reconcile computes Ready again: it must be written.
        assert!(ledger.must_write("ns/a", "uid-1", &St("ready"), &St("ready")));
        ledger.wrote("ns/a", "uid-1", &St("ready"));
        assert!(!ledger.must_write("ns/a", "uid-1", &St("ready"), &St("ready")));
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let ledger = StatusLedger::default();
        assert!(!ledger.must_write("ns/a", "uid-1", &St("ready"), &St("ready")));
        ledger.wrote("ns/a", "uid-1", &St("ready"));
        assert!(!ledger.must_write("ns/a", "uid-1", &St("ready"), &St("ready")));
    }

    #[test]
    fn a_status_changed_by_someone_else_is_restored() {
        let ledger = StatusLedger::default();
        ledger.wrote("ns/a", "uid-1", &St("ready"));
        assert!(ledger.must_write("ns/a", "uid-1", &St("edited"), &St("ready")));
    }

    #[test]
    fn a_recreated_object_or_a_forgotten_one_starts_afresh() {
        let ledger = StatusLedger::default();
        ledger.wrote("ns/a", "uid-1", &St("waiting"));
        assert!(!ledger.must_write("ns/a", "uid-2", &St("ready"), &St("ready")));
        ledger.forget("ns/a");
        assert!(ledger.is_empty());
        ledger.wrote("ns/a", "uid-1", &St("waiting"));
        ledger.wrote("ns/b", "uid-2", &St("waiting"));
        ledger.retain(|k| k == "ns/b");
        assert_eq!(ledger.len(), 1);
    }
}
