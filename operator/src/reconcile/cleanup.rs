//! Deletion: the finalizer exists only while the operator has something to do at the AS when
//! the client goes ([`at_deletion`]). Static and HubOnboarding clients with `Delete` have their
//! access tokens revoked and stay registered. Dynamic and SignedRequest `Delete` revokes
//! the client's access tokens (RFC 7009, best effort: a failure is a Warning
//! `RevocationFailed`, never a reason to wait), sends RFC 7592 DELETE ("already gone" is
//! success) and then removes the finalizer; `Orphan` removes
//! it at once. An AS that stays unreachable does not block deletion forever: after
//! `--delete-attempts` failures the finalizer goes anyway. Our Secrets go with the TppClient
//! through their owner references.
//!
//! Namespace deletion deletes every Secret in parallel with the TppClient: the `<name>-keys`
//! and `<name>-registration` Secrets carry the same finalizer, so the registration access
//! token and the transport key stay readable until the DELETE is done; the AS object may be
//! gone too, and the last resolution the process saw of it is used. A client that still cannot
//! be deregistered (the token unreadable, the AS unknown after a restart, the AS unreachable)
//! is never left silently: a log line, `tpp_operator_clients_left_at_as_total` and, where the
//! API server takes it, a Warning event name it (docs/reliability.md, "Deletion").

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
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
    crd::{AuthorizationServerKind, DeletionPolicy, RegistrationMode, TppClient},
    error::Error,
    failpoints::{self, Side},
    oauth::DeleteOutcome,
    reason::Reason,
    store::layout::{self, FINALIZER},
};

/// Deleted clients (by uid) whose work at the AS is done — deregistered, or named as left
/// there — but whose finalizers have not gone yet. A finalizer removal that fails is retried
/// without a second RFC 7592 DELETE: the AS would answer it 401 (the client is gone), which
/// reads as a client that may remain, a false alarm (docs/reliability.md, "Deletion"). In
/// memory: after a restart in that window the DELETE is sent again (the conservative side).
#[derive(Default)]
pub struct SettledAtAs(std::sync::Mutex<std::collections::HashSet<String>>);

impl SettledAtAs {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, uid: &str) {
        self.lock().insert(uid.to_owned());
    }

    fn contains(&self, uid: &str) -> bool {
        self.lock().contains(uid)
    }

    fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }
}

/// What the operator does at the AS when a TppClient is deleted (and so whether it holds the
/// deregistration finalizer while the client lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtDeletion {
    /// Revoke the access tokens, then RFC 7592 DELETE (Dynamic, SignedRequest; `Delete`).
    Deregister,
    /// Revoke the access tokens only (Static, HubOnboarding; `Delete`): the client itself was
    /// provisioned outside the operator and stays, but the tokens the operator minted go with
    /// the Secret that held them, so nobody should keep a copy that works.
    RevokeTokens,
    /// Nothing (`Orphan`): the client and its tokens are left at the AS as they are, e.g. for
    /// a move to another cluster whose restored Secrets still carry the tokens.
    Nothing,
}

/// [`AtDeletion`] for the client's registration mode and deletion policy.
pub fn at_deletion(mode: RegistrationMode, policy: DeletionPolicy) -> AtDeletion {
    match (policy, mode) {
        (DeletionPolicy::Orphan, _) => AtDeletion::Nothing,
        (DeletionPolicy::Delete, RegistrationMode::Dynamic | RegistrationMode::SignedRequest) => {
            AtDeletion::Deregister
        }
        (DeletionPolicy::Delete, RegistrationMode::Static | RegistrationMode::HubOnboarding) => {
            AtDeletion::RevokeTokens
        }
    }
}

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
    let failed = |source| Error::ApplyObject {
        what: format!("TppClient {} finalizer", client.name_any()),
        source,
    };
    failpoints::kube_write(Side::Before, "remove_finalizer")
        .await
        .map_err(failed)?;
    match api
        .patch(
            &client.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => return Err(failed(source)),
    }
    failpoints::kube_write(Side::After, "remove_finalizer")
        .await
        .map_err(failed)
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

/// What deregistering came to.
enum Deregistration {
    /// RFC 7592 DELETE done, or the AS no longer knew the client.
    Done(DeleteOutcome, String),
    /// No client was ever registered (no client id anywhere): nothing to do.
    NothingRegistered,
    /// A client is registered but cannot be deregistered: why, in a sentence.
    Impossible(String),
}

