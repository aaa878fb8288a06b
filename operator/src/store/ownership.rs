//! Whether an existing object may be written by a TppClient: only one it created (an
//! ownerReference to its uid) or one labelled for it (`app.kubernetes.io/managed-by:
//! tpp-operator` and `tpp.dev/client: <name>`, e.g. restored from a backup under a new uid).
//! Anything else with the same name (an ingress's TLS Secret called `<name>-credentials`, say)
//! is left alone: nothing is written, and the client reports a `NameConflict` naming it
//! (docs/security.md, "Own only what you created"). No I/O.

use kube::api::ObjectMeta;

use super::layout;

/// An object the client would write that belongs to someone else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} {name:?} already exists and was not created for this TppClient (no ownerReference to it, no {label} label naming it): nothing was written to it; delete or rename that {kind}, or rename the TppClient",
    label = layout::CLIENT_LABEL
)]
pub struct NameConflict {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
}

/// Who is about to write: read from the object being written (its controller ownerReference
/// and its `tpp.dev/client` label).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    /// The TppClient's uid.
    pub uid: Option<String>,
    /// The TppClient's name.
    pub client: Option<String>,
}

impl Writer {
    /// The writer of `desired` (an object built by [`super::build`]).
    pub fn of(desired: &ObjectMeta) -> Self {
        Self {
            uid: desired
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            client: desired
                .labels
                .as_ref()
                .and_then(|l| l.get(layout::CLIENT_LABEL))
                .cloned(),
        }
    }

    /// Whether the object `existing` may be written by this writer.
    pub fn may_write(&self, existing: &ObjectMeta) -> bool {
        self.may_write_parts(
            existing
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.uid.as_str()),
            |key| {
                existing
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(key))
                    .map(String::as_str)
            },
        )
    }

    /// [`Self::may_write`] of an object given by the uids of its owner references and its
    /// labels (the compact entries of [`super::cache::SecretCache`]).
    pub(crate) fn may_write_parts<'o>(
        &self,
        mut owner_uids: impl Iterator<Item = &'o str>,
        label: impl Fn(&str) -> Option<&'o str>,
    ) -> bool {
        let owned = self
            .uid
            .as_deref()
            .is_some_and(|uid| owner_uids.any(|o| o == uid));
        let labelled = label(layout::MANAGED_BY_LABEL) == Some(layout::MANAGED_BY)
            && self
                .client
                .as_deref()
                .is_some_and(|client| label(layout::CLIENT_LABEL) == Some(client));
        owned || labelled
    }

    /// `Ok` when nothing exists or the writer may write it, else the conflict naming it.
    pub fn check(
        &self,
        kind: &'static str,
        existing: Option<&ObjectMeta>,
    ) -> Result<(), NameConflict> {
        match existing {
            Some(meta) if !self.may_write(meta) => Err(NameConflict {
                kind,
                name: meta.name.clone().unwrap_or_default(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn desired() -> ObjectMeta {
        ObjectMeta {
            name: Some("pay-credentials".into()),
            labels: Some(layout::labels("pay", "credentials", None)),
            owner_references: Some(vec![OwnerReference {
                uid: "uid-1".into(),
                controller: Some(true),
                kind: "TppClient".into(),
                name: "pay".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn existing(labels: Option<BTreeMap<String, String>>, owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("pay-credentials".into()),
            labels,
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_unlabelled_object_of_someone_else_is_a_conflict_naming_it() {
        let w = Writer::of(&desired());
        let err = w
            .check("Secret", Some(&existing(None, None)))
            .expect_err("taken over");
        assert_eq!(err.name, "pay-credentials");
        assert!(
            err.to_string()
                .starts_with("Secret \"pay-credentials\" already exists")
        );
        // Someone else's owner, our label for another client, or only a client label.
        for other in [
            existing(None, Some("uid-2")),
            existing(Some(layout::labels("other", "credentials", None)), None),
            existing(
                Some(BTreeMap::from([(
                    layout::CLIENT_LABEL.into(),
                    "pay".into(),
                )])),
                None,
            ),
        ] {
            assert!(w.check("Secret", Some(&other)).is_err(), "{other:?}");
        }
    }

    #[test]
    fn nothing_there_our_uid_or_our_labels_may_be_written() {
        let w = Writer::of(&desired());
        assert_eq!(w.check("Secret", None), Ok(()));
        assert_eq!(
            w.check("Secret", Some(&existing(None, Some("uid-1")))),
            Ok(())
        );
        assert_eq!(
            w.check(
                "Secret",
                Some(&existing(Some(layout::labels("pay", "keys", None)), None))
            ),
            Ok(()),
            "labelled for this client (restored under a new uid)"
        );
    }
}
