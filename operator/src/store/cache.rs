//! The last known content of each Secret the operator manages, so a reconcile (a token refresh
//! above all) reads its three Secrets from memory instead of three GETs. An entry comes from a
//! GET or from the answer to our own apply; it is dropped when the metadata watch of our
//! Secrets reports a write by anyone else, a deletion, or a relist. Memory: the Secret's data,
//! labels, finalizers, owner references and deletion timestamp only (no managedFields of ours),
//! in a compact `Entry`: boxed slices instead of maps, no allocation for the operator's own
//! names (label keys, data keys, the finalizer), and none of the credentials keys every write
//! rebuilds (`REBUILT`), and each value's base64 text held as the bytes it encodes
//! ([`super::pack`]). Measured per client in `operator/tests/secret_cache_memory.rs`
//! (BENCHMARKS.md, "Issue 16").
//!
//! Beside it, the name and resourceVersion of every managed Secret the watch has listed: once
//! the watch has listed, a name neither cached nor listed holds none of our Secrets, without a
//! GET. An unlabelled Secret of someone else may still have the name, so claiming a name for a
//! write needs one GET per name, once ([`SecretCache::checked_absent`], docs/security.md). A relist of the watch keeps every entry whose
//! resourceVersion it confirms and drops the rest. At start the cache is filled by one paged
//! LIST ([`super::Store::warm`]) instead of three GETs per client. No I/O.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Mutex,
};

use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference, Time},
};
use kube::api::ObjectMeta;

use super::{
    layout::{self, credentials as ck},
    ownership::{NameConflict, Writer},
    pack,
    state::{KEYS_STATE_KEY, rk},
};

type Key = (String, String);

/// Keys of `<name>-credentials` the cache does not hold: every write rebuilds them from
/// `<name>-keys`, `<name>-registration` and the AS, and no reconcile reads them back (the
/// private keys and the CA bundle are half of the Secret). The Secret's readers are the
/// reconcile (`store::state::Credentials::from_secret`: `tls.crt`, `signing.kid`, the tokens;
/// `tls.key` of a certificate kept for its tokens is read by a GET) and the consumers' restart
/// fingerprint (`tls.crt`, `signing.kid`, `*.expires_at`).
pub(crate) const REBUILT: [&str; 6] = [
    ck::TLS_KEY,
    ck::SIGNING_KEY,
    ck::CA_CRT,
    ck::CLIENT_ID,
    ck::ISSUER,
    ck::TOKEN_ENDPOINT,
];

/// The names every entry repeats (label keys and values, data keys, the finalizer, the Secret
/// types, the owner's kind): held as `&'static str`, without an allocation per entry.
const KNOWN: [&str; 30] = [
    layout::MANAGED_BY_LABEL,
    layout::MANAGED_BY,
    layout::CLIENT_LABEL,
    layout::COMPONENT_LABEL,
    "keys",
    "registration",
    "credentials",
    layout::FINALIZER,
    "Opaque",
    "kubernetes.io/tls",
    "tpp.dev/v1alpha1",
    "TppClient",
    KEYS_STATE_KEY,
    ck::TLS_CRT,
    ck::TLS_KEY,
    ck::CA_CRT,
    ck::CLIENT_ID,
    ck::ISSUER,
    ck::TOKEN_ENDPOINT,
    ck::SIGNING_KEY,
    ck::SIGNING_KID,
    rk::RAT,
    rk::RAT_SHA256,
    rk::URI,
    rk::RESPONSE,
    rk::REGISTERED_AT,
    rk::ONBOARDED_X5T,
    rk::ATTEMPT,
    rk::REFUSED,
    "",
];

