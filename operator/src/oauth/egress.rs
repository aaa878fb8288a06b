//! Egress policy: which hosts the operator may call as an authorization server (issue 13,
//! item 5). A tenant writes an AuthorizationServer's `issuer`/`discoveryUrl` and brings the CA,
//! and the discovery document names every other endpoint; without a policy the operator would
//! call in-cluster services from its own network position on a tenant's behalf.
//!
//! Contract: a host listed in the operator's allow-list (`--allowed-as-hosts` /
//! `TPP_OPERATOR_ALLOWED_AS_HOSTS`: comma-separated exact host names, IP literals, or
//! `*.suffix` patterns, case-insensitive, a trailing dot ignored) is allowed. Any other host is
//! allowed unless it is a loopback, unspecified, link-local, private-range, shared-address
//! (100.64/10) or unique-local IP literal (IPv4-mapped IPv6 included), `localhost` or
//! `*.localhost`, a cluster-internal name (`*.svc`, `*.svc.<anything>`, `*.cluster.local`,
//! `*.internal`), or a single-label name (resolved through the pod's search domains to a
//! cluster service). An empty allow-list therefore means "any public host". The check applies to
//! every request's URL in [`super::AsClient::send`], so to the discovery URL, every endpoint of
//! the discovery document and `registration_client_uri` alike. A refusal is the permanent
//! [`super::OauthError::EgressRefused`], naming the host and the flag.
//!
//! Names are also checked as resolved: every [`super::AsClient`] resolves through
//! [`EgressResolver`], which drops the refused addresses from each DNS answer unless the name
//! itself is listed (exact or `*.suffix`) or the address is. A name whose every address is
//! refused (a public name pointing at 127.0.0.1, 10.0.0.5 or a cluster service IP in a private
//! range) fails with [`ResolvedInternal`], which the transport reports as the permanent
//! [`super::OauthError::EgressResolvedInternal`]; nothing is sent. The policy is pure; the
//! resolver's only I/O is the lookup ([`Lookup`], the system resolver unless replaced).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};

/// The flag (and, in parentheses, the environment variable) that lists allowed hosts.
pub const FLAG: &str = "--allowed-as-hosts (TPP_OPERATOR_ALLOWED_AS_HOSTS)";

/// The operator's egress policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Exact hosts (lower case, no trailing dot).
    exact: Vec<String>,
    /// `*.suffix` patterns, stored as `.suffix`.
    suffixes: Vec<String>,
}

impl EgressPolicy {
    /// A policy from allow-list entries (empty entries ignored).
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> Self {
        let mut policy = Self::default();
        for entry in allowed {
            let entry = normalise(entry.as_ref().trim());
            if entry.is_empty() {
                continue;
            }
            match entry.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => policy.suffixes.push(suffix.to_owned()),
                _ => policy.exact.push(entry),
            }
        }
        policy
    }

    /// Whether the operator may call `host` (as `url::Url::host_str` gives it: IPv6 in
    /// brackets).
    pub fn allows(&self, host: &str) -> bool {
        let host = normalise(host);
        if self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str())) {
            return true;
        }
        !internal(&host)
    }

    /// Whether `host` is in the allow-list itself (exact or by a `*.suffix` pattern), not merely
    /// allowed for being public.
    pub fn lists(&self, host: &str) -> bool {
        let host = normalise(host);
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    /// Whether the operator may connect to `ip`, an address `host` resolved to: yes when the
    /// host or the address is listed, or the address is public.
    pub fn allows_resolved(&self, host: &str, ip: IpAddr) -> bool {
        self.lists(host) || self.exact.contains(&normalise(&ip.to_string())) || !internal_ip(ip)
    }

    /// The addresses of `host` the operator may connect to, in the order given.
    pub fn filter_resolved(&self, host: &str, addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
        addrs
            .into_iter()
            .filter(|a| self.allows_resolved(host, a.ip()))
            .collect()
    }
}

