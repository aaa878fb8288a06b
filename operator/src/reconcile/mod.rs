//! The controllers: TppClient (observe → plan → act → publish → status, cleanup on deletion)
//! and AuthorizationServer / ClusterAuthorizationServer (discovery and preflight). Owned
//! Secrets are watched by metadata only, filtered by our label, and the operator's own writes
//! do not trigger reconciles; TppClients are cached without managedFields.

pub mod act;
pub mod admission;
pub mod cleanup;
pub mod client;
pub mod context;
pub mod deadline;
pub mod decode;
pub mod effects;
pub mod jwks_copy;
pub mod policy;
pub mod refresh;
pub mod register;
pub mod server;
pub mod server_backoff;
pub mod server_index;
pub mod server_status;
pub mod session;
pub mod standby;
pub mod status;
pub mod status_ledger;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod reconcile_tests;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, reflector,
        watcher::{self, Event},
    },
};

pub use context::Context;

use crate::{
    crd::{AuthorizationServer, ClusterAuthorizationServer, TppClient},
    store::layout::{FIELD_MANAGER, managed_selector},
};

/// Whether the last write to an object was the operator's own (so its watch event must not
/// trigger a reconcile: we already know what we wrote). `managedFields` times have a
/// resolution of one second: when another manager wrote in the same second as the operator's
/// latest write, which came last is unknown, and the write is not taken for ours (a server-side
/// apply with force right after our write was missed that way: docs/reliability.md
/// § Control-plane and AS faults).
pub fn written_by_us(meta: &kube::api::ObjectMeta) -> bool {
    let timed: Vec<_> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|e| Some((e.time.as_ref()?.0, e.manager.as_deref())))
        .collect();
    let Some(latest) = timed.iter().map(|(t, _)| *t).max() else {
        return false;
    };
    let mut last = timed.iter().filter(|(t, _)| *t == latest);
    last.clone().any(|(_, m)| *m == Some(FIELD_MANAGER))
        && last.all(|(_, m)| *m == Some(FIELD_MANAGER))
}

/// What in a TppClient should trigger a reconcile: its generation (spec, deletion) and our
/// verb annotations — not status writes, not unrelated metadata.
fn trigger_hash(c: &TppClient) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.meta().generation.hash(&mut h);
    c.meta().deletion_timestamp.is_some().hash(&mut h);
    for (k, v) in c
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with("tpp.dev/"))
    {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    Some(h.finish())
}

