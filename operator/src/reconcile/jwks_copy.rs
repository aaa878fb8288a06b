//! The `<name>-jwks` ConfigMap is an output copy of the published key set (for people and
//! tools that read it; `/jwks/...` never does). A metadata watch of our ConfigMaps marks a
//! client whose copy someone else changed or deleted ([`Tampered`]) and triggers its
//! reconcile; the reconcile compares the copy with the key state and writes it again when it
//! differs, with a Warning event `JwksRestored` "JWKS ConfigMap was modified; restored". One
//! GET per such change, none otherwise. Kubernetes I/O (through the session).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt as _,
        watcher::{self, Event},
    },
};

use super::{Context, session::Session, written_by_us};
use crate::{error::Error, reason::Reason, store::layout};

/// The event note of a restore.
pub const RESTORED: &str = "JWKS ConfigMap was modified; restored";

/// Clients (namespace, name) whose JWKS ConfigMap was written or deleted by someone else
/// since their last reconcile.
#[derive(Default)]
pub struct Tampered(Mutex<HashSet<(String, String)>>);

impl Tampered {
    /// Mark `namespace/client`.
    pub fn mark(&self, namespace: &str, client: &str) {
        self.lock()
            .insert((namespace.to_owned(), client.to_owned()));
    }

    /// Whether `namespace/client` was marked (and unmark it).
    pub fn take(&self, namespace: &str, client: &str) -> bool {
        self.lock()
            .remove(&(namespace.to_owned(), client.to_owned()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The label selector of our JWKS ConfigMaps.
pub fn selector() -> String {
    format!(
        "{},{}=jwks",
        layout::managed_selector(),
        layout::COMPONENT_LABEL
    )
}

/// The client a JWKS ConfigMap belongs to, when the event concerns someone else's write: a
/// change whose last writer is not the operator, any deletion, and (at start or after a
/// relist) a copy last written by someone else.
pub fn tampered_client(event: &Event<PartialObjectMeta<ConfigMap>>) -> Option<(String, String)> {
    let (o, deleted) = match event {
        Event::Apply(o) | Event::InitApply(o) => (o, false),
        Event::Delete(o) => (o, true),
        Event::Init | Event::InitDone => return None,
    };
    if !deleted && written_by_us(&o.metadata) {
        return None;
    }
    let client = o.labels().get(layout::CLIENT_LABEL)?;
    (o.name_any() == layout::jwks_name(client))
        .then(|| (o.namespace().unwrap_or_default(), client.clone()))
}

/// The JWKS ConfigMaps someone else changed, for the controller's `owns_stream`: each marks
/// its client in `ctx.jwks_tampered` before the reconcile it triggers.
pub fn triggers(
    api: Api<PartialObjectMeta<ConfigMap>>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<ConfigMap>, watcher::Error>> + Send + 'static
{
    let cfg = ctx.config.watcher().labels(&selector());
    watcher::watcher(api, cfg)
        .default_backoff()
        .filter_map(move |ev| {
            let ctx = ctx.clone();
            async move {
                match ev {
                    Ok(ev) => {
                        let (ns, client) = tampered_client(&ev)?;
                        ctx.jwks_tampered.mark(&ns, &client);
                        match ev {
                            Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => Some(Ok(o)),
                            Event::Init | Event::InitDone => None,
                        }
                    }
                    Err(e) => Some(Err(e)),
                }
            }
        })
}

/// If the client's copy was marked, write it again when it differs from the key state (or is
/// gone), and say so with a Warning event. A client that has published nothing yet has no copy
/// to restore.
pub async fn restore(s: &mut Session<'_>) -> Result<(), Error> {
    if !s.ctx.jwks_tampered.take(&s.namespace, &s.name) {
        return Ok(());
    }
    let result = restore_now(s).await;
    if result.is_err() {
        // Try again at the next reconcile.
        s.ctx.jwks_tampered.mark(&s.namespace, &s.name);
    }
    result
}

async fn restore_now(s: &mut Session<'_>) -> Result<(), Error> {
    let kids = s.visible_kids();
    if kids.is_empty() {
        return Ok(());
    }
    let set = s.jwks_of(&kids)?;
    let expected = super::session::render_jwks(&set);
    let name = layout::jwks_name(&s.name);
    let current = s
        .ctx
        .store
        .configmap(&s.namespace, &name)
        .await
        .map_err(|source| Error::ReadObject {
            what: name.clone(),
            source,
        })?;
    // Same content, still labelled (an unlabelled copy is no longer watched).
    let same = current.as_ref().is_some_and(|c| {
        layout::is_managed(&c.metadata)
            && c.data
                .as_ref()
                .and_then(|d| d.get(layout::JWKS_KEY))
                .is_some_and(|v| *v == expected)
    });
    if same {
        return Ok(());
    }
    s.save_jwks(&set).await?;
    tracing::warn!(namespace = %s.namespace, client = %s.name, "{RESTORED}");
    s.events.push((Reason::JwksRestored, RESTORED.to_owned()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use kube::api::ObjectMeta;

    use super::*;

    fn cm(name: &str, client: &str, manager: &str) -> PartialObjectMeta<ConfigMap> {
        PartialObjectMeta::<ConfigMap> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(layout::labels(client, "jwks", None)),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some(manager.into()),
                    time: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_write_by_someone_else_or_a_deletion_marks_the_client() {
        let pay = Some(("ns".to_owned(), "pay".to_owned()));
        assert_eq!(
            tampered_client(&Event::Apply(cm("pay-jwks", "pay", "kubectl-edit"))),
            pay
        );
        assert_eq!(
            tampered_client(&Event::InitApply(cm("pay-jwks", "pay", "kubectl"))),
            pay
        );
        assert_eq!(
            tampered_client(&Event::Delete(cm("pay-jwks", "pay", layout::FIELD_MANAGER))),
            pay
        );
        assert_eq!(
            tampered_client(&Event::Apply(cm("pay-jwks", "pay", layout::FIELD_MANAGER))),
            None,
            "our own write"
        );
        assert_eq!(
            tampered_client(&Event::Apply(cm("other-jwks", "pay", "kubectl"))),
            None,
            "not the copy of the client its label names"
        );
        assert_eq!(tampered_client(&Event::Init), None);
    }

    #[test]
    fn a_mark_is_taken_once() {
        let t = Tampered::default();
        t.mark("ns", "pay");
        assert!(t.take("ns", "pay"));
        assert!(!t.take("ns", "pay"));
        assert!(!t.take("other", "pay"));
    }
}
