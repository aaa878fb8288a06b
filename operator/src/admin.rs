//! The admin server, cluster-internal: `/healthz`, `/readyz` and `/metrics` (optionally behind
//! [`crate::metrics_auth`]). The public `/jwks/...` has a listener of its own
//! ([`crate::jwks_endpoint`]). Network I/O (HTTP server).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    jwks_endpoint::ServedJwks,
    metrics::Metrics,
    metrics_auth::{MetricsAuth, Verdict},
};

/// Shared state of the admin server.
#[derive(Clone)]
pub struct AdminState {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Set once the process can do its job (caches synced, or standing by warm).
    pub ready: Arc<AtomicBool>,
    /// Who may read `/metrics`: `None` for anyone who reaches the port.
    pub metrics_auth: Option<MetricsAuth>,
    /// The sets `/jwks` serves: not ready before their watch has listed.
    pub jwks: Option<Arc<ServedJwks>>,
}

/// The router (exposed for tests).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serve until the process ends.
pub async fn serve(address: SocketAddr, state: AdminState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "admin server listening");
    axum::serve(listener, router(state)).await
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let jwks_synced = s.jwks.as_ref().is_none_or(|j| j.synced());
    if s.ready.load(Ordering::Relaxed) && jwks_synced {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &s.metrics_auth {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.check(presented).await {
            Verdict::Allowed => {}
            Verdict::Unauthenticated => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "a bearer token is required",
                )
                    .into_response();
            }
            Verdict::Forbidden => {
                return (StatusCode::FORBIDDEN, "not allowed to get /metrics").into_response();
            }
            Verdict::Busy => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1")],
                    "too many new tokens",
                )
                    .into_response();
            }
            Verdict::Unavailable => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot review the token now",
                )
                    .into_response();
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