/// Owned Secrets that should trigger a reconcile: written or deleted by someone else. Each such
/// event (and a relist) also invalidates the Secret cache, before the reconcile it triggers.
fn secret_triggers(
    api: Api<PartialObjectMeta<Secret>>,
    scope: Option<String>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
{
    let cfg = ctx.config.watcher().labels(&managed_selector());
    watcher(api, cfg).default_backoff().filter_map(move |ev| {
        let cache = ctx.store.clone();
        let scope = scope.clone();
        async move {
            let c = cache.cache();
            let at = |o: &PartialObjectMeta<Secret>| {
                (
                    o.namespace().unwrap_or_default(),
                    o.name_any(),
                    o.resource_version().unwrap_or_default(),
                )
            };
            match ev {
                Ok(Event::Apply(o)) => {
                    let (ns, name, rv) = at(&o);
                    c.seen(&ns, &name, &rv);
                    if written_by_us(&o.metadata) {
                        return None;
                    }
                    c.forget(&ns, &name);
                    Some(Ok(o))
                }
                Ok(Event::Delete(o)) => {
                    let (ns, name, _) = at(&o);
                    c.gone(&ns, &name);
                    Some(Ok(o))
                }
                Ok(Event::Init) => {
                    c.relist_started(scope.as_deref());
                    None
                }
                Ok(Event::InitApply(o)) => {
                    let (ns, name, rv) = at(&o);
                    c.listed_one(scope.as_deref(), &ns, &name, &rv);
                    None
                }
                Ok(Event::InitDone) => {
                    c.relist_done(scope.as_deref());
                    None
                }
                Err(e) => Some(Err(e)),
            }
        }
    })
}

/// The annotation `kubectl apply` (client side) writes: a full copy of the object as last
/// applied, as large as the spec. No reconcile reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the TppClient cache does not keep: `managedFields` and [`LAST_APPLIED`], which no
/// reconcile reads and which together are often larger than the rest of the object (status
/// and the other annotations, `tpp.dev/*` verbs included, are kept).
pub(crate) fn slim_client(c: &mut TppClient) {
    c.managed_fields_mut().clear();
    if let Some(a) = c.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// The TppClients to reconcile (cached by [`standby::client_events`] without managedFields and
/// the last applied configuration: [`slim_client`]), relist-safe: see [`release_after_list`].
fn client_triggers(
    events: standby::ClientEvents,
    reader: reflector::Store<TppClient>,
    scope: Option<String>,
    ctx: &Context,
    warm: bool,
) -> impl futures::Stream<Item = Result<TppClient, watcher::Error>> + Send + 'static {
    let metrics = ctx.metrics.clone();
    // A warm store (a standby's, handed over at a takeover: standby.rs) is passed on whole
    // first: the watch it came from will not list again.
    let cached = if warm { reader.state() } else { vec![] };
    let cached = futures::stream::iter(cached).map(|o| Ok(Event::Apply((*o).clone())));
    let events = cached.chain(events);
    let events = forget_deleted(
        events,
        reader.clone(),
        scope,
        metrics,
        ctx.statuses.clone(),
        ctx.keygen.clone(),
    );
    release_after_list(events, reader).predicate_filter(trigger_hash, Default::default())
}

/// Drops the metric series, the status ledger's entries and the key-generation queue's places
/// of TppClients that are gone: deleted (a client without a finalizer never reaches
/// [`cleanup`]: a client still queued for its first keys has none), or absent from a completed
/// relist of `scope` (deleted while the watch was down).
fn forget_deleted<S>(
    events: S,
    reader: reflector::Store<TppClient>,
    scope: Option<String>,
    metrics: Arc<crate::metrics::Metrics>,
    statuses: Arc<status_ledger::StatusLedger>,
    keygen: admission::KeygenAdmission,
) -> impl futures::Stream<Item = Result<Event<TppClient>, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<Event<TppClient>, watcher::Error>> + Send + 'static,
{
    use kube::runtime::reflector::ObjectRef;
    events.inspect(move |ev| match ev {
        Ok(Event::Delete(o)) => {
            let ns = o.namespace().unwrap_or_default();
            metrics.forget_client(&ns, &o.name_any());
            statuses.forget(&format!("{ns}/{}", o.name_any()));
            keygen.forget(&format!("{ns}/{}", o.name_any()));
        }
        Ok(Event::InitDone) => {
            let cached =
                |ns: &str, name: &str| reader.get(&ObjectRef::new(name).within(ns)).is_some();
            metrics.retain_clients(scope.as_deref(), cached);
            // Another namespace's controller keeps its own entries.
            let keep = |key: &str| {
                let (ns, name) = key.split_once('/').unwrap_or(("", key));
                scope.as_deref().is_some_and(|s| s != ns) || cached(ns, name)
            };
            statuses.retain(keep);
            keygen.retain(keep);
        }
        _ => {}
    })
}

/// The objects of a reflected watch stream, with the objects of a (re)list (`InitApply`) held
/// back until `InitDone`, when the reflector has swapped them into its store: then the whole
/// store is passed on. Passed on at once, an object created while the watch was down would be
/// looked up before the store holds it, dropped by the controller (`ObjectNotFound`), and then
/// filtered out by the trigger hash for good: a TppClient that is never reconciled. The whole
/// store rather than the objects seen since `Init`: a watch handed over by a standby in the
/// middle of a list (standby.rs) delivered its first objects to the standby.
fn release_after_list<S>(
    events: S,
    reader: reflector::Store<TppClient>,
) -> impl futures::Stream<Item = Result<TppClient, watcher::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<Event<TppClient>, watcher::Error>> + Send + 'static,
{
    events
        .map(move |ev| {
            let out: Vec<Result<TppClient, watcher::Error>> = match ev {
                Ok(Event::Apply(o)) => vec![Ok(o)],
                Ok(Event::InitDone) => reader
                    .state()
                    .into_iter()
                    .map(|o| Ok((*o).clone()))
                    .collect(),
                Ok(Event::Init | Event::InitApply(_) | Event::Delete(_)) => vec![],
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(out)
        })
        .flatten()
}

async fn run_clients(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    (reader, events, handed_over): (reflector::Store<TppClient>, standby::ClientEvents, bool),
    filled: tokio::sync::oneshot::Sender<()>,
) {
    let (secrets, configmaps) = match &namespace {
        Some(ns) => (
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        ),
    };
    let scope = namespace.as_deref();
    // A standby's Secret cache is checked by one metadata LIST (standby.rs); else our Secrets
    // come in one paged LIST before the first reconcile: a restart with N clients reads 3N/250
    // pages instead of 3N GETs.
    let confirmed = if handed_over && ctx.store.cache().is_listed(scope) {
        match ctx.store.confirm(scope).await {
            Ok(n) => {
                tracing::info!(
                    secrets = n,
                    namespace = scope.unwrap_or("*"),
                    cached = ctx.store.cache().len(),
                    "Secret cache of the standby confirmed"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "confirming the standby's Secret cache failed; listing the Secrets");
                false
            }
        }
    } else {
        false
    };
    if !confirmed {
        match ctx.store.warm(scope).await {
            Ok(n) => tracing::info!(
                secrets = n,
                namespace = scope.unwrap_or("*"),
                "Secret cache filled"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "filling the Secret cache failed; reading Secrets one by one")
            }
        }
    }
    let _ = filled.send(());
    let stream = client_triggers(events, reader.clone(), namespace.clone(), &ctx, handed_over);
    Controller::for_stream(stream, reader)
        .owns_stream(secret_triggers(secrets, namespace.clone(), ctx.clone()))
        .owns_stream(jwks_copy::triggers(configmaps, ctx.clone()))
        .reconcile_on(woken(receiver(ctx.index.woken()), namespace.clone()))
        .reconcile_on(woken(keygen_turns(ctx.keygen.woken()), namespace.clone()))
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency),
        )
        .graceful_shutdown_on(shutdown)
        .run(client::reconcile, client::error_policy, ctx)
        .for_each(|r| async move { log_controller_error(r) })
        .await;
}

