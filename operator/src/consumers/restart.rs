//! Restarting one TppClient's `spec.consumers.restartTargets`: read each target's pod template
//! stamp, decide with [`super::plan::decide`], and patch the stamp into the pod template (which
//! rolls the workload out, as `kubectl rollout restart` does). Failures are reported as Warning
//! events and retried; they never fail the reconcile that wrote the credentials. Kubernetes I/O.

use std::{collections::BTreeMap, time::Duration};

use jiff::SignedDuration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::json;

use super::plan::{self, Decision, Stamp};
use crate::{
    crd::{RestartKind, RestartTarget, TppClient},
    failpoints::{self, Side},
    reconcile::Context,
    store::layout::{self, FIELD_MANAGER},
};

/// How soon a target is tried again after a failed read or patch.
const RETRY: Duration = Duration::from_secs(30);

/// Event reasons.
pub mod reasons {
    /// A target was restarted for new credentials.
    pub const RESTARTED: &str = "ConsumerRestarted";
    /// A target could not be read or patched.
    pub const RESTART_FAILED: &str = "ConsumerRestartFailed";
}

/// Restart what is due among `client`'s restart targets, from the credentials Secret as last
/// written. Returns when to look again (a debounce interval ending, or a retry), if ever.
pub async fn restart_targets(ctx: &Context, client: &TppClient) -> Option<Duration> {
    let consumers = client.spec.consumers.as_ref()?;
    if consumers.restart_targets.is_empty() {
        return None;
    }
    let namespace = client.namespace().unwrap_or_default();
    let name = client.name_any();
    let secret = match ctx
        .store
        .own_secret(&namespace, &layout::credentials_name(&name))
        .await
    {
        Ok(s) => s?,
        Err(e) => {
            tracing::warn!(client = %format!("{namespace}/{name}"), error = %e, "reading the credentials for consumers failed");
            return Some(RETRY);
        }
    };
    let current = plan::fingerprint(secret.data.as_ref()?, &consumers.restart_on)?;
    let key = plan::annotation_key(&name);
    let min_interval = SignedDuration::try_from(consumers.min_restart_interval.std())
        .unwrap_or(SignedDuration::MAX);
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));
    for target in &consumers.restart_targets {
        let now = ctx.clock.now();
        let stamp = match read_stamp(ctx, &namespace, target, &key).await {
            Ok(Some(stamp)) => stamp,
            Ok(None) => {
                warn(ctx, client, target, "was not found").await;
                soonest(RETRY);
                continue;
            }
            Err(e) => {
                warn(ctx, client, target, &format!("could not be read: {e}")).await;
                soonest(RETRY);
                continue;
            }
        };
        match plan::decide(&current, stamp.as_ref(), now, min_interval) {
            Decision::UpToDate => {}
            Decision::WaitUntil(at) => {
                let ms = (at - now).total(jiff::Unit::Millisecond).unwrap_or(0.0);
                soonest(Duration::from_millis(ms.max(0.0).ceil() as u64));
            }
            Decision::Restart(new) => {
                match patch_stamp(ctx, &namespace, target, &key, &new).await {
                    Ok(()) => {
                        let note = format!(
                            "restarted {} {} for new credentials ({})",
                            target_kind(target.kind),
                            target.name,
                            new.fingerprint
                        );
                        tracing::info!(client = %format!("{namespace}/{name}"), "{note}");
                        publish(ctx, client, EventType::Normal, reasons::RESTARTED, note).await;
                    }
                    Err(e) => {
                        warn(ctx, client, target, &format!("could not be restarted: {e}")).await;
                        soonest(RETRY);
                    }
                }
            }
        }
    }
    wake
}

fn target_kind(kind: RestartKind) -> &'static str {
    match kind {
        RestartKind::Deployment => "Deployment",
        RestartKind::StatefulSet => "StatefulSet",
        RestartKind::DaemonSet => "DaemonSet",
    }
}

/// The target's stamp: `Ok(None)` when the workload does not exist, `Ok(Some(None))` when it
/// carries no (readable) stamp of ours.
async fn read_stamp(
    ctx: &Context,
    namespace: &str,
    target: &RestartTarget,
    key: &str,
) -> Result<Option<Option<Stamp>>, kube::Error> {
    let c = ctx.client.clone();
    let annotations: Option<Option<BTreeMap<String, String>>> = match target.kind {
        RestartKind::Deployment => Api::<Deployment>::namespaced(c, namespace)
            .get_opt(&target.name)
            .await?
            .map(|o| o.spec.and_then(|s| s.template.metadata?.annotations)),
        RestartKind::StatefulSet => Api::<StatefulSet>::namespaced(c, namespace)
            .get_opt(&target.name)
            .await?
            .map(|o| o.spec.and_then(|s| s.template.metadata?.annotations)),
        RestartKind::DaemonSet => Api::<DaemonSet>::namespaced(c, namespace)
            .get_opt(&target.name)
            .await?
            .map(|o| o.spec.and_then(|s| s.template.metadata?.annotations)),
    };
    Ok(annotations.map(|a| a.and_then(|a| a.get(key).and_then(|v| Stamp::parse(v)))))
}

/// Merge-patch the stamp into the pod template's annotations (nothing else is touched).
async fn patch_stamp(
    ctx: &Context,
    namespace: &str,
    target: &RestartTarget,
    key: &str,
    stamp: &Stamp,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(json!({
        "spec": {"template": {"metadata": {"annotations": {key: stamp.render()}}}}
    }));
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let c = ctx.client.clone();
    failpoints::kube_write(Side::Before, "restart_consumer").await?;
    match target.kind {
        RestartKind::Deployment => {
            Api::<Deployment>::namespaced(c, namespace)
                .patch(&target.name, &pp, &patch)
                .await?;
        }
        RestartKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(c, namespace)
                .patch(&target.name, &pp, &patch)
                .await?;
        }
        RestartKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(c, namespace)
                .patch(&target.name, &pp, &patch)
                .await?;
        }
    }
    failpoints::kube_write(Side::After, "restart_consumer").await
}

async fn warn(ctx: &Context, client: &TppClient, target: &RestartTarget, what: &str) {
    let note = format!(
        "restart target {} {} {what}",
        target_kind(target.kind),
        target.name
    );
    tracing::warn!(client = %format!("{}/{}", client.namespace().unwrap_or_default(), client.name_any()), "{note}");
    publish(
        ctx,
        client,
        EventType::Warning,
        reasons::RESTART_FAILED,
        note,
    )
    .await;
}

async fn publish(ctx: &Context, client: &TppClient, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "RestartConsumers".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &client.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}
