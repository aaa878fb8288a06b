//! Resolving authorization servers. The AS controllers resolve each AS once (CA bundle,
//! discovery document) with [`resolve_server`] and publish it in the [`super::server_index`];
//! a TppClient reconcile finds its AS object (with the confused-deputy check of a
//! ClusterAuthorizationServer), reads the published resolution and runs its own preflight on
//! it ([`resolve`]). Kubernetes and network I/O.

use std::{num::NonZeroU32, sync::Arc};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt, runtime::reflector::ObjectRef};

pub use super::server_index::Lookup;
use super::{context::Context, policy};
use crate::{
    crd::{
        AuthorizationServer, AuthorizationServerKind, AuthorizationServerSpec,
        ClusterAuthorizationServer, KeyRef, KeyRefKind, TppClient,
    },
    error::Error,
    oauth::{
        AsClient, ClientIdentity, ProviderMetadata, RateLimit, Severity, TransportConfig, preflight,
    },
    reason::Reason,
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
        rate_limit(&self.spec)
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

/// The server a TppClient refers to, as its AuthorizationServer controller resolved it
/// ([`super::server_index`]): the object must exist (and, cluster-scoped, serve the client's
/// namespace), its resolution must be Ready at the object's generation, and its discovery
/// document must offer what this client needs (the client's own preflight). When the AS is
/// not Ready the client waits ([`Lookup::Waiting`]) and is woken once it is.
pub async fn resolve(client: &TppClient, namespace: &str, ctx: &Context) -> Result<Lookup, Error> {
    let r = &client.spec.authorization_server_ref;
    let not_found = |what: String| Error::AuthorizationServer {
        reason: Reason::AuthorizationServerNotFound,
        message: what,
    };
    let (generation, as_key) = match r.kind {
        AuthorizationServerKind::AuthorizationServer => {
            let generation = match ctx.servers.namespaced(namespace, &r.name) {
                Some(cached) => cached.metadata.generation,
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
                        .metadata
                        .generation
                }
            };
            (generation, namespaced_key(namespace, &r.name))
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
            (server.metadata.generation, cluster_key(&r.name))
        }
    };
    let lookup = ctx
        .index
        .lookup(&as_key, &r.name, generation, ObjectRef::from_obj(client));
    if let Lookup::Ready(server) = &lookup {
        let findings: Vec<String> =
            preflight(&server.meta, &policy::client_needs(client, &server.spec))
                .into_iter()
                .filter(|f| f.severity() == Severity::Error)
                .map(|f| f.to_string())
                .collect();
        if !findings.is_empty() {
            return Err(Error::Preflight(findings.join("; ")));
        }
    }
    Ok(lookup)
}

/// The rate limit `spec.rateLimit` sets for every request to the AS: discovery, registration,
/// RFC 7592 and token calls of every client draw from one bucket per AS.
pub fn rate_limit(spec: &AuthorizationServerSpec) -> RateLimit {
    RateLimit {
        per_second: NonZeroU32::new(spec.rate_limit.requests_per_second).unwrap_or(NonZeroU32::MIN),
        burst: NonZeroU32::new(spec.rate_limit.burst).unwrap_or(NonZeroU32::MIN),
    }
}

/// The index key of the AuthorizationServer `namespace/name`.
pub fn namespaced_key(namespace: &str, name: &str) -> String {
    format!("as/{namespace}/{name}")
}

/// The index key of the ClusterAuthorizationServer `name`.
pub fn cluster_key(name: &str) -> String {
    format!("cas/{name}")
}

