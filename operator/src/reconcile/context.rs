//! What every reconcile shares: clients, caches, the clock, metrics, the event recorder, the
//! bounded crypto pool and the per-object failure counts that drive backoff. No I/O itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    Client,
    runtime::{
        events::Reporter,
        reflector::{ObjectRef, Store as Reflected},
    },
};
use tokio::sync::Semaphore;

use crate::{
    clock::Clock,
    config::Config,
    crd::{AuthorizationServer, ClusterAuthorizationServer},
    error::Error,
    event_recorder::EventRecorder,
    metrics::Metrics,
    oauth::{ClientPool, Discovery, PoolConfig},
    store::Store,
};

/// Shared state of the controllers.
pub struct Context {
    /// The kube client.
    pub client: Client,
    /// Rate-limited reads and applies.
    pub store: Store,
    /// The time source (fixed in tests).
    pub clock: Arc<dyn Clock>,
    /// HTTP clients per (AS, client certificate), with per-AS rate limiters.
    pub pool: ClientPool,
    /// Discovery documents, cached per URL.
    pub discovery: Discovery,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: EventRecorder,
    /// Process configuration.
    pub config: Config,
    /// Bounds concurrent key generation (CPU heavy) to the crypto pool size.
    pub crypto: Arc<Semaphore>,
    /// The AuthorizationServer caches of the AS controllers.
    pub servers: ServerStores,
    /// What the AS controllers resolved, for the TppClient reconciles.
    pub index: super::server_index::ServerIndex,
    /// Slots for reconciles that generate keys (the rest stay free for refreshes).
    pub keygen: super::admission::KeygenAdmission,
    /// `tpp.dev/refresh-discovery` values already acted on.
    pub discovery_refreshes: super::refresh::DiscoveryRefreshes,
    /// The TppClient statuses this process wrote last (a write is skipped only when the server
    /// already holds the same).
    pub statuses: Arc<super::status_ledger::StatusLedger>,
    /// The backoff of every AS whose resolution (discovery) is failing.
    pub server_backoff: super::server_backoff::ServerBackoff,
    /// Clients whose `<name>-jwks` ConfigMap someone else changed (restored at their next
    /// reconcile).
    pub jwks_tampered: super::jwks_copy::Tampered,
    /// Deleted clients whose work at the AS is done (deregistered, or reported as left there)
    /// while their finalizers are still to go.
    pub settled_at_as: super::cleanup::SettledAtAs,
    failures: Mutex<HashMap<String, u32>>,
    backoff: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl Context {
    /// Build the shared context.
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let workers = if config.crypto_workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            config.crypto_workers
        };
        let reporter = Reporter {
            controller: "tpp-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            store: Store::new(client.clone()),
            servers: ServerStores::default(),
            index: Default::default(),
            keygen: super::admission::KeygenAdmission::for_controller(
                usize::from(config.concurrency),
                workers,
            ),
            recorder: EventRecorder::new(client.clone(), reporter),
            pool: ClientPool::with_clock(PoolConfig::default(), clock.clone()),
            discovery: Discovery::new(Duration::from_secs(15 * 60), clock.clone()),
            crypto: Arc::new(Semaphore::new(workers)),
            discovery_refreshes: Default::default(),
            statuses: Default::default(),
            server_backoff: Default::default(),
            jwks_tampered: Default::default(),
            settled_at_as: Default::default(),
            failures: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            client,
            clock,
            metrics,
            config,
        }
    }

    /// Run CPU-heavy `f` (key generation) on the blocking pool, at most `crypto` at once.
    pub async fn cpu<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self.crypto.acquire().await.map_err(|_| Error::CryptoPool)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| Error::CryptoPool)
    }

    /// Count a failure of `key`; returns the count so far.
    pub fn record_failure(&self, key: &str) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Forget failures of `key` (after a success), and its backoff.
    pub fn reset_failures(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Record that `key` must not call the AS before `until` (after a failed AS call).
    pub fn set_backoff_until(&self, key: &str, until: jiff::Timestamp) {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), until);
    }

    /// Until when `key` must not call the AS, if it is backing off.
    pub fn backoff_until(&self, key: &str) -> Option<jiff::Timestamp> {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
    }
}

/// The reflector stores of the AuthorizationServer controllers (one per watched namespace) and
/// of the ClusterAuthorizationServer controller: a TppClient reconcile finds its AS here
/// instead of a GET.
#[derive(Default)]
pub struct ServerStores {
    namespaced: Mutex<Vec<Reflected<AuthorizationServer>>>,
    cluster: Mutex<Option<Reflected<ClusterAuthorizationServer>>>,
}

impl ServerStores {
    /// Add the store of one AuthorizationServer controller.
    pub fn add_namespaced(&self, store: Reflected<AuthorizationServer>) {
        self.namespaced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(store);
    }

    /// Set the store of the ClusterAuthorizationServer controller.
    pub fn set_cluster(&self, store: Reflected<ClusterAuthorizationServer>) {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    }

    /// The cached AuthorizationServer `namespace/name`, if a store holds it.
    pub fn namespaced(&self, namespace: &str, name: &str) -> Option<Arc<AuthorizationServer>> {
        let key = ObjectRef::new(name).within(namespace);
        self.namespaced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find_map(|s| s.get(&key))
    }

    /// The cached ClusterAuthorizationServer `name`, if the store holds it.
    pub fn cluster(&self, name: &str) -> Option<Arc<ClusterAuthorizationServer>> {
        self.cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|s| s.get(&ObjectRef::new(name)))
    }
}

/// The backoff of the `n`th transient failure in a row, with random jitter (see
/// [`crate::rotation::retry_delay`]).
pub fn backoff(n: u32, retry_after: Option<Duration>) -> Duration {
    crate::rotation::retry_delay(n, true, retry_after, 0.8 + rand::random::<f64>() * 0.4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert!(backoff(1, None) <= Duration::from_secs(3));
        assert!(backoff(30, None) <= Duration::from_secs(72));
        assert!(backoff(30, None) >= Duration::from_secs(48));
        assert!(backoff(1, Some(Duration::from_secs(60))) >= Duration::from_secs(60));
    }
}
