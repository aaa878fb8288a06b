//! The scale benchmark's report: every figure (M1–M9) with the inputs it came from, the targets
//! of issue 7 checked against them, and a short Markdown table. Pure data; no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::floor::Floors;

/// Where and how the run happened.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// TppClients applied at once.
    pub n: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// Cores seen by the harness.
    pub cores: usize,
    /// kube-apiserver version line.
    pub kube_version: String,
    /// Registration mode of every client.
    pub registration_mode: &'static str,
    /// Access-token lifetime the sandbox AS issues, s.
    pub token_lifetime_s: u64,
    /// Steady-state window, s.
    pub steady_window_s: f64,
    /// Operator flags (defaults unless stated).
    pub operator_flags: Vec<String>,
    /// The operator's configured kube QPS and burst (its defaults).
    pub kube_qps: f64,
    /// Burst above the QPS.
    pub kube_burst: f64,
}

/// M1 and M3b.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Onboarding {
    /// Clients Ready at the end (N when complete).
    pub ready: usize,
    /// From the first apply until all N Ready (or the wait ended), s.
    pub wall_s: f64,
    /// Seconds until 50 %, 95 %, 99 % and 100 % of N were first Ready (`null`: never).
    pub ready_after_s: BTreeMap<&'static str, Option<f64>>,
    /// Why the wait ended: `all Ready`, `stalled` (no new Ready for the stall time) or `timeout`.
    pub ended: &'static str,
    /// `N x 2 RSA-2048 keygens / cores`, s.
    pub floor_s: f64,
    /// `wall_s / floor_s`.
    pub ratio: f64,
    /// Secret writes of token refreshes during onboarding (tokens minted beyond each client's
    /// first): not onboarding writes.
    pub refresh_writes: f64,
    /// Operator API writes per client (the harness's own applies, kube-apiserver's own lease
    /// renewals and the refresh writes subtracted), events excluded.
    pub writes_per_client: f64,
    /// Events written per client.
    pub events_per_client: f64,
    /// Write requests by resource during onboarding (harness applies included).
    pub writes_by_resource: BTreeMap<String, f64>,
    /// Operator CPU during onboarding per client Ready, ms.
    pub operator_cpu_ms_per_client: f64,
    /// The crypto floor per client: two RSA-2048 keygens, ms.
    pub keygen_ms_per_client: f64,
    /// How busy the whole machine was during onboarding (0..1 of every core): the control
    /// plane, the sandbox AS and the harness share the cores with the operator.
    pub machine_busy: f64,
}

/// M2, M3, M6, M7 over the steady window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steady {
    /// Window length, s.
    pub window_s: f64,
    /// Successful token requests at the sandbox.
    pub refreshes: u64,
    /// Operator CPU used, s.
    pub cpu_s: f64,
    /// M2: operator CPU per refresh, ms.
    pub cpu_ms_per_refresh: f64,
    /// M2: ratio to the refresh path floor.
    pub cpu_ratio_to_floor: f64,
    /// M3: Secret write requests per refresh.
    pub secret_writes_per_refresh: f64,
    /// M3: TppClient status write requests per refresh.
    pub status_writes_per_refresh: f64,
    /// M3: all other write requests per refresh (events and kube-apiserver's leases excluded).
    pub other_writes_per_refresh: f64,
    /// M3: credentials Secret changes (new resourceVersions) per refresh, from the watch.
    pub credentials_changes_per_refresh: f64,
    /// M3: TppClient changes per refresh, from the watch.
    pub tppclient_changes_per_refresh: f64,
    /// M3: operator reconciles (its own counter) per refresh; 1.00 = none caused by its writes.
    pub reconciles_per_refresh: f64,
    /// Write requests by resource.
    pub writes_by_resource: BTreeMap<String, f64>,
    /// Every request by `VERB resource[/subresource]` (reads too; all clients of the apiserver).
    pub requests: BTreeMap<String, f64>,
    /// M6: most token requests in one second.
    pub max_per_s: u64,
    /// M6: mean token requests per second.
    pub mean_per_s: f64,
    /// M6: `max_per_s / mean_per_s`.
    pub burst_ratio: f64,
    /// M7: TLS handshakes (full + resumed) at the sandbox per token request.
    pub handshakes_per_refresh: f64,
    /// M7: full handshakes.
    pub full_handshakes: u64,
    /// M7: resumed handshakes.
    pub resumed_handshakes: u64,
    /// M7: `resumed / (full + resumed)`.
    pub resumption_ratio: f64,
}

