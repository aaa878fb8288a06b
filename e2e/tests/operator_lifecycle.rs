//! The operator keeping a client alive over time on a real kube-apiserver against the sandbox
//! AS: token refresh without a gap and with one Secret write per refresh, make-before-break
//! signing-key rotation through RFC 7592 with RAT rotation, certificate renewal with the token
//! always bound to the certificate beside it, recovery from a SIGKILL, and crashes made certain
//! with failpoints (docs/reliability.md) inside the registration and RFC 7592 windows.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use e2e::{fixtures::*, sandbox::Endpoint, with_namespace};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::watcher,
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(90);

async fn annotate(ctx: &e2e::TestContext, name: &str, key: &str, value: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api(ctx, "TppClient")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn kids(cm: &ConfigMap) -> BTreeSet<String> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("jwks.json"))
        .cloned()
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    v["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_with_one_secret_write_per_refresh_no_status_write_and_no_read()
 {
    with_namespace("refresh", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(6)).await?;
        let op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let ready = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let status_version = ready.metadata.resource_version.clone();
        let metric = |line: &'static str| {
            let url = format!("{}/metrics", op.admin_url);
            async move {
                let m = reqwest::get(url).await?.text().await?;
                anyhow::Ok(m.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0))
            }
        };
        // The reconcile that made it Ready has finished (its status write counted) once no
        // reconcile is in flight; then count the operator's status writes.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = reqwest::get(format!("{}/metrics", op.admin_url)).await?.text().await?;
            let in_flight: f64 = m
                .lines()
                .find_map(|l| l.strip_prefix("tpp_operator_reconciles_in_flight "))
                .context("no tpp_operator_reconciles_in_flight metric")?
                .trim()
                .parse()?;
            if in_flight == 0.0 {
                break;
            }
            ensure!(Instant::now() < deadline, "a reconcile stayed in flight for 30 s after Ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status_writes = || metric("tpp_operator_status_writes_total ");
        // Reads of the API (GETs; a watch restart would count too): the three Secrets and the
        // AuthorizationServer come from caches.
        let kube_reads = || metric("tpp_operator_kube_requests_total{method=\"GET\"} ");
        let writes_before = status_writes().await?;
        let reads_before = kube_reads().await?;
        ensure!(reads_before > 0.0, "the kube request counter does not count");

        // Count every write to the credentials Secret with a watch, and sample the token.
        let secrets: Api<Secret> = ctx.api();
        let cfg = watcher::Config::default().fields("metadata.name=payments-credentials");
        let mut events = Box::pin(watcher(secrets.clone(), cfg));
        let mut writes = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut samples = 0;
        while Instant::now() < deadline {
            tokio::select! {
                ev = events.next() => {
                    if let Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) = ev {
                        writes.insert(s.metadata.resource_version.clone().unwrap_or_default());
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    let s = secrets.get("payments-credentials").await?;
                    let expires: jiff::Timestamp = secret_text(&s, "accounts.expires_at").context("expires_at")?.parse()?;
                    ensure!(expires > jiff::Timestamp::now(), "the Secret served an expired token (expired {expires})");
                    let token = secret_text(&s, "accounts.access_token").context("token")?;
                    let info = sandbox.introspect(&token);
                    ensure!(info["active"] == true, "sampled token not active at the AS: {info}");
                    tokens.insert(token);
                    samples += 1;
                }
            }
        }
        let refreshes = tokens.len() - 1;
        ensure!(refreshes >= 3, "expected at least 3 refreshes in 20 s of 6 s tokens, saw {refreshes} ({samples} samples)");
        // One write per refresh (the initial listing adds one version).
        ensure!(writes.len() <= tokens.len() + 1, "{} Secret versions for {} tokens: more than one write per refresh", writes.len(), tokens.len());
        let now = api(&ctx, "TppClient").get("payments").await?;
        ensure!(now.metadata.resource_version == status_version, "the TppClient (status) was rewritten during token refreshes");
        let writes_after = status_writes().await?;
        ensure!(writes_after == writes_before, "status applies during refreshes: {writes_before} -> {writes_after} (even a no-op apply costs a request)");
        let reads_after = kube_reads().await?;
        ensure!(reads_after == reads_before, "API reads during refreshes: {reads_before} -> {reads_after}");
        ensure!(sandbox.counters().rejects.is_empty(), "the AS rejected something: {:?}", sandbox.counters().rejects);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn signing_key_rotation_publishes_both_keys_during_the_switch_and_is_never_refused() {
    with_namespace("rotate", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(4)).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({"signingKey": {"rotation": {"propagationDelay": "3s", "retireAfter": "4s"}}}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let cms: Api<ConfigMap> = ctx.api();
        let before = kids(&cms.get("payments-jwks").await?);
        ensure!(before.len() == 1, "one key before the rotation: {before:?}");
        let puts_before = sandbox.counters().requests_with(Endpoint::Registration, "200");
        annotate(&ctx, "payments", "tpp.dev/rotate-keys", "2026-11-26T00:00:00Z").await?;

        let mut max_published = 0;
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut after = before.clone();
        while Instant::now() < deadline {
            after = kids(&cms.get("payments-jwks").await?);
            max_published = max_published.max(after.len());
            if after.len() == 1 && after != before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(max_published == 2, "two kids must be published during the switch (saw at most {max_published})");
        ensure!(after.len() == 1 && after.is_disjoint(&before), "the old kid must be gone after retireAfter: {after:?}");
        let obj = api(&ctx, "TppClient").get("payments").await?;
        let active: Vec<&str> = obj.data["status"]["signingKeys"].as_array().context("keys")?.iter().filter(|k| k["state"] == "Active").filter_map(|k| k["kid"].as_str()).collect();
        ensure!(active.len() == 1 && after.contains(active[0]), "status shows the new key active: {active:?}");
        // A token minted after the switch (assertion signed with the new key) was accepted.
        let counters = sandbox.counters();
        ensure!(counters.rejects.is_empty(), "the AS refused an assertion during the rotation: {:?}", counters.rejects);
        ensure!(counters.requests_with(Endpoint::Registration, "200") >= puts_before + 2, "publication goes through RFC 7592 PUTs (with RAT rotation)");
        ensure!(counters.registrations_created == 1);
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn certificate_renewal_keeps_every_token_bound_to_the_certificate_beside_it() {
    with_namespace("renew", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"tokens": [{"name": "accounts"}, {"name": "profile", "scope": "accounts"}]}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let secrets: Api<Secret> = ctx.api();
        let first = x5t_of_pem(
            &secret_text(&secrets.get("payments-credentials").await?, "tls.crt").context("crt")?,
        )?;
        annotate(&ctx, "payments", "tpp.dev/renew-certificate", "now").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut renewed = false;
        while Instant::now() < deadline {
            let s = secrets.get("payments-credentials").await?;
            let x5t = x5t_of_pem(&secret_text(&s, "tls.crt").context("crt")?)?;
            for token in ["accounts", "profile"] {
                let info = sandbox.introspect(
                    &secret_text(&s, &format!("{token}.access_token")).context("token")?,
                );
                ensure!(
                    info["active"] == true && info["cnf"]["x5t#S256"] == x5t.as_str(),
                    "token {token} not bound to the certificate beside it: {info}"
                );
            }
            if x5t != first {
                renewed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(renewed, "the certificate was not renewed");
        // Status follows the Secret at the end of the reconcile.
        wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["status"] == "True")
                && o.data["status"]["history"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|e| e["reason"] == "CertificateRotated"))
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_operator_restarts_without_registering_again_or_reminting_fresh_tokens() {
    with_namespace("kill", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let tokens_before = sandbox.counters().requests_to(Endpoint::Token);
        // The restarted operator's first discovery is slow, so that its first reconcile of the
        // client finds the AS unresolved, writes "waiting", and is woken once it is resolved:
        // the path where a status write was once skipped against a stale cache.
        ensure!(sandbox.add_fault(e2e::sandbox::faults::Fault {
            endpoint: e2e::sandbox::faults::FaultTarget::Discovery,
            kind: e2e::sandbox::faults::FaultKind::Delay { ms: 1_500 },
            count: 1,
        }));
        op.kill();
        op.restart().await?;
        // The restarted process has reconciled the client to Ready (its own metric, set by a
        // reconcile of this process only) ...
        op.wait_reconciled_ready(&ctx.namespace, "payments", "sandbox", READY)
            .await?;
        // ... and the status on the server says so.
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 1,
            "re-registered after a restart"
        );
        ensure!(
            c.requests_to(Endpoint::Token) == tokens_before,
            "fresh tokens were re-minted after a restart"
        );
        ensure!(
            c.requests_to(Endpoint::Discovery) >= 2,
            "the restarted operator did not discover the AS again"
        );
        Ok(())
    })
    .await;
}

/// Start a rotation, kill the operator once the first RFC 7592 PUT's new RAT is persisted,
/// restart it, and wait for the rotation to finish. Returns the sandbox's counters. (A crash
/// inside the PUT is made certain with a failpoint, below.)
async fn rotate_with_a_kill(ctx: &e2e::TestContext) -> Result<e2e::sandbox::CountersSnapshot> {
    let sandbox = start_sandbox(ctx, |c| c.token_lifetime = Duration::from_secs(5)).await?;
    let mut op = start_operator(ctx).await?;
    apply(ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
    apply(
        ctx,
        client(
            "payments",
            "sandbox",
            json!({"signingKey": {"rotation": {"propagationDelay": "4s", "retireAfter": "3s"}}}),
        ),
    )
    .await?;
    wait_condition(ctx, "TppClient", "payments", "Ready", "True", READY).await?;
    let cms: Api<ConfigMap> = ctx.api();
    let secrets: Api<Secret> = ctx.api();
    let before = kids(&cms.get("payments-jwks").await?);
    let rat_version = secrets
        .get("payments-registration")
        .await?
        .metadata
        .resource_version;
    annotate(ctx, "payments", "tpp.dev/rotate-keys", "1").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        // The first RFC 7592 PUT is done and its new RAT persisted: a kill now is between calls.
        let hit = secrets
            .get("payments-registration")
            .await?
            .metadata
            .resource_version
            != rat_version;
        if hit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    op.kill();
    op.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut after = before.clone();
    while Instant::now() < deadline {
        after = kids(&cms.get("payments-jwks").await?);
        if after.len() == 1 && after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        after.len() == 1 && after != before,
        "rotation did not complete after the restart: {after:?}"
    );
    wait_condition(ctx, "TppClient", "payments", "Ready", "True", READY).await?;
    Ok(sandbox.counters())
}

#[tokio::test]
async fn a_kill_between_rfc7592_calls_resumes_the_rotation_with_the_persisted_rat() {
    with_namespace("killrot", |ctx| async move {
        let c = rotate_with_a_kill(&ctx).await?;
        ensure!(
            c.registrations_created == 1,
            "re-registered: the persisted RAT was not used"
        );
        ensure!(
            c.requests_with(Endpoint::Registration, "401") == 0,
            "a stale RAT was sent after the restart"
        );
        ensure!(
            c.rejects.is_empty(),
            "the AS refused something: {:?}",
            c.rejects
        );
        Ok(())
    })
    .await;
}

/// Events of the test's namespace with `reason`, their notes.
async fn notes(ctx: &e2e::TestContext, reason: &str) -> Result<Vec<String>> {
    let events = ctx
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&Default::default())
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.message.unwrap_or_default())
        .collect())
}

/// Wait until the failpoint aborted the operator (it must: the window is certain).
async fn crashed(op: &mut e2e::operator::OperatorProcess, what: &str) -> Result<()> {
    ensure!(
        op.wait_exited(Duration::from_secs(90)).await,
        "the operator did not crash at {what} (is it built with `--features failpoints`, as `make test-e2e` does?)"
    );
    Ok(())
}

#[tokio::test]
async fn a_crash_after_the_put_answer_before_the_rat_is_persisted_is_reported_by_client_id() {
    // The failpoint aborts the process after the AS rotated the RAT in its PUT answer and
    // before our Secret heard of it: the one window the protocol leaves. The restarted operator
    // must not take one 401 for a lost client, must not register silently, and must name the
    // client left at the AS (registration.onLost: Fail, the default).
    with_namespace("killput", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(30)).await?;
        let mut op =
            start_operator_with_failpoints(&ctx, Some("after_registration_put=1*return(abort)"))
                .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"signingKey": {"rotation": {"propagationDelay": "2s", "retireAfter": "2s"}}}),
            ),
        )
        .await?;
        let ready = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let client_id = ready.data["status"]["clientId"]
            .as_str()
            .context("clientId")?
            .to_owned();
        annotate(&ctx, "payments", "tpp.dev/rotate-keys", "1").await?;
        crashed(&mut op, "after_registration_put").await?;
        let puts = sandbox.counters().requests_with(Endpoint::Registration, "200");
        op.restart_with_failpoints(None).await?;
        let stalled = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Registered").is_some_and(|c| c["reason"] == "RegistrationAccessTokenLost")
        })
        .await?;
        let message = condition(&stalled, "Registered")
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        ensure!(
            message.contains(&client_id),
            "the condition must name the client left at the AS ({client_id}): {message}"
        );
        let c = sandbox.counters();
        ensure!(c.registrations_created == 1, "registered again: {}", c.registrations_created);
        // Evidence before the verdict: the PUT tried three times, then a GET, all refused.
        let refused = c.requests_with(Endpoint::Registration, "401");
        eprintln!("figures: registrations {}, refused RFC 7592 calls {refused}", c.registrations_created);
        ensure!(
            refused == 4,
            "{refused} refused RFC 7592 calls: three PUTs and one GET before the verdict, none after"
        );
        ensure!(
            c.requests_with(Endpoint::Registration, "200") == puts,
            "an RFC 7592 call succeeded with a RAT the AS had rotated"
        );
        // The client keeps working: its tokens are still refreshed (30 s tokens, refreshed
        // well before expiry), not left to the 15-minute pause of a permanent failure.
        let secrets: Api<Secret> = ctx.api();
        let token = || async {
            secret_text(&secrets.get("payments-credentials").await?, "accounts.access_token")
                .context("token")
        };
        let halted_with = token().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let refreshed = loop {
            let now = token().await?;
            if now != halted_with {
                break now;
            }
            ensure!(Instant::now() < deadline, "no token refresh after the halt");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        ensure!(sandbox.introspect(&refreshed)["active"] == true);
        ensure!(sandbox.counters().registrations_created == 1);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn with_on_lost_register_a_crash_after_the_put_answer_registers_anew_and_names_the_old_client()
 {
    with_namespace("killputreg", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(30)).await?;
        let mut op =
            start_operator_with_failpoints(&ctx, Some("after_registration_put=1*return(abort)"))
                .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"registration": {"mode": "Dynamic", "onLost": "Register"},
                       "signingKey": {"rotation": {"propagationDelay": "2s", "retireAfter": "2s"}}}),
            ),
        )
        .await?;
        let ready = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let old = ready.data["status"]["clientId"]
            .as_str()
            .context("clientId")?
            .to_owned();
        annotate(&ctx, "payments", "tpp.dev/rotate-keys", "1").await?;
        crashed(&mut op, "after_registration_put").await?;
        op.restart_with_failpoints(None).await?;
        let ready = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["status"] == "True")
                && o.data["status"]["clientId"].as_str().is_some_and(|id| id != old)
        })
        .await?;
        let new = ready.data["status"]["clientId"].as_str().unwrap_or_default();
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 2,
            "one new client: {}",
            c.registrations_created
        );
        let lost = notes(&ctx, "RegistrationLost").await?;
        ensure!(
            lost.iter().any(|n| n.contains(&old)),
            "the Warning must name the client left at the AS ({old}): {lost:?}"
        );
        ensure!(sandbox.has_client(&old) && sandbox.has_client(new));
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_crash_after_the_registration_answer_before_its_persist_costs_one_reported_client() {
    // The failpoint aborts the process after the AS created the client and answered, before the
    // answer reached `<name>-registration`. Exactly one extra client at the AS, and it is
    // reported (never silent).
    with_namespace("killreg", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op =
            start_operator_with_failpoints(&ctx, Some("after_registration_post=1*return(abort)"))
                .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        crashed(&mut op, "after_registration_post").await?;
        ensure!(sandbox.counters().registrations_created == 1);
        let secrets: Api<Secret> = ctx.api();
        ensure!(
            secrets
                .get_opt("payments-registration")
                .await?
                .and_then(|s| secret_text(&s, "client_id"))
                .is_none(),
            "the answer must not have been persisted (the window was missed)"
        );
        op.restart_with_failpoints(None).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 2,
            "exactly one extra client: {} registrations",
            c.registrations_created
        );
        let lost = notes(&ctx, "RegistrationLost").await?;
        ensure!(
            lost.iter().any(|n| n.contains("may remain at the AS")),
            "the client left at the AS must be reported: {lost:?}"
        );
        ensure!(
            secret_text(
                &secrets.get("payments-registration").await?,
                "registration_access_token"
            )
            .is_some()
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_crash_after_the_intent_before_the_request_left_registers_once_and_says_a_client_may_remain()
 {
    // The one gap the intent cannot close: written, then the process dies before the request
    // leaves. The AS holds nothing; the operator cannot know that and says a client *may*
    // remain. One registration in all.
    with_namespace("killintent", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op =
            start_operator_with_failpoints(&ctx, Some("before_registration_post=1*return(abort)"))
                .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        crashed(&mut op, "before_registration_post").await?;
        ensure!(sandbox.counters().registrations_created == 0);
        op.restart_with_failpoints(None).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        ensure!(sandbox.counters().registrations_created == 1);
        let lost = notes(&ctx, "RegistrationLost").await?;
        ensure!(
            lost.iter().any(|n| n.contains("may remain")),
            "the attempt must be reported: {lost:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_registration_answer_lost_on_the_wire_is_retried_once_and_reported() {
    // No crash: the AS created the client and its answer was lost (a connection reset after
    // the request was handled). The attempt's outcome is unknown: one retry, reported.
    with_namespace("lostans", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op =
            start_operator_with_failpoints(&ctx, Some("after_registration_post=1*return(error)"))
                .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(
            c.registrations_created == 2,
            "{} registrations",
            c.registrations_created
        );
        let lost = notes(&ctx, "RegistrationLost").await?;
        ensure!(!lost.is_empty(), "the lost answer must be reported");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn with_max_unknown_attempts_1_repeated_crashes_stop_at_two_registrations_until_annotated() {
    with_namespace("regonce", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let always = Some("after_registration_post=return(abort)".to_owned());
        let mut op = start_operator_with_failpoints(&ctx, always.as_deref()).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        crashed(&mut op, "the first registration").await?;
        op.restart_with_failpoints(always.clone()).await?;
        crashed(&mut op, "the second registration").await?;
        // A third process with the same failpoint: the planner makes no third request.
        op.restart_with_failpoints(always.clone()).await?;
        let halted = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Registered").is_some_and(|c| c["reason"] == "RegistrationOutcomeUnknown")
                && condition(o, "Stalled").is_some_and(|c| c["status"] == "True")
        })
        .await?;
        ensure!(op.is_running(), "a third registration was attempted");
        ensure!(sandbox.counters().registrations_created == 2);
        let message = condition(&halted, "Registered")
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        ensure!(message.contains("tpp.dev/retry-registration"), "{message}");
        let warnings = notes(&ctx, "RegistrationOutcomeUnknown").await?;
        ensure!(!warnings.is_empty(), "a Warning event must say it");
        // A human checked the AS: one more attempt, without the failpoint this time.
        op.restart_with_failpoints(None).await?;
        annotate(&ctx, "payments", "tpp.dev/retry-registration", "1").await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        ensure!(sandbox.counters().registrations_created == 3);
        Ok(())
    })
    .await;
}
