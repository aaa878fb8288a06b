//! Control-plane and AS faults (issue 12, item 4; docs/reliability.md § Control-plane and AS
//! faults), each with an assertion, on a real kube-apiserver and etcd against the sandbox AS:
//! kube-apiserver restarted mid-run, etcd stopped across a token refresh and for longer than
//! the watch timeout, a watch resumed from a compacted revision (410 Gone), another field
//! manager's write over the credentials Secret, the credentials or registration Secret deleted
//! by hand, answers the AS handled but never sent (registration, RFC 7592 PUT, token) or sent
//! after the operator's timeout (token, registration), the client deleted at the AS and a
//! discovery document whose issuer changed. Also one injected failure (failpoint) at each
//! Kubernetes write outside the reconcile's own effects: finalizer removals, events, the
//! AuthorizationServer's status, a consumer's restart stamp.
//!
//! The tests that stop or restart a control-plane daemon (by the PID the harness recorded) take
//! [`CONTROL_PLANE`] for writing; the others share it, so no test runs through another's outage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    TestContext,
    fixtures::*,
    sandbox::{Endpoint, Fault, FaultKind, FaultTarget, RunningSandbox},
    with_namespace,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::sync::RwLock;

const READY: Duration = Duration::from_secs(90);

/// Held for writing by a test that stops or restarts a control-plane daemon.
static CONTROL_PLANE: RwLock<()> = RwLock::const_new(());

/// Every version of one Secret seen by a watch that runs for the whole test (it rides out the
/// control plane's faults like any watch: relists included): resourceVersion → token.
#[derive(Clone, Default)]
struct Versions(Arc<Mutex<BTreeMap<String, String>>>);

impl Versions {
    fn record(ctx: &TestContext, name: &str, key: &'static str) -> Self {
        let versions = Self::default();
        let seen = versions.0.clone();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let events = watcher(ctx.api::<Secret>(), cfg).default_backoff();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(ev) = events.next().await {
                if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.insert(
                        s.metadata.resource_version.clone().unwrap_or_default(),
                        secret_text(&s, key).unwrap_or_default(),
                    );
                }
            }
        });
        versions
    }

    /// (Secret versions, distinct tokens among them).
    fn counts(&self) -> (usize, usize) {
        let seen = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        let tokens: BTreeSet<_> = seen.values().collect();
        (seen.len(), tokens.len())
    }
}

/// The access token in `<name>-credentials` and the AS's record of it (`iat`, `exp`).
async fn current_token(ctx: &TestContext, sandbox: &RunningSandbox, name: &str) -> Result<Token> {
    let s = credentials(ctx, name).await?;
    let value = secret_text(&s, "accounts.access_token").context("no access token")?;
    let issued = sandbox.issued_token(&value).unwrap_or_default();
    Ok(Token {
        known: !issued.is_null(),
        iat: issued["iat"].as_f64().unwrap_or(0.0),
        exp: issued["exp"].as_f64().unwrap_or(0.0),
        value,
    })
}

struct Token {
    value: String,
    /// Issued by this AS.
    known: bool,
    iat: f64,
    exp: f64,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Wait (bounded) until `<name>-credentials` holds a token the AS issued at or after `since`
/// (unix seconds); returns it.
async fn wait_token_issued_after(
    ctx: &TestContext,
    sandbox: &RunningSandbox,
    name: &str,
    since: f64,
    timeout: Duration,
) -> Result<Token> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(t) = current_token(ctx, sandbox, name).await
            && t.known
            && t.iat >= since.floor()
        {
            return Ok(t);
        }
        ensure!(
            Instant::now() < deadline,
            "{name}-credentials holds no token issued after the fault within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn events_with(ctx: &TestContext, reason: &str) -> Result<Vec<String>> {
    Ok(ctx
        .api::<Event>()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.message.unwrap_or_default())
        .collect())
}

/// kube-apiserver stopped (SIGTERM to its PID) and started again while a client's 8 s tokens
/// keep being refreshed: the operator keeps running, registers nothing again, writes one
/// Secret version per token (no rewrite because its watches relisted), and a token minted
/// after the restart reaches the Secret.
#[tokio::test]
async fn an_apiserver_restart_neither_registers_again_nor_stops_the_token_refresh() {
    let _only = CONTROL_PLANE.write().await;
    with_namespace("apirestart", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(8)).await?;
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let versions = Versions::record(&ctx, "payments-credentials", "accounts.access_token");
        // One refresh before the fault, so the watch runs and the schedule is established.
        wait_token_issued_after(
            &ctx,
            &sandbox,
            "payments",
            unix_now(),
            Duration::from_secs(30),
        )
        .await?;
        let down = ctx.cp.restart_apiserver().await?;
        let back = Instant::now();
        let back_unix = unix_now();
        let fresh = wait_token_issued_after(
            &ctx,
            &sandbox,
            "payments",
            back_unix,
            Duration::from_secs(60),
        )
        .await?;
        let to_fresh = back.elapsed();
        ensure!(
            fresh.exp > unix_now(),
            "the fresh token has already expired"
        );
        // Two more refreshes after the restart: the schedule goes on.
        let next = wait_token_issued_after(
            &ctx,
            &sandbox,
            "payments",
            fresh.iat + 1.0,
            Duration::from_secs(30),
        )
        .await?;
        ensure!(next.value != fresh.value);
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        ensure!(op.is_running(), "the operator exited on the restart");
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 1,
            "{} registrations: the restart made the operator register again",
            c.registrations_created
        );
        let (n_versions, n_tokens) = versions.counts();
        // One write per token; the watch's first listing may add one version.
        ensure!(
            n_versions <= n_tokens + 1,
            "{n_versions} versions of the credentials Secret for {n_tokens} tokens: a rewrite \
             the restart did not need"
        );
        eprintln!(
            "apiserver down {down:?}; a token minted after the restart in the Secret {to_fresh:?} \
             after it was back; {n_versions} Secret versions for {n_tokens} tokens; 1 registration"
        );
        Ok(())
    })
    .await;
}

