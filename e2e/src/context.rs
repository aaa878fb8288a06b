//! Per-test context: its own labelled namespace with a random suffix, and a dump of our objects,
//! events and process logs when the test fails. Does Kubernetes I/O.

use std::{future::Future, panic::AssertUnwindSafe};

use anyhow::Result;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};

use crate::control_plane::{ControlPlane, shared};

/// Label put on every namespace the e2e tests create.
pub const E2E_LABEL: &str = "tpp.dev/e2e";

/// What a test gets: the shared control plane, an admin client and its own namespace.
pub struct TestContext {
    /// The shared control plane.
    pub cp: &'static ControlPlane,
    /// An admin client (built on this test's runtime).
    pub client: Client,
    /// This test's namespace.
    pub namespace: String,
    /// Extra text printed if the test fails (e.g. operator and AS logs), gathered lazily.
    pub extra_logs: std::sync::Mutex<Vec<Box<dyn Fn() -> String + Send>>>,
    /// Operator logs the leak audit reads when the test succeeds ([`crate::leak_audit`]).
    pub audited_logs: std::sync::Mutex<Vec<std::path::PathBuf>>,
    /// Texts of the operator's `/metrics` the test scraped ([`Self::audit_metrics`]), searched
    /// by the leak audit.
    pub audited_metrics: std::sync::Mutex<Vec<String>>,
    /// Namespaces the test created beside its own ([`Self::create_namespace`]), each with the
    /// watch of its Secrets: the leak audit covers them too.
    pub extra_namespaces: std::sync::Mutex<Vec<(String, crate::leak_audit::SecretWatch)>>,
}

impl TestContext {
    /// A namespaced API in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Audit this operator log for leaked secrets when the test succeeds.
    pub fn audit_log(&self, path: std::path::PathBuf) {
        if let Ok(mut v) = self.audited_logs.lock() {
            v.push(path);
        }
    }

