//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it
//! (docs/reliability.md, "Leader election"): one replica acts, standbys stay warm and take over
//! when the holder stops renewing. Compare-and-swap through `resourceVersion`.
//!
//! - A contender judges expiry by its **own monotonic clock**: the lease is expired when the
//!   record (its `resourceVersion`) has not changed for `leaseDurationSeconds` since this
//!   replica first saw it. The holder's `renewTime` is written for humans and never compared
//!   with our wall clock (clock skew between nodes would make two leaders).
//! - Every round (acquire or renew) is bounded by a timeout; the leader keeps leadership only
//!   while a renewal **sent** less than `renew_deadline` ago succeeded (`renew_deadline <
//!   lease_duration`). When none did, it stops leading: the [`Gate`] closes and [`Leadership`]
//!   reports the loss (the process exits). A standby that saw the last renewal waits a whole
//!   `lease_duration` after seeing it, so the old leader has stopped at least
//!   `lease_duration - renew_deadline` before anyone else starts.
//! - The [`Gate`] is what "stopped" means: every AS call and every Kubernetes write of the
//!   controllers checks it immediately before it is sent and never starts once the gate is
//!   closed (it waits for the exit instead), also after a SIGSTOP/SIGCONT.
//!
//! Kubernetes I/O through a [`LeaseStore`] (a fake one in the tests); time from tokio's clock.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{Api, Client, api::PostParams};
use tokio::time::Instant;

