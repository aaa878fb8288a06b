//! The campaign (docs/reliability.md, "The campaign"): TppClients of all four registration
//! modes against the sandbox AS in its strict mode, and of the two registering modes against
//! oidc-provider (an independent AS), through onboarding, RFC 7592 key rotation, certificate
//! renewal and token refresh on short schedules, while the operator is crashed or failed at
//! its named failpoints and killed at seeded random moments. After every fault the operator
//! is restarted and the invariants are checked:
//!
//! - registrations at the AS = Dynamic/SignedRequest clients, plus only the extra clients the
//!   protocol makes unavoidable, each reported by a `RegistrationLost` Warning naming its
//!   TppClient;
//! - every RAT the AS holds for a managed client is the one in `<name>-registration` (or the
//!   TppClient reports `RegistrationAccessTokenLost` naming it);
//! - every version of every credentials Secret (watched) holds tokens bound (`cnf.x5t#S256`)
//!   to that version's `tls.crt`;
//! - no expired token in a credentials Secret while the operator had been up a token lifetime
//!   and more; every client Ready again, with a token minted after the restart, within
//!   [`LIVENESS`].
//!
//! `make test` runs the reduced campaign (the default: a few clients, the registration, RFC
//! 7592 PUT, token and credentials-write points, a few kills). `TPP_CHAOS=full` (`make chaos`)
//! runs 50 clients, every failpoint on the controller's path × {crash, error} and 30 seeded
//! kills, against each AS. `TPP_CHAOS_SEED` sets the seed (printed either way);
//! `TPP_CHAOS_CLIENTS`, `TPP_CHAOS_KILLS` override the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    fixtures::*,
    operator::OperatorProcess,
    peer::{OidcPeer, PeerOptions},
    sandbox::{AudPolicy, RunningSandbox},
    with_namespace,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use secrecy::SecretString;
use serde_json::json;

/// The liveness bound: every client Ready again, with a token minted after the restart, this
/// long after the operator came back (generous on a loaded 2-core machine; not a speed claim).
const LIVENESS: Duration = Duration::from_secs(120);

/// Failpoints that are not on the controller's path: introspection and PAR are library calls of
/// `kubectl tpp` (operator/src/oauth/endpoints.rs), never made by a reconcile. (Revocation is:
/// at deletion, and after a refresh with `tokens[].revokeReplaced`.)
const OFF_PATH: &[&str] = &[
    "introspection",
    "pushed_authorization",
    // A consumer restart needs a Deployment named in `consumers.restartTargets`; the
    // campaign's clients have none (`control_plane_faults.rs` injects at this point).
    "restart_consumer",
];

/// Failpoints no activity of the campaign reaches: the RFC 7592 GET is made only after a PUT was
/// refused (docs/reliability.md, "How often a client is registered"), which neither AS does
/// here; `control_plane_faults.rs` reaches it (a PUT answer dropped after the AS rotated the RAT).
/// Every other step must reach its point, or the campaign fails.
const UNREACHABLE: &[&str] = &["before_registration_get", "after_registration_get"];

/// The operator acts on a verb annotation at most once per verb and client in this long
/// (docs/security.md, "No schedule is faster than a stated rate"): a trigger on a client that had
/// one more recently is deferred, and its failpoint would not be reached.
const VERB_FLOOR: Duration = Duration::from_secs(10 * 60);
const ROTATE_KEYS: &str = "tpp.dev/rotate-keys";
const RENEW_CERTIFICATE: &str = "tpp.dev/renew-certificate";

/// What the campaign does to reach a failpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    /// A new Dynamic or SignedRequest client (registration, onboarding, finalizer points).
    NewClient,
    /// A new HubOnboarding client.
    NewHubClient,
    /// `tpp.dev/rotate-keys` on a Dynamic client (RFC 7592 and JWKS points).
    RotateKeys,
    /// A change of the AuthorizationServer's spec (its status write).
    ServerSpec,
    /// Deleting a Dynamic client (DELETE, revocation, finalizer-removal points).
    Delete,
    /// `tpp.dev/renew-certificate` (everything else; token refresh, events and client status
    /// writes also happen on their own).
    RenewCertificate,
}

impl Activity {
    fn of(point: &str) -> Self {
        let has = |p: &str| point.contains(p);
        if has("registration_post") || has("add_finalizer") {
            Activity::NewClient
        } else if has("hub_onboarding") {
            Activity::NewHubClient
        } else if has("registration_put")
            || has("registration_get")
            || has("apply_jwks")
            || has("apply_registration")
        {
            Activity::RotateKeys
        } else if has("apply_server_status") {
            Activity::ServerSpec
        } else if has("registration_delete")
            || has("revocation")
            || has("release_secret")
            || has("remove_finalizer")
        {
            Activity::Delete
        } else {
            Activity::RenewCertificate
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Dynamic,
    Signed,
    Static,
    Hub,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Dynamic, Mode::Signed, Mode::Static, Mode::Hub];
    /// The modes oidc-provider has: it registers clients (RFC 7591, signed through the peer's
    /// middleware); it has no hub onboarding, and a Static client there would need the
    /// operator's `/jwks` over https.
    const REGISTERING: [Mode; 2] = [Mode::Dynamic, Mode::Signed];
    fn registers(self) -> bool {
        matches!(self, Mode::Dynamic | Mode::Signed)
    }
    fn prefix(self) -> &'static str {
        match self {
            Mode::Dynamic => "dyn",
            Mode::Signed => "sig",
            Mode::Static => "sta",
            Mode::Hub => "hub",
        }
    }
}