/// M4.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// VmHWM of the first operator process (onboarding + steady), MiB.
    pub peak_mib: f64,
    /// Mean VmRSS over the steady window, MiB.
    pub steady_mib: f64,
    /// VmHWM of the restarted process (its initial list), MiB.
    pub restart_peak_mib: f64,
    /// VmRSS of the restarted process after it settled, MiB.
    pub restart_settled_mib: f64,
    /// `restart_peak_mib / restart_settled_mib`.
    pub initial_list_peak_ratio: f64,
    /// `64 MiB + 12 KiB x N`.
    pub budget_mib: f64,
}

/// M5.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Staleness {
    /// Most credentials Secrets holding an expired token at one sample.
    pub expired_max: usize,
    /// The same, by phase (`onboarding`, `steady`, `restart`).
    pub expired_max_by_phase: BTreeMap<&'static str, usize>,
    /// Samples (every 2 s) with at least one expired token.
    pub samples_with_expired: usize,
    /// Samples taken.
    pub samples: usize,
    /// Token replacements seen by the watch (steady window).
    pub replacements: usize,
    /// p99 of seconds a Secret held a token past its latest refresh point.
    pub late_p99_s: f64,
    /// Worst case of the same.
    pub late_max_s: f64,
    /// Replacements by lateness: `0`, `<1s`, `1-5s`, `5-10s`, `>10s`.
    pub late_buckets: BTreeMap<&'static str, usize>,
}

/// One sample of the run's timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Seconds since the first apply.
    pub t: f64,
    /// Clients Ready.
    pub ready: usize,
    /// Credentials Secrets holding an expired token.
    pub expired: usize,
    /// Operator VmRSS, MiB.
    pub rss_mib: f64,
    /// Operator resource requests per second since the previous sample.
    pub kube_rps: f64,
}

/// M8.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    /// From SIGKILL until healthy + 10 s, s.
    pub window_s: f64,
    /// Seconds from the restart until /healthz answered.
    pub healthy_after_s: f64,
    /// Tokens minted at the sandbox in the window.
    pub tokens_minted: u64,
    /// Of the replacements the watch saw in the window, those before their refresh window.
    pub premature: usize,
    /// Replacements that were due.
    pub due: usize,
    /// Registrations created in the window.
    pub registrations: u64,
    /// Write requests by resource in the window.
    pub writes_by_resource: BTreeMap<String, f64>,
    /// Writes per second in the window vs in the steady state.
    pub write_rate_ratio_to_steady: f64,
    /// Clients Ready at the end.
    pub ready_after: usize,
}

/// M10: the leader SIGKILLed, the chart's second replica takes over (`--failover`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failover {
    /// When the leader was killed (Unix seconds).
    pub killed_at: f64,
    /// The Lease duration the replicas run with, s.
    pub lease_duration_s: f64,
    /// VmRSS of the standby just before the kill, MiB.
    pub standby_rss_mib: f64,
    /// VmRSS of the leader just before the kill, MiB.
    pub leader_rss_mib: f64,
    /// From the SIGKILL until the first token replacement seen in a Secret, s (`None`: none
    /// within the observation window).
    pub first_refresh_s: Option<f64>,
    /// Observation window after the kill, s.
    pub window_s: f64,
    /// Tokens minted at the sandbox in the window.
    pub tokens_minted: u64,
    /// Replacements before their earliest refresh point in the window.
    pub premature: usize,
    /// Registrations created in the window.
    pub registrations: u64,
    /// Most credentials Secrets holding an expired token at one sample in the window.
    pub expired_max: usize,
}

/// M11: a cold start: the operator stopped, started again after a gap.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ColdStart {
    /// Seconds between the kill and the start (refreshes fall due meanwhile).
    pub gap_s: f64,
    /// From the process start until the first token replacement seen in a Secret, s.
    pub first_refresh_s: Option<f64>,
    /// Window counted: from the start until the first refresh + 10 s, s.
    pub window_s: f64,
    /// LIST requests (pages) in the window.
    pub list_pages: f64,
    /// Tokens minted in the window (each needs one Secret write).
    pub refreshes: u64,
    /// Every resource request in the window but WATCHes, Leases and the harness's own.
    pub requests: f64,
    /// `requests / (list_pages + refreshes)`.
    pub ratio: f64,
    /// Requests by `VERB resource` in the window.
    pub by_verb_resource: BTreeMap<String, f64>,
}

/// M9.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Qps {
    /// Highest rate of the operator's resource requests over one sample interval (~2 s).
    pub max_interval_rate: f64,
    /// Highest mean rate over ~10 s.
    pub max_10s_rate: f64,
    /// Sample intervals.
    pub intervals: usize,
}

/// One target of issue 7.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// M1…M9.
    pub metric: &'static str,
    /// What was measured.
    pub measured: String,
    /// The target.
    pub target: &'static str,
    /// Whether it was met.
    pub met: bool,
}

