//! A warm standby: while a replica waits for the Lease, it keeps what the leader needs at a
//! takeover current, so that its first due refresh comes within seconds of the Lease, not after
//! relisting every TppClient and Secret (issue 16, M10; BENCHMARKS.md).
//!
//! Per watched scope (a namespace, or the cluster) a standby runs:
//! - the TppClient watch, decoded object by object ([`super::decode`]) into the reflector store
//!   the controller will use. At a takeover the watch itself is handed over, not restarted: the
//!   controller first gets every cached TppClient, then the watch's later events;
//! - a watch of our Secrets (full objects), which fills the Secret cache as a GET would
//!   ([`crate::store::cache`]).
//!
//! A standby writes nothing: a TppClient it cannot decode is logged, and the Warning event is
//! left to the leader, which reports it from its own watch. At a takeover the Secret watch is
//! stopped and the cache is checked against one metadata LIST ([`crate::store::Store::confirm`])
//! before the first reconcile: the watch may lag behind the last writes of the replica that held
//! the Lease, and a registration Secret the cache missed would look absent. No I/O of its own
//! beyond the watches.

use std::sync::Arc;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    runtime::{
        WatchStreamExt, reflector,
        watcher::{self, Event},
    },
};
use tokio::{sync::watch, task::JoinHandle};

use super::{Context, decode};
use crate::{crd::TppClient, store::cache::SecretCache, store::layout::managed_selector};

/// The events of a scope's TppClient watch, already reflected into its store.
pub type ClientEvents = BoxStream<'static, Result<Event<TppClient>, watcher::Error>>;

/// What a standby hands the controllers of one scope at a takeover.
pub struct Warm {
    /// The namespace, `None` for all.
    pub scope: Option<String>,
    /// The TppClient store the watch below fills.
    pub reader: reflector::Store<TppClient>,
    /// The watch, to be polled on by the controller.
    pub events: ClientEvents,
}

struct Scope {
    scope: Option<String>,
    reader: reflector::Store<TppClient>,
    clients: JoinHandle<ClientEvents>,
    secrets: JoinHandle<()>,
}

/// The running watches of a standby (see the module docs).
pub struct Standby {
    scopes: Vec<Scope>,
    stop: watch::Sender<bool>,
}

impl Standby {
    /// Starts the watches of every scope of `ctx.config.namespaces`.
    pub fn start(ctx: &Arc<Context>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let scopes = scopes(ctx)
            .into_iter()
            .map(|scope| {
                let (reader, writer) = reflector::store();
                let events = client_events(ctx, scope.as_deref(), writer, log_only());
                Scope {
                    clients: tokio::spawn(drive_until(events, stopped.clone(), log_client_error)),
                    secrets: tokio::spawn(fill_secret_cache(
                        secret_events(ctx, scope.as_deref()),
                        ctx.store.cache_handle(),
                        scope.clone(),
                        stopped.clone(),
                    )),
                    scope,
                    reader,
                }
            })
            .collect();
        Self { scopes, stop }
    }

    /// Stops the watches and hands over the TppClient watches. A scope whose task failed (it
    /// panicked) is left out: its controller starts cold.
    pub async fn take(self) -> Vec<Warm> {
        let _ = self.stop.send(true);
        let mut warm = Vec::with_capacity(self.scopes.len());
        for s in self.scopes {
            let _ = s.secrets.await;
            if let Ok(events) = s.clients.await {
                warm.push(Warm {
                    scope: s.scope,
                    reader: s.reader,
                    events,
                });
            }
        }
        warm
    }
}

/// The scopes the controllers watch: each namespace of `--namespaces`, or the cluster.
pub fn scopes(ctx: &Context) -> Vec<Option<String>> {
    if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    }
}

/// The TppClient watch of `scope`, each object decoded on its own, reflected into `writer`.
pub fn client_events(
    ctx: &Context,
    scope: Option<&str>,
    writer: reflector::store::Writer<TppClient>,
    report: decode::Report,
) -> ClientEvents {
    let api = decode::raw_api::<TppClient>(ctx.client.clone(), scope);
    decode::decoded::<TppClient>(api, ctx.config.watcher(), report)
        .default_backoff()
        .modify(super::slim_client)
        .reflect(writer)
        .boxed()
}

/// Logs an object that does not decode; a standby publishes no event (the leader does).
fn log_only() -> decode::Report {
    Arc::new(|o, e| {
        tracing::warn!(
            kind = "TppClient",
            namespace = o.metadata.namespace.as_deref().unwrap_or(""),
            name = o.metadata.name.as_deref().unwrap_or(""),
            error = %decode::why(e),
            "left out an object this operator cannot read (standing by: the leader reports it)"
        );
    })
}

/// Polls `events`, handing each item to `each`, until `stop` turns true (or the stream ends),
/// then returns the stream: polling a watch stream again later resumes it where it was.
async fn drive_until<S, T>(
    mut events: S,
    mut stop: watch::Receiver<bool>,
    mut each: impl FnMut(T),
) -> S
where
    S: futures::Stream<Item = T> + Unpin,
{
    loop {
        if *stop.borrow_and_update() {
            return events;
        }
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    return events;
                }
            }
            ev = events.next() => match ev {
                None => return events,
                Some(ev) => each(ev),
            },
        }
    }
}

/// Logs a watch error of the TppClient watch a standby drives (the watch retries by itself).
fn log_client_error(ev: Result<Event<TppClient>, watcher::Error>) {
    if let Err(e) = ev {
        tracing::debug!(error = %e, "standby TppClient watch");
    }
}

type SecretEvents = BoxStream<'static, Result<Event<Secret>, watcher::Error>>;

