//! The campaign (docs/reliability.md, "The campaign"): TppClients of all four registration
//! modes against the sandbox AS, through onboarding, RFC 7592 key rotation, certificate
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
//! kills. `TPP_CHAOS_SEED` sets the seed (printed either way); `TPP_CHAOS_CLIENTS`,
//! `TPP_CHAOS_KILLS` override the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use e2e::{fixtures::*, operator::OperatorProcess, sandbox::RunningSandbox, with_namespace};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

/// The liveness bound: every client Ready again, with a token minted after the restart, this
/// long after the operator came back (generous on a loaded 2-core machine; not a speed claim).
const LIVENESS: Duration = Duration::from_secs(120);

/// Failpoints that are not on the controller's path: introspection, revocation and PAR are
/// library calls of `kubectl tpp` (operator/src/oauth/endpoints.rs), never made by a reconcile.
const OFF_PATH: &[&str] = &["introspection", "revocation", "pushed_authorization"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Dynamic,
    Signed,
    Static,
    Hub,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Dynamic, Mode::Signed, Mode::Static, Mode::Hub];
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
}

/// What the watch of the credentials Secrets saw.
#[derive(Default)]
struct Watched {
    seen: HashSet<(String, String)>,
    versions: u64,
    tokens_checked: u64,
    mismatches: Vec<String>,
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

fn observe(w: &mut Watched, sandbox: &RunningSandbox, s: &Secret, written: bool) {
    let name = s.metadata.name.clone().unwrap_or_default();
    if !name.ends_with("-credentials") {
        return;
    }
    let rv = s.metadata.resource_version.clone().unwrap_or_default();
    if !w.seen.insert((name.clone(), rv.clone())) {
        return;
    }
    w.versions += 1;
    let x5t = secret_text(s, "tls.crt").and_then(|c| x5t_of_pem(&c).ok());
    let now = jiff::Timestamp::now();
    let mut latest = vec![];
    for (t, token, exp) in tokens_of(s) {
        w.tokens_checked += 1;
        let bound = sandbox
            .issued_token(&token)
            .map(|v| v["cnf"]["x5t#S256"].as_str().map(str::to_owned));
        match (&x5t, bound) {
            (Some(x), Some(Some(b))) if *x == b => {}
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
    sandbox: Arc<RunningSandbox>,
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
                let jwks_uri = format!("{}/jwks/{}/{name}", self.op.jwks_url, self.ns());
                let client_id = self.sandbox.provision_client(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri, "scope": "accounts"}))?;
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
            client(&name, "sandbox", json!({"registration": registration})),
        )
        .await?;
        self.clients.push(Tracked {
            name: name.clone(),
            mode,
            deleted: false,
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
            payload.set_issued_at(&std::time::SystemTime::now());
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

    async fn annotate(&self, name: &str, key: &str, value: &str) -> Result<()> {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        api(&self.ctx, "TppClient")
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// A live Dynamic client whose RFC 7592 management is not halted, picked by `pick`.
    async fn rotatable(&self, pick: usize) -> Result<Option<String>> {
        let mut names = vec![];
        for c in self
            .clients
            .iter()
            .filter(|c| c.mode == Mode::Dynamic && !c.deleted)
        {
            let o = api(&self.ctx, "TppClient").get(&c.name).await?;
            if reported(&o).is_none() {
                names.push(c.name.clone());
            }
        }
        Ok((!names.is_empty()).then(|| names[pick % names.len()].clone()))
    }

    /// Activity that reaches `point`: a new client for registration, onboarding and finalizer
    /// points, a key rotation for RFC 7592 and JWKS points, a deletion for DELETE points, a
    /// certificate renewal otherwise (token refresh and status writes happen on their own).
    async fn trigger(&mut self, point: &str, step: usize) -> Result<()> {
        let value = format!("chaos-{step}");
        if point.contains("registration_post") || point.contains("add_finalizer") {
            let mode = if step.is_multiple_of(2) {
                Mode::Dynamic
            } else {
                Mode::Signed
            };
            self.create(mode).await?;
            self.issue_statements().await?;
        } else if point.contains("hub_onboarding") {
            self.create(Mode::Hub).await?;
        } else if point.contains("registration_put")
            || point.contains("registration_get")
            || point.contains("apply_jwks")
            || point.contains("apply_registration")
        {
            if let Some(name) = self.rotatable(step).await? {
                self.annotate(&name, "tpp.dev/rotate-keys", &value).await?;
            }
        } else if point.contains("registration_delete") {
            if let Some(name) = self.rotatable(step).await? {
                api(&self.ctx, "TppClient")
                    .delete(&name, &DeleteParams::default())
                    .await?;
                if let Some(c) = self.clients.iter_mut().find(|c| c.name == name) {
                    c.deleted = true;
                }
            }
        } else {
            let live: Vec<String> = self
                .clients
                .iter()
                .filter(|c| !c.deleted)
                .map(|c| c.name.clone())
                .collect();
            let name = &live[step % live.len()];
            self.annotate(name, "tpp.dev/renew-certificate", &value)
                .await?;
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
            let at_as: BTreeMap<String, Option<String>> =
                self.sandbox.registered_clients().into_iter().collect();
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
                        !toks.is_empty()
                            && toks.iter().all(|(_, t, _)| {
                                self.sandbox
                                    .issued_token(t)
                                    .and_then(|v| v["iat"].as_u64())
                                    .is_some_and(|iat| iat >= since_unix)
                            })
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
                    match id.as_ref().and_then(|id| at_as.get(id)) {
                        Some(held) if *held == rat => {}
                        Some(_) => pending.push(format!(
                            "{}: the AS holds another RAT than <name>-registration",
                            c.name
                        )),
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
        let at_as: BTreeMap<String, Option<String>> =
            self.sandbox.registered_clients().into_iter().collect();
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
            let held = at_as
                .get(&id)
                .with_context(|| format!("{}: its client {id} is gone from the AS", c.name))?;
            if *held != rat {
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
        let extra = at_as.keys().filter(|id| !managed.contains(*id)).count();
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

#[tokio::test]
async fn the_campaign_keeps_registrations_rats_and_token_bindings_through_failpoints_and_kills() {
    let full = std::env::var("TPP_CHAOS").is_ok_and(|v| v == "full");
    let seed: u64 = std::env::var("TPP_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    let n = env_usize("TPP_CHAOS_CLIENTS", if full { 50 } else { 8 });
    let kills = env_usize("TPP_CHAOS_KILLS", if full { 30 } else { 4 });
    let lifetime = Duration::from_secs(if full { 15 } else { 10 });
    let points: Vec<&'static str> = if full {
        tpp_operator::failpoints::NAMES
            .iter()
            .copied()
            .filter(|p| !OFF_PATH.iter().any(|o| p.ends_with(o)))
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
        "chaos: {} run, seed {seed} (TPP_CHAOS_SEED={seed} repeats it), {n} clients, {} failpoints x {{crash, error}}, {kills} kills, token lifetime {lifetime:?}",
        if full { "full" } else { "reduced" },
        points.len()
    );
    with_namespace("chaos", |ctx| async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let directory = tpp_operator::identity::PrivateKey::generate(
            tpp_operator::identity::KeyAlgorithm::Rsa2048,
        )?;
        let directory_jwks = json!({"keys": [serde_json::to_value(directory.public_jwk())?]});
        let sandbox = Arc::new(
            start_sandbox(&ctx, |c| {
                c.token_lifetime = lifetime;
                c.directory_jwks = Some(directory_jwks.clone());
            })
            .await?,
        );
        let op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({"rateLimit": {"requestsPerSecond": 100, "burst": 100}}))).await?;

        let watched = Arc::new(Mutex::new(Watched::default()));
        let up_since = Arc::new(Mutex::new(Some(Instant::now())));
        let watch = {
            let (sandbox, watched) = (sandbox.clone(), watched.clone());
            let secrets: Api<Secret> = ctx.api();
            tokio::spawn(async move {
                let mut events = Box::pin(watcher(secrets, watcher::Config::default()).default_backoff());
                while let Some(ev) = events.next().await {
                    let mut w = watched.lock().unwrap();
                    match ev {
                        Ok(watcher::Event::Apply(s)) => observe(&mut w, &sandbox, &s, true),
                        Ok(watcher::Event::InitApply(s)) => observe(&mut w, &sandbox, &s, false),
                        Ok(watcher::Event::Delete(s)) => {
                            w.latest.remove(&s.metadata.name.unwrap_or_default());
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
            sandbox: sandbox.clone(),
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
        let started = Instant::now();
        let start_unix = now_unix();
        for i in 0..n {
            c.create(Mode::ALL[i % 4]).await?;
        }
        c.issue_statements().await?;
        c.check("onboarding", started, start_unix).await?;
        println!("chaos: {n} clients onboarded in {:?}", started.elapsed());

        let mut step = 0;
        for point in &points {
            for crash in [true, false] {
                step += 1;
                let action = if crash { "1*return(abort)" } else { "1*return(error)" };
                let label = format!("{point}={action}");
                c.restart(Some(format!("{point}={action}"))).await?;
                let log_before = c.op.log().len();
                c.trigger(point, step).await?;
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
                    c.create(Mode::ALL[rng.random_range(0..4usize)]).await?;
                }
                1 => {
                    if let Some(name) = c.rotatable(rng.random_range(0..1000)).await? {
                        c.annotate(&name, "tpp.dev/rotate-keys", &format!("chaos-{step}")).await?;
                    }
                }
                _ => {
                    let live: Vec<String> = c.clients.iter().filter(|c| !c.deleted).map(|c| c.name.clone()).collect();
                    let name = &live[rng.random_range(0..live.len())];
                    c.annotate(name, "tpp.dev/renew-certificate", &format!("chaos-{step}")).await?;
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
        println!("chaos summary (seed {seed}, {} run, {:?} in all)", if full { "full" } else { "reduced" }, started.elapsed());
        println!("  clients: {} created ({} live Dynamic/SignedRequest), {} deleted", c.clients.len(), registering, c.clients.iter().filter(|x| x.deleted).count());
        println!("  failpoints x outcomes: {} steps, {crashed} crashes survived, {failed} injected errors survived, not reached: {unreached:?}", c.outcomes.len());
        println!("  random SIGKILLs survived: {} (seed {seed})", kill_log.len());
        println!("  registrations at the AS: {} for {registering} registering clients; extra clients (unavoidable, each named by a RegistrationLost Warning): {extra}; TppClients named: {named}", sandbox.registered_clients().len());
        println!("  RATs lost and reported (RegistrationAccessTokenLost): {rat_lost}; unreported: 0");
        println!("  binding mismatches: {} over {} Secret versions ({} tokens) checked", w.mismatches.len(), w.versions, w.tokens_checked);
        println!("  expired tokens: {}", w.expired.len());
        println!("  max time to settled (Ready, token minted after the restart): {:?} (bound {LIVENESS:?})", c.max_settle);
        ensure!(w.versions > 0 && w.tokens_checked > 0, "the watch saw no credentials Secret");
        ensure!(crashed > 0, "no failpoint crash happened");
        Ok(())
    })
    .await;
}