/// Resolve an AS for its controller: the CA bundle, then the discovery document (cached).
/// `ca_namespace` is where a `caBundleRef` without a namespace is read. The discovery request
/// waits in the AS's rate limit like every other request to it ([`rate_limit`]).
pub async fn resolve_server(
    ctx: &Context,
    spec: &AuthorizationServerSpec,
    as_key: &str,
    ca_namespace: &str,
    cluster: bool,
) -> Result<ResolvedServer, Error> {
    check_urls(spec)?;
    let ca_pem = ca_bundle(ctx, spec, ca_namespace, cluster).await?;
    let mut transport = TransportConfig::new(ca_pem.clone().into_bytes());
    // Every request to this AS, discovery included, is bounded by --as-request-timeout.
    transport.timeout = ctx.config.as_request_timeout;
    transport.connect_timeout = transport.connect_timeout.min(transport.timeout);
    let plain = ctx
        .pool
        .client(as_key, &transport, None, Some(rate_limit(spec)))
        .map_err(Error::Discovery)?;
    let meta = ctx
        .discovery
        .get(&plain, &spec.issuer, spec.discovery_url.as_deref())
        .await
        .map_err(Error::Discovery)?;
    Ok(ResolvedServer {
        spec: spec.clone(),
        as_key: as_key.to_owned(),
        ca_pem,
        transport,
        meta,
    })
}

/// Refuses an `issuer` or `discoveryUrl` that cannot be parsed as a URL: no retry can fix it,
/// so it is a permanent `InvalidSpec` (issue 13, item 1), not a failed discovery retried
/// forever. The message names the field and the parser's complaint, not the value. Pure.
pub fn check_urls(spec: &AuthorizationServerSpec) -> Result<(), Error> {
    let invalid = |field: &str, e: url::ParseError| Error::InvalidSpec {
        reason: Reason::InvalidSpec,
        message: format!("{field} cannot be parsed as a URL ({e}): correct it"),
    };
    url::Url::parse(&spec.issuer).map_err(|e| invalid("issuer", e))?;
    if let Some(discovery) = &spec.discovery_url {
        url::Url::parse(discovery).map_err(|e| invalid("discoveryUrl", e))?;
    }
    crate::oauth::discovery::discovery_url(&spec.issuer, spec.discovery_url.as_deref()).map_err(
        |_| Error::InvalidSpec {
            reason: Reason::InvalidSpec,
            message: "the discovery URL derived from issuer cannot be parsed: correct issuer"
                .into(),
        },
    )?;
    Ok(())
}

async fn check_allowed(
    ctx: &Context,
    server: &ClusterAuthorizationServer,
    namespace: &str,
) -> Result<(), Error> {
    let refuse = |why: &str| Error::AuthorizationServer {
        reason: Reason::NamespaceNotAllowed,
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
            reason: Reason::InvalidSpec,
            message: "the AuthorizationServer has neither caBundle nor caBundleRef: no TLS trust for the AS".into(),
        });
    };
    let ns = match ref_ns {
        Some(n) if cluster => n.as_str(),
        Some(n) if n != namespace => {
            return Err(Error::InvalidSpec {
                reason: Reason::CrossNamespaceReference,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(issuer: &str, discovery: Option<&str>) -> AuthorizationServerSpec {
        let mut value = serde_json::json!({"issuer": issuer});
        if let Some(d) = discovery {
            value["discoveryUrl"] = d.into();
        }
        serde_json::from_value(value).unwrap_or_else(|e| panic!("a spec: {e}"))
    }

    #[test]
    fn an_issuer_that_cannot_be_parsed_is_a_permanent_invalid_spec() {
        for (issuer, discovery, field) in [
            ("https://", None, "issuer"),
            ("https://bank example", None, "issuer"),
            ("https://[::1", None, "issuer"),
            ("https://as.bank.example", Some("https://"), "discoveryUrl"),
        ] {
            let err = check_urls(&spec(issuer, discovery))
                .err()
                .unwrap_or_else(|| panic!("{issuer:?} {discovery:?} refused"));
            assert_eq!(err.reason(), Reason::InvalidSpec, "{issuer:?}");
            assert!(
                !err.is_transient(),
                "{issuer:?}: never retried as transient"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn issuers_that_parse_pass() {
        assert!(check_urls(&spec("https://as.bank.example/tenant/", None)).is_ok());
        assert!(check_urls(&spec("https://i", Some("https://other/disco"))).is_ok());
    }
}