/// A watch that ends in 410 Gone: the operator is frozen (SIGSTOP) with its watches at a
/// resourceVersion; meanwhile a second TppClient is created and the first one's credentials
/// Secret deleted; etcd is compacted past them and kube-apiserver restarted, so that resuming
/// from the old resourceVersion is answered 410 (checked); the operator, resumed, must relist
/// and miss neither change.
#[tokio::test]
async fn a_watch_resumed_from_a_compacted_revision_relists_and_misses_nothing() {
    let _only = CONTROL_PLANE.write().await;
    with_namespace("gone410", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("one", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "one", "Ready", "True", READY).await?;
        let clients = api(&ctx, "TppClient");
        let old_rv = clients
            .list(&Default::default())
            .await?
            .metadata
            .resource_version
            .context("list resourceVersion")?;
        op.pause();
        apply(&ctx, client("two", "sandbox", json!({}))).await?;
        ctx.api::<Secret>()
            .delete("one-credentials", &DeleteParams::default())
            .await?;
        let revision = ctx.cp.compact_etcd().await?;
        ctx.cp.restart_apiserver().await?;
        // The premise: resuming a watch from before the changes is now 410 Gone.
        let client = ctx.cp.admin_client().await?;
        let clients = api_with(&ctx, client);
        let answer = match clients.watch(&WatchParams::default(), &old_rv).await {
            Err(kube::Error::Api(e)) => e.code,
            Err(e) => bail!("watch from {old_rv}: {e}"),
            Ok(stream) => {
                let mut stream = std::pin::pin!(stream);
                match tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Error(e)))) => e.code,
                    other => bail!("a watch from {old_rv} was not ended with 410: {other:?}"),
                }
            }
        };
        ensure!(
            answer == 410,
            "a watch from {old_rv} answered {answer}, not 410 Gone"
        );
        let resumed = Instant::now();
        op.resume();
        wait_condition(&ctx, "TppClient", "two", "Ready", "True", READY).await?;
        let deadline = Instant::now() + READY;
        while ctx
            .api::<Secret>()
            .get_opt("one-credentials")
            .await?
            .is_none()
        {
            ensure!(
                Instant::now() < deadline,
                "one-credentials was not recreated after the relist"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let to_ready = resumed.elapsed();
        let one = current_token(&ctx, &sandbox, "one").await?;
        ensure!(
            one.known,
            "one-credentials holds a token the AS never issued"
        );
        ensure!(op.is_running());
        ensure!(
            sandbox.counters().registrations_created == 2,
            "one registration per client: {}",
            sandbox.counters().registrations_created
        );
        eprintln!(
            "compacted at revision {revision}; a watch from {old_rv} answered 410; both changes \
             handled {to_ready:?} after the operator resumed"
        );
        Ok(())
    })
    .await;
}

fn api_with(ctx: &TestContext, client: kube::Client) -> Api<kube::api::DynamicObject> {
    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "tpp.dev",
        "v1alpha1",
        "TppClient",
    ));
    Api::namespaced_with(client, &ctx.namespace, &ar)
}