/// Everything.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where and how.
    pub setup: Setup,
    /// Floors of this run.
    pub floors: Floors,
    /// M1, M3b.
    pub onboarding: Onboarding,
    /// M2, M3, M6, M7.
    pub steady: Steady,
    /// M4.
    pub memory: Memory,
    /// M5.
    pub staleness: Staleness,
    /// M8.
    pub restart: Restart,
    /// M9.
    pub qps: Qps,
    /// M10 (only with `--failover`).
    pub failover: Option<Failover>,
    /// M11.
    pub cold_start: ColdStart,
    /// Targets checked.
    pub targets: Vec<Target>,
    /// Every sample.
    pub timeline: Vec<Point>,
}

impl Report {
    /// Checks the targets.
    pub fn check(&mut self) {
        let (o, s, m, st, r, q) = (
            &self.onboarding,
            &self.steady,
            &self.memory,
            &self.staleness,
            &self.restart,
            &self.qps,
        );
        let n = self.setup.n;
        let c = &self.cold_start;
        let secs = |t: Option<f64>| t.map_or("never".into(), |t| format!("{t:.1} s"));
        let mut targets = vec![
            Target {
                metric: "M1 onboarding",
                measured: format!(
                    "{:.1} s for {}/{} Ready ({}; 95 % after {}); floor {:.1} s; ratio {:.2}. Operator CPU {:.0} ms per client vs {:.0} ms of keygen ({:.2}x); machine {:.0} % busy",
                    o.wall_s,
                    o.ready,
                    n,
                    o.ended,
                    o.ready_after_s
                        .get("p95")
                        .copied()
                        .flatten()
                        .map_or("never".into(), |t| format!("{t:.1} s")),
                    o.floor_s,
                    o.ratio,
                    o.operator_cpu_ms_per_client,
                    o.keygen_ms_per_client,
                    o.operator_cpu_ms_per_client / o.keygen_ms_per_client.max(1e-9),
                    o.machine_busy * 100.0
                ),
                target: "<= 1.4x floor",
                met: o.ready == n && o.ratio <= 1.4,
            },
            Target {
                metric: "M2 CPU per refresh",
                measured: format!(
                    "{:.2} ms; floor {:.2} ms; ratio {:.2}",
                    s.cpu_ms_per_refresh, self.floors.refresh_path_ms, s.cpu_ratio_to_floor
                ),
                target: "<= 1.3x path floor",
                met: s.refreshes > 0 && s.cpu_ratio_to_floor <= 1.3,
            },
            Target {
                metric: "M3 writes per refresh",
                measured: format!(
                    "Secret {:.2}, status {:.2}, other {:.2}; reconciles {:.2}",
                    s.secret_writes_per_refresh,
                    s.status_writes_per_refresh,
                    s.other_writes_per_refresh,
                    s.reconciles_per_refresh
                ),
                target: "Secret 1.00 (<= 1.02), status 0, no self-triggered reconciles",
                met: s.refreshes > 0
                    && s.secret_writes_per_refresh <= 1.02
                    && s.secret_writes_per_refresh >= 0.98
                    && s.status_writes_per_refresh == 0.0
                    && s.reconciles_per_refresh <= 1.02,
            },
            Target {
                metric: "M3b writes per onboarding",
                measured: format!(
                    "{:.2} per client (+{:.2} events; {:.0} refresh writes of Ready clients not counted)",
                    o.writes_per_client, o.events_per_client, o.refresh_writes
                ),
                target: "<= 5 per client",
                met: o.writes_per_client <= 5.0,
            },
            Target {
                metric: "M4 RSS",
                measured: format!(
                    "peak {:.1} MiB, steady {:.1} MiB; restart peak {:.1} / settled {:.1} = {:.2}",
                    m.peak_mib,
                    m.steady_mib,
                    m.restart_peak_mib,
                    m.restart_settled_mib,
                    m.initial_list_peak_ratio
                ),
                target: "<= 64 MiB + 12 KiB x N; initial-list peak <= 1.3x steady",
                met: m.peak_mib <= m.budget_mib && m.initial_list_peak_ratio <= 1.3,
            },
            Target {
                metric: "M5 staleness",
                measured: format!(
                    "{} expired at worst (onboarding {}, steady {}, failover {}, restart {}; {} of {} samples after onboarding); late p99 {:.2} s, max {:.2} s",
                    st.expired_max,
                    st.expired_max_by_phase.get("onboarding").unwrap_or(&0),
                    st.expired_max_by_phase.get("steady").unwrap_or(&0),
                    st.expired_max_by_phase.get("failover").unwrap_or(&0),
                    st.expired_max_by_phase.get("restart").unwrap_or(&0),
                    st.samples_with_expired,
                    st.samples,
                    st.late_p99_s,
                    st.late_max_s
                ),
                target: "0 expired; p99 late = 0",
                // A failover's window is M10's to judge (its own figure).
                met: ["onboarding", "steady", "restart"]
                    .iter()
                    .all(|p| st.expired_max_by_phase.get(p).copied().unwrap_or(0) == 0)
                    && st.late_p99_s == 0.0,
            },
            Target {
                metric: "M6 burst",
                measured: format!(
                    "max {} /s, mean {:.2} /s, ratio {:.2}",
                    s.max_per_s, s.mean_per_s, s.burst_ratio
                ),
                target: "<= 3",
                met: s.burst_ratio <= 3.0,
            },
            Target {
                metric: "M7 handshakes per refresh",
                measured: format!(
                    "{:.2} ({} full, {} resumed; resumption {:.2})",
                    s.handshakes_per_refresh,
                    s.full_handshakes,
                    s.resumed_handshakes,
                    s.resumption_ratio
                ),
                target: "<= 1.0",
                met: s.handshakes_per_refresh <= 1.0,
            },
            Target {
                metric: "M8 restart",
                measured: format!(
                    "{} minted ({} due, {} premature), {} registrations; write rate {:.2}x steady",
                    r.tokens_minted,
                    r.due,
                    r.premature,
                    r.registrations,
                    r.write_rate_ratio_to_steady
                ),
                target: "0 premature re-mints, no write storm",
                met: r.premature == 0
                    && r.registrations == 0
                    && r.write_rate_ratio_to_steady <= 2.0,
            },
            Target {
                metric: "M9 kube QPS",
                measured: format!(
                    "max {:.1}/s over ~2 s, {:.1}/s over ~10 s (limit {} QPS, burst {})",
                    q.max_interval_rate, q.max_10s_rate, self.setup.kube_qps, self.setup.kube_burst
                ),
                target: "never above the client limit",
                met: q.max_10s_rate <= self.setup.kube_qps * 1.05 + self.setup.kube_burst / 10.0,
            },
        ];
        if let Some(f) = &self.failover {
            targets.push(Target {
                metric: "M10 failover",
                measured: format!(
                    "first refresh {} after the SIGKILL (lease {:.0} s); in {:.0} s: {} minted, {} premature, {} registrations, {} expired at worst; standby RSS {:.1} MiB (leader {:.1} MiB)",
                    secs(f.first_refresh_s),
                    f.lease_duration_s,
                    f.window_s,
                    f.tokens_minted,
                    f.premature,
                    f.registrations,
                    f.expired_max,
                    f.standby_rss_mib,
                    f.leader_rss_mib
                ),
                target: "first due refresh <= lease + 5 s; 0 expired, 0 registrations, 0 premature",
                met: f
                    .first_refresh_s
                    .is_some_and(|t| t <= f.lease_duration_s + 5.0)
                    && f.expired_max == 0
                    && f.registrations == 0
                    && f.premature == 0,
            });
        }
        targets.push(Target {
            metric: "M11 cold start",
            measured: format!(
                "first due refresh {} after the start ({:.0} s after the kill); {:.0} requests for {:.0} list pages + {} refreshes in {:.0} s: ratio {:.2}",
                secs(c.first_refresh_s),
                c.gap_s,
                c.requests,
                c.list_pages,
                c.refreshes,
                c.window_s,
                c.ratio
            ),
            target: "<= 30 s; requests <= 1.05x (list pages + due refreshes)",
            met: c.first_refresh_s.is_some_and(|t| t <= 30.0) && c.ratio <= 1.05,
        });
        self.targets = targets;
    }

