//! Admission of key generation: a reconcile that must generate keys or a certificate (a new
//! client, a rotation) takes one of a few slots first, or is queued. Without it, applying
//! thousands of TppClients at once fills every controller slot with reconciles waiting for the
//! two-core crypto pool, and the token refreshes of clients already running are served only
//! once the backlog drains: tokens expire.
//!
//! The queue is kept here, in arrival order, not in the controller's: a slot that frees is
//! handed to the first queued client and that client alone is woken ([`KeygenAdmission::woken`],
//! a trigger of the controller). The controller's own queue then holds only what is due — token
//! refreshes and the few woken clients — so a due refresh is never drawn at random among
//! thousands of retries (kube-runtime's runner takes due reconciles from a hash set once its
//! slots are full: BENCHMARKS.md, "Onboarding 10,000 without a late refresh"). A queued client is
//! requeued only as a safety net, well past its estimated turn. A slot handed to a client that
//! does not take it is passed on: when its reconcile ends without asking (its plan no longer
//! generates: [`KeygenAdmission::unreserve`]), when it is deleted, or after [`RESERVATION_TTL`]
//! (its reconcile never came); a client whose slot expired so goes first when it asks again.
//! No I/O.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::broadcast;

/// CPU time of one client's key generation on one core (two RSA-2048 keys), an estimate for
/// the safety requeue only.
const KEYGEN_PER_CLIENT: Duration = Duration::from_millis(150);
/// Bounds of a queued client's safety requeue.
const MIN_DEFER: Duration = Duration::from_secs(30);
const MAX_DEFER: Duration = Duration::from_secs(60 * 60);
/// How long a slot handed to a woken client waits for its reconcile (longer than the
/// controller's queue takes to drain after thousands of clients are applied at once).
pub const RESERVATION_TTL: Duration = Duration::from_secs(5 * 60);
/// Wake-ups not yet taken by the controller (at most one per slot is outstanding).
const WAKE_CAPACITY: usize = 1024;

/// The current instant (injected in tests).
type Now = Arc<dyn Fn() -> Instant + Send + Sync>;

/// See the module docs.
#[derive(Clone)]
pub struct KeygenAdmission {
    inner: Arc<Inner>,
}

struct Inner {
    workers: usize,
    now: Now,
    state: Mutex<State>,
    wake: broadcast::Sender<String>,
}

#[derive(Default)]
struct State {
    /// Slots neither held nor handed to a woken client.
    free: usize,
    /// Queued clients in arrival order; an entry no longer in `queued` (forgotten) is skipped.
    queue: VecDeque<(String, u64)>,
    /// Queued clients and their arrival number.
    queued: HashMap<String, u64>,
    /// Arrival numbers handed out, and those taken off the queue (its head's position).
    arrived: u64,
    served: u64,
    /// Slots handed to woken clients, with when.
    reserved: HashMap<String, Instant>,
    /// Clients whose slot expired before their reconcile came: first in line when they ask.
    overdue: HashSet<String>,
}

/// A key-generation slot; dropping it hands the slot to the first queued client.
pub struct KeygenPermit {
    inner: Arc<Inner>,
}

impl Drop for KeygenPermit {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        self.inner.pass_on(&mut st);
    }
}

impl KeygenAdmission {
    /// `slots` reconciles may generate at once, on `workers` crypto threads.
    pub fn new(slots: usize, workers: usize) -> Self {
        Self::with_clock(slots, workers, Arc::new(Instant::now))
    }

    /// The same, with `now` as the clock.
    pub fn with_clock(slots: usize, workers: usize, now: Now) -> Self {
        Self {
            inner: Arc::new(Inner {
                workers: workers.max(1),
                now,
                state: Mutex::new(State {
                    free: slots.max(1),
                    ..State::default()
                }),
                wake: broadcast::channel(WAKE_CAPACITY).0,
            }),
        }
    }

    /// The slots for a controller of `concurrency` on `workers` crypto threads: enough to keep
    /// the crypto pool busy through the network steps of onboarding, and at least four
    /// controller slots left for everything else.
    pub fn for_controller(concurrency: usize, workers: usize) -> Self {
        let slots = (workers * 3)
            .max(2)
            .min(concurrency.saturating_sub(4).max(1));
        Self::new(slots, workers)
    }

