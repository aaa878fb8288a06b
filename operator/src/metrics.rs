//! Prometheus metrics (`tpp_operator_*`), encoded in the text format at `/metrics`.
//!
//! Labels are bounded (outcome, step, endpoint, reason); per-object labels only with
//! `--metrics-per-object`. Expiry gauges report the earliest instant across all clients, which is
//! what an alert needs ("some token expires in < 1 min"). No I/O.

use std::sync::{Mutex, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `transient` or `permanent`.
    pub outcome: String,
}

/// Labels of a Kubernetes API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeRequestLabels {
    /// HTTP method (`GET` covers reads and watch starts, `PATCH` applies, `POST` events).
    pub method: String,
}

/// Labels of an error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The PascalCase reason (as in conditions and events).
    pub reason: String,
}

/// Labels of a call to the AS.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `discovery`, `registration`, `token`, ...
    pub endpoint: String,
    /// `ok`, `transient` or `permanent`.
    pub outcome: String,
}

/// Labels of a per-object gauge (only with `--metrics-per-object`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Namespace of the TppClient.
    pub namespace: String,
    /// Name of the TppClient.
    pub name: String,
    /// Token name, or empty.
    pub token: String,
}

/// Which expiry a gauge tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expiry {
    /// An access token's `expires_at`.
    Token,
    /// A transport certificate's `notAfter`.
    Certificate,
    /// When the active signing key became active (its age is now minus this).
    KeyActivated,
}

type ExpiryKey = (Expiry, String, String, String);

/// Every tracked instant, by key and in order per kind: the earliest of a kind is one lookup,
/// not a scan of every client on every refresh.
#[derive(Default)]
struct Expiries {
    by_key: std::collections::HashMap<ExpiryKey, i64>,
    ordered: std::collections::BTreeSet<(Expiry, i64, String, String, String)>,
}

impl Expiries {
    fn set(&mut self, key: ExpiryKey, at: Option<i64>) {
        if let Some(old) = self.by_key.remove(&key) {
            let (kind, ns, name, token) = key.clone();
            self.ordered.remove(&(kind, old, ns, name, token));
        }
        if let Some(at) = at {
            let (kind, ns, name, token) = key.clone();
            self.ordered.insert((kind, at, ns, name, token));
            self.by_key.insert(key, at);
        }
    }

