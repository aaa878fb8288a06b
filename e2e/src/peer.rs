//! The oidc-provider peer (docs/test-infrastructure.md Part B): a real third-party FAPI 2.0
//! authorization server (`e2e/peers/oidc-provider/server.mjs`) run as a child process on 127.0.0.1.
//!
//! [`OidcPeer::start`] installs the npm packages once per machine (`npm ci`, skipped when the
//! pinned versions are already in `node_modules`; a missing `node` or `npm` is an error, never a
//! skip), issues the serving certificate from a fresh [`TestCa`], starts `node server.mjs` via
//! [`crate::process::spawn`] (it dies with the test binary), and waits for its ready line. It
//! exposes the issuer, the CA, the initial access token, the directory JWKS file used to verify
//! software statements, and an admin-free [`OidcPeer::introspect`] that asks the peer's RFC 7662
//! endpoint as a `tls_client_auth` client of its own. Does process, file and network I/O
//! (loopback only).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::pki::{CertPair, TestCa, dn};
use crate::process::{ChildGuard, spawn};

/// How long the peer may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `npm ci` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// PAR behaviour of the peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Par {
    /// PAR enabled and required (FAPI 2.0, the default).
    #[default]
    Required,
    /// PAR enabled, not required.
    Optional,
    /// No PAR endpoint at all.
    Off,
}

impl Par {
    fn flag(self) -> &'static str {
        match self {
            Par::Required => "required",
            Par::Optional => "optional",
            Par::Off => "off",
        }
    }
}

/// Start-up knobs of the peer.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// PAR switch.
    pub par: Par,
    /// Client-assertion algorithms the peer accepts and advertises (default `["PS256"]`).
    pub client_auth_algs: Vec<String>,
    /// A fixed initial access token (default: the peer mints a random one).
    pub initial_access_token: Option<String>,
    /// The directory JWKS that software statements are verified against (default: empty set;
    /// replace it at any time with [`OidcPeer::set_directory_jwks`]).
    pub directory_jwks: Value,
    /// Lifetime of `client_credentials` access tokens (default: the peer's 600 s).
    pub client_credentials_ttl: Option<Duration>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            par: Par::Required,
            client_auth_algs: vec!["PS256".into()],
            initial_access_token: None,
            directory_jwks: json!({ "keys": [] }),
            client_credentials_ttl: None,
        }
    }
}

/// The peer's ready line (see `server.mjs`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReadyLine {
    /// `https://localhost:<port>`.
    pub issuer: String,
    /// The listening port on 127.0.0.1.
    pub port: u16,
    /// The Node process id.
    pub pid: u32,
    /// Where the initial access token was written.
    pub initial_access_token_file: PathBuf,
    /// `required`, `optional` or `off`.
    pub par: String,
    /// The client-assertion algorithms in force.
    pub client_auth_signing_algs: Vec<String>,
}

/// A running oidc-provider peer; killed when dropped.
pub struct OidcPeer {
    child: Mutex<ChildGuard>,
    ready: ReadyLine,
    ca: TestCa,
    initial_access_token: SecretString,
    directory_jwks_path: PathBuf,
    observer: OnceCell<Observer>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for OidcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcPeer")
            .field("issuer", &self.ready.issuer)
            .finish_non_exhaustive()
    }
}

/// `e2e/peers/oidc-provider`.
pub fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("oidc-provider")
}

fn require_tool(tool: &str) -> Result<()> {
    let out = Command::new(tool).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!(
            "`{tool}` is required by the oidc-provider peer tests and was not found or does not run \
             (install Node.js >= 20.19 with npm; `make peer` installs the packages)"
        ),
    }
}

/// Whether `node_modules` holds exactly the versions `package.json` pins.
fn installed(dir: &Path) -> bool {
    let read = |p: PathBuf| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    let Some(pkg) = read(dir.join("package.json")) else {
        return false;
    };
    let Some(deps) = pkg.get("dependencies").and_then(Value::as_object) else {
        return false;
    };
    deps.iter().all(|(name, pinned)| {
        read(dir.join("node_modules").join(name).join("package.json"))
            .and_then(|p| p.get("version").cloned())
            .is_some_and(|v| Some(&v) == Some(pinned))
    })
}

/// Runs `npm ci` in the peer directory unless the pinned packages are installed. Serialised
/// across threads and processes (a lock file in the temp dir).
pub fn ensure_installed() -> Result<()> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    require_tool("node")?;
    let dir = peer_dir();
    if installed(&dir) {
        return Ok(());
    }
    let _guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let lock_path = std::env::temp_dir().join("tpp-operator-oidc-peer-npm.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    // SAFETY: flock(2) on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        bail!(
            "could not lock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
    }
    if installed(&dir) {
        return Ok(());
    }
    require_tool("npm")?;
    let mut child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .spawn()
        .context("spawn npm ci")?;
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "npm ci in {} took longer than {INSTALL_TIMEOUT:?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() || !installed(&dir) {
        bail!("npm ci in {} failed ({status})", dir.display());
    }
    Ok(())
}

