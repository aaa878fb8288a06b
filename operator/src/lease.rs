//! Leader election on a `coordination.k8s.io/v1` Lease: one replica acts, standbys stay warm and
//! take over when the holder stops renewing. Compare-and-swap through `resourceVersion`.
//! Kubernetes I/O.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{Api, Client, api::PostParams};

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name, or host name + pid).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
}

/// Contends for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    on_standby: Option<Box<dyn Fn() + Send + Sync>>,
}

impl LeaderElector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            on_standby: None,
        }
    }

    /// Call `f` after every round of [`Self::acquire`] that reached the API server and found
    /// the lease held by another replica (this one is a warm standby).
    pub fn on_standby(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_standby = Some(Box::new(f));
        self
    }

    /// One round: acquire a free or expired lease, renew our own. Returns whether we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let expired = spec
            .renew_time
            .as_ref()
            .map(|t| {
                t.0 + jiff::SignedDuration::from_secs(i64::from(
                    spec.lease_duration_seconds.unwrap_or(secs),
                )) < now
            })
            .unwrap_or(true);
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(secs);
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the lease up if this replica holds it: no holder, expiring a second after now, so
    /// that a standby takes over at its next round instead of waiting for the lease to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Wait until this replica holds the lease, then keep renewing it in the background.
    pub async fn acquire(self) -> Leadership {
        let retry = self.config.lease_duration / 3;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {
                    if let Some(f) = &self.on_standby {
                        f();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "leader election round failed"),
            }
            tokio::time::sleep(retry).await;
        }
        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "acquired leadership");
        let (tx, rx) = tokio::sync::watch::channel(true);
        let (release_tx, mut release_rx) =
            tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
        tokio::spawn(async move {
            let mut last_ok = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    Some(done) = release_rx.recv() => {
                        match self.release().await {
                            Ok(()) => tracing::info!(lease = %self.config.name, "released the lease"),
                            Err(e) => tracing::warn!(error = %e, "releasing the lease failed; standbys wait for it to expire"),
                        }
                        let _ = done.send(());
                        // Stopping, not losing leadership: keep `tx` (and so `rx`) as it is.
                        std::future::pending::<()>().await;
                    }
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_ok = std::time::Instant::now(),
                    Ok(false) => {
                        let _ = tx.send(false);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the lease failed");
                        if last_ok.elapsed() >= self.config.lease_duration {
                            let _ = tx.send(false);
                            return;
                        }
                    }
                }
            }
        });
        Leadership {
            lost: rx,
            release: release_tx,
        }
    }
}

/// Leadership held by this replica.
pub struct Leadership {
    /// Turns `false` if leadership is lost (the process should then exit).
    pub lost: tokio::sync::watch::Receiver<bool>,
    release: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Leadership {
    /// Stop renewing and give the lease up (see [`LeaderElector::release`]), waiting at most
    /// `timeout`. Call once the controllers have stopped, so that the next leader never acts
    /// beside this one.
    pub async fn release(self, timeout: Duration) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.release.send(done_tx).await.is_ok() {
            let _ = tokio::time::timeout(timeout, done_rx).await;
        }
    }
}
