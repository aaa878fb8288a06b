//! `make demo`: a real etcd + kube-apiserver with the CRDs, the sandbox AS in process, and the
//! operator binary under the chart's RBAC; it applies the `examples/` AuthorizationServer and
//! Static TppClient adapted to the sandbox, waits for Ready, prints what the operator made,
//! then follows token refreshes until stopped. Everything the user may want to reuse goes to
//! the demo folder (`.demo/` by default): the admin kubeconfig, the applied manifests, the
//! operator's log, the sandbox CA. Process, network, file and Kubernetes I/O.

pub mod manifests;
pub mod report;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client,
    api::{DynamicObject, ObjectMeta, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
    runtime::{WatchStreamExt, watcher},
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    control_plane::{ControlPlane, binaries_dir, repo_root},
    fixtures::{condition, secret_text, x5t_of_pem},
    operator::{OperatorOptions, OperatorProcess, write_private},
    sandbox::{self, RunningSandbox, SandboxConfig},
};

/// Field manager of the demo's applies (what `kubectl apply --server-side` would use).
const FIELD_MANAGER: &str = "make-demo";

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Folder for the kubeconfig, manifests, logs and sandbox CA (created).
    pub dir: PathBuf,
    /// Namespace of the demo objects (the operator watches only it).
    pub namespace: String,
    /// Preferred loopback port of the operator's admin server (a free one if taken).
    pub admin_port: u16,
    /// Preferred loopback port of the operator's JWKS server (a free one if taken).
    pub jwks_port: u16,
    /// Lifetime of the sandbox's access tokens (short, so that refreshes show).
    pub token_lifetime: Duration,
    /// How long to wait for the TppClient to become Ready.
    pub ready_timeout: Duration,
}

/// `127.0.0.1:<preferred>` if it can be bound now, else a free loopback port.
fn admin_address(preferred: u16) -> Result<std::net::SocketAddr> {
    let port = match std::net::TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(l) => l.local_addr()?.port(),
        Err(_) => crate::process::free_port()?,
    };
    Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A started demo: control plane, sandbox AS and operator.
pub struct Demo {
    opts: DemoOptions,
    cp: ControlPlane,
    client: Client,
    sandbox: RunningSandbox,
    operator: OperatorProcess,
    kubeconfig: PathBuf,
    client_name: String,
}

/// `path` relative to the current directory when it is under it (shorter to copy).
pub fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

/// `path` as a shell word: [`shown`], with the home folder written `$HOME`.
pub fn shell_path(path: &Path) -> String {
    let text = shown(path);
    match std::env::var("HOME") {
        Ok(home) if !home.is_empty() && text.starts_with(&home) => {
            format!("$HOME{}", &text[home.len()..])
        }
        _ => text,
    }
}

fn say(text: &str) {
    println!("==> {text}");
}

