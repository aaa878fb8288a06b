//! The operator binary as a process, running under the chart's RBAC (the rules in
//! `charts/tpp-operator/files/`) with a ServiceAccount token from the TokenRequest API — so a
//! missing verb is a real 403. One operator per test, watching only that test's namespace, so
//! tests can kill and restart it freely. Process and Kubernetes I/O.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};

use crate::{
    control_plane::{ControlPlane, kubeconfig_yaml, repo_root},
    process::{ChildGuard, free_port, spawn},
};

/// Namespace of the operator's ServiceAccount and leader-election Lease in e2e runs.
pub const OPERATOR_NAMESPACE: &str = "tpp-system";
/// Name of the ServiceAccount, ClusterRole and bindings (the chart's release name).
pub const RELEASE: &str = "tpp-operator";

/// Path of the operator binary: `$TPP_OPERATOR_BIN`, else `tpp-operator` beside the running
/// binary (a bin in `target/<profile>/`) or one folder up (a test in `target/<profile>/deps/`).
pub fn operator_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TPP_OPERATOR_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let beside = exe.with_file_name("tpp-operator");
    if beside.is_file() {
        return beside;
    }
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("tpp-operator"))
        .unwrap_or_default()
}

/// Write `text` to `path` readable by the owner only (kubeconfigs hold a ServiceAccount token).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

fn rules(file: &str) -> Result<Vec<PolicyRule>> {
    let path = repo_root().join("charts/tpp-operator/files").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(serde_yaml::from_str(&text)?)
}

/// Install the chart's ServiceAccount and RBAC (idempotent) and return a kubeconfig with a
/// fresh ServiceAccount token.
pub async fn operator_kubeconfig(cp: &ControlPlane, admin: &Client) -> Result<String> {
    let pp = PatchParams::apply("e2e").force();
    let meta = |name: &str, ns: Option<&str>| ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    };
    Api::<Namespace>::all(admin.clone())
        .patch(
            OPERATOR_NAMESPACE,
            &pp,
            &Patch::Apply(Namespace {
                metadata: meta(OPERATOR_NAMESPACE, None),
                ..Default::default()
            }),
        )
        .await?;
    let sa_api: Api<ServiceAccount> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    sa_api
        .patch(
            RELEASE,
            &pp,
            &Patch::Apply(ServiceAccount {
                metadata: meta(RELEASE, Some(OPERATOR_NAMESPACE)),
                ..Default::default()
            }),
        )
        .await?;
    let subject = vec![Subject {
        kind: "ServiceAccount".into(),
        name: RELEASE.into(),
        namespace: Some(OPERATOR_NAMESPACE.into()),
        ..Default::default()
    }];
    Api::<ClusterRole>::all(admin.clone())
        .patch(
            RELEASE,
            &pp,
            &Patch::Apply(ClusterRole {
                metadata: meta(RELEASE, None),
                // The chart's cluster-wide mode (watchNamespaces: []): every file in one
                // ClusterRole, since every e2e test runs its operator in its own namespace.
                rules: Some(
                    [
                        rules("cluster-rules.yaml")?,
                        rules("namespace-rules.yaml")?,
                        rules("consumer-rules.yaml")?,
                        rules("metrics-auth-rules.yaml")?,
                    ]
                    .concat(),
                ),
                ..Default::default()
            }),
        )
        .await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            RELEASE,
            &pp,
            &Patch::Apply(ClusterRoleBinding {
                metadata: meta(RELEASE, None),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: RELEASE.into(),
                },
                subjects: Some(subject.clone()),
            }),
        )
        .await?;
    let le = format!("{RELEASE}-leader-election");
    Api::<Role>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .patch(
            &le,
            &pp,
            &Patch::Apply(Role {
                metadata: meta(&le, Some(OPERATOR_NAMESPACE)),
                rules: Some(rules("leader-election-rules.yaml")?),
            }),
        )
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .patch(
            &le,
            &pp,
            &Patch::Apply(RoleBinding {
                metadata: meta(&le, Some(OPERATOR_NAMESPACE)),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: le.clone(),
                },
                subjects: Some(subject),
            }),
        )
        .await?;
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600 * 4),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tr = sa_api
        .create_token_request(RELEASE, &PostParams::default(), &tr)
        .await
        .context("TokenRequest")?;
    let token = tr
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")?;
    Ok(kubeconfig_yaml(
        &cp.server,
        &cp.ca.cert_pem,
        None,
        Some(&token),
    ))
}