struct Tracked {
    name: String,
    mode: Mode,
    deleted: bool,
    /// When each verb annotation was last set on it.
    acted: BTreeMap<&'static str, Instant>,
}

impl Tracked {
    /// Whether `verb` set now would be acted on at once (not deferred by the floor).
    fn fresh(&self, verb: &str) -> bool {
        self.acted
            .get(verb)
            .is_none_or(|at| at.elapsed() >= VERB_FLOOR)
    }
}

/// The AS the campaign runs against, and what the checks ask it.
enum Authority {
    /// The sandbox AS in strict mode: it keeps a record of every token it issued, expired ones
    /// included, and of every client's current RAT.
    Sandbox(Arc<RunningSandbox>),
    /// oidc-provider: tokens are checked by introspection, registrations counted from its
    /// events, RATs by an RFC 7592 GET.
    Peer(Arc<OidcPeer>),
}

/// What the AS says about one access token.
struct TokenFacts {
    /// `cnf.x5t#S256`.
    x5t: Option<String>,
    /// `iat`, seconds.
    iat: Option<u64>,
}

impl Authority {
    /// The name of its AuthorizationServer object.
    fn server(&self) -> &'static str {
        match self {
            Authority::Sandbox(_) => "sandbox",
            Authority::Peer(_) => "peer",
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Authority::Sandbox(_) => "sandbox AS (strict)",
            Authority::Peer(_) => "oidc-provider",
        }
    }

    fn modes(&self) -> &'static [Mode] {
        match self {
            Authority::Sandbox(_) => &Mode::ALL,
            Authority::Peer(_) => &Mode::REGISTERING,
        }
    }

    /// Whether activity at this AS can reach `point` (oidc-provider has no hub onboarding).
    fn reaches(&self, point: &str) -> bool {
        !(matches!(self, Authority::Peer(_)) && point.contains("hub_onboarding"))
    }

    /// What the AS knows of `token`; `None` when it does not know it (oidc-provider forgets a
    /// token once it expires: introspection then answers `active: false`).
    async fn token(&self, token: &str) -> Option<TokenFacts> {
        let claims = match self {
            Authority::Sandbox(s) => s.issued_token(token)?,
            Authority::Peer(p) => {
                let info = p
                    .introspect(&SecretString::from(token.to_owned()))
                    .await
                    .ok()?;
                if info["active"] != true {
                    return None;
                }
                info
            }
        };
        Some(TokenFacts {
            x5t: claims["cnf"]["x5t#S256"].as_str().map(str::to_owned),
            iat: claims["iat"].as_u64(),
        })
    }

    /// Client ids created by registration and not deleted.
    fn registered(&self) -> BTreeSet<String> {
        match self {
            Authority::Sandbox(s) => s.registered_clients().into_iter().map(|c| c.0).collect(),
            Authority::Peer(p) => p.live_registrations(),
        }
    }

    /// Whether the AS holds `rat` as the registration access token of `id` now.
    async fn holds_rat(&self, id: &str, uri: Option<&str>, rat: Option<&str>) -> Result<bool> {
        match self {
            Authority::Sandbox(s) => Ok(s
                .registered_clients()
                .into_iter()
                .any(|(c, held)| c == id && held.as_deref() == rat)),
            Authority::Peer(p) => match (uri, rat) {
                (Some(uri), Some(rat)) => p.accepts_rat(uri, rat).await,
                _ => Ok(false),
            },
        }
    }
}

/// What the watch of the credentials Secrets saw.
#[derive(Default)]
struct Watched {
    seen: HashSet<(String, String)>,
    versions: u64,
    tokens_checked: u64,
    mismatches: Vec<String>,
    /// Tokens the AS no longer knew when the watch asked (oidc-provider, an already expired
    /// token of a version seen late): neither a pass nor a mismatch.
    unverifiable: u64,
    expired: Vec<String>,
    /// name → (access tokens, their expiry) of the newest version.
    latest: BTreeMap<String, Vec<(String, jiff::Timestamp)>>,
}

fn tokens_of(s: &Secret) -> Vec<(String, String, Option<jiff::Timestamp>)> {
    let Some(data) = s.data.as_ref() else {
        return vec![];
    };
    data.keys()
        .filter_map(|k| k.strip_suffix(".access_token"))
        .map(|t| {
            let token = secret_text(s, &format!("{t}.access_token")).unwrap_or_default();
            let exp = secret_text(s, &format!("{t}.expires_at")).and_then(|e| e.parse().ok());
            (t.to_owned(), token, exp)
        })
        .collect()
}

