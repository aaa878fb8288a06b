//! A real etcd + kube-apiserver on free loopback ports (docs/test-infrastructure.md Part A), built
//! from Go modules by `hack/build-control-plane.sh`, with a throw-away PKI. One per test binary,
//! started lazily and shared ([`shared`]); every test builds its own kube client from it. Does
//! process and network I/O.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    pki::{CertPair, TestCa, service_account_key},
    process::{ChildGuard, free_port, spawn, tail},
};

/// The pinned Kubernetes version (from `hack/versions.env`).
pub fn kube_version() -> &'static str {
    include_str!("../../hack/versions.env")
        .lines()
        .find_map(|l| l.strip_prefix("KUBE_VERSION="))
        .unwrap_or("unknown")
        .trim()
}

/// The version the control plane under test must report: `$TPP_KUBE_VERSION` when set (`make
/// test-compat` runs the e2e tier on `KUBE_VERSION_OLDEST`, docs/compatibility.md), else the
/// pinned [`kube_version`].
pub fn expected_kube_version() -> String {
    std::env::var("TPP_KUBE_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| kube_version().to_owned())
}

/// Where the control-plane binaries are: `$TPP_CONTROL_PLANE_DIR`, else the build script's
/// default cache folder.
pub fn binaries_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TPP_CONTROL_PLANE_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("TPP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tpp-operator")
        });
    cache.join("control-plane").join(expected_kube_version())
}

/// The repository root (for `crds/`, `charts/`, `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A running control plane.
pub struct ControlPlane {
    /// Run folder: PKI, kubeconfig, etcd data, logs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The test CA (signed the apiserver's serving and admin certificates).
    pub ca: TestCa,
    /// Admin kubeconfig YAML (`O=system:masters`).
    pub admin_kubeconfig: String,
    /// Path of the admin kubeconfig file.
    pub admin_kubeconfig_path: PathBuf,
    /// The `kube-apiserver --version` line.
    pub version: String,
    etcd: Mutex<ChildGuard>,
    apiserver: Mutex<ChildGuard>,
    /// How each daemon was started, to start it again ([`ControlPlane::restart_apiserver`],
    /// [`ControlPlane::start_etcd`]): same ports, same data folder.
    etcd_command: Relaunch,
    apiserver_command: Relaunch,
    /// `http://127.0.0.1:<port>` of etcd (plain HTTP on loopback; its v3 JSON gateway too).
    pub etcd_url: String,
    admin: CertPair,
}

/// A daemon's program and arguments, kept to start it again.
struct Relaunch {
    name: &'static str,
    command: Command,
    log: PathBuf,
}

impl Relaunch {
    fn command(&self) -> Command {
        let mut c = Command::new(self.command.get_program());
        c.args(self.command.get_args());
        c
    }

    fn spawn(&self) -> Result<ChildGuard> {
        let child = spawn(self.name, self.command(), &self.log)?;
        register_for_exit_kill(child.pid());
        Ok(child)
    }
}

/// How a control plane is started.
#[derive(Clone, Copy, Debug)]
pub struct ControlPlaneOptions {
    /// Run the ServiceAccount admission plugin (pods get their token volume). Off for the
    /// tiers without a node: no kube-controller-manager creates the `default` ServiceAccounts
    /// that the plugin requires.
    pub service_account_admission: bool,
    /// Install the CRDs from `crds/` (the node tier leaves that to `helm install`).
    pub install_crds: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            service_account_admission: false,
            install_crds: true,
        }
    }
}