/// A name whose every address the egress policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({addrs})")]
pub struct ResolvedInternal {
    /// The name.
    pub host: String,
    /// The refused addresses, comma-separated.
    pub addrs: String,
}

/// A DNS lookup: the addresses of a name (ports are filled in by the connector).
pub trait Lookup: Send + Sync {
    /// The addresses of `host`.
    fn lookup(&self, host: String) -> reqwest::dns::Resolving;
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What an [`EgressResolver`] checks against and how it looks names up.
struct ResolverSettings {
    /// The client's own policy; else the installed one; else nothing is filtered.
    policy: Option<Arc<EgressPolicy>>,
    lookup: Arc<dyn Lookup>,
}

/// The DNS resolver of every [`super::AsClient`]: looks the name up, then keeps only the
/// addresses the egress policy allows ([`EgressPolicy::filter_resolved`]); none left is a
/// [`ResolvedInternal`] error. Clones share their settings.
#[derive(Clone)]
pub struct EgressResolver {
    settings: Arc<RwLock<ResolverSettings>>,
}

impl Default for EgressResolver {
    fn default() -> Self {
        Self {
            settings: Arc::new(RwLock::new(ResolverSettings {
                policy: None,
                lookup: Arc::new(SystemLookup),
            })),
        }
    }
}

impl std::fmt::Debug for EgressResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressResolver").finish_non_exhaustive()
    }
}

impl EgressResolver {
    /// Checks against `policy` instead of the installed one.
    pub fn set_policy(&self, policy: Arc<EgressPolicy>) {
        self.settings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .policy = Some(policy);
    }