impl OidcPeer {
    /// Installs (once), starts the peer and waits for its ready line.
    pub async fn start(opts: PeerOptions) -> Result<Self> {
        tokio::task::spawn_blocking(ensure_installed).await??;
        let dir = tempfile::Builder::new().prefix("oidc-peer-").tempdir()?;
        let ca = TestCa::new("oidc-peer test CA")?;
        let serving = ca.server_cert("localhost", &[])?;
        let write = |name: &str, contents: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
            Ok(path)
        };
        let ca_path = write("ca.pem", &ca.cert_pem)?;
        let cert_path = write("serving.pem", &serving.cert_pem)?;
        let key_path = write("serving-key.pem", &serving.key_pem)?;
        let directory_jwks_path = write("directory-jwks.json", &opts.directory_jwks.to_string())?;
        let state = dir.path().join("state");
        let log = dir.path().join("peer.log");

        let mut cmd = Command::new("node");
        cmd.current_dir(peer_dir())
            .arg("server.mjs")
            .args(["--port", "0", "--par", opts.par.flag()])
            .arg("--state-dir")
            .arg(&state)
            .arg("--ca")
            .arg(&ca_path)
            .arg("--cert")
            .arg(&cert_path)
            .arg("--key")
            .arg(&key_path)
            .arg("--directory-jwks")
            .arg(&directory_jwks_path)
            .args(["--client-auth-algs", &opts.client_auth_algs.join(",")]);
        if let Some(token) = &opts.initial_access_token {
            // Through the environment, so the value is not visible in the process list.
            cmd.env("PEER_INITIAL_ACCESS_TOKEN", token);
        }
        if let Some(ttl) = opts.client_credentials_ttl {
            cmd.args([
                "--client-credentials-ttl",
                &ttl.as_secs().max(1).to_string(),
            ]);
        }
        let mut child = spawn("oidc-provider", cmd, &log)?;
        let ready = wait_ready(&mut child, &log).await?;
        let token = std::fs::read_to_string(&ready.initial_access_token_file)
            .with_context(|| format!("read {}", ready.initial_access_token_file.display()))?;
        Ok(Self {
            child: Mutex::new(child),
            ready,
            ca,
            initial_access_token: SecretString::from(token.trim().to_owned()),
            directory_jwks_path,
            observer: OnceCell::new(),
            log,
            _dir: dir,
        })
    }

    /// `https://localhost:<port>`.
    pub fn issuer(&self) -> &str {
        &self.ready.issuer
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.ready.port
    }

    /// The whole ready line.
    pub fn ready(&self) -> &ReadyLine {
        &self.ready
    }

    /// The test CA: it issued the serving certificate, and client certificates it issues pass
    /// the peer's `tls_client_auth` chain check.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA certificate (PEM) to trust when talking to the peer.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The initial access token for `POST /reg` (carries the peer's registration policy).
    pub fn initial_access_token(&self) -> &SecretString {
        &self.initial_access_token
    }

    /// `<issuer>/reg`.
    pub fn registration_endpoint(&self) -> String {
        format!("{}/reg", self.ready.issuer)
    }

    /// Replaces the directory JWKS the software statements are checked against (read by the
    /// peer on every signed registration request).
    pub fn set_directory_jwks(&self, jwks: &Value) -> Result<()> {
        std::fs::write(&self.directory_jwks_path, jwks.to_string())?;
        Ok(())
    }

    /// The last `max` bytes of the peer's stdout and stderr (error events are JSON lines).
    pub fn log_tail(&self, max: u64) -> String {
        self.child
            .lock()
            .map(|c| c.log_tail(max))
            .unwrap_or_default()
    }

    /// RFC 7662 introspection of `token` by the peer itself, asked as a `tls_client_auth`
    /// observer client (registered on first use with a certificate from [`Self::ca`]). Returns
    /// the raw JSON answer (`active`, `client_id`, `cnf`, …).
    pub async fn introspect(&self, token: &SecretString) -> Result<Value> {
        let observer = self
            .observer
            .get_or_try_init(|| Observer::register(self))
            .await?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &observer.client_id)
            .append_pair("token", token.expose_secret())
            .finish();
        let response = observer
            .http
            .post(format!("{}/token/introspection", self.issuer()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let json: Value = response
            .json()
            .await
            .context("introspection answer is not json")?;
        if !status.is_success() {
            bail!(
                "introspection answered {status}: {json}\npeer log:\n{}",
                self.log_tail(4000)
            );
        }
        Ok(json)
    }

    /// A reqwest client (aws-lc-rs rustls) trusting the peer's CA and presenting `client` when
    /// given; `localhost` resolves to 127.0.0.1.
    pub fn http_client(&self, client: Option<&CertPair>) -> Result<reqwest::Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.cert_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            Some(pair) => builder.with_client_auth_cert(
                CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())?,
            )?,
            None => builder.with_no_client_auth(),
        };
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .resolve(
                "localhost",
                SocketAddr::from(([127, 0, 0, 1], self.ready.port)),
            )
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    /// The registrations the peer created, updated and deleted so far, in order: (event, client
    /// id), the event one of `registration_create.success`, `registration_update.success`,
    /// `registration_delete.success` (its log lines; `server.mjs`).
    pub fn registration_events(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                let event = v["event"].as_str()?;
                let id = v["client_id"].as_str()?;
                event
                    .starts_with("registration_")
                    .then(|| (event.to_owned(), id.to_owned()))
            })
            .collect()
    }

    /// Client ids created by registration and not deleted, the harness's own observer
    /// excluded.
    pub fn live_registrations(&self) -> BTreeSet<String> {
        let mut live = BTreeSet::new();
        for (event, id) in self.registration_events() {
            match event.as_str() {
                "registration_create.success" => {
                    live.insert(id);
                }
                "registration_delete.success" => {
                    live.remove(&id);
                }
                _ => {}
            }
        }
        if let Some(o) = self.observer.get() {
            live.remove(&o.client_id);
        }
        live
    }

    /// Whether the peer accepts `rat` at `registration_client_uri` now (an RFC 7592 GET, which
    /// the peer answers without rotating the token): the peer holds it as that client's RAT.
    pub async fn accepts_rat(&self, registration_client_uri: &str, rat: &str) -> Result<bool> {
        let status = self
            .http_client(None)?
            .get(registration_client_uri)
            .bearer_auth(rat)
            .send()
            .await?
            .status();
        match status.as_u16() {
            200 => Ok(true),
            401 | 403 | 404 => Ok(false),
            other => bail!("RFC 7592 GET answered {other}"),
        }
    }

    /// Whether the Node process is still running.
    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| c.is_running())
            .unwrap_or(false)
    }
}

