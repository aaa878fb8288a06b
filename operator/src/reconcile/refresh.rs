//! The `tpp.dev/refresh-discovery` verb of AuthorizationServer and ClusterAuthorizationServer:
//! each new value of the annotation drops the cached discovery document of that server, so the
//! reconcile it triggers fetches the document again (e.g. after the bank moved an endpoint,
//! instead of waiting for the cache's 15 minutes). The values acted on are remembered in memory
//! per object: after a restart the cache is empty anyway. No I/O.

use std::collections::HashMap;
use std::sync::Mutex;

/// Annotation values already acted on, per authorization server object.
#[derive(Debug, Default)]
pub struct DiscoveryRefreshes {
    handled: Mutex<HashMap<String, String>>,
}

impl DiscoveryRefreshes {
    /// Whether `requested` (the annotation's value on object `key`) is a new request; records
    /// it as handled. An absent or empty value is never a request.
    pub fn take(&self, key: &str, requested: Option<&str>) -> bool {
        let Some(value) = requested.filter(|v| !v.is_empty()) else {
            return false;
        };
        let mut handled = self.handled.lock().unwrap_or_else(|p| p.into_inner());
        if handled.get(key).is_some_and(|v| v == value) {
            return false;
        }
        handled.insert(key.to_owned(), value.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_new_refresh_discovery_value_is_acted_on_once() {
        let r = DiscoveryRefreshes::default();
        assert!(!r.take("as/ns/a", None));
        assert!(!r.take("as/ns/a", Some("")));
        assert!(r.take("as/ns/a", Some("2026-12-03T10:00:00Z")));
        assert!(!r.take("as/ns/a", Some("2026-12-03T10:00:00Z")));
        assert!(
            r.take("as/ns/b", Some("2026-12-03T10:00:00Z")),
            "per object"
        );
        assert!(r.take("as/ns/a", Some("2026-12-03T10:05:00Z")));
    }
}