/// Check one version of a credentials Secret: each token one the AS issued, bound to the
/// `tls.crt` beside it; none written already expired. Each version is checked once.
async fn observe(watched: &Mutex<Watched>, authority: &Authority, s: &Secret, written: bool) {
    let name = s.metadata.name.clone().unwrap_or_default();
    if !name.ends_with("-credentials") {
        return;
    }
    let rv = s.metadata.resource_version.clone().unwrap_or_default();
    if !watched
        .lock()
        .unwrap()
        .seen
        .insert((name.clone(), rv.clone()))
    {
        return;
    }
    let x5t = secret_text(s, "tls.crt").and_then(|c| x5t_of_pem(&c).ok());
    let mut facts = vec![];
    for (t, token, exp) in tokens_of(s) {
        let known = authority.token(&token).await;
        facts.push((t, known, exp));
    }
    let now = jiff::Timestamp::now();
    let mut w = watched.lock().unwrap();
    w.versions += 1;
    let mut latest = vec![];
    for (t, known, exp) in facts {
        w.tokens_checked += 1;
        match (&x5t, known) {
            (Some(x), Some(TokenFacts { x5t: Some(b), .. })) if *x == b => {}
            (_, None)
                if matches!(authority, Authority::Peer(_)) && exp.is_some_and(|e| e <= now) =>
            {
                w.unverifiable += 1;
            }
            (_, None) => w
                .mismatches
                .push(format!("{name}@{rv}: token {t} unknown to the AS")),
            _ => w.mismatches.push(format!(
                "{name}@{rv}: token {t} not bound to the tls.crt beside it"
            )),
        }
        match exp {
            Some(e) => {
                if written && e <= now {
                    w.expired.push(format!(
                        "{name}@{rv}: written with token {t} expired at {e}"
                    ));
                }
                latest.push((t, e));
            }
            None => w
                .mismatches
                .push(format!("{name}@{rv}: {t} without expires_at")),
        }
    }
    w.latest.insert(name, latest);
}

struct Campaign {
    ctx: Arc<e2e::TestContext>,
    authority: Arc<Authority>,
    op: OperatorProcess,
    clients: Vec<Tracked>,
    directory: tpp_operator::identity::PrivateKey,
    watched: Arc<Mutex<Watched>>,
    /// Since when the operator has run without failpoints (None: down or armed).
    up_since: Arc<Mutex<Option<Instant>>>,
    created: usize,
    max_settle: Duration,
    settles: Vec<(String, Duration)>,
    outcomes: Vec<(String, String)>,
}

fn now_unix() -> u64 {
    jiff::Timestamp::now().as_second().max(0) as u64
}

impl Campaign {
    fn ns(&self) -> &str {
        &self.ctx.namespace
    }