/// etcd stopped (SIGKILL to its PID) for 12 s across a token refresh point, with 60 s tokens
/// (refresh 20–26.6 s before expiry): the refresh cannot be written while etcd is down; the token in
/// the Secret never expires (the outage is shorter than the refresh margin); once etcd is back
/// a token minted after the outage began reaches the Secret, without a registration, and the
/// AS sees no storm of token requests meanwhile.
#[tokio::test]
async fn etcd_down_across_a_refresh_point_delays_the_refresh_but_never_serves_an_expired_token() {
    let _only = CONTROL_PLANE.write().await;
    with_namespace("etcddown", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(60)).await?;
        let op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let first = current_token(&ctx, &sandbox, "payments").await?;
        ensure!(first.known);
        // Stop etcd 28 s before expiry. The refresh point is 20 s before expiry, brought
        // forward by a jitter below a tenth of the lifetime plus a lead of at most a hundredth
        // (`rotation::tokens::refresh_at`): between 26.6 s and 20 s before expiry, so inside the
        // 12 s outage (28 s to 16 s before expiry) whatever the jitter.
        let stop_at = first.exp - 28.0;
        let deadline = Instant::now() + Duration::from_secs(90);
        while unix_now() < stop_at {
            ensure!(
                Instant::now() < deadline,
                "the clock did not reach {stop_at}"
            );
            ensure!(
                current_token(&ctx, &sandbox, "payments").await?.value == first.value,
                "refreshed before the planned point"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let tokens_before = sandbox.counters().requests_to(Endpoint::Token);
        ctx.cp.stop_etcd()?;
        let stopped_unix = unix_now();
        // The outage itself (the fault's length, not a synchronisation).
        tokio::time::sleep(Duration::from_secs(12)).await;
        let tokens_during = sandbox.counters().requests_to(Endpoint::Token) - tokens_before;
        ctx.cp.start_etcd().await?;
        let back = Instant::now();
        // The Secret as the API serves it once etcd is back: never an expired token.
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = loop {
            if let Ok(t) = current_token(&ctx, &sandbox, "payments").await {
                break t;
            }
            ensure!(Instant::now() < deadline, "the API did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            seen.exp > unix_now(),
            "the Secret served an expired token after the outage"
        );
        let fresh = wait_token_issued_after(
            &ctx,
            &sandbox,
            "payments",
            stopped_unix,
            Duration::from_secs(60),
        )
        .await?;
        let to_fresh = back.elapsed();
        ensure!(
            fresh.exp > unix_now(),
            "the token written after the outage has expired"
        );
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(c.registrations_created == 1, "registered again");
        let tokens_after = c.requests_to(Endpoint::Token) - tokens_before;
        ensure!(
            tokens_after <= 4,
            "{tokens_after} token requests for one refresh across the outage"
        );
        drop(op);
        eprintln!(
            "etcd down 12 s across the refresh point: {tokens_during} token requests during the \
             outage, {tokens_after} in all; a fresh token in the Secret {to_fresh:?} after etcd \
             was back; the served token never expired"
        );
        Ok(())
    })
    .await;
}

/// Another field manager force-applies the credentials Secret's access token (SSA conflict
/// resolved against the operator). What a user expects: the Secret is the operator's, so it
/// takes its field back with a token the AS issued, bound to the certificate beside it, without
/// registering again; the intruder's value is never kept until the next refresh.
#[tokio::test]
async fn a_field_manager_that_overwrites_the_token_loses_it_back_to_the_operator() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("ssa", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(300)).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let tokens_before = sandbox.counters().requests_with(Endpoint::Token, "200");
        let intrusion = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "payments-credentials"},
            "data": {"accounts.access_token": "bm90LWEtdG9rZW4tdGhlLWFzLWlzc3VlZA=="},
        });
        let secrets = ctx.api::<Secret>();
        // Without force, the intruder is refused: the field is the operator's.
        let refused = secrets
            .patch(
                "payments-credentials",
                &PatchParams::apply("intruder"),
                &Patch::Apply(&intrusion),
            )
            .await;
        ensure!(
            matches!(&refused, Err(kube::Error::Api(e)) if e.code == 409),
            "an apply without force must conflict: {refused:?}"
        );
        let overwritten = Instant::now();
        secrets
            .patch(
                "payments-credentials",
                &PatchParams::apply("intruder").force(),
                &Patch::Apply(&intrusion),
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let restored = loop {
            let t = current_token(&ctx, &sandbox, "payments").await?;
            if t.known {
                break t;
            }
            ensure!(
                Instant::now() < deadline,
                "the intruder's token is still in the Secret after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let took = overwritten.elapsed();
        let s = credentials(&ctx, "payments").await?;
        let cert = secret_text(&s, "tls.crt").context("tls.crt")?;
        let bound = sandbox.introspect(&restored.value);
        ensure!(bound["active"] == true, "restored token not active: {bound}");
        ensure!(
            bound["cnf"]["x5t#S256"] == x5t_of_pem(&cert)?,
            "restored token not bound to the certificate beside it"
        );
        let owners: Vec<String> = s
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0.to_string().contains("accounts.access_token"))
            })
            .filter_map(|m| m.manager.clone())
            .collect();
        ensure!(
            !owners.iter().any(|m| m == "intruder"),
            "the intruder still owns the token field: {owners:?}"
        );
        let c = sandbox.counters();
        let minted = c.requests_with(Endpoint::Token, "200") - tokens_before;
        ensure!(c.registrations_created == 1, "registered again");
        ensure!(minted <= 1, "{minted} tokens minted to repair one field");
        eprintln!("the operator took its token field back {took:?} after the overwrite ({minted} token minted)");
        Ok(())
    })
    .await;
}

/// The credentials Secret deleted by hand: recreated, with no new registration and at most one
/// new token.
#[tokio::test]
async fn a_credentials_secret_deleted_by_hand_is_recreated_without_registering_or_minting_twice() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("creddel", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(300)).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let tokens_before = sandbox.counters().requests_with(Endpoint::Token, "200");
        let secrets = ctx.api::<Secret>();
        let old_uid = secrets.get("payments-credentials").await?.metadata.uid;
        secrets
            .delete("payments-credentials", &DeleteParams::default())
            .await?;
        let deleted = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        let recreated = loop {
            if let Some(s) = secrets.get_opt("payments-credentials").await?
                && s.metadata.uid != old_uid
                && secret_text(&s, "accounts.access_token").is_some()
            {
                break s;
            }
            ensure!(Instant::now() < deadline, "not recreated within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let took = deleted.elapsed();
        let token = secret_text(&recreated, "accounts.access_token").unwrap_or_default();
        let cert = secret_text(&recreated, "tls.crt").context("tls.crt")?;
        let info = sandbox.introspect(&token);
        ensure!(info["active"] == true, "recreated token not active: {info}");
        ensure!(
            info["cnf"]["x5t#S256"] == x5t_of_pem(&cert)?,
            "not bound to tls.crt"
        );
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        let minted = c.requests_with(Endpoint::Token, "200") - tokens_before;
        ensure!(c.registrations_created == 1, "registered again");
        ensure!(minted <= 1, "{minted} tokens minted to recreate one Secret");
        eprintln!(
            "credentials Secret recreated {took:?} after the deletion; {minted} token minted"
        );
        Ok(())
    })
    .await;
}