/// A string of an entry: one of [`KNOWN`] or its own copy.
#[derive(Clone, Debug)]
enum Text {
    Known(&'static str),
    Owned(Box<str>),
}

impl Text {
    fn new(s: &str) -> Self {
        match KNOWN.iter().find(|k| **k == s) {
            Some(k) => Self::Known(k),
            None => Self::Owned(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Known(s) => s,
            Self::Owned(s) => s,
        }
    }
}

/// An owner reference, compact.
#[derive(Debug)]
struct Owner {
    api_version: Text,
    kind: Text,
    name: Box<str>,
    uid: Box<str>,
    controller: Option<bool>,
    block_owner_deletion: Option<bool>,
}

/// One data key and its value, packed ([`super::pack`]).
type Datum = (Text, Box<[u8]>);

/// What the cache keeps of one Secret: what [`SecretCache::get`] gives back, in boxed slices
/// (exact size, no map nodes). Labels and data stay sorted by key, as in the Secret's maps.
/// Its `Debug` names the data keys, never their values (private keys, tokens).
struct Entry {
    resource_version: Option<Box<str>>,
    labels: Option<Box<[(Text, Text)]>>,
    /// Whether the Secret keeps the deregistration finalizer, and is being deleted.
    finalizers: Option<Box<[Text]>>,
    deletion_timestamp: Option<Time>,
    /// Whose it is, for the check before each write (super::ownership).
    owner_references: Option<Box<[Owner]>>,
    /// Fields another manager owns (none, normally): a token someone else wrote is not read
    /// back as ours (super::state::overwritten_by_another_manager).
    managed_fields: Option<Box<[ManagedFieldsEntry]>>,
    type_: Option<Text>,
    data: Option<Box<[Datum]>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        f.debug_struct("Entry")
            .field("resource_version", &self.resource_version)
            .field("labels", &self.labels)
            .field("finalizers", &self.finalizers)
            .field("deletion_timestamp", &self.deletion_timestamp)
            .field("owner_references", &self.owner_references)
            .field("managed_fields", &self.managed_fields)
            .field("type_", &self.type_)
            .field("data_keys", &keys)
            .finish()
    }
}

impl Entry {
    fn of(secret: &Secret) -> Self {
        let m = &secret.metadata;
        let credentials = m
            .labels
            .as_ref()
            .and_then(|l| l.get(layout::COMPONENT_LABEL))
            .is_some_and(|c| c == "credentials");
        Self {
            resource_version: m.resource_version.as_deref().map(Box::from),
            labels: m.labels.as_ref().map(|l| {
                l.iter()
                    .map(|(k, v)| (Text::new(k), Text::new(v)))
                    .collect()
            }),
            finalizers: m
                .finalizers
                .as_ref()
                .map(|f| f.iter().map(|f| Text::new(f)).collect()),
            deletion_timestamp: m.deletion_timestamp.clone(),
            owner_references: m.owner_references.as_ref().map(|o| {
                o.iter()
                    .map(|o| Owner {
                        api_version: Text::new(&o.api_version),
                        kind: Text::new(&o.kind),
                        name: o.name.as_str().into(),
                        uid: o.uid.as_str().into(),
                        controller: o.controller,
                        block_owner_deletion: o.block_owner_deletion,
                    })
                    .collect()
            }),
            managed_fields: m
                .managed_fields
                .as_ref()
                .map(|m| {
                    m.iter()
                        .filter(|e| e.manager.as_deref() != Some(layout::FIELD_MANAGER))
                        .cloned()
                        .collect::<Box<[_]>>()
                })
                .filter(|m| !m.is_empty()),
            type_: secret.type_.as_deref().map(Text::new),
            data: secret.data.as_ref().map(|d| {
                d.iter()
                    .filter(|(k, _)| !(credentials && REBUILT.contains(&k.as_str())))
                    .map(|(k, v)| (Text::new(k), pack::pack(&v.0)))
                    .collect()
            }),
        }
    }

    /// The Secret this entry keeps, as `remember` was given it (less what it does not keep).
    fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let text = |t: &Text| t.as_str().to_owned();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                resource_version: self.resource_version.as_deref().map(str::to_owned),
                labels: self.labels.as_ref().map(|l| {
                    l.iter()
                        .map(|(k, v)| (text(k), text(v)))
                        .collect::<BTreeMap<_, _>>()
                }),
                finalizers: self
                    .finalizers
                    .as_ref()
                    .map(|f| f.iter().map(text).collect()),
                deletion_timestamp: self.deletion_timestamp.clone(),
                owner_references: self.owner_references.as_ref().map(|o| {
                    o.iter()
                        .map(|o| OwnerReference {
                            api_version: text(&o.api_version),
                            kind: text(&o.kind),
                            name: o.name.to_string(),
                            uid: o.uid.to_string(),
                            controller: o.controller,
                            block_owner_deletion: o.block_owner_deletion,
                        })
                        .collect()
                }),
                managed_fields: self.managed_fields.as_ref().map(|m| m.to_vec()),
                ..Default::default()
            },
            data: self.data.as_ref().map(|d| {
                d.iter()
                    .map(|(k, v)| (text(k), ByteString(pack::unpack(v))))
                    .collect()
            }),
            type_: self.type_.as_ref().map(text),
            ..Default::default()
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .flatten()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }
}

