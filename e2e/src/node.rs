//! A real cluster for the node tier: its own control plane (with the ServiceAccount admission
//! plugin, CRDs left to `helm install`), kube-controller-manager (ownerReference garbage
//! collection, Deployments, ServiceAccounts, `kube-root-ca.crt`), kube-scheduler, and two
//! nodes, each a kubelet on its own containerd (Debian's containerd and runc). Every
//! component is built from Go modules by `hack/build-node.sh` at the pinned version, the
//! images by `hack/build-images.sh`; see docs/node-tier.md.
//!
//! Loopback only: node `127.0.0.N` is named after its address (kubelet takes a
//! `--hostname-override` IP as the node's InternalIP without its non-loopback check), so a
//! `hostNetwork: true` pod's IP is `127.0.0.N`; a CNI configuration whose only plugin is
//! `loopback` makes the runtime's network ready without creating any interface. Two nodes
//! because two `hostNetwork` replicas that declare the same port cannot share one.
//!
//! Stopped at exit by the PIDs the harness recorded: kubelets first, then every container
//! task through the node's own containerd socket, then containerd and any shim still serving
//! that socket, then the mounts under the run folder. Process, file and Kubernetes I/O.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::{
    core::v1::Node as KubeNode,
    rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams},
};

use crate::{
    control_plane::{
        ControlPlane, ControlPlaneOptions, kube_version, kubeconfig_yaml, register_exit_hook,
        register_for_exit_kill,
    },
    process::{ChildGuard, free_port, spawn, tail},
};

/// The node names (and addresses) of the cluster.
pub const NODE_IPS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

fn cache_dir() -> PathBuf {
    std::env::var_os("TPP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tpp-operator")
        })
}

/// Where kubelet, kube-controller-manager, kube-scheduler and pause are:
/// `$TPP_NODE_DIR`, else `hack/build-node.sh`'s cache folder.
pub fn node_binaries_dir() -> PathBuf {
    std::env::var_os("TPP_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("node").join(kube_version()))
}

/// Where `hack/build-images.sh` left the image tarballs: `$TPP_IMAGES_DIR`, else the cache.
pub fn images_dir() -> PathBuf {
    std::env::var_os("TPP_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("images"))
}

/// The pinned Helm version (from `hack/versions.env`).
pub fn helm_version() -> &'static str {
    include_str!("../../hack/versions.env")
        .lines()
        .find_map(|l| l.strip_prefix("HELM_VERSION="))
        .unwrap_or("unknown")
        .trim()
}

/// The helm binary: `$TPP_HELM`, else `hack/build-helm.sh`'s cache path.
pub fn helm_binary() -> PathBuf {
    std::env::var_os("TPP_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("helm").join(helm_version()).join("helm"))
}

/// The image the pod sandboxes run (`hack/build-images.sh`).
pub const PAUSE_IMAGE: &str = "docker.io/library/tpp-e2e-pause:e2e";

/// One kubelet and its containerd.
pub struct Node {
    /// Node name and address (`127.0.0.N`).
    pub name: String,
    /// The node's folder (containerd root and state, kubelet root, pod logs).
    pub dir: PathBuf,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    containerd: Mutex<ChildGuard>,
    kubelet: Mutex<ChildGuard>,
}

/// The control plane, the cluster-wide controllers and the nodes.
pub struct NodeCluster {
    /// The control plane (admin kubeconfig, CA, run folder).
    pub cp: ControlPlane,
    /// The nodes.
    pub nodes: Vec<Node>,
    controller_manager: Mutex<ChildGuard>,
    scheduler: Mutex<ChildGuard>,
}

fn ctr(socket: &Path) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"]);
    c
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn containerd_config(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
[grpc]
  address = "{socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This sandbox denies a negative oom_score_adj, which pod sandboxes ask for.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#,
        socket = socket.display()
    )
}

fn kubelet_config(node: &str, dir: &Path, socket: &Path, ca: &Path) -> Result<String> {
    let d = dir.display();
    Ok(format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This kernel mounts cgroup v1, which kubelet >= 1.35 refuses unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
# Two kubelets share the host's cgroup tree: neither manages pod cgroups (each would clean up
# the other's as orphans).
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://{socket}
failSwapOn: false
resolvConf: ""
address: {node}
port: {port}
readOnlyPort: 0
healthzBindAddress: {node}
healthzPort: {healthz}
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/volume-plugins
# How often a pod's volumes are resynced (default 1m): the kubelet's delay in publishing a
# new Secret version is at most about 1.5 times this (docs/node-tier.md).
syncFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%"}}
authentication: {{anonymous: {{enabled: false}}, webhook: {{enabled: false}}, x509: {{clientCAFile: "{ca}"}}}}
authorization: {{mode: AlwaysAllow}}
"#,
        socket = socket.display(),
        port = free_port()?,
        healthz = free_port()?,
        ca = ca.display(),
    ))
}