    /// A slot for `key` (`namespace/name`): the one handed to it when it was woken, or a free one
    /// when nobody is queued. Otherwise `key` is queued (once: it keeps its place) and the answer
    /// is when to look again should no wake-up come.
    pub fn admit(&self, key: &str) -> Result<KeygenPermit, Duration> {
        let inner = &self.inner;
        let mut st = inner.lock();
        inner.expire_reservations(&mut st);
        let admitted = st.reserved.remove(key).is_some() || {
            // Free slots exist only while nobody is queued (a freed slot goes to the queue's head).
            let free = st.free > 0;
            if free {
                st.free -= 1;
            }
            free
        };
        if admitted {
            st.leave(key);
            return Ok(KeygenPermit {
                inner: inner.clone(),
            });
        }
        let arrival = match st.queued.get(key).copied() {
            Some(n) => n,
            None if st.overdue.remove(key) => {
                // Its turn came and went while it waited in the controller's queue: next.
                let n = st.served.saturating_sub(1);
                st.queued.insert(key.to_owned(), n);
                st.queue.push_front((key.to_owned(), n));
                n
            }
            None => {
                let n = st.arrived;
                st.arrived += 1;
                st.queued.insert(key.to_owned(), n);
                st.queue.push_back((key.to_owned(), n));
                // Under the lock: these lines come in arrival order.
                tracing::debug!(client = %key, arrival = n, "joined the key-generation queue");
                n
            }
        };
        let ahead = arrival.saturating_sub(st.served) as usize;
        Err(safety_requeue(ahead, inner.workers, rand::random::<f64>()))
    }

    /// The reconcile of `key` ended without asking for a slot: a slot handed to it goes to the
    /// next client. When the reconcile `failed` (before it could ask), `key` keeps its turn: it
    /// goes first when it asks again.
    pub fn unreserve(&self, key: &str, failed: bool) {
        let mut st = self.inner.lock();
        if st.reserved.remove(key).is_some() {
            if failed {
                st.overdue.insert(key.to_owned());
            } else {
                st.overdue.remove(key);
            }
            self.inner.pass_on(&mut st);
        }
    }

    /// `key` was admitted and its reconcile failed (it will retry after its backoff): it goes
    /// first when it asks again, not behind the whole queue.
    pub fn keep_turn(&self, key: &str) {
        self.inner.lock().overdue.insert(key.to_owned());
    }

    /// `key` needs no slot (its plan generates nothing): it leaves the queue.
    pub fn not_waiting(&self, key: &str) {
        self.inner.lock().leave(key);
    }

    /// Forget `key` (deleted): it leaves the queue, and a slot handed to it goes to the next.
    pub fn forget(&self, key: &str) {
        let mut st = self.inner.lock();
        st.leave(key);
        if st.reserved.remove(key).is_some() {
            self.inner.pass_on(&mut st);
        }
    }

    /// Forget every client `keep` refuses (absent from a completed relist).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = {
            let st = self.inner.lock();
            st.queued
                .keys()
                .chain(st.reserved.keys())
                .chain(st.overdue.iter())
                .filter(|k| !keep(k))
                .cloned()
                .collect()
        };
        for key in gone {
            self.forget(&key);
        }
    }

    /// Clients waiting for a slot.
    pub fn backlog(&self) -> usize {
        self.inner.lock().queued.len()
    }

    /// The clients (`namespace/name`) handed a slot: reconcile them now.
    pub fn woken(&self) -> broadcast::Receiver<String> {
        self.inner.wake.subscribe()
    }
}

impl State {
    /// `key` no longer waits: out of the queue (its entry there is skipped) and not overdue.
    fn leave(&mut self, key: &str) {
        self.queued.remove(key);
        self.overdue.remove(key);
        self.shrink_if_drained();
    }