/// Settings of the election (client-go's `LeaderElectionConfig`).
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name, or host name + pid).
    pub identity: String,
    /// How long a standby waits, on its own clock, after the last change of the lease it saw
    /// before it takes the lease over.
    pub lease_duration: Duration,
    /// How long the leader keeps acting after the last renewal it sent that succeeded; shorter
    /// than `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between rounds (acquire attempts, renewals); shorter than `renew_deadline`.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s between rounds.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The timings must leave the old leader time to stop before anyone else may start:
    /// `retry_period < renew_deadline < lease_duration`, and whole seconds of lease (the
    /// Lease stores seconds).
    pub fn check(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("the leader-election retry period must be positive".into());
        }
        if self.renew_deadline <= self.retry_period {
            return Err(format!(
                "the leader-election renew deadline ({:?}) must be longer than the retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "the leader-election lease duration ({:?}) must be longer than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.lease_duration.subsec_nanos() != 0 {
            return Err("the leader-election lease duration must be whole seconds".into());
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The answer of a [`LeaseStore`] call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, kube::Error>> + Send + 'a>>;

/// Where the Lease lives: the API server, or a fake in tests.
pub trait LeaseStore: Send + Sync {
    /// The Lease, if it exists.
    fn get(&self) -> StoreFuture<'_, Option<Lease>>;
    /// Create the Lease (409 when it exists).
    fn create<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease>;
    /// Replace the Lease, guarded by the `resourceVersion` it carries (409 on a conflict).
    fn replace<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease>;
}

/// The Lease `namespace/name` on the API server.
pub struct KubeLeaseStore {
    api: Api<Lease>,
    name: String,
}

impl KubeLeaseStore {
    /// The Lease of `config` through `client` (an unthrottled client: a renewal must not queue
    /// behind the controllers' requests).
    pub fn new(client: Client, config: &LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            name: config.name.clone(),
        }
    }
}

impl LeaseStore for KubeLeaseStore {
    fn get(&self) -> StoreFuture<'_, Option<Lease>> {
        Box::pin(self.api.get_opt(&self.name))
    }

    fn create<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease> {
        Box::pin(async move { self.api.create(&PostParams::default(), lease).await })
    }

    fn replace<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease> {
        Box::pin(async move {
            self.api
                .replace(&self.name, &PostParams::default(), lease)
                .await
        })
    }
}

/// Whether this replica may start AS calls and Kubernetes writes: open while a renewal sent
/// less than `renew_deadline` ago succeeded, closed for good once none did or the lease was
/// released.
#[derive(Debug)]
pub struct Gate {
    valid_until: Mutex<Instant>,
    closed: AtomicBool,
}

impl Gate {
    fn open_until(until: Instant) -> Self {
        Self {
            valid_until: Mutex::new(until),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether acting is allowed at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        !self.closed.load(Ordering::SeqCst) && now < self.valid_until()
    }

    /// Until when acting is allowed (unless closed earlier).
    pub fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A renewal sent at `sent` succeeded: extend to `until`, unless the gate had already
    /// closed (by time or for good) when it was sent. Returns whether the gate is still open.
    fn extend(&self, sent: Instant, until: Instant) -> bool {
        let mut valid_until = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) || sent >= *valid_until {
            return false;
        }
        *valid_until = (*valid_until).max(until);
        true
    }

    /// Close for good.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

static GATE: OnceLock<Arc<Gate>> = OnceLock::new();

/// Make `gate` the one every AS call and Kubernetes write of this process checks (see
/// [`acting_allowed`]). Without an installed gate (no leader election) acting is allowed.
pub fn install_gate(gate: Arc<Gate>) {
    let _ = GATE.set(gate);
}

/// Whether this process may start an AS call or a Kubernetes write now.
pub fn acting_allowed() -> bool {
    GATE.get().is_none_or(|g| g.allows(Instant::now()))
}

/// Returns at once while [`acting_allowed`]; otherwise never (leadership is lost and the
/// process is about to exit: the call must not start).
pub async fn until_acting_allowed(what: &str) {
    if acting_allowed() {
        return;
    }
    tracing::warn!(what, "not leading any more: this call is not started");
    std::future::pending::<()>().await;
}

/// What this replica last saw of the lease, and when (on its own clock).
#[derive(Debug, Clone)]
struct Observed {
    record: String,
    at: Instant,
    /// The lease's duration as that record states it.
    duration: Duration,
}

/// Contends for one Lease.
pub struct LeaderElector {
    store: Arc<dyn LeaseStore>,
    config: LeaseConfig,
    observed: Mutex<Option<Observed>>,
    on_standby: Option<Box<dyn Fn() + Send + Sync>>,
}

/// A change of any of these is a sign of life of the holder.
fn record_of(lease: &Lease) -> String {
    let spec = lease.spec.clone().unwrap_or_default();
    format!(
        "{}|{}|{:?}|{:?}|{:?}",
        lease
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default(),
        spec.holder_identity.as_deref().unwrap_or_default(),
        spec.renew_time.map(|t| t.0),
        spec.lease_duration_seconds,
        spec.lease_transitions,
    )
}

impl LeaderElector {
    /// An elector for `config` on the API server.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        let store = Arc::new(KubeLeaseStore::new(client, &config));
        Self::with_store(store, config)
    }

    /// An elector for `config` on `store`.
    pub fn with_store(store: Arc<dyn LeaseStore>, config: LeaseConfig) -> Self {
        Self {
            store,
            config,
            observed: Mutex::new(None),
            on_standby: None,
        }
    }

    /// Call `f` after every round of [`Self::acquire`] that reached the API server and found
    /// the lease held by another replica (this one is a warm standby).
    pub fn on_standby(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_standby = Some(Box::new(f));
        self
    }

    /// Remember `lease` as seen now; returns when its record was first seen, and the duration
    /// it states.
    fn observe(&self, lease: &Lease, now: Instant) -> (Instant, Duration) {
        let record = record_of(lease);
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match observed.as_ref() {
            Some(o) if o.record == record => (o.at, o.duration),
            _ => {
                let duration = self.duration_of(lease);
                *observed = Some(Observed {
                    record,
                    at: now,
                    duration,
                });
                (now, duration)
            }
        }
    }

    /// The duration `lease` states (ours when it states none).
    fn duration_of(&self, lease: &Lease) -> Duration {
        let secs = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(self.config.lease_seconds());
        Duration::from_secs(u64::try_from(secs.max(1)).unwrap_or(1))
    }

    /// When the lease last seen expires on this replica's clock, if it has not changed since.
    fn observed_expiry(&self) -> Option<Instant> {
        let observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        observed.as_ref().map(|o| o.at + o.duration)
    }

    /// One round: acquire a free or expired lease, renew our own. Returns whether we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let wall = MicroTime(jiff::Timestamp::now());
        let secs = self.config.lease_seconds();
        let Some(mut lease) = self.store.get().await? else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(wall.clone()),
                    renew_time: Some(wall),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.store.create(&lease).await {
                Ok(created) => {
                    self.observe(&created, now);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let (first_seen, duration) = self.observe(&lease, now);
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.config.identity;
        // Expiry on our own clock: how long the record has stood still since we first saw it.
        // The holder's renewTime is not compared with our clock.
        let expired = holder.is_empty() || now.duration_since(first_seen) >= duration;
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            tracing::info!(
                previous = %holder,
                unchanged_for = ?now.duration_since(first_seen),
                "the lease expired on this replica's clock; taking it over"
            );
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(wall.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(wall);
        spec.lease_duration_seconds = Some(secs);
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self.store.replace(&lease).await {
            Ok(written) => {
                self.observe(&written, now);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up if this replica holds it: no holder, expiring a second after now, so
    /// that a standby takes over at its next round instead of waiting for the lease to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.store.get().await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        self.store.replace(&lease).await.map(|_| ())
    }

    /// One round bounded by `deadline`: `None` when it did not finish in time.
    async fn round_until(&self, deadline: Instant) -> Option<Result<bool, kube::Error>> {
        tokio::time::timeout_at(deadline, self.try_acquire_or_renew())
            .await
            .ok()
    }

    /// Wait until this replica holds the lease, then keep renewing it in the background. The
    /// returned [`Leadership`]'s gate is open until a renewal fails to succeed in time.
    pub async fn acquire(self) -> Leadership {
        let gate = loop {
            let sent = Instant::now();
            match self.round_until(sent + self.config.renew_deadline).await {
                Some(Ok(true)) => {
                    break Arc::new(Gate::open_until(sent + self.config.renew_deadline));
                }
                Some(Ok(false)) => {
                    if let Some(f) = &self.on_standby {
                        f();
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "leader election round failed"),
                None => tracing::warn!(
                    timeout = ?self.config.renew_deadline,
                    "leader election round timed out"
                ),
            }
            // The next round comes a retry period later, or the moment the lease seen last
            // expires on this replica's clock if that is sooner: a takeover does not wait up to
            // a retry period more (M10 in BENCHMARKS.md).
            let now = Instant::now();
            let next = now + self.config.retry_period;
            let wake = match self.observed_expiry() {
                Some(expiry) if expiry > now => expiry.min(next),
                _ => next,
            };
            tokio::time::sleep_until(wake).await;
        };
        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "acquired leadership");
        let (tx, rx) = tokio::sync::watch::channel(true);
        let (release_tx, release_rx) =
            tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
        tokio::spawn(self.renew(gate.clone(), tx, release_rx));
        Leadership {
            lost: rx,
            gate,
            release: release_tx,
        }
    }

    /// The renew loop of the leader: a round every `retry_period`, each bounded by the gate's
    /// deadline; leadership ends (gate closed, `lost` false) when the deadline passes without
    /// a successful renewal, or the lease has another holder.
    async fn renew(
        self,
        gate: Arc<Gate>,
        lost: tokio::sync::watch::Sender<bool>,
        mut release_rx: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let stop = |why: &str| {
            gate.close();
            tracing::error!(lease = %self.config.name, why, "stopped leading");
            let _ = lost.send(false);
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_period) => {}
                Some(done) = release_rx.recv() => {
                    // Nothing may act once the lease is handed over.
                    gate.close();
                    match self.release().await {
                        Ok(()) => tracing::info!(lease = %self.config.name, "released the lease"),
                        Err(e) => tracing::warn!(error = %e, "releasing the lease failed; standbys wait for it to expire"),
                    }
                    let _ = done.send(());
                    // Stopping, not losing leadership: keep `lost` as it is.
                    std::future::pending::<()>().await;
                }
            }
            let sent = Instant::now();
            let deadline = gate.valid_until();
            if sent >= deadline {
                stop("no renewal succeeded within the renew deadline (was the process stopped?)");
                return;
            }
            match self.round_until(deadline).await {
                Some(Ok(true)) => {
                    if !gate.extend(sent, sent + self.config.renew_deadline) {
                        stop("the renewal came after the renew deadline");
                        return;
                    }
                }
                Some(Ok(false)) => {
                    stop("the lease has another holder");
                    return;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, left = ?deadline.saturating_duration_since(Instant::now()), "renewing the lease failed");
                }
                None => {
                    stop("no renewal succeeded within the renew deadline");
                    return;
                }
            }
        }
    }
}

/// Leadership held by this replica.
pub struct Leadership {
    /// Turns `false` if leadership is lost (the process should then exit).
    pub lost: tokio::sync::watch::Receiver<bool>,
    /// Open while this replica may act; install it with [`install_gate`].
    pub gate: Arc<Gate>,
    release: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Leadership {
    /// Stop acting, stop renewing and give the lease up (see [`LeaderElector::release`]),
    /// waiting at most `timeout`. Call once the controllers have stopped, so that the next
    /// leader never acts beside this one.
    pub async fn release(self, timeout: Duration) {
        self.gate.close();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.release.send(done_tx).await.is_ok() {
            let _ = tokio::time::timeout(timeout, done_rx).await;
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