/// The registration Secret deleted by hand (its deregistration finalizer removed too, so it is
/// really gone): the client id and its registration access token are lost to the operator.
/// Never a silent new registration: a condition names the client left at the AS.
#[tokio::test]
async fn a_registration_secret_deleted_by_hand_is_reported_not_silently_registered_anew() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("regdel", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let ready = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = ready.data["status"]["clientId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let secrets = ctx.api::<Secret>();
        // `kubectl delete` leaves it terminating (the finalizer keeps the RAT readable for a
        // deregistration): nothing is lost yet.
        secrets
            .delete("payments-registration", &DeleteParams::default())
            .await?;
        secrets
            .patch(
                "payments-registration",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while secrets.get_opt("payments-registration").await?.is_some() {
            ensure!(Instant::now() < deadline, "the registration Secret stays");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let gone = Instant::now();
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["status"] == "False")
                || condition(o, "Registered").is_some_and(|c| c["status"] == "False")
                || sandbox.counters().registrations_created > 1
        })
        .await?;
        let took = gone.elapsed();
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 1,
            "the operator registered a new client silently ({} registrations); status {}",
            c.registrations_created,
            o.data["status"]
        );
        let messages: Vec<String> = o.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "False")
            .map(|c| format!("{}: {}", c["reason"], c["message"]))
            .collect();
        ensure!(
            messages.iter().any(|m| m.contains(&id)),
            "no condition names the client {id} left at the AS: {messages:?}"
        );
        eprintln!("registration Secret gone: reported after {took:?}: {messages:?}");
        Ok(())
    })
    .await;
}

async fn client_id(ctx: &TestContext, name: &str) -> Result<String> {
    let o = api(ctx, "TppClient").get(name).await?;
    Ok(o.data["status"]["clientId"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn annotate(ctx: &TestContext, kind: &str, name: &str, key: &str, value: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api(ctx, kind)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn drop_after_handling(target: FaultTarget) -> Fault {
    Fault {
        endpoint: target,
        kind: FaultKind::DropAfterHandling,
        count: 1,
    }
}

/// The AS created the client, then the connection dropped before its answer: an attempt of
/// unknown outcome, retried once (`maxUnknownAttempts: 1`) and reported by a
/// `RegistrationLost` Warning: two clients at the AS, one of them named as possibly left.
#[tokio::test]
async fn a_registration_answer_dropped_after_the_as_created_the_client_costs_one_reported_client() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("dropreg", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(drop_after_handling(FaultTarget::Registration));
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let started = Instant::now();
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let took = started.elapsed();
        let c = sandbox.counters();
        ensure!(
            c.requests_with(Endpoint::Registration, "dropped_after_201") == 1,
            "the fault was served: {:?}",
            c.requests
        );
        ensure!(
            c.registrations_created == 2,
            "{} registrations: one lost answer costs exactly one extra client",
            c.registrations_created
        );
        ensure!(
            !events_with(&ctx, "RegistrationLost").await?.is_empty(),
            "no RegistrationLost Warning for the client the AS may hold"
        );
        eprintln!("a registration answer dropped after handling: Ready {took:?} after apply, 2 clients, reported");
        Ok(())
    })
    .await;
}

/// The AS rotated the registration access token on an RFC 7592 PUT (key rotation), then the
/// connection dropped: the operator never saw the new token. It must not register again
/// silently nor forget the client: after the refused retries it reports
/// `RegistrationAccessTokenLost` naming the client id, and tokens keep working.
#[tokio::test]
async fn a_put_answer_dropped_after_the_as_rotated_the_rat_is_reported_by_client_id() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("dropput", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| {
            c.rotate_rat = true;
            c.token_lifetime = Duration::from_secs(10);
        })
        .await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        sandbox.add_fault(drop_after_handling(FaultTarget::Registration));
        let started = Instant::now();
        annotate(&ctx, "TppClient", "payments", "tpp.dev/rotate-keys", "now").await?;
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            o.data["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "RegistrationAccessTokenLost"))
        })
        .await?;
        let took = started.elapsed();
        let text = o.data["status"]["conditions"].to_string();
        ensure!(text.contains(&id), "the condition names client {id}: {text}");
        let c = sandbox.counters();
        ensure!(
            c.requests_with(Endpoint::Registration, "dropped_after_200") == 1,
            "the PUT was handled and dropped: {:?}",
            c.requests
        );
        ensure!(c.registrations_created == 1, "registered again silently");
        ensure!(sandbox.has_client(&id), "the client is still at the AS");
        // Tokens keep being refreshed for the client id.
        wait_token_issued_after(&ctx, &sandbox, "payments", unix_now(), Duration::from_secs(30))
            .await?;
        eprintln!("a PUT answer dropped after the RAT rotated: RegistrationAccessTokenLost {took:?} after the rotation request");
        Ok(())
    })
    .await;
}