impl Node {
    async fn start(cp: &ControlPlane, name: &str, images: &[PathBuf]) -> Result<Self> {
        let bin = node_binaries_dir();
        let dir = cp.dir.join(format!("node-{name}"));
        std::fs::create_dir_all(dir.join("cni"))?;
        // A network whose only plugin is `loopback`: the runtime reports its network ready,
        // and no interface, bridge or route is created.
        std::fs::write(
            dir.join("cni/10-loopback.conflist"),
            r#"{"cniVersion": "0.4.0", "name": "loopback-only", "plugins": [{"type": "loopback"}]}"#,
        )?;
        let socket = dir.join("containerd.sock");
        std::fs::write(
            dir.join("containerd.toml"),
            containerd_config(&dir, &socket),
        )?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(dir.join("containerd.toml"));
        let containerd = spawn("containerd", cmd, &dir.join("containerd.log"))?;
        let containerd_pid = containerd.pid();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ctr(&socket)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            ensure!(
                Instant::now() < deadline,
                "containerd did not answer on {}; log:\n{}",
                socket.display(),
                tail(&dir.join("containerd.log"), 4000)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for image in images {
            let mut import = ctr(&socket);
            import.args(["images", "import"]).arg(image);
            run(import, &format!("ctr images import {}", image.display()))?;
        }

        let certs = cp.dir.join("certs");
        let cert = cp
            .ca
            .client_cert(&format!("system:node:{name}"), &["system:nodes"])?;
        let kubeconfig = dir.join("kubelet.kubeconfig");
        crate::operator::write_private(
            &kubeconfig,
            &kubeconfig_yaml(&cp.server, &cp.ca.cert_pem, Some(&cert), None),
        )?;
        std::fs::write(
            dir.join("kubelet.yaml"),
            kubelet_config(name, &dir, &socket, &certs.join("ca.crt"))?,
        )?;
        let mut cmd = Command::new(bin.join("kubelet"));
        cmd.arg(format!("--config={}", dir.join("kubelet.yaml").display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--root-dir={}", dir.join("kubelet").display()))
            // An IP as the host name is the node's InternalIP (see the module doc).
            .arg(format!("--hostname-override={name}"))
            .arg("--v=1");
        let kubelet = spawn("kubelet", cmd, &dir.join("kubelet.log"))?;
        register_node_exit_cleanup(kubelet.pid(), containerd_pid, socket.clone(), dir.clone());
        Ok(Self {
            name: name.to_owned(),
            dir,
            containerd_socket: socket,
            containerd: Mutex::new(containerd),
            kubelet: Mutex::new(kubelet),
        })
    }

    /// The tails of the kubelet and containerd logs.
    pub fn log_tails(&self, max: u64) -> String {
        let mut out = String::new();
        for g in [&self.kubelet, &self.containerd] {
            if let Ok(g) = g.lock() {
                out.push_str(&format!(
                    "----- {} {} log (tail) -----\n{}\n",
                    self.name,
                    g.name(),
                    g.log_tail(max)
                ));
            }
        }
        out
    }

    /// The logs of container `container` of the pods in `namespace` whose names start with
    /// `pod_prefix`, on this node (every restart).
    pub fn container_logs(&self, namespace: &str, pod_prefix: &str, container: &str) -> String {
        let logs = self.dir.join("pod-logs");
        let mut out = String::new();
        let prefix = format!("{namespace}_{pod_prefix}");
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix)
                    && let Ok(files) = std::fs::read_dir(e.path().join(container))
                {
                    let mut files: Vec<_> = files.flatten().map(|f| f.path()).collect();
                    files.sort();
                    for f in files {
                        out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

/// At exit: kubelet (so that nothing restarts), every container task of this containerd,
/// containerd, the shims still serving its socket, then the mounts under the node's folder.
fn register_node_exit_cleanup(kubelet: u32, containerd: u32, socket: PathBuf, dir: PathBuf) {
    register_exit_hook(move || {
        kill(kubelet, libc::SIGKILL);
        if let Ok(out) = ctr(&socket).args(["tasks", "ls", "-q"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            for id in &ids {
                let _ = ctr(&socket)
                    .args(["tasks", "kill", "--signal", "SIGKILL", id])
                    .output();
            }
            for id in &ids {
                let _ = ctr(&socket)
                    .args(["tasks", "delete", "--force", id])
                    .output();
            }
        }
        kill(containerd, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(containerd) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        kill(containerd, libc::SIGKILL);
        for pid in shims_of(&socket) {
            kill(pid, libc::SIGKILL);
        }
        unmount_under(&dir);
    });
}

fn kill(pid: u32, signal: libc::c_int) {
    if pid != 0 {
        // SAFETY: kill(2) on a PID this process started (or a shim of its containerd).
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

fn process_alive(pid: u32) -> bool {
    // A reaped or zombie child: /proc/<pid>/stat says Z or is gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// PIDs of containerd shims started by the containerd listening on `socket`.
fn shims_of(socket: &Path) -> Vec<u32> {
    let needle = socket.to_string_lossy().into_owned();
    let mut pids = vec![];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
            if is_shim && args.iter().any(|a| String::from_utf8_lossy(a) == needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Detach every mount below `dir` (deepest first): Secret tmpfs, container root filesystems.
pub fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: umount2(2) with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

impl NodeCluster {
    /// Start the control plane, the controllers and [`NODE_IPS`] nodes; wait until every node
    /// is Ready.
    pub async fn start() -> Result<Self> {
        let bin = node_binaries_dir();
        for b in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            ensure!(
                bin.join(b).is_file(),
                "{} not found: build the node components first (`make node`, hack/build-node.sh)",
                bin.join(b).display()
            );
        }
        let images: Vec<PathBuf> = std::fs::read_dir(images_dir())
            .with_context(|| {
                format!(
                    "{}: build the images first (`make images`, hack/build-images.sh)",
                    images_dir().display()
                )
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        ensure!(
            images.len() >= 3,
            "expected the operator, workload and pause images in {}",
            images_dir().display()
        );
        let cp = ControlPlane::start_with(ControlPlaneOptions {
            service_account_admission: true,
            install_crds: false,
        })
        .await?;
        let admin = cp.admin_client().await?;
        // Nodes authenticate as system:node:<name> in group system:nodes; this API server
        // authorizes with RBAC only, so the nodes get the system:node role.
        Api::<ClusterRoleBinding>::all(admin.clone())
            .patch(
                "tpp-e2e-nodes",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some("tpp-e2e-nodes".into()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name: "system:node".into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "Group".into(),
                        name: "system:nodes".into(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        ..Default::default()
                    }]),
                }),
            )
            .await?;
        let certs = cp.dir.join("certs");
        let mut kcm = Command::new(bin.join("kube-controller-manager"));
        kcm.arg(format!(
            "--kubeconfig={}",
            cp.admin_kubeconfig_path.display()
        ))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()?))
        .arg("--leader-elect=false")
        .arg(format!("--root-ca-file={}", certs.join("ca.crt").display()))
        .arg(format!(
            "--service-account-private-key-file={}",
            certs.join("sa.key").display()
        ))
        .arg("--use-service-account-credentials=false")
        .arg(format!("--cert-dir={}", cp.dir.join("kcm-certs").display()))
        .arg("--v=1");
        let controller_manager = spawn(
            "kube-controller-manager",
            kcm,
            &cp.dir.join("kube-controller-manager.log"),
        )?;
        register_for_exit_kill(controller_manager.pid());
        let mut sched = Command::new(bin.join("kube-scheduler"));
        sched
            .arg(format!(
                "--kubeconfig={}",
                cp.admin_kubeconfig_path.display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()?))
            .arg("--leader-elect=false")
            .arg(format!(
                "--cert-dir={}",
                cp.dir.join("scheduler-certs").display()
            ))
            .arg("--v=1");
        let scheduler = spawn("kube-scheduler", sched, &cp.dir.join("kube-scheduler.log"))?;
        register_for_exit_kill(scheduler.pid());
        let mut nodes = vec![];
        for name in NODE_IPS {
            nodes.push(Node::start(&cp, name, &images).await?);
        }
        let cluster = Self {
            cp,
            nodes,
            controller_manager: Mutex::new(controller_manager),
            scheduler: Mutex::new(scheduler),
        };
        cluster
            .wait_nodes_ready(Duration::from_secs(120))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", cluster.log_tails(3000)))?;
        eprintln!(
            "e2e: node cluster {} with nodes {:?} (run dir {})",
            cluster.cp.version,
            NODE_IPS,
            cluster.cp.dir.display()
        );
        Ok(cluster)
    }

    async fn wait_nodes_ready(&self, timeout: Duration) -> Result<()> {
        let api: Api<KubeNode> = Api::all(self.cp.admin_client().await?);
        let deadline = Instant::now() + timeout;
        loop {
            let ready = api
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready == self.nodes.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{ready} of {} nodes Ready after {timeout:?}",
                    self.nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Tails of every component's log (for failure dumps).
    pub fn log_tails(&self, max: u64) -> String {
        let mut out = self.cp.log_tails(max);
        for g in [&self.controller_manager, &self.scheduler] {
            if let Ok(g) = g.lock() {
                out.push_str(&format!(
                    "----- {} log (tail) -----\n{}\n",
                    g.name(),
                    g.log_tail(max)
                ));
            }
        }
        for n in &self.nodes {
            out.push_str(&n.log_tails(max));
        }
        out
    }

    /// Run helm with the cluster's admin kubeconfig (without blocking the runtime, which
    /// may serve the sandbox AS meanwhile); fails with helm's output.
    pub async fn helm(&self, args: &[&str]) -> Result<String> {
        let helm = helm_binary();
        ensure!(
            helm.is_file(),
            "{} not found: build helm first (`make helm`, hack/build-helm.sh)",
            helm.display()
        );
        let mut cmd = tokio::process::Command::new(&helm);
        cmd.args(args)
            .arg("--kubeconfig")
            .arg(&self.cp.admin_kubeconfig_path)
            // Helm's caches and configuration in the run folder, not in $HOME.
            .env("HELM_CACHE_HOME", self.cp.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.cp.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.cp.dir.join("helm/data"));
        let out = cmd
            .output()
            .await
            .with_context(|| format!("run helm {}", args.join(" ")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success(),
            "helm {} failed ({}):\n{text}",
            args.join(" "),
            out.status
        );
        Ok(text)
    }
}

static SHARED: tokio::sync::OnceCell<Result<NodeCluster, String>> =
    tokio::sync::OnceCell::const_new();

/// The node cluster shared by every test of this test binary, started on first use (a failed
/// start is remembered).
pub async fn shared() -> Result<&'static NodeCluster> {
    let started = SHARED
        .get_or_init(|| async { NodeCluster::start().await.map_err(|e| format!("{e:#}")) })
        .await;
    started.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}
