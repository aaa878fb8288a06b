//! Starting and running the sandbox: binds 127.0.0.1, terminates TLS (counting full and resumed
//! handshakes), hands each request its connection's peer certificate, applies injected faults,
//! echoes `x-fapi-interaction-id`, counts answers, and exposes [`RunningSandbox`]. Does network
//! and file I/O (writes `<state_dir>/ca.pem`).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Json, Router,
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rustls::HandshakeKind;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::{
    admin, authorize,
    config::SandboxConfig,
    counters::{Counters, CountersSnapshot, Endpoint},
    discovery,
    faults::{Fault, FaultKind, Faults},
    jwks::JwksCache,
    oauth, pki, registration,
    reply::RejectReason,
    state::{AppState, Onboarding, Store, Urls, lock, now_secs},
    tls::{self, ClientCaCheck, Peer, PeerCert},
};

const INTERACTION_ID: &str = "x-fapi-interaction-id";
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A started sandbox; dropping it (or [`RunningSandbox::shutdown`]) stops serving.
pub struct RunningSandbox {
    state: Arc<AppState>,
    ca_pem: String,
    ca_path: PathBuf,
    port: u16,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the sandbox described by `cfg` and returns once it accepts connections.
pub async fn start(cfg: SandboxConfig) -> anyhow::Result<RunningSandbox> {
    std::fs::create_dir_all(&cfg.state_dir).context("create state dir")?;
    let pki = pki::ServerPki::generate()?;
    let ca_path = cfg.state_dir.join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).context("write ca.pem")?;
    let listener = TcpListener::bind(("127.0.0.1", cfg.port))
        .await
        .context("bind 127.0.0.1")?;
    let port = listener.local_addr().context("local addr")?.port();
    let urls = Urls::new(port);
    let client_ca = cfg
        .client_ca_pem
        .as_deref()
        .map(ClientCaCheck::from_pem)
        .transpose()?;
    let trusted: Vec<&str> = [
        Some(pki.ca_pem.as_str()),
        cfg.client_ca_pem.as_deref(),
        cfg.jwks_uri_ca_pem.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let jwks = JwksCache::new(cfg.jwks_cache_ttl, &trusted)?;
    let discovery = discovery::document(&urls, cfg.discovery_patch.as_ref())?;
    let acceptor = TlsAcceptor::from(tls::server_config(&pki)?);
    let state = Arc::new(AppState {
        cfg,
        urls,
        client_ca,
        discovery,
        store: Mutex::new(Store::default()),
        counters: Mutex::new(Counters::default()),
        faults: Mutex::new(Faults::default()),
        jwks,
        flows: Mutex::new(Default::default()),
    });
    let router = router(state.clone());
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, router, state.clone(), rx));
    tracing::info!(port, "sandbox AS listening");
    Ok(RunningSandbox {
        state,
        ca_pem: pki.ca_pem,
        ca_path,
        port,
        shutdown,
        task,
    })
}