    /// Create a client of `mode` (Static / HubOnboarding are provisioned at the AS first,
    /// as OFM onboarding does; SignedRequest gets its software statement once its key exists).
    async fn create(&mut self, mode: Mode) -> Result<String> {
        let name = format!("{}-{}", mode.prefix(), self.created);
        self.created += 1;
        let registration = match mode {
            Mode::Dynamic => json!({"mode": "Dynamic"}),
            Mode::Signed => {
                json!({"mode": "SignedRequest", "softwareStatementRef": {"name": format!("{name}-ssa"), "key": "ssa.jwt"}, "metadata": {"softwareId": name}})
            }
            Mode::Static | Mode::Hub => {
                let Authority::Sandbox(sandbox) = &*self.authority else {
                    bail!("{mode:?} clients are provisioned at the sandbox AS only");
                };
                let jwks_uri = format!("{}/jwks/{}/{name}", self.op.jwks_url, self.ns());
                let mut metadata = json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri, "scope": "accounts"});
                if mode == Mode::Hub {
                    // Served only over the certificate it onboarded (`bind_onboarding`).
                    metadata["hub_onboarding"] = json!(true);
                }
                let client_id = sandbox.provision_client(metadata)?;
                let m = if mode == Mode::Static {
                    "Static"
                } else {
                    "HubOnboarding"
                };
                json!({"mode": m, "clientId": client_id, "jwksUri": jwks_uri})
            }
        };
        apply(
            &self.ctx,
            client(
                &name,
                self.authority.server(),
                json!({"registration": registration}),
            ),
        )
        .await?;
        self.clients.push(Tracked {
            name: name.clone(),
            mode,
            deleted: false,
            acted: BTreeMap::new(),
        });
        Ok(name)
    }

    /// Issue the software statements of SignedRequest clients that have none yet (the
    /// directory signs the client's published JWKS).
    async fn issue_statements(&self) -> Result<()> {
        let cms: Api<ConfigMap> = self.ctx.api();
        let secrets: Api<Secret> = self.ctx.api();
        for c in self
            .clients
            .iter()
            .filter(|c| c.mode == Mode::Signed && !c.deleted)
        {
            let ssa_name = format!("{}-ssa", c.name);
            if secrets.get_opt(&ssa_name).await?.is_some() {
                continue;
            }
            let deadline = Instant::now() + LIVENESS;
            let jwks = loop {
                if let Some(cm) = cms.get_opt(&format!("{}-jwks", c.name)).await?
                    && let Some(text) = cm.data.and_then(|d| d.get("jwks.json").cloned())
                {
                    break serde_json::from_str::<serde_json::Value>(&text)?;
                }
                ensure!(Instant::now() < deadline, "{}: no JWKS published", c.name);
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let signer = self.directory.signer()?;
            let mut header = josekit::jws::JwsHeader::new();
            header.set_token_type("JWT");
            let mut payload = josekit::jwt::JwtPayload::new();
            payload.set_claim("software_id", Some(json!(c.name)))?;
            payload.set_claim("software_jwks", Some(jwks))?;
            payload.set_claim("iss", Some(json!("chaos-directory")))?;
            let now = std::time::SystemTime::now();
            payload.set_issued_at(&now);
            payload.set_expires_at(&(now + Duration::from_secs(24 * 3600)));
            let ssa = josekit::jwt::encode_with_signer(&payload, &header, &signer)?;
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": ssa_name}, "stringData": {"ssa.jwt": ssa}});
            secrets
                .patch(
                    &ssa_name,
                    &PatchParams::apply("e2e-user"),
                    &Patch::Apply(&secret),
                )
                .await?;
        }
        Ok(())
    }

    async fn annotate(&mut self, name: &str, key: &'static str, value: &str) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        api(&self.ctx, "TppClient")
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if let Some(c) = self.clients.iter_mut().find(|c| c.name == name) {
            c.acted.insert(key, Instant::now());
        }
        Ok(())
    }

    /// A live Dynamic client whose RFC 7592 management is not halted, picked by `pick`; with
    /// `verb`, only one on which that verb would be acted on at once.
    async fn rotatable(&self, pick: usize, verb: Option<&str>) -> Result<Option<String>> {
        let mut names = vec![];
        for c in self
            .clients
            .iter()
            .filter(|c| c.mode == Mode::Dynamic && !c.deleted)
            .filter(|c| verb.is_none_or(|v| c.fresh(v)))
        {
            let o = api(&self.ctx, "TppClient").get(&c.name).await?;
            if reported(&o).is_none() {
                names.push(c.name.clone());
            }
        }
        Ok((!names.is_empty()).then(|| names[pick % names.len()].clone()))
    }

    /// A live client on which `verb` would be acted on at once, picked by `pick`.
    fn renewable(&self, pick: usize, verb: &str) -> Option<String> {
        let live: Vec<&Tracked> = self
            .clients
            .iter()
            .filter(|c| !c.deleted && c.fresh(verb))
            .collect();
        (!live.is_empty()).then(|| live[pick % live.len()].name.clone())
    }

    /// Before the operator is restarted with the failpoint of `activity` armed: make sure a
    /// client the activity can use exists (a verb floor can have used them all up), onboarded by
    /// the operator without failpoints.
    async fn prepare(&mut self, activity: Activity, step: usize) -> Result<()> {
        let missing = match activity {
            Activity::RotateKeys => self.rotatable(step, Some(ROTATE_KEYS)).await?.is_none(),
            Activity::Delete => self.rotatable(step, None).await?.is_none(),
            Activity::RenewCertificate => self.renewable(step, RENEW_CERTIFICATE).is_none(),
            Activity::NewClient | Activity::NewHubClient | Activity::ServerSpec => false,
        };
        if missing {
            let name = self.create(Mode::Dynamic).await?;
            wait_condition(&self.ctx, "TppClient", &name, "Ready", "True", LIVENESS).await?;
        }
        Ok(())
    }

    /// Do `activity` (see [`Activity`]), which reaches the armed failpoint.
    async fn trigger(&mut self, activity: Activity, step: usize) -> Result<()> {
        let value = format!("chaos-{step}");
        match activity {
            Activity::NewClient => {
                let mode = if step.is_multiple_of(2) {
                    Mode::Dynamic
                } else {
                    Mode::Signed
                };
                self.create(mode).await?;
                self.issue_statements().await?;
            }
            Activity::NewHubClient => {
                self.create(Mode::Hub).await?;
            }
            Activity::RotateKeys => {
                let name = self
                    .rotatable(step, Some(ROTATE_KEYS))
                    .await?
                    .context("no client to rotate (prepare makes one)")?;
                self.annotate(&name, ROTATE_KEYS, &value).await?;
            }
            Activity::ServerSpec => {
                // A spec change makes the AuthorizationServer's status change (an unchanged
                // one is never rewritten).
                let patch = json!({"spec": {"rateLimit": {"burst": 100 + step}}});
                api(&self.ctx, "AuthorizationServer")
                    .patch(
                        self.authority.server(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
            }
            Activity::Delete => {
                let name = self
                    .rotatable(step, None)
                    .await?
                    .context("no client to delete (prepare makes one)")?;
                api(&self.ctx, "TppClient")
                    .delete(&name, &DeleteParams::default())
                    .await?;
                if let Some(c) = self.clients.iter_mut().find(|c| c.name == name) {
                    c.deleted = true;
                }
            }
            Activity::RenewCertificate => {
                let name = self
                    .renewable(step, RENEW_CERTIFICATE)
                    .context("no client to renew (prepare makes one)")?;
                self.annotate(&name, RENEW_CERTIFICATE, &value).await?;
            }
        }
        Ok(())
    }

    /// Restart the operator (SIGKILL of what is left) with `failpoints`.
    async fn restart(&mut self, failpoints: Option<String>) -> Result<()> {
        *self.up_since.lock().unwrap() = None;
        let clean = failpoints.is_none();
        self.op.restart_with_failpoints(failpoints).await?;
        if clean {
            *self.up_since.lock().unwrap() = Some(Instant::now());
        }
        Ok(())
    }

    /// Wait until every client is settled after a restart at `since`: Ready with a token the
    /// AS minted after `since` (or halted and reporting why), its RAT the AS's (or reported
    /// lost), deleted clients gone. Records the time taken.
    async fn settle(&mut self, label: &str, since: Instant, since_unix: u64) -> Result<()> {
        let deadline = since + LIVENESS;
        let tpps = api(&self.ctx, "TppClient");
        let secrets: Api<Secret> = self.ctx.api();
        loop {
            let mut pending = vec![];
            let at_as = self.authority.registered();
            for c in &self.clients {
                let obj = tpps.get_opt(&c.name).await?;
                if c.deleted {
                    if obj.is_some() {
                        pending.push(format!("{}: not gone", c.name));
                    }
                    continue;
                }
                let Some(obj) = obj else {
                    pending.push(format!("{}: missing", c.name));
                    continue;
                };
                let why = reported(&obj);
                if why.as_deref() == Some("RegistrationOutcomeUnknown") {
                    continue;
                }
                let ready = condition(&obj, "Ready").is_some_and(|r| r["status"] == "True");
                if !ready && why.is_none() {
                    pending.push(format!("{}: not Ready", c.name));
                    continue;
                }
                let fresh = match secrets.get_opt(&format!("{}-credentials", c.name)).await? {
                    Some(s) => {
                        let toks = tokens_of(&s);
                        let mut all = !toks.is_empty();
                        for (_, t, _) in &toks {
                            let iat = self.authority.token(t).await.and_then(|f| f.iat);
                            all &= iat.is_some_and(|iat| iat >= since_unix);
                        }
                        all
                    }
                    None => false,
                };
                if !fresh {
                    pending.push(format!("{}: no token minted since the restart", c.name));
                }
                if c.mode.registers() && why.is_none() {
                    let reg = secrets.get_opt(&format!("{}-registration", c.name)).await?;
                    let id = reg.as_ref().and_then(|s| secret_text(s, "client_id"));
                    let rat = reg
                        .as_ref()
                        .and_then(|s| secret_text(s, "registration_access_token"));
                    let uri = reg
                        .as_ref()
                        .and_then(|s| secret_text(s, "registration_client_uri"));
                    match id.filter(|id| at_as.contains(id)) {
                        Some(id) => {
                            if !self
                                .authority
                                .holds_rat(&id, uri.as_deref(), rat.as_deref())
                                .await?
                            {
                                pending.push(format!(
                                    "{}: the AS holds another RAT than <name>-registration",
                                    c.name
                                ));
                            }
                        }
                        None => pending.push(format!("{}: client not at the AS", c.name)),
                    }
                }
            }
            if pending.is_empty() {
                let took = since.elapsed();
                self.max_settle = self.max_settle.max(took);
                self.settles.push((label.to_owned(), took));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{label}: not settled {LIVENESS:?} after the restart: {}",
                    pending.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// [`Self::registrations_now`] until it holds, at most 20 s: a key rotation still under
    /// way after the settle has an RFC 7592 answer between the AS's new RAT and its persist.
    async fn registrations(&self) -> Result<(usize, usize, usize)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.registrations_now().await {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Registration invariants now: (extra clients at the AS, TppClients a `RegistrationLost`
    /// Warning names, RATs lost and reported).
    async fn registrations_now(&self) -> Result<(usize, usize, usize)> {
        let at_as = self.authority.registered();
        let secrets: Api<Secret> = self.ctx.api();
        let mut managed = BTreeSet::new();
        let mut lost_reported = 0;
        for c in self
            .clients
            .iter()
            .filter(|c| c.mode.registers() && !c.deleted)
        {
            let obj = api(&self.ctx, "TppClient").get(&c.name).await?;
            let why = reported(&obj);
            let reg = secrets.get_opt(&format!("{}-registration", c.name)).await?;
            let Some(id) = reg.as_ref().and_then(|s| secret_text(s, "client_id")) else {
                ensure!(
                    why.as_deref() == Some("RegistrationOutcomeUnknown"),
                    "{}: no registration and no reason",
                    c.name
                );
                continue;
            };
            let rat = reg
                .as_ref()
                .and_then(|s| secret_text(s, "registration_access_token"));
            let uri = reg
                .as_ref()
                .and_then(|s| secret_text(s, "registration_client_uri"));
            ensure!(
                at_as.contains(&id),
                "{}: its client {id} is gone from the AS",
                c.name
            );
            if !self
                .authority
                .holds_rat(&id, uri.as_deref(), rat.as_deref())
                .await?
            {
                ensure!(
                    why.as_deref() == Some("RegistrationAccessTokenLost")
                        && condition_messages(&obj).contains(&id),
                    "{}: the AS's RAT for {id} is not the one in {}-registration, unreported",
                    c.name,
                    c.name
                );
                lost_reported += 1;
            }
            managed.insert(id);
        }
        let extra = at_as.iter().filter(|id| !managed.contains(*id)).count();
        let events: Api<Event> = self.ctx.api();
        let named: BTreeSet<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("RegistrationLost")
                    && e.type_.as_deref() == Some("Warning")
            })
            .filter_map(|e| e.involved_object.name)
            .collect();
        ensure!(
            extra <= named.len(),
            "{extra} clients at the AS that no TppClient manages, but only {} TppClients named by RegistrationLost Warnings ({named:?})",
            named.len()
        );
        Ok((extra, named.len(), lost_reported))
    }

    async fn check(&mut self, label: &str, since: Instant, since_unix: u64) -> Result<()> {
        self.settle(label, since, since_unix).await?;
        self.registrations()
            .await
            .with_context(|| format!("after {label}"))?;
        let w = self.watched.lock().unwrap();
        ensure!(
            w.mismatches.is_empty() && w.expired.is_empty(),
            "after {label}: binding mismatches {:?}, expired tokens {:?}",
            w.mismatches,
            w.expired
        );
        Ok(())
    }
}

/// The reason of a condition that reports a registration left in a state needing a human
/// (`RegistrationOutcomeUnknown`, `RegistrationAccessTokenLost`), if any.
fn reported(obj: &kube::api::DynamicObject) -> Option<String> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .find(|r| {
            matches!(
                *r,
                "RegistrationOutcomeUnknown" | "RegistrationAccessTokenLost"
            )
        })
        .map(str::to_owned)
}

fn condition_messages(obj: &kube::api::DynamicObject) -> String {
    obj.data["status"]["conditions"].to_string()
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which AS a campaign runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Against {
    Sandbox,
    OidcProvider,
}

#[tokio::test]
async fn the_campaign_keeps_registrations_rats_and_token_bindings_through_failpoints_and_kills() {
    campaign(Against::Sandbox).await;
}

#[tokio::test]
async fn against_oidc_provider_the_campaign_keeps_registrations_rats_and_token_bindings() {
    campaign(Against::OidcProvider).await;
}

/// Start the AS of the campaign and its AuthorizationServer. The sandbox runs strict (exact
/// `aud`, an initial access token for Dynamic registration, signed registrations with `iss`
/// and the statement's keys, hub clients served only over the onboarded certificate); the
/// campaign has no `tls_client_auth` client, so the sandbox's client CA has nothing to check.
async fn start_authority(
    ctx: &e2e::TestContext,
    against: Against,
    lifetime: Duration,
    directory_jwks: &serde_json::Value,
) -> Result<Authority> {
    let token = format!("iat-{}", uuid::Uuid::new_v4());
    let (authority, issuer, ca) = match against {
        Against::Sandbox => {
            let sandbox = start_sandbox(ctx, |c| {
                c.token_lifetime = lifetime;
                c.directory_jwks = Some(directory_jwks.clone());
                c.aud_policy = AudPolicy::Strict;
                c.initial_access_token = Some(SecretString::from(token.clone()));
                c.strict_signed_registration = true;
                c.bind_onboarding = true;
            })
            .await?;
            let (issuer, ca) = (sandbox.issuer().to_string(), sandbox.ca_pem().to_string());
            (Authority::Sandbox(Arc::new(sandbox)), issuer, ca)
        }
        Against::OidcProvider => {
            let peer = OidcPeer::start(PeerOptions {
                directory_jwks: directory_jwks.clone(),
                initial_access_token: Some(token.clone()),
                client_credentials_ttl: Some(lifetime),
                ..Default::default()
            })
            .await?;
            let (issuer, ca) = (peer.issuer().to_owned(), peer.ca_pem().to_owned());
            (Authority::Peer(Arc::new(peer)), issuer, ca)
        }
    };
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "as-iat"},
        "stringData": {"token": token}});
    ctx.api::<Secret>()
        .patch(
            "as-iat",
            &PatchParams::apply("e2e-user"),
            &Patch::Apply(&secret),
        )
        .await?;
    apply(
        ctx,
        json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "AuthorizationServer",
            "metadata": {"name": authority.server()}, "spec": {
            "issuer": issuer, "caBundle": ca, "jwksCacheTtl": "2s",
            "rateLimit": {"requestsPerSecond": 100, "burst": 100},
            "registration": {"initialAccessTokenRef": {"name": "as-iat", "key": "token"}},
        }}),
    )
    .await?;
    Ok(authority)
}

