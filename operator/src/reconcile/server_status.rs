//! The AuthorizationServer / ClusterAuthorizationServer controller: the one place an AS is
//! resolved (CA bundle, discovery, issuer check, the generic FAPI 2.0 preflight). The result is
//! published in the in-memory [`super::server_index`] for the TppClient reconciles, then in the
//! object's status for users (Ready, effective endpoints, advertised methods and algorithms).
//! Network and Kubernetes I/O.

use std::{sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action as Requeue,
};
use serde_json::json;

use super::{context::Context, server::ResolvedServer, server_index::Resolution};
use crate::{
    crd::{
        AuthorizationServer, AuthorizationServerSpec, AuthorizationServerStatus,
        ClusterAuthorizationServer, DiscoveredEndpoints, Profile, annotations,
        condition::{Conditions, types},
    },
    error::Error,
    failpoints::{self, Side},
    oauth::{ClientNeeds, EndpointKind, Severity, preflight},
    reason::Reason,
    store::layout::FIELD_MANAGER,
};

/// Drop the cached discovery document of `spec` when `annotations` carry a new
/// `tpp.dev/refresh-discovery` value (see [`super::refresh`]); returns whether it did.
fn refresh_discovery(
    ctx: &Context,
    as_key: &str,
    annotations: &std::collections::BTreeMap<String, String>,
    spec: &AuthorizationServerSpec,
) -> bool {
    let requested = annotations
        .get(annotations::REFRESH_DISCOVERY)
        .map(String::as_str);
    if ctx.discovery_refreshes.take(as_key, requested) {
        tracing::info!(
            server = as_key,
            "refresh-discovery requested: dropping the cached discovery document"
        );
        ctx.discovery
            .invalidate(&spec.issuer, spec.discovery_url.as_deref());
        return true;
    }
    false
}

/// The wait left before `as_key` at `generation` may be resolved again after failures, unless
/// a refresh was just requested ([`super::server_backoff`]): whatever triggered this reconcile
/// (our own status write among others), no request goes to a failing AS before then.
fn backing_off(
    ctx: &Context,
    as_key: &str,
    generation: Option<i64>,
    refreshed: bool,
) -> Option<Requeue> {
    if refreshed {
        return None;
    }
    let wait = ctx
        .server_backoff
        .wait(as_key, generation, ctx.clock.now())?;
    tracing::debug!(
        server = as_key,
        ?wait,
        "backing off: not resolving the AS yet"
    );
    Some(Requeue::requeue(wait))
}

/// Resolve the AS, check it, and publish the result in the index (for the TppClients) before
/// the status is written (for users).
async fn observe(
    ctx: &Context,
    spec: &AuthorizationServerSpec,
    generation: Option<i64>,
    as_key: &str,
    ca_namespace: &str,
    cluster: bool,
) -> Result<AuthorizationServerStatus, Error> {
    match check(ctx, spec, as_key, ca_namespace, cluster).await {
        Ok((status, server)) => {
            ctx.index
                .publish(as_key, generation, Resolution::Ready(Arc::new(server)));
            Ok(status)
        }
        Err(e) => {
            let resolution = Resolution::NotReady {
                reason: e.reason(),
                message: e.chain(),
            };
            ctx.index.publish(as_key, generation, resolution);
            Err(e)
        }
    }
}

/// Every endpoint the clients of this AS would call (the spec's registration endpoint and the
/// discovered ones), checked against the egress policy at resolution: an AuthorizationServer
/// that points inward is refused with `EgressRefused` on itself, before any client calls it
/// (the call itself is refused too, in `oauth::transport`).
fn check_egress(
    spec: &AuthorizationServerSpec,
    meta: &crate::oauth::ProviderMetadata,
    policy: Option<&crate::oauth::egress::EgressPolicy>,
) -> Result<(), Error> {
    use crate::oauth::{OauthError, Step};
    let Some(policy) = policy else {
        return Ok(());
    };
    let mut urls: Vec<(Step, String)> = vec![];
    if let Some(e) = spec.registration.as_ref().and_then(|r| r.endpoint.clone()) {
        urls.push((Step::Register, e));
    }
    for (step, kind) in [
        (Step::Token, EndpointKind::Token),
        (Step::Register, EndpointKind::Registration),
        (Step::Introspection, EndpointKind::Introspection),
        (Step::Revocation, EndpointKind::Revocation),
        (
            Step::PushedAuthorization,
            EndpointKind::PushedAuthorizationRequest,
        ),
    ] {
        for mtls in [true, false] {
            if let Some(u) = meta.effective_endpoint(kind, mtls) {
                urls.push((step, u.to_owned()));
            }
        }
    }
    for (step, url) in urls {
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        if !policy.allows(&host) {
            // The host may come from a document the operator now refuses to trust: the
            // message names it (what to list, or to fix at the AS), sanitised and bounded, and
            // nothing else of the document (issue 13, item 5).
            let host = crate::oauth::wire::sanitize(&host).unwrap_or_default();
            return Err(Error::Discovery(OauthError::EgressRefused { step, host }));
        }
    }
    Ok(())
}