/// The AS issued a token, then the connection dropped: the token is lost with the answer (it
/// expires unused at the AS); the operator asks again and the Secret holds a token the AS
/// issued, bound to its certificate. One extra token, no registration.
#[tokio::test]
async fn a_token_answer_dropped_after_the_as_issued_it_is_requested_again_once() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("droptok", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(drop_after_handling(FaultTarget::Token));
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let started = Instant::now();
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let took = started.elapsed();
        let c = sandbox.counters();
        ensure!(c.requests_with(Endpoint::Token, "dropped_after_200") == 1);
        ensure!(
            c.requests_with(Endpoint::Token, "200") == 1,
            "one more token after the lost one: {:?}",
            c.requests
        );
        ensure!(c.registrations_created == 1);
        let t = current_token(&ctx, &sandbox, "payments").await?;
        ensure!(t.known && t.exp > unix_now());
        eprintln!("a token answer dropped after handling: Ready {took:?} after apply");
        Ok(())
    })
    .await;
}

/// The client deleted at the AS behind the operator's back: the next token request is refused
/// (`invalid_client`). A clear condition, no silent new registration, no retry storm.
#[tokio::test]
async fn a_client_deleted_at_the_as_gets_a_clear_condition_and_no_new_registration() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("asdel", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(6)).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        ensure!(sandbox.delete_client(&id));
        let deleted = Instant::now();
        let o = wait_condition(&ctx, "TppClient", "payments", "Ready", "False", READY).await?;
        let took = deleted.elapsed();
        let ready = condition(&o, "Ready").unwrap_or_default();
        ensure!(
            ready["reason"] == "InvalidClient",
            "the condition says the AS no longer knows the client: {ready}"
        );
        let refused_at = sandbox.counters().requests_to(Endpoint::Token);
        // Observe 20 s more: the refusal is permanent, not retried in a loop.
        let window = Instant::now();
        while window.elapsed() < Duration::from_secs(20) {
            let c = sandbox.counters();
            ensure!(
                c.requests_to(Endpoint::Token) <= refused_at + 1,
                "token requests after a permanent refusal: {}",
                c.requests_to(Endpoint::Token) - refused_at
            );
            ensure!(
                c.registrations_created == 1,
                "registered a new client silently"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!(
            "client deleted at the AS: Ready=False InvalidClient {took:?} later ({})",
            ready["message"]
        );
        Ok(())
    })
    .await;
}

/// An AS whose discovery document starts naming another issuer (a moved or misconfigured AS):
/// `IssuerMismatch` on the AuthorizationServer, a permanent failure retried on its 5-minute
/// backoff; over 60 s the AS sees at most 3 discovery requests. Its clients keep their last
/// good resolution meanwhile.
#[tokio::test]
async fn a_discovery_document_whose_issuer_changes_is_refused_and_not_hammered() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("issuer", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        sandbox.add_fault(Fault {
            endpoint: FaultTarget::Discovery,
            kind: FaultKind::Issuer {
                issuer: "https://localhost:1/moved".into(),
            },
            count: 1_000_000,
        });
        let before = sandbox.counters().requests_to(Endpoint::Discovery);
        let started = Instant::now();
        annotate(&ctx, "AuthorizationServer", "sandbox", "tpp.dev/refresh-discovery", "1").await?;
        let o = wait_for(&ctx, "AuthorizationServer", "sandbox", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "IssuerMismatch")
        })
        .await?;
        let took = started.elapsed();
        let mut requests = 0;
        while started.elapsed() < Duration::from_secs(60) {
            requests = sandbox.counters().requests_to(Endpoint::Discovery) - before;
            ensure!(requests <= 3, "{requests} discovery requests after {:?}", started.elapsed());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ensure!(requests >= 1);
        eprintln!(
            "issuer changed: IssuerMismatch {took:?} after the refresh ({}); {requests} discovery requests in 60 s",
            condition(&o, "Ready").unwrap_or_default()["message"]
        );
        Ok(())
    })
    .await;
}

/// A burst of 503s on registration: a 5xx does not say whether the AS created the client, so
/// each is an attempt of unknown outcome (docs/reliability.md § How often a client is
/// registered). With the default `maxUnknownAttempts: 1` the operator sends 2 requests, then
/// halts with `RegistrationOutcomeUnknown` and sends nothing more until a human sets
/// `tpp.dev/retry-registration`; the next attempt (the AS healthy again) registers once.
#[tokio::test]
async fn a_burst_of_5xx_on_registration_stops_after_two_attempts_until_a_human_allows_more() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("reg5xx", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(Fault {
            endpoint: FaultTarget::Registration,
            kind: FaultKind::Status {
                code: 503,
                retry_after_secs: None,
            },
            count: 2,
        });
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Registered").is_some_and(|c| c["reason"] == "RegistrationOutcomeUnknown")
        })
        .await?;
        let halted = sandbox.counters().requests_to(Endpoint::Registration);
        ensure!(halted == 2, "{halted} registration requests before the halt");
        // Observe 10 s: nothing more is sent on the operator's own.
        let window = Instant::now();
        while window.elapsed() < Duration::from_secs(10) {
            let now = sandbox.counters().requests_to(Endpoint::Registration);
            ensure!(now == halted, "{now} registration requests after the halt");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let asked = Instant::now();
        annotate(&ctx, "TppClient", "payments", "tpp.dev/retry-registration", "1").await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let took = asked.elapsed();
        let c = sandbox.counters();
        ensure!(c.registrations_created == 1, "{} registrations", c.registrations_created);
        ensure!(c.requests_to(Endpoint::Registration) == 3, "{:?}", c.requests);
        eprintln!("503 burst on registration: halted after 2 requests, nothing more in 10 s; Ready {took:?} after the retry annotation");
        Ok(())
    })
    .await;
}