/// See the module docs.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<Key, Box<Entry>>>,
    names: Mutex<Names>,
    /// Names a GET found absent (the watch sees only labelled Secrets, so "never listed" does
    /// not prove that no unlabelled Secret has the name): see [`SecretCache::checked_absent`].
    checked: Mutex<HashSet<Key>>,
}

#[derive(Default)]
struct Names {
    /// Every managed Secret the watch reported and did not report deleted, with its
    /// resourceVersion.
    known: HashMap<Key, String>,
    /// The watches that completed a list since they (re)started: a namespace, or `None` for
    /// a cluster-wide watch.
    listed: HashSet<Option<String>>,
    /// The names a running relist of a scope has reported so far.
    relisting: HashMap<Option<String>, HashSet<Key>>,
}

/// Whether `namespace` is in a watch's `scope`.
fn in_scope(scope: Option<&str>, namespace: &str) -> bool {
    scope.is_none_or(|s| s == namespace)
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_owned(), name.to_owned())
}

impl SecretCache {
    /// The cached Secret, if any (a copy: the cache keeps it compact).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.lock()
            .get(&key(namespace, name))
            .map(|e| e.to_secret(namespace, name))
    }

    /// Whether `writer` may write the cached Secret `namespace/name` ([`Writer::check`]),
    /// `None` when it is not cached. Reads the entry in place: no copy.
    pub fn check_writer(
        &self,
        namespace: &str,
        name: &str,
        writer: &Writer,
    ) -> Option<Result<(), NameConflict>> {
        let entries = self.lock();
        let e = entries.get(&key(namespace, name))?;
        let owners = e.owner_references.iter().flatten().map(|o| &*o.uid);
        Some(if writer.may_write_parts(owners, |k| e.label(k)) {
            Ok(())
        } else {
            Err(NameConflict {
                kind: "Secret",
                name: name.to_owned(),
            })
        })
    }

    /// Remember `secret` (read from or written to the API). Only our own Secrets are kept:
    /// others (a user's certificate, an initial access token) are not watched, so a change
    /// to them could not invalidate the entry.
    pub fn remember(&self, namespace: &str, secret: &Secret) {
        if !layout::is_managed(&secret.metadata) {
            return;
        }
        let Some(name) = secret.metadata.name.clone() else {
            return;
        };
        let entry = Box::new(Entry::of(secret));
        self.unchecked(namespace, &name);
        self.lock().insert((namespace.to_owned(), name), entry);
    }

    /// Drop one entry (written by someone else, or deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&key(namespace, name));
    }

    /// The watch of `scope` (a namespace, `None` for all) (re)starts listing.
    pub fn relist_started(&self, scope: Option<&str>) {
        self.names()
            .relisting
            .insert(scope.map(str::to_owned), HashSet::new());
    }

    /// The watch's list reported `namespace/name` at `resource_version`: a cached copy of
    /// another version is dropped.
    pub fn listed_one(
        &self,
        scope: Option<&str>,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) {
        let k = key(namespace, name);
        {
            let mut names = self.names();
            if let Some(seen) = names.relisting.get_mut(&scope.map(str::to_owned)) {
                seen.insert(k.clone());
            }
            names.known.insert(k.clone(), resource_version.to_owned());
        }
        let mut entries = self.lock();
        if entries
            .get(&k)
            .is_some_and(|e| e.resource_version.as_deref() != Some(resource_version))
        {
            entries.remove(&k);
        }
    }

    /// The watch's list of `scope` is complete: what it did not report is gone.
    pub fn relist_done(&self, scope: Option<&str>) {
        let mut names = self.names();
        let seen = names
            .relisting
            .remove(&scope.map(str::to_owned))
            .unwrap_or_default();
        let gone: Vec<Key> = names
            .known
            .keys()
            .filter(|k| in_scope(scope, &k.0) && !seen.contains(*k))
            .cloned()
            .collect();
        for k in &gone {
            names.known.remove(k);
        }
        names.listed.insert(scope.map(str::to_owned));
        drop(names);
        let mut entries = self.lock();
        entries.retain(|k, _| !in_scope(scope, &k.0) || seen.contains(k));
    }

    /// The watch reported `namespace/name` created or changed.
    pub fn seen(&self, namespace: &str, name: &str, resource_version: &str) {
        self.names()
            .known
            .insert(key(namespace, name), resource_version.to_owned());
    }

    /// The watch reported `namespace/name` deleted.
    pub fn gone(&self, namespace: &str, name: &str) {
        self.forget(namespace, name);
        // Whoever creates the name next must be checked again.
        self.unchecked(namespace, name);
        self.names().known.remove(&key(namespace, name));
    }

    /// Remember one page of a LIST of full objects: each Secret is cached and known.
    pub fn fill_page(&self, secrets: impl IntoIterator<Item = Secret>) {
        for s in secrets {
            let Some((ns, name, rv)) = listed_identity(&s.metadata) else {
                continue;
            };
            self.names().known.insert(key(ns, name), rv.to_owned());
            self.remember(ns, &s);
        }
    }

    /// One page of a metadata LIST of `scope`, as the watch's relist would report it: see
    /// [`Self::listed_one`].
    pub fn listed_page(&self, scope: Option<&str>, metas: impl IntoIterator<Item = ObjectMeta>) {
        for m in metas {
            if let Some((ns, name, rv)) = listed_identity(&m) {
                self.listed_one(scope, ns, name, rv);
            }
        }
    }

    /// A LIST of `scope` (every page of it) is complete.
    pub fn listed(&self, scope: Option<&str>) {
        self.names().listed.insert(scope.map(str::to_owned));
    }

    /// Whether a list of `scope` (a watch's or [`super::Store::warm`]'s) has completed since the
    /// scope was last cleared: a standby's watch filled it ([`crate::reconcile::standby`]).
    pub fn is_listed(&self, scope: Option<&str>) -> bool {
        self.names().listed.contains(&scope.map(str::to_owned))
    }

    /// Forget everything about `scope`: its entries, names and whether it was listed (a relist
    /// that failed half-way left them of unknown age).
    pub fn clear_scope(&self, scope: Option<&str>) {
        {
            let mut names = self.names();
            names.known.retain(|k, _| !in_scope(scope, &k.0));
            names.listed.remove(&scope.map(str::to_owned));
            names.relisting.remove(&scope.map(str::to_owned));
        }
        self.lock().retain(|k, _| !in_scope(scope, &k.0));
    }

    /// Whether `namespace/name` is known not to exist: the watch has listed, never reported
    /// it (or reported it deleted), and no write of ours put it in the cache since.
    pub fn known_absent(&self, namespace: &str, name: &str) -> bool {
        let k = key(namespace, name);
        let names = self.names();
        let listed =
            names.listed.contains(&None) || names.listed.contains(&Some(namespace.to_owned()));
        listed && !names.known.contains_key(&k) && !self.lock().contains_key(&k)
    }

    /// A GET found `namespace/name` absent: no Secret of anyone has that name.
    pub fn absent_by_get(&self, namespace: &str, name: &str) {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(namespace, name));
    }

    /// Whether a GET once found `namespace/name` absent (so a claim of the name need not ask
    /// again; every write still checks, see `super::apply::Store::apply`).
    pub fn checked_absent(&self, namespace: &str, name: &str) -> bool {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key(namespace, name))
    }

    fn unchecked(&self, namespace: &str, name: &str) {
        self.checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(namespace, name));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Box<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Namespace, name and resourceVersion of a listed object (a LIST answer carries all three).
