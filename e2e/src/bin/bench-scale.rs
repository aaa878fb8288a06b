//! `bench-scale`: the scale benchmark of issue 7 (`make bench-scale N=…`). Starts a real
//! control plane, the sandbox AS and the release operator binary (`$TPP_OPERATOR_BIN`, else
//! `tpp-operator` beside this binary), applies N TppClients at once, and writes a JSON report
//! and a Markdown table (also printed). See BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use e2e::scale::run::{Options, run};

/// Scale benchmark: N TppClients against the physical floor.
#[derive(Debug, Parser)]
struct Args {
    /// TppClients applied at once.
    #[arg(long, short, default_value_t = 200)]
    n: usize,
    /// Access-token lifetime at the sandbox AS, s (default: max(30, N/20), so refreshes stay
    /// near 30/s, within the operator's default 100 QPS kube budget).
    #[arg(long)]
    token_lifetime: Option<u64>,
    /// Steady-state window, s (default: 2 token lifetimes).
    #[arg(long)]
    steady: Option<u64>,
    /// Longest wait for all N Ready, s (default: max(180, N x 0.6)).
    #[arg(long)]
    onboard_timeout: Option<u64>,
    /// Stop waiting for Ready when no client became Ready for this long, s.
    #[arg(long, default_value_t = 60)]
    stall: u64,
    /// Operator log filter.
    #[arg(long, default_value = "info")]
    operator_log: String,
    /// Report files: `<out>.json` and `<out>.md` (default: target/bench-scale/n followed by N).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the control plane's run folder in the temp dir.
    #[arg(long)]
    keep: bool,
    /// M10: run the chart's two replicas with leader election and SIGKILL the leader after
    /// the steady window.
    #[arg(long)]
    failover: bool,
    /// M11: seconds between the kill and the cold start of the restarted process.
    #[arg(long, default_value_t = 5)]
    cold_start_gap: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if std::env::var_os("TPP_OPERATOR_BIN").is_none() {
        let beside = std::env::current_exe()?.with_file_name("tpp-operator");
        // SAFETY: no other thread exists yet (the runtime is built below).
        unsafe { std::env::set_var("TPP_OPERATOR_BIN", &beside) };
    }
    let lifetime = args.token_lifetime.unwrap_or((args.n as u64 / 20).max(30));
    let options = Options {
        n: args.n,
        token_lifetime: Duration::from_secs(lifetime),
        steady: Duration::from_secs(args.steady.unwrap_or(2 * lifetime)),
        onboard_timeout: Duration::from_secs(
            args.onboard_timeout
                .unwrap_or((args.n as u64 * 6 / 10).max(180)),
        ),
        stall: Duration::from_secs(args.stall),
        operator_log: args.operator_log,
        keep: args.keep,
        failover: args.failover,
        cold_start_gap: Duration::from_secs(args.cold_start_gap),
    };
    let out = args.out.unwrap_or_else(|| {
        e2e::control_plane::repo_root().join(format!("target/bench-scale/n{}", args.n))
    });
    let report = tokio::runtime::Runtime::new()?.block_on(run(&options))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.with_extension("json"), &json).context("write json")?;
    std::fs::write(out.with_extension("md"), report.markdown()).context("write markdown")?;
    println!("{}", report.markdown());
    println!("JSON report: {}", out.with_extension("json").display());
    Ok(())
}