async fn campaign(against: Against) {
    let full = std::env::var("TPP_CHAOS").is_ok_and(|v| v == "full");
    let seed: u64 = std::env::var("TPP_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    let peer = against == Against::OidcProvider;
    let n = env_usize(
        "TPP_CHAOS_CLIENTS",
        if full {
            50
        } else if peer {
            6
        } else {
            8
        },
    );
    let kills = env_usize("TPP_CHAOS_KILLS", if full { 30 } else { 4 });
    let lifetime = Duration::from_secs(if full { 15 } else { 10 });
    let points: Vec<&'static str> = if full {
        tpp_operator::failpoints::NAMES
            .iter()
            .copied()
            .filter(|p| !OFF_PATH.iter().any(|o| p.ends_with(o)))
            .filter(|p| !(peer && p.contains("hub_onboarding")))
            .collect()
    } else {
        vec![
            "after_registration_post",
            "after_registration_put",
            "before_token",
            "after_apply_credentials",
        ]
    };
    println!(
        "chaos against {against:?}: {} run, seed {seed} (TPP_CHAOS_SEED={seed} repeats it), {n} clients, {} failpoints x {{crash, error}}, {kills} kills, token lifetime {lifetime:?}",
        if full { "full" } else { "reduced" },
        points.len()
    );
    let prefix = if peer { "chaos-peer" } else { "chaos" };
    with_namespace(prefix, |ctx| async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let directory = tpp_operator::identity::PrivateKey::generate(
            tpp_operator::identity::KeyAlgorithm::Rsa2048,
        )?;
        let directory_jwks = json!({"keys": [serde_json::to_value(directory.public_jwk())?]});
        let authority = Arc::new(start_authority(&ctx, against, lifetime, &directory_jwks).await?);
        if let Authority::Peer(p) = &*authority {
            let p = p.clone();
            ctx.on_failure_print(move || format!("----- oidc-provider log (tail) -----\n{}", p.log_tail(8000)));
        }
        let op = start_operator(&ctx).await?;

        let watched = Arc::new(Mutex::new(Watched::default()));
        let up_since = Arc::new(Mutex::new(Some(Instant::now())));
        let watch = {
            let (authority, watched) = (authority.clone(), watched.clone());
            let secrets: Api<Secret> = ctx.api();
            tokio::spawn(async move {
                let mut events = Box::pin(watcher(secrets, watcher::Config::default()).default_backoff());
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(watcher::Event::Apply(s)) => observe(&watched, &authority, &s, true).await,
                        Ok(watcher::Event::InitApply(s)) => observe(&watched, &authority, &s, false).await,
                        Ok(watcher::Event::Delete(s)) => {
                            watched.lock().unwrap().latest.remove(&s.metadata.name.unwrap_or_default());
                        }
                        _ => {}
                    }
                }
            })
        };
        // Expired tokens in a Secret while the operator was up without a failpoint armed long
        // enough to have refreshed them: it came up a token lifetime + 5 s before the expiry,
        // or has been up a lifetime + 20 s. (Tokens that expire while it is down or just
        // restarted are not its fault; settle() then demands fresh ones.)
        let sampler = {
            let (watched, up_since) = (watched.clone(), up_since.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let Some(up) = *up_since.lock().unwrap() else {
                        continue;
                    };
                    let now = jiff::Timestamp::now();
                    // When the operator had a token lifetime and 5 s to refresh it, or has
                    // been up a lifetime and 20 s.
                    let long_up = up.elapsed() >= lifetime + Duration::from_secs(20);
                    let up_at = now - jiff::SignedDuration::try_from(up.elapsed()).unwrap_or_default();
                    let due_by = up_at + jiff::SignedDuration::try_from(lifetime + Duration::from_secs(5)).unwrap_or_default();
                    let mut w = watched.lock().unwrap();
                    let late: Vec<String> = w
                        .latest
                        .iter()
                        .flat_map(|(name, toks)| {
                            toks.iter()
                                .filter(|(_, e)| *e <= now && (long_up || *e >= due_by))
                                .map(move |(t, e)| format!("{name}: token {t} expired at {e}, still in the Secret at {now}"))
                        })
                        .collect();
                    w.expired.extend(late);
                }
            })
        };

        let mut c = Campaign {
            ctx: ctx.clone(),
            authority: authority.clone(),
            op,
            clients: vec![],
            directory,
            watched: watched.clone(),
            up_since: up_since.clone(),
            created: 0,
            max_settle: Duration::ZERO,
            settles: vec![],
            outcomes: vec![],
        };
        let modes = authority.modes();
        let started = Instant::now();
        let start_unix = now_unix();
        for i in 0..n {
            c.create(modes[i % modes.len()]).await?;
        }
        c.issue_statements().await?;
        c.check("onboarding", started, start_unix).await?;
        println!("chaos: {n} clients onboarded in {:?}", started.elapsed());

        let mut step = 0;
        for point in points.iter().filter(|p| authority.reaches(p)) {
            let activity = Activity::of(point);
            for crash in [true, false] {
                step += 1;
                let action = if crash { "1*return(abort)" } else { "1*return(error)" };
                let label = format!("{point}={action}");
                c.prepare(activity, step).await?;
                c.restart(Some(format!("{point}={action}"))).await?;
                let log_before = c.op.log().len();
                c.trigger(activity, step).await?;
                let reached = if crash {
                    c.op.wait_exited(Duration::from_secs(30)).await
                } else {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let log = c.op.log();
                        if log[log_before.min(log.len())..]
                            .lines()
                            .any(|l| l.contains("failpoint injected a failure") && l.contains(point))
                        {
                            break true;
                        }
                        if Instant::now() > deadline {
                            break false;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                let outcome = match (crash, reached) {
                    (true, true) => "crashed, recovered",
                    (false, true) => "failed, recovered",
                    (_, false) => "not reached in 30 s",
                };
                c.restart(None).await?;
                let (since, since_unix) = (Instant::now(), now_unix());
                c.issue_statements().await?;
                c.check(&label, since, since_unix).await?;
                println!("chaos: {label}: {outcome} ({:?} to settle)", c.settles.last().map(|s| s.1).unwrap_or_default());
                c.outcomes.push((label, outcome.to_owned()));
            }
        }

        let mut kill_log = vec![];
        for k in 0..kills {
            step += 1;
            let delay = Duration::from_millis(rng.random_range(0..4000));
            let what = rng.random_range(0..4u8);
            match what {
                0 => {
                    c.create(modes[rng.random_range(0..modes.len())]).await?;
                }
                1 => {
                    if let Some(name) = c.rotatable(rng.random_range(0..1000), None).await? {
                        c.annotate(&name, ROTATE_KEYS, &format!("chaos-{step}")).await?;
                    }
                }
                _ => {
                    let live: Vec<String> = c.clients.iter().filter(|c| !c.deleted).map(|c| c.name.clone()).collect();
                    let name = live[rng.random_range(0..live.len())].clone();
                    c.annotate(&name, RENEW_CERTIFICATE, &format!("chaos-{step}")).await?;
                }
            }
            // The kill lands at a seeded moment after the activity started (not a wait).
            tokio::time::sleep(delay).await;
            c.op.kill();
            c.restart(None).await?;
            let (since, since_unix) = (Instant::now(), now_unix());
            c.issue_statements().await?;
            let label = format!("kill {k} (activity {what}, +{} ms)", delay.as_millis());
            c.check(&label, since, since_unix).await?;
            kill_log.push(label);
        }

        let (extra, named, rat_lost) = c.registrations().await?;
        watch.abort();
        sampler.abort();
        let w = watched.lock().unwrap();
        let registering = c.clients.iter().filter(|x| x.mode.registers() && !x.deleted).count();
        let crashed = c.outcomes.iter().filter(|o| o.1.starts_with("crashed")).count();
        let failed = c.outcomes.iter().filter(|o| o.1.starts_with("failed")).count();
        let unreached: Vec<&str> = c.outcomes.iter().filter(|o| o.1.starts_with("not")).map(|o| o.0.as_str()).collect();
        println!("chaos summary against {} (seed {seed}, {} run, {:?} in all)", authority.label(), if full { "full" } else { "reduced" }, started.elapsed());
        println!("  clients: {} created ({} live Dynamic/SignedRequest), {} deleted", c.clients.len(), registering, c.clients.iter().filter(|x| x.deleted).count());
        println!("  failpoints x outcomes: {} steps, {crashed} crashes survived, {failed} injected errors survived, not reached: {unreached:?}", c.outcomes.len());
        println!("  random SIGKILLs survived: {} (seed {seed})", kill_log.len());
        println!("  registrations at the AS: {} for {registering} registering clients; extra clients (unavoidable, each named by a RegistrationLost Warning): {extra}; TppClients named: {named}", authority.registered().len());
        println!("  RATs lost and reported (RegistrationAccessTokenLost): {rat_lost}; unreported: 0");
        println!("  binding mismatches: {} over {} Secret versions ({} tokens) checked; {} tokens already expired and forgotten by the AS when seen", w.mismatches.len(), w.versions, w.tokens_checked, w.unverifiable);
        println!("  expired tokens: {}", w.expired.len());
        println!("  max time to settled (Ready, token minted after the restart): {:?} (bound {LIVENESS:?})", c.max_settle);
        ensure!(w.versions > 0 && w.tokens_checked > 0, "the watch saw no credentials Secret");
        ensure!(
            w.unverifiable * 10 <= w.tokens_checked,
            "{} of {} tokens could not be checked (forgotten by the AS before the watch asked)",
            w.unverifiable,
            w.tokens_checked
        );
        ensure!(crashed > 0, "no failpoint crash happened");
        let missed: Vec<&&str> = unreached
            .iter()
            .filter(|label| !UNREACHABLE.iter().any(|u| label.starts_with(&format!("{u}="))))
            .collect();
        ensure!(missed.is_empty(), "failpoint steps not reached: {missed:?}");
        Ok(())
    })
    .await;
}