    /// Create another namespace for this test, `<namespace>-<suffix>`, labelled like its own,
    /// and put it under the leak audit: its Secrets are watched from now until the test ends,
    /// and its events and statuses are searched with the test's own (docs/security.md § Leak
    /// audit).
    pub async fn create_namespace(&self, suffix: &str) -> Result<String> {
        let name = format!("{}-{suffix}", self.namespace);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(E2E_LABEL.to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let watch = crate::leak_audit::watch_secrets(self.client.clone(), &name).await;
        if let Ok(mut v) = self.extra_namespaces.lock() {
            v.push((name.clone(), watch));
        }
        Ok(name)
    }

    /// Search this `/metrics` text for leaked secrets too when the test succeeds (scrape it
    /// before the operator stops: the audit runs after the test).
    pub fn audit_metrics(&self, text: String) {
        if let Ok(mut v) = self.audited_metrics.lock() {
            v.push(text);
        }
    }

    /// Print `f()` too if the test fails (e.g. a process's log tail).
    pub fn on_failure_print(&self, f: impl Fn() -> String + Send + 'static) {
        if let Ok(mut v) = self.extra_logs.lock() {
            v.push(Box::new(f));
        }
    }
}

/// Run `test` in a fresh namespace named `<prefix>-<random>`; on failure (error or panic) dump
/// the namespace's objects, events and the control plane's logs, then fail.
pub async fn with_namespace<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(std::sync::Arc<TestContext>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let cp = match shared().await {
        Ok(cp) => cp,
        Err(e) => panic!("could not start the control plane: {e:#}"),
    };
    with_namespace_on(cp, prefix, test).await
}

/// [`with_namespace`] on a given control plane (e.g. the node tier's).
pub async fn with_namespace_on<F, Fut>(cp: &'static ControlPlane, prefix: &str, test: F)
where
    F: FnOnce(std::sync::Arc<TestContext>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let client = cp.admin_client().await.expect("admin client");
    let namespace = format!("{prefix}-{:08x}", rand::random::<u32>());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some([(E2E_LABEL.to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
    let ctx = std::sync::Arc::new(TestContext {
        cp,
        client,
        namespace,
        extra_logs: Default::default(),
        audited_logs: Default::default(),
        audited_metrics: Default::default(),
        extra_namespaces: Default::default(),
    });
    // Every value any version of the namespace's Secrets holds during the test is audited,
    // not only the last ones (docs/security.md § Leak audit).
    let secret_watch = crate::leak_audit::watch_secrets(ctx.client.clone(), &ctx.namespace).await;
    let outcome = AssertUnwindSafe(test(ctx.clone())).catch_unwind().await;
    let mut seen = secret_watch.finish();
    let mut namespaces = vec![ctx.namespace.clone()];
    let extra = ctx
        .extra_namespaces
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for (ns, watch) in extra {
        seen.merge(watch.finish());
        namespaces.push(ns);
    }
    // A passing test must also pass the leak audit.
    let outcome = match outcome {
        Ok(Ok(())) => {
            let logs = ctx
                .audited_logs
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default();
            let metrics = ctx
                .audited_metrics
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default();
            let over_cap = seen.over_cap();
            match crate::leak_audit::audit(&ctx, &namespaces, seen, &logs, &metrics).await {
                Ok(n) => {
                    let unchecked = if over_cap > 0 {
                        format!(" ({over_cap} more over the cap not checked)")
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "leak audit of {}: {n} distinct secret values seen during the test{unchecked}, {} operator logs, {} metrics scrapes, events and statuses: 0 hits",
                        namespaces.join(", "),
                        logs.len(),
                        metrics.len()
                    );
                    crate::leak_audit::record_total(&namespaces.join(","), n);
                    Ok(Ok(()))
                }
                Err(e) => Ok(Err(e)),
            }
        }
        other => other,
    };
    let failure = match &outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(_) => Some("panicked".to_owned()),
    };
    if let Some(why) = failure {
        eprintln!("=== test in namespace {} failed: {why}", ctx.namespace);
        eprintln!("{}", dump_namespace(&ctx).await);
        if let Ok(extra) = ctx.extra_logs.lock() {
            for f in extra.iter() {
                eprintln!("{}", f());
            }
        }
        eprintln!("{}", cp.log_tails(3000));
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => panic!("{e:#}"),
            Ok(Ok(())) => unreachable!(),
        }
    }
}

/// Our objects with status, Secret names and data keys (never values), ConfigMaps and events.
pub async fn dump_namespace(ctx: &TestContext) -> String {
    let mut out = format!("----- objects in namespace {} -----\n", ctx.namespace);
    for kind in ["TppClient", "AuthorizationServer"] {
        let gvk = GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind);
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ar);
        if let Ok(list) = api.list(&ListParams::default()).await {
            for o in list {
                let status = o
                    .data
                    .get("status")
                    .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
                    .unwrap_or_default();
                let spec = o
                    .data
                    .get("spec")
                    .map(|s| serde_json::to_string(s).unwrap_or_default())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{kind}/{}\n  spec: {spec}\n  status: {status}\n",
                    o.name_any()
                ));
            }
        }
    }
    if let Ok(list) = ctx.api::<Secret>().list(&ListParams::default()).await {
        for s in list {
            let keys: Vec<_> = s
                .data
                .as_ref()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "Secret/{} type={:?} keys={keys:?}\n",
                s.name_any(),
                s.type_
            ));
        }
    }
    if let Ok(list) = ctx.api::<ConfigMap>().list(&ListParams::default()).await {
        for c in list {
            let keys: Vec<_> = c
                .data
                .as_ref()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            out.push_str(&format!("ConfigMap/{} keys={keys:?}\n", c.name_any()));
        }
    }
    if let Ok(list) = ctx.api::<Event>().list(&ListParams::default()).await {
        for e in list {
            out.push_str(&format!(
                "Event {} {} {}: {}\n",
                e.type_.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            ));
        }
    }
    out
}