/// The TppClients (of `scope`, or all) woken by `rx`: their AuthorizationServer was just
/// published Ready ([`server_index`]), or a key-generation slot was handed to them
/// ([`admission`]).
fn woken(
    rx: impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<TppClient>> + Send + 'static,
    scope: Option<String>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<TppClient>> + Send + 'static {
    rx.filter(move |client| {
        let keep = scope.is_none() || client.namespace == scope;
        futures::future::ready(keep)
    })
}

/// A broadcast receiver as a stream. Missed wake-ups are covered by the woken clients' safety
/// requeues (and a key-generation slot not taken is passed on: [`admission::RESERVATION_TTL`]).
fn receiver<T: Clone + Send + 'static>(
    rx: tokio::sync::broadcast::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The clients handed a key-generation slot (`namespace/name`).
fn keygen_turns(
    rx: tokio::sync::broadcast::Receiver<String>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<TppClient>> + Send + 'static {
    receiver(rx).filter_map(|key| {
        let client = key
            .split_once('/')
            .map(|(ns, name)| kube::runtime::reflector::ObjectRef::new(name).within(ns));
        futures::future::ready(client)
    })
}

/// The controller's own failures (the reconciler's are logged by its error policy).
fn log_controller_error<T, E: std::error::Error>(
    r: Result<T, kube::runtime::controller::Error<E, watcher::Error>>,
) {
    use kube::runtime::controller::Error as C;
    match r {
        Ok(_) | Err(C::ReconcilerFailed(..)) => {}
        Err(C::ObjectNotFound(obj)) => {
            tracing::debug!(object = %obj, "a reconcile was asked for an object no longer in the cache")
        }
        Err(e) => tracing::warn!(error = %e, "controller"),
    }
}