/// Whether the operator's log shows that failpoint `name` injected a failure.
fn fired(op: &e2e::operator::OperatorProcess, name: &str) -> bool {
    op.log()
        .lines()
        .any(|l| l.contains("failpoint injected a failure") && l.contains(name))
}

/// Wait (bounded) until the TppClient `name` is gone.
async fn wait_gone(ctx: &TestContext, name: &str) -> Result<()> {
    let deadline = Instant::now() + READY;
    while api(ctx, "TppClient").get_opt(name).await?.is_some() {
        ensure!(Instant::now() < deadline, "TppClient {name} is still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The finalizer of the client's Secrets, then its own, fail to go once each (failpoints
/// `before_release_secret`, `before_remove_finalizer`: the API server answered 503) after
/// the client was deregistered: both are retried and the TppClient goes, and the retries do
/// not DELETE again (the AS would answer 401 for the client it no longer has, read as "may
/// remain registered": a false `DeregistrationFailed` Warning).
#[tokio::test]
async fn a_finalizer_removal_that_fails_is_retried_without_deregistering_twice() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("finfail", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator_with_failpoints(
            &ctx,
            Some("before_release_secret=1*return(error);before_remove_finalizer=1*return(error)"),
        )
        .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        api(&ctx, "TppClient")
            .delete("payments", &DeleteParams::default())
            .await?;
        wait_gone(&ctx, "payments").await?;
        for point in ["before_release_secret", "before_remove_finalizer"] {
            ensure!(fired(&op, point), "failpoint {point} did not fire");
        }
        let c = sandbox.counters();
        ensure!(!sandbox.has_client(&id), "client {id} is still at the AS");
        ensure!(
            c.requests_with(Endpoint::Registration, "204") == 1
                && c.requests_with(Endpoint::Registration, "401") == 0,
            "one DELETE, none refused: {:?}",
            c.requests
        );
        let warnings = events_with(&ctx, "DeregistrationFailed").await?;
        ensure!(warnings.is_empty(), "false alarm: {warnings:?}");
        for secret in ["payments-keys", "payments-registration"] {
            if let Some(s) = ctx.api::<Secret>().get_opt(secret).await? {
                ensure!(
                    s.metadata.finalizers.unwrap_or_default().is_empty(),
                    "{secret} still carries a finalizer"
                );
            }
        }
        Ok(())
    })
    .await;
}

/// Every event publication fails (failpoint `before_publish_event`, always): events are
/// reports, never a reason to fail a reconcile. The client is registered once and Ready with
/// a token, no reconcile failed, and no event of the operator reached the API server.
#[tokio::test]
async fn an_event_that_cannot_be_published_never_fails_a_reconcile() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("evfail", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator_with_failpoints(&ctx, Some("before_publish_event=return(error)"))
            .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        ensure!(
            fired(&op, "before_publish_event"),
            "no event publication was attempted"
        );
        let log = op.log();
        ensure!(
            !log.contains("reconcile failed"),
            "a reconcile failed: {}",
            log.lines()
                .filter(|l| l.contains("reconcile failed"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 1,
            "{} registrations",
            c.registrations_created
        );
        let t = current_token(&ctx, &sandbox, "payments").await?;
        ensure!(t.known && t.exp > unix_now(), "no live token in the Secret");
        // Only the operator publishes events in the test's namespace.
        let events = ctx.api::<Event>().list(&Default::default()).await?.items;
        ensure!(
            events.is_empty(),
            "an event got through the failpoint: {:?}",
            events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>()
        );
        Ok(())
    })
    .await;
}

/// The AuthorizationServer's status write fails once (failpoint
/// `before_apply_server_status`): the AS controller retries on its backoff, the AS becomes
/// Ready and its client after it; discovery is not hammered for it.
#[tokio::test]
async fn an_authorization_server_status_write_that_fails_is_retried_on_its_backoff() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("asstfail", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator_with_failpoints(
            &ctx,
            Some("before_apply_server_status=1*return(error)"),
        )
        .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(
            &ctx,
            "AuthorizationServer",
            "sandbox",
            "Ready",
            "True",
            READY,
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        ensure!(
            fired(&op, "before_apply_server_status"),
            "failpoint before_apply_server_status did not fire"
        );
        let c = sandbox.counters();
        let discoveries = c.requests_to(Endpoint::Discovery);
        ensure!(
            discoveries <= 3,
            "{discoveries} discovery requests for one failed status write"
        );
        ensure!(
            c.registrations_created == 1,
            "{} registrations",
            c.registrations_created
        );
        eprintln!(
            "a failed AuthorizationServer status write: {discoveries} discovery requests in all"
        );
        Ok(())
    })
    .await;
}

