//! The controllers: TppClient (observe → plan → act → publish → status, cleanup on deletion)
//! and AuthorizationServer / ClusterAuthorizationServer (discovery and preflight). Owned
//! Secrets are watched by metadata only, filtered by our label, and the operator's own writes
//! do not trigger reconciles; TppClients are cached without managedFields.

pub mod act;
pub mod cleanup;
pub mod client;
pub mod context;
pub mod policy;
pub mod register;
pub mod server;
pub mod server_status;
pub mod session;
pub mod status;

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::Secret;
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
/// trigger a reconcile: we already know what we wrote).
pub fn written_by_us(meta: &kube::api::ObjectMeta) -> bool {
    meta.managed_fields
        .as_ref()
        .and_then(|m| m.iter().filter(|e| e.time.is_some()).max_by_key(|e| e.time.as_ref().map(|t| t.0)))
        .is_some_and(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
}

/// What in a TppClient should trigger a reconcile: its generation (spec, deletion) and our
/// verb annotations — not status writes, not unrelated metadata.
fn trigger_hash(c: &TppClient) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.meta().generation.hash(&mut h);
    c.meta().deletion_timestamp.is_some().hash(&mut h);
    for (k, v) in c.annotations().iter().filter(|(k, _)| k.starts_with("tpp.dev/")) {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    Some(h.finish())
}

fn secret_triggers(api: Api<PartialObjectMeta<Secret>>) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static {
    let cfg = watcher::Config::default().labels(&managed_selector());
    watcher(api, cfg).default_backoff().filter_map(|ev| async move {
        match ev {
            Ok(Event::Apply(o)) if !written_by_us(&o.metadata) => Some(Ok(o)),
            Ok(Event::Delete(o)) => Some(Ok(o)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    })
}

async fn run_clients(client: Client, namespace: Option<String>, ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let (clients, secrets) = match &namespace {
        Some(ns) => (Api::<TppClient>::namespaced(client.clone(), ns), Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns)),
        None => (Api::<TppClient>::all(client.clone()), Api::<PartialObjectMeta<Secret>>::all(client.clone())),
    };
    let (reader, writer) = reflector::store();
    let stream = watcher(clients, watcher::Config::default())
        .default_backoff()
        .modify(|c: &mut TppClient| c.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    Controller::for_stream(stream, reader)
        .owns_stream(secret_triggers(secrets))
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(client::reconcile, client::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn run_servers(client: Client, namespace: Option<String>, ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static) {
    let api = match &namespace {
        Some(ns) => Api::<AuthorizationServer>::namespaced(client.clone(), ns),
        None => Api::<AuthorizationServer>::all(client.clone()),
    };
    let namespaced = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown.clone())
        .run(server_status::reconcile_namespaced, server_status::error_policy, ctx.clone())
        .for_each(|_| async {});
    namespaced.await;
}

async fn run_cluster_servers(client: Client, ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    Controller::new(Api::<ClusterAuthorizationServer>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(server_status::reconcile_cluster, server_status::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

use kube::runtime::watcher::watcher;

/// A future that resolves once `stop` turns true (or its sender is gone).
pub fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static {
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

/// Run every controller until `stop` turns true.
pub async fn run(ctx: Arc<Context>, stop: tokio::sync::watch::Receiver<bool>) {
    let shutdown = stopped(stop);
    let client = ctx.client.clone();
    let namespaces: Vec<Option<String>> = if ctx.config.namespaces.is_empty() { vec![None] } else { ctx.config.namespaces.iter().cloned().map(Some).collect() };
    let mut tasks: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = vec![];
    for ns in namespaces {
        tasks.push(Box::pin(run_clients(client.clone(), ns.clone(), ctx.clone(), shutdown.clone())));
        tasks.push(Box::pin(run_servers(client.clone(), ns, ctx.clone(), shutdown.clone())));
    }
    tasks.push(Box::pin(run_cluster_servers(client, ctx, shutdown)));
    join_all(tasks).await;
}