impl Demo {
    /// Start the control plane (CRDs installed), write the admin kubeconfig, start the sandbox
    /// AS and the operator.
    pub async fn start(opts: DemoOptions) -> Result<Self> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("create {}", opts.dir.display()))?;
        say(&format!(
            "starting etcd + kube-apiserver {} (CRDs from crds/)",
            crate::control_plane::kube_version()
        ));
        let cp = ControlPlane::start().await?;
        let kubeconfig = opts.dir.join("kubeconfig");
        write_private(&kubeconfig, &cp.admin_kubeconfig)?;
        let client = cp.admin_client().await?;
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(opts.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .patch(
                &opts.namespace,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&ns),
            )
            .await
            .context("create the demo namespace")?;
        println!(
            "    {} at {}, admin kubeconfig {}",
            cp.version,
            cp.server,
            shown(&kubeconfig)
        );

        let mut cfg = SandboxConfig::new(opts.dir.join("sandbox"));
        cfg.token_lifetime = opts.token_lifetime;
        cfg.jwks_cache_ttl = Duration::from_secs(manifests::JWKS_CACHE_TTL_SECS);
        let sandbox = sandbox::start(cfg).await.context("start the sandbox AS")?;
        say(&format!(
            "sandbox AS at {} (access tokens live {} s)",
            sandbox.issuer(),
            opts.token_lifetime.as_secs()
        ));

        let options = OperatorOptions {
            namespaces: vec![opts.namespace.clone()],
            admin_address: Some(admin_address(opts.admin_port)?),
            jwks_address: Some(admin_address(opts.jwks_port)?),
            dir: Some(opts.dir.clone()),
            log_filter: Some(std::env::var("DEMO_OPERATOR_LOG").unwrap_or_else(|_| "info".into())),
            ..Default::default()
        };
        let operator = OperatorProcess::start(&cp, &client, options).await?;
        say(&format!(
            "tpp-operator running under the chart's RBAC, watching namespace {}, admin {}, log {}",
            opts.namespace,
            operator.admin_url,
            shown(&operator.log_path())
        ));
        Ok(Self {
            opts,
            cp,
            client,
            sandbox,
            operator,
            kubeconfig,
            client_name: String::new(),
        })
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind));
        Api::namespaced_with(self.client.clone(), &self.opts.namespace, &ar)
    }

    /// Provision the client at the sandbox out of band (as PayNet does for OFM), then write,
    /// echo and apply the adapted AuthorizationServer and TppClient examples.
    pub async fn apply_examples(&mut self) -> Result<()> {
        let repo = repo_root();
        let server_example = manifests::load_example(&repo, manifests::SERVER_EXAMPLE)?;
        let client_example = manifests::load_example(&repo, manifests::CLIENT_EXAMPLE)?;
        self.client_name = manifests::name(&client_example)?.to_owned();
        let jwks_uri = format!(
            "{}/jwks/{}/{}",
            self.operator.jwks_url, self.opts.namespace, self.client_name
        );
        let scope = client_example["spec"]["tokens"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t["scope"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let client_id = self.sandbox.provision_client(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
            "scope": scope,
        }))?;
        say(&format!(
            "sandbox AS: client {client_id} provisioned out of band (private_key_jwt, jwks_uri {jwks_uri})"
        ));
        let local = manifests::Local {
            namespace: &self.opts.namespace,
            issuer: self.sandbox.issuer(),
            ca_pem: self.sandbox.ca_pem(),
            client_id: &client_id,
            jwks_uri: &jwks_uri,
        };
        let docs = [
            (
                manifests::authorization_server(&server_example, &local)?,
                manifests::SERVER_EXAMPLE,
                "AuthorizationServer",
            ),
            (
                manifests::tpp_client(&client_example, &local)?,
                manifests::CLIENT_EXAMPLE,
                "TppClient",
            ),
        ];
        for (manifest, example, kind) in docs {
            let path = self.opts.dir.join(example);
            std::fs::write(&path, manifests::to_file_yaml(&manifest, example)?)
                .with_context(|| format!("write {}", path.display()))?;
            say(&format!(
                "applying {} (examples/{example} adapted)",
                shown(&path)
            ));
            print!("{}", manifests::to_echo_yaml(&manifest, &shown(&path))?);
            let obj: DynamicObject = serde_json::from_value(manifest.clone())?;
            self.api(kind)
                .patch(
                    manifests::name(&manifest)?,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&obj),
                )
                .await
                .with_context(|| format!("apply {}", path.display()))?;
        }
        Ok(())
    }

    /// Wait for the TppClient's Ready condition; on timeout or operator exit fail with the
    /// last status and the operator's log tail.
    pub async fn wait_ready(&mut self) -> Result<DynamicObject> {
        say(&format!(
            "waiting up to {} s for TppClient {}/{} to be Ready",
            self.opts.ready_timeout.as_secs(),
            self.opts.namespace,
            self.client_name
        ));
        let started = Instant::now();
        let api = self.api("TppClient");
        let mut last = Value::Null;
        while started.elapsed() < self.opts.ready_timeout {
            if !self.operator.is_running() {
                bail!(
                    "the operator exited; log tail:\n{}",
                    self.operator.log_tail(6000)
                );
            }
            if let Some(obj) = api.get_opt(&self.client_name).await? {
                if condition(&obj, "Ready").is_some_and(|c| c["status"] == "True") {
                    say(&format!(
                        "Ready after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(obj);
                }
                last = obj.data["status"].clone();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "TppClient {}/{} not Ready after {} s\nlast status: {}\n----- operator log (tail) -----\n{}",
            self.opts.namespace,
            self.client_name,
            self.opts.ready_timeout.as_secs(),
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            self.operator.log_tail(6000)
        )
    }

    fn kubectl(&self) -> PathBuf {
        binaries_dir().join("kubectl")
    }

    /// Print the `kubectl get tppclients` table, the credentials Secret's keys, token expiry,
    /// certificate and the sandbox's introspection of the token; then the hints. Fails when the
    /// token is not active and bound to the Secret's certificate.
    pub async fn print_summary(&self, obj: &DynamicObject) -> Result<Secret> {
        let kubectl = self.kubectl();
        let args = [
            "--kubeconfig",
            &self.kubeconfig.display().to_string(),
            "-n",
            &self.opts.namespace,
            "get",
            "tppclients",
        ]
        .map(str::to_owned);
        let out = tokio::process::Command::new(&kubectl)
            .args(&args)
            .output()
            .await
            .with_context(|| {
                format!("run {} (built by `make control-plane`)", kubectl.display())
            })?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl get tppclients failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "\n$ kubectl --kubeconfig {} -n {} get tppclients",
            shown(&self.kubeconfig),
            self.opts.namespace
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));

        let secret_name = format!("{}-credentials", self.client_name);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.opts.namespace)
            .get(&secret_name)
            .await
            .with_context(|| format!("read Secret {secret_name}"))?;
        println!(
            "\nSecret {secret_name} (type {}), data keys (values not shown):",
            secret.type_.as_deref().unwrap_or("?")
        );
        println!("  {}", report::data_keys(&secret).join("  "));
        let now = jiff::Timestamp::now();
        for (token, expires_at) in report::token_expiries(&secret) {
            println!(
                "Token {token}: expires_at {}",
                report::expiry(&expires_at, now)
            );
        }
        let cert = &obj.data["status"]["certificate"];
        let crt =
            secret_text(&secret, "tls.crt").context("the credentials Secret has no tls.crt")?;
        let x5t = x5t_of_pem(&crt)?;
        println!(
            "Certificate: notAfter {}  x5t#S256 {}  ({} tls.crt)",
            cert["notAfter"].as_str().unwrap_or("?"),
            cert["x5tS256"].as_str().unwrap_or("?"),
            if cert["x5tS256"] == x5t.as_str() {
                "same as"
            } else {
                "DIFFERENT from"
            }
        );
        for token in report::token_expiries(&secret).keys() {
            let access = SecretString::from(
                secret_text(&secret, &format!("{token}.access_token"))
                    .with_context(|| format!("no {token}.access_token"))?,
            );
            let info = self.sandbox.introspect(access.expose_secret());
            println!(
                "Sandbox introspection of token {token}: {}",
                report::introspection(&info)
            );
            anyhow::ensure!(
                info["active"] == true,
                "the sandbox does not know token {token} as active"
            );
            anyhow::ensure!(
                info["cnf"]["x5t#S256"] == x5t.as_str(),
                "token {token} is not bound to the Secret's certificate"
            );
        }
        println!();
        println!(
            "{}",
            report::hints(&report::Pointers {
                kubectl: shell_path(&kubectl),
                kubeconfig: shown(&self.kubeconfig),
                namespace: self.opts.namespace.clone(),
                client: self.client_name.clone(),
                admin_url: self.operator.admin_url.clone(),
                jwks_url: self.operator.jwks_url.clone(),
                operator_log: shown(&self.operator.log_path()),
                sandbox_ca: shown(self.sandbox.ca_path()),
            })
        );
        Ok(secret)
    }

    /// Print one line per token refresh (a changed `<token>.expires_at`) and per certificate
    /// change in the credentials Secret, until `stop` turns true or the operator exits.
    pub async fn follow_refreshes(
        &mut self,
        seen: &Secret,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        say("following token refreshes (Ctrl-C to stop)");
        let mut expiries = report::token_expiries(seen);
        let mut x5t = secret_text(seen, "tls.crt").and_then(|c| x5t_of_pem(&c).ok());
        let secrets = Api::<Secret>::namespaced(self.client.clone(), &self.opts.namespace);
        let cfg = watcher::Config::default()
            .fields(&format!("metadata.name={}-credentials", self.client_name));
        let mut events = std::pin::pin!(watcher(secrets, cfg).default_backoff().applied_objects());
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tick.tick() => {
                    if !self.operator.is_running() {
                        bail!("the operator exited; log tail:\n{}", self.operator.log_tail(6000));
                    }
                }
                event = events.next() => match event {
                    Some(Ok(secret)) => {
                        let now = jiff::Timestamp::now();
                        let current: BTreeMap<_, _> = report::token_expiries(&secret);
                        for (token, expires_at) in &current {
                            if expiries.get(token) != Some(expires_at) {
                                println!("{}", report::refresh_line(now, token, expires_at));
                            }
                        }
                        expiries = current;
                        let new_x5t = secret_text(&secret, "tls.crt").and_then(|c| x5t_of_pem(&c).ok());
                        if new_x5t.is_some() && new_x5t != x5t {
                            println!("{}  transport certificate replaced: x5t#S256 {}", now.strftime("%H:%M:%S"), new_x5t.as_deref().unwrap_or_default());
                            x5t = new_x5t;
                        }
                    }
                    Some(Err(e)) => println!("(watch of the credentials Secret interrupted: {e}; retrying)"),
                    None => bail!("the watch of the credentials Secret ended"),
                },
            }
        }
    }

    /// Stop the operator (SIGTERM), the sandbox and the control plane, and remove the control
    /// plane's run folder. The demo folder is kept (its kubeconfig is stale from now on).
    pub async fn shutdown(self) {
        let Self {
            mut operator,
            sandbox,
            cp,
            ..
        } = self;
        operator.stop(Duration::from_secs(10));
        sandbox.shutdown().await;
        let run_dir = cp.dir.clone();
        drop(cp);
        let _ = std::fs::remove_dir_all(&run_dir);
        say("stopped the operator, the sandbox AS, kube-apiserver and etcd");
    }
}
