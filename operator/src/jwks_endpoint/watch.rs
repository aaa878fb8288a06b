//! The watch of `<name>-keys` Secrets (label `tpp.dev/component=keys`) that keeps
//! [`super::ServedJwks`] current: one watch per watched namespace (or one cluster-wide), each
//! event turned into the public set at once, so no private key is held by it. Kubernetes I/O.

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};

use super::{ServedJwks, cache::document_of};
use crate::store::layout;

/// The label selector of the key states.
pub fn selector() -> String {
    format!(
        "{},{}=keys",
        layout::managed_selector(),
        layout::COMPONENT_LABEL
    )
}

/// Watch the key states of `namespaces` (empty: every namespace) into `served`, until the
/// process ends. `config` is the watch's configuration (its timeout: `--watch-timeout`).
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    config: watcher::Config,
    served: Arc<ServedJwks>,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let watches = scopes.into_iter().map(|scope| {
        let api: Api<Secret> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let served = served.clone();
        let cfg = config.clone().labels(&selector());
        async move {
            watcher(api, cfg)
                .default_backoff()
                .for_each(|ev| {
                    let served = served.clone();
                    let scope = scope.clone();
                    async move {
                        let scope = scope.as_deref();
                        match ev {
                            Ok(watcher::Event::Init) => served.relist_started(scope),
                            Ok(watcher::Event::InitApply(s) | watcher::Event::Apply(s)) => {
                                // Parsing the keys costs CPU: off the async workers, so that
                                // a relist of many clients never delays a lease renewal.
                                match tokio::task::spawn_blocking(move || document_of(&s)).await {
                                    Ok(doc) => served.insert(scope, doc),
                                    Err(e) => tracing::warn!(error = %e, "computing a served JWKS"),
                                }
                            }
                            Ok(watcher::Event::InitDone) => served.relist_done(scope),
                            Ok(watcher::Event::Delete(s)) => served.delete(&s),
                            Err(e) => {
                                tracing::warn!(error = %e, "watching the key states for /jwks")
                            }
                        }
                    }
                })
                .await
        }
    });
    futures::future::join_all(watches).await;
}
