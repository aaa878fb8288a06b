//! The admin server on its own port: `/healthz`, `/readyz`, `/metrics` and
//! `/jwks/{namespace}/{name}` (the public JWK set of a TppClient, usable as its `jwks_uri`).
//! Network I/O (HTTP server; reads the `<name>-jwks` ConfigMap).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::{metrics::Metrics, store::layout};

/// Shared state of the admin server.
#[derive(Clone)]
pub struct AdminState {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Set once the process can do its job (caches synced, or standing by warm).
    pub ready: Arc<AtomicBool>,
    /// Client for reading JWKS ConfigMaps.
    pub client: Client,
}

/// The router (exposed for tests).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/jwks/{namespace}/{name}", get(jwks))
        .with_state(state)
}

/// Serve until the process ends.
pub async fn serve(address: SocketAddr, state: AdminState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "admin server listening");
    axum::serve(listener, router(state)).await
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn jwks(
    State(s): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let api: Api<ConfigMap> = Api::namespaced(s.client.clone(), &namespace);
    match api.get_opt(&layout::jwks_name(&name)).await {
        Ok(Some(cm)) if layout::is_managed(&cm.metadata) => {
            match cm.data.as_ref().and_then(|d| d.get(layout::JWKS_KEY)) {
                Some(body) => (
                    [
                        (header::CONTENT_TYPE, "application/jwk-set+json"),
                        (header::CACHE_CONTROL, "max-age=60"),
                    ],
                    body.clone(),
                )
                    .into_response(),
                None => (StatusCode::NOT_FOUND, "no jwks yet").into_response(),
            }
        }
        Ok(_) => (StatusCode::NOT_FOUND, "no such client").into_response(),
        Err(e) => {
            tracing::warn!(%namespace, %name, error = %e, "reading the JWKS ConfigMap failed");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot read the JWKS now").into_response()
        }
    }
}
