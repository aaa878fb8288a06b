//! The client-side request budget of the Kubernetes API (`--kube-qps`, `--kube-burst`): a
//! token bucket in the kube client's tower stack, so every request the controllers send —
//! reads, applies, status writes, finalizer patches, events, watch starts — waits for a token.
//! The leader-election client is built without it: a renewal must never queue behind a burst.
//! The same stack holds the leader-election gate: a write (POST, PUT, PATCH, DELETE) is never
//! sent once this replica may have lost its lease ([`crate::lease::acting_allowed`]); it waits
//! for the process to exit instead.

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

/// Whether writes may be sent now.
type ActingAllowed = Arc<dyn Fn() -> bool + Send + Sync>;

/// Wraps a service so that each call first takes a token from the bucket.
#[derive(Clone)]
pub struct BudgetLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
    counter: RequestCounter,
    acting: ActingAllowed,
}

impl BudgetLayer {
    /// A layer drawing from `limiter`, counting requests in `counter`, sending writes only
    /// while [`crate::lease::acting_allowed`].
    pub fn new(limiter: Arc<DefaultDirectRateLimiter>, counter: RequestCounter) -> Self {
        Self {
            limiter,
            counter,
            acting: Arc::new(crate::lease::acting_allowed),
        }
    }

    /// The same, with writes gated by `acting` instead.
    pub fn with_gate(mut self, acting: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.acting = Arc::new(acting);
        self
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Budgeted {
            inner,
            limiter: self.limiter.clone(),
            counter: self.counter.clone(),
            acting: self.acting.clone(),
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
    acting: ActingAllowed,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permitted: bool,
}

impl<S, B> Service<http::Request<B>> for Budgeted<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, futures::future::Pending<Result<S::Response, S::Error>>>;

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
        if is_write(req.method()) && !(self.acting)() {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "not leading any more: this Kubernetes write is not sent");
            return futures::future::Either::Right(futures::future::pending());
        }
        if is_write(req.method()) {
            tracing::debug!(method = %req.method(), path = %req.uri().path(), "kube write");
        }
        futures::future::Either::Left(self.inner.call(req))
    }
}

/// Whether `method` changes something on the API server.
fn is_write(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
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

    use std::sync::atomic::AtomicBool;

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

    #[tokio::test]
    async fn a_write_is_never_sent_once_the_leader_may_have_lost_its_lease() {
        use futures::FutureExt as _;
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let svc = tower::service_fn({
            let sent = sent.clone();
            move |_: http::Request<()>| {
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }
        });
        let leading = Arc::new(AtomicBool::new(true));
        let mut svc = BudgetLayer::new(limiter(1000.0, 100), RequestCounter::default())
            .with_gate({
                let leading = leading.clone();
                move || leading.load(std::sync::atomic::Ordering::SeqCst)
            })
            .layer(svc);
        let request = |method: http::Method| {
            let mut r = http::Request::new(());
            *r.method_mut() = method;
            r
        };
        let patch = svc
            .ready()
            .await
            .unwrap()
            .call(request(http::Method::PATCH));
        assert!(patch.now_or_never().is_some(), "a leader writes");
        leading.store(false, std::sync::atomic::Ordering::SeqCst);
        for method in [
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
        ] {
            let write = svc.ready().await.unwrap().call(request(method.clone()));
            assert!(write.now_or_never().is_none(), "{method} went out");
        }
        let get = svc.ready().await.unwrap().call(request(http::Method::GET));
        assert!(get.now_or_never().is_some(), "reads still go out");
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