impl ControlPlane {
    /// Build, start and wait for etcd and kube-apiserver, then install the CRDs from `crds/`.
    pub async fn start() -> Result<Self> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// [`ControlPlane::start`] with options.
    pub async fn start_with(options: ControlPlaneOptions) -> Result<Self> {
        let bin = binaries_dir();
        for b in ["etcd", "kube-apiserver"] {
            if !bin.join(b).is_file() {
                bail!(
                    "{} not found: build the control plane first (`make control-plane`, or set TPP_CONTROL_PLANE_DIR)",
                    bin.join(b).display()
                );
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "tpp-e2e-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("certs"))?;
        register_dir_for_exit_removal(dir.clone());
        let ca = TestCa::new("tpp-e2e-ca")?;
        let serving = ca.server_cert("kube-apiserver", &["kubernetes.default.svc"])?;
        let admin = ca.client_cert("e2e-admin", &["system:masters"])?;
        let (sa_key, sa_pub) = service_account_key()?;
        let w = |name: &str, body: &str| -> Result<PathBuf> {
            let p = dir.join("certs").join(name);
            std::fs::write(&p, body)?;
            Ok(p)
        };
        let ca_path = w("ca.crt", &ca.cert_pem)?;
        let serving_crt = w("apiserver.crt", &serving.cert_pem)?;
        let serving_key = w("apiserver.key", &serving.key_pem)?;
        let sa_key_path = w("sa.key", &sa_key)?;
        let sa_pub_path = w("sa.pub", &sa_pub)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.args(["--name", "e2e", "--data-dir"])
            .arg(dir.join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("e2e=http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
                "--quota-backend-bytes",
                "2147483648",
            ]);
        let etcd_command = Relaunch {
            name: "etcd",
            command: etcd,
            log: dir.join("etcd.log"),
        };
        let etcd = etcd_command.spawn()?;
        wait_http_ok(&format!("{etcd_url}/health"), None, Duration::from_secs(30))
            .await
            .with_context(|| {
                format!(
                    "etcd did not become healthy; log:\n{}",
                    tail(&dir.join("etcd.log"), 4000)
                )
            })?;

        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let mut api = Command::new(bin.join("kube-apiserver"));
        api.arg(format!("--etcd-servers={etcd_url}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={}", serving_crt.display()))
            .arg(format!("--tls-private-key-file={}", serving_key.display()))
            .arg(format!("--client-ca-file={}", ca_path.display()))
            .args(["--anonymous-auth=false", "--authorization-mode=RBAC"])
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key_path.display()
            ))
            .arg(format!(
                "--service-account-key-file={}",
                sa_pub_path.display()
            ))
            .args([
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
            ])
            .arg("--allow-privileged=true")
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .args(["--profiling=false", "--v=1"]);
        if !options.service_account_admission {
            api.arg("--disable-admission-plugins=ServiceAccount");
        }
        let apiserver_command = Relaunch {
            name: "kube-apiserver",
            command: api,
            log: dir.join("kube-apiserver.log"),
        };
        let apiserver = apiserver_command.spawn()?;
        wait_http_ok(
            &format!("{server}/readyz"),
            Some((&ca.cert_pem, &admin)),
            Duration::from_secs(120),
        )
        .await
        .with_context(|| {
            format!(
                "kube-apiserver not ready; log:\n{}",
                tail(&dir.join("kube-apiserver.log"), 6000)
            )
        })?;

        let admin_kubeconfig = kubeconfig_yaml(&server, &ca.cert_pem, Some(&admin), None);
        let admin_kubeconfig_path = dir.join("admin.kubeconfig");
        std::fs::write(&admin_kubeconfig_path, &admin_kubeconfig)?;
        let version = String::from_utf8_lossy(
            &Command::new(bin.join("kube-apiserver"))
                .arg("--version")
                .output()?
                .stdout,
        )
        .trim()
        .to_owned();
        let cp = Self {
            dir,
            server,
            ca,
            admin_kubeconfig,
            admin_kubeconfig_path,
            version,
            etcd: Mutex::new(etcd),
            apiserver: Mutex::new(apiserver),
            etcd_command,
            apiserver_command,
            etcd_url,
            admin,
        };
        if options.install_crds {
            cp.install_crds().await?;
        }
        eprintln!(
            "e2e: control plane {} at {} (run dir {})",
            cp.version,
            cp.server,
            cp.dir.display()
        );
        Ok(cp)
    }