impl RunningSandbox {
    /// `https://localhost:PORT`, the exact `aud` of assertions.
    pub fn issuer(&self) -> &str {
        &self.state.urls.issuer
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`, base of the mTLS endpoints.
    pub fn mtls_base(&self) -> &str {
        &self.state.urls.mtls_base
    }

    /// The discovery URL (on the issuer host).
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.state.urls.token()
    }

    /// The registration endpoint.
    pub fn registration_endpoint(&self) -> String {
        self.state.urls.registration()
    }

    /// `https://127.0.0.1:PORT/_sandbox`, base of the admin API.
    pub fn admin_url(&self) -> String {
        format!("{}/_sandbox", self.mtls_base())
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `<state_dir>/ca.pem`.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        lock(&self.state.counters).snapshot()
    }

    /// Adds a fault rule (as `POST /_sandbox/faults`); false when the table is full.
    pub fn add_fault(&self, fault: Fault) -> bool {
        lock(&self.state.faults).add(fault)
    }

    /// From now on the token endpoint refuses (`invalid_client`) requests over the certificate
    /// of this `x5t#S256`, or signed by the key of this kid (as `POST
    /// /_sandbox/refused-material`); false when the table is full.
    pub fn refuse_tokens_for(&self, material: &str) -> bool {
        lock(&self.state.faults).refuse(material)
    }

    /// Accepts that material again (as `DELETE /_sandbox/refused-material/{material}`).
    pub fn accept_tokens_for(&self, material: &str) {
        lock(&self.state.faults).accept(material);
    }

    /// Removes all fault rules and refused material.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// The RFC 7662 view of a token (`{"active": false}` when unknown or expired).
    pub fn introspect(&self, token: &str) -> Value {
        lock(&self.state.store)
            .token(token)
            .map(oauth::token_view)
            .unwrap_or_else(|| json!({"active": false}))
    }

    /// The binding view of a token the AS issued, expired or not (`None` if it never issued
    /// it or forgot it): what introspection answered while it was active.
    pub fn issued_token(&self, token: &str) -> Option<Value> {
        lock(&self.state.store).issued(token).map(oauth::token_view)
    }

    /// Every client created by registration (RFC 7591, JSON or signed) that the AS holds now,
    /// with its current registration access token: what an audit compares with the
    /// `<name>-registration` Secrets (a test accessor; the RATs never leave the process).
    pub fn registered_clients(&self) -> Vec<(String, Option<String>)> {
        use secrecy::ExposeSecret as _;
        let store = lock(&self.state.store);
        let mut out: Vec<_> = store
            .clients
            .values()
            .filter(|c| c.origin != super::state::Origin::Admin)
            .map(|c| {
                (
                    c.client_id.clone(),
                    c.rat.as_ref().map(|r| r.expose_secret().to_owned()),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Provisions a client out of band, as `POST /_sandbox/clients` (Static / HubOnboarding
    /// modes); `client_id` is generated when absent. Returns the client id.
    pub fn provision_client(&self, metadata: Value) -> anyhow::Result<String> {
        let Value::Object(map) = metadata else {
            anyhow::bail!("client metadata must be a JSON object");
        };
        let client_id = map
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let client = super::metadata::build_client(&client_id, map, super::state::Origin::Admin)
            .map_err(|message| anyhow::anyhow!("invalid client metadata: {message}"))?;
        anyhow::ensure!(
            lock(&self.state.store).put_client(client),
            "client table full"
        );
        Ok(client_id)
    }

    /// Deletes a client (and its tokens) behind its owner's back; true if it existed.
    pub fn delete_client(&self, client_id: &str) -> bool {
        lock(&self.state.store).remove_client(client_id)
    }

    /// Whether a client with this id is registered.
    pub fn has_client(&self, client_id: &str) -> bool {
        lock(&self.state.store).clients.contains_key(client_id)
    }

    /// Accepted hub onboardings, oldest first.
    pub fn onboardings(&self) -> Vec<Onboarding> {
        lock(&self.state.store).onboardings.clone()
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery_document))
        .route("/jwks", get(|| async { Json(json!({"keys": []})) }))
        .route("/tpp-registration", post(registration::register))
        .route(
            "/tpp-registration/{client_id}",
            get(registration::read)
                .put(registration::update)
                .delete(registration::delete),
        )
        .route("/token", post(oauth::token))
        .route("/introspection", post(oauth::introspection))
        .route("/token/revoke", post(oauth::revoke))
        .route("/par", post(authorize::par))
        .route("/userinfo", get(oauth::userinfo).post(oauth::userinfo))
        .route("/auth", get(authorize::authorize))
        .nest("/_sandbox", admin::routes())
        .with_state(state)
}

async fn discovery_document(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "max-age=900")],
        Json(state.discovery.clone()),
    )
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(connection(tcp, acceptor.clone(), router.clone(), state.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        _ => {
            lock(&state.counters).handshake_failed();
            return;
        }
    };
    let (_, conn) = tls.get_ref();
    lock(&state.counters).handshake(conn.handshake_kind() == Some(HandshakeKind::Resumed));
    let peer = Peer(
        conn.peer_certificates()
            .and_then(|chain| PeerCert::inspect(chain, state.client_ca.as_ref()))
            .map(Arc::new),
    );
    let service = service_fn(move |req| handle(req, router.clone(), state.clone(), peer.clone()));
    let serving = http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = serving => {}
        _ = shutdown.changed() => {}
    }
}

/// Returned by the per-request service to make hyper close the connection (fault `drop`).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by injected fault")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    req: Request<Incoming>,
    router: Router,
    state: Arc<AppState>,
    peer: Peer,
) -> Result<Response<Body>, Dropped> {
    let endpoint = Endpoint::classify(req.uri().path());
    let interaction_id = req
        .headers()
        .get(INTERACTION_ID)
        .filter(|v| v.to_str().is_ok_and(|s| !s.is_empty() && s.len() <= 128))
        .cloned()
        .or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok());
    let fault = lock(&state.faults).take(endpoint);
    let mut response = match fault {
        Some(FaultKind::Drop) => {
            lock(&state.counters).request(endpoint, "dropped", now_secs());
            return Err(Dropped);
        }
        Some(FaultKind::Status {
            code,
            retry_after_secs,
        }) => fault_response(code, retry_after_secs),
        Some(FaultKind::Issuer { issuer }) if endpoint == Endpoint::Discovery => {
            let mut document = state.discovery.clone();
            document["issuer"] = Value::String(issuer);
            ([(header::CACHE_CONTROL, "max-age=900")], Json(document)).into_response()
        }
        other => {
            if let Some(FaultKind::Delay { ms }) = other {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(peer);
            let response = match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if let Some(FaultKind::HoldAfterHandling { ms }) = other {
                // Counted now, as `held_after_<status>`: the work is done, the answer comes
                // after the client gave up (if ever), and then not at all.
                let status = format!("held_after_{}", response.status().as_str());
                lock(&state.counters).request(endpoint, &status, now_secs());
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Err(Dropped);
            }
            if other == Some(FaultKind::DropAfterHandling) {
                // Counted as `dropped_after_<status>`: what the AS did, and that nobody heard.
                let status = format!("dropped_after_{}", response.status().as_str());
                lock(&state.counters).request(endpoint, &status, now_secs());
                return Err(Dropped);
            }
            response
        }
    };
    let reason = response.extensions().get::<RejectReason>().copied();
    if let Some(id) = interaction_id {
        response.headers_mut().insert(INTERACTION_ID, id);
    }
    let mut counters = lock(&state.counters);
    if let Some(RejectReason(reason)) = reason {
        counters.reject(reason);
    }
    counters.request(endpoint, response.status().as_str(), now_secs());
    Ok(response)
}

fn fault_response(code: u16, retry_after_secs: Option<u64>) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = if status == StatusCode::TOO_MANY_REQUESTS {
        "slow_down"
    } else {
        "temporarily_unavailable"
    };
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": "injected fault"})),
    )
        .into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
        .extensions_mut()
        .insert(RejectReason("injected_fault"));
    response
}
