//! Resolving a TppClient's authorization server: the AuthorizationServer or
//! ClusterAuthorizationServer object, the confused-deputy check, the CA bundle, and the
//! discovery document (cached) with the FAPI 2.0 preflight. Kubernetes and network I/O.

use std::{num::NonZeroU32, sync::Arc};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt};

use super::{context::Context, policy};
use crate::{
    crd::{
        AuthorizationServer, AuthorizationServerKind, AuthorizationServerSpec,
        ClusterAuthorizationServer, KeyRef, KeyRefKind, TppClient, condition::reasons,
    },
    error::Error,
    oauth::{
        AsClient, ClientIdentity, ProviderMetadata, RateLimit, Severity, TransportConfig, preflight,
    },
};

/// A usable authorization server.
pub struct ResolvedServer {
    /// Its spec.
    pub spec: AuthorizationServerSpec,
    /// Key for pools and limiters (kind/namespace/name).
    pub as_key: String,
    /// The PEM CA bundle.
    pub ca_pem: String,
    /// Transport settings (trust = the CA bundle only).
    pub transport: TransportConfig,
    /// The discovery document.
    pub meta: Arc<ProviderMetadata>,
}

impl ResolvedServer {
    /// The AS's shared rate limit.
    pub fn rate(&self) -> RateLimit {
        RateLimit {
            per_second: NonZeroU32::new(self.spec.rate_limit.requests_per_second)
                .unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(self.spec.rate_limit.burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// An HTTP client for this AS, with `identity` for mTLS.
    pub fn http(
        &self,
        ctx: &Context,
        identity: Option<&ClientIdentity>,
    ) -> Result<AsClient, crate::oauth::OauthError> {
        ctx.pool
            .client(&self.as_key, &self.transport, identity, Some(self.rate()))
    }

    /// The registration endpoint (override, else discovered).
    pub fn registration_endpoint(&self) -> Option<&str> {
        self.spec
            .registration
            .as_ref()
            .and_then(|r| r.endpoint.as_deref())
            .or(self.meta.registration_endpoint.as_deref())
    }
}

/// Fetch and check the server a TppClient refers to.
pub async fn resolve(
    client: &TppClient,
    namespace: &str,
    ctx: &Context,
) -> Result<ResolvedServer, Error> {
    let r = &client.spec.authorization_server_ref;
    let not_found = |what: String| Error::AuthorizationServer {
        reason: reasons::AUTHORIZATION_SERVER_NOT_FOUND,
        message: what,
    };
    let (spec, as_key, ref_namespace) = match r.kind {
        AuthorizationServerKind::AuthorizationServer => {
            let spec = match ctx.servers.namespaced(namespace, &r.name) {
                Some(cached) => cached.spec.clone(),
                None => {
                    let api: Api<AuthorizationServer> =
                        Api::namespaced(ctx.client.clone(), namespace);
                    api.get_opt(&r.name)
                        .await
                        .map_err(|source| Error::ReadObject {
                            what: format!("AuthorizationServer {}", r.name),
                            source,
                        })?
                        .ok_or_else(|| {
                            not_found(format!(
                                "AuthorizationServer {:?} not found in namespace {namespace:?}",
                                r.name
                            ))
                        })?
                        .spec
                }
            };
            (
                spec,
                format!("as/{namespace}/{}", r.name),
                namespace.to_owned(),
            )
        }
        AuthorizationServerKind::ClusterAuthorizationServer => {
            let server = match ctx.servers.cluster(&r.name) {
                Some(cached) => cached,
                None => {
                    let api: Api<ClusterAuthorizationServer> = Api::all(ctx.client.clone());
                    std::sync::Arc::new(
                        api.get_opt(&r.name)
                            .await
                            .map_err(|source| Error::ReadObject {
                                what: format!("ClusterAuthorizationServer {}", r.name),
                                source,
                            })?
                            .ok_or_else(|| {
                                not_found(format!(
                                    "ClusterAuthorizationServer {:?} not found",
                                    r.name
                                ))
                            })?,
                    )
                }
            };
            check_allowed(ctx, &server, namespace).await?;
            let ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
            (server.spec.server.clone(), format!("cas/{}", r.name), ns)
        }
    };
    let ca_pem = ca_bundle(
        ctx,
        &spec,
        &ref_namespace,
        r.kind == AuthorizationServerKind::ClusterAuthorizationServer,
    )
    .await?;
    let transport = TransportConfig::new(ca_pem.clone().into_bytes());
    let plain = ctx
        .pool
        .client(&as_key, &transport, None, None)
        .map_err(Error::Discovery)?;
    let meta = ctx
        .discovery
        .get(&plain, &spec.issuer, spec.discovery_url.as_deref())
        .await
        .map_err(Error::Discovery)?;
    let findings: Vec<String> = preflight(&meta, &policy::client_needs(client, &spec))
        .into_iter()
        .filter(|f| f.severity() == Severity::Error)
        .map(|f| f.to_string())
        .collect();
    if !findings.is_empty() {
        return Err(Error::Preflight(findings.join("; ")));
    }
    Ok(ResolvedServer {
        spec,
        as_key,
        ca_pem,
        transport,
        meta,
    })
}

async fn check_allowed(
    ctx: &Context,
    server: &ClusterAuthorizationServer,
    namespace: &str,
) -> Result<(), Error> {
    let refuse = |why: &str| Error::AuthorizationServer {
        reason: reasons::NAMESPACE_NOT_ALLOWED,
        message: format!(
            "ClusterAuthorizationServer {:?} {why} namespace {namespace:?}",
            server.name_any()
        ),
    };
    let Some(selector) = &server.spec.allowed_namespaces else {
        return Err(refuse("has no allowedNamespaces, so it serves no"));
    };
    let ns = Api::<Namespace>::all(ctx.client.clone())
        .get(namespace)
        .await
        .map_err(|source| Error::ReadObject {
            what: format!("Namespace {namespace}"),
            source,
        })?;
    let labels = ns.labels();
    let match_labels = selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .all(|(k, v)| labels.get(&k) == Some(&v));
    let match_exprs = selector
        .match_expressions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
    if match_labels && match_exprs {
        Ok(())
    } else {
        Err(refuse("allowedNamespaces does not select"))
    }
}

/// The PEM CA bundle of `spec` (inline or referenced; a namespaced server reads only its own
/// namespace).
pub async fn ca_bundle(
    ctx: &Context,
    spec: &AuthorizationServerSpec,
    namespace: &str,
    cluster: bool,
) -> Result<String, Error> {
    if let Some(pem) = &spec.ca_bundle {
        return Ok(pem.clone());
    }
    let Some(KeyRef {
        kind,
        name,
        key,
        namespace: ref_ns,
    }) = &spec.ca_bundle_ref
    else {
        return Err(Error::InvalidSpec {
            reason: reasons::INVALID_SPEC,
            message: "the AuthorizationServer has neither caBundle nor caBundleRef: no TLS trust for the AS".into(),
        });
    };
    let ns = match ref_ns {
        Some(n) if cluster => n.as_str(),
        Some(n) if n != namespace => {
            return Err(Error::InvalidSpec {
                reason: reasons::CROSS_NAMESPACE_REFERENCE,
                message: format!(
                    "caBundleRef names namespace {n:?}; a namespaced AuthorizationServer reads only its own"
                ),
            });
        }
        _ => namespace,
    };
    let text = match kind {
        KeyRefKind::ConfigMap => ctx
            .store
            .configmap(ns, name)
            .await
            .map_err(|source| Error::ReadObject {
                what: format!("ConfigMap {ns}/{name}"),
                source,
            })?
            .and_then(|c| c.data.and_then(|mut d| d.remove(key))),
        KeyRefKind::Secret => ctx
            .store
            .secret(ns, name)
            .await
            .map_err(|source| Error::ReadObject {
                what: format!("Secret {ns}/{name}"),
                source,
            })?
            .and_then(|s| s.data.and_then(|mut d| d.remove(key)))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned()),
    };
    text.ok_or_else(|| {
        Error::ReferenceNotFound(format!(
            "caBundleRef {kind:?} {ns}/{name} key {key:?} not found"
        ))
    })
}
