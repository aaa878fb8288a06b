//! Watches that decode each object on its own. kube-runtime decodes a LIST page as a whole:
//! one object the API server accepted but this build cannot read (a value a newer CRD allows,
//! a bound the schema missed) would fail every relist, and from the next restart, failover or
//! relist no client would be reconciled again (docs/security.md § Hostile input). Here the
//! objects arrive as raw JSON and are decoded one by one: one that does not decode is reported
//! (a log line and a Warning event `InvalidSpec` on it, saying why) and left out; the others
//! carry on.
//!
//! What this cannot do for a left-out object: reconcile it. If it carries the operator's
//! finalizer and is deleted, its deletion waits until its value is fixed or the finalizer is
//! removed by hand; the Warning says so (docs/troubleshooting.md § InvalidSpec).

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Resource,
    api::DynamicObject,
    runtime::{
        events::{Event as KubeEvent, EventType},
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;

use crate::event_recorder::EventRecorder;
use crate::reason::Reason;

/// How an object that does not decode is reported.
pub type Report = std::sync::Arc<dyn Fn(&DynamicObject, &serde_json::Error) + Send + Sync>;

/// A raw watch of `K`'s resource, for [`decoded`].
pub fn raw_api<K>(client: kube::Client, namespace: Option<&str>) -> Api<DynamicObject>
where
    K: Resource<DynamicType = ()>,
{
    let ar = kube::api::ApiResource::erase::<K>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// The events of a watch of `api` with each object decoded as `K` on its own; objects that do
/// not decode are passed to `report` and left out.
pub fn decoded<K>(
    api: Api<DynamicObject>,
    config: watcher::Config,
    report: Report,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: DeserializeOwned + Send + 'static,
{
    decode_events(watcher::watcher(api, config), report)
}

/// [`decoded`] over any stream of raw events (the unit under test).
pub fn decode_events<K, S>(
    events: S,
    report: Report,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send + 'static,
{
    events.filter_map(move |ev| {
        let out = match ev {
            Ok(Event::Apply(o)) => decode(&o, &report).map(|k| Ok(Event::Apply(k))),
            Ok(Event::InitApply(o)) => decode(&o, &report).map(|k| Ok(Event::InitApply(k))),
            // A deleted object that never decoded was never cached: nothing to drop.
            Ok(Event::Delete(o)) => decode(&o, &report).map(|k| Ok(Event::Delete(k))),
            Ok(Event::Init) => Some(Ok(Event::Init)),
            Ok(Event::InitDone) => Some(Ok(Event::InitDone)),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}

fn decode<K: DeserializeOwned>(o: &DynamicObject, report: &Report) -> Option<K> {
    match serde_json::to_value(o).and_then(serde_json::from_value) {
        Ok(k) => Some(k),
        Err(e) => {
            report(o, &e);
            None
        }
    }
}

/// The sentence a report carries: the decoder's own words (a field path and what it expected;
/// values of a tenant's own spec, never a Secret's), bounded.
pub fn why(error: &serde_json::Error) -> String {
    let mut text = error.to_string();
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Reports through a log line and a Warning event `InvalidSpec` on the object, published in
/// the background (a report never blocks the watch). The recorder aggregates repeats into one
/// event series.
pub fn warn_with(recorder: EventRecorder, kind: &'static str, api_version: &'static str) -> Report {
    std::sync::Arc::new(move |o: &DynamicObject, e: &serde_json::Error| {
        let reason = why(e);
        let name = o.metadata.name.clone().unwrap_or_default();
        let namespace = o.metadata.namespace.clone();
        tracing::warn!(
            kind,
            namespace = namespace.as_deref().unwrap_or(""),
            name = %name,
            error = %reason,
            "left out an object this operator cannot read; the others carry on"
        );
        let reference = ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
            name: Some(name),
            namespace,
            uid: o.metadata.uid.clone(),
            resource_version: o.metadata.resource_version.clone(),
            ..Default::default()
        };
        let event = KubeEvent {
            type_: EventType::Warning,
            reason: Reason::InvalidSpec.as_str().to_owned(),
            note: Some(format!(
                "this operator cannot read the object, so it is not reconciled (other objects are): {reason}. \
                 Fix the value (or upgrade the operator to the CRD's version); a deletion with the \
                 operator's finalizer waits until then"
            )),
            action: "Decode".into(),
            secondary: None,
        };
        let recorder = recorder.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(error = %e, "publishing an event failed");
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::crd::TppClient;

    fn raw(name: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .unwrap_or_else(|e| panic!("a DynamicObject: {e}"))
    }

    fn good(name: &str) -> DynamicObject {
        raw(
            name,
            json!({"authorizationServerRef": {"name": "as"}, "registration": {"mode": "Static", "clientId": "x"}, "tokens": [{"name": "t", "scope": "s"}]}),
        )
    }

    fn bad(name: &str) -> DynamicObject {
        raw(
            name,
            json!({"authorizationServerRef": {"name": "as"}, "registration": {"mode": "FromTheFuture"}, "tokens": [{"name": "t", "scope": "s"}]}),
        )
    }

    fn name(ev: &Event<TppClient>) -> String {
        match ev {
            Event::Apply(c) | Event::InitApply(c) | Event::Delete(c) => {
                c.metadata.name.clone().unwrap_or_default()
            }
            Event::Init => "<init>".into(),
            Event::InitDone => "<done>".into(),
        }
    }

    #[tokio::test]
    async fn an_object_that_does_not_decode_is_reported_and_the_others_of_its_list_carry_on() {
        let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let log = seen.clone();
        let report: Report = Arc::new(move |o, e| {
            log.lock()
                .unwrap()
                .push((o.metadata.name.clone().unwrap_or_default(), why(e)))
        });
        let events = futures::stream::iter(vec![
            Event::Init,
            Event::InitApply(good("a")),
            Event::InitApply(bad("hostile")),
            Event::InitApply(good("b")),
            Event::InitDone,
            Event::Apply(bad("hostile")),
            Event::Apply(good("c")),
            Event::Delete(bad("hostile")),
        ])
        .map(Ok);
        let out: Vec<String> = decode_events::<TppClient, _>(events, report)
            .map(|r| name(&r.unwrap()))
            .collect()
            .await;
        assert_eq!(out, ["<init>", "a", "b", "<done>", "c"]);
        let reports = seen.lock().unwrap().clone();
        assert_eq!(reports.len(), 3, "each event of the bad object is reported");
        assert!(reports.iter().all(|(n, _)| n == "hostile"));
        assert!(
            reports[0].1.contains("FromTheFuture"),
            "the report says what could not be read: {}",
            reports[0].1
        );
    }

    #[test]
    fn a_report_is_bounded_in_length() {
        let long = "x".repeat(10_000);
        let e = serde_json::from_value::<TppClient>(
            json!({"metadata": {}, "spec": {"registration": {"mode": long}}}),
        )
        .expect_err("an unknown mode");
        assert!(why(&e).chars().count() <= 301);
    }
}
