//! The demo's operator process: the real `tpp-operator` binary under the chart's RBAC (with a
//! ServiceAccount token, as in the e2e tier), watching one namespace, its admin server on a
//! fixed loopback port when that port is free so the printed URLs are easy to type, its log in
//! the demo folder. Process, network and file I/O.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use kube::Client;

use crate::{
    control_plane::ControlPlane,
    operator::{OPERATOR_NAMESPACE, operator_kubeconfig},
    process::{ChildGuard, free_port, spawn},
};

/// A running operator.
pub struct DemoOperator {
    child: ChildGuard,
    /// `http://127.0.0.1:<port>` of its admin server.
    pub admin_url: String,
    /// Its log file.
    pub log: PathBuf,
}

/// The operator binary: `$TPP_OPERATOR_BIN`, else `tpp-operator` next to the running binary
/// (`cargo build --bins` puts both in `target/<profile>/`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TPP_OPERATOR_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name("tpp-operator")
}

/// `127.0.0.1:<preferred>` if it can be bound now, else a free loopback port.
pub fn admin_address(preferred: u16) -> Result<SocketAddr> {
    let port = match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(l) => l.local_addr()?.port(),
        Err(_) => free_port()?,
    };
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl DemoOperator {
    /// Install the chart's RBAC, write the operator's kubeconfig to `dir` (mode 0600: it holds
    /// a ServiceAccount token), start the binary and wait for `/healthz`.
    pub async fn start(cp: &ControlPlane, admin: &Client, namespace: &str, address: SocketAddr, dir: &Path) -> Result<Self> {
        let bin = binary();
        anyhow::ensure!(bin.is_file(), "{} not found: run `cargo build -p tpp-operator --bins` (make demo does)", bin.display());
        let kubeconfig = dir.join("operator.kubeconfig");
        super::write_private(&kubeconfig, &operator_kubeconfig(cp, admin).await.context("install the operator's RBAC")?)?;
        let log = dir.join("operator.log");
        // A fresh log per run.
        std::fs::write(&log, "").with_context(|| format!("truncate {}", log.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", std::env::var("DEMO_OPERATOR_LOG").unwrap_or_else(|_| "info".into()))
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            // A log file, not a terminal: no colour codes.
            .env("NO_COLOR", "1")
            .arg("--admin-address")
            .arg(address.to_string())
            .arg("--namespaces")
            .arg(namespace);
        let child = spawn("tpp-operator", cmd, &log)?;
        let mut me = Self { child, admin_url: format!("http://{address}"), log };
        me.wait_healthy(Duration::from_secs(30)).await?;
        Ok(me)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            anyhow::ensure!(self.child.is_running(), "the operator exited at start; log:\n{}", self.log_tail(4000));
            if let Ok(r) = http.get(format!("{}/healthz", self.admin_url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("operator not healthy after {timeout:?}; log:\n{}", self.log_tail(4000))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: u64) -> String {
        self.child.log_tail(max)
    }

    /// SIGTERM, then SIGKILL after `timeout`.
    pub fn stop(&mut self, timeout: Duration) {
        self.child.terminate(timeout);
    }
}
