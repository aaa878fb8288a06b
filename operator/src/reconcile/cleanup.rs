//! Deletion: the finalizer exists only while a registration lives at the AS. `Delete` sends
//! RFC 7592 DELETE ("already gone" is success) and then removes the finalizer; `Orphan` removes
//! it at once. An AS that stays unreachable does not block deletion forever: after
//! `--delete-attempts` failures the finalizer goes anyway, with a Warning event naming what was
//! left behind. Our Secrets go with the TppClient through their owner references.

use std::time::Duration;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action as Requeue,
        events::{Event, EventType},
    },
};
use serde_json::json;

use super::{context::Context, server, session::Session};
use crate::{
    crd::{DeletionPolicy, TppClient},
    error::Error,
    oauth::DeleteOutcome,
    reason::Reason,
    store::layout::FINALIZER,
};

/// Add the finalizer (JSON patch guarded by the resourceVersion we saw). The object we saw may
/// be older than the API server's (our own status write a moment ago): when the guard fails,
/// read the object again and retry, a bounded number of times.
pub async fn add_finalizer(ctx: &Context, client: &TppClient) -> Result<(), Error> {
    let api: Api<TppClient> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    let mut seen = client.clone();
    for _ in 0..3 {
        match add_finalizer_to(&api, &seen).await {
            Err(Error::ApplyObject {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 422 => {
                seen = api
                    .get(&client.name_any())
                    .await
                    .map_err(|source| Error::ReadObject {
                        what: format!("TppClient {}", client.name_any()),
                        source,
                    })?;
                if seen.finalizers().iter().any(|f| f == FINALIZER) {
                    return Ok(());
                }
            }
            other => return other,
        }
    }
    add_finalizer_to(&api, &seen).await
}

async fn add_finalizer_to(api: &Api<TppClient>, client: &TppClient) -> Result<(), Error> {
    let rv = client.resource_version().unwrap_or_default();
    let ops = if client.meta().finalizers.is_none() {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
               {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|e| Error::CorruptState {
            what: "finalizer patch".into(),
            message: e.to_string(),
        })?;
    api.patch(
        &client.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|source| Error::ApplyObject {
        what: format!("TppClient {} finalizer", client.name_any()),
        source,
    })?;
    Ok(())
}

async fn remove_finalizer(ctx: &Context, client: &TppClient) -> Result<(), Error> {
    let Some(i) = client.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let api: Api<TppClient> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    let ops = json!([{"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                     {"op": "remove", "path": format!("/metadata/finalizers/{i}")}]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|e| Error::CorruptState {
            what: "finalizer patch".into(),
            message: e.to_string(),
        })?;
    match api
        .patch(
            &client.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::ApplyObject {
            what: format!("TppClient {} finalizer", client.name_any()),
            source,
        }),
    }
}

async fn event(
    ctx: &Context,
    client: &TppClient,
    type_: EventType,
    reason: Reason,
    action: &str,
    note: String,
) {
    // Events of one (reason, action) are aggregated into a series keeping the first note: the
    // final give-up gets its own action so that its note is seen.
    let ev = Event {
        type_,
        reason: reason.as_str().to_owned(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &client.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

/// Handle a TppClient being deleted.
pub async fn run(client: &TppClient, ctx: &Context) -> Result<Requeue, Error> {
    let namespace = client.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", client.name_any());
    ctx.metrics.forget_client(&namespace, &client.name_any());
    ctx.keygen.forget(&key);
    if !client.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Requeue::await_change());
    }
    if client.spec.registration.deletion_policy == DeletionPolicy::Orphan {
        remove_finalizer(ctx, client).await?;
        return Ok(Requeue::await_change());
    }
    let attempt = async {
        let resolved = match server::resolve(client, &namespace, ctx).await? {
            server::Lookup::Ready(r) => r,
            server::Lookup::Waiting(message) => {
                return Err(Error::AuthorizationServer {
                    reason: Reason::AuthorizationServerNotReady,
                    message,
                });
            }
        };
        let effects = super::effects::KubeEffects::new(ctx);
        let session = Session::load(ctx, &effects, client, namespace.clone(), resolved).await?;
        let id = session.registration.client_id.clone().unwrap_or_default();
        let outcome = super::register::deregister(&session).await?;
        Ok::<_, Error>((id, outcome))
    }
    .await;
    match attempt {
        Ok((id, DeleteOutcome::Refused)) => {
            // A 401 is no proof of deletion: say what may be left, then let the object go.
            event(
                ctx,
                client,
                EventType::Warning,
                Reason::DeregistrationFailed,
                "Delete",
                format!("the authorization server refused the registration access token of client {id} (401) when deleting it; {id} may remain registered there: check and delete it at the AS"),
            )
            .await;
            remove_finalizer(ctx, client).await?;
            ctx.reset_failures(&key);
            Ok(Requeue::await_change())
        }
        Ok((id, outcome)) => {
            let note = match outcome {
                DeleteOutcome::Deleted => {
                    format!("client {id} deleted at the authorization server")
                }
                DeleteOutcome::AlreadyGone | DeleteOutcome::Refused => {
                    format!("client {id} was already gone at the authorization server")
                }
            };
            event(
                ctx,
                client,
                EventType::Normal,
                Reason::Deregistered,
                "Delete",
                note,
            )
            .await;
            remove_finalizer(ctx, client).await?;
            ctx.reset_failures(&key);
            Ok(Requeue::await_change())
        }
        Err(e) => {
            let n = ctx.record_failure(&key);
            if n >= ctx.config.delete_attempts {
                let id = client
                    .status
                    .as_ref()
                    .and_then(|s| s.client_id.clone())
                    .unwrap_or_else(|| "(unknown)".into());
                event(
                    ctx,
                    client,
                    EventType::Warning,
                    Reason::DeregistrationFailed,
                    "GiveUp",
                    format!("gave up deregistering after {n} attempts; client {id} may remain registered at the authorization server: {}", e.chain()),
                )
                .await;
                remove_finalizer(ctx, client).await?;
                ctx.reset_failures(&key);
                return Ok(Requeue::await_change());
            }
            event(
                ctx,
                client,
                EventType::Warning,
                Reason::DeregistrationFailed,
                "Delete",
                format!("attempt {n}: {}", e.chain()),
            )
            .await;
            Ok(Requeue::requeue(
                super::context::backoff(n, e.retry_after()).min(Duration::from_secs(30)),
            ))
        }
    }
}