/// The restart stamp on a workload of `spec.consumers.restartTargets` cannot be written once
/// (failpoint `before_restart_consumer`): a `ConsumerRestartFailed` Warning says so, and the
/// restart is retried: the pod template gets the stamp for the credentials, once.
#[tokio::test]
async fn a_consumer_restart_that_fails_is_reported_and_retried() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("rsfail", |ctx| async move {
        use k8s_openapi::api::apps::v1::Deployment;
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op =
            start_operator_with_failpoints(&ctx, Some("before_restart_consumer=1*return(error)"))
                .await?;
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
                },
            },
        }))?;
        let deployments = ctx.api::<Deployment>();
        deployments.create(&Default::default(), &deployment).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"consumers": {
                    "restartTargets": [{"kind": "Deployment", "name": "app"}],
                    "minRestartInterval": "0s",
                }}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let stamp = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("restart.tpp.dev/payments").cloned())
        };
        let deadline = Instant::now() + READY;
        let generation = loop {
            let d = deployments.get("app").await?;
            if stamp(&d).is_some() {
                break d.metadata.generation.unwrap_or_default();
            }
            ensure!(
                Instant::now() < deadline,
                "the Deployment was never restarted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(
            fired(&op, "before_restart_consumer"),
            "the failpoint did not fire"
        );
        let failed = events_with(&ctx, "ConsumerRestartFailed").await?;
        ensure!(!failed.is_empty(), "no Warning said the restart failed");
        ensure!(
            generation == 2,
            "the pod template changed {} times for one set of credentials",
            generation - 1
        );
        Ok(())
    })
    .await;
}

/// An operator watching the test namespace with extra flags.
async fn start_operator_with_args(
    ctx: &TestContext,
    args: &[&str],
) -> Result<e2e::operator::OperatorProcess> {
    start_operator_with_options(
        ctx,
        e2e::operator::OperatorOptions {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        },
    )
    .await
}

/// The AS answers after the client's timeout: it did the work (`hold_after_handling`), the
/// answer comes 6 s later, the operator gave up after 2 s (`--as-request-timeout 2s`).
fn held_after_handling(endpoint: FaultTarget, count: u32) -> Fault {
    Fault {
        endpoint,
        kind: FaultKind::HoldAfterHandling { ms: 6_000 },
        count,
    }
}

/// Two token requests at the refresh point time out (the AS issued both tokens, the answers
/// came after the operator's 2 s timeout): the operator retries on its backoff (2 s, 4 s), the
/// third request's token reaches the Secret, and the token the Secret serves never expires
/// meanwhile (45 s tokens: a refresh margin of 15 s against about 12 s of timeouts and waits).
/// Exactly 3 token requests for the refresh: no storm.
#[tokio::test]
async fn token_requests_that_time_out_are_retried_on_backoff_and_the_served_token_never_expires() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("tokslow", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(45)).await?;
        let op = start_operator_with_args(&ctx, &["--as-request-timeout", "2s"]).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let first = current_token(&ctx, &sandbox, "payments").await?;
        ensure!(first.known);
        let before = sandbox.counters();
        sandbox.add_fault(held_after_handling(FaultTarget::Token, 2));
        // Until a token issued after the first one is in the Secret (bounded by the first
        // one's expiry and a little more), the Secret never serves an expired token.
        let deadline = Instant::now() + Duration::from_secs(60);
        let fresh = loop {
            let t = current_token(&ctx, &sandbox, "payments").await?;
            ensure!(t.known, "a token the AS never issued");
            ensure!(
                t.exp > unix_now(),
                "the Secret serves an expired token (exp {}, now {})",
                t.exp,
                unix_now()
            );
            if t.value != first.value {
                break t;
            }
            ensure!(Instant::now() < deadline, "the token was never refreshed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let c = sandbox.counters();
        let held = c.requests_with(Endpoint::Token, "held_after_200");
        let answered =
            c.requests_with(Endpoint::Token, "200") - before.requests_with(Endpoint::Token, "200");
        let all = c.requests_to(Endpoint::Token) - before.requests_to(Endpoint::Token);
        ensure!(
            held == 2,
            "{held} token requests timed out, the rule held 2: {:?}",
            c.requests
        );
        ensure!(
            answered == 1 && all == 3,
            "{all} token requests for one refresh ({answered} answered in time): {:?}",
            c.requests
        );
        ensure!(
            op.log().matches("timed out").count() >= 2 || op.log().contains("Timeout"),
            "the operator did not see the timeouts"
        );
        ensure!(c.registrations_created == 1, "registered again");
        ensure!(fresh.exp > unix_now());
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        eprintln!(
            "two token requests timed out at the refresh point: 3 requests in all, the fresh \
             token in the Secret {:.1} s before the old one's expiry",
            first.exp - fresh.iat
        );
        Ok(())
    })
    .await;
}

/// The AS created the client, then its answer came after the operator's timeout, twice: each
/// attempt's outcome is unknown. The first is retried (`maxUnknownAttempts: 1`, announced by a
/// `RegistrationLost` Warning); after the second the operator halts with
/// `RegistrationOutcomeUnknown` naming the annotation that allows another attempt: 2 clients
/// at the AS, 2 requests, nothing more until a human asks; then one more registers.
#[tokio::test]
async fn registrations_whose_answers_time_out_after_the_as_created_the_client_halt_after_two() {
    let _shared = CONTROL_PLANE.read().await;
    with_namespace("regslow", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(held_after_handling(FaultTarget::Registration, 2));
        let _op = start_operator_with_args(&ctx, &["--as-request-timeout", "2s"]).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let halted = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Registered").is_some_and(|c| c["reason"] == "RegistrationOutcomeUnknown")
        })
        .await?;
        let message = condition(&halted, "Registered")
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        ensure!(message.contains("tpp.dev/retry-registration"), "{message}");
        let c = sandbox.counters();
        ensure!(
            c.requests_with(Endpoint::Registration, "held_after_201") == 2
                && c.requests_to(Endpoint::Registration) == 2,
            "two registrations, both answered too late: {:?}",
            c.requests
        );
        ensure!(c.registrations_created == 2, "{} clients at the AS", c.registrations_created);
        ensure!(
            !events_with(&ctx, "RegistrationLost").await?.is_empty(),
            "the retry of an attempt of unknown outcome is announced"
        );
        ensure!(
            !events_with(&ctx, "RegistrationOutcomeUnknown").await?.is_empty(),
            "the halt is a Warning event too"
        );
        // Observe 8 s (longer than a held answer): nothing more is sent on the operator's own.
        let window = Instant::now();
        while window.elapsed() < Duration::from_secs(8) {
            let now = sandbox.counters().requests_to(Endpoint::Registration);
            ensure!(now == 2, "{now} registration requests after the halt");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        annotate(&ctx, "TppClient", "payments", "tpp.dev/retry-registration", "1").await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(c.registrations_created == 3, "{} clients at the AS", c.registrations_created);
        eprintln!("two registration answers after the timeout: halted after 2 requests; Ready after the retry annotation with a third");
        Ok(())
    })
    .await;
}

