//! The client-side request budget of the Kubernetes API (`--kube-qps`, `--kube-burst`): a
//! token bucket in the kube client's tower stack, so every request the controllers send —
//! reads, applies, status writes, finalizer patches, events, watch starts — waits for a token.
//! The leader-election client is built without it: a renewal must never queue behind a burst.

use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tower::{Layer, Service};

use crate::metrics::KubeRequestLabels;

/// Requests sent, by method.
pub type RequestCounter = Family<KubeRequestLabels, Counter>;

/// A token bucket of `qps` requests per second holding at most `burst` tokens.
pub fn limiter(qps: f64, burst: u32) -> Arc<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(qps.max(1.0).round() as u32).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

/// Wraps a service so that each call first takes a token from the bucket.
#[derive(Clone)]
pub struct BudgetLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
    counter: RequestCounter,
}

impl BudgetLayer {
    /// A layer drawing from `limiter`, counting requests in `counter`.
    pub fn new(limiter: Arc<DefaultDirectRateLimiter>, counter: RequestCounter) -> Self {
        Self { limiter, counter }
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner,
            limiter: self.limiter.clone(),
            counter: self.counter.clone(),
            wait: None,
            permitted: false,
        }
    }
}

/// See [`BudgetLayer`]. Ready only once a token was taken; the token is spent by `call`.
pub struct Budgeted<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    counter: RequestCounter,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permitted: bool,
}

impl<S, B> Service<http::Request<B>> for Budgeted<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            let wait = self.wait.get_or_insert_with(|| {
                let limiter = self.limiter.clone();
                Box::pin(async move { limiter.until_ready().await })
            });
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.permitted = false;
        self.counter
            .get_or_create(&KubeRequestLabels {
                method: req.method().as_str().to_owned(),
            })
            .inc();
        self.inner.call(req)
    }
}

/// Counts each request in `counter`, without a budget (the leader-election client: a renewal
/// never waits, but every request it sends is visible in the metrics).
#[derive(Clone)]
pub struct CountLayer {
    counter: RequestCounter,
}

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// See [`CountLayer`].
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.counter
            .get_or_create(&KubeRequestLabels {
                method: req.method().as_str().to_owned(),
            })
            .inc();
        self.inner.call(req)
    }
}

/// A kube client without a budget whose every request is counted in `counter`.
pub fn counted_client(
    config: kube::Config,
    counter: RequestCounter,
) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountLayer { counter })
        .build())
}

/// A kube client whose every request draws from `limiter`.
pub fn client(
    config: kube::Config,
    limiter: Arc<DefaultDirectRateLimiter>,
    counter: RequestCounter,
) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&BudgetLayer::new(limiter, counter))
        .build())
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        time::{Duration, Instant},
    };

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_unbudgeted_layer_counts_every_request_by_method() {
        let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(()) });
        let counter = RequestCounter::default();
        let mut svc = CountLayer {
            counter: counter.clone(),
        }
        .layer(svc);
        for method in ["GET", "GET", "PUT"] {
            let req = http::Request::builder().method(method).body(()).unwrap();
            svc.ready().await.unwrap().call(req).await.unwrap();
        }
        let count = |m: &str| {
            counter
                .get_or_create(&KubeRequestLabels { method: m.into() })
                .get()
        };
        assert_eq!((count("GET"), count("PUT")), (2, 1));
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let svc =
            tower::service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(Instant::now()) });
        let counter = RequestCounter::default();
        let mut svc = BudgetLayer::new(limiter(50.0, 5), counter.clone()).layer(svc);
        let start = Instant::now();
        let mut times = vec![];
        for _ in 0..15 {
            times.push(
                svc.ready()
                    .await
                    .unwrap()
                    .call(http::Request::new(()))
                    .await
                    .unwrap()
                    - start,
            );
        }
        assert_eq!(
            counter
                .get_or_create(&KubeRequestLabels {
                    method: "GET".into()
                })
                .get(),
            15
        );
        // The burst goes at once; the ten after it are paced at 20 ms each.
        assert!(
            times[4] < Duration::from_millis(15),
            "the burst waited: {times:?}"
        );
        assert!(
            times[14] >= Duration::from_millis(180),
            "not paced: {times:?}"
        );
    }
}
