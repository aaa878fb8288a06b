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
//! [`super::OauthError::EgressRefused`], naming the host and the flag. Names are checked as
//! written: a public name whose DNS answer is a private address is not caught here (not yet
//! done: docs/security.md). Pure; no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

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