    /// Once nobody is queued, the queue's buffers, sized for the largest backlog (1 MiB after a
    /// 10,000-client onboarding: BENCHMARKS.md, "Heap profile at 10,000"), are given back, and
    /// the entries of clients that left are dropped (all arrivals are then served). Woken and
    /// overdue clients are never in the queue (an overdue one rejoins at its head), so they
    /// need not be gone; their sets are shrunk to what they hold.
    fn shrink_if_drained(&mut self) {
        if self.queued.is_empty() {
            self.queue = VecDeque::new();
            self.queued = HashMap::new();
            self.served = self.arrived;
            self.reserved.shrink_to_fit();
            self.overdue.shrink_to_fit();
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot was freed: hand it to the first client still queued and wake it, or keep it free.
    fn pass_on(&self, st: &mut State) {
        while let Some((key, n)) = st.queue.pop_front() {
            st.served = st.served.max(n + 1);
            if st.queued.get(&key) == Some(&n) {
                st.queued.remove(&key);
                st.reserved.insert(key.clone(), (self.now)());
                // No receiver (no controller yet, or a test): the safety requeue still comes.
                let _ = self.wake.send(key);
                return;
            }
        }
        st.free += 1;
        st.shrink_if_drained();
    }

    /// Slots handed out longer than [`RESERVATION_TTL`] ago and never taken go to the next.
    fn expire_reservations(&self, st: &mut State) {
        let now = (self.now)();
        let expired: Vec<String> = st
            .reserved
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= RESERVATION_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            st.reserved.remove(&key);
            tracing::debug!(client = %key, "a key-generation slot handed to a client was not taken; passing it on");
            st.overdue.insert(key);
            self.pass_on(st);
        }
    }
}

/// When a client with `ahead` clients before it looks again if no wake-up comes: past twice its
/// estimated turn on `workers` threads, spread by `u` in `0..1` so that safety requeues do not
/// come together.
fn safety_requeue(ahead: usize, workers: usize, u: f64) -> Duration {
    let turn = KEYGEN_PER_CLIENT.mul_f64(ahead as f64 / workers as f64);
    (turn * 2 + MIN_DEFER)
        .mul_f64(1.0 + u.clamp(0.0, 1.0) / 2.0)
        .min(MAX_DEFER)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clock(Arc<Mutex<Instant>>);

    impl Clock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
        }
    }

    fn admission(slots: usize) -> (KeygenAdmission, Clock) {
        let at = Arc::new(Mutex::new(Instant::now()));
        let read = at.clone();
        let a = KeygenAdmission::with_clock(
            slots,
            2,
            Arc::new(move || *read.lock().unwrap_or_else(|p| p.into_inner())),
        );
        (a, Clock(at))
    }

    fn woken(rx: &mut broadcast::Receiver<String>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn only_as_many_reconciles_as_slots_generate_and_the_rest_are_queued() {
        let (a, _) = admission(2);
        let p1 = a.admit("ns/a").expect("slot");
        let _p2 = a.admit("ns/b").expect("slot");
        assert!(a.admit("ns/c").is_err());
        assert!(a.admit("ns/d").is_err());
        assert_eq!(a.backlog(), 2);
        drop(p1);
        assert_eq!(a.backlog(), 1, "the freed slot went to the first queued");
        let _p3 = a.admit("ns/c").expect("the slot handed to c");
        a.forget("ns/d");
        assert_eq!(a.backlog(), 0);
    }

    /// One slot, held by `a`; `b`, `c`, `d` queued in that order.
    fn a_holds_b_c_d_wait() -> (
        KeygenAdmission,
        Clock,
        broadcast::Receiver<String>,
        KeygenPermit,
    ) {
        let (a, clock) = admission(1);
        let rx = a.woken();
        let p = a.admit("ns/a").expect("slot");
        for k in ["ns/b", "ns/c", "ns/d"] {
            assert!(a.admit(k).is_err());
        }
        (a, clock, rx, p)
    }

    #[test]
    fn a_freed_slot_wakes_the_first_queued_client_and_is_kept_for_it_against_newcomers() {
        let (a, _, mut rx, p) = a_holds_b_c_d_wait();
        assert!(a.admit("ns/c").is_err(), "a retry keeps its place");
        assert!(woken(&mut rx).is_empty());
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/b"], "arrival order, one at a time");
        assert!(
            a.admit("ns/e").is_err(),
            "a newcomer does not take b's slot"
        );
        assert!(
            a.admit("ns/c").is_err(),
            "nor does a client queued behind b"
        );
        let p = a.admit("ns/b").expect("b's slot");
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/c"]);
    }

    #[test]
    fn a_slot_handed_to_a_client_that_does_not_take_it_goes_to_the_next() {
        let (a, clock, mut rx, p) = a_holds_b_c_d_wait();
        a.forget("ns/c");
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/b"]);
        // b's reconcile ended without key generation (its plan changed).
        a.unreserve("ns/b", false);
        assert_eq!(woken(&mut rx), ["ns/d"], "c was forgotten");
        // d's reconcile does not come in time: after the reservation's time the slot is free
        // again, and d goes first when it asks.
        clock.advance(RESERVATION_TTL);
        let p = a
            .admit("ns/e")
            .expect("d's unused slot, nobody else queued");
        assert_eq!(a.backlog(), 0);
        assert!(a.admit("ns/f").is_err());
        assert!(a.admit("ns/d").is_err(), "no slot is free");
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/d"], "d went before f, queued earlier");
    }

    #[test]
    fn a_client_whose_turn_failed_goes_first_when_it_asks_again() {
        let (a, _, mut rx, p) = a_holds_b_c_d_wait();
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/b"]);
        // b's woken reconcile failed before it asked (a transient read): c gets the slot.
        a.unreserve("ns/b", true);
        assert_eq!(woken(&mut rx), ["ns/c"]);
        let p = a.admit("ns/c").expect("c's slot");
        // c's key generation failed after admission.
        a.keep_turn("ns/c");
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/d"]);
        assert!(a.admit("ns/b").is_err(), "b retries after its backoff");
        assert!(a.admit("ns/c").is_err());
        drop(a.admit("ns/d").expect("d's slot"));
        assert_eq!(
            woken(&mut rx),
            ["ns/c"],
            "c and b ahead of nobody else, last first"
        );
    }

    #[test]
    fn deleted_or_unlisted_or_no_longer_waiting_clients_leave_the_queue_and_their_slot_goes_on() {
        let (a, _, mut rx, p) = a_holds_b_c_d_wait();
        a.not_waiting("ns/b");
        a.retain(|k| k != "ns/c");
        assert_eq!(a.backlog(), 1);
        drop(p);
        assert_eq!(woken(&mut rx), ["ns/d"]);
        a.retain(|k| k != "ns/d");
        assert!(a.inner.lock().reserved.is_empty(), "d's slot went back");
        let _p = a.admit("ns/e").expect("a free slot");
        assert!(a.inner.lock().overdue.is_empty());
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let (a, _) = admission(1);
        let mut held = a.admit("ns/first").expect("slot");
        let keys: Vec<String> = (0..1_000).map(|i| format!("ns/c-{i:05}")).collect();
        for k in &keys {
            assert!(a.admit(k).is_err());
        }
        // The first one's reconcile failed: it keeps its turn, but does not ask again (it was
        // suspended, say) while the others are served.
        a.keep_turn("ns/first");
        a.forget("ns/c-00500");
        for k in keys.iter().filter(|k| *k != "ns/c-00500") {
            drop(held);
            held = a.admit(k).expect("its turn");
        }
        drop(held);
        let st = a.inner.lock();
        assert_eq!(st.free, 1);
        assert_eq!(
            (st.queue.capacity(), st.queued.capacity()),
            (0, 0),
            "the buffers of a 1,000-client backlog are still held"
        );
        assert!(st.reserved.capacity() < 8 && st.overdue.capacity() < 8);
        assert_eq!(st.served, st.arrived);
        assert!(st.overdue.contains("ns/first"), "its turn is kept");
    }

    #[test]
    fn without_a_queue_a_released_slot_is_free_for_anyone() {
        let (a, _) = admission(1);
        let mut rx = a.woken();
        drop(a.admit("ns/a").expect("slot"));
        assert!(woken(&mut rx).is_empty());
        let _p = a.admit("ns/b").expect("the freed slot");
        a.unreserve("ns/b", false);
        assert!(
            a.admit("ns/c").is_err(),
            "unreserve of an admitted client frees nothing"
        );
    }

    #[test]
    fn safety_requeues_come_after_twice_the_estimated_turn() {
        assert_eq!(safety_requeue(0, 2, 0.0), MIN_DEFER);
        // 1,000 ahead on 2 threads: their turn is ~75 s away.
        assert_eq!(safety_requeue(1000, 2, 0.0), Duration::from_secs(180));
        assert_eq!(safety_requeue(1000, 2, 1.0), Duration::from_secs(270));
        assert_eq!(safety_requeue(1_000_000, 2, 1.0), MAX_DEFER);
    }

    #[test]
    fn a_controller_keeps_slots_free_for_refreshes() {
        let free = |a: KeygenAdmission| a.inner.lock().free;
        assert_eq!(free(KeygenAdmission::for_controller(16, 2)), 6);
        assert_eq!(free(KeygenAdmission::for_controller(6, 2)), 2);
        assert_eq!(free(KeygenAdmission::for_controller(2, 8)), 1);
    }
}
