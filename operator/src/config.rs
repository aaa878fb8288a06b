//! The operator's configuration: every flag also readable from a `TPP_OPERATOR_*` environment
//! variable; `--help` is generated from these doc comments. No I/O.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// tpp-operator: keeps Open Finance OAuth clients registered, keyed and tokened.
#[derive(Clone, Debug, Parser)]
#[command(name = "tpp-operator", version, about)]
pub struct Config {
    /// Namespaces to watch (comma-separated). Empty: every namespace. Empty items (an empty
    /// `TPP_OPERATOR_NAMESPACES`, a trailing comma) are ignored: see [`Config::load`].
    #[arg(long, env = "TPP_OPERATOR_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// How many TppClients are reconciled at once.
    #[arg(long, env = "TPP_OPERATOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Size of the bounded pool for CPU-heavy work (key generation). 0: the number of cores.
    #[arg(long, env = "TPP_OPERATOR_CRYPTO_WORKERS", default_value_t = 0)]
    pub crypto_workers: usize,

    /// Address of the admin server (/healthz, /readyz, /metrics): keep it cluster-internal.
    #[arg(
        long,
        env = "TPP_OPERATOR_ADMIN_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_address: SocketAddr,

    /// Address of the public JWKS server (/jwks/{namespace}/{name}, nothing else): the port an
    /// Ingress or Gateway route exposes for the authorization servers' `jwks_uri` fetches.
    #[arg(
        long,
        env = "TPP_OPERATOR_JWKS_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub jwks_address: SocketAddr,

    /// At most this many /jwks answers per second per process (burst: twice that); beyond,
    /// 429 with Retry-After. Answers come from memory and cost no API call.
    #[arg(long, env = "TPP_OPERATOR_JWKS_RATE_LIMIT", default_value_t = 100)]
    pub jwks_rate_limit: u32,

    /// Who may read /metrics: `none` (anyone who reaches the admin port) or `tokenreview` (a
    /// bearer token checked by TokenReview, whose user may `get` the non-resource URL
    /// /metrics, checked by SubjectAccessReview).
    #[arg(long, env = "TPP_OPERATOR_METRICS_AUTH", value_enum, default_value_t = crate::metrics_auth::MetricsAuthMode::None)]
    pub metrics_auth: crate::metrics_auth::MetricsAuthMode,

    /// Log format.
    #[arg(long, env = "TPP_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Run leader election on a Lease so that only one replica acts; standbys stay warm.
    #[arg(long, env = "TPP_OPERATOR_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (default: the pod's namespace from
    /// POD_NAMESPACE, else `default`).
    #[arg(long, env = "TPP_OPERATOR_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "TPP_OPERATOR_LEADER_ELECTION_LEASE",
        default_value = "tpp-operator"
    )]
    pub leader_election_lease: String,

    /// How long a standby waits, on its own clock, after the last change of the Lease it saw
    /// before taking over (client-go's LeaseDuration).
    #[arg(long, env = "TPP_OPERATOR_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_seconds)]
    pub leader_election_lease_duration: std::time::Duration,

    /// How long the leader keeps acting after the last renewal it sent that succeeded; below
    /// the lease duration (client-go's RenewDeadline).
    #[arg(long, env = "TPP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_seconds)]
    pub leader_election_renew_deadline: std::time::Duration,

    /// Time between leader-election rounds; below the renew deadline (client-go's
    /// RetryPeriod).
    #[arg(long, env = "TPP_OPERATOR_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_seconds)]
    pub leader_election_retry_period: std::time::Duration,

    /// Client-side limit on requests per second to the Kubernetes API.
    #[arg(long, env = "TPP_OPERATOR_KUBE_QPS", default_value_t = 100.0)]
    pub kube_qps: f64,

    /// Burst above `--kube-qps`.
    #[arg(long, env = "TPP_OPERATOR_KUBE_BURST", default_value_t = 200)]
    pub kube_burst: u32,

    /// Label metrics by TppClient (namespace/name). Off by default: high cardinality.
    #[arg(long, env = "TPP_OPERATOR_METRICS_PER_OBJECT", default_value_t = false)]
    pub metrics_per_object: bool,

    /// How many times a deregistration (RFC 7592 DELETE) is tried before the finalizer is
    /// removed anyway, with a Warning event naming what was left at the AS.
    #[arg(long, env = "TPP_OPERATOR_DELETE_ATTEMPTS", default_value_t = 5)]
    pub delete_attempts: u32,

    /// After SIGTERM, how long the controllers may take to finish in-flight reconciles before
    /// the process exits anyway (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, env = "TPP_OPERATOR_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_seconds)]
    pub shutdown_timeout: std::time::Duration,

    /// The longest one request to an authorization server may take, connection and body
    /// included (discovery, registration, RFC 7592, token, revocation): then it fails as a
    /// timeout, retried on the client's backoff (a registration whose answer timed out is an
    /// attempt of unknown outcome, docs/reliability.md). Above 0.
    #[arg(long, env = "TPP_OPERATOR_AS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_seconds)]
    pub as_request_timeout: std::time::Duration,

    /// The server-side timeout of every watch the operator runs (`timeoutSeconds`, in whole
    /// seconds, 1–290; kube-runtime's default 290): the API server ends a watch after this
    /// long and the watcher starts the next one from where it was. A shorter one finds a
    /// watch that went quiet (its API server lost etcd, a proxy dropped it) sooner, for one
    /// watch request per watch per period.
    #[arg(long, env = "TPP_OPERATOR_WATCH_TIMEOUT", default_value = "290s", value_parser = parse_watch_timeout)]
    pub watch_timeout: u32,

    /// Authorization server hosts the operator may call although they are loopback,
    /// link-local, private-range or cluster-internal names (comma-separated: exact hosts, IP
    /// literals or `*.suffix` patterns). Empty: any public host, nothing internal.
    #[arg(long, env = "TPP_OPERATOR_ALLOWED_AS_HOSTS", value_delimiter = ',')]
    pub allowed_as_hosts: Vec<String>,
}

fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| format!("expected seconds such as `20s` or `1.5`, got `{s}`"))
}

fn parse_positive_seconds(s: &str) -> Result<std::time::Duration, String> {
    parse_seconds(s).and_then(|d| {
        if d.is_zero() {
            Err(format!("expected more than 0 seconds, got `{s}`"))
        } else {
            Ok(d)
        }
    })
}

fn parse_watch_timeout(s: &str) -> Result<u32, String> {
    let d = parse_seconds(s)?;
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !(1..=290).contains(&secs) {
        return Err(format!(
            "expected whole seconds from 1 to 290 (below the client's 295 s read timeout), got `{s}`"
        ));
    }
    u32::try_from(secs).map_err(|e| e.to_string())
}

impl Config {
    /// Parse the command line and environment, then normalise: see [`Config::normalized`].
    pub fn load() -> Self {
        Self::parse().normalized()
    }

    /// Drop empty and blank namespace items: the chart's default `watchNamespaces: []` renders
    /// `TPP_OPERATOR_NAMESPACES=""`, which clap reads as one empty namespace, and an empty
    /// namespace would make every request `/namespaces//tppclients`. No namespaces left means
    /// every namespace.
    pub fn normalized(mut self) -> Self {
        self.namespaces = self
            .namespaces
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        // Likewise an empty TPP_OPERATOR_ALLOWED_AS_HOSTS lists no host.
        self.allowed_as_hosts.retain(|h| !h.trim().is_empty());
        self
    }

    /// The configuration of every watch the operator starts: `--watch-timeout`.
    pub fn watcher(&self) -> kube::runtime::watcher::Config {
        kube::runtime::watcher::Config::default().timeout(self.watch_timeout)
    }

    /// The egress policy of `--allowed-as-hosts` (see [`crate::oauth::egress`]).
    pub fn egress_policy(&self) -> crate::oauth::EgressPolicy {
        crate::oauth::EgressPolicy::new(&self.allowed_as_hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Config::command().debug_assert();
    }

    #[test]
    fn parses_flags_and_defaults() {
        let c = Config::try_parse_from([
            "tpp-operator",
            "--namespaces",
            "a,b",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(c.namespaces, ["a", "b"]);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.concurrency, 16);
        assert!(!c.leader_election);
        assert_eq!(
            (
                c.leader_election_lease_duration,
                c.leader_election_renew_deadline,
                c.leader_election_retry_period
            ),
            (
                std::time::Duration::from_secs(15),
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(2)
            ),
            "client-go's defaults"
        );
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(20));
        assert_eq!(c.as_request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.watch_timeout, 290, "kube-runtime's default");
        assert_eq!(c.watcher().timeout, Some(290));
        assert!(c.allowed_as_hosts.is_empty());
        assert!(!c.egress_policy().allows("127.0.0.1"));
    }

    #[test]
    fn an_empty_namespaces_value_means_every_namespace() {
        // What the chart's default `watchNamespaces: []` renders into TPP_OPERATOR_NAMESPACES.
        for value in ["", " ", ",", "a,,b,", " a , b"] {
            let c = Config::try_parse_from(["tpp-operator", "--namespaces", value])
                .unwrap()
                .normalized();
            let expected: &[&str] = if value.contains('a') {
                &["a", "b"]
            } else {
                &[]
            };
            assert_eq!(c.namespaces, expected, "--namespaces {value:?}");
        }
        let none = Config::try_parse_from(["tpp-operator"])
            .unwrap()
            .normalized();
        assert!(none.namespaces.is_empty());
    }

    #[test]
    fn shutdown_timeout_reads_seconds() {
        let c = Config::try_parse_from(["tpp-operator", "--shutdown-timeout", "1.5s"]).unwrap();
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_millis(1500));
        assert!(Config::try_parse_from(["tpp-operator", "--shutdown-timeout", "soon"]).is_err());
    }

    #[test]
    fn the_as_request_timeout_reads_seconds_above_zero() {
        let c = Config::try_parse_from(["tpp-operator", "--as-request-timeout", "2s"]).unwrap();
        assert_eq!(c.as_request_timeout, std::time::Duration::from_secs(2));
        for bad in ["0", "0s", "soon"] {
            assert!(
                Config::try_parse_from(["tpp-operator", "--as-request-timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_watch_timeout_is_whole_seconds_from_1_to_290_and_reaches_every_watch_config() {
        let c = Config::try_parse_from(["tpp-operator", "--watch-timeout", "5s"]).unwrap();
        assert_eq!(c.watch_timeout, 5);
        assert_eq!(c.watcher().timeout, Some(5));
        for bad in ["0", "1.5", "291", "soon"] {
            assert!(
                Config::try_parse_from(["tpp-operator", "--watch-timeout", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn allowed_as_hosts_lists_internal_hosts_the_operator_may_call() {
        let c = Config::try_parse_from([
            "tpp-operator",
            "--allowed-as-hosts",
            "127.0.0.1,*.svc.cluster.local",
        ])
        .unwrap();
        assert_eq!(c.allowed_as_hosts, ["127.0.0.1", "*.svc.cluster.local"]);
        let policy = c.egress_policy();
        assert!(policy.allows("127.0.0.1") && policy.allows("as.ns.svc.cluster.local"));
        assert!(!policy.allows("10.0.0.1"));
    }
}