/// The chart's RBAC with `watchNamespaces` set to `namespaces`: a ServiceAccount of its own in
/// the operator's namespace, a ClusterRole with `cluster-rules.yaml` only, and in each watched
/// namespace a Role with `namespace-rules.yaml` and `consumer-rules.yaml` (so Secrets are granted
/// nowhere else). Returns a kubeconfig with a fresh token of that ServiceAccount.
pub async fn namespaced_operator_kubeconfig(
    cp: &ControlPlane,
    admin: &Client,
    namespaces: &[String],
) -> Result<String> {
    // The cluster-wide objects (namespace, leader-election Role) come from the usual install.
    operator_kubeconfig(cp, admin).await?;
    let pp = PatchParams::apply("e2e").force();
    let meta = |name: &str, ns: Option<&str>| ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..Default::default()
    };
    let sa = format!(
        "{RELEASE}-ns-{}",
        namespaces.first().context("a namespace")?
    );
    let sa_api: Api<ServiceAccount> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    sa_api
        .patch(
            &sa,
            &pp,
            &Patch::Apply(ServiceAccount {
                metadata: meta(&sa, Some(OPERATOR_NAMESPACE)),
                ..Default::default()
            }),
        )
        .await?;
    let subject = vec![Subject {
        kind: "ServiceAccount".into(),
        name: sa.clone(),
        namespace: Some(OPERATOR_NAMESPACE.into()),
        ..Default::default()
    }];
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    };
    Api::<ClusterRole>::all(admin.clone())
        .patch(
            &sa,
            &pp,
            &Patch::Apply(ClusterRole {
                metadata: meta(&sa, None),
                rules: Some(rules("cluster-rules.yaml")?),
                ..Default::default()
            }),
        )
        .await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &sa,
            &pp,
            &Patch::Apply(ClusterRoleBinding {
                metadata: meta(&sa, None),
                role_ref: role_ref("ClusterRole", &sa),
                subjects: Some(subject.clone()),
            }),
        )
        .await?;
    let namespaced_rules = [
        rules("namespace-rules.yaml")?,
        rules("consumer-rules.yaml")?,
    ]
    .concat();
    for ns in namespaces {
        Api::<Role>::namespaced(admin.clone(), ns)
            .patch(
                &sa,
                &pp,
                &Patch::Apply(Role {
                    metadata: meta(&sa, Some(ns)),
                    rules: Some(namespaced_rules.clone()),
                }),
            )
            .await?;
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .patch(
                &sa,
                &pp,
                &Patch::Apply(RoleBinding {
                    metadata: meta(&sa, Some(ns)),
                    role_ref: role_ref("Role", &sa),
                    subjects: Some(subject.clone()),
                }),
            )
            .await?;
    }
    let le = format!("{sa}-leader-election");
    Api::<RoleBinding>::namespaced(admin.clone(), OPERATOR_NAMESPACE)
        .patch(
            &le,
            &pp,
            &Patch::Apply(RoleBinding {
                metadata: meta(&le, Some(OPERATOR_NAMESPACE)),
                role_ref: role_ref("Role", &format!("{RELEASE}-leader-election")),
                subjects: Some(subject),
            }),
        )
        .await?;
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600 * 4),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = sa_api
        .create_token_request(&sa, &PostParams::default(), &tr)
        .await
        .context("TokenRequest")?
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")?;
    Ok(kubeconfig_yaml(
        &cp.server,
        &cp.ca.cert_pem,
        None,
        Some(&token),
    ))
}

/// Options for one operator process.
#[derive(Clone, Debug, Default)]
pub struct OperatorOptions {
    /// Namespaces to watch (normally the test's own).
    pub namespaces: Vec<String>,
    /// Extra flags.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Admin server address (default: a free loopback port).
    pub admin_address: Option<std::net::SocketAddr>,
    /// JWKS server address (default: a free loopback port).
    pub jwks_address: Option<std::net::SocketAddr>,
    /// Folder for the kubeconfig and a fresh `operator.log` (default: the control plane's run
    /// folder, with a random suffix).
    pub dir: Option<PathBuf>,
    /// `RUST_LOG` (default `$E2E_OPERATOR_LOG`, else `info,tpp_operator=debug`).
    pub log_filter: Option<String>,
    /// `FAILPOINTS` for the process (the binary must be built with `--features failpoints`,
    /// as `make test-e2e` does): `name=action;...`, see docs/reliability.md.
    pub failpoints: Option<String>,
    /// Run under the chart's namespaced RBAC (`watchNamespaces` = `namespaces`) instead of its
    /// cluster-wide one: see [`namespaced_operator_kubeconfig`].
    pub namespaced_rbac: bool,
}

/// A running operator.
pub struct OperatorProcess {
    child: ChildGuard,
    kubeconfig: PathBuf,
    options: OperatorOptions,
    /// `http://127.0.0.1:<port>` of its admin server (health, readiness, metrics).
    pub admin_url: String,
    admin_address: std::net::SocketAddr,
    /// `http://127.0.0.1:<port>` of its public JWKS server (`/jwks/{namespace}/{name}`).
    pub jwks_url: String,
    jwks_address: std::net::SocketAddr,
    log: PathBuf,
}

