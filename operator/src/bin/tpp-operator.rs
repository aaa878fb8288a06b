//! The controller process: configuration, logging, the admin server, leader election, the
//! controllers, and a graceful shutdown on SIGTERM/Ctrl-C.

use std::sync::{Arc, atomic::AtomicBool};

use anyhow::Context as _;
use clap::Parser;
use tpp_operator::{
    admin::{self, AdminState},
    clock::SystemClock,
    config::Config,
    lease::{LeaderElector, LeaseConfig},
    metrics::Metrics,
    reconcile::{self, Context},
    telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    // One crypto provider for every TLS client in the process (kube, reqwest).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kube_config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration")?;
    // Leader election and the admin server use an unthrottled client: a lease renewal must not
    // queue behind the controllers' burst. The controllers' client draws every request from
    // the --kube-qps budget.
    let client =
        kube::Client::try_from(kube_config.clone()).context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::new(config.metrics_per_object));
    let budgeted = tpp_operator::kube_budget::client(
        kube_config,
        tpp_operator::kube_budget::limiter(config.kube_qps, config.kube_burst),
        metrics.kube_requests.clone(),
    )
    .context("connecting to the Kubernetes API")?;
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        client: client.clone(),
    };
    let admin_address = config.admin_address;
    tokio::spawn(async move {
        if let Err(e) = admin::serve(admin_address, admin_state).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    if config.leader_election {
        let namespace = config
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let elector = LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace,
                name: config.leader_election_lease.clone(),
                identity,
                lease_duration: std::time::Duration::from_secs(15),
            },
        );
        // Standbys are ready (warm) while they wait.
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut lost = tokio::select! {
            rx = elector.acquire() => rx,
            _ = reconcile::stopped(stop_rx.clone()) => return Ok(()),
        };
        tokio::spawn(async move {
            let _ = lost.wait_for(|leader| !*leader).await;
            tracing::error!("lost leadership; exiting so that a fresh process can contend again");
            std::process::exit(1);
        });
    }

    let ctx = Arc::new(Context::new(
        budgeted,
        config,
        metrics,
        Arc::new(SystemClock),
    ));
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("controllers starting");
    reconcile::run(ctx, stop_rx).await;
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
