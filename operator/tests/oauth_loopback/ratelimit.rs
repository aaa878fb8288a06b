//! One AS, many clients, one shared limiter: the `ClientPool` hands every client of the AS the
//! same token bucket, so the AS never sees more than burst + rate requests in any second.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde_json::json;
use tpp_operator::oauth::{AudiencePolicy, ClientPool, PoolConfig, RateLimit};

use super::support::{Harness, Tpp};

const CLIENTS: usize = 8;
const REQUESTS_EACH: usize = 4;
const PER_SECOND: u32 = 5;
const BURST: u32 = 5;

#[tokio::test]
async fn clients_sharing_a_limiter_never_exceed_burst_plus_rate_in_any_second() -> anyhow::Result<()>
{
    let h = Harness::start(|_| {}).await?;
    let rate = RateLimit {
        per_second: NonZeroU32::new(PER_SECOND).unwrap_or(NonZeroU32::MIN),
        burst: NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN),
    };
    let pool = ClientPool::new(PoolConfig::default());
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let tpp = Tpp::generate(&format!("tpp-rate-{i}"), &h.rec)?;
        let client_id = h.sandbox.provision_client(json!({
            "token_endpoint_auth_method": "private_key_jwt", "jwks": tpp.jwks()?, "scope": "accounts"}))?;
        let client = pool.client(
            "ns/sandbox",
            &h.transport,
            Some(&tpp.identity()?),
            Some(rate),
        )?;
        let authn = tpp.authn(&client_id, &h.rec, AudiencePolicy::Issuer);
        clients.push((tpp, client, authn));
    }
    assert_eq!(pool.len(), CLIENTS, "one pooled client per certificate");

    let started = Instant::now();
    let runs = clients.iter().map(|(tpp, client, authn)| {
        let h = &h;
        async move {
            let mut ok = 0;
            for _ in 0..REQUESTS_EACH {
                let token = h.expect_ok(h.token(client, authn).await)?;
                h.assert_bound(&token, tpp.x5t()).await?;
                ok += 1;
            }
            anyhow::Ok(ok)
        }
    });
    let done =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(runs)).await?;
    let elapsed = started.elapsed();
    let succeeded: usize = done
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?
        .iter()
        .sum();
    let total = CLIENTS * REQUESTS_EACH;
    assert_eq!(succeeded, total);

    let counters = h.sandbox.counters();
    let per_second = &counters.token_requests_per_second;
    assert_eq!(per_second.values().sum::<u64>(), total as u64);
    let ceiling = u64::from(BURST + PER_SECOND);
    for (second, count) in per_second {
        assert!(
            *count <= ceiling,
            "{count} token requests in second {second} (ceiling {ceiling})"
        );
    }
    // Without the shared bucket 32 requests take well under a second; with it, the 27 beyond
    // the burst are spaced 200 ms apart.
    let floor =
        Duration::from_millis(((total as u64) - u64::from(BURST)) * 1000 / u64::from(PER_SECOND));
    assert!(
        elapsed + Duration::from_millis(300) >= floor,
        "throttled: {elapsed:?} vs {floor:?}"
    );
    h.finish();
    Ok(())
}

/// Records when a registration intent was written, and how many clients the sandbox had created
/// at that moment.
struct IntentProbe<'a> {
    sandbox: &'a sandbox_as::RunningSandbox,
    at: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl tpp_operator::oauth::RegistrationPersister for IntentProbe<'_> {
    async fn persist(
        &self,
        _registration: &tpp_operator::oauth::Registration,
    ) -> Result<(), tpp_operator::oauth::PersistError> {
        Ok(())
    }

    async fn record_intent(&self) -> Result<(), tpp_operator::oauth::PersistError> {
        let created = self.sandbox.counters().registrations_created;
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), created));
        Ok(())
    }
}

#[tokio::test]
async fn a_registration_intent_is_recorded_after_the_rate_limiter_wait_and_before_the_request()
-> anyhow::Result<()> {
    let h = Harness::start(|_| {}).await?;
    // One request a second, no burst beyond it: the second call waits about a second.
    let rate = RateLimit {
        per_second: NonZeroU32::MIN,
        burst: NonZeroU32::MIN,
    };
    let pool = ClientPool::new(PoolConfig::default());
    let tpp = Tpp::generate("tpp-intent", &h.rec)?;
    let client = pool.client(
        "ns/sandbox",
        &h.transport,
        Some(&tpp.identity()?),
        Some(rate),
    )?;
    let probe = IntentProbe {
        sandbox: &h.sandbox,
        at: std::sync::Mutex::new(None),
    };
    h.expect_ok(
        tpp_operator::oauth::registration::register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &probe,
        )
        .await,
    )?;
    let started = Instant::now();
    h.expect_ok(
        tpp_operator::oauth::registration::register_dynamic(
            &client,
            h.registration_endpoint(),
            None,
            &tpp.metadata()?,
            &probe,
        )
        .await,
    )?;
    let (at, created) = probe
        .at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| anyhow::anyhow!("no intent recorded"))?;
    // A lower bound only: the limiter held the request back before the intent was written.
    assert!(
        at.duration_since(started) >= Duration::from_millis(500),
        "intent written {:?} after the call started, before the limiter's wait",
        at.duration_since(started)
    );
    assert_eq!(created, 1, "the intent precedes the request it announces");
    assert_eq!(h.sandbox.counters().registrations_created, 2);
    h.finish();
    Ok(())
}

/// "Every request to an AS, discovery included, goes through that AS's rate limit" (issue 12):
/// the AS controller's discovery draws from `spec.rateLimit`. At 1 request/s with a burst of 1,
/// three uncached discoveries cannot take less than two seconds (a floor, not a ceiling: a
/// loaded machine only makes it longer). Without the limiter they take milliseconds.
#[tokio::test]
async fn discovery_draws_from_the_authorization_servers_rate_limit() -> anyhow::Result<()> {
    use std::sync::Arc;
    let h = Harness::start(|_| {}).await?;
    let offline = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, std::io::Error>(std::io::Error::other(
            "no API server in this test",
        ))
    });
    let ctx = tpp_operator::reconcile::Context::new(
        kube::Client::new(offline, "default"),
        <tpp_operator::config::Config as clap::Parser>::parse_from(["tpp-operator"]),
        Arc::new(tpp_operator::metrics::Metrics::new(false)),
        Arc::new(tpp_operator::clock::SystemClock),
    );
    let spec: tpp_operator::crd::AuthorizationServerSpec = serde_json::from_value(json!({
        "issuer": h.sandbox.issuer(),
        "caBundle": h.sandbox.ca_pem(),
        "rateLimit": {"requestsPerSecond": 1, "burst": 1},
    }))?;
    let before = h
        .sandbox
        .counters()
        .requests_to(sandbox_as::Endpoint::Discovery);
    let started = Instant::now();
    for _ in 0..3 {
        ctx.discovery.invalidate(&spec.issuer, None);
        tpp_operator::reconcile::server::resolve_server(&ctx, &spec, "as/ns/bank", "ns", false)
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?;
    }
    let elapsed = started.elapsed();
    let sent = h
        .sandbox
        .counters()
        .requests_to(sandbox_as::Endpoint::Discovery)
        - before;
    assert_eq!(sent, 3, "each discovery reached the AS");
    assert!(
        elapsed >= Duration::from_millis(1_900),
        "three discoveries at 1/s took {elapsed:?}: not rate limited"
    );
    h.finish();
    Ok(())
}
