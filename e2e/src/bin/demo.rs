//! `demo` (run by `make demo`): a local control plane, the sandbox AS and the operator running
//! the `examples/` Static TppClient; prints what the operator made, then one line per token
//! refresh until Ctrl-C or SIGTERM, and exits 0 after stopping everything it started.
//! `DEMO_EXIT_AFTER_READY=1` (or `--once`) exits as soon as the summary is printed.
//! Its own and the sandbox's logs go to `<dir>/demo.log`; the operator's to `<dir>/operator.log`.

use std::{path::PathBuf, process::ExitCode, sync::Mutex, time::Duration};

use anyhow::Context as _;
use clap::{ArgAction, Parser, builder::FalseyValueParser};
use e2e::demo::{Demo, DemoOptions, shown};
use tokio::sync::watch;

/// Local control plane + sandbox AS + tpp-operator with an example TppClient.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct Cli {
    /// Exit (0) once the TppClient is Ready and the summary is printed.
    #[arg(long, env = "DEMO_EXIT_AFTER_READY", action = ArgAction::SetTrue, value_parser = FalseyValueParser::new())]
    once: bool,
    /// Folder for the kubeconfig, manifests, logs and sandbox CA (default: `.demo/` in the
    /// repository).
    #[arg(long, env = "DEMO_DIR")]
    dir: Option<PathBuf>,
    /// Namespace of the demo objects.
    #[arg(long, env = "DEMO_NAMESPACE", default_value = "demo")]
    namespace: String,
    /// Preferred loopback port of the operator's admin server (a free one when taken).
    #[arg(long, env = "DEMO_ADMIN_PORT", default_value_t = 8080)]
    admin_port: u16,
    /// Preferred loopback port of the operator's JWKS server (a free one when taken).
    #[arg(long, env = "DEMO_JWKS_PORT", default_value_t = 8081)]
    jwks_port: u16,
    /// Lifetime of the sandbox's access tokens, in seconds.
    #[arg(long, env = "DEMO_TOKEN_LIFETIME_SECS", default_value_t = 60)]
    token_lifetime_secs: u64,
    /// How long to wait for Ready, in seconds.
    #[arg(long, env = "DEMO_READY_TIMEOUT_SECS", default_value_t = 120)]
    ready_timeout_secs: u64,
}

async fn signalled() {
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

async fn after_start(
    demo: &mut Demo,
    once: bool,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    demo.apply_examples().await?;
    let ready = demo.wait_ready().await?;
    let secret = demo.print_summary(&ready).await?;
    if once {
        println!("==> DEMO_EXIT_AFTER_READY: stopping");
        return Ok(());
    }
    demo.follow_refreshes(&secret, stop).await
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = cli
        .dir
        .unwrap_or_else(|| e2e::control_plane::repo_root().join(".demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let log = std::fs::File::create(dir.join("demo.log")).context("create demo.log")?;
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(Mutex::new(log))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEMO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let options = DemoOptions {
        dir: dir.clone(),
        namespace: cli.namespace,
        admin_port: cli.admin_port,
        jwks_port: cli.jwks_port,
        token_lifetime: Duration::from_secs(cli.token_lifetime_secs),
        ready_timeout: Duration::from_secs(cli.ready_timeout_secs),
    };

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signalled().await;
        let _ = stop_tx.send(true);
    });
    // A signal while starting drops what was started (children are killed by their guards).
    let mut demo = tokio::select! {
        demo = Demo::start(options) => demo?,
        _ = stop_rx.wait_for(|s| *s) => {
            println!("==> interrupted while starting; stopped");
            return Ok(());
        }
    };
    let outcome = tokio::select! {
        r = after_start(&mut demo, cli.once, stop_rx.clone()) => r,
        _ = stop_rx.wait_for(|s| *s) => Ok(()),
    };
    demo.shutdown().await;
    outcome.with_context(|| format!("logs are in {}", shown(&dir)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn once_switch_is_off_unless_asked() {
        let on = Cli::try_parse_from(["demo", "--once"]).unwrap();
        assert!(on.once);
        let off = Cli::try_parse_from(["demo"]).unwrap();
        assert!(!off.once);
    }
}
