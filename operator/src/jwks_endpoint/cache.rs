//! The public JWK sets served, by (namespace, TppClient), each rendered once with its ETag.
//! Filled from `<name>-keys` Secrets by the watch ([`super::watch`]); a relist replaces the
//! entries of its scope at its end, so a client deleted while the watch was down disappears.
//! Only public material is kept. No I/O.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, RwLock},
};

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use crate::{
    hex::hex,
    store::{layout, state::KeysState},
};

/// (namespace, TppClient name).
pub type Key = (String, String);

/// One rendered JWK set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The JSON body.
    pub body: Arc<str>,
    /// A strong ETag (quoted) of the body.
    pub etag: Arc<str>,
}

impl Document {
    /// Render `json` with its ETag.
    pub fn new(json: String) -> Self {
        let digest = Sha256::digest(json.as_bytes());
        let etag = format!("\"{}\"", hex(&digest[..16]));
        Self {
            body: json.into(),
            etag: etag.into(),
        }
    }
}

/// The answer to a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The client's public set.
    Found(Document),
    /// No such client (or no key state yet) in a scope whose list is complete.
    NotFound,
    /// The watch covering that namespace has not listed yet (just after start).
    NotSynced,
}

/// See the module docs.
#[derive(Default)]
pub struct ServedJwks {
    inner: RwLock<Inner>,
    /// The scopes the watch covers (empty: one cluster-wide scope).
    scopes: Vec<Option<String>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Document>,
    /// Scopes (a namespace, `None` for all) whose list has completed at least once.
    listed: HashSet<Option<String>>,
    /// Entries of a relist under way, by scope.
    relisting: HashMap<Option<String>, HashMap<Key, Document>>,
}

fn in_scope(scope: Option<&str>, namespace: &str) -> bool {
    scope.is_none_or(|s| s == namespace)
}

/// The TppClient a `<name>-keys` Secret belongs to, and its public set: `None` for a Secret
/// that is not one of our key states (other component, name not `<client>-keys`), `Some(Err)`
/// for one whose state cannot be read.
pub fn document_of(secret: &Secret) -> Option<(Key, Result<Document, String>)> {
    let labels = secret.metadata.labels.as_ref()?;
    if !layout::is_managed(&secret.metadata) || labels.get(layout::COMPONENT_LABEL)? != "keys" {
        return None;
    }
    let client = labels.get(layout::CLIENT_LABEL)?;
    let namespace = secret.metadata.namespace.clone()?;
    if secret.metadata.name.as_deref() != Some(layout::keys_name(client).as_str()) {
        return None;
    }
    let key = (namespace, client.clone());
    let doc = KeysState::from_secret(Some(secret))
        .map_err(|e| format!("state.json: {e}"))
        .and_then(|state| {
            let kids: BTreeSet<String> = state.visible_kids();
            state
                .public_jwks(&kids)
                .map_err(|(stage, e)| format!("{stage}: {e}"))
        })
        .and_then(|set| serde_json::to_string_pretty(&set).map_err(|e| e.to_string()))
        .map(Document::new);
    Some((key, doc))
}

impl ServedJwks {
    /// Sets for the watch of `namespaces` (empty: every namespace).
    pub fn for_namespaces(namespaces: &[String]) -> Self {
        Self {
            scopes: namespaces.iter().cloned().map(Some).collect(),
            ..Default::default()
        }
    }

    /// Whether every scope of the watch has listed once (`/readyz` waits for it, so that a
    /// replica does not receive `/jwks` traffic it would answer `503`).
    pub fn synced(&self) -> bool {
        let inner = self.read();
        if self.scopes.is_empty() {
            inner.listed.contains(&None)
        } else {
            self.scopes.iter().all(|s| inner.listed.contains(s))
        }
    }

    /// Wait (polling every 100 ms) until [`Self::synced`], at most `bound`; whether it synced.
    /// The controllers wait for it before their first AS call: a client whose `jwks_uri` is
    /// this server must not ask for a token while the server still answers `503` (the AS
    /// fetches the keys during the request and answers `invalid_client`, a permanent error),
    /// which is what a restart did when a refresh was due (found by the campaign,
    /// docs/reliability.md).
    pub async fn wait_synced(&self, bound: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        while !self.synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        true
    }

