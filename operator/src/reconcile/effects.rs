//! The effects of one TppClient reconcile behind one narrow trait: reads of Secrets, server-side
//! applies, the finalizer, and the calls to the authorization server. [`KubeEffects`] is the
//! real implementation (the Secret cache, server-side apply, the AS client pool); unit tests
//! drive whole reconciles through an in-memory fake (`reconcile/fake.rs`). Everything else a
//! reconcile does is data and decisions ([`super::session::Session`], [`crate::rotation`]).

use std::{future::Future, pin::Pin};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use secrecy::SecretString;
use serde_json::{Map, Value};

use super::{context::Context, register::SecretPersister, server::ResolvedServer};
use crate::{
    crd::TppClient,
    error::Error,
    failpoints::{self, Side},
    oauth::{
        AccessToken, ClientAuthn, ClientIdentity, ManagementTarget, OauthError, Registration,
        SignedContentType, management, registration as reg, token,
    },
    store::apply::WriteError,
};

/// A boxed effect (the trait is used as `dyn Effects`).
pub type Effect<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An object the reconcile writes with server-side apply.
#[derive(Debug, Clone)]
pub enum Write {
    /// `<name>-keys`, `<name>-registration` or `<name>-credentials`.
    Secret(Secret),
    /// `<name>-jwks`.
    ConfigMap(ConfigMap),
}

impl Write {
    /// The effect part of its failpoint names (crate::failpoints::NAMES).
    pub fn failpoint_effect(&self) -> &'static str {
        match self {
            Write::ConfigMap(_) => "apply_jwks",
            Write::Secret(s) => {
                let name = s.metadata.name.as_deref().unwrap_or_default();
                if name.ends_with("-registration") {
                    "apply_registration"
                } else if name.ends_with("-credentials") {
                    "apply_credentials"
                } else {
                    "apply_keys"
                }
            }
        }
    }
}

/// Evaluates a Kubernetes-write failpoint ([`failpoints::kube_write`]).
pub(super) async fn injected(side: Side, effect: &'static str) -> Result<(), kube::Error> {
    failpoints::kube_write(side, effect).await
}

/// Which AS is called, with which mTLS identity.
#[derive(Clone, Copy)]
pub struct AsTarget<'a> {
    /// The resolved AS.
    pub server: &'a ResolvedServer,
    /// The transport certificate and key, when there is one.
    pub identity: Option<&'a ClientIdentity>,
}

/// The body of a registration request.
pub enum RegisterBody<'a> {
    /// RFC 7591 JSON metadata, with the initial access token when configured.
    Json {
        /// Bearer initial access token.
        initial_access_token: Option<&'a SecretString>,
        /// The client metadata.
        metadata: &'a Map<String, Value>,
    },
    /// A signed (OBIE-style) request.
    Signed {
        /// The compact JWS.
        jws: SecretString,
        /// Its `Content-Type`.
        content_type: SignedContentType,
    },
}

/// The body of an RFC 7592 update.
pub enum UpdateBody<'a> {
    /// The full JSON metadata.
    Json(&'a Map<String, Value>),
    /// A fresh signed request.
    Signed {
        /// The compact JWS.
        jws: SecretString,
        /// Its `Content-Type`.
        content_type: SignedContentType,
    },
}

/// The effects of one reconcile.
pub trait Effects: Send + Sync {
    /// One of the client's own Secrets (`<name>-keys`, ...), possibly from a cache.
    fn own_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>>;

    /// A Secret the user owns (certificate, software statement, initial access token).
    fn user_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>>;

    /// Server-side apply one of the client's objects, unless an object of that name belongs to
    /// someone else ([`WriteError::NameConflict`]).
    fn write<'a>(&'a self, namespace: &'a str, object: Write)
    -> Effect<'a, Result<(), WriteError>>;

    /// Add the deregistration finalizer to `client`.
    fn add_finalizer<'a>(&'a self, client: &'a TppClient) -> Effect<'a, Result<(), Error>>;

    /// A `client_credentials` token for `scope`, for the RFC 8707 `resource` when given.
    fn token<'a>(
        &'a self,
        to: AsTarget<'a>,
        authn: &'a ClientAuthn,
        scope: &'a str,
        resource: Option<&'a str>,
    ) -> Effect<'a, Result<AccessToken, OauthError>>;

    /// Register the client; the answer is persisted by `persister` before this returns.
    fn register<'a>(
        &'a self,
        to: AsTarget<'a>,
        endpoint: &'a str,
        body: RegisterBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>>;

    /// Onboard the client's certificate at the hub.
    fn hub_onboard<'a>(
        &'a self,
        to: AsTarget<'a>,
        endpoint: &'a str,
    ) -> Effect<'a, Result<(), OauthError>>;

    /// RFC 7592 PUT; a rotated registration access token is persisted before this returns.
    fn update_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
        body: UpdateBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>>;

    /// RFC 7592 GET with the stored token; a rotated token is persisted before this returns.
    fn read_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>>;

    /// RFC 7592 DELETE.
    fn delete_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
    ) -> Effect<'a, Result<management::DeleteOutcome, OauthError>>;

    /// RFC 7009 revocation of an access token, over mTLS with client authentication.
    fn revoke_token<'a>(
        &'a self,
        to: AsTarget<'a>,
        authn: &'a ClientAuthn,
        token: &'a SecretString,
    ) -> Effect<'a, Result<(), OauthError>>;
}

