//! The last known content of each Secret the operator manages, so a reconcile (a token refresh
//! above all) reads its three Secrets from memory instead of three GETs. An entry comes from a
//! GET or from the answer to our own apply; it is dropped when the metadata watch of our
//! Secrets reports a write by anyone else, a deletion, or a relist. Memory: the Secret's data
//! and labels only (no managedFields).
//!
//! Beside it, the names of every managed Secret the watch has listed: once the watch has
//! listed, a name neither cached nor listed is absent without a GET (a new client's first
//! reconcile reads nothing). No I/O.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::layout;

type Key = (String, String);

/// See the module docs.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<Key, Arc<Secret>>>,
    names: Mutex<Names>,
}

#[derive(Default)]
struct Names {
    /// Every managed Secret the watch reported and did not report deleted.
    known: HashSet<Key>,
    /// The watches that completed a list since they (re)started: a namespace, or `None` for
    /// a cluster-wide watch.
    listed: HashSet<Option<String>>,
}

/// Whether `namespace` is in a watch's `scope`.
fn in_scope(scope: Option<&str>, namespace: &str) -> bool {
    scope.is_none_or(|s| s == namespace)
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_owned(), name.to_owned())
}

impl SecretCache {
    /// The cached Secret, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.lock().get(&key(namespace, name)).cloned()
    }

    /// Remember `secret` (read from or written to the API). Only our own Secrets are kept:
    /// others (a user's certificate, an initial access token) are not watched, so a change
    /// to them could not invalidate the entry.
    pub fn remember(&self, namespace: &str, secret: &Secret) {
        if !layout::is_managed(&secret.metadata) {
            return;
        }
        let Some(name) = secret.metadata.name.clone() else { return };
        let slim = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: secret.metadata.namespace.clone(),
                resource_version: secret.metadata.resource_version.clone(),
                labels: secret.metadata.labels.clone(),
                ..Default::default()
            },
            data: secret.data.clone(),
            type_: secret.type_.clone(),
            ..Default::default()
        };
        self.lock().insert((namespace.to_owned(), name), Arc::new(slim));
    }

    /// Drop one entry (written by someone else, or deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&key(namespace, name));
    }

    /// The watch of `scope` (a namespace, `None` for all) (re)starts listing: drop its
    /// entries (deletions in the gap were not seen) and its names until the list is complete.
    pub fn clear(&self, scope: Option<&str>) {
        self.lock().retain(|(ns, _), _| !in_scope(scope, ns));
        let mut names = self.names();
        names.known.retain(|(ns, _)| !in_scope(scope, ns));
        names.listed.remove(&scope.map(str::to_owned));
    }

    /// The watch reported `namespace/name` (listed, created or changed).
    pub fn seen(&self, namespace: &str, name: &str) {
        self.names().known.insert(key(namespace, name));
    }

    /// The watch reported `namespace/name` deleted.
    pub fn gone(&self, namespace: &str, name: &str) {
        self.forget(namespace, name);
        self.names().known.remove(&key(namespace, name));
    }

    /// The watch of `scope` finished its list.
    pub fn listed(&self, scope: Option<&str>) {
        self.names().listed.insert(scope.map(str::to_owned));
    }

    /// Whether `namespace/name` is known not to exist: the watch has listed, never reported
    /// it (or reported it deleted), and no write of ours put it in the cache since.
    pub fn known_absent(&self, namespace: &str, name: &str) -> bool {
        let k = key(namespace, name);
        let names = self.names();
        let listed = names.listed.contains(&None) || names.listed.contains(&Some(namespace.to_owned()));
        listed && !names.known.contains(&k) && !self.lock().contains_key(&k)
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many Secrets are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Secret>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(name: &str, managed: bool) -> Secret {
        let labels = managed.then(|| layout::labels("c", "keys", None));
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some("7".into()),
                labels,
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("k".to_owned(), ByteString(b"v".to_vec()))])),
            ..Default::default()
        }
    }

    #[test]
    fn a_remembered_secret_is_returned_without_its_managed_fields() {
        let cache = SecretCache::default();
        cache.remember("ns", &secret("c-keys", true));
        let got = cache.get("ns", "c-keys").expect("cached");
        assert_eq!(got.metadata.resource_version.as_deref(), Some("7"));
        assert!(got.metadata.managed_fields.is_none());
        assert_eq!(got.data.as_ref().unwrap()["k"].0, b"v");
        assert!(cache.get("other", "c-keys").is_none());
    }

    #[test]
    fn secrets_the_operator_does_not_manage_are_not_kept() {
        let cache = SecretCache::default();
        cache.remember("ns", &secret("user-cert", false));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_name_is_known_absent_only_after_a_complete_list() {
        let cache = SecretCache::default();
        assert!(!cache.known_absent("ns", "c-keys"), "before the list nothing is known");
        cache.clear(Some("ns"));
        cache.seen("ns", "c-registration");
        cache.listed(Some("ns"));
        assert!(!cache.known_absent("other", "c-keys"), "another namespace's watch has not listed");
        assert!(cache.known_absent("ns", "c-keys"));
        assert!(!cache.known_absent("ns", "c-registration"));
        cache.remember("ns", &secret("c-keys", true));
        assert!(!cache.known_absent("ns", "c-keys"), "our own write is not absent before its watch event");
        cache.gone("ns", "c-keys");
        assert!(cache.known_absent("ns", "c-keys"));
        cache.seen("other", "x");
        cache.listed(Some("other"));
        cache.clear(Some("ns"));
        assert!(!cache.known_absent("ns", "c-keys"), "a relist forgets what was known");
        assert!(!cache.known_absent("other", "x"), "a relist of one namespace keeps the others");
    }

    #[test]
    fn forget_and_clear_drop_entries() {
        let cache = SecretCache::default();
        cache.remember("ns", &secret("a", true));
        cache.remember("ns", &secret("b", true));
        cache.forget("ns", "a");
        assert!(cache.get("ns", "a").is_none());
        assert_eq!(cache.len(), 1);
        cache.clear(None);
        assert!(cache.is_empty());
    }
}