/// A controller of `K` (AuthorizationServer or ClusterAuthorizationServer) whose watch decodes
/// each object on its own ([`decode`]): one object this build cannot read does not stop the
/// resolution of the others.
fn server_controller<K>(
    client: Client,
    namespace: Option<&str>,
    ctx: &Context,
    kind: &'static str,
) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let report = decode::warn_with(ctx.recorder.clone(), kind, "tpp.dev/v1alpha1");
    let api = decode::raw_api::<K>(client, namespace);
    let stream = decode::decoded::<K>(api, ctx.config.watcher(), report)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(stream, reader)
}

async fn run_servers(
    controller: Controller<AuthorizationServer>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    ctx.servers.add_namespaced(controller.store());
    let namespaced = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            server_status::reconcile_namespaced,
            server_status::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move { log_controller_error(r) });
    namespaced.await;
}

async fn run_cluster_servers(
    controller: Controller<ClusterAuthorizationServer>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.servers.set_cluster(controller.store());
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            server_status::reconcile_cluster,
            server_status::error_policy,
            ctx,
        )
        .for_each(|r| async move { log_controller_error(r) })
        .await;
}

use kube::runtime::watcher::watcher;

/// A future that resolves once `stop` turns true (or its sender is gone).
pub fn stopped(
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static {
    let fut = async move {
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    futures::FutureExt::shared(Box::pin(fut))
}

/// Run every controller until `stop` turns true. `synced` is called once, when every watcher
/// has its initial list in its cache (TppClients, after the Secret cache is filled;
/// AuthorizationServers; ClusterAuthorizationServers): that is when `/readyz` turns true.
/// `warm`: the watches a standby hands over at a takeover ([`standby`]); a scope without one
/// starts cold.
pub async fn run(
    ctx: Arc<Context>,
    stop: tokio::sync::watch::Receiver<bool>,
    synced: impl FnOnce() + Send + 'static,
    mut warm: Vec<standby::Warm>,
) {
    let shutdown = stopped(stop);
    let client = ctx.client.clone();
    let namespaces = standby::scopes(&ctx);
    let mut tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = vec![];
    let mut caches: Vec<futures::future::BoxFuture<'static, bool>> = vec![];
    fn ready<K>(store: reflector::Store<K>) -> futures::future::BoxFuture<'static, bool>
    where
        K: kube::Resource + Clone + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    {
        Box::pin(async move { store.wait_until_ready().await.is_ok() })
    }
    for ns in namespaces {
        let (reader, events, handed_over) = match warm
            .iter()
            .position(|w| w.scope == ns)
            .map(|i| warm.swap_remove(i))
        {
            Some(w) => (w.reader, w.events, true),
            None => {
                let (reader, writer) = reflector::store();
                let report =
                    decode::warn_with(ctx.recorder.clone(), "TppClient", "tpp.dev/v1alpha1");
                let events = standby::client_events(&ctx, ns.as_deref(), writer, report);
                (reader, events, false)
            }
        };
        // Ready once the TppClients are listed and the Secret cache is filled (or confirmed).
        let (filled, secrets_filled) = tokio::sync::oneshot::channel();
        let clients_listed = ready(reader.clone());
        caches.push(Box::pin(async move {
            secrets_filled.await.is_ok() && clients_listed.await
        }));
        tasks.push(Box::pin(run_clients(
            client.clone(),
            ns.clone(),
            ctx.clone(),
            shutdown.clone(),
            (reader, events, handed_over),
            filled,
        )));
        let servers = server_controller::<AuthorizationServer>(
            client.clone(),
            ns.as_deref(),
            &ctx,
            "AuthorizationServer",
        );
        caches.push(ready(servers.store()));
        tasks.push(Box::pin(run_servers(
            servers,
            ctx.clone(),
            shutdown.clone(),
        )));
    }
    let cluster = server_controller::<ClusterAuthorizationServer>(
        client,
        None,
        &ctx,
        "ClusterAuthorizationServer",
    );
    caches.push(ready(cluster.store()));
    // The event series cache is dropped whole every generation (event_recorder.rs).
    let (recorder, until) = (ctx.recorder.clone(), shutdown.clone());
    tasks.push(Box::pin(async move {
        tokio::select! {
            () = recorder.expire_periodically() => {}
            () = until => {}
        }
    }));
    tasks.push(Box::pin(run_cluster_servers(cluster, ctx, shutdown)));
    tasks.push(Box::pin(async move {
        if join_all(caches).await.into_iter().all(|ok| ok) {
            tracing::info!("caches synced");
            synced();
        }
    }));
    join_all(tasks).await;
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::ObjectRef;

    use super::*;

    fn client(name: &str) -> TppClient {
        let mut c: TppClient = serde_json::from_value(serde_json::json!({
            "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"authorizationServerRef": {"name": "as"}, "registration": {"mode": "Static", "clientId": "x"}, "tokens": [{"name": "t", "scope": "s"}]},
        }))
        .expect("a valid TppClient");
        c.metadata.generation = Some(1);
        c
    }

    fn written_at(entries: &[(&str, i64)]) -> kube::api::ObjectMeta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        kube::api::ObjectMeta {
            managed_fields: Some(
                entries
                    .iter()
                    .map(|(manager, second)| ManagedFieldsEntry {
                        manager: Some((*manager).to_owned()),
                        time: jiff::Timestamp::from_second(*second).ok().map(Time),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_client_cache_drops_managed_fields_and_the_kubectl_copy_but_keeps_verbs_and_status() {
        let mut c = client("pay");
        let applied = serde_json::to_string(&c).expect("serialisable");
        c.metadata.annotations = Some(std::collections::BTreeMap::from([
            (LAST_APPLIED.to_owned(), applied),
            ("tpp.dev/rotate-keys".to_owned(), "1".to_owned()),
            ("team".to_owned(), "pay".to_owned()),
        ]));
        c.metadata.managed_fields = written_at(&[("kubectl", 10)]).managed_fields;
        c.status = Some(Default::default());
        let before = trigger_hash(&c);
        let spec = c.spec.clone();
        slim_client(&mut c);
        let kept: Vec<&str> = c.annotations().keys().map(String::as_str).collect();
        assert_eq!(kept, ["team", "tpp.dev/rotate-keys"]);
        assert!(c.metadata.managed_fields.as_ref().is_none_or(Vec::is_empty));
        assert!(c.status.is_some(), "the reconcile reads the status");
        assert_eq!(c.spec, spec);
        assert_eq!(trigger_hash(&c), before, "no trigger is lost or added");
    }

    #[test]
    fn a_write_is_ours_only_when_no_other_manager_wrote_in_the_same_second() {
        assert!(written_by_us(&written_at(&[
            ("kubectl", 10),
            (FIELD_MANAGER, 11)
        ])));
        assert!(!written_by_us(&written_at(&[
            (FIELD_MANAGER, 10),
            ("intruder", 11)
        ])));
        // Same second: which came last is unknown; not taken for ours.
        assert!(!written_by_us(&written_at(&[
            ("intruder", 11),
            (FIELD_MANAGER, 11)
        ])));
        assert!(!written_by_us(&written_at(&[
            (FIELD_MANAGER, 11),
            ("intruder", 11)
        ])));
        assert!(!written_by_us(&written_at(&[])));
    }

    #[tokio::test]
    async fn a_client_listed_during_a_relist_is_passed_on_only_once_the_store_holds_it() {
        let (reader, writer) = reflector::store::<TppClient>();
        let events = futures::stream::iter(vec![
            Event::Init,
            Event::InitApply(client("a")),
            Event::InitApply(client("b")),
            Event::InitDone,
            Event::Apply(client("c")),
            Event::Init,
            Event::InitApply(client("d")),
        ])
        .map(Ok)
        .reflect(writer);
        let check = reader.clone();
        let seen: Vec<String> = release_after_list(events, reader)
            .map(|r| {
                let o = r.expect("no watch error");
                assert!(
                    check.get(&ObjectRef::from_obj(&o)).is_some(),
                    "{} was passed on before the store held it",
                    o.name_any()
                );
                o.name_any()
            })
            .collect()
            .await;
        // `d` belongs to a list that never completed: it is not passed on (yet).
        let (mut listed, rest) = (seen[..2].to_vec(), &seen[2..]);
        listed.sort();
        assert_eq!(listed, ["a", "b"]);
        assert_eq!(rest, ["c"]);
    }

    #[tokio::test]
    async fn a_watch_handed_over_in_the_middle_of_a_list_passes_on_every_listed_client() {
        let (reader, writer) = reflector::store::<TppClient>();
        let mut events = futures::stream::iter(vec![
            Event::Init,
            Event::InitApply(client("a")),
            Event::InitApply(client("b")),
            Event::InitDone,
        ])
        .map(Ok)
        .reflect(writer)
        .boxed();
        // The standby polled the watch up to `a`; the controller gets the rest.
        for _ in 0..2 {
            let _ = events.next().await;
        }
        let mut seen: Vec<String> = release_after_list(events, reader)
            .map(|r| r.expect("no watch error").name_any())
            .collect()
            .await;
        seen.sort();
        assert_eq!(seen, ["a", "b"]);
    }

    #[tokio::test]
    async fn the_series_and_queue_places_of_a_deleted_client_or_one_missing_from_a_relist_are_dropped()
     {
        let metrics = Arc::new(crate::metrics::Metrics::new(false));
        for name in ["a", "b", "c"] {
            metrics.set_ready("ns", name, "as", Some(true));
        }
        metrics.set_ready("other", "x", "as", Some(true));
        // One key-generation slot, held; every client queued for its first keys (no finalizer
        // yet, so a deletion never reaches `cleanup`).
        let keygen = admission::KeygenAdmission::new(1, 1);
        let _held = keygen.admit("ns/held").expect("the slot");
        for key in ["ns/a", "ns/b", "ns/c", "other/x"] {
            assert!(keygen.admit(key).is_err());
        }
        let (reader, writer) = reflector::store::<TppClient>();
        let events = futures::stream::iter(vec![
            Event::Init,
            Event::InitApply(client("a")),
            Event::InitApply(client("b")),
            Event::InitDone,
            Event::Delete(client("b")),
        ])
        .map(Ok)
        .reflect(writer);
        let _: Vec<_> = forget_deleted(
            events,
            reader,
            Some("ns".into()),
            metrics.clone(),
            Default::default(),
            keygen.clone(),
        )
        .collect()
        .await;
        // `ns/a` and `other/x` still wait.
        assert_eq!(keygen.backlog(), 2);
        let text = metrics.render();
        let ready: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tpp_operator_client_ready{"))
            .collect();
        // `c` was not in the relist, `b` was deleted; `other/x` is outside the relisted scope.
        assert_eq!(
            ready,
            [
                r#"tpp_operator_client_ready{namespace="ns",name="a",server="as"} 1"#,
                r#"tpp_operator_client_ready{namespace="other",name="x",server="as"} 1"#,
            ]
        );
    }
}