/// The AS to deregister at: the resolution its controller published, else (the AS object is
/// gone, e.g. its namespace is being deleted, or not Ready) the last Ready resolution the
/// process saw ([`super::server_index::ServerIndex::last_ready`]).
async fn server_for_cleanup(
    client: &TppClient,
    namespace: &str,
    ctx: &Context,
) -> Result<std::sync::Arc<server::ResolvedServer>, Error> {
    let r = &client.spec.authorization_server_ref;
    let key = match r.kind {
        AuthorizationServerKind::AuthorizationServer => server::namespaced_key(namespace, &r.name),
        AuthorizationServerKind::ClusterAuthorizationServer => server::cluster_key(&r.name),
    };
    match server::resolve(client, namespace, ctx).await {
        Ok(server::Lookup::Ready(resolved)) => Ok(resolved),
        Ok(server::Lookup::Waiting(message)) => {
            ctx.index
                .last_ready(&key)
                .ok_or(Error::AuthorizationServer {
                    reason: Reason::AuthorizationServerNotReady,
                    message,
                })
        }
        Err(e) if e.reason() == Reason::AuthorizationServerNotFound => {
            ctx.index.last_ready(&key).ok_or(e)
        }
        Err(e) => Err(e),
    }
}

async fn deregister(
    client: &TppClient,
    namespace: &str,
    ctx: &Context,
) -> Result<Deregistration, Error> {
    let resolved = server_for_cleanup(client, namespace, ctx).await?;
    let effects = super::effects::KubeEffects::new(ctx);
    let session = Session::load(ctx, &effects, client, namespace.to_owned(), resolved).await?;
    // Tokens first, while the client can still authenticate; best effort, never blocking.
    let failures = super::register::revoke_tokens(&session).await;
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, reason)| format!("{name} ({reason})"))
            .collect();
        event(
            ctx,
            client,
            EventType::Warning,
            Reason::RevocationFailed,
            "Delete",
            format!(
                "access tokens not revoked at the authorization server: {}; they stay valid until they expire",
                list.join(", ")
            ),
        )
        .await;
    }
    let reg = &session.registration;
    let known = client
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .filter(|id| !id.is_empty());
    if reg.client_id.is_none() || reg.registration_access_token.is_none() {
        // Without the registration access token no DELETE can be sent. "Already gone" only
        // when no client was ever registered; a client the status names is left at the AS.
        return Ok(match known.or_else(|| reg.client_id.clone()) {
            Some(id) => Deregistration::Impossible(format!(
                "client {id} cannot be deregistered: its registration access token is not readable \
                 (Secret {} is gone or holds none)",
                layout::registration_name(&client.name_any())
            )),
            None => Deregistration::NothingRegistered,
        });
    }
    let id = reg.client_id.clone().unwrap_or_default();
    if reg.foreign_access_token() {
        // No RFC 7592 call with a token someone else wrote (docs/security.md).
        return Ok(Deregistration::Impossible(format!(
            "client {id} was not deregistered: the registration access token in Secret {} is not the one the AS issued to this operator (it does not match registration_access_token.sha256); delete {id} at the AS",
            layout::registration_name(&client.name_any())
        )));
    }
    let outcome = super::register::deregister(&session).await?;
    Ok(Deregistration::Done(outcome, id))
}

