//! [`ClientPool`]: reuses one [`AsClient`] (one connection pool) per (AS, transport settings,
//! client certificate) so calls share connections, while a certificate switch gets a new
//! client and so new connections. Bounded (least recently used evicted) with idle expiry, and
//! the owner of the per-AS rate limiters. No network I/O itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;

use super::clock::{Clock, SystemClock};
use super::error::OauthError;
use super::ratelimit::{AsLimiters, RateLimit};
use super::tls::{ClientIdentity, TransportConfig};
use super::transport::AsClient;

/// Pool bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most clients kept; the least recently used goes first.
    pub max_clients: usize,
    /// A client unused this long is dropped.
    pub idle_ttl: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            // Every client due within the idle window keeps its connection (~15 KiB each).
            max_clients: 1024,
            idle_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    as_key: String,
    settings: [u8; 32],
    x5t_s256: Option<String>,
}

struct Entry {
    client: AsClient,
    last_used: jiff::Timestamp,
}

/// Cache of [`AsClient`]s plus the per-AS limiters.
pub struct ClientPool {
    config: PoolConfig,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<PoolKey, Entry>>,
    limiters: AsLimiters,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool")
            .field("config", &self.config)
            .field("len", &self.len())
            .finish()
    }
}

fn settings_digest(config: &TransportConfig, rate: Option<RateLimit>) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update(&config.ca_bundle_pem);
    h.update(config.connect_timeout.as_millis().to_be_bytes());
    h.update(config.idle_connection.as_millis().to_be_bytes());
    h.update(config.timeout.as_millis().to_be_bytes());
    h.update(config.body_limit.to_be_bytes());
    if let Some(rate) = rate {
        h.update(rate.per_second.get().to_be_bytes());
        h.update(rate.burst.get().to_be_bytes());
    }
    h.finalize().into()
}

impl ClientPool {
    /// An empty pool on the system clock.
    pub fn new(config: PoolConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// An empty pool on `clock` (also handed to every client it builds).
    pub fn with_clock(config: PoolConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            clients: Mutex::new(HashMap::new()),
            limiters: AsLimiters::default(),
        }
    }

    /// The client for AS `as_key` with these settings and this certificate: reused when one
    /// exists, else built. All clients of one AS share its `rate` limiter.
    pub fn client(
        &self,
        as_key: &str,
        config: &TransportConfig,
        identity: Option<&ClientIdentity>,
        rate: Option<RateLimit>,
    ) -> Result<AsClient, OauthError> {
        let now = self.clock.now();
        let key = PoolKey {
            as_key: as_key.to_owned(),
            settings: settings_digest(config, rate),
            x5t_s256: identity.map(|id| id.x5t_s256().to_owned()),
        };
        let idle = jiff::SignedDuration::try_from(self.config.idle_ttl)
            .unwrap_or(jiff::SignedDuration::MAX);
        {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = clients.get_mut(&key) {
                if now.duration_since(entry.last_used) < idle {
                    entry.last_used = now;
                    return Ok(entry.client.clone());
                }
                clients.remove(&key);
            }
        }
        // Build outside the lock: parsing PEMs and building a TLS config takes a while.
        let mut client = AsClient::new(config, identity)?.with_clock(self.clock.clone());
        if let Some(rate) = rate {
            client = client.with_limiter(self.limiters.get(as_key, rate));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = clients.get_mut(&key) {
            // Another caller built the same client meanwhile: share theirs.
            entry.last_used = now;
            return Ok(entry.client.clone());
        }
        // Idle clients go when a new one comes (a hit is O(1); a sweep is O(pool)).
        clients.retain(|_, e| now.duration_since(e.last_used) < idle);
        while clients.len() >= self.config.max_clients.max(1) {
            let oldest = clients
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => clients.remove(&k),
                None => break,
            };
        }
        clients.insert(
            key,
            Entry {
                client: client.clone(),
                last_used: now,
            },
        );
        Ok(client)
    }

    /// Number of cached clients.
    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no client is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every client and the limiter of an AS (e.g. when its object is deleted).
    pub fn forget_as(&self, as_key: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.as_key != as_key);
        self.limiters.remove(as_key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    struct Manual(AtomicI64);
    impl Clock for Manual {
        fn now(&self) -> jiff::Timestamp {
            jiff::Timestamp::from_second(self.0.load(Ordering::SeqCst))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        }
    }

    fn ca() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().ok();
        let cert = key.as_ref().and_then(|k| {
            rcgen::CertificateParams::new(vec!["ca".into()])
                .ok()?
                .self_signed(k)
                .ok()
        });
        cert.map(|c| c.pem().into_bytes()).unwrap_or_default()
    }

    fn pool(max: usize, clock: Arc<Manual>) -> ClientPool {
        ClientPool::with_clock(
            PoolConfig {
                max_clients: max,
                idle_ttl: Duration::from_secs(60),
            },
            clock,
        )
    }

    #[test]
    fn reuses_the_client_for_the_same_as_and_certificate() {
        let clock = Arc::new(Manual(AtomicI64::new(1000)));
        let p = pool(4, clock);
        let cfg = TransportConfig::new(ca());
        assert!(p.client("ns/as", &cfg, None, None).is_ok());
        assert!(p.client("ns/as", &cfg, None, None).is_ok());
        assert_eq!(p.len(), 1);
        assert!(p.client("ns/other", &cfg, None, None).is_ok());
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn drops_clients_idle_longer_than_the_ttl() {
        let clock = Arc::new(Manual(AtomicI64::new(1000)));
        let p = pool(4, clock.clone());
        let cfg = TransportConfig::new(ca());
        assert!(p.client("ns/a", &cfg, None, None).is_ok());
        clock.0.store(1061, Ordering::SeqCst);
        assert!(p.client("ns/b", &cfg, None, None).is_ok());
        assert_eq!(p.len(), 1, "ns/a idled out");
    }

    #[test]
    fn evicts_the_least_recently_used_client_at_the_bound() {
        let clock = Arc::new(Manual(AtomicI64::new(1000)));
        let p = pool(2, clock.clone());
        let cfg = TransportConfig::new(ca());
        for (t, key) in [(1000, "a"), (1001, "b"), (1002, "a"), (1003, "c")] {
            clock.0.store(t, Ordering::SeqCst);
            assert!(p.client(key, &cfg, None, None).is_ok());
        }
        assert_eq!(p.len(), 2);
        p.forget_as("a");
        assert_eq!(p.len(), 1, "a survived eviction (recently used), b did not");
        p.forget_as("c");
        assert!(p.is_empty());
    }

    #[test]
    fn rejects_an_empty_ca_bundle() {
        let p = ClientPool::new(PoolConfig::default());
        let err = p
            .client("ns/as", &TransportConfig::new(Vec::new()), None, None)
            .err();
        assert_eq!(
            err.map(|e| e.reason().as_str()),
            Some("InvalidTransportConfig")
        );
    }
}