/// The harness's own `tls_client_auth` client, used for introspection.
struct Observer {
    client_id: String,
    http: reqwest::Client,
}

impl Observer {
    async fn register(peer: &OidcPeer) -> Result<Self> {
        let subject = "CN=peer-observer,O=tpp-operator e2e";
        let cert = peer.ca.client_cert_for(
            dn(&[
                (rcgen::DnType::CommonName, "peer-observer"),
                (rcgen::DnType::OrganizationName, "tpp-operator e2e"),
            ]),
            rcgen::KeyPair::generate()?,
        )?;
        let http = peer.http_client(Some(&cert))?;
        let response = http
            .post(peer.registration_endpoint())
            .bearer_auth(peer.initial_access_token.expose_secret())
            .json(&json!({
                "client_name": "e2e introspection observer",
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": subject,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "scope": "accounts",
            }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("registration answer is not json")?;
        let Some(client_id) = body
            .get("client_id")
            .and_then(Value::as_str)
            .filter(|_| status.as_u16() == 201)
        else {
            bail!(
                "observer registration answered {status}: {}\npeer log:\n{}",
                redact_rat(&body),
                peer.log_tail(4000)
            );
        };
        Ok(Self {
            client_id: client_id.to_owned(),
            http,
        })
    }
}

fn redact_rat(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.remove("registration_access_token");
    }
    body
}

/// Polls the log for the ready line (a JSON object with `"ready": true`), bounded by
/// [`READY_TIMEOUT`]; fails early, with the log, if the process exits.
async fn wait_ready(child: &mut ChildGuard, log: &Path) -> Result<ReadyLine> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("ready") == Some(&Value::Bool(true)));
        if let Some(line) = found {
            return serde_json::from_value(line).context("malformed ready line");
        }
        if !child.is_running() {
            bail!(
                "the oidc-provider peer exited before it was ready:\n{}",
                child.log_tail(8000)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the oidc-provider peer was not ready within {READY_TIMEOUT:?}:\n{}",
                child.log_tail(8000)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, name: &str, version: &str) {
        let at = dir.join("node_modules").join(name);
        std::fs::create_dir_all(&at).expect("mkdir");
        std::fs::write(
            at.join("package.json"),
            json!({ "name": name, "version": version }).to_string(),
        )
        .expect("write");
    }

    #[test]
    fn installed_means_every_pinned_version_is_in_node_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pins = json!({ "dependencies": { "oidc-provider": "9.13.3", "jose": "6.2.18" } });
        std::fs::write(dir.path().join("package.json"), pins.to_string()).expect("write");
        assert!(!installed(dir.path()), "nothing installed");
        package(dir.path(), "oidc-provider", "9.13.3");
        assert!(!installed(dir.path()), "jose missing");
        package(dir.path(), "jose", "6.2.17");
        assert!(!installed(dir.path()), "jose at another version");
        package(dir.path(), "jose", "6.2.18");
        assert!(installed(dir.path()));
    }

    #[test]
    fn a_missing_tool_is_an_error_naming_it() {
        let err = require_tool("tpp-operator-no-such-node-binary")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`tpp-operator-no-such-node-binary` is required")));
    }

    #[test]
    fn the_committed_package_pins_exact_versions() {
        let pkg: Value = serde_json::from_str(
            &std::fs::read_to_string(peer_dir().join("package.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(pkg["dependencies"]["oidc-provider"], json!("9.13.3"));
        let jose = pkg["dependencies"]["jose"].as_str().unwrap_or_default();
        assert!(
            jose.starts_with("6.") && jose.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{jose}"
        );
        assert!(peer_dir().join("package-lock.json").is_file());
    }
}
