//! Reads and server-side applies of our objects, under one field manager and a client-side
//! request budget (`--kube-qps`). Kubernetes I/O.

use std::{num::NonZeroU32, sync::Arc};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::layout::FIELD_MANAGER;

/// Access to the cluster for one namespace, rate limited.
#[derive(Clone)]
pub struct Store {
    client: Client,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl Store {
    /// A store limited to `qps` requests per second with `burst`.
    pub fn new(client: Client, qps: f64, burst: u32) -> Self {
        let per_second = NonZeroU32::new(qps.max(1.0).round() as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Self { client, limiter: Arc::new(RateLimiter::direct(quota)) }
    }

    /// The kube client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn budget(&self) {
        self.limiter.until_ready().await;
    }

    /// GET a Secret, `None` when absent.
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        self.budget().await;
        Api::<Secret>::namespaced(self.client.clone(), namespace).get_opt(name).await
    }

    /// GET a ConfigMap, `None` when absent.
    pub async fn configmap(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, kube::Error> {
        self.budget().await;
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace).get_opt(name).await
    }

    /// Server-side apply `obj` (forced: we are the only writer of our objects).
    pub async fn apply<K>(&self, namespace: &str, obj: &K) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.budget().await;
        let name = obj.meta().name.clone().unwrap_or_default();
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj))
            .await
    }

    /// Server-side apply a status patch on a namespaced resource.
    pub async fn apply_status<K>(&self, namespace: &str, name: &str, patch: &serde_json::Value) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.budget().await;
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
            .await
    }
}