/// The real effects: the Secret cache and server-side apply of [`Context::store`], and the AS
/// client pool.
pub struct KubeEffects<'c> {
    ctx: &'c Context,
}

impl<'c> KubeEffects<'c> {
    /// Effects through `ctx`.
    pub fn new(ctx: &'c Context) -> Self {
        Self { ctx }
    }
}

impl Effects for KubeEffects<'_> {
    fn own_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>> {
        Box::pin(self.ctx.store.own_secret(namespace, name))
    }

    fn user_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Effect<'a, Result<Option<Secret>, kube::Error>> {
        Box::pin(self.ctx.store.secret(namespace, name))
    }

    fn write<'a>(
        &'a self,
        namespace: &'a str,
        object: Write,
    ) -> Effect<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let effect = object.failpoint_effect();
            injected(Side::Before, effect).await?;
            match object {
                Write::Secret(s) => self.ctx.store.apply(namespace, &s).await.map(drop),
                Write::ConfigMap(c) => self.ctx.store.apply(namespace, &c).await.map(drop),
            }?;
            Ok(injected(Side::After, effect).await?)
        })
    }

    fn add_finalizer<'a>(&'a self, client: &'a TppClient) -> Effect<'a, Result<(), Error>> {
        Box::pin(async move {
            let failed = |source| Error::ApplyObject {
                what: "the finalizer".into(),
                source,
            };
            injected(Side::Before, "add_finalizer")
                .await
                .map_err(failed)?;
            super::cleanup::add_finalizer(self.ctx, client).await?;
            injected(Side::After, "add_finalizer").await.map_err(failed)
        })
    }

    fn token<'a>(
        &'a self,
        to: AsTarget<'a>,
        authn: &'a ClientAuthn,
        scope: &'a str,
        resource: Option<&'a str>,
    ) -> Effect<'a, Result<AccessToken, OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            token::client_credentials_for(&http, &to.server.meta, authn, scope, resource).await
        })
    }

    fn register<'a>(
        &'a self,
        to: AsTarget<'a>,
        endpoint: &'a str,
        body: RegisterBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            match body {
                RegisterBody::Json {
                    initial_access_token,
                    metadata,
                } => {
                    reg::register_dynamic(
                        &http,
                        endpoint,
                        initial_access_token,
                        metadata,
                        persister,
                    )
                    .await
                }
                RegisterBody::Signed { jws, content_type } => {
                    reg::register_signed(&http, endpoint, jws, content_type, persister).await
                }
            }
        })
    }

    fn hub_onboard<'a>(
        &'a self,
        to: AsTarget<'a>,
        endpoint: &'a str,
    ) -> Effect<'a, Result<(), OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            reg::hub_onboard(&http, endpoint).await
        })
    }

    fn update_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
        body: UpdateBody<'a>,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            match body {
                UpdateBody::Json(metadata) => {
                    management::update_client(&http, target, current, metadata, persister).await
                }
                UpdateBody::Signed { jws, content_type } => {
                    management::update_client_signed(
                        &http,
                        target,
                        current,
                        jws,
                        content_type,
                        persister,
                    )
                    .await
                }
            }
        })
    }

    fn read_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
        persister: &'a SecretPersister<'a>,
    ) -> Effect<'a, Result<Registration, OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            management::read_client(&http, target, current, persister).await
        })
    }

    fn delete_registration<'a>(
        &'a self,
        to: AsTarget<'a>,
        target: ManagementTarget<'a>,
        current: &'a Registration,
    ) -> Effect<'a, Result<management::DeleteOutcome, OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            management::delete_client(&http, target, current).await
        })
    }

    fn revoke_token<'a>(
        &'a self,
        to: AsTarget<'a>,
        authn: &'a ClientAuthn,
        token: &'a SecretString,
    ) -> Effect<'a, Result<(), OauthError>> {
        Box::pin(async move {
            let http = to.server.http(self.ctx, to.identity)?;
            crate::oauth::endpoints::revoke(
                &http,
                &to.server.meta,
                authn,
                token,
                Some("access_token"),
            )
            .await
        })
    }
}
