//! One scale run: floors first, then a real control plane, the sandbox AS (in this process,
//! short token lifetime), the operator binary as a process under the chart's RBAC watching one
//! namespace, N Dynamic TppClients applied at once, a steady window, and a SIGKILL + restart.
//! Everything is measured from outside the operator. Process, network and Kubernetes I/O.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use serde_json::json;

use super::floor;
use super::probe::{self, Requests};
use super::report::{
    ColdStart, Failover, Memory, Onboarding, Point, Qps, Report, Restart, Setup, Staleness, Steady,
    quantile,
};
use super::watch::{Tracker, now_unix};
use crate::TestContext;
use crate::control_plane::ControlPlane;
use crate::fixtures;
use crate::operator::{OperatorOptions, OperatorProcess};
use crate::sandbox::{self, Endpoint, SandboxConfig};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// TppClients applied at once.
    pub n: usize,
    /// Token lifetime at the sandbox.
    pub token_lifetime: Duration,
    /// Steady-state window.
    pub steady: Duration,
    /// Longest wait for all N Ready.
    pub onboard_timeout: Duration,
    /// Stop waiting when no client became Ready for this long.
    pub stall: Duration,
    /// Operator log filter.
    pub operator_log: String,
    /// Keep the control plane's run folder.
    pub keep: bool,
    /// M10: run two replicas with leader election (as the chart does) and SIGKILL the leader.
    pub failover: bool,
    /// M11: time between the kill and the start of the restarted process.
    pub cold_start_gap: Duration,
}

const TOKEN: &str = "accounts";
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const RESTART_WINDOW: Duration = Duration::from_secs(10);
/// The operator's default Lease duration (`--leader-election-lease-duration`).
const LEASE: Duration = Duration::from_secs(15);
/// How long after a kill or a start the first token replacement is waited for.
const FIRST_REFRESH_BOUND: Duration = Duration::from_secs(180);
/// PATCHes timed for the apply floor.
const APPLY_SAMPLES: u32 = 200;

/// One reading every [`SAMPLE_EVERY`].
#[derive(Clone, Debug, Default)]
struct Sample {
    at: f64,
    ready: usize,
    rss_kib: Option<u64>,
    resource_requests: f64,
    harness_requests: u64,
    expired: usize,
}

/// A point-in-time snapshot of every outside counter.
struct Snapshot {
    at: f64,
    cpu_s: f64,
    machine_busy_s: f64,
    sandbox: sandbox::CountersSnapshot,
    requests: Requests,
    reconciles: f64,
}

struct Rig {
    ctx: TestContext,
    sandbox: sandbox::RunningSandbox,
    op: OperatorProcess,
    admin_address: String,
    pid: Arc<AtomicU32>,
    tracker: Tracker,
    harness_requests: Arc<AtomicU64>,
    http: reqwest::Client,
}

impl Rig {
    async fn snapshot(&self) -> Result<Snapshot> {
        let metrics = probe::operator_metrics(&self.http, &self.op.admin_url)
            .await
            .unwrap_or_default();
        Ok(Snapshot {
            at: now_unix(),
            cpu_s: probe::cpu_seconds(self.pid.load(Ordering::Relaxed)).unwrap_or(0.0),
            machine_busy_s: probe::machine_busy_seconds().unwrap_or(0.0),
            sandbox: self.sandbox.counters(),
            requests: probe::apiserver_requests(&self.ctx.client).await?,
            reconciles: probe::counter_sum(&metrics, "tpp_operator_reconciles_total"),
        })
    }

    fn ready(&self) -> usize {
        self.tracker.with(|s| s.ready.len())
    }