fn listed_identity(m: &ObjectMeta) -> Option<(&str, &str, &str)> {
    Some((
        m.namespace.as_deref()?,
        m.name.as_deref()?,
        m.resource_version.as_deref()?,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn secret(name: &str, managed: bool) -> Secret {
        let labels = managed.then(|| layout::labels("c", "keys", None));
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some("7".into()),
                labels,
                managed_fields: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                        manager: Some(layout::FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "k".to_owned(),
                ByteString(b"v".to_vec()),
            )])),
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
    fn an_entry_printed_for_debugging_names_its_data_keys_but_not_their_values() {
        let value = b"{\"privateJwk\":\"SECRET-MATERIAL-0123456789abcdefghijklmnop\"}";
        let mut s = secret("c-keys", true);
        s.data = Some(BTreeMap::from([(
            KEYS_STATE_KEY.to_owned(),
            ByteString(value.to_vec()),
        )]));
        let printed = format!("{:?}", Entry::of(&s));
        assert!(printed.contains(KEYS_STATE_KEY), "{printed}");
        // Neither the text nor its bytes as `Debug` lists them, as they are or packed.
        let listed = |b: &[u8]| format!("{:?}", &b[..6]).trim_end_matches(']').to_owned();
        for shown in [
            "SECRET".to_owned(),
            listed(value),
            listed(&pack::pack(value)),
        ] {
            assert!(!printed.contains(&shown), "{shown} in {printed}");
        }
    }

    #[test]
    fn a_remembered_secret_keeps_the_managed_fields_of_other_managers_only() {
        let cache = SecretCache::default();
        let mut s = secret("c-credentials", true);
        if let Some(m) = s.metadata.managed_fields.as_mut() {
            m.push(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                    manager: Some("intruder".into()),
                    ..Default::default()
                },
            );
        }
        cache.remember("ns", &s);
        let got = cache.get("ns", "c-credentials").expect("cached");
        let managers: Vec<_> = got
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|e| e.manager.clone())
            .collect();
        assert_eq!(
            managers,
            ["intruder"],
            "a foreign token must be seen as foreign"
        );
    }

    #[test]
    fn the_private_keys_workloads_mount_and_what_every_write_rebuilds_are_not_held_twice() {
        let cache = SecretCache::default();
        let mut s = secret("c-credentials", true);
        s.metadata.labels = Some(layout::labels("c", "credentials", None));
        let data = s.data.get_or_insert_default();
        for k in [
            "tls.key",
            "signing.key",
            "ca.crt",
            "tls.crt",
            "accounts.access_token",
            "client_id",
            "issuer",
            "token_endpoint",
        ] {
            data.insert(k.to_owned(), ByteString(b"x".to_vec()));
        }
        cache.remember("ns", &s);
        let got = cache.get("ns", "c-credentials").expect("cached");
        let keys: Vec<&str> = got
            .data
            .as_ref()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["accounts.access_token", "k", "tls.crt"]);
    }

    #[test]
    fn a_cached_secret_is_given_back_as_it_was_remembered() {
        let cache = SecretCache::default();
        let mut s = secret("c-keys", true);
        s.metadata.labels = Some(layout::labels(
            "c",
            "keys",
            Some(&BTreeMap::from([("team".to_owned(), "pay".to_owned())])),
        ));
        s.metadata.finalizers = Some(vec![layout::FINALIZER.to_owned(), "other/f".to_owned()]);
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(1_000).unwrap(),
        ));
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "tpp.dev/v1alpha1".into(),
            kind: "TppClient".into(),
            name: "c".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        s.type_ = Some("Opaque".into());
        s.data.get_or_insert_default().insert(
            "state.json".to_owned(),
            ByteString(br#"{"keys":[]}"#.to_vec()),
        );
        cache.remember("ns", &s);
        let mut expected = s.clone();
        expected.metadata.managed_fields = None;
        assert_eq!(cache.get("ns", "c-keys"), Some(expected));
        // Without finalizers, type or data: none given back either.
        let mut bare = secret("c-registration", true);
        bare.metadata.managed_fields = None;
        bare.data = None;
        cache.remember("ns", &bare);
        assert_eq!(cache.get("ns", "c-registration"), Some(bare));
    }

    #[test]
    fn the_writer_check_reads_the_cached_owner_and_labels() {
        let cache = SecretCache::default();
        let ours = Writer {
            uid: Some("uid-1".into()),
            client: Some("c".into()),
        };
        let restored = Writer {
            uid: Some("uid-2".into()),
            client: Some("c".into()),
        };
        let other = Writer {
            uid: Some("uid-3".into()),
            client: Some("d".into()),
        };
        assert_eq!(
            cache.check_writer("ns", "c-keys", &ours),
            None,
            "not cached"
        );
        let mut s = secret("c-keys", true);
        s.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-1".into(),
            ..Default::default()
        }]);
        cache.remember("ns", &s);
        assert_eq!(cache.check_writer("ns", "c-keys", &ours), Some(Ok(())));
        assert_eq!(
            cache.check_writer("ns", "c-keys", &restored),
            Some(Ok(())),
            "labelled for the client"
        );
        let conflict = cache.check_writer("ns", "c-keys", &other);
        assert_eq!(
            conflict,
            Some(Err(NameConflict {
                kind: "Secret",
                name: "c-keys".into()
            }))
        );
        // The same verdicts as the check of the whole metadata.
        let meta = cache.get("ns", "c-keys").unwrap().metadata;
        for w in [&ours, &restored, &other] {
            assert_eq!(
                cache.check_writer("ns", "c-keys", w),
                Some(w.check("Secret", Some(&meta)))
            );
        }
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
        assert!(
            !cache.known_absent("ns", "c-keys"),
            "before the list nothing is known"
        );
        cache.relist_started(Some("ns"));
        cache.listed_one(Some("ns"), "ns", "c-registration", "5");
        assert!(
            !cache.known_absent("ns", "c-keys"),
            "a list under way proves nothing"
        );
        cache.relist_done(Some("ns"));
        assert!(
            !cache.known_absent("other", "c-keys"),
            "another namespace's watch has not listed"
        );
        assert!(cache.known_absent("ns", "c-keys"));
        assert!(!cache.known_absent("ns", "c-registration"));
        cache.remember("ns", &secret("c-keys", true));
        assert!(
            !cache.known_absent("ns", "c-keys"),
            "our own write is not absent before its watch event"
        );
        cache.gone("ns", "c-keys");
        assert!(cache.known_absent("ns", "c-keys"));
    }

    #[test]
    fn a_relist_keeps_confirmed_entries_and_drops_changed_and_vanished_ones() {
        let cache = SecretCache::default();
        for name in ["same", "changed", "vanished"] {
            cache.remember("ns", &secret(name, true));
            cache.seen("ns", name, "7");
        }
        cache.remember("other", &secret("elsewhere", true));
        cache.relist_started(Some("ns"));
        cache.listed_one(Some("ns"), "ns", "same", "7");
        cache.listed_one(Some("ns"), "ns", "changed", "9");
        cache.relist_done(Some("ns"));
        assert!(cache.get("ns", "same").is_some(), "a confirmed entry stays");
        assert!(
            cache.get("ns", "changed").is_none(),
            "another version is read again"
        );
        assert!(cache.get("ns", "vanished").is_none());
        assert!(
            cache.known_absent("ns", "vanished"),
            "deleted while the watch was down"
        );
        assert!(
            cache.get("other", "elsewhere").is_some(),
            "a relist of one namespace keeps the others"
        );
    }

    #[test]
    fn a_fill_from_a_list_caches_everything_and_counts_as_listed() {
        let cache = SecretCache::default();
        cache.fill_page(vec![secret("c-keys", true)]);
        assert!(
            !cache.known_absent("ns", "c-credentials"),
            "not before the last page"
        );
        cache.listed(Some("ns"));
        assert!(cache.get("ns", "c-keys").is_some());
        assert!(cache.known_absent("ns", "c-credentials"));
        assert!(!cache.known_absent("ns", "c-keys"));
    }

    #[test]
    fn a_name_a_get_found_free_is_remembered_per_namespace() {
        let cache = SecretCache::default();
        assert!(!cache.checked_absent("ns", "c-keys"));
        cache.absent_by_get("ns", "c-keys");
        assert!(cache.checked_absent("ns", "c-keys"));
        assert!(!cache.checked_absent("other", "c-keys"));
        cache.remember("ns", &secret("c-keys", true));
        cache.gone("ns", "c-keys");
        assert!(
            !cache.checked_absent("ns", "c-keys"),
            "once created and deleted, the name is checked again"
        );
    }

    #[test]
    fn the_owner_references_are_kept_for_the_check_before_a_write() {
        let cache = SecretCache::default();
        let mut s = secret("c-keys", true);
        s.metadata.owner_references = Some(vec![Default::default()]);
        cache.remember("ns", &s);
        assert!(
            cache
                .get("ns", "c-keys")
                .expect("cached")
                .metadata
                .owner_references
                .is_some()
        );
    }

    #[test]
    fn forget_drops_an_entry() {
        let cache = SecretCache::default();
        cache.remember("ns", &secret("a", true));
        cache.remember("ns", &secret("b", true));
        cache.forget("ns", "a");
        assert!(cache.get("ns", "a").is_none());
        assert_eq!(cache.len(), 1);
    }
}
