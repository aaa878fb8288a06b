//! What the AuthorizationServer controllers resolved (CA bundle, discovery document, preflight),
//! published for the TppClient reconciles: an AS is resolved once per AS reconcile, not once
//! per client. A client whose AS is not Ready (not yet resolved, failed, or resolved for an
//! older generation) waits; it is woken when the AS is published Ready.
//!
//! Contract: in memory, no I/O. Looking up and registering as a waiter is one step under the
//! index's lock, as is publishing and draining the waiters, so no wake-up is lost between them.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::broadcast;

use super::server::ResolvedServer;
use crate::{crd::TppClient, reason::Reason};

/// The last resolution of one AS.
#[derive(Clone)]
pub enum Resolution {
    /// Discovery and preflight passed: the AS to use.
    Ready(Arc<ResolvedServer>),
    /// It failed: why (the AS's Ready reason and message).
    NotReady {
        /// The AS's Ready reason.
        reason: Reason,
        /// The AS's Ready message.
        message: String,
    },
}

/// One published resolution, for one generation of the AS's spec.
#[derive(Clone)]
struct Entry {
    generation: Option<i64>,
    resolution: Resolution,
}

/// What a TppClient finds for its AS.
pub enum Lookup {
    /// The AS is Ready at the generation the client sees.
    Ready(Arc<ResolvedServer>),
    /// Not Ready: why, in a sentence for the client's condition. The client is woken when the
    /// AS is published Ready.
    Waiting(String),
}

/// The published resolutions, by AS key (`as/<namespace>/<name>`, `cas/<name>`).
pub struct ServerIndex {
    inner: Mutex<Inner>,
    wake: broadcast::Sender<ObjectRef<TppClient>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    waiting: HashMap<String, HashSet<ObjectRef<TppClient>>>,
    /// The last Ready resolution of each AS, whatever was published after it: what a
    /// deregistration uses once the AS object itself is gone (a namespace being deleted).
    last_ready: HashMap<String, Arc<ResolvedServer>>,
}

impl Default for ServerIndex {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            wake: broadcast::channel(4_096).0,
        }
    }
}

