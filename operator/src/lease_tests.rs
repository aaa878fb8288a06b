//! Leader election on a fake Lease store and tokio's paused clock: skewed holder clocks,
//! stalled and late renewals, the standby's takeover time, and the gate.

use std::sync::atomic::AtomicU64;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

/// The Lease as the API server keeps it: a resourceVersion bumped by every write, 409 on a
/// stale one.
#[derive(Default)]
struct Server {
    lease: Mutex<Option<Lease>>,
    version: AtomicU64,
}

impl Server {
    fn lease(&self) -> Option<Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn write(&self, mut lease: Lease, expect: Option<&str>) -> Result<Lease, kube::Error> {
        let mut current = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        let current_version = current
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone());
        if current_version.as_deref() != expect {
            return Err(conflict());
        }
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        lease.metadata.resource_version = Some(v.to_string());
        *current = Some(lease.clone());
        Ok(lease)
    }

    /// Another replica (not under test) renews the lease it holds, writing `renew_time` as its
    /// own (possibly skewed) clock reads.
    fn renew_as(&self, holder: &str, renew_time: jiff::Timestamp) {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some("lease".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew_time)),
                ..Default::default()
            }),
        };
        let version = self.lease().and_then(|l| l.metadata.resource_version);
        assert!(self.write(lease, version.as_deref()).is_ok());
    }

    fn holder(&self) -> Option<String> {
        self.lease()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }
}

fn conflict() -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure("conflict", "Conflict").with_code(409),
    ))
}

/// One replica's connection to the [`Server`]: it can stall (calls never answer) or answer
/// late, as a replica whose API server connection hangs.
struct View {
    server: Arc<Server>,
    stalled: AtomicBool,
    delay: Mutex<Duration>,
    /// GETs asked through this view.
    gets: AtomicU64,
}

impl View {
    fn new(server: &Arc<Server>) -> Arc<Self> {
        Arc::new(Self {
            server: server.clone(),
            stalled: AtomicBool::new(false),
            delay: Mutex::new(Duration::ZERO),
            gets: AtomicU64::new(0),
        })
    }

    async fn answer<T>(
        &self,
        f: impl FnOnce() -> Result<T, kube::Error>,
    ) -> Result<T, kube::Error> {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        tokio::time::sleep(delay).await;
        f()
    }
}

impl LeaseStore for View {
    fn get(&self) -> StoreFuture<'_, Option<Lease>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Box::pin(self.answer(|| Ok(self.server.lease())))
    }

    fn create<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease> {
        Box::pin(self.answer(move || {
            if self.server.lease().is_some() {
                return Err(conflict());
            }
            self.server.write(lease.clone(), None)
        }))
    }

    fn replace<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, Lease> {
        Box::pin(self.answer(move || {
            self.server
                .write(lease.clone(), lease.metadata.resource_version.as_deref())
        }))
    }
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig::new("ns".into(), "lease".into(), identity.into())
}

fn elector(view: &Arc<View>, identity: &str) -> LeaderElector {
    LeaderElector::with_store(view.clone(), config(identity))
}

const HOUR: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

