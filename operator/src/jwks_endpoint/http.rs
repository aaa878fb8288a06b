//! The public listener: `GET /jwks/{namespace}/{name}` and nothing else. Answers come from
//! memory ([`super::ServedJwks`]): `200` with `ETag` and `Cache-Control: public,
//! max-age=60`, `304` for a matching `If-None-Match`, `404` for an unknown client, `503`
//! before the first list, and `429` with `Retry-After: 1` once the per-process token bucket
//! (`--jwks-rate-limit` per second, twice that as burst) is empty. Network I/O (HTTP server).

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{Lookup, ServedJwks};
use crate::metrics::{CodeLabels, Metrics};

/// How long an AS (or a proxy) may cache an answer. Key changes are announced ahead by the
/// propagation delay (at least the AS's `jwksCacheTtl`), so a minute is safe.
pub const MAX_AGE_SECONDS: u32 = 60;

/// Shared state of the JWKS listener.
#[derive(Clone)]
pub struct JwksState {
    /// The sets served.
    pub served: Arc<ServedJwks>,
    /// The per-process bound on answers per second.
    pub limiter: Arc<DefaultDirectRateLimiter>,
    /// Where answers are counted, by status code.
    pub metrics: Option<Arc<Metrics>>,
}

impl JwksState {
    /// Serve `served`, at most `per_second` answers per second (burst: twice that).
    pub fn new(served: Arc<ServedJwks>, per_second: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        Self {
            served,
            limiter: Arc::new(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            )),
            metrics: None,
        }
    }

    /// Count answers in `metrics` (`tpp_operator_jwks_responses_total{code}`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// The router (exposed for tests).
pub fn router(state: JwksState) -> Router {
    Router::new()
        .route("/jwks/{namespace}/{name}", get(jwks))
        .with_state(state)
}

/// Serve until the process ends.
pub async fn serve(address: SocketAddr, state: JwksState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "JWKS server listening");
    axum::serve(listener, router(state)).await
}

async fn jwks(
    State(s): State<JwksState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let r = answer(&s, &namespace, &name, &headers);
    if let Some(m) = &s.metrics {
        m.jwks_responses
            .get_or_create(&CodeLabels {
                code: r.status().as_u16().to_string(),
            })
            .inc();
    }
    r
}

fn answer(s: &JwksState, namespace: &str, name: &str, headers: &HeaderMap) -> Response {
    if s.limiter.check().is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many requests",
        )
            .into_response();
    }
    match s.served.get(namespace, name) {
        Lookup::Found(doc) => {
            let cache = [
                (header::ETAG, doc.etag.to_string()),
                (
                    header::CACHE_CONTROL,
                    format!("public, max-age={MAX_AGE_SECONDS}"),
                ),
            ];
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(',')
                        .any(|t| t.trim() == &*doc.etag || t.trim() == "*")
                });
            if matches {
                return (StatusCode::NOT_MODIFIED, cache).into_response();
            }
            (
                cache,
                [(header::CONTENT_TYPE, "application/jwk-set+json")],
                doc.body.to_string(),
            )
                .into_response()
        }
        Lookup::NotFound => (StatusCode::NOT_FOUND, "no such client").into_response(),
        Lookup::NotSynced => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "starting",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ObjectMeta;
    use tower::ServiceExt as _;

    use super::*;
    use crate::store::{layout, state::KeysState};

    fn served() -> Arc<ServedJwks> {
        let served = Arc::new(ServedJwks::default());
        served.relist_started(Some("ns"));
        served.apply(
            Some("ns"),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("pay-keys".into()),
                    namespace: Some("ns".into()),
                    labels: Some(layout::labels("pay", "keys", None)),
                    ..Default::default()
                },
                data: Some(KeysState::default().to_data()),
                ..Default::default()
            },
        );
        served.relist_done(Some("ns"));
        served
    }

    async fn call(app: &Router, path: &str, etag: Option<&str>) -> (StatusCode, HeaderMap, String) {
        let mut req = axum::http::Request::get(path);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        let r = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn answers_from_memory_with_an_etag_and_a_cache_lifetime() {
        let app = router(JwksState::new(served(), 1000));
        let (status, headers, body) = call(&app, "/jwks/ns/pay", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body.split_whitespace().collect::<String>(),
            r#"{"keys":[]}"#
        );
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=60");
        assert_eq!(headers[header::CONTENT_TYPE], "application/jwk-set+json");
        let etag = headers[header::ETAG].to_str().unwrap().to_owned();
        let (status, _, body) = call(&app, "/jwks/ns/pay", Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, _) = call(&app, "/jwks/ns/pay", Some("\"other\"")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            call(&app, "/jwks/ns/nope", None).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&app, "/jwks/unlisted/pay", None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call(&app, "/metrics", None).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_flood_beyond_the_bucket_is_refused_with_retry_after() {
        let metrics = Arc::new(Metrics::new(false));
        let app = router(JwksState::new(served(), 1).with_metrics(metrics.clone()));
        let mut codes = std::collections::BTreeMap::<u16, u32>::new();
        for _ in 0..100 {
            let (status, headers, _) = call(&app, "/jwks/ns/pay", None).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(headers[header::RETRY_AFTER], "1");
            }
            *codes.entry(status.as_u16()).or_default() += 1;
        }
        // The burst (2) and what the rate (1/s) refills while the loop runs: not all 100.
        let ok = codes.get(&200).copied().unwrap_or(0);
        assert!(ok >= 2, "the burst was not served: {codes:?}");
        assert!(
            codes.get(&429).copied().unwrap_or(0) > 0,
            "nothing was refused: {codes:?}"
        );
        let counted = |code: u16| {
            metrics
                .jwks_responses
                .get_or_create(&CodeLabels {
                    code: code.to_string(),
                })
                .get()
        };
        assert_eq!(counted(200), u64::from(codes[&200]));
        assert_eq!(counted(429), u64::from(codes[&429]));
    }
}
