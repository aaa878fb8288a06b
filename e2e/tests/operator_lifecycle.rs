//! The operator keeping a client alive over time on a real kube-apiserver against the sandbox
//! AS: token refresh without a gap and with one Secret write per refresh, make-before-break
//! signing-key rotation through RFC 7592 with RAT rotation, certificate renewal with the token
//! always bound to the certificate beside it, and recovery from a SIGKILL.

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
        // Let the reconcile that made it Ready finish, then count the operator's status writes.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let metric = |line: &'static str| {
            let url = format!("{}/metrics", op.admin_url);
            async move {
                let m = reqwest::get(url).await?.text().await?;
                anyhow::Ok(m.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0))
            }
        };
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
        let series = format!(
            "tpp_operator_client_ready{{namespace=\"{}\",name=\"payments\",server=\"sandbox\"}} 1",
            ctx.namespace
        );
        let deadline = Instant::now() + READY;
        loop {
            let metrics = op.metrics().await.unwrap_or_default();
            if metrics.lines().any(|l| l == series) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the restarted operator never reconciled the client to Ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

/// Start a rotation, kill the operator at `kill_when`, restart it, and wait for the rotation to
/// finish. Returns the sandbox's counters.
async fn rotate_with_a_kill(
    ctx: &e2e::TestContext,
    kill_between_calls: bool,
) -> Result<e2e::sandbox::CountersSnapshot> {
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
        let hit = if kill_between_calls {
            // The first RFC 7592 PUT is done and its new RAT persisted: a kill now is between calls.
            secrets
                .get("payments-registration")
                .await?
                .metadata
                .resource_version
                != rat_version
        } else {
            // The new key is in the served JWKS: the PUT carrying it is about to go out.
            kids(&cms.get("payments-jwks").await?).len() == 2
        };
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
        let c = rotate_with_a_kill(&ctx, true).await?;
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

#[tokio::test]
async fn a_kill_inside_an_rfc7592_call_recovers_even_if_the_rotated_rat_was_lost() {
    // Killed while the PUT is in flight, the AS may have rotated the RAT without our Secret
    // hearing of it. Then the only recovery is a new registration (with a Warning naming the
    // old client); otherwise the persisted RAT just works. Either way: Ready, rotation done.
    with_namespace("killput", |ctx| async move {
        let c = rotate_with_a_kill(&ctx, false).await?;
        ensure!(
            c.registrations_created <= 2,
            "more than one re-registration"
        );
        if c.registrations_created == 2 {
            let events = ctx
                .api::<k8s_openapi::api::core::v1::Event>()
                .list(&Default::default())
                .await?;
            ensure!(
                events
                    .items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("RegistrationLost")),
                "a lost RAT must be reported"
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_kill_during_registration_never_loses_a_registration_silently() {
    // The registration request is slowed down and the operator killed while it is in flight.
    // Whatever the AS did with it, the restarted operator ends Ready with exactly one client it
    // manages, and if the AS created a client whose answer never reached our Secret, a
    // RegistrationLost Warning names the attempt.
    with_namespace("killreg", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(e2e::sandbox::faults::Fault {
            endpoint: e2e::sandbox::FaultTarget::Registration,
            kind: e2e::sandbox::faults::FaultKind::Delay { ms: 1500 },
            count: 1,
        });
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        // The intent is recorded (with the keys the request carries) before the request goes
        // out: kill right after it.
        let secrets: Api<Secret> = ctx.api();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = secrets.get_opt("payments-keys").await?
                && secret_text(&s, "state.json")
                    .is_some_and(|t| t.contains("registrationAttemptStartedAt"))
            {
                break;
            }
            ensure!(Instant::now() < deadline, "no registration intent recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        op.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        op.restart().await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(
            c.registrations_created <= 2,
            "registered {} times",
            c.registrations_created
        );
        let events = ctx
            .api::<k8s_openapi::api::core::v1::Event>()
            .list(&Default::default())
            .await?;
        let lost = events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RegistrationLost"));
        ensure!(
            lost,
            "an interrupted registration must be reported (registrations at the AS: {})",
            c.registrations_created
        );
        assert_ne!(
            secret_text(
                &secrets.get("payments-registration").await?,
                "registration_access_token"
            ),
            None
        );
        Ok(())
    })
    .await;
}