/// Completed WATCH requests for `resource` the API server counted (`apiserver_request_total`).
async fn watches_of(ctx: &TestContext, resource: &str) -> Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = ctx.client.request_text(request).await?;
    let label = format!("resource=\"{resource}\"");
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"WATCH\"")
                && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The access token `<name>-credentials` serves now, checked unexpired.
async fn unexpired_token(ctx: &TestContext, sandbox: &RunningSandbox, name: &str) -> Result<Token> {
    let t = current_token(ctx, sandbox, name).await?;
    ensure!(
        t.known,
        "{name}-credentials holds a token the AS never issued"
    );
    ensure!(
        t.exp > unix_now(),
        "{name}-credentials serves an expired token (exp {}, now {})",
        t.exp,
        unix_now()
    );
    Ok(t)
}

/// etcd stopped (SIGKILL) for 20 s, four times the operator's 5 s watch timeout
/// (`--watch-timeout 5s`): every watch ends on the API server's timeout during the outage and
/// its renewal fails or returns nothing. Once etcd is back, changes made after the outage are
/// all handled — a new TppClient becomes Ready, a deleted credentials Secret is recreated with
/// an active token — with one registration per client and no expired token served (120 s
/// tokens: a refresh margin of 40 s, longer than the outage).
#[tokio::test]
async fn etcd_stopped_longer_than_the_watch_timeout_misses_no_change_made_after_it() {
    let _only = CONTROL_PLANE.write().await;
    with_namespace("etcdlong", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(120)).await?;
        let _op = start_operator_with_args(&ctx, &["--watch-timeout", "5s"]).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        unexpired_token(&ctx, &sandbox, "payments").await?;
        // The premise: the operator's watches end every 5 s (kube-runtime's default is 290 s).
        let watches = watches_of(&ctx, "tppclients").await?;
        let window = Instant::now() + Duration::from_secs(60);
        while watches_of(&ctx, "tppclients").await? < watches + 2.0 {
            ensure!(
                Instant::now() < window,
                "the TppClient watch was not renewed twice in 60 s: its timeout is not 5 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let secrets = ctx.api::<Secret>();
        let old_uid = secrets.get("payments-credentials").await?.metadata.uid;
        ctx.cp.stop_etcd()?;
        // The outage itself (the fault's length, not a synchronisation).
        tokio::time::sleep(Duration::from_secs(20)).await;
        ctx.cp.start_etcd().await?;
        let back = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(t) = current_token(&ctx, &sandbox, "payments").await {
                ensure!(t.exp > unix_now(), "an expired token served after the outage");
                break;
            }
            ensure!(Instant::now() < deadline, "the API did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let api_back = back.elapsed();
        // Changes made after the outage.
        let changed = Instant::now();
        apply(&ctx, client("receipts", "sandbox", json!({}))).await?;
        secrets
            .delete("payments-credentials", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + READY;
        let (mut new_ready, mut recreated) = (None, None);
        while new_ready.is_none() || recreated.is_none() {
            if recreated.is_none()
                && let Some(s) = secrets.get_opt("payments-credentials").await?
                && s.metadata.uid != old_uid
                && secret_text(&s, "accounts.access_token").is_some()
            {
                unexpired_token(&ctx, &sandbox, "payments").await?;
                recreated = Some(changed.elapsed());
            }
            if new_ready.is_none()
                && api(&ctx, "TppClient")
                    .get("receipts")
                    .await
                    .ok()
                    .and_then(|o| condition(&o, "Ready"))
                    .is_some_and(|c| c["status"] == "True")
            {
                new_ready = Some(changed.elapsed());
            }
            ensure!(
                Instant::now() < deadline,
                "after the outage: receipts Ready {new_ready:?}, payments-credentials recreated {recreated:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let token = unexpired_token(&ctx, &sandbox, "payments").await?;
        let info = sandbox.introspect(&token.value);
        ensure!(info["active"] == true, "recreated token not active: {info}");
        unexpired_token(&ctx, &sandbox, "receipts").await?;
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 2,
            "{} registrations for 2 clients",
            c.registrations_created
        );
        eprintln!(
            "etcd down 20 s with a 5 s watch timeout: API back {api_back:?} after etcd; then a new \
             client Ready in {:?} and the deleted credentials Secret recreated in {:?}; 2 \
             registrations for 2 clients",
            new_ready.unwrap_or_default(),
            recreated.unwrap_or_default()
        );
        Ok(())
    })
    .await;
}