/// The client authentication method the AS-wide preflight checks: the AS serves clients of
/// either method and each TppClient checks its own (`server::resolve`), so here one the
/// operator can use must be advertised — `private_key_jwt`, else `tls_client_auth` (an AS
/// for mTLS clients only, as in docs/conformance.md, is not refused).
fn server_auth_method(meta: &crate::oauth::ProviderMetadata) -> &'static str {
    let methods = &meta.token_endpoint_auth_methods_supported;
    if crate::oauth::ProviderMetadata::supports(methods, "private_key_jwt")
        || !crate::oauth::ProviderMetadata::supports(methods, "tls_client_auth")
    {
        "private_key_jwt"
    } else {
        "tls_client_auth"
    }
}

async fn check(
    ctx: &Context,
    spec: &AuthorizationServerSpec,
    as_key: &str,
    ca_namespace: &str,
    cluster: bool,
) -> Result<(AuthorizationServerStatus, ResolvedServer), Error> {
    let server = super::server::resolve_server(ctx, spec, as_key, ca_namespace, cluster).await?;
    let meta = server.meta.clone();
    check_egress(spec, &meta, crate::oauth::egress::installed().as_deref())?;
    let needs = ClientNeeds {
        fapi2: spec.profile == Profile::FAPI2,
        auth_method: server_auth_method(&meta).into(),
        ..Default::default()
    };
    let errors: Vec<String> = preflight(&meta, &needs)
        .into_iter()
        .filter(|f| f.severity() == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    if spec.profile == Profile::FAPI2 && !errors.is_empty() {
        return Err(Error::Preflight(errors.join("; ")));
    }
    let ep = |k| meta.effective_endpoint(k, true).map(str::to_owned);
    let status = AuthorizationServerStatus {
        endpoints: Some(DiscoveredEndpoints {
            token: ep(EndpointKind::Token),
            registration: spec
                .registration
                .as_ref()
                .and_then(|r| r.endpoint.clone())
                .or(meta.registration_endpoint.clone()),
            introspection: ep(EndpointKind::Introspection),
            revocation: ep(EndpointKind::Revocation),
            pushed_authorization_request: ep(EndpointKind::PushedAuthorizationRequest),
            jwks_uri: meta.jwks_uri.clone(),
        }),
        last_discovery_time: Some(Time(ctx.clock.now())),
        auth_methods: meta.token_endpoint_auth_methods_supported.clone(),
        signing_algorithms: meta
            .token_endpoint_auth_signing_alg_values_supported
            .clone(),
        ..Default::default()
    };
    Ok((status, server))
}

/// The status to write: the discovered fields of `st` (or, on `error`, the last discovered
/// ones of `old`), `observedGeneration`, `Ready`, and the kstatus conditions (docs/gitops.md):
/// `Stalled=True` on a permanent error (issuer mismatch, preflight findings, an invalid
/// spec: only a change helps), else `Reconciling=True` while a transient error is retried,
/// both `False` once Ready.
fn with_conditions(
    mut st: AuthorizationServerStatus,
    old: Option<&AuthorizationServerStatus>,
    generation: Option<i64>,
    error: Option<&Error>,
    now: jiff::Timestamp,
) -> AuthorizationServerStatus {
    st.conditions = old.map(|o| o.conditions.clone()).unwrap_or_default();
    st.observed_generation = generation;
    let mut c = Conditions::new(&mut st.conditions, generation, now);
    match error {
        None => {
            let reason = Reason::Reconciled;
            c.set(
                types::READY,
                true,
                reason,
                "discovery succeeded and the preflight found nothing missing",
            );
            c.set(types::RECONCILING, false, reason, "ready");
            c.set(types::STALLED, false, reason, "no permanent error");
        }
        Some(e) => {
            let (reason, message) = (e.reason(), e.chain());
            c.set(types::READY, false, reason, &message);
            if e.is_transient() {
                c.set(
                    types::RECONCILING,
                    true,
                    reason,
                    &format!("retrying: {message}"),
                );
                c.set(types::STALLED, false, reason, "retrying");
            } else {
                c.set(types::RECONCILING, false, reason, "waiting for a change");
                c.set(types::STALLED, true, reason, &message);
            }
        }
    }
    if error.is_some()
        && let Some(o) = old
    {
        // Keep what was last discovered; it is still the best knowledge.
        st.endpoints = o.endpoints.clone();
        st.last_discovery_time = o.last_discovery_time.clone();
        st.auth_methods = o.auth_methods.clone();
        st.signing_algorithms = o.signing_algorithms.clone();
    }
    st
}

/// When to resolve again: a Ready AS in 10 minutes; a failing one after its backoff
/// ([`super::server_backoff`], exponential with jitter, capped), which also holds back every
/// reconcile triggered before then.
fn requeue(
    ctx: &Context,
    as_key: &str,
    generation: Option<i64>,
    result: &Result<AuthorizationServerStatus, Error>,
) -> Requeue {
    match result {
        Ok(_) => {
            ctx.server_backoff.succeeded(as_key);
            Requeue::requeue(Duration::from_secs(10 * 60))
        }
        Err(e) => {
            let wait = ctx.server_backoff.failed(
                as_key,
                generation,
                ctx.clock.now(),
                e.is_transient(),
                e.retry_after(),
                0.8 + rand::random::<f64>() * 0.4,
            );
            tracing::warn!(
                server = as_key,
                reason = %e.reason(),
                transient = e.is_transient(),
                interaction_id = e.interaction_id(),
                failures = ctx.server_backoff.failures(as_key),
                ?wait,
                error = %e.chain(),
                "resolving the authorization server failed"
            );
            Requeue::requeue(wait)
        }
    }
}

/// Whether `new` says nothing `old` does not (the discovery time aside): then no status write,
/// so no watch event and no new reconcile.
fn unchanged(old: Option<&AuthorizationServerStatus>, new: &AuthorizationServerStatus) -> bool {
    old.is_some_and(|o| {
        let mut a = o.clone();
        let mut b = new.clone();
        a.last_discovery_time = None;
        b.last_discovery_time = None;
        a == b
    })
}

async fn write_status<K>(
    api: Api<K>,
    name: &str,
    kind: &str,
    old: Option<&AuthorizationServerStatus>,
    new: &AuthorizationServerStatus,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    if unchanged(old, new) {
        return Ok(());
    }
    let patch = json!({"apiVersion": "tpp.dev/v1alpha1", "kind": kind, "status": new});
    let failed = |source| Error::ApplyObject {
        what: format!("{kind} {name} status"),
        source,
    };
    failpoints::kube_write(Side::Before, "apply_server_status")
        .await
        .map_err(failed)?;
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(failed)?;
    failpoints::kube_write(Side::After, "apply_server_status")
        .await
        .map_err(failed)
}

/// Reconcile a namespaced AuthorizationServer.
pub async fn reconcile_namespaced(
    obj: Arc<AuthorizationServer>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let as_key = super::server::namespaced_key(&ns, &obj.name_any());
    let refreshed = refresh_discovery(&ctx, &as_key, obj.annotations(), &obj.spec);
    if let Some(wait) = backing_off(&ctx, &as_key, obj.metadata.generation, refreshed) {
        return Ok(wait);
    }
    let result = observe(
        &ctx,
        &obj.spec,
        obj.metadata.generation,
        &as_key,
        &ns,
        false,
    )
    .await;
    let st = with_conditions(
        result.as_ref().cloned().unwrap_or_default(),
        obj.status.as_ref(),
        obj.metadata.generation,
        result.as_ref().err(),
        ctx.clock.now(),
    );
    write_status(
        Api::<AuthorizationServer>::namespaced(ctx.client.clone(), &ns),
        &obj.name_any(),
        "AuthorizationServer",
        obj.status.as_ref(),
        &st,
    )
    .await?;
    Ok(requeue(&ctx, &as_key, obj.metadata.generation, &result))
}

/// Reconcile a ClusterAuthorizationServer.
pub async fn reconcile_cluster(
    obj: Arc<ClusterAuthorizationServer>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let as_key = super::server::cluster_key(&obj.name_any());
    let refreshed = refresh_discovery(&ctx, &as_key, obj.annotations(), &obj.spec.server);
    if let Some(wait) = backing_off(&ctx, &as_key, obj.metadata.generation, refreshed) {
        return Ok(wait);
    }
    let result = observe(
        &ctx,
        &obj.spec.server,
        obj.metadata.generation,
        &as_key,
        &ns,
        true,
    )
    .await;
    let st = with_conditions(
        result.as_ref().cloned().unwrap_or_default(),
        obj.status.as_ref(),
        obj.metadata.generation,
        result.as_ref().err(),
        ctx.clock.now(),
    );
    write_status(
        Api::<ClusterAuthorizationServer>::all(ctx.client.clone()),
        &obj.name_any(),
        "ClusterAuthorizationServer",
        obj.status.as_ref(),
        &st,
    )
    .await?;
    Ok(requeue(&ctx, &as_key, obj.metadata.generation, &result))
}

/// Requeue after a failed status write.
pub fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Requeue {
    tracing::warn!(reason = %error.reason(), error = %error.chain(), "authorization server reconcile failed");
    Requeue::requeue(Duration::from_secs(30))
}

#[cfg(test)]
#[path = "server_status_tests.rs"]
mod tests;
