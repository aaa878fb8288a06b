//! Prometheus metrics (`tpp_operator_*`), encoded in the text format at `/metrics`.
//!
//! Labels are bounded. Process-wide series are labelled by outcome, step, endpoint, reason or
//! `server` (the name of the AuthorizationServer or ClusterAuthorizationServer: a handful per
//! cluster). Per-client series (labels `namespace`, `name`, `server`) are exported by default
//! because an alert must say *which* client is failing: exactly four per TppClient
//! (`client_ready`, `token_expiry_timestamp_seconds`, `certificate_not_after_timestamp_seconds`,
//! `signing_key_expiry_timestamp_seconds`), each present only when there is something to report,
//! and all removed when the client is deleted or suspended. `--metrics-per-object` adds one
//! series per token (label `token`). See docs/operations.md § Metrics.
//!
//! Every expiry and readiness series is produced at scrape time from what the reconciles
//! recorded, so a series without a fact is ABSENT, never 0: a standby replica (which reconciles
//! nothing) and an operator with no clients export none, and `… - time() < x` alerts cannot fire
//! on them. No I/O.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, text::encode},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `transient` or `permanent`.
    pub outcome: String,
}

/// Labels of a `/jwks` answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The HTTP status code (`200`, `304`, `404`, `429`, `503`).
    pub code: String,
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
    /// Name of the AuthorizationServer or ClusterAuthorizationServer (which bank).
    pub server: String,
    /// `discovery`, `registration`, `token`, ...
    pub endpoint: String,
    /// `ok`, `transient` or `permanent`.
    pub outcome: String,
}

/// Labels of a per-server series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Name of the AuthorizationServer or ClusterAuthorizationServer.
    pub server: String,
}

/// What one reconcile knows about a client's material (the expiry facts of its series).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFacts {
    /// `expires_at` of each token held in the credentials Secret, by token name (in name
    /// order). A vector, not a map: one allocation of the exact size per client instead of a
    /// map node of eleven (BENCHMARKS.md, "Heap profile at 10,000").
    pub tokens: Vec<(String, jiff::Timestamp)>,
    /// `notAfter` of the transport certificate.
    pub certificate_not_after: Option<jiff::Timestamp>,
    /// When the active signing key became active.
    pub signing_key_activated_at: Option<jiff::Timestamp>,
    /// When the active signing key is due for scheduled rotation (activation +
    /// `signingKey.rotation.every`; `None` when scheduled rotation is off).
    pub signing_key_expiry: Option<jiff::Timestamp>,
}

/// The recorded state of one client.
#[derive(Clone, Debug, Default)]
struct ClientState {
    server: String,
    ready: Option<bool>,
    facts: ClientFacts,
}

/// Every client's recorded state, encoded at scrape time (see the module docs).
#[derive(Debug, Default)]
struct Clients {
    by_key: Mutex<BTreeMap<(String, String), ClientState>>,
    per_token: bool,
}

fn secs(t: jiff::Timestamp) -> i64 {
    t.as_second()
}