    fn earliest(&self, kind: Expiry) -> Option<i64> {
        self.ordered
            .range((kind, i64::MIN, String::new(), String::new(), String::new())..)
            .next()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, at, ..)| *at)
    }
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by outcome.
    pub reconciles: Family<OutcomeLabels, Counter>,
    /// Reconcile failures by reason.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Reconciles running now.
    pub reconciles_in_flight: Gauge,
    /// Calls to authorization servers by endpoint and outcome.
    pub as_requests: Family<CallLabels, Counter>,
    /// Latency of calls to authorization servers.
    pub as_request_duration: Family<CallLabels, Histogram>,
    /// Token refreshes by outcome.
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    /// Status writes of TppClients (a refresh alone must cause none).
    pub status_writes: Counter,
    /// Requests of the controllers to the Kubernetes API, by method (after the budget).
    pub kube_requests: Family<KubeRequestLabels, Counter>,
    token_expiry_earliest: Gauge<f64, AtomicU64>,
    certificate_not_after_earliest: Gauge<f64, AtomicU64>,
    key_activated_earliest: Gauge<f64, AtomicU64>,
    per_object_token_expiry: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    per_object_certificate_not_after: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    per_object: bool,
    expiries: Mutex<Expiries>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new(per_object: bool) -> Self {
        let mut registry = Registry::with_prefix("tpp_operator");
        let m = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(latency_buckets()),
            reconciles_in_flight: Gauge::default(),
            as_requests: Family::default(),
            as_request_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            token_refreshes: Family::default(),
            status_writes: Counter::default(),
            kube_requests: Family::default(),
            token_expiry_earliest: Gauge::default(),
            certificate_not_after_earliest: Gauge::default(),
            key_activated_earliest: Gauge::default(),
            per_object_token_expiry: Family::default(),
            per_object_certificate_not_after: Family::default(),
            per_object,
            expiries: Mutex::new(Expiries::default()),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "TppClient reconciles by outcome",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now",
            m.reconciles_in_flight.clone(),
        );
        registry.register(
            "as_requests",
            "Calls to authorization servers by endpoint and outcome",
            m.as_requests.clone(),
        );
        registry.register(
            "as_request_duration_seconds",
            "Latency of calls to authorization servers",
            m.as_request_duration.clone(),
        );
        registry.register(
            "token_refreshes",
            "Access-token refreshes by outcome",
            m.token_refreshes.clone(),
        );
        registry.register(
            "status_writes",
            "TppClient status writes (only when something a user reads changed)",
            m.status_writes.clone(),
        );
        registry.register(
            "kube_requests",
            "Requests of the controllers to the Kubernetes API by method, within --kube-qps",
            m.kube_requests.clone(),
        );
        registry.register(
            "token_expiry_earliest_timestamp_seconds",
            "Earliest expires_at of any access token held in a credentials Secret (Unix seconds)",
            m.token_expiry_earliest.clone(),
        );
        registry.register(
            "certificate_not_after_earliest_timestamp_seconds",
            "Earliest notAfter of any transport certificate (Unix seconds)",
            m.certificate_not_after_earliest.clone(),
        );
        registry.register(
            "signing_key_activated_earliest_timestamp_seconds",
            "Activation time of the oldest active signing key (Unix seconds; key age = now - this)",
            m.key_activated_earliest.clone(),
        );
        if per_object {
            registry.register(
                "token_expiry_timestamp_seconds",
                "expires_at of each token",
                m.per_object_token_expiry.clone(),
            );
            registry.register(
                "certificate_not_after_timestamp_seconds",
                "notAfter of each transport certificate",
                m.per_object_certificate_not_after.clone(),
            );
        }
        Self { registry, ..m }
    }

    /// Record (or with `None`, forget) an expiry for a client (and token name, or "").
    pub fn set_expiry(
        &self,
        kind: Expiry,
        namespace: &str,
        name: &str,
        token: &str,
        at: Option<jiff::Timestamp>,
    ) {
        let key = (
            kind,
            namespace.to_owned(),
            name.to_owned(),
            token.to_owned(),
        );
        let Ok(mut map) = self.expiries.lock() else {
            return;
        };
        map.set(key, at.map(|t| t.as_second()));
        let gauge = match kind {
            Expiry::Token => &self.token_expiry_earliest,
            Expiry::Certificate => &self.certificate_not_after_earliest,
            Expiry::KeyActivated => &self.key_activated_earliest,
        };
        gauge.set(map.earliest(kind).unwrap_or(0) as f64);
        if self.per_object {
            let labels = ObjectLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                token: token.to_owned(),
            };
            let family = match kind {
                Expiry::Token => &self.per_object_token_expiry,
                Expiry::Certificate => &self.per_object_certificate_not_after,
                Expiry::KeyActivated => return,
            };
            match at {
                Some(t) => {
                    family.get_or_create(&labels).set(t.as_second() as f64);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Forget every expiry of a deleted client.
    pub fn forget_client(&self, namespace: &str, name: &str) {
        let keys: Vec<_> = self
            .expiries
            .lock()
            .map(|m| {
                m.by_key
                    .keys()
                    .filter(|(_, ns, n, _)| ns == namespace && n == name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for (kind, ns, n, token) in keys {
            self.set_expiry(kind, &ns, &n, &token, None);
        }
    }

    /// Count a call to an AS.
    pub fn observe_call(&self, endpoint: &str, outcome: &str, seconds: f64) {
        let labels = CallLabels {
            endpoint: endpoint.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.as_requests.get_or_create(&labels).inc();
        self.as_request_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn earliest_token_expiry_follows_updates_and_deletions() {
        let m = Metrics::new(false);
        m.set_expiry(Expiry::Token, "ns", "a", "accounts", Some(t(2000)));
        m.set_expiry(Expiry::Token, "ns", "b", "accounts", Some(t(1000)));
        assert!(
            m.render()
                .contains("tpp_operator_token_expiry_earliest_timestamp_seconds 1000")
        );
        m.forget_client("ns", "b");
        assert!(
            m.render()
                .contains("tpp_operator_token_expiry_earliest_timestamp_seconds 2000")
        );
        assert!(
            !m.render().contains("token_expiry_timestamp_seconds{"),
            "no per-object series by default"
        );
    }

    #[test]
    fn the_earliest_of_each_kind_moves_when_its_holder_is_renewed() {
        let m = Metrics::new(false);
        m.set_expiry(Expiry::Token, "ns", "a", "accounts", Some(t(1000)));
        m.set_expiry(Expiry::Token, "ns", "b", "accounts", Some(t(2000)));
        m.set_expiry(Expiry::Certificate, "ns", "a", "", Some(t(500)));
        let r = m.render();
        assert!(
            r.contains("tpp_operator_token_expiry_earliest_timestamp_seconds 1000"),
            "{r}"
        );
        assert!(
            r.contains("tpp_operator_certificate_not_after_earliest_timestamp_seconds 500"),
            "{r}"
        );
        m.set_expiry(Expiry::Token, "ns", "a", "accounts", Some(t(3000)));
        m.set_expiry(Expiry::Certificate, "ns", "a", "", None);
        let r = m.render();
        assert!(
            r.contains("tpp_operator_token_expiry_earliest_timestamp_seconds 2000"),
            "{r}"
        );
        assert!(
            r.contains("tpp_operator_certificate_not_after_earliest_timestamp_seconds 0"),
            "{r}"
        );
    }

    #[test]
    fn per_object_series_appear_only_when_enabled() {
        let m = Metrics::new(true);
        m.set_expiry(Expiry::Token, "ns", "a", "accounts", Some(t(2000)));
        assert!(m.render().contains(r#"tpp_operator_token_expiry_timestamp_seconds{namespace="ns",name="a",token="accounts"} 2000"#));
    }

    #[test]
    fn calls_are_counted_by_endpoint_and_outcome() {
        let m = Metrics::new(false);
        m.observe_call("token", "ok", 0.01);
        m.observe_call("token", "ok", 0.02);
        assert!(
            m.render()
                .contains(r#"tpp_operator_as_requests_total{endpoint="token",outcome="ok"} 2"#)
        );
    }
}