/// Remove our finalizer from the client's `<name>-keys` and `<name>-registration` Secrets
/// (see [`crate::store::build::keeps_for_deregistration`]), so that they can go.
async fn release_secrets(ctx: &Context, client: &TppClient, namespace: &str) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = client.name_any();
    for secret in [layout::keys_name(&name), layout::registration_name(&name)] {
        let Some(found) = api
            .get_opt(&secret)
            .await
            .map_err(|source| Error::ReadObject {
                what: format!("Secret {secret}"),
                source,
            })?
        else {
            continue;
        };
        let Some(i) = found.finalizers().iter().position(|f| f == FINALIZER) else {
            continue;
        };
        let ops = json!([{"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                         {"op": "remove", "path": format!("/metadata/finalizers/{i}")}]);
        let patch: json_patch::Patch =
            serde_json::from_value(ops).map_err(|e| Error::CorruptState {
                what: "finalizer patch".into(),
                message: e.to_string(),
            })?;
        let failed = |source| Error::ApplyObject {
            what: format!("Secret {secret} finalizer"),
            source,
        };
        failpoints::kube_write(Side::Before, "release_secret")
            .await
            .map_err(failed)?;
        match api
            .patch(&secret, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(failed(source)),
        }
        failpoints::kube_write(Side::After, "release_secret")
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// The client's finalizers go: on its Secrets first (so none is left blocking once the
/// TppClient is gone), then its own.
async fn finish(
    ctx: &Context,
    client: &TppClient,
    namespace: &str,
    key: &str,
) -> Result<Requeue, Error> {
    // Whatever was done at the AS is not done again if a finalizer removal below fails.
    let uid = client.uid().unwrap_or_default();
    ctx.settled_at_as.mark(&uid);
    release_secrets(ctx, client, namespace).await?;
    remove_finalizer(ctx, client).await?;
    ctx.settled_at_as.forget(&uid);
    ctx.reset_failures(key);
    Ok(Requeue::await_change())
}

/// Revoke the tokens of a client the operator does not deregister ([`AtDeletion::RevokeTokens`]).
/// Best effort and never blocking: anything that fails (the AS unresolvable, a refused
/// revocation) is a Warning `RevocationFailed`, and the object goes.
async fn revoke_only(ctx: &Context, client: &TppClient, namespace: &str) {
    let failed = match server_for_cleanup(client, namespace, ctx).await {
        Err(e) => Some(e.chain()),
        Ok(resolved) => {
            let effects = super::effects::KubeEffects::new(ctx);
            match Session::load(ctx, &effects, client, namespace.to_owned(), resolved).await {
                Err(e) => Some(e.chain()),
                Ok(session) => {
                    let failures = super::register::revoke_tokens(&session).await;
                    (!failures.is_empty()).then(|| {
                        failures
                            .iter()
                            .map(|(name, reason)| format!("{name} ({reason})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                }
            }
        }
    };
    if let Some(why) = failed {
        event(
            ctx,
            client,
            EventType::Warning,
            Reason::RevocationFailed,
            "Delete",
            format!(
                "access tokens not revoked at the authorization server: {why}; they stay valid until they expire"
            ),
        )
        .await;
    }
}

/// A client left registered at the AS: never silent. A log line and a metric always (an
/// event cannot be created in a namespace being deleted), and a Warning event on the
/// TppClient when the API server takes it.
async fn left_at_as(ctx: &Context, client: &TppClient, namespace: &str, message: String) {
    let server = &client.spec.authorization_server_ref.name;
    tracing::error!(
        namespace,
        name = %client.name_any(),
        server = %server,
        message = %message,
        "client left registered at the authorization server"
    );
    ctx.metrics.client_left_at_as(server);
    event(
        ctx,
        client,
        EventType::Warning,
        Reason::DeregistrationFailed,
        "GiveUp",
        message,
    )
    .await;
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
    // A finalizer removal failed after the work at the AS was done: not again.
    let settled = ctx
        .settled_at_as
        .contains(&client.uid().unwrap_or_default());
    match at_deletion(
        client.spec.registration.mode,
        client.spec.registration.deletion_policy,
    ) {
        AtDeletion::Nothing => return finish(ctx, client, &namespace, &key).await,
        AtDeletion::RevokeTokens => {
            if !settled {
                revoke_only(ctx, client, &namespace).await;
            }
            return finish(ctx, client, &namespace, &key).await;
        }
        AtDeletion::Deregister => {}
    }
    if settled {
        // Deregistered (or reported) already; only the finalizers are left.
        return finish(ctx, client, &namespace, &key).await;
    }
    match deregister(client, &namespace, ctx).await {
        Ok(Deregistration::Done(DeleteOutcome::Refused, id)) => {
            // A 401 is no proof of deletion: name what may be left, then let the object go.
            left_at_as(
                ctx,
                client,
                &namespace,
                format!("the authorization server refused the registration access token of client {id} (401) when deleting it; {id} may remain registered there: check and delete it at the AS"),
            )
            .await;
            finish(ctx, client, &namespace, &key).await
        }
        Ok(Deregistration::Done(outcome, id)) => {
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
            finish(ctx, client, &namespace, &key).await
        }
        Ok(Deregistration::NothingRegistered) => finish(ctx, client, &namespace, &key).await,
        Ok(Deregistration::Impossible(why)) => {
            left_at_as(ctx, client, &namespace, why).await;
            finish(ctx, client, &namespace, &key).await
        }
        Err(e) => {
            let n = ctx.record_failure(&key);
            if n >= ctx.config.delete_attempts {
                let id = client
                    .status
                    .as_ref()
                    .and_then(|s| s.client_id.clone())
                    .unwrap_or_else(|| "(unknown)".into());
                left_at_as(
                    ctx,
                    client,
                    &namespace,
                    format!("gave up deregistering after {n} attempts; client {id} may remain registered at the authorization server: {}", e.chain()),
                )
                .await;
                return finish(ctx, client, &namespace, &key).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_with_delete_revokes_its_tokens_and_only_orphan_leaves_them() {
        use RegistrationMode::*;
        for mode in [Dynamic, SignedRequest] {
            assert_eq!(
                at_deletion(mode, DeletionPolicy::Delete),
                AtDeletion::Deregister
            );
        }
        for mode in [Static, HubOnboarding] {
            assert_eq!(
                at_deletion(mode, DeletionPolicy::Delete),
                AtDeletion::RevokeTokens
            );
        }
        for mode in [Dynamic, SignedRequest, Static, HubOnboarding] {
            assert_eq!(
                at_deletion(mode, DeletionPolicy::Orphan),
                AtDeletion::Nothing
            );
        }
    }
}