    /// The set of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Lookup {
        let inner = self.read();
        if let Some(d) = inner.entries.get(&(namespace.to_owned(), name.to_owned())) {
            return Lookup::Found(d.clone());
        }
        let listed = inner.listed.contains(&None) || inner.listed.contains(&Some(namespace.into()));
        if listed {
            Lookup::NotFound
        } else {
            Lookup::NotSynced
        }
    }

    /// A `<name>-keys` Secret was created or changed (`scope`'s list under way: held until
    /// it completes).
    pub fn apply(&self, scope: Option<&str>, secret: &Secret) {
        self.insert(scope, document_of(secret));
    }

    /// [`ServedJwks::apply`] with the document already computed by [`document_of`] (the
    /// watch computes it off the async runtime: parsing keys costs CPU).
    pub fn insert(&self, scope: Option<&str>, document: Option<(Key, Result<Document, String>)>) {
        let Some((key, doc)) = document else {
            return;
        };
        let mut inner = self.write();
        let relisting = inner.relisting.get_mut(&scope.map(str::to_owned));
        match (doc, relisting) {
            (Ok(doc), Some(pending)) => {
                pending.insert(key, doc);
            }
            (Ok(doc), None) => {
                inner.entries.insert(key, doc);
            }
            (Err(e), _) => {
                tracing::warn!(namespace = %key.0, name = %key.1, error = %e, "the persisted key state cannot be served");
                if let Some(p) = inner.relisting.get_mut(&scope.map(str::to_owned)) {
                    p.remove(&key);
                }
                inner.entries.remove(&key);
            }
        }
    }

    /// A `<name>-keys` Secret was deleted.
    pub fn delete(&self, secret: &Secret) {
        if let (Some(ns), Some(client)) = (
            secret.metadata.namespace.clone(),
            secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(layout::CLIENT_LABEL))
                .cloned(),
        ) {
            self.write().entries.remove(&(ns, client));
        }
    }

    /// The watch of `scope` (re)starts listing.
    pub fn relist_started(&self, scope: Option<&str>) {
        self.write()
            .relisting
            .insert(scope.map(str::to_owned), HashMap::new());
    }

    /// The list of `scope` is complete: its entries are exactly what it reported.
    pub fn relist_done(&self, scope: Option<&str>) {
        let mut inner = self.write();
        let fresh = inner
            .relisting
            .remove(&scope.map(str::to_owned))
            .unwrap_or_default();
        inner.entries.retain(|k, _| !in_scope(scope, &k.0));
        inner.entries.extend(fresh);
        inner.listed.insert(scope.map(str::to_owned));
    }

    /// How many sets are served.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ObjectMeta;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::{
        identity::{KeyAlgorithm, PrivateKey},
        redact::Sensitive,
        rotation::{KeyRecord, KeyState, KeyUse},
        store::state::StoredKey,
    };

    fn key(state: KeyState) -> (String, StoredKey) {
        let k = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        let kid = k.kid().to_owned();
        let stored = StoredKey {
            record: KeyRecord {
                kid: kid.clone(),
                use_: KeyUse::Sig,
                state,
                created_at: Timestamp::UNIX_EPOCH,
                published_at: None,
                activated_at: None,
                retiring_at: None,
            },
            alg: "ES256".into(),
            private_jwk: Sensitive::new(k.to_private_jwk_json().unwrap().expose_secret().into()),
        };
        (kid, stored)
    }

    fn keys_secret(ns: &str, client: &str, name: &str, keys: Vec<StoredKey>) -> Secret {
        let state = KeysState {
            keys,
            ..Default::default()
        };
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(layout::labels(client, "keys", None)),
                ..Default::default()
            },
            data: Some(state.to_data()),
            ..Default::default()
        }
    }

    fn kids(doc: &Document) -> BTreeSet<String> {
        let v: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn serves_the_public_keys_of_the_persisted_state_but_not_pending_ones() {
        let served = ServedJwks::default();
        let (active, a) = key(KeyState::Active);
        let (pending, p) = key(KeyState::Pending);
        let (retiring, r) = key(KeyState::Retiring);
        served.relist_started(Some("ns"));
        served.apply(
            Some("ns"),
            &keys_secret("ns", "pay", "pay-keys", vec![a, p, r]),
        );
        assert_eq!(
            served.get("ns", "pay"),
            Lookup::NotSynced,
            "held until the list completes"
        );
        served.relist_done(Some("ns"));
        let Lookup::Found(doc) = served.get("ns", "pay") else {
            panic!("not served")
        };
        assert_eq!(kids(&doc), BTreeSet::from([active, retiring]));
        assert!(!pending.is_empty());
        assert!(!doc.body.contains("\"d\""), "a private member was served");
        assert_eq!(served.get("ns", "other"), Lookup::NotFound);
        assert_eq!(served.get("elsewhere", "pay"), Lookup::NotSynced);
    }

    #[test]
    fn synced_once_every_watched_namespace_has_listed() {
        let served = ServedJwks::for_namespaces(&["a".into(), "b".into()]);
        assert!(!served.synced());
        served.relist_started(Some("a"));
        served.relist_done(Some("a"));
        assert!(!served.synced());
        served.relist_started(Some("b"));
        served.relist_done(Some("b"));
        assert!(served.synced());
        let all = ServedJwks::default();
        assert!(!all.synced());
        all.relist_started(None);
        all.relist_done(None);
        assert!(all.synced());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_sync_ends_when_the_list_completes_or_at_the_bound() {
        let served = std::sync::Arc::new(ServedJwks::for_namespaces(&["a".into()]));
        let bound = std::time::Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        assert!(!served.wait_synced(bound).await, "never listed: gives up");
        assert!(started.elapsed() >= bound);
        let waiter = tokio::spawn({
            let served = served.clone();
            async move { served.wait_synced(bound).await }
        });
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert!(!waiter.is_finished(), "returned before the list completed");
        served.relist_started(Some("a"));
        served.relist_done(Some("a"));
        assert!(waiter.await.unwrap_or(false), "synced once listed");
    }

    #[test]
    fn the_etag_follows_the_content() {
        assert_eq!(Document::new("a".into()), Document::new("a".into()));
        assert_ne!(
            Document::new("a".into()).etag,
            Document::new("b".into()).etag
        );
        assert!(Document::new("a".into()).etag.starts_with('"'));
    }

    #[test]
    fn secrets_that_are_not_a_clients_key_state_are_ignored() {
        let served = ServedJwks::default();
        served.relist_started(None);
        let (_, a) = key(KeyState::Active);
        // Named for another client than its label says.
        served.apply(
            None,
            &keys_secret("ns", "pay", "other-keys", vec![a.clone()]),
        );
        // Another component.
        let mut creds = keys_secret("ns", "pay", "pay-keys", vec![a.clone()]);
        creds.metadata.labels = Some(layout::labels("pay", "credentials", None));
        served.apply(None, &creds);
        // Not ours.
        let mut foreign = keys_secret("ns", "pay", "pay-keys", vec![a]);
        foreign.metadata.labels = Some(BTreeMap::from([(
            layout::CLIENT_LABEL.to_owned(),
            "pay".to_owned(),
        )]));
        served.apply(None, &foreign);
        served.relist_done(None);
        assert!(served.is_empty());
        assert_eq!(served.get("ns", "pay"), Lookup::NotFound);
    }

    #[test]
    fn a_change_replaces_the_set_and_a_deletion_or_relist_drops_it() {
        let served = ServedJwks::default();
        served.relist_started(None);
        served.relist_done(None);
        let (first, a) = key(KeyState::Active);
        served.apply(None, &keys_secret("ns", "pay", "pay-keys", vec![a.clone()]));
        let (second, b) = key(KeyState::Published);
        served.apply(
            None,
            &keys_secret("ns", "pay", "pay-keys", vec![a, b.clone()]),
        );
        let Lookup::Found(doc) = served.get("ns", "pay") else {
            panic!("not served")
        };
        assert_eq!(kids(&doc), BTreeSet::from([first, second]));
        served.delete(&keys_secret("ns", "pay", "pay-keys", vec![]));
        assert_eq!(served.get("ns", "pay"), Lookup::NotFound);

        served.apply(None, &keys_secret("ns", "gone", "gone-keys", vec![b]));
        served.relist_started(None);
        served.relist_done(None);
        assert_eq!(
            served.get("ns", "gone"),
            Lookup::NotFound,
            "deleted while the watch was down"
        );
    }

    #[test]
    fn an_unreadable_state_is_not_served() {
        let served = ServedJwks::default();
        served.relist_started(None);
        served.relist_done(None);
        let (_, a) = key(KeyState::Active);
        served.apply(None, &keys_secret("ns", "pay", "pay-keys", vec![a]));
        let mut broken = keys_secret("ns", "pay", "pay-keys", vec![]);
        broken.data = Some(BTreeMap::from([(
            crate::store::state::KEYS_STATE_KEY.to_owned(),
            k8s_openapi::ByteString(b"{not json".to_vec()),
        )]));
        served.apply(None, &broken);
        assert_eq!(served.get("ns", "pay"), Lookup::NotFound);
    }
}
