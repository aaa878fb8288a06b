//! The controller process: configuration, logging, the admin server, leader election, the
//! controllers, and a graceful shutdown on SIGTERM/Ctrl-C that is bounded by
//! `--shutdown-timeout` whatever the controllers are doing (e.g. retrying a watch of a CRD that
//! is not installed).
//!
//! Two listeners: the admin server (`--admin-address`: health, readiness, metrics) and the
//! public JWKS server (`--jwks-address`), which every replica runs from a watch of the key
//! states.
//!
//! Readiness (`/readyz`): the replica running the controllers is ready once every watcher's
//! initial list is cached; a standby is ready once a leader-election round has reached the
//! API server (it serves `/jwks` and stands by warm).

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context as _;
use tpp_operator::{
    admin::{self, AdminState},
    clock::SystemClock,
    config::Config,
    jwks_endpoint::{self, ServedJwks},
    lease::{self, LeaderElector, Leadership, LeaseConfig},
    metrics::Metrics,
    metrics_auth::{MetricsAuth, MetricsAuthMode},
    reconcile::{self, Context, standby::Standby},
    telemetry,
};

fn main() -> anyhow::Result<()> {
    // Before any thread exists (src/allocator.rs).
    tpp_operator::allocator::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let config = Config::load();
    telemetry::init(config.log_format);
    // Test builds only (`failpoints` feature): FAILPOINTS=name=action;... (docs/reliability.md).
    let _failpoints = tpp_operator::failpoints::setup();
    // Every AS call is checked against the egress policy (docs/security.md): no loopback,
    // link-local, private-range or cluster-internal host unless --allowed-as-hosts lists it.
    tpp_operator::oauth::egress::install(config.egress_policy());
    if !config.allowed_as_hosts.is_empty() {
        tracing::info!(hosts = ?config.allowed_as_hosts, "internal AS hosts allowed");
    }
    // One crypto provider for every TLS client in the process (kube, reqwest).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kube_config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration")?;
    // Leader election and /metrics token reviews use an unthrottled client (counted in
    // kube_requests_unbudgeted): a lease renewal must not queue behind the controllers' burst.
    // The controllers' client draws every request from the --kube-qps budget. /jwks uses
    // neither: it answers from memory.
    let metrics = Arc::new(Metrics::new(config.metrics_per_object));
    let client = tpp_operator::kube_budget::counted_client(
        kube_config.clone(),
        metrics.kube_requests_unbudgeted.clone(),
    )
    .context("connecting to the Kubernetes API")?;
    let budgeted = tpp_operator::kube_budget::client(
        kube_config,
        tpp_operator::kube_budget::limiter(config.kube_qps, config.kube_burst),
        metrics.kube_requests.clone(),
    )
    .context("connecting to the Kubernetes API")?;
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_auth = match config.metrics_auth {
        MetricsAuthMode::None => None,
        // Reviews go through the unbudgeted client (their own bucket bounds them): a flood of
        // scrapes must not queue the controllers' requests.
        MetricsAuthMode::Tokenreview => Some(MetricsAuth::new(client.clone())),
    };
    // /jwks from the persisted key states, in every replica: a watch keeps the public sets in
    // memory, so a request costs no API call (docs/security.md).
    let served = Arc::new(ServedJwks::for_namespaces(&config.namespaces));
    let admin_state = AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        metrics_auth,
        jwks: Some(served.clone()),
    };
    let admin_address = config.admin_address;
    tokio::spawn(async move {
        if let Err(e) = admin::serve(admin_address, admin_state).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    tokio::spawn(jwks_endpoint::watch::run(
        budgeted.clone(),
        config.namespaces.clone(),
        config.watcher(),
        served.clone(),
    ));
    let jwks_state = jwks_endpoint::http::JwksState::new(served.clone(), config.jwks_rate_limit)
        .with_metrics(metrics.clone());
    let jwks_address = config.jwks_address;
    tokio::spawn(async move {
        if let Err(e) = jwks_endpoint::http::serve(jwks_address, jwks_state).await {
            tracing::error!(error = %e, "JWKS server stopped");
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_timeout = config.shutdown_timeout;
    // The Lease this replica holds, released once the controllers stop (or just before the
    // process exits at the shutdown bound): a standby then takes over at its next round.
    let leadership: Arc<tokio::sync::Mutex<Option<Leadership>>> = Arc::default();
    let held_at_exit = leadership.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        // The bound: whatever is still running (a watch retrying against a missing CRD, a
        // reconcile stuck on an AS) does not keep the process alive past the timeout.
        tokio::time::sleep(shutdown_timeout).await;
        tracing::warn!(
            timeout = ?shutdown_timeout,
            "the controllers did not stop within the shutdown timeout; exiting"
        );
        // Released right before the exit: the next leader cannot act before this process is
        // gone (the released Lease expires a second later).
        if let Some(held) = held_at_exit.lock().await.take() {
            held.release(std::time::Duration::from_secs(2)).await;
        }
        std::process::exit(0);
    });

    // Built before the Lease is held: a standby's watches fill its caches (nothing in it acts).
    let leader_election = config.leader_election;
    let election = leader_election.then(|| {
        (
            config.leader_election_namespace.clone(),
            config.leader_election_lease.clone(),
            config.leader_election_lease_duration,
            config.leader_election_renew_deadline,
            config.leader_election_retry_period,
        )
    });
    let ctx = Arc::new(Context::new(
        budgeted,
        config,
        metrics,
        Arc::new(SystemClock),
    ));
    let mut warm = Vec::new();
    if let Some((lease_namespace, lease_name, lease_duration, renew_deadline, retry_period)) =
        election
    {
        let namespace = lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let lease_config = LeaseConfig {
            lease_duration,
            renew_deadline,
            retry_period,
            ..LeaseConfig::new(namespace, lease_name, identity)
        };
        lease_config
            .check()
            .map_err(anyhow::Error::msg)
            .context("invalid leader-election timings")?;
        let elector = LeaderElector::new(client.clone(), lease_config)
            // A standby is ready (warm: it serves /jwks) once a round has reached the API server.
            .on_standby({
                let ready = ready.clone();
                move || ready.store(true, std::sync::atomic::Ordering::Relaxed)
            });
        // Warm while standing by: the TppClient watch and our Secrets, kept current, so that a
        // takeover reconciles at once instead of relisting (reconcile/standby.rs).
        let standby = Standby::start(&ctx);
        let held = tokio::select! {
            held = elector.acquire() => held,
            _ = reconcile::stopped(stop_rx.clone()) => return Ok(()),
        };
        warm = standby.take().await;
        // Every AS call and Kubernetes write of the controllers checks the gate before it
        // starts: none starts once a renewal has not succeeded within the renew deadline.
        lease::install_gate(held.gate.clone());
        // The leader is ready again once its caches are synced.
        ready.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut lost = held.lost.clone();
        tokio::spawn(async move {
            let _ = lost.wait_for(|leader| !*leader).await;
            tracing::error!("lost leadership; exiting so that a fresh process can contend again");
            std::process::exit(1);
        });
        *leadership.lock().await = Some(held);
    }

    // No AS call before /jwks serves the persisted keys: the AS fetches a client's jwks_uri
    // during its token request (ServedJwks::wait_synced). Bounded: a watch that cannot list
    // (RBAC) must not keep the controllers from starting; /readyz reports it.
    if !served.wait_synced(std::time::Duration::from_secs(30)).await {
        tracing::warn!(
            "the /jwks watch has not listed after 30 s; starting the controllers anyway"
        );
    }
    tracing::info!("controllers starting");
    reconcile::run(
        ctx,
        stop_rx,
        move || ready.store(true, std::sync::atomic::Ordering::Relaxed),
        warm,
    )
    .await;
    // The controllers have stopped: hand the Lease over now rather than after it expires.
    if let Some(held) = leadership.lock().await.take() {
        held.release(std::time::Duration::from_secs(5)).await;
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "tpp-operator".into())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