    /// Looks names up with `lookup` instead of the system resolver (tests).
    pub fn set_lookup(&self, lookup: Arc<dyn Lookup>) {
        self.settings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .lookup = lookup;
    }
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, lookup) = {
            let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
            (
                settings.policy.clone().or_else(installed),
                settings.lookup.clone(),
            )
        };
        let host = name.as_str().to_owned();
        let resolving = lookup.lookup(host.clone());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = resolving.await?.collect();
            let Some(policy) = policy else {
                return Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs);
            };
            let allowed = policy.filter_resolved(&host, addrs.clone());
            if allowed.is_empty() && !addrs.is_empty() {
                let refused: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                return Err(Box::new(ResolvedInternal {
                    host,
                    addrs: refused.join(", "),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Lower case, without a trailing dot or IPv6 brackets.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// True for hosts refused unless listed.
fn internal(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return internal_ip(ip);
    }
    if host.is_empty() || !host.contains('.') {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".cluster.local")
        || host.ends_with(".internal")
        || labels.last() == Some(&"svc")
        || labels.iter().skip(1).any(|l| *l == "svc")
}

fn internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xffc0) == 0xfe80
        || (first & 0xfe00) == 0xfc00
}

static INSTALLED: OnceLock<Arc<EgressPolicy>> = OnceLock::new();

/// Installs the operator-wide policy (once, at start, from the configuration); every
/// [`super::AsClient`] without its own policy checks against it. Returns false when one was
/// already installed.
pub fn install(policy: EgressPolicy) -> bool {
    INSTALLED.set(Arc::new(policy)).is_ok()
}

/// The installed operator-wide policy, if any.
pub fn installed() -> Option<Arc<EgressPolicy>> {
    INSTALLED.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 0)
    }

    #[test]
    fn resolved_loopback_private_link_local_and_unique_local_addresses_are_dropped() {
        let p = EgressPolicy::default();
        let all = vec![
            sa("127.0.0.1"),
            sa("10.96.0.10"),
            sa("172.20.1.1"),
            sa("192.168.0.5"),
            sa("169.254.169.254"),
            sa("0.0.0.0"),
            sa("::1"),
            sa("fd12::1"),
            sa("fe80::1"),
            sa("::ffff:10.0.0.1"),
            sa("203.0.113.7"),
            sa("2001:db8::7"),
        ];
        assert_eq!(
            p.filter_resolved("as.bank.example", all),
            vec![sa("203.0.113.7"), sa("2001:db8::7")]
        );
    }

    #[test]
    fn a_listed_name_or_a_listed_address_keeps_its_internal_addresses() {
        let by_name = EgressPolicy::new(&["localhost", "*.bank.test"]);
        assert!(by_name.allows_resolved("localhost", "127.0.0.1".parse().unwrap()));
        assert!(by_name.allows_resolved("as.bank.test.", "::1".parse().unwrap()));
        assert!(!by_name.allows_resolved("as.bank.example", "127.0.0.1".parse().unwrap()));
        let by_address = EgressPolicy::new(&["127.0.0.1"]);
        assert!(by_address.allows_resolved("as.bank.example", "127.0.0.1".parse().unwrap()));
        assert!(!by_address.allows_resolved("as.bank.example", "127.0.0.2".parse().unwrap()));
    }

    struct Fixed(Vec<SocketAddr>);

    impl Lookup for Fixed {
        fn lookup(&self, _host: String) -> reqwest::dns::Resolving {
            let addrs = self.0.clone();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs) })
        }
    }

    async fn resolve(
        policy: EgressPolicy,
        answer: Vec<SocketAddr>,
        host: &str,
    ) -> Result<Vec<SocketAddr>, String> {
        use reqwest::dns::Resolve as _;
        let r = EgressResolver::default();
        r.set_policy(Arc::new(policy));
        r.set_lookup(Arc::new(Fixed(answer)));
        let name: reqwest::dns::Name = host.parse().unwrap();
        r.resolve(name)
            .await
            .map(|a| a.collect())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_public_name_that_resolves_only_to_internal_addresses() {
        let err = resolve(
            EgressPolicy::default(),
            vec![sa("127.0.0.1")],
            "as.bank.example",
        )
        .await
        .expect_err("refused");
        assert_eq!(
            err,
            "as.bank.example resolves only to refused addresses (127.0.0.1)"
        );
        // Mixed answers keep the public addresses only.
        let kept = resolve(
            EgressPolicy::default(),
            vec![sa("10.0.0.1"), sa("203.0.113.7")],
            "as.bank.example",
        )
        .await
        .unwrap();
        assert_eq!(kept, vec![sa("203.0.113.7")]);
        // Listed: kept.
        let kept = resolve(
            EgressPolicy::new(&["as.bank.example"]),
            vec![sa("127.0.0.1")],
            "as.bank.example",
        )
        .await
        .unwrap();
        assert_eq!(kept, vec![sa("127.0.0.1")]);
    }

    #[test]
    fn an_empty_allow_list_allows_public_hosts_and_refuses_internal_ones() {
        let p = EgressPolicy::default();
        for ok in [
            "as.bank.example",
            "matls-auth.directory.openbankingbrasil.org.br",
            "8.8.8.8",
            "[2001:db8::1]",
            "svc.example.com",
        ] {
            assert!(p.allows(ok), "{ok} should be allowed");
        }
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "0.0.0.0",
            "[::]",
            "169.254.169.254",
            "[fe80::1]",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "[fd00::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:10.1.2.3]",
            "localhost",
            "LOCALHOST.",
            "app.localhost",
            "kubernetes",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "vault.vault.svc.cluster.local.",
            "metadata.google.internal",
            "redis.ns.svc",
        ] {
            assert!(!p.allows(bad), "{bad} should be refused");
        }
    }

    #[test]
    fn listed_hosts_and_suffix_patterns_are_allowed_even_when_internal() {
        let p = EgressPolicy::new(&[" 127.0.0.1", "", "*.svc.cluster.local", "Localhost", "::1"]);
        for ok in [
            "127.0.0.1",
            "localhost",
            "as.ns.svc.cluster.local",
            "[::1]",
            "public.example",
        ] {
            assert!(p.allows(ok), "{ok} should be allowed");
        }
        // A suffix pattern does not match the bare suffix, nor other internal hosts.
        for bad in ["svc.cluster.local", "127.0.0.2", "10.0.0.1", "kubernetes"] {
            assert!(!p.allows(bad), "{bad} should be refused");
        }
    }
}