    fn find_pid(&self) -> Result<u32> {
        let pid =
            probe::operator_pid(&self.admin_address).context("operator pid not found in /proc")?;
        self.pid.store(pid, Ordering::Relaxed);
        Ok(pid)
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The AuthorizationServer's `rateLimit` in the bench (both rate and burst).
const AS_RPS: u32 = 1000;

fn client_manifest(i: usize) -> serde_json::Value {
    json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient",
        "metadata": {"name": format!("c-{i:05}")},
        "spec": {
            "authorizationServerRef": {"name": "sandbox"},
            "registration": {"mode": "Dynamic"},
            "tokens": [{"name": TOKEN, "scope": "accounts"}],
        },
    })
}

/// Starts everything, runs the phases, returns the report.
pub async fn run(o: &Options) -> Result<Report> {
    eprintln!("bench-scale: measuring floors");
    let floors = floor::measure(16, 300)?;
    let cp: &'static ControlPlane = Box::leak(Box::new(ControlPlane::start().await?));
    let result = phases(o, cp, floors).await;
    if !o.keep {
        let _ = std::fs::remove_dir_all(&cp.dir);
    }
    result
}

async fn phases(o: &Options, cp: &'static ControlPlane, floors: floor::Floors) -> Result<Report> {
    let client = cp.admin_client().await?;
    let namespace = format!("bench-{:08x}", rand::random::<u32>());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    kube::Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let ctx = TestContext {
        audited_logs: Default::default(),
        cp,
        client: client.clone(),
        namespace: namespace.clone(),
        extra_logs: Default::default(),
        extra_namespaces: Default::default(),
        audited_metrics: Default::default(),
    };

    // The strict sandbox of the e2e tests (its initial access token in the Secret the
    // AuthorizationServer references), with the AS's default JWKS cache.
    let mut cfg = fixtures::strict_sandbox_config(cp.dir.join("sandbox"))?;
    cfg.jwks_cache_ttl = SandboxConfig::new(cp.dir.join("sandbox")).jwks_cache_ttl;
    cfg.token_lifetime = o.token_lifetime;
    fixtures::apply_sandbox_iat_secret(
        &kube::Api::namespaced(client.clone(), &namespace),
        &namespace,
    )
    .await?;
    let sandbox = sandbox::start(cfg).await?;
    let leader_election = |lease: &str| {
        if o.failover {
            vec![
                "--leader-election".to_owned(),
                "--leader-election-lease".to_owned(),
                lease.to_owned(),
            ]
        } else {
            vec![]
        }
    };
    let options = OperatorOptions {
        namespaces: vec![namespace.clone()],
        log_filter: Some(o.operator_log.clone()),
        args: leader_election("tpp-bench"),
        ..Default::default()
    };
    let op = OperatorProcess::start(cp, &client, options.clone()).await?;
    // The chart's second replica: it stands by until the leader's Lease stands still.
    let mut standby = if o.failover {
        Some(OperatorProcess::start(cp, &client, options).await?)
    } else {
        None
    };
    let admin_address = op.admin_url.trim_start_matches("http://").to_owned();
    let tracker = Tracker::start(client.clone(), &namespace, TOKEN);
    let rig = Rig {
        ctx,
        sandbox,
        op,
        admin_address,
        pid: Arc::new(AtomicU32::new(0)),
        tracker,
        harness_requests: Arc::new(AtomicU64::new(0)),
        http: reqwest::Client::new(),
    };
    let first_pid = rig.find_pid()?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = {
        let (samples, pid, harness, state, client) = (
            samples.clone(),
            rig.pid.clone(),
            rig.harness_requests.clone(),
            rig.tracker.state.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let pid = pid.load(Ordering::Relaxed);
                let requests = probe::apiserver_requests(&client)
                    .await
                    .map(|r| r.resource_requests())
                    .unwrap_or(f64::NAN);
                let at = now_unix();
                let (expired, ready) = state
                    .lock()
                    .map(|s| (s.expired(at), s.ready.len()))
                    .unwrap_or_default();
                let s = Sample {
                    at,
                    ready,
                    rss_kib: probe::status_kib(pid, "VmRSS"),
                    resource_requests: requests,
                    harness_requests: harness.load(Ordering::Relaxed),
                    expired,
                };
                if let Ok(mut v) = samples.lock() {
                    v.push(s);
                }
            }
        })
    };

    // M1 / M3b: onboarding.
    let before = rig.snapshot().await?;
    let t0 = now_unix();
    // The operator's per-AS politeness budget (default 20 rps) is set above what N clients
    // need (refreshes stay near 30/s, onboarding adds a registration and a token per client):
    // the AS's budget is the user's choice, not what this bench measures.
    fixtures::apply(
        &rig.ctx,
        fixtures::sandbox_server(
            "sandbox",
            &rig.sandbox,
            json!({"rateLimit": {"requestsPerSecond": AS_RPS, "burst": AS_RPS}}),
        ),
    )
    .await?;
    rig.harness_requests.fetch_add(1, Ordering::Relaxed);
    let applied: Vec<Result<()>> = futures::stream::iter(0..o.n)
        .map(|i| {
            let (ctx, counter) = (&rig.ctx, rig.harness_requests.clone());
            async move {
                fixtures::apply(ctx, client_manifest(i)).await?;
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    applied.into_iter().collect::<Result<Vec<()>>>()?;
    eprintln!(
        "bench-scale: {} TppClients applied in {:.1} s; waiting for Ready",
        o.n,
        now_unix() - t0
    );
    let deadline = tokio::time::Instant::now() + o.onboard_timeout;
    let (mut seen, mut last_progress) = (0, tokio::time::Instant::now());
    let ended = loop {
        let ready = rig.ready();
        if ready >= o.n {
            break "all Ready";
        }
        if ready > seen {
            (seen, last_progress) = (ready, tokio::time::Instant::now());
        }
        if last_progress.elapsed() >= o.stall {
            break "stalled";
        }
        if tokio::time::Instant::now() >= deadline {
            break "timeout";
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let t_ready = now_unix();
    let onboarded = rig.snapshot().await?;
    let ready = rig.ready();
    let onboard_writes = onboarded.requests.since(&before.requests);
    let harness_writes = (o.n + 1) as f64;
    let events = onboard_writes.writes(Some("events"), None);
    let apiserver_leases = onboard_writes.writes(Some("leases"), None);
    let tokens = onboarded
        .sandbox
        .requests_with(Endpoint::Token, "200")
        .saturating_sub(before.sandbox.requests_with(Endpoint::Token, "200"));
    let refresh_writes = tokens.saturating_sub(ready as u64) as f64;
    let ready_after_s = rig.tracker.with(|s| {
        [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("all", 1.0)]
            .map(|(k, q)| (k, s.ready_after(o.n, q, t0)))
            .into()
    });
    let onboarding = Onboarding {
        ready,
        wall_s: t_ready - t0,
        ready_after_s,
        ended,
        floor_s: floors.onboarding_s(o.n),
        ratio: (t_ready - t0) / floors.onboarding_s(o.n),
        // Token refreshes of clients already Ready (one Secret write each) are not onboarding.
        refresh_writes,
        writes_per_client: (onboard_writes.writes(None, None)
            - events
            - apiserver_leases
            - harness_writes
            - refresh_writes)
            / o.n as f64,
        events_per_client: events / o.n as f64,
        writes_by_resource: onboard_writes.writes_by_resource(),
        operator_cpu_ms_per_client: (onboarded.cpu_s - before.cpu_s) * 1e3 / ready.max(1) as f64,
        keygen_ms_per_client: 2.0 * floors.keygen_rsa2048_ms,
        machine_busy: (onboarded.machine_busy_s - before.machine_busy_s)
            / ((t_ready - t0).max(1e-3) * floors.cores.max(1) as f64),
    };
    eprintln!(
        "bench-scale: {ready}/{} Ready after {:.1} s; steady window {:?}",
        o.n, onboarding.wall_s, o.steady
    );

    // M2, M3, M5, M6, M7: steady window.
    tokio::time::sleep(o.steady).await;
    let after = rig.snapshot().await?;
    let peak_kib = probe::status_kib(first_pid, "VmHWM").unwrap_or(0);
    let floors = apply_floor(&rig, cp, floors).await?;
    let steady = steady_figures(&rig, &onboarded, &after, floors.refresh_path_ms);
    let staleness = rig.tracker.with(|s| {
        let mut late: Vec<f64> = s
            .replacements_between(onboarded.at, after.at)
            .iter()
            .map(|r| r.late_s)
            .collect();
        let bucket = |l: f64| match l {
            l if l <= 0.0 => "0",
            l if l < 1.0 => "<1s",
            l if l < 5.0 => "1-5s",
            l if l < 10.0 => "5-10s",
            _ => ">10s",
        };
        let mut late_buckets = std::collections::BTreeMap::new();
        for l in &late {
            *late_buckets.entry(bucket(*l)).or_insert(0) += 1;
        }
        Staleness {
            replacements: late.len(),
            late_max_s: late.iter().copied().fold(0.0, f64::max),
            late_p99_s: quantile(&mut late, 0.99),
            late_buckets,
            ..Default::default()
        }
    });

    let mut rig = rig;
    // M10: the leader killed, the standby takes over.
    let failover = match standby.as_mut() {
        Some(standby) => Some(failover(&mut rig, standby, &samples).await?),
        None => None,
    };

    // M8 and M11: SIGKILL, a gap, a cold start of one process (no standby: the start itself is
    // measured, not a Lease expiry).
    eprintln!(
        "bench-scale: SIGKILL + restart after {:?}",
        o.cold_start_gap
    );
    let killed = rig.snapshot().await?;
    rig.op.kill();
    if let Some(s) = standby.as_mut() {
        s.kill();
    }
    let t_kill = now_unix();
    // The gap is part of the scenario (refreshes fall due while no operator runs).
    tokio::time::sleep(o.cold_start_gap).await;
    rig.op.set_args(vec![]);
    let starting = rig.snapshot().await?;
    let t_start = now_unix();
    rig.op.restart().await?;
    let healthy_after_s = now_unix() - t_kill;
    let second_pid = rig.find_pid()?;
    let first_refresh = first_replacement_after(&rig, t_start, FIRST_REFRESH_BOUND).await;
    tokio::time::sleep(RESTART_WINDOW).await;
    let restarted = rig.snapshot().await?;
    let cold_start = cold_start_figures(
        &starting,
        &restarted,
        first_refresh.map(|t| t - t_start),
        t_start - t_kill,
    );
    let restart_peak_kib = probe::status_kib(second_pid, "VmHWM").unwrap_or(0);
    tokio::time::sleep(RESTART_WINDOW).await;
    let settled_kib = probe::status_kib(second_pid, "VmRSS").unwrap_or(0);
    sampler.abort();
    let restart_writes = restarted.requests.since(&killed.requests);
    let window_s = restarted.at - killed.at;
    let (premature, due) = rig.tracker.with(|s| {
        let r = s.replacements_between(killed.at, restarted.at);
        (
            r.iter().filter(|r| r.premature).count(),
            r.iter().filter(|r| !r.premature).count(),
        )
    });
    let steady_write_rate =
        steady.writes_by_resource.values().sum::<f64>() / steady.window_s.max(1e-9);
    let restart = Restart {
        window_s,
        healthy_after_s,
        tokens_minted: restarted
            .sandbox
            .requests_with(Endpoint::Token, "200")
            .saturating_sub(killed.sandbox.requests_with(Endpoint::Token, "200")),
        premature,
        due,
        registrations: restarted
            .sandbox
            .registrations_created
            .saturating_sub(killed.sandbox.registrations_created),
        write_rate_ratio_to_steady: restart_writes.writes(None, None)
            / window_s.max(1e-9)
            / steady_write_rate.max(1e-9),
        writes_by_resource: restart_writes.writes_by_resource(),
        ready_after: rig.ready(),
    };

    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let steady_rss: Vec<f64> = samples
        .iter()
        .filter(|s| s.at >= onboarded.at && s.at <= after.at)
        .filter_map(|s| s.rss_kib.map(mib))
        .collect();
    let steady_mib = steady_rss.iter().sum::<f64>() / steady_rss.len().max(1) as f64;
    let memory = Memory {
        peak_mib: mib(peak_kib),
        steady_mib,
        restart_peak_mib: mib(restart_peak_kib),
        restart_settled_mib: mib(settled_kib),
        initial_list_peak_ratio: restart_peak_kib as f64 / settled_kib.max(1) as f64,
        budget_mib: 64.0 + 12.0 * o.n as f64 / 1024.0,
    };
    let phase_max = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .map(|s| s.expired)
            .max()
            .unwrap_or(0)
    };
    let staleness = Staleness {
        expired_max: samples.iter().map(|s| s.expired).max().unwrap_or(0),
        expired_max_by_phase: [
            ("onboarding", phase_max(t0, t_ready)),
            (
                "steady",
                phase_max(
                    t_ready,
                    failover.as_ref().map_or(killed.at, |f| f.killed_at),
                ),
            ),
            ("restart", phase_max(killed.at, f64::MAX)),
            ("failover", failover.as_ref().map_or(0, |f| f.expired_max)),
        ]
        .into(),
        samples_with_expired: samples
            .iter()
            .filter(|s| s.at >= t_ready && s.expired > 0)
            .count(),
        samples: samples.iter().filter(|s| s.at >= t_ready).count(),
        ..staleness
    };
    let qps = qps(&samples);
    let timeline = samples
        .windows(2)
        .map(|w| Point {
            t: w[1].at - t0,
            ready: w[1].ready,
            expired: w[1].expired,
            rss_mib: w[1].rss_kib.map(mib).unwrap_or(0.0),
            kube_rps: rate(&w[0], &w[1]),
        })
        .collect();
    let setup = Setup {
        n: o.n,
        cpu: cpu_model(),
        cores: floors.cores,
        kube_version: cp.version.clone(),
        registration_mode: "Dynamic",
        token_lifetime_s: o.token_lifetime.as_secs(),
        steady_window_s: steady.window_s,
        operator_flags: vec![
            format!("--namespaces {namespace}"),
            if o.failover {
                "2 replicas, --leader-election (lease 15 s)".to_owned()
            } else {
                "1 replica".to_owned()
            },
            format!("RUST_LOG={}", o.operator_log),
            format!("AuthorizationServer rateLimit {AS_RPS}/s"),
        ],
        // The operator's defaults (`--kube-qps`, `--kube-burst`): the bench passes neither.
        kube_qps: 100.0,
        kube_burst: 200.0,
    };
    let mut report = Report {
        setup,
        floors,
        onboarding,
        steady,
        memory,
        staleness,
        restart,
        qps,
        failover,
        cold_start,
        targets: vec![],
        timeline,
    };
    report.check();
    rig.sandbox.shutdown().await;
    Ok(report)
}

/// Times the apply floor against the bench's control plane with the body of a real credentials
/// Secret (`c-00000-credentials`), written under another name by another field manager.
async fn apply_floor(
    rig: &Rig,
    cp: &'static ControlPlane,
    floors: floor::Floors,
) -> Result<floor::Floors> {
    use k8s_openapi::api::core::v1::Secret;
    let real: Secret = rig.ctx.api::<Secret>().get("c-00000-credentials").await?;
    let body = Secret {
        metadata: ObjectMeta {
            name: Some("floor-credentials".into()),
            namespace: Some(rig.ctx.namespace.clone()),
            labels: real.metadata.labels.clone(),
            annotations: real.metadata.annotations.clone(),
            ..Default::default()
        },
        type_: real.type_.clone(),
        data: real.data.clone(),
        ..Default::default()
    };
    let requests = 1 + u64::from(APPLY_SAMPLES + APPLY_SAMPLES / 10);
    let namespace = rig.ctx.namespace.clone();
    let ms = tokio::task::spawn_blocking(move || {
        floor::measure_apply(|| cp.admin_client(), &namespace, body, APPLY_SAMPLES)
    })
    .await??;
    rig.harness_requests.fetch_add(requests, Ordering::Relaxed);
    Ok(floors.with_apply(APPLY_SAMPLES, ms))
}

/// When the watch first saw a token replacement at or after `from` (bounded wait).
async fn first_replacement_after(rig: &Rig, from: f64, bound: Duration) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let first = rig
            .tracker
            .with(|s| s.replacements_between(from, f64::MAX).first().map(|r| r.at));
        if first.is_some() || tokio::time::Instant::now() >= deadline {
            return first;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// M10: SIGKILL the leader; the standby must take over within the Lease duration and refresh
/// what falls due without a premature re-mint or a registration.
async fn failover(
    rig: &mut Rig,
    standby: &mut OperatorProcess,
    samples: &Mutex<Vec<Sample>>,
) -> Result<Failover> {
    eprintln!("bench-scale: SIGKILL the leader; the standby takes over");
    let mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;
    let standby_rss_mib = mib(probe::status_kib(standby.pid(), "VmRSS"));
    let leader_rss_mib = mib(probe::status_kib(rig.pid.load(Ordering::Relaxed), "VmRSS"));
    let before = rig.snapshot().await?;
    rig.op.kill();
    let t_kill = now_unix();
    // Memory and CPU samples follow the new leader.
    rig.pid.store(standby.pid(), Ordering::Relaxed);
    let first = first_replacement_after(rig, t_kill, LEASE + FIRST_REFRESH_BOUND).await;
    // Observe the new leader for a lease and 30 s past the kill (or the first refresh).
    let until = first.unwrap_or(t_kill).max(t_kill) + LEASE.as_secs_f64() + 30.0;
    let wait = (until - now_unix()).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let after = rig.snapshot().await?;
    let premature = rig.tracker.with(|s| {
        s.replacements_between(t_kill, after.at)
            .iter()
            .filter(|r| r.premature)
            .count()
    });
    let expired_max = samples
        .lock()
        .map(|v| {
            v.iter()
                .filter(|s| s.at >= t_kill && s.at <= after.at)
                .map(|s| s.expired)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    Ok(Failover {
        killed_at: t_kill,
        lease_duration_s: LEASE.as_secs_f64(),
        standby_rss_mib,
        leader_rss_mib,
        first_refresh_s: first.map(|t| t - t_kill),
        window_s: after.at - t_kill,
        tokens_minted: after
            .sandbox
            .requests_with(Endpoint::Token, "200")
            .saturating_sub(before.sandbox.requests_with(Endpoint::Token, "200")),
        premature,
        registrations: after
            .sandbox
            .registrations_created
            .saturating_sub(before.sandbox.registrations_created),
        expired_max,
    })
}

/// M11 from the readings just before the start and at the end of the restart window.
fn cold_start_figures(
    a: &Snapshot,
    b: &Snapshot,
    first_refresh_s: Option<f64>,
    gap_s: f64,
) -> ColdStart {
    let r = b.requests.since(&a.requests);
    let refreshes = b
        .sandbox
        .requests_with(Endpoint::Token, "200")
        .saturating_sub(a.sandbox.requests_with(Endpoint::Token, "200"));
    let list_pages = r.verb("LIST");
    let requests = r.resource_requests() - r.resource("leases");
    let expected = list_pages + refreshes as f64;
    ColdStart {
        gap_s,
        first_refresh_s,
        window_s: b.at - a.at,
        list_pages,
        refreshes,
        requests,
        ratio: if expected > 0.0 {
            requests / expected
        } else {
            0.0
        },
        by_verb_resource: r.by_verb_resource(),
    }
}

fn steady_figures(rig: &Rig, a: &Snapshot, b: &Snapshot, floor_ms: f64) -> Steady {
    let refreshes = b
        .sandbox
        .requests_with(Endpoint::Token, "200")
        .saturating_sub(a.sandbox.requests_with(Endpoint::Token, "200"));
    let token_requests = b
        .sandbox
        .requests_to(Endpoint::Token)
        .saturating_sub(a.sandbox.requests_to(Endpoint::Token));
    let per = |x: f64| x / (refreshes.max(1) as f64);
    let writes = b.requests.since(&a.requests);
    let cpu_s = b.cpu_s - a.cpu_s;
    let secret_writes = writes.writes(Some("secrets"), None);
    let status_writes = writes.writes(Some("tppclients"), Some("status"));
    let events = writes.writes(Some("events"), None);
    let (full, resumed) = (
        b.sandbox.handshakes.full - a.sandbox.handshakes.full,
        b.sandbox.handshakes.resumed - a.sandbox.handshakes.resumed,
    );
    let (from, to) = (a.at.ceil() as u64, b.at.floor() as u64);
    let per_second: Vec<u64> = (from..to)
        .map(|s| {
            b.sandbox
                .token_requests_per_second
                .get(&s)
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let mean = per_second.iter().sum::<u64>() as f64 / per_second.len().max(1) as f64;
    let max = per_second.iter().copied().max().unwrap_or(0);
    let (cred, tpp) = rig.tracker.with(|s| {
        (
            s.changes_between("credentials", a.at, b.at),
            s.changes_between("tppclient", a.at, b.at),
        )
    });
    Steady {
        window_s: b.at - a.at,
        refreshes,
        cpu_s,
        cpu_ms_per_refresh: per(cpu_s * 1e3),
        cpu_ratio_to_floor: per(cpu_s * 1e3) / floor_ms,
        secret_writes_per_refresh: per(secret_writes),
        status_writes_per_refresh: per(status_writes),
        other_writes_per_refresh: per(writes.writes(None, None)
            - secret_writes
            - status_writes
            - events
            - writes.writes(Some("leases"), None)),
        credentials_changes_per_refresh: per(cred as f64),
        tppclient_changes_per_refresh: per(tpp as f64),
        reconciles_per_refresh: per(b.reconciles - a.reconciles),
        writes_by_resource: writes.writes_by_resource(),
        requests: writes.by_verb_resource(),
        max_per_s: max,
        mean_per_s: mean,
        burst_ratio: if mean > 0.0 { max as f64 / mean } else { 0.0 },
        handshakes_per_refresh: (full + resumed) as f64 / token_requests.max(1) as f64,
        full_handshakes: full,
        resumed_handshakes: resumed,
        resumption_ratio: resumed as f64 / (full + resumed).max(1) as f64,
    }
}

/// Resource requests per second from `a` to `b`, the harness's own requests subtracted.
fn rate(a: &Sample, b: &Sample) -> f64 {
    let own = b.harness_requests.saturating_sub(a.harness_requests) as f64;
    let r = (b.resource_requests - a.resource_requests - own) / (b.at - a.at).max(1e-3);
    if r.is_finite() { r.max(0.0) } else { 0.0 }
}

/// The operator's resource request rate (everything but the harness's own requests).
fn qps(samples: &[Sample]) -> Qps {
    let valid: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.resource_requests.is_finite())
        .collect();
    let max_interval_rate = valid
        .windows(2)
        .map(|w| rate(w[0], w[1]))
        .fold(0.0, f64::max);
    let span =
        (Duration::from_secs(10).as_secs_f64() / SAMPLE_EVERY.as_secs_f64()).round() as usize;
    let max_10s_rate = valid
        .windows(span + 1)
        .map(|w| rate(w[0], w[span]))
        .fold(0.0, f64::max);
    Qps {
        max_interval_rate,
        max_10s_rate,
        intervals: valid.len().saturating_sub(1),
    }
}