#[tokio::test(start_paused = true)]
async fn a_standby_never_takes_over_a_lease_renewed_by_a_holder_whose_clock_is_behind() {
    let server = Arc::new(Server::default());
    let standby = elector(&View::new(&server), "standby");
    let skewed = jiff::Timestamp::now() - HOUR;
    let start = Instant::now();
    // The holder renews every 2 s, its renewTime an hour behind our wall clock.
    while start.elapsed() < Duration::from_secs(120) {
        server.renew_as("holder", skewed + start.elapsed());
        assert_eq!(
            standby.try_acquire_or_renew().await.ok(),
            Some(false),
            "took over a live holder after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(server.holder().as_deref(), Some("holder"));
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_a_holder_whose_clock_is_ahead_once_the_lease_stood_still_for_its_duration()
 {
    let server = Arc::new(Server::default());
    let standby = elector(&View::new(&server), "standby");
    // The holder's last renewal, its clock an hour ahead; then it dies.
    server.renew_as("holder", jiff::Timestamp::now() + HOUR);
    let last_change = Instant::now();
    let taken = loop {
        if standby.try_acquire_or_renew().await.ok() == Some(true) {
            break last_change.elapsed();
        }
        assert!(
            last_change.elapsed() < Duration::from_secs(60),
            "never took over"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(
        taken >= Duration::from_secs(15) && taken < Duration::from_secs(18),
        "took over {taken:?} after the last renewal it saw"
    );
    assert_eq!(server.holder().as_deref(), Some("standby"));
}

#[tokio::test(start_paused = true)]
async fn a_standby_counts_the_lease_duration_from_the_last_change_it_saw() {
    let server = Arc::new(Server::default());
    let standby = elector(&View::new(&server), "standby");
    let now = jiff::Timestamp::now();
    server.renew_as("holder", now);
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
    tokio::time::sleep(Duration::from_secs(14)).await;
    // A renewal 14 s in: the count starts again from when the standby sees it.
    server.renew_as("holder", now);
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_standby_takes_over_the_moment_the_lease_expires_on_its_clock_not_at_its_next_round()
 {
    let server = Arc::new(Server::default());
    // The holder's last renewal, seen by one round; the standby then waits with rounds at 0.5,
    // 2.5, … s, none of them at the expiry (15 s).
    server.renew_as("holder", jiff::Timestamp::now());
    let seen = Instant::now();
    let view = View::new(&server);
    let standby = elector(&view, "standby");
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leadership = standby.acquire().await;
    assert_eq!(server.holder().as_deref(), Some("standby"));
    let taken = Instant::now().duration_since(seen);
    // At the expiry, 15 s after the renewal was seen: not at the next round (16.5 s).
    assert_eq!(taken, Duration::from_secs(15), "took over {taken:?} after");
    assert!(leadership.gate.allows(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_standby_beside_a_holder_that_keeps_renewing_asks_once_per_retry_period_and_never_takes_over()
 {
    let server = Arc::new(Server::default());
    let renewing = {
        let server = server.clone();
        tokio::spawn(async move {
            loop {
                server.renew_as("holder", jiff::Timestamp::now());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let view = View::new(&server);
    let waiting = tokio::spawn(elector(&view, "standby").acquire());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        !waiting.is_finished(),
        "took over a lease renewed every 2 s"
    );
    assert_eq!(server.holder().as_deref(), Some("holder"));
    // A round every 2 s (retry period): 30 or 31 in 60 s, by which side of 60 s runs first.
    let gets = view.gets.load(Ordering::SeqCst);
    assert!((30..=31).contains(&gets), "{gets} rounds in 60 s");
    waiting.abort();
    renewing.abort();
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let server = Arc::new(Server::default());
    let view = View::new(&server);
    let leader = elector(&view, "leader");
    assert_eq!(leader.try_acquire_or_renew().await.ok(), Some(true));
    let standby = elector(&view, "standby");
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
    assert!(leader.release().await.is_ok());
    assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(true));
}

/// Renewals stall (the API server connection hangs, or the process is stopped): the leader
/// stops acting `renew_deadline` after the last renewal it sent that succeeded, before a
/// standby can take over.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_stall_stops_acting_before_a_standby_can_take_over() {
    let server = Arc::new(Server::default());
    let leader_view = View::new(&server);
    let acquired_at = Instant::now();
    let leadership = elector(&leader_view, "leader").acquire().await;
    assert!(leadership.gate.allows(Instant::now()));
    // Some renewals succeed, then the leader's calls hang.
    tokio::time::sleep(Duration::from_secs(7)).await;
    leader_view.stalled.store(true, Ordering::SeqCst);
    let stalled_at = Instant::now();
    let standby = elector(&View::new(&server), "standby");
    let mut lost = leadership.lost.clone();
    let mut lost_at = None;
    let taken_at = loop {
        if lost_at.is_none() && !*lost.borrow_and_update() {
            lost_at = Some(Instant::now());
        }
        if standby.try_acquire_or_renew().await.ok() == Some(true) {
            break Instant::now();
        }
        assert!(
            stalled_at.elapsed() < Duration::from_secs(60),
            "no takeover"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lost_at = lost_at.unwrap_or_else(|| panic!("the leader never stopped"));
    assert!(
        lost_at <= stalled_at + Duration::from_secs(10) + Duration::from_millis(500),
        "stopped {:?} after its renewals stalled",
        lost_at - stalled_at
    );
    assert!(
        !leadership.gate.allows(taken_at - Duration::from_secs(4)),
        "the old leader could act within 4 s of the takeover"
    );
    assert!(leadership.gate.valid_until() <= lost_at);
    assert!(acquired_at <= stalled_at);
}

/// A renewal answered after the deadline (the leader was stopped, or the API server was
/// slow) does not make it leader again: client-go's renew deadline.
#[tokio::test(start_paused = true)]
async fn a_renewal_answered_after_the_renew_deadline_ends_leadership() {
    let server = Arc::new(Server::default());
    let view = View::new(&server);
    let leadership = elector(&view, "leader").acquire().await;
    *view.delay.lock().unwrap_or_else(|p| p.into_inner()) = Duration::from_secs(12);
    let mut lost = leadership.lost.clone();
    let start = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(60), lost.wait_for(|l| !*l))
            .await
            .is_ok(),
        "leadership survived late renewals"
    );
    assert!(start.elapsed() <= Duration::from_secs(12));
    assert!(!leadership.gate.allows(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_succeed_keeps_the_gate_open() {
    let server = Arc::new(Server::default());
    let view = View::new(&server);
    let leadership = elector(&view, "leader").acquire().await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(leadership.gate.allows(Instant::now()));
        assert!(*leadership.lost.borrow());
    }
    let standby = elector(&View::new(&server), "standby");
    for _ in 0..10 {
        assert_eq!(standby.try_acquire_or_renew().await.ok(), Some(false));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_released_leadership_closes_the_gate_first() {
    let server = Arc::new(Server::default());
    let leadership = elector(&View::new(&server), "leader").acquire().await;
    let gate = leadership.gate.clone();
    leadership.release(Duration::from_secs(5)).await;
    assert!(!gate.allows(Instant::now()));
    assert_eq!(server.holder(), None);
}

#[test]
fn a_closed_gate_stays_closed_and_a_late_renewal_does_not_reopen_it() {
    let t0 = Instant::now();
    let gate = Gate::open_until(t0 + Duration::from_secs(10));
    assert!(gate.allows(t0));
    assert!(!gate.allows(t0 + Duration::from_secs(10)));
    assert!(
        !gate.extend(t0 + Duration::from_secs(10), t0 + Duration::from_secs(20)),
        "sent after the deadline"
    );
    assert!(gate.extend(t0 + Duration::from_secs(9), t0 + Duration::from_secs(19)));
    assert!(gate.allows(t0 + Duration::from_secs(18)));
    gate.close();
    assert!(!gate.allows(t0));
    assert!(!gate.extend(t0, t0 + Duration::from_secs(30)));
}

#[test]
fn the_timings_leave_the_old_leader_time_to_stop() {
    assert_eq!(config("a").check(), Ok(()));
    let mut c = config("a");
    c.renew_deadline = c.lease_duration;
    assert!(c.check().is_err(), "renew deadline must be below the lease");
    let mut c = config("a");
    c.retry_period = c.renew_deadline;
    assert!(c.check().is_err());
    let mut c = config("a");
    c.lease_duration = Duration::from_millis(15_500);
    assert!(c.check().is_err());
}
