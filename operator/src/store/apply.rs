//! Reads and server-side applies of our objects, under one field manager. Reads of our own
//! Secrets come from the [`SecretCache`] when it holds them. The request budget
//! (`--kube-qps`) is in the client itself ([`crate::kube_budget`]). Kubernetes I/O.

use std::{any::Any, sync::Arc};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    cache::SecretCache,
    layout::{self, FIELD_MANAGER},
    ownership::{NameConflict, Writer},
};

/// Why a write of one of a client's objects did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The API server refused or failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// An object with that name belongs to someone else: nothing was written.
    #[error(transparent)]
    NameConflict(#[from] NameConflict),
}

/// Access to the cluster.
#[derive(Clone)]
pub struct Store {
    client: Client,
    cache: Arc<SecretCache>,
}

impl Store {
    /// A store over `client` (already rate limited).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Arc::new(SecretCache::default()),
        }
    }

    /// The kube client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The cache of our Secrets (the Secret watch invalidates it).
    pub fn cache(&self) -> &SecretCache {
        &self.cache
    }

    /// The cache, shared (a standby's Secret watch fills it: `crate::reconcile::standby`).
    pub fn cache_handle(&self) -> Arc<SecretCache> {
        self.cache.clone()
    }

    /// A Secret of someone else's (a user's certificate, an initial access token, a CA
    /// bundle), `None` when absent: always a GET (their changes are not watched).
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    /// One of our own Secrets (`<name>-keys`, `-registration`, `-credentials`), `None` when
    /// absent: from the cache when it holds it or knows it absent, else a GET.
    pub async fn own_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, kube::Error> {
        if let Some(s) = self.cache.get(namespace, name) {
            return Ok(Some(s));
        }
        if self.cache.known_absent(namespace, name) {
            return Ok(None);
        }
        let got = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?;
        if let Some(s) = &got {
            self.cache.remember(namespace, s);
        }
        // An unlabelled Secret of that name is someone else's, not our state (writing it is a
        // NameConflict: see `apply`).
        Ok(got.filter(|s| layout::is_managed(&s.metadata)))
    }

    /// The part of a name claim that needs the API: one GET for each of `names` (those
    /// [`Self::claim_cached`] could not vouch for; a new client's first turn). A Secret of that
    /// name that is someone else's fails it; an absent name is remembered as checked.
    pub async fn claim_by_get(
        &self,
        namespace: &str,
        writer: &Writer,
        names: &[String],
    ) -> Result<(), WriteError> {
        for name in names {
            match Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?
            {
                None => self.cache.absent_by_get(namespace, name),
                Some(s) => {
                    writer.check("Secret", Some(&s.metadata))?;
                    self.cache.remember(namespace, &s);
                }
            }
        }
        Ok(())
    }

    /// Check, before a reconcile does anything, that none of `names` (Secrets the client
    /// writes) belongs to someone else, so that no registration or token request is made whose
    /// answer could not be stored — the part the cache can answer, without a request: a name
    /// whose cached Secret belongs to someone else fails it; the names the cache cannot vouch
    /// for (neither cached nor found free by an earlier GET) are returned, for
    /// [`Self::claim_by_get`].
    pub fn claim_cached<'n>(
        &self,
        namespace: &str,
        writer: &Writer,
        names: &'n [String],
    ) -> Result<Vec<&'n String>, WriteError> {
        let mut unknown = Vec::new();
        for name in names {
            match self.cache.check_writer(namespace, name, writer) {
                Some(verdict) => verdict?,
                None if self.cache.checked_absent(namespace, name) => {}
                None => unknown.push(name),
            }
        }
        Ok(unknown)
    }

    /// Fill the Secret cache of `scope` (a namespace, `None` for all) from a paged LIST of our
    /// Secrets: at start, one request per 250 Secrets instead of three GETs per client.
    pub async fn warm(&self, scope: Option<&str>) -> Result<usize, kube::Error> {
        let count = self
            .pages(
                scope,
                250,
                |api, params| async move { api.list(&params).await },
                |items| self.cache.fill_page(items),
            )
            .await?;
        self.cache.listed(scope);
        Ok(count)
    }

    /// Check the cache of `scope` against a paged LIST of our Secrets' metadata, as a relist of
    /// the watch would: every entry of another resourceVersion and every Secret not listed is
    /// dropped, every listed name is known. What a standby filled from its watch, which may lag,
    /// is then exact as of this LIST before the new leader's first reconcile reads it
    /// ([`crate::reconcile::standby`]). A failure half-way clears the scope.
    pub async fn confirm(&self, scope: Option<&str>) -> Result<usize, kube::Error> {
        self.cache.relist_started(scope);
        let listed = self
            .pages(
                scope,
                500,
                |api, params| async move { api.list_metadata(&params).await },
                |items| {
                    self.cache
                        .listed_page(scope, items.into_iter().map(|o| o.metadata))
                },
            )
            .await;
        match listed {
            Ok(count) => {
                self.cache.relist_done(scope);
                Ok(count)
            }
            Err(e) => {
                self.cache.clear_scope(scope);
                Err(e)
            }
        }
    }

    /// Every page of a paged LIST of our Secrets in `scope`, `limit` per page, handed to `page`
    /// as it comes; the number of items listed.
    async fn pages<T, Fut>(
        &self,
        scope: Option<&str>,
        limit: u32,
        list: impl Fn(Api<Secret>, kube::api::ListParams) -> Fut,
        mut page: impl FnMut(Vec<T>),
    ) -> Result<usize, kube::Error>
    where
        T: Clone,
        Fut: std::future::Future<Output = Result<kube::core::ObjectList<T>, kube::Error>>,
    {
        let api = match scope {
            Some(ns) => Api::<Secret>::namespaced(self.client.clone(), ns),
            None => Api::<Secret>::all(self.client.clone()),
        };
        let mut params = kube::api::ListParams::default()
            .labels(&super::layout::managed_selector())
            .limit(limit);
        let mut count = 0;
        loop {
            let list = list(api.clone(), params.clone()).await?;
            let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
            count += list.items.len();
            page(list.items);
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(count),
            }
        }
    }

    /// GET a ConfigMap, `None` when absent.
    pub async fn configmap(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, kube::Error> {
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }

    /// Server-side apply `obj` (forced: we are the only writer of our objects), after checking
    /// that an existing object of that name is ours ([`Writer::may_write`]): from the Secret
    /// cache when it holds the object, else one GET (a ConfigMap, a Secret not cached yet — a
    /// Secret the watch says is absent may still exist unlabelled). Nothing is written to
    /// someone else's object: [`WriteError::NameConflict`].
    pub async fn apply<K>(&self, namespace: &str, obj: &K) -> Result<K, WriteError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug
            + 'static,
        <K as kube::Resource>::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        let writer = Writer::of(obj.meta());
        let kind = if (obj as &dyn Any).is::<Secret>() {
            "Secret"
        } else {
            "ConfigMap"
        };
        match (kind == "Secret")
            .then(|| self.cache.check_writer(namespace, &name, &writer))
            .flatten()
        {
            Some(verdict) => verdict?,
            None => {
                let existing = api.get_opt(&name).await?;
                writer.check(kind, existing.as_ref().map(|o| o.meta()))?;
            }
        }
        let written = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await;
        match &written {
            Ok(w) => {
                if let Some(secret) = (w as &dyn Any).downcast_ref::<Secret>() {
                    self.cache.remember(namespace, secret);
                }
            }
            // The write may or may not have landed: read it again next time.
            Err(_) => self.cache.forget(namespace, &name),
        }
        Ok(written?)
    }

    /// Server-side apply a status patch on a namespaced resource.
    pub async fn apply_status<K>(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::<K>::namespaced(self.client.clone(), namespace)
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
    }
}