    /// A kube client authenticated as the admin (`system:masters`).
    pub async fn admin_client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    /// Install (server-side apply) every CRD in `crds/` and wait until each is Established.
    pub async fn install_crds(&self) -> Result<()> {
        let client = self.admin_client().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let mut names = vec![];
        let mut entries: Vec<_> =
            std::fs::read_dir(repo_root().join("crds"))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let text = std::fs::read_to_string(entry.path())?;
            let crd: CustomResourceDefinition = serde_yaml::from_str(&text)
                .with_context(|| format!("parse {}", entry.path().display()))?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("install CRD {name}"))?;
            names.push(name);
        }
        for name in names {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let crd = api.get(&name).await?;
                let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("CRD {name} not Established after 30s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Stop kube-apiserver (SIGTERM to the PID it was started with, SIGKILL after 10 s), start it
    /// again with the same flags and port, and wait until it is ready (up to 120 s). Clients keep
    /// their configuration: the address, CA and credentials do not change. Returns how long the
    /// API was unavailable.
    pub async fn restart_apiserver(&self) -> Result<Duration> {
        let stopped_at = Instant::now();
        self.replace(&self.apiserver, &self.apiserver_command, true)?;
        wait_http_ok(
            &format!("{}/readyz", self.server),
            Some((&self.ca.cert_pem, &self.admin)),
            Duration::from_secs(120),
        )
        .await
        .with_context(|| {
            format!(
                "kube-apiserver not ready after a restart; log:\n{}",
                tail(&self.apiserver_command.log, 6000)
            )
        })?;
        Ok(stopped_at.elapsed())
    }

    /// Stop etcd: SIGKILL to the PID it was started with (a crash or a lost node, as far as
    /// kube-apiserver can tell). [`ControlPlane::start_etcd`] brings it back with its data.
    pub fn stop_etcd(&self) -> Result<()> {
        let mut etcd = self
            .etcd
            .lock()
            .map_err(|_| anyhow::anyhow!("etcd guard poisoned"))?;
        unregister_exit_kill(etcd.pid());
        etcd.kill();
        Ok(())
    }

    /// Start etcd again (same data folder and ports) and wait until it is healthy (30 s).
    pub async fn start_etcd(&self) -> Result<()> {
        self.replace(&self.etcd, &self.etcd_command, false)?;
        wait_http_ok(
            &format!("{}/health", self.etcd_url),
            None,
            Duration::from_secs(30),
        )
        .await
        .with_context(|| {
            format!(
                "etcd did not become healthy again; log:\n{}",
                tail(&self.etcd_command.log, 4000)
            )
        })
    }

    /// Compact etcd's history up to its current revision (through etcd's v3 JSON gateway), so
    /// that a watch resumed from any older `resourceVersion` is answered `410 Gone` once
    /// kube-apiserver's watch cache no longer holds it. Returns the revision compacted to.
    pub async fn compact_etcd(&self) -> Result<i64> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let status: serde_json::Value = http
            .post(format!("{}/v3/maintenance/status", self.etcd_url))
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let revision: i64 = status["header"]["revision"]
            .as_str()
            .context("etcd status carries no revision")?
            .parse()?;
        http.post(format!("{}/v3/kv/compaction", self.etcd_url))
            .json(&serde_json::json!({"revision": revision.to_string(), "physical": true}))
            .send()
            .await?
            .error_for_status()
            .context("etcd compaction")?;
        Ok(revision)
    }

    /// Stop the daemon `guard` holds by its recorded PID (SIGTERM first when `graceful`), start
    /// it again from `how`, and keep the new guard.
    fn replace(&self, guard: &Mutex<ChildGuard>, how: &Relaunch, graceful: bool) -> Result<()> {
        let mut g = guard
            .lock()
            .map_err(|_| anyhow::anyhow!("{} guard poisoned", how.name))?;
        unregister_exit_kill(g.pid());
        if graceful {
            g.terminate(Duration::from_secs(10));
        } else {
            g.kill();
        }
        *g = how.spawn()?;
        Ok(())
    }

    /// The tails of the etcd and kube-apiserver logs (for failure dumps).
    pub fn log_tails(&self, max: u64) -> String {
        let mut out = String::new();
        for guard in [&self.etcd, &self.apiserver] {
            if let Ok(g) = guard.lock() {
                out.push_str(&format!(
                    "----- {} log (tail) -----\n{}\n",
                    g.name(),
                    g.log_tail(max)
                ));
            }
        }
        out
    }
}