fn secret_events(ctx: &Context, scope: Option<&str>) -> SecretEvents {
    let api = match scope {
        Some(ns) => Api::<Secret>::namespaced(ctx.client.clone(), ns),
        None => Api::<Secret>::all(ctx.client.clone()),
    };
    watcher::watcher(api, ctx.config.watcher().labels(&managed_selector()))
        .default_backoff()
        .boxed()
}

/// Applies the events of a watch of our Secrets to `cache` until `stop` turns true.
async fn fill_secret_cache(
    events: SecretEvents,
    cache: Arc<SecretCache>,
    scope: Option<String>,
    stop: watch::Receiver<bool>,
) {
    // The watch ends here: a takeover checks the cache by a LIST instead (module docs).
    let stopped = drive_until(events, stop, |ev| match ev {
        Err(e) => tracing::debug!(error = %e, "standby Secret watch"),
        Ok(ev) => {
            let listed = matches!(ev, Event::InitDone);
            apply_secret_event(&cache, scope.as_deref(), ev);
            if listed {
                tracing::info!(
                    namespace = scope.as_deref().unwrap_or("*"),
                    cached = cache.len(),
                    "standing by with the Secret cache listed"
                );
            }
        }
    })
    .await;
    drop(stopped);
}

/// One event of a watch of our Secrets, applied to the cache as a GET or a relist would be.
pub fn apply_secret_event(cache: &SecretCache, scope: Option<&str>, ev: Event<Secret>) {
    let at = |s: &Secret| {
        (
            s.namespace().unwrap_or_default(),
            s.name_any(),
            s.resource_version().unwrap_or_default(),
        )
    };
    match ev {
        Event::Init => cache.relist_started(scope),
        Event::InitApply(s) => {
            let (ns, name, rv) = at(&s);
            cache.listed_one(scope, &ns, &name, &rv);
            cache.remember(&ns, &s);
        }
        Event::InitDone => cache.relist_done(scope),
        Event::Apply(s) => {
            let (ns, name, rv) = at(&s);
            cache.seen(&ns, &name, &rv);
            cache.remember(&ns, &s);
        }
        Event::Delete(s) => {
            let (ns, name, _) = at(&s);
            cache.gone(&ns, &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;
    use crate::store::layout;

    fn secret(name: &str, rv: &str, value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                labels: Some(layout::labels("c", "registration", None)),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "client_id".to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn value(cache: &SecretCache, name: &str) -> Option<Vec<u8>> {
        cache
            .get("ns", name)
            .and_then(|s| s.data.as_ref()?.get("client_id").map(|v| v.0.clone()))
    }

    #[test]
    fn a_standbys_secret_watch_fills_the_cache_and_keeps_it_current() {
        let cache = SecretCache::default();
        let scope = Some("ns");
        for ev in [
            Event::Init,
            Event::InitApply(secret("a-registration", "1", "a1")),
            Event::InitApply(secret("b-registration", "2", "b1")),
            Event::InitDone,
            Event::Apply(secret("a-registration", "3", "a2")),
            Event::Delete(secret("b-registration", "2", "b1")),
        ] {
            apply_secret_event(&cache, scope, ev);
        }
        assert!(cache.is_listed(scope));
        assert_eq!(value(&cache, "a-registration"), Some(b"a2".to_vec()));
        assert_eq!(value(&cache, "b-registration"), None);
        assert!(
            cache.known_absent("ns", "b-registration"),
            "deleted: known absent"
        );
        assert!(
            cache.known_absent("ns", "c-registration"),
            "never listed after a complete list: known absent"
        );
    }

    #[test]
    fn before_the_standbys_list_completes_no_name_is_taken_for_absent() {
        let cache = SecretCache::default();
        apply_secret_event(&cache, None, Event::Init);
        apply_secret_event(
            &cache,
            None,
            Event::InitApply(secret("a-registration", "1", "a1")),
        );
        assert!(!cache.is_listed(None));
        assert!(!cache.known_absent("ns", "c-registration"));
    }

    #[test]
    fn a_relist_that_misses_a_secret_drops_it_and_clearing_a_scope_forgets_the_list() {
        let cache = SecretCache::default();
        let scope = Some("ns");
        for ev in [
            Event::Init,
            Event::InitApply(secret("a-registration", "1", "a1")),
            Event::InitDone,
            Event::Init,
            Event::InitDone,
        ] {
            apply_secret_event(&cache, scope, ev);
        }
        assert_eq!(value(&cache, "a-registration"), None);
        apply_secret_event(
            &cache,
            scope,
            Event::Apply(secret("a-registration", "5", "a5")),
        );
        cache.clear_scope(scope);
        assert!(!cache.is_listed(scope));
        assert_eq!(value(&cache, "a-registration"), None);
        assert!(!cache.known_absent("ns", "c-registration"));
    }

    #[tokio::test]
    async fn a_watch_driven_by_the_standby_is_handed_back_and_resumes_where_it_was() {
        let (tx, rx) =
            futures::channel::mpsc::unbounded::<Result<Event<TppClient>, watcher::Error>>();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(drive_until(rx.boxed(), stopped, log_client_error));
        tx.unbounded_send(Ok(Event::InitDone)).ok();
        tx.unbounded_send(Ok(Event::InitDone)).ok();
        let _ = stop.send(true);
        let mut events = task.await.expect("the driver returns the stream");
        tx.unbounded_send(Ok(Event::Init)).ok();
        // What the driver had not polled is still there, and the later event follows it.
        let mut seen = vec![];
        while let Some(Some(ev)) = futures::FutureExt::now_or_never(events.next()) {
            seen.push(matches!(ev, Ok(Event::Init)));
        }
        assert_eq!(
            seen.last(),
            Some(&true),
            "the event sent after the hand-over arrives"
        );
        assert!(seen.len() <= 3, "{} events after the hand-over", seen.len());
    }
}
