//! [`EventRecorder`]: kube-runtime's event `Recorder` with its series cache bounded in time.
//!
//! The `Recorder` remembers every event it published (to turn a repeat into a series) and
//! forgets one only when another event is published more than six minutes later; its map
//! keeps its capacity. After onboarding (two events per client) and nothing since, that was
//! 5.9 MiB at N = 1,000 held for good, and every later publish scanned all of it (the heap
//! profile in BENCHMARKS.md, "Memory"). Here a `Recorder` serves at most [`GENERATION`]; the
//! next publish, or [`EventRecorder::expire`] (run every [`GENERATION`] by the controllers),
//! starts a fresh one and drops the old cache whole. A repeat across that boundary starts a new
//! series: at most one extra Event per object and reason per [`GENERATION`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};

use crate::failpoints::{self, Side};

/// How long one `Recorder` (and its cache) serves: kube-runtime's own series window.
pub const GENERATION: Duration = Duration::from_secs(6 * 60);

struct Current {
    recorder: Recorder,
    since: Instant,
}

/// Publishes events; cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    current: Arc<Mutex<Current>>,
}

impl EventRecorder {
    /// A recorder publishing as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            current: Arc::new(Mutex::new(Current {
                recorder,
                since: Instant::now(),
            })),
        }
    }

    /// The `Recorder` of this generation, a fresh one once the last served [`GENERATION`].
    fn recorder(&self, now: Instant) -> Recorder {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(current.since) >= GENERATION {
            *current = Current {
                recorder: Recorder::new(self.client.clone(), self.reporter.clone()),
                since: now,
            };
        }
        current.recorder.clone()
    }

    /// Drops the cache of a generation that has ended.
    pub fn expire(&self) {
        let _ = self.recorder(Instant::now());
    }

    /// Publishes `ev` about `reference` (a repeat within the generation patches its series).
    /// Failpoints `before_publish_event` / `after_publish_event` (docs/reliability.md): every
    /// caller logs a failure and goes on, an event is never a reason to fail a reconcile.
    pub async fn publish(
        &self,
        ev: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        failpoints::kube_write(Side::Before, "publish_event").await?;
        self.recorder(Instant::now()).publish(ev, reference).await?;
        failpoints::kube_write(Side::After, "publish_event").await
    }

    /// Runs [`Self::expire`] every [`GENERATION`] until the task is dropped.
    pub async fn expire_periodically(self) {
        let mut tick = tokio::time::interval(GENERATION);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire();
        }
    }

    #[cfg(test)]
    fn generation_started(&self) -> Instant {
        self.current
            .lock()
            .map(|c| c.since)
            .unwrap_or_else(|p| p.into_inner().since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> EventRecorder {
        let config = kube::Config::new(
            "http://127.0.0.1:9"
                .parse()
                .unwrap_or_else(|_| panic!("a valid url")),
        );
        let client = Client::try_from(config).unwrap_or_else(|e| panic!("client: {e}"));
        EventRecorder::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    #[tokio::test]
    async fn a_generation_is_kept_until_it_has_served_its_time_then_replaced() {
        let r = recorder();
        let start = r.generation_started();
        let _ = r.recorder(start + GENERATION - Duration::from_secs(1));
        assert_eq!(r.generation_started(), start, "still the first generation");
        let _ = r.recorder(start + GENERATION);
        assert_eq!(
            r.generation_started(),
            start + GENERATION,
            "a fresh recorder (and cache) once the generation has served"
        );
    }
}
