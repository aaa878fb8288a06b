//! Optional authentication and authorization of `/metrics` (`--metrics-auth=tokenreview`), as
//! kube-rbac-proxy and controller-runtime's secure metrics do: the caller's bearer token is
//! checked with a TokenReview, and the user it names must be allowed `get` on the non-resource
//! URL `/metrics` (a SubjectAccessReview; bind the chart's `<release>-metrics-reader`
//! ClusterRole). Verdicts are cached by the token's SHA-256 (allowed for 60 s, refused for
//! 10 s) and new reviews are bounded by a token bucket (5 per second, burst 10), so a flood of
//! scrapes with random tokens costs at most that many API calls and never touches the
//! controllers' budget. Kubernetes I/O.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};

/// How `/metrics` is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsAuthMode {
    /// Anyone who reaches the port may read the metrics (keep the port cluster-internal).
    #[default]
    None,
    /// A bearer token checked by TokenReview, its user authorized by SubjectAccessReview.
    Tokenreview,
}

/// The answer to one scrape's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the metrics.
    Allowed,
    /// No token, or one the API server does not accept (401).
    Unauthenticated,
    /// A valid token whose user may not read `/metrics` (403).
    Forbidden,
    /// Too many new tokens to review now (429).
    Busy,
    /// The API server could not answer (503, not cached).
    Unavailable,
}

const ALLOWED_TTL: Duration = Duration::from_secs(60);
const REFUSED_TTL: Duration = Duration::from_secs(10);
const MAX_CACHED: usize = 1024;

/// Verdicts by the SHA-256 of the token, with when they were reached.
type Verdicts = HashMap<[u8; 32], (Instant, Verdict)>;

/// The reviewer (cheap to clone).
#[derive(Clone)]
pub struct MetricsAuth {
    client: Client,
    cache: Arc<Mutex<Verdicts>>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl MetricsAuth {
    /// Reviews through `client` (not the controllers' budgeted one).
    pub fn new(client: Client) -> Self {
        let rate = NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN);
        Self {
            client,
            cache: Arc::default(),
            limiter: Arc::new(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }

    /// The verdict for an `Authorization` header value.
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Verdict::Unauthenticated;
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(v) = self.cached(&key) {
            return v;
        }
        if self.limiter.check().is_err() {
            return Verdict::Busy;
        }
        let verdict = match self.review(token).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reviewing a /metrics token failed");
                return Verdict::Unavailable;
            }
        };
        self.remember(key, verdict);
        verdict
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = cache.get(key)?;
        let ttl = if *v == Verdict::Allowed {
            ALLOWED_TTL
        } else {
            REFUSED_TTL
        };
        (at.elapsed() < ttl).then_some(*v)
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < REFUSED_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), verdict));
    }

    async fn review(&self, token: &str) -> Result<Verdict, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let Some(status) = answer.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let user = status.user.unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(if answer.status.is_some_and(|s| s.allowed) {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A kube client answering TokenReviews (`authenticated`) and SubjectAccessReviews
    /// (`allowed`), counting the TokenReviews.
    fn api(authenticated: bool, allowed: bool, reviews: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let reviews = reviews.clone();
            async move {
                let body = if req.uri().path().ends_with("/tokenreviews") {
                    reviews.fetch_add(1, Ordering::SeqCst);
                    serde_json::json!({
                        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                        "status": {"authenticated": authenticated, "user": {"username": "system:serviceaccount:monitoring:prometheus"}},
                    })
                } else {
                    serde_json::json!({
                        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                        "spec": {}, "status": {"allowed": allowed},
                    })
                };
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    bytes,
                )))
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn a_missing_or_malformed_header_is_refused_without_a_review() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let auth = MetricsAuth::new(api(true, true, reviews.clone()));
        for header in [None, Some("Basic abc"), Some("Bearer "), Some("Bearer   ")] {
            assert_eq!(
                auth.check(header).await,
                Verdict::Unauthenticated,
                "{header:?}"
            );
        }
        assert_eq!(reviews.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn verdicts_follow_the_reviews_and_are_cached_per_token() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let allowed = MetricsAuth::new(api(true, true, reviews.clone()));
        for _ in 0..5 {
            assert_eq!(allowed.check(Some("Bearer t1")).await, Verdict::Allowed);
        }
        assert_eq!(
            reviews.load(Ordering::SeqCst),
            1,
            "one review for five scrapes"
        );
        let forbidden = MetricsAuth::new(api(true, false, Arc::default()));
        assert_eq!(forbidden.check(Some("Bearer t1")).await, Verdict::Forbidden);
        let unknown = MetricsAuth::new(api(false, true, Arc::default()));
        assert_eq!(
            unknown.check(Some("Bearer t1")).await,
            Verdict::Unauthenticated
        );
    }

    #[tokio::test]
    async fn a_flood_of_new_tokens_costs_at_most_the_review_burst() {
        let reviews = Arc::new(AtomicUsize::new(0));
        let auth = MetricsAuth::new(api(false, false, reviews.clone()));
        let mut busy = 0;
        for i in 0..200 {
            if auth.check(Some(&format!("Bearer random-{i}"))).await == Verdict::Busy {
                busy += 1;
            }
        }
        let made = reviews.load(Ordering::SeqCst);
        // The burst (10) plus what 5/s refills while the loop runs: far below 200.
        assert!(
            made >= 10 && made + busy == 200,
            "{made} reviews, {busy} refused"
        );
        assert!(busy > 0, "nothing was refused");
    }
}