impl ServerIndex {
    /// Publish the resolution of the AS `key` at `generation`; wakes the clients waiting for it
    /// when it is Ready.
    pub fn publish(&self, key: &str, generation: Option<i64>, resolution: Resolution) {
        let ready = matches!(resolution, Resolution::Ready(_));
        let woken = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Resolution::Ready(server) = &resolution {
                inner.last_ready.insert(key.to_owned(), server.clone());
            }
            inner.entries.insert(
                key.to_owned(),
                Entry {
                    generation,
                    resolution,
                },
            );
            if ready {
                inner.waiting.remove(key).unwrap_or_default()
            } else {
                HashSet::new()
            }
        };
        for client in woken {
            // No receiver (no controller running, e.g. in tests) loses nothing: the client's
            // fallback requeue still comes.
            let _ = self.wake.send(client);
        }
    }

    /// The resolution of `key` for the AS object at `generation`; when it is not Ready,
    /// `client` is registered to be woken once it is.
    pub fn lookup(
        &self,
        key: &str,
        name: &str,
        generation: Option<i64>,
        client: ObjectRef<TppClient>,
    ) -> Lookup {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = match inner.entries.get(key) {
            Some(Entry {
                generation: g,
                resolution: Resolution::Ready(server),
            }) if *g == generation => return Lookup::Ready(server.clone()),
            Some(Entry {
                generation: g,
                resolution: Resolution::NotReady { reason, message },
            }) if *g == generation => format!(
                "waiting for AuthorizationServer {name:?} to become Ready: {reason}: {message}"
            ),
            Some(_) => format!(
                "waiting for AuthorizationServer {name:?} to be resolved at its current generation"
            ),
            None => format!("waiting for AuthorizationServer {name:?} to be resolved"),
        };
        inner
            .waiting
            .entry(key.to_owned())
            .or_default()
            .insert(client);
        Lookup::Waiting(waiting)
    }

    /// The last Ready resolution of the AS `key`, of any generation, even if the AS failed or
    /// was deleted since (in memory: gone after a restart).
    pub fn last_ready(&self, key: &str) -> Option<Arc<ResolvedServer>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_ready
            .get(key)
            .cloned()
    }

    /// The clients to reconcile because their AS became Ready.
    pub fn woken(&self) -> broadcast::Receiver<ObjectRef<TppClient>> {
        self.wake.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{ProviderMetadata, TransportConfig};

    fn server() -> Arc<ResolvedServer> {
        let spec = serde_json::from_value(serde_json::json!({"issuer": "https://as.test"}))
            .unwrap_or_else(|e| panic!("a valid spec: {e}"));
        Arc::new(ResolvedServer {
            spec,
            as_key: "as/ns/bank".into(),
            ca_pem: String::new(),
            transport: TransportConfig::new(Vec::new()),
            meta: Arc::new(ProviderMetadata::default()),
        })
    }

    fn client(name: &str) -> ObjectRef<TppClient> {
        ObjectRef::new(name).within("ns")
    }

    fn waiting(lookup: Lookup) -> Option<String> {
        match lookup {
            Lookup::Waiting(message) => Some(message),
            Lookup::Ready(_) => None,
        }
    }

    #[test]
    fn a_client_waits_for_an_authorization_server_not_yet_resolved() {
        let index = ServerIndex::default();
        let message = waiting(index.lookup("as/ns/bank", "bank", Some(1), client("a")));
        assert!(message.is_some_and(|m| m.contains("\"bank\" to be resolved")));
    }

    #[test]
    fn a_ready_resolution_of_the_same_generation_is_used() {
        let index = ServerIndex::default();
        index.publish("as/ns/bank", Some(1), Resolution::Ready(server()));
        assert!(matches!(
            index.lookup("as/ns/bank", "bank", Some(1), client("a")),
            Lookup::Ready(_)
        ));
    }

    #[test]
    fn a_resolution_of_an_older_generation_is_not_used() {
        let index = ServerIndex::default();
        index.publish("as/ns/bank", Some(1), Resolution::Ready(server()));
        let message = waiting(index.lookup("as/ns/bank", "bank", Some(2), client("a")));
        assert!(message.is_some_and(|m| m.contains("current generation")));
    }

    #[test]
    fn a_failed_resolution_names_the_authorization_servers_reason() {
        let index = ServerIndex::default();
        index.publish(
            "as/ns/bank",
            Some(1),
            Resolution::NotReady {
                reason: Reason::PreflightFailed,
                message: "no PAR".into(),
            },
        );
        let message = waiting(index.lookup("as/ns/bank", "bank", Some(1), client("a")));
        assert!(message.is_some_and(|m| m.contains("PreflightFailed: no PAR")));
    }

    #[test]
    fn the_last_ready_resolution_outlives_a_later_failure() {
        let index = ServerIndex::default();
        assert!(index.last_ready("as/ns/bank").is_none());
        index.publish("as/ns/bank", Some(1), Resolution::Ready(server()));
        index.publish(
            "as/ns/bank",
            Some(2),
            Resolution::NotReady {
                reason: Reason::DiscoveryFailed,
                message: "down".into(),
            },
        );
        assert!(index.last_ready("as/ns/bank").is_some());
        assert!(index.last_ready("as/ns/other").is_none());
    }

    #[test]
    fn waiting_clients_are_woken_once_when_their_server_becomes_ready() {
        let index = ServerIndex::default();
        let mut woken = index.woken();
        let _ = index.lookup("as/ns/bank", "bank", Some(1), client("a"));
        let _ = index.lookup("as/ns/bank", "bank", Some(1), client("a"));
        let _ = index.lookup("as/ns/other", "other", Some(1), client("b"));
        index.publish(
            "as/ns/bank",
            Some(1),
            Resolution::NotReady {
                reason: Reason::DiscoveryFailed,
                message: "down".into(),
            },
        );
        assert!(woken.try_recv().is_err(), "a failure wakes nobody");
        index.publish("as/ns/bank", Some(1), Resolution::Ready(server()));
        assert_eq!(woken.try_recv().ok(), Some(client("a")));
        assert!(
            woken.try_recv().is_err(),
            "each waiter once, only of that server"
        );
        index.publish("as/ns/bank", Some(1), Resolution::Ready(server()));
        assert!(woken.try_recv().is_err(), "no waiter is woken twice");
    }
}