    /// The short Markdown table.
    pub fn markdown(&self) -> String {
        let s = &self.setup;
        let mut out = format!(
            "N = {} ({} registration), token lifetime {} s, steady window {:.0} s; {} ({} cores), {}\n\nFloors (thread CPU time): RSA-2048 keygen {:.1} ms (mean of {}), refresh path {:.3} ms (parse+sign {:.3} + handshake {:.3} + apply {:.3})\n\n| metric | measured | target | met |\n| --- | --- | --- | --- |\n",
            s.n,
            s.registration_mode,
            s.token_lifetime_s,
            s.steady_window_s,
            s.cpu,
            s.cores,
            s.kube_version,
            self.floors.keygen_rsa2048_ms,
            self.floors.keygen_samples,
            self.floors.refresh_path_ms,
            self.floors.parse_sign_ms,
            self.floors.handshake_ms,
            self.floors.apply_ms
        );
        for t in &self.targets {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                t.metric,
                t.measured,
                t.target,
                if t.met { "yes" } else { "**no**" }
            ));
        }
        out
    }
}

/// The `p`-quantile (0..=1) of `values` (nearest rank); 0 when empty.
pub fn quantile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_uses_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 1.0), 100.0);
        assert_eq!(quantile(&mut [], 0.99), 0.0);
        let mut zeros = vec![0.0; 200];
        zeros[199] = 5.0;
        assert_eq!(quantile(&mut zeros, 0.99), 0.0);
    }
}