/// A kubeconfig document for `server`, trusting `ca_pem`, with a client certificate or a bearer
/// token.
pub fn kubeconfig_yaml(
    server: &str,
    ca_pem: &str,
    cert: Option<&CertPair>,
    token: Option<&str>,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut user = String::new();
    if let Some(c) = cert {
        user.push_str(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&c.cert_pem),
            b64(&c.key_pem)
        ));
    }
    if let Some(t) = token {
        user.push_str(&format!("    token: {t}\n"));
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: user\n  user:\n{user}contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: user\ncurrent-context: e2e\n",
        b64(ca_pem)
    )
}

/// A kube client from kubeconfig YAML.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<Client> {
    let kc = Kubeconfig::from_yaml(yaml)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn wait_http_ok(url: &str, tls: Option<(&str, &CertPair)>, timeout: Duration) -> Result<()> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some((ca, cert)) = tls {
        builder = builder
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes())?])
            .identity(reqwest::Identity::from_pem(
                format!("{}\n{}", cert.cert_pem, cert.key_pem).as_bytes(),
            )?);
    }
    let http = builder.build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match http.get(url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("{url} not ready after {timeout:?}: {last}")
}

static EXIT_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
type ExitHook = Box<dyn Fn() + Send>;
static EXIT_HOOKS: Mutex<Vec<ExitHook>> = Mutex::new(Vec::new());
static EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn kill_registered_pids() {
    // Hooks first (a node stops its kubelet and containers before the API server goes).
    if let Ok(hooks) = EXIT_HOOKS.lock() {
        for hook in hooks.iter() {
            hook();
        }
    }
    if let Ok(pids) = EXIT_PIDS.lock() {
        for pid in pids.iter() {
            // SAFETY: kill(2) on PIDs this process spawned.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    // Run folders (etcd data, logs) go too, unless asked to keep them; a failing test has
    // already printed the log tails.
    if std::env::var_os("E2E_KEEP_RUN_DIR").is_none()
        && let Ok(dirs) = EXIT_DIRS.lock()
    {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Remove `dir` when the test process exits (unless `E2E_KEEP_RUN_DIR` is set).
pub fn register_dir_for_exit_removal(dir: PathBuf) {
    if let Ok(mut dirs) = EXIT_DIRS.lock() {
        dirs.push(dir);
    }
}

/// Kill `pid` when the test process exits normally (the shared control plane is never dropped).
pub fn register_for_exit_kill(pid: u32) {
    arm_exit_handler();
    if let Ok(mut pids) = EXIT_PIDS.lock() {
        pids.push(pid);
    }
}

/// Forget `pid` (a daemon stopped and reaped by its guard: the number may be reused).
fn unregister_exit_kill(pid: u32) {
    if let Ok(mut pids) = EXIT_PIDS.lock() {
        pids.retain(|p| *p != pid);
    }
}

/// Run `hook` when the test process exits normally, before the registered PIDs are killed
/// (hooks run in registration order).
pub fn register_exit_hook(hook: impl Fn() + Send + 'static) {
    arm_exit_handler();
    if let Ok(mut hooks) = EXIT_HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

fn arm_exit_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain extern "C" function.
    ONCE.call_once(|| unsafe {
        libc::atexit(kill_registered_pids);
    });
}

static SHARED: tokio::sync::OnceCell<Result<ControlPlane, String>> =
    tokio::sync::OnceCell::const_new();

/// The control plane shared by every test of this test binary, started on first use. A failed
/// start is remembered, so that the other tests fail at once with the same cause.
pub async fn shared() -> Result<&'static ControlPlane> {
    let started = SHARED
        .get_or_init(|| async { ControlPlane::start().await.map_err(|e| format!("{e:#}")) })
        .await;
    started.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
