//! The reconcile's deadline: it stops new work, never a write in flight. A reconcile runs in
//! [`run`]; once its time is up, no new step starts ([`expired`]) and the reconcile is dropped
//! unless a [`shielded`] section is running — an AS call whose answer carries a registration
//! access token, up to the write of that token — which is let finish first (it is bounded by
//! the HTTP client's timeout and the persister's retries). Dropping a reconcile between an
//! RFC 7592 answer and the write of the rotated token would lose the token; dropping it in the
//! middle of a registration would leave an answer nobody reads. Tokio task-locals; no I/O.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;

#[derive(Default)]
struct Shields {
    active: AtomicUsize,
    idle: Notify,
    expired: AtomicBool,
}

tokio::task_local! {
    static SHIELDS: Arc<Shields>;
}

/// The deadline passed (with no shielded section running, or after the last one ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `work` until it completes or `limit` passes; past `limit`, a [`shielded`] section in
/// flight completes first, then `work` is dropped.
pub async fn run<F: Future>(limit: Duration, work: F) -> Result<F::Output, Elapsed> {
    let shields = Arc::new(Shields::default());
    SHIELDS
        .scope(shields.clone(), async move {
            tokio::pin!(work);
            tokio::select! {
                out = &mut work => return Ok(out),
                () = tokio::time::sleep(limit) => {}
            }
            shields.expired.store(true, Ordering::SeqCst);
            tokio::select! {
                out = &mut work => Ok(out),
                () = idle(&shields) => Err(Elapsed),
            }
        })
        .await
}

async fn idle(shields: &Shields) {
    loop {
        let notified = shields.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shields.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

struct Guard(Arc<Shields>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Runs `work` so that the deadline of the surrounding [`run`] does not cut it.
pub async fn shielded<F: Future>(work: F) -> F::Output {
    let _guard = SHIELDS
        .try_with(|s| {
            s.active.fetch_add(1, Ordering::SeqCst);
            Guard(s.clone())
        })
        .ok();
    work.await
}

/// Whether the surrounding [`run`]'s time is up: start no new step.
pub fn expired() -> bool {
    SHIELDS
        .try_with(|s| s.expired.load(Ordering::SeqCst))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shielded_write_in_flight_at_the_deadline_completes_before_the_reconcile_is_dropped()
    {
        let written = Arc::new(AtomicBool::new(false));
        let w = written.clone();
        let result = run(Duration::from_secs(120), async move {
            shielded(async {
                // The AS answers late; the answer is written after the deadline.
                tokio::time::sleep(Duration::from_secs(150)).await;
                w.store(true, Ordering::SeqCst);
            })
            .await;
            // New work after the shielded section: never reached.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        assert_eq!(result, Err(Elapsed));
        assert!(written.load(Ordering::SeqCst), "the write was cut");
    }

    #[tokio::test(start_paused = true)]
    async fn unshielded_work_is_dropped_at_the_deadline_and_no_new_step_starts_after_it() {
        let steps = Arc::new(AtomicU32::new(0));
        let s = steps.clone();
        let result = run(Duration::from_secs(10), async move {
            for _ in 0..100 {
                if expired() {
                    return "stopped";
                }
                s.fetch_add(1, Ordering::SeqCst);
                shielded(tokio::time::sleep(Duration::from_secs(3))).await;
            }
            "done"
        })
        .await;
        // Steps start at 0, 3, 6 and 9 s; the one started at 9 s ends at 12 s, after which
        // the check stops the loop (or the reconcile is dropped, whichever comes first).
        assert!(matches!(result, Err(Elapsed) | Ok("stopped")), "{result:?}");
        assert_eq!(steps.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn outside_a_reconcile_nothing_is_expired_and_shielding_is_a_no_op() {
        assert!(!expired());
        assert_eq!(shielded(async { 7 }).await, 7);
    }
}