/// One gauge family of the collector: a descriptor, then one sample per client that has a value.
/// Nothing at all (not even the descriptor) when no client has one.
fn encode_per_client(
    encoder: &mut DescriptorEncoder,
    clients: &BTreeMap<(String, String), ClientState>,
    name: &str,
    help: &str,
    value: impl Fn(&ClientState) -> Option<i64>,
) -> Result<(), std::fmt::Error> {
    let mut samples = clients
        .iter()
        .filter_map(|((ns, n), st)| value(st).map(|v| (ns, n, st, v)))
        .peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (namespace, name, st, v) in samples {
        let labels = [
            ("namespace", namespace.as_str()),
            ("name", name.as_str()),
            ("server", st.server.as_str()),
        ];
        metric.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// A label-less gauge, present only with a value.
fn encode_earliest(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<i64>,
) -> Result<(), std::fmt::Error> {
    match value {
        Some(v) => prometheus_client::metrics::gauge::ConstGauge::new(v)
            .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?),
        None => Ok(()),
    }
}

impl Collector for Clients {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let clients = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        let token = |st: &ClientState| st.facts.tokens.iter().map(|(_, at)| *at).min().map(secs);
        let cert = |st: &ClientState| st.facts.certificate_not_after.map(secs);
        let key_activated = |st: &ClientState| st.facts.signing_key_activated_at.map(secs);
        encode_per_client(
            &mut encoder,
            &clients,
            "client_ready",
            "1 when the TppClient's Ready condition is True, 0 otherwise (absent while suspended)",
            |st| st.ready.map(i64::from),
        )?;
        encode_per_client(
            &mut encoder,
            &clients,
            "token_expiry_timestamp_seconds",
            "Earliest expires_at of the client's access tokens in its credentials Secret (Unix seconds)",
            token,
        )?;
        encode_per_client(
            &mut encoder,
            &clients,
            "certificate_not_after_timestamp_seconds",
            "notAfter of the client's transport certificate (Unix seconds)",
            cert,
        )?;
        encode_per_client(
            &mut encoder,
            &clients,
            "signing_key_expiry_timestamp_seconds",
            "When the client's active signing key is due for scheduled rotation: activation + signingKey.rotation.every (Unix seconds)",
            |st| st.facts.signing_key_expiry.map(secs),
        )?;
        if self.per_token {
            let mut samples = clients
                .iter()
                .flat_map(|((ns, n), st)| {
                    st.facts
                        .tokens
                        .iter()
                        .map(move |(t, at)| (ns, n, st, t, secs(*at)))
                })
                .peekable();
            if samples.peek().is_some() {
                let mut metric = encoder.encode_descriptor(
                    "token_expiry_by_token_timestamp_seconds",
                    "expires_at of each access token (Unix seconds; --metrics-per-object)",
                    None,
                    MetricType::Gauge,
                )?;
                for (namespace, name, st, token, v) in samples {
                    let labels = [
                        ("namespace", namespace.as_str()),
                        ("name", name.as_str()),
                        ("server", st.server.as_str()),
                        ("token", token.as_str()),
                    ];
                    metric.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
        encode_earliest(
            &mut encoder,
            "token_expiry_earliest_timestamp_seconds",
            "Earliest expires_at of any access token held in a credentials Secret (Unix seconds)",
            clients.values().filter_map(token).min(),
        )?;
        encode_earliest(
            &mut encoder,
            "certificate_not_after_earliest_timestamp_seconds",
            "Earliest notAfter of any transport certificate (Unix seconds)",
            clients.values().filter_map(cert).min(),
        )?;
        encode_earliest(
            &mut encoder,
            "signing_key_activated_earliest_timestamp_seconds",
            "Activation time of the oldest active signing key (Unix seconds; key age = now - this)",
            clients.values().filter_map(key_activated).min(),
        )
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
    /// Calls to authorization servers by server, endpoint and outcome.
    pub as_requests: Family<CallLabels, Counter>,
    /// Latency of calls to authorization servers.
    pub as_request_duration: Family<CallLabels, Histogram>,
    /// Token refreshes by outcome.
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    /// Status writes of TppClients (a refresh alone must cause none).
    pub status_writes: Counter,
    /// Requests of the controllers to the Kubernetes API, by method (after the budget).
    pub kube_requests: Family<KubeRequestLabels, Counter>,
    /// Requests to the Kubernetes API outside the budget (leader election, `/metrics` token
    /// reviews), by method.
    pub kube_requests_unbudgeted: Family<KubeRequestLabels, Counter>,
    /// Answers of the public `/jwks` listener, by status code.
    pub jwks_responses: Family<CodeLabels, Counter>,
    /// Registrations the operator found lost (a refused registration access token, or an
    /// attempt whose answer was never persisted), by server.
    pub registrations_lost: Family<ServerLabels, Counter>,
    /// Clients deleted with `deletionPolicy: Delete` that could not be deregistered and were
    /// left registered at the AS (each also logged and, while the TppClient exists, a Warning
    /// event), by server.
    pub clients_left_at_as: Family<ServerLabels, Counter>,
    clients: Arc<Clients>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
    .into_iter()
}

impl Metrics {
    /// A registry with every metric registered. `per_token` adds one expiry series per token.
    pub fn new(per_token: bool) -> Self {
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
            kube_requests_unbudgeted: Family::default(),
            jwks_responses: Family::default(),
            registrations_lost: Family::default(),
            clients_left_at_as: Family::default(),
            clients: Arc::new(Clients {
                by_key: Mutex::default(),
                per_token,
            }),
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
            "Calls to authorization servers by server, endpoint and outcome",
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
            "kube_requests_unbudgeted",
            "Requests to the Kubernetes API outside --kube-qps (leader election, /metrics token reviews) by method",
            m.kube_requests_unbudgeted.clone(),
        );
        registry.register(
            "jwks_responses",
            "Answers of the public /jwks listener by HTTP status code (429: beyond --jwks-rate-limit)",
            m.jwks_responses.clone(),
        );
        registry.register(
            "registrations_lost",
            "Registrations found lost at the AS (a new client was registered; the old one may remain unmanaged), by server",
            m.registrations_lost.clone(),
        );
        registry.register(
            "clients_left_at_as",
            "Clients deleted with deletionPolicy Delete but left registered at the AS (deregistration impossible or given up), by server",
            m.clients_left_at_as.clone(),
        );
        registry.register_collector(Box::new(m.clients.clone()));
        Self { registry, ..m }
    }

    fn with_client(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
        f: impl FnOnce(&mut ClientState),
    ) {
        let mut clients = self
            .clients
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let st = clients
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        server.clone_into(&mut st.server);
        f(st);
    }

    /// Record what a reconcile knows of a client's tokens, certificate and signing key (it
    /// replaces what was recorded before). Also makes the client's server's
    /// `registrations_lost` series exist (at 0), so that `increase()` sees its first loss.
    pub fn record_client(&self, namespace: &str, name: &str, server: &str, facts: ClientFacts) {
        self.with_client(namespace, name, server, |st| st.facts = facts);
        let _ = self.registrations_lost.get_or_create(&ServerLabels {
            server: server.to_owned(),
        });
    }

    /// The earliest `expires_at` of the tokens last recorded for a client (what its credentials
    /// Secret holds), if any.
    pub fn earliest_token_expiry(&self, namespace: &str, name: &str) -> Option<jiff::Timestamp> {
        let clients = self
            .clients
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        clients
            .get(&(namespace.to_owned(), name.to_owned()))?
            .facts
            .tokens
            .iter()
            .map(|(_, at)| *at)
            .min()
    }

    /// Record a client's readiness, or with `None` (suspended) forget every series of it.
    pub fn set_ready(&self, namespace: &str, name: &str, server: &str, ready: Option<bool>) {
        match ready {
            Some(r) => self.with_client(namespace, name, server, |st| st.ready = Some(r)),
            None => self.forget_client(namespace, name),
        }
    }

    /// Count a client left registered at the AS on deletion.
    pub fn client_left_at_as(&self, server: &str) {
        self.clients_left_at_as
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .inc();
    }

    /// Count a registration found lost.
    pub fn registration_lost(&self, server: &str) {
        self.registrations_lost
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .inc();
    }

    /// Forget every series of a deleted client.
    pub fn forget_client(&self, namespace: &str, name: &str) {
        self.clients
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Forget every client of `scope` (a namespace, `None` for all) that `keep` refuses (after
    /// a relist: clients deleted while the watch was down).
    pub fn retain_clients(&self, scope: Option<&str>, keep: impl Fn(&str, &str) -> bool) {
        self.clients
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(ns, name), _| scope.is_some_and(|s| s != ns) || keep(ns, name));
    }

    /// Count a call to an AS.
    pub fn observe_call(&self, server: &str, endpoint: &str, outcome: &str, seconds: f64) {
        let labels = CallLabels {
            server: server.to_owned(),
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

    /// Sample lines (`name{labels} value`) of metrics whose name starts with `prefix`.
    fn samples(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    fn facts(tokens: &[(&str, i64)], cert: i64, key: Option<(i64, i64)>) -> ClientFacts {
        ClientFacts {
            tokens: tokens
                .iter()
                .map(|(n, at)| ((*n).to_owned(), t(*at)))
                .collect(),
            certificate_not_after: Some(t(cert)),
            signing_key_activated_at: key.map(|(a, _)| t(a)),
            signing_key_expiry: key.map(|(_, e)| t(e)),
        }
    }

    const PER_CLIENT: [&str; 4] = [
        "tpp_operator_client_ready{",
        "tpp_operator_token_expiry_timestamp_seconds{",
        "tpp_operator_certificate_not_after_timestamp_seconds{",
        "tpp_operator_signing_key_expiry_timestamp_seconds{",
    ];

    #[test]
    fn a_registry_that_recorded_nothing_exports_no_expiry_or_readiness_series() {
        // A standby replica reconciles nothing: none of these may read 0 there.
        let r = Metrics::new(true).render();
        for name in [
            "client_ready",
            "timestamp_seconds",
            "earliest",
            "registrations_lost_total{",
        ] {
            assert!(
                !r.lines().any(|l| !l.starts_with('#') && l.contains(name)),
                "{name} in\n{r}"
            );
        }
    }

    #[test]
    fn each_client_exports_exactly_one_series_per_kind_labelled_namespace_name_server() {
        let m = Metrics::new(false);
        for (ns, name) in [("a", "one"), ("a", "two"), ("b", "one")] {
            m.record_client(
                ns,
                name,
                "ofm",
                facts(
                    &[("accounts", 3000), ("payments", 2000)],
                    9000,
                    Some((100, 7000)),
                ),
            );
            m.set_ready(ns, name, "ofm", Some(name == "one"));
        }
        for prefix in PER_CLIENT {
            assert_eq!(samples(&m, prefix).len(), 3, "{prefix}\n{}", m.render());
        }
        let r = m.render();
        for line in [
            r#"tpp_operator_client_ready{namespace="a",name="one",server="ofm"} 1"#,
            r#"tpp_operator_client_ready{namespace="a",name="two",server="ofm"} 0"#,
            // The earliest of the client's tokens: one series per client, not per token.
            r#"tpp_operator_token_expiry_timestamp_seconds{namespace="b",name="one",server="ofm"} 2000"#,
            r#"tpp_operator_certificate_not_after_timestamp_seconds{namespace="a",name="two",server="ofm"} 9000"#,
            r#"tpp_operator_signing_key_expiry_timestamp_seconds{namespace="a",name="one",server="ofm"} 7000"#,
        ] {
            assert!(r.lines().any(|l| l == line), "{line} not in\n{r}");
        }
        assert!(samples(&m, "tpp_operator_token_expiry_by_token").is_empty());
    }

    #[test]
    fn the_earliest_token_expiry_of_a_client_is_the_first_of_its_recorded_tokens() {
        let m = Metrics::new(false);
        assert_eq!(m.earliest_token_expiry("ns", "a"), None);
        m.record_client(
            "ns",
            "a",
            "ofm",
            facts(&[("accounts", 2000), ("payments", 1500)], 5000, None),
        );
        assert_eq!(
            m.earliest_token_expiry("ns", "a"),
            jiff::Timestamp::from_second(1500).ok()
        );
        assert_eq!(m.earliest_token_expiry("ns", "b"), None);
    }

    #[test]
    fn a_deleted_client_leaves_no_series_and_the_earliest_moves_to_the_next_holder() {
        let m = Metrics::new(true);
        m.record_client(
            "ns",
            "a",
            "ofm",
            facts(&[("accounts", 2000)], 5000, Some((10, 90))),
        );
        m.record_client(
            "ns",
            "b",
            "ofm",
            facts(&[("accounts", 1000)], 6000, Some((20, 80))),
        );
        m.set_ready("ns", "b", "ofm", Some(true));
        assert_eq!(
            samples(&m, "tpp_operator_token_expiry_earliest_timestamp_seconds"),
            ["tpp_operator_token_expiry_earliest_timestamp_seconds 1000"]
        );
        m.forget_client("ns", "b");
        let r = m.render();
        assert!(!r.contains(r#"name="b""#), "{r}");
        assert_eq!(
            samples(&m, "tpp_operator_token_expiry_earliest_timestamp_seconds"),
            ["tpp_operator_token_expiry_earliest_timestamp_seconds 2000"]
        );
        assert_eq!(
            samples(&m, "tpp_operator_signing_key_activated_earliest"),
            ["tpp_operator_signing_key_activated_earliest_timestamp_seconds 10"]
        );
        m.forget_client("ns", "a");
        for prefix in PER_CLIENT.iter().copied().chain([
            "tpp_operator_token_expiry_earliest",
            "tpp_operator_certificate_not_after_earliest",
            "tpp_operator_signing_key_activated_earliest",
            "tpp_operator_token_expiry_by_token",
        ]) {
            assert!(
                samples(&m, prefix).is_empty(),
                "{prefix} with no client left"
            );
        }
    }

    #[test]
    fn a_renewed_certificate_replaces_the_recorded_facts_and_a_missing_one_is_absent() {
        let m = Metrics::new(false);
        m.record_client("ns", "a", "ofm", facts(&[("accounts", 1000)], 500, None));
        assert_eq!(
            samples(&m, "tpp_operator_certificate_not_after_earliest"),
            ["tpp_operator_certificate_not_after_earliest_timestamp_seconds 500"]
        );
        m.record_client(
            "ns",
            "a",
            "ofm",
            ClientFacts {
                certificate_not_after: None,
                ..facts(&[("accounts", 3000)], 0, None)
            },
        );
        assert!(samples(&m, "tpp_operator_certificate_not_after").is_empty());
        assert!(
            samples(&m, "tpp_operator_signing_key").is_empty(),
            "no key, no key series"
        );
        assert_eq!(
            samples(&m, "tpp_operator_token_expiry_timestamp_seconds"),
            [
                r#"tpp_operator_token_expiry_timestamp_seconds{namespace="ns",name="a",server="ofm"} 3000"#
            ]
        );
    }

    #[test]
    fn a_suspended_client_exports_no_series() {
        let m = Metrics::new(false);
        m.record_client(
            "ns",
            "a",
            "ofm",
            facts(&[("accounts", 1000)], 500, Some((1, 2))),
        );
        m.set_ready("ns", "a", "ofm", Some(false));
        assert_eq!(samples(&m, "tpp_operator_client_ready").len(), 1);
        m.set_ready("ns", "a", "ofm", None);
        let r = m.render();
        assert!(!r.contains(r#"name="a""#), "{r}");
        assert!(samples(&m, "tpp_operator_token_expiry_earliest").is_empty());
    }

    #[test]
    fn per_token_series_appear_only_with_metrics_per_object() {
        let m = Metrics::new(true);
        m.record_client(
            "ns",
            "a",
            "ofm",
            facts(&[("accounts", 2000), ("payments", 3000)], 1, None),
        );
        assert_eq!(
            samples(&m, "tpp_operator_token_expiry_by_token_timestamp_seconds"),
            [
                r#"tpp_operator_token_expiry_by_token_timestamp_seconds{namespace="ns",name="a",server="ofm",token="accounts"} 2000"#,
                r#"tpp_operator_token_expiry_by_token_timestamp_seconds{namespace="ns",name="a",server="ofm",token="payments"} 3000"#,
            ]
        );
    }

    #[test]
    fn calls_are_counted_by_server_endpoint_and_outcome() {
        let m = Metrics::new(false);
        m.observe_call("ofm", "token", "ok", 0.01);
        m.observe_call("ofm", "token", "ok", 0.02);
        m.observe_call("other-bank", "token", "transient", 0.02);
        let r = m.render();
        assert!(r.contains(
            r#"tpp_operator_as_requests_total{server="ofm",endpoint="token",outcome="ok"} 2"#
        ));
        assert!(r.contains(
            r#"tpp_operator_as_requests_total{server="other-bank",endpoint="token",outcome="transient"} 1"#
        ));
    }

    #[test]
    fn registrations_lost_exists_at_zero_once_a_client_of_the_server_is_recorded() {
        // `increase()` cannot see the first increment of a series that appears at 1.
        let m = Metrics::new(false);
        m.record_client("ns", "a", "ofm", ClientFacts::default());
        assert_eq!(
            samples(&m, "tpp_operator_registrations_lost_total"),
            [r#"tpp_operator_registrations_lost_total{server="ofm"} 0"#]
        );
        m.registration_lost("ofm");
        assert_eq!(
            samples(&m, "tpp_operator_registrations_lost_total"),
            [r#"tpp_operator_registrations_lost_total{server="ofm"} 1"#]
        );
    }
}