impl OperatorProcess {
    /// Start the operator binary under the chart's RBAC.
    pub async fn start(
        cp: &ControlPlane,
        admin: &Client,
        options: OperatorOptions,
    ) -> Result<Self> {
        let kubeconfig_text = if options.namespaced_rbac {
            namespaced_operator_kubeconfig(cp, admin, &options.namespaces).await
        } else {
            operator_kubeconfig(cp, admin).await
        }
        .context("install the operator's RBAC")?;
        let (kubeconfig, log) = match &options.dir {
            Some(dir) => (dir.join("operator.kubeconfig"), dir.join("operator.log")),
            None => {
                let tag = format!("{:08x}", rand::random::<u32>());
                (
                    cp.dir.join(format!("operator-{tag}.kubeconfig")),
                    cp.dir.join(format!("operator-{tag}.log")),
                )
            }
        };
        write_private(&kubeconfig, &kubeconfig_text)?;
        // A fresh log per start (a restart appends).
        std::fs::write(&log, "").with_context(|| format!("truncate {}", log.display()))?;
        let admin_address = match options.admin_address {
            Some(a) => a,
            None => std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        };
        let jwks_address = match options.jwks_address {
            Some(a) => a,
            None => std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        };
        let child = Self::spawn(&kubeconfig, (admin_address, jwks_address), &options, &log)?;
        let mut me = Self {
            child,
            kubeconfig,
            options,
            admin_url: format!("http://{admin_address}"),
            admin_address,
            jwks_url: format!("http://{jwks_address}"),
            jwks_address,
            log,
        };
        me.wait_healthy(Duration::from_secs(30)).await?;
        Ok(me)
    }

    fn spawn(
        kubeconfig: &Path,
        (admin_address, jwks_address): (std::net::SocketAddr, std::net::SocketAddr),
        o: &OperatorOptions,
        log: &Path,
    ) -> Result<ChildGuard> {
        let bin = operator_binary();
        anyhow::ensure!(
            bin.is_file(),
            "{} not found: run `cargo build -p tpp-operator --bins` (make test does)",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                o.log_filter.clone().unwrap_or_else(|| {
                    std::env::var("E2E_OPERATOR_LOG")
                        .unwrap_or_else(|_| "info,tpp_operator=debug".into())
                }),
            )
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .arg("--admin-address")
            .arg(admin_address.to_string())
            .arg("--jwks-address")
            .arg(jwks_address.to_string())
            // Every AS of the tests (the sandbox, the oidc-provider peer, loopback servers) runs
            // on 127.0.0.1: the egress policy refuses loopback unless listed.
            .arg("--allowed-as-hosts")
            .arg("127.0.0.1,localhost");
        if !o.namespaces.is_empty() {
            cmd.arg("--namespaces").arg(o.namespaces.join(","));
        }
        cmd.args(&o.args);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        match &o.failpoints {
            Some(spec) => cmd.env("FAILPOINTS", spec),
            None => cmd.env_remove("FAILPOINTS"),
        };
        spawn("tpp-operator", cmd, log)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            anyhow::ensure!(
                self.child.is_running(),
                "the operator exited at start; log:\n{}",
                self.child.log_tail(4000)
            );
            if let Ok(r) = http.get(format!("{}/healthz", self.admin_url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "operator not healthy after {timeout:?}; log:\n{}",
            self.child.log_tail(4000)
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// SIGTERM, then SIGKILL after `timeout` (a clean stop).
    pub fn stop(&mut self, timeout: Duration) {
        self.child.terminate(timeout);
    }

    /// Kill with SIGKILL (a crash).
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGSTOP: the process freezes (a stalled leader: no renewals, nothing runs).
    pub fn pause(&mut self) {
        self.child.freeze(true);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&mut self) {
        self.child.freeze(false);
    }

    /// Start again after a kill, same kubeconfig, same admin port, same log file.
    pub async fn restart(&mut self) -> Result<()> {
        self.child.kill();
        self.child = Self::spawn(
            &self.kubeconfig,
            (self.admin_address, self.jwks_address),
            &self.options,
            &self.log,
        )?;
        self.wait_healthy(Duration::from_secs(30)).await
    }

    /// Replaces the extra flags for the next [`Self::restart`].
    pub fn set_args(&mut self, args: Vec<String>) {
        self.options.args = args;
    }

    /// The process id (for signals and diagnostics).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The text of its `/metrics` (Prometheus exposition format).
    pub async fn metrics(&self) -> Result<String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let r = http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.text().await?)
    }

    /// Start again (after a kill or a crash) with `failpoints` instead of the ones it ran with.
    pub async fn restart_with_failpoints(&mut self, failpoints: Option<String>) -> Result<()> {
        self.options.failpoints = failpoints;
        self.restart().await
    }

    /// Wait until the process has exited (e.g. a failpoint aborted it); false after `timeout`.
    pub async fn wait_exited(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !self.child.is_running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        !self.child.is_running()
    }

    /// Wait until this process exports `tpp_operator_client_ready{…} 1` for the client: only a
    /// reconcile of this very process that ended Ready sets it (a restarted process starts
    /// without the series). Errors after `timeout`.
    pub async fn wait_reconciled_ready(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
        timeout: Duration,
    ) -> Result<()> {
        let series = format!(
            "tpp_operator_client_ready{{namespace=\"{namespace}\",name=\"{name}\",server=\"{server}\"}} 1"
        );
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self
                .metrics()
                .await
                .is_ok_and(|m| m.lines().any(|l| l == series))
            {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "after {timeout:?} this operator process has not reconciled {namespace}/{name} to Ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of the operator's log.
    pub fn log_tail(&self, max: u64) -> String {
        self.child.log_tail(max)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file path.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }
}
