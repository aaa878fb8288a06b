//! The operator at the edges, on a real kube-apiserver against the sandbox AS: deletion with
//! `Delete`, `Orphan` and an unreachable AS; references it must refuse; AS faults it must ride
//! out politely (backoff, `Retry-After`, no retry storm); SignedRequest registration.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use e2e::{
    TestContext,
    fixtures::*,
    operator::{OperatorOptions, OperatorProcess},
    sandbox::{Endpoint, Fault, FaultKind, FaultTarget},
    with_namespace,
};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

async fn wait_gone(ctx: &TestContext, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if api(ctx, "TppClient").get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("TppClient/{name} still present after {timeout:?}")
}

async fn client_id(ctx: &TestContext, name: &str) -> Result<String> {
    let o = api(ctx, "TppClient").get(name).await?;
    Ok(o.data["status"]["clientId"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn deletion_policy_delete_deregisters_and_orphan_leaves_the_client() {
    with_namespace("delete", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("gone", "sandbox", json!({}))).await?;
        apply(
            &ctx,
            client(
                "kept",
                "sandbox",
                json!({"registration": {"mode": "Dynamic", "deletionPolicy": "Orphan"}}),
            ),
        )
        .await?;
        let gone = wait_condition(&ctx, "TppClient", "gone", "Ready", "True", READY).await?;
        wait_condition(&ctx, "TppClient", "kept", "Ready", "True", READY).await?;
        ensure!(
            gone.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == "tpp.dev/deregistration")),
            "Delete policy needs the finalizer"
        );
        let kept = api(&ctx, "TppClient").get("kept").await?;
        ensure!(
            kept.metadata
                .finalizers
                .as_ref()
                .is_none_or(|f| f.is_empty()),
            "Orphan has no external cleanup: no finalizer"
        );
        let (gone_id, kept_id) = (
            client_id(&ctx, "gone").await?,
            client_id(&ctx, "kept").await?,
        );
        ensure!(sandbox.has_client(&gone_id) && sandbox.has_client(&kept_id));
        for name in ["gone", "kept"] {
            api(&ctx, "TppClient")
                .delete(name, &DeleteParams::default())
                .await?;
        }
        wait_gone(&ctx, "gone", Duration::from_secs(30)).await?;
        wait_gone(&ctx, "kept", Duration::from_secs(30)).await?;
        ensure!(
            !sandbox.has_client(&gone_id),
            "Delete must deregister the client at the AS (RFC 7592 DELETE)"
        );
        ensure!(
            sandbox.has_client(&kept_id),
            "Orphan must leave the client at the AS"
        );
        // The one token of "gone" was revoked (RFC 7009, authenticated) before its DELETE;
        // "kept" (Orphan, no finalizer) is left alone.
        let revoked = sandbox
            .counters()
            .requests_with(e2e::sandbox::Endpoint::Revocation, "200");
        ensure!(
            revoked == 1,
            "{revoked} revocations answered 200, expected the one token of the deleted client"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deletion_with_the_as_down_gives_up_after_bounded_retries_with_a_warning() {
    with_namespace("asdown", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = OperatorProcess::start(
            ctx.cp,
            &ctx.client,
            OperatorOptions {
                namespaces: vec![ctx.namespace.clone()],
                args: vec!["--delete-attempts".into(), "2".into()],
                ..Default::default()
            },
        )
        .await?;
        ctx.audit_log(op.log_path());
        let log = op.log_path();
        ctx.on_failure_print(move || e2e::process::tail(&log, 8000));
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        sandbox.shutdown().await;
        api(&ctx, "TppClient")
            .delete("payments", &DeleteParams::default())
            .await?;
        wait_gone(&ctx, "payments", Duration::from_secs(60)).await?;
        let events = ctx.api::<Event>().list(&Default::default()).await?;
        let warning = events.items.iter().find(|e| {
            e.reason.as_deref() == Some("DeregistrationFailed")
                && e.message.as_deref().unwrap_or("").contains("gave up")
        });
        ensure!(warning.is_some(), "no Warning naming what was left behind");
        let text = warning.and_then(|e| e.message.clone()).unwrap_or_default();
        ensure!(
            text.contains(&id),
            "the Warning must name the client left at the AS: {text}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_deregistration_answered_401_is_not_taken_for_deleted_and_names_the_client() {
    // The AS no longer accepts the RAT (here: the client was removed at the AS by hand, which
    // the sandbox, like oidc-provider, answers with 401): no proof the client is gone.
    with_namespace("del401", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        ensure!(sandbox.delete_client(&id), "the sandbox held {id}");
        api(&ctx, "TppClient")
            .delete("payments", &DeleteParams::default())
            .await?;
        wait_gone(&ctx, "payments", Duration::from_secs(60)).await?;
        let events = ctx.api::<Event>().list(&Default::default()).await?;
        ensure!(
            !events
                .items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Deregistered")),
            "a 401 was reported as a deregistration"
        );
        let warning = events.items.iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("DeregistrationFailed")
                && e.message.as_deref().unwrap_or("").contains(&id)
        });
        ensure!(warning.is_some(), "no Warning naming {id}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_secret_reference_into_another_namespace_is_refused_with_a_condition() {
    with_namespace("xns", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({"registration": {"mode": "Dynamic", "initialAccessTokenRef": {"name": "iat", "key": "token", "namespace": "kube-system"}}}))).await?;
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| condition(o, "Ready").is_some_and(|c| c["reason"] == "CrossNamespaceReference")).await?;
        let msg = condition(&o, "Ready").map(|c| c["message"].to_string()).unwrap_or_default();
        ensure!(msg.contains("own namespace"), "the message says what to fix: {msg}");
        ensure!(sandbox.counters().registrations_created == 0);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_authorization_server_on_an_unlisted_internal_host_is_refused_before_any_call() {
    with_namespace("egress", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        // The harness allows 127.0.0.1 and localhost only (--allowed-as-hosts): another
        // loopback address is an internal host the operator must not call.
        let _op = start_operator(&ctx).await?;
        let issuer = sandbox.issuer().replace("localhost", "127.0.0.9");
        apply(
            &ctx,
            sandbox_server("inward", &sandbox, json!({"issuer": issuer})),
        )
        .await?;
        let o = wait_for(&ctx, "AuthorizationServer", "inward", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "EgressRefused")
        })
        .await?;
        let msg = condition(&o, "Ready")
            .map(|c| c["message"].to_string())
            .unwrap_or_default();
        ensure!(
            msg.contains("127.0.0.9") && msg.contains("allowed-as-hosts"),
            "the message names the host and the flag: {msg}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_server_refuses_namespaces_its_selector_excludes() {
    with_namespace("cas", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        let cas = format!("sandbox-{}", ctx.namespace);
        let mut m = sandbox_server(&cas, &sandbox, json!({"allowedNamespaces": {"matchLabels": {"tpp.dev/open-finance": "enabled"}}}));
        m["kind"] = json!("ClusterAuthorizationServer");
        apply(&ctx, m).await?;
        apply(&ctx, client("payments", "sandbox", json!({"authorizationServerRef": {"kind": "ClusterAuthorizationServer", "name": cas}}))).await?;
        wait_for(&ctx, "TppClient", "payments", READY, |o| condition(o, "Ready").is_some_and(|c| c["reason"] == "NamespaceNotAllowed")).await?;
        ensure!(sandbox.counters().registrations_created == 0, "a refused namespace must not reach the AS");
        // Label the namespace: the same client becomes Ready.
        let patch = json!({"metadata": {"labels": {"tpp.dev/open-finance": "enabled"}}});
        Api::<Namespace>::all(ctx.client.clone()).patch(&ctx.namespace, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        // Nudge (the operator would otherwise retry after its backoff).
        let nudge = json!({"metadata": {"annotations": {"tpp.dev/renew-tokens": "nudge"}}});
        api(&ctx, "TppClient").patch("payments", &PatchParams::default(), &Patch::Merge(&nudge)).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn rate_limited_and_failing_token_calls_back_off_honour_retry_after_and_recover() {
    with_namespace("faults", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(Fault {
            endpoint: FaultTarget::Token,
            kind: FaultKind::Status {
                code: 429,
                retry_after_secs: Some(3),
            },
            count: 2,
        });
        sandbox.add_fault(Fault {
            endpoint: FaultTarget::Token,
            kind: FaultKind::Status {
                code: 503,
                retry_after_secs: None,
            },
            count: 2,
        });
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let started = Instant::now();
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let c = sandbox.counters();
        ensure!(
            c.requests_with(Endpoint::Token, "429") == 2
                && c.requests_with(Endpoint::Token, "503") == 2,
            "faults served: {:?}",
            c.requests
        );
        // Two 429s with Retry-After: 3 mean at least 6 s before the token.
        ensure!(
            started.elapsed() >= Duration::from_secs(6),
            "Retry-After was not honoured ({:?})",
            started.elapsed()
        );
        ensure!(
            c.requests_to(Endpoint::Token) <= 6,
            "retry storm: {} token requests for 4 faults",
            c.requests_to(Endpoint::Token)
        );
        ensure!(c.peak_token_requests_per_second() <= 2, "burst of retries");
        let events = ctx.api::<Event>().list(&Default::default()).await?;
        ensure!(
            events
                .items
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("RateLimited")),
            "a Warning event names the cause"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn signed_request_registration_with_a_software_statement_becomes_ready() {
    with_namespace("signed", |ctx| async move {
        // The directory: a key that signs software statements, trusted by the sandbox.
        let directory = tpp_operator::identity::PrivateKey::generate(tpp_operator::identity::KeyAlgorithm::Rsa2048)?;
        let directory_jwks = json!({"keys": [serde_json::to_value(directory.public_jwk())?]});
        let sandbox = start_sandbox(&ctx, |c| c.directory_jwks = Some(directory_jwks.clone())).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        // The statement must carry the client's keys (software_jwks): the operator generates
        // them, so the SSA is issued once the first key exists — as a directory would after
        // the TPP uploads its key. The operator waits for the Secret meanwhile.
        apply(&ctx, client("obie", "sandbox", json!({"registration": {"mode": "SignedRequest", "softwareStatementRef": {"name": "ssa", "key": "ssa.jwt"}, "metadata": {"softwareId": "sw-1"}}}))).await?;
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = ctx.api();
        let deadline = Instant::now() + Duration::from_secs(60);
        let jwks = loop {
            if let Some(cm) = cms.get_opt("obie-jwks").await?
                && let Some(text) = cm.data.and_then(|d| d.get("jwks.json").cloned())
            {
                break serde_json::from_str::<serde_json::Value>(&text)?;
            }
            ensure!(Instant::now() < deadline, "no JWKS published");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let signer = directory.signer()?;
        let mut header = josekit::jws::JwsHeader::new();
        header.set_token_type("JWT");
        let mut payload = josekit::jwt::JwtPayload::new();
        payload.set_claim("software_id", Some(json!("sw-1")))?;
        payload.set_claim("software_jwks", Some(jwks))?;
        payload.set_claim("iss", Some(json!("test-directory")))?;
        payload.set_issued_at(&std::time::SystemTime::now());
        let ssa = josekit::jwt::encode_with_signer(&payload, &header, &signer)?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssa"}, "stringData": {"ssa.jwt": ssa}});
        ctx.api::<Secret>().patch("ssa", &PatchParams::apply("e2e-user"), &Patch::Apply(&secret)).await?;
        wait_condition(&ctx, "TppClient", "obie", "Ready", "True", READY).await?;
        ensure!(sandbox.counters().registrations_created == 1);
        Ok(())
    })
    .await;
}

/// Two operators contending for `lease`: the first leads and brings client `one` (of the AS
/// `sandbox`) to Ready, then the second starts and stands by. Both logs are audited and printed
/// if the test fails.
async fn leader_then_standby(
    ctx: &TestContext,
    sandbox: &e2e::sandbox::RunningSandbox,
    lease: &str,
) -> Result<(OperatorProcess, OperatorProcess)> {
    let opts = || OperatorOptions {
        namespaces: vec![ctx.namespace.clone()],
        args: vec![
            "--leader-election".into(),
            "--leader-election-lease".into(),
            lease.to_owned(),
        ],
        ..Default::default()
    };
    let first = OperatorProcess::start(ctx.cp, &ctx.client, opts()).await?;
    ctx.audit_log(first.log_path());
    apply(ctx, sandbox_server("sandbox", sandbox, json!({}))).await?;
    apply(ctx, client("one", "sandbox", json!({}))).await?;
    wait_condition(ctx, "TppClient", "one", "Ready", "True", READY).await?;
    let second = OperatorProcess::start(ctx.cp, &ctx.client, opts()).await?;
    ctx.audit_log(second.log_path());
    let (l1, l2) = (first.log_path(), second.log_path());
    ctx.on_failure_print(move || {
        format!(
            "--- first ---\n{}\n--- second ---\n{}",
            e2e::process::tail(&l1, 6000),
            e2e::process::tail(&l2, 6000)
        )
    });
    Ok((first, second))
}

#[tokio::test]
async fn with_leader_election_only_the_leader_acts_and_a_standby_takes_over_after_a_kill() {
    with_namespace("leader", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let lease = format!("lease-{}", ctx.namespace);
        let (mut first, second) = leader_then_standby(&ctx, &sandbox, &lease).await?;
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(ctx.client.clone(), e2e::operator::OPERATOR_NAMESPACE);
        let holder = |l: &k8s_openapi::api::coordination::v1::Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        };
        let before = holder(&leases.get(&lease).await?);
        ensure!(
            !second.log().contains("controllers starting"),
            "the standby must not run controllers while the leader renews"
        );
        // The leader exports the client's series; the standby exports no readiness or expiry
        // series at all (absent, not 0: an `… - time() < x` alert must not fire on it).
        let ready_one = format!(
            r#"tpp_operator_client_ready{{namespace="{}",name="one",server="sandbox"}} 1"#,
            ctx.namespace
        );
        let leader_metrics = first.metrics().await?;
        ensure!(
            leader_metrics.lines().any(|l| l == ready_one),
            "the leader exports {ready_one}:\n{leader_metrics}"
        );
        let standby_metrics = second.metrics().await?;
        let reported: Vec<&str> = standby_metrics
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.contains("client_ready") || l.contains("_timestamp_seconds"))
            })
            .collect();
        ensure!(reported.is_empty(), "the standby reports {reported:?}");
        first.kill();
        // The standby takes over once the lease (15 s) expires, and acts.
        apply(&ctx, client("two", "sandbox", json!({}))).await?;
        wait_condition(
            &ctx,
            "TppClient",
            "two",
            "Ready",
            "True",
            Duration::from_secs(60),
        )
        .await?;
        let after = holder(&leases.get(&lease).await?);
        ensure!(
            after != before && !after.is_empty(),
            "the lease changed hands: {before} -> {after}"
        );
        ensure!(second.log().contains("acquired leadership"));
        let ready_two = format!(
            r#"tpp_operator_client_ready{{namespace="{}",name="two",server="sandbox"}} 1"#,
            ctx.namespace
        );
        let new_leader_metrics = second.metrics().await?;
        ensure!(
            new_leader_metrics.lines().any(|l| l == ready_two),
            "the new leader exports {ready_two}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_standby_follows_the_leaders_writes_and_takes_over_from_its_caches_without_registering_again()
 {
    with_namespace("warm", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let lease = format!("lease-{}", ctx.namespace);
        let (mut first, second) = leader_then_standby(&ctx, &sandbox, &lease).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !second
            .log()
            .contains("standing by with the Secret cache listed")
        {
            ensure!(
                Instant::now() < deadline,
                "the standby never listed our Secrets"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Registered, keyed and tokened by the leader while the standby stands by: the
        // standby's watches must follow, and its takeover must not register it again.
        apply(&ctx, client("two", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "two", "Ready", "True", READY).await?;
        ensure!(sandbox.counters().registrations_created == 2);
        ensure!(
            !second.log().contains("controllers starting"),
            "the standby must not run controllers while the leader renews"
        );
        first.kill();
        apply(&ctx, client("three", "sandbox", json!({}))).await?;
        wait_condition(
            &ctx,
            "TppClient",
            "three",
            "Ready",
            "True",
            Duration::from_secs(60),
        )
        .await?;
        second
            .wait_reconciled_ready(&ctx.namespace, "two", "sandbox", Duration::from_secs(30))
            .await?;
        let log = second.log();
        ensure!(
            log.contains("Secret cache of the standby confirmed"),
            "the new leader did not take over from the standby's Secret cache"
        );
        ensure!(
            !log.contains("Secret cache filled"),
            "the new leader listed every Secret again"
        );
        let registrations = sandbox.counters().registrations_created;
        ensure!(
            registrations == 3,
            "{registrations} registrations for 3 clients: one was registered again at the takeover"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_leader_stopped_with_sigterm_releases_its_lease_for_an_immediate_takeover() {
    with_namespace("release", |ctx| async move {
        let lease = format!("lease-{}", ctx.namespace);
        let mut leader = OperatorProcess::start(
            ctx.cp,
            &ctx.client,
            OperatorOptions {
                namespaces: vec![ctx.namespace.clone()],
                args: vec![
                    "--leader-election".into(),
                    "--leader-election-lease".into(),
                    lease.clone(),
                ],
                ..Default::default()
            },
        )
        .await?;
        ctx.audit_log(leader.log_path());
        let log = leader.log_path();
        ctx.on_failure_print(move || e2e::process::tail(&log, 8000));
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(ctx.client.clone(), e2e::operator::OPERATOR_NAMESPACE);
        let holder = |l: &k8s_openapi::api::coordination::v1::Lease| {
            l.spec.as_ref().and_then(|s| s.holder_identity.clone())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while leases
            .get_opt(&lease)
            .await?
            .and_then(|l| holder(&l))
            .is_none()
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "no replica took the lease"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        leader.stop(Duration::from_secs(60));
        let released = leases.get(&lease).await?;
        ensure!(
            holder(&released).is_none(),
            "a stopped leader leaves no holder on the lease: {:?}",
            released.spec
        );
        ensure!(leader.log().contains("released the lease"));
        Ok(())
    })
    .await;
}

/// "A typo in an issuer hammers the bank" (issue 12): an AuthorizationServer whose discovery
/// fails, permanently (the issuer has a wrong path: 404) or transiently (503 on every
/// discovery), is retried on its backoff and nothing else. Its status is written once, not on
/// every attempt (no per-request value in the condition), so the write triggers no storm of
/// reconciles. Bound: over 40 s, at most 3 requests for the 404 (one attempt, then 5 minutes)
/// and at most 8 for the 503 (2 s, 4 s, 8 s, 16 s … with ±20 % jitter: 5 or 6 attempts).
#[tokio::test]
async fn a_failing_discovery_is_retried_on_its_backoff_not_in_a_storm() {
    with_namespace("typo", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        sandbox.add_fault(Fault {
            endpoint: FaultTarget::Discovery,
            kind: FaultKind::Status {
                code: 503,
                retry_after_secs: None,
            },
            count: 1_000_000,
        });
        let _op = start_operator(&ctx).await?;
        let typo = format!("{}/typo", sandbox.issuer());
        let started = Instant::now();
        apply(
            &ctx,
            sandbox_server("typo", &sandbox, json!({"issuer": typo})),
        )
        .await?;
        apply(&ctx, sandbox_server("down", &sandbox, json!({}))).await?;
        let typo_ready =
            wait_condition(&ctx, "AuthorizationServer", "typo", "Ready", "False", READY).await?;
        let down_ready =
            wait_condition(&ctx, "AuthorizationServer", "down", "Ready", "False", READY).await?;
        let reason = |o: &kube::api::DynamicObject| {
            condition(o, "Ready")
                .and_then(|c| c["reason"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        ensure!(
            reason(&down_ready) == "AuthorizationServerUnavailable",
            "the 503 is transient: {:?}",
            condition(&down_ready, "Ready")
        );
        ensure!(
            reason(&typo_ready) != "AuthorizationServerUnavailable",
            "the 404 is not an outage: {:?}",
            condition(&typo_ready, "Ready")
        );
        let window = Duration::from_secs(40);
        let (mut typo_requests, mut down_requests) = (0, 0);
        // An observation window, not a wait for a condition: the counts must stay small for
        // all of it. Checked every second so a storm fails fast.
        while started.elapsed() < window {
            let c = sandbox.counters();
            typo_requests = c.requests_to(Endpoint::Other);
            down_requests = c.requests_to(Endpoint::Discovery);
            ensure!(
                typo_requests <= 3 && down_requests <= 8,
                "discovery storm after {:?}: {typo_requests} requests for the wrong issuer path, \
                 {down_requests} for the AS answering 503",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        ensure!(
            typo_requests >= 1 && down_requests >= 3,
            "the failing AS is still retried: {typo_requests} / {down_requests}"
        );
        eprintln!(
            "over {window:?}: {typo_requests} discovery requests for the wrong issuer path, \
             {down_requests} for the AS answering 503"
        );
        Ok(())
    })
    .await;
}

/// Leader election as client-go does it (issue 12, "Two leaders"): the leader is frozen with
/// SIGSTOP (its renewals stall); the standby takes over only once the lease has stood still
/// for its duration on the standby's own clock, and acts; the old leader, resumed with
/// SIGCONT, finds its renew deadline passed and exits without sending a single Kubernetes
/// write or AS call (its log after the resume holds neither a `kube write` nor an `as call`
/// line), so there are never two writers.
#[tokio::test]
async fn a_frozen_leader_is_replaced_after_the_lease_and_never_writes_again() {
    with_namespace("sigstop", |ctx| async move {
        // 8 s tokens: refreshes fall due while the leader is frozen and after the takeover.
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(8)).await?;
        let lease = format!("lease-{}", ctx.namespace);
        let opts = || OperatorOptions {
            namespaces: vec![ctx.namespace.clone()],
            args: vec![
                "--leader-election".into(),
                "--leader-election-lease".into(),
                lease.clone(),
            ],
            ..Default::default()
        };
        let mut first = OperatorProcess::start(ctx.cp, &ctx.client, opts()).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("one", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "one", "Ready", "True", READY).await?;
        let second = OperatorProcess::start(ctx.cp, &ctx.client, opts()).await?;
        let (l1, l2) = (first.log_path(), second.log_path());
        ctx.on_failure_print(move || {
            format!(
                "--- first ---\n{}\n--- second ---\n{}",
                e2e::process::tail(&l1, 8000),
                e2e::process::tail(&l2, 6000)
            )
        });
        // Every version of one-credentials, in order: with two writers a stale leader would
        // put an older token back over a newer one.
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let recorder = {
            let written = written.clone();
            let cfg =
                kube::runtime::watcher::Config::default().fields("metadata.name=one-credentials");
            let events = kube::runtime::watcher(ctx.api::<Secret>(), cfg);
            tokio::spawn(async move {
                use futures::StreamExt as _;
                let mut events = std::pin::pin!(events);
                while let Some(ev) = events.next().await {
                    if let Ok(
                        kube::runtime::watcher::Event::Apply(s)
                        | kube::runtime::watcher::Event::InitApply(s),
                    ) = ev
                        && let Some(token) = secret_text(&s, "accounts.access_token")
                        && let Ok(mut w) = written.lock()
                        && w.last() != Some(&token)
                    {
                        w.push(token);
                    }
                }
            })
        };
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(ctx.client.clone(), e2e::operator::OPERATOR_NAMESPACE);
        let holder = |l: &k8s_openapi::api::coordination::v1::Lease| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        };
        let seen = leases.get(&lease).await?;
        let before = holder(&seen);
        ensure!(!before.is_empty(), "the first operator holds the lease");
        // Freeze the leader right after a renewal: the standby cannot have seen that last
        // renewal before it was written, a moment before `frozen_at`.
        let deadline = Instant::now() + Duration::from_secs(30);
        while leases.get(&lease).await?.metadata.resource_version == seen.metadata.resource_version
        {
            ensure!(Instant::now() < deadline, "the leader does not renew");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.pause();
        let frozen_at = Instant::now();
        apply(&ctx, client("two", "sandbox", json!({}))).await?;
        let taken_after = loop {
            let now = holder(&leases.get(&lease).await?);
            if now != before && !now.is_empty() {
                break frozen_at.elapsed();
            }
            ensure!(
                frozen_at.elapsed() < Duration::from_secs(90),
                "the standby never took over"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // The standby waits the lease duration (15 s) on its own clock from when it saw the
        // last renewal, written just before the freeze (2 s of slack for a slow GET).
        ensure!(
            taken_after >= Duration::from_secs(13),
            "the standby took over {taken_after:?} after the freeze, before the lease could expire"
        );
        wait_condition(&ctx, "TppClient", "two", "Ready", "True", READY).await?;
        let resumed_from = first.log().len();
        first.resume();
        let deadline = Instant::now() + Duration::from_secs(60);
        while first.is_running() {
            ensure!(
                Instant::now() < deadline,
                "the resumed old leader is still running"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = first.log();
        let after = log.get(resumed_from..).unwrap_or_default();
        ensure!(
            after.contains("stopped leading"),
            "the old leader must find it lost the lease: {after}"
        );
        let acted: Vec<&str> = after
            .lines()
            .filter(|l| l.contains("kube write") || l.contains("as call"))
            .collect();
        ensure!(
            acted.is_empty(),
            "the old leader acted after it was resumed: {acted:#?}"
        );
        ensure!(
            sandbox.counters().registrations_created == 2,
            "one registration per client: {}",
            sandbox.counters().registrations_created
        );
        // One writer at a time: the tokens of one-credentials, version after version, were
        // issued in order (a token older than the one it replaced = a second writer).
        recorder.abort();
        let written = written.lock().map(|w| w.clone()).unwrap_or_default();
        let iats: Vec<f64> = written
            .iter()
            .map(|t| {
                sandbox
                    .issued_token(t)
                    .and_then(|v| v["iat"].as_f64())
                    .unwrap_or(-1.0)
            })
            .collect();
        ensure!(
            iats.iter().all(|i| *i >= 0.0),
            "a version carried a token the AS never issued"
        );
        let stale = iats.windows(2).filter(|w| w[1] < w[0]).count();
        // At least the first token and one written by the new leader (the first one expired
        // while the leader was frozen).
        ensure!(
            written.len() >= 2 && stale == 0,
            "{} token versions of one-credentials, {stale} older than the one they replaced",
            written.len()
        );
        eprintln!(
            "the standby took over {taken_after:?} after the leader was frozen; the resumed \
             leader held back {} writes or AS calls; {} token versions of one-credentials, \
             each newer than the last (one writer at a time)",
            after.matches("not leading any more").count(),
            written.len()
        );
        Ok(())
    })
    .await;
}

/// "Namespace deletion orphans the client" (issue 12). The namespace of a registered Dynamic
/// client (`deletionPolicy: Delete`) is deleted. The e2e control plane runs no namespace
/// controller, so the test does what it does, in the order that hurts most: the Secrets and
/// the AuthorizationServer are deleted before the TppClient, then the namespace is finalized
/// once nothing is left in it. The registration access token must stay readable until the
/// RFC 7592 DELETE is done: the sandbox AS counts one DELETE of that client, and everything
/// (the TppClient, its Secrets) goes away, then the namespace.
#[tokio::test]
async fn deleting_the_namespace_of_a_registered_client_deregisters_it_at_the_as() {
    with_namespace("nsdelete", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("doomed", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "doomed", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "doomed").await?;
        ensure!(sandbox.has_client(&id));
        let secrets = ctx.api::<Secret>();
        for name in ["doomed-registration", "doomed-keys"] {
            let s = secrets.get(name).await?;
            ensure!(
                s.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|f| f == "tpp.dev/deregistration")),
                "{name} keeps the deregistration finalizer: {:?}",
                s.metadata.finalizers
            );
        }
        let namespaces = Api::<Namespace>::all(ctx.client.clone());
        namespaces
            .delete(&ctx.namespace, &DeleteParams::default())
            .await?;
        // The namespace controller's work: every object in the namespace deleted, in parallel
        // and in no order the operator can count on; here the worst one.
        secrets
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await?;
        ctx.api::<k8s_openapi::api::core::v1::ConfigMap>()
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await?;
        api(&ctx, "AuthorizationServer")
            .delete("sandbox", &DeleteParams::default())
            .await?;
        api(&ctx, "TppClient")
            .delete("doomed", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left_secrets = secrets.list(&Default::default()).await?.items.len();
            let left_clients = api(&ctx, "TppClient")
                .list(&Default::default())
                .await?
                .items
                .len();
            if left_secrets == 0 && left_clients == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "still in the namespace: {left_secrets} Secrets, {left_clients} TppClients"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(
            !sandbox.has_client(&id),
            "client {id} was left registered at the AS"
        );
        let deletes = sandbox
            .counters()
            .requests_with(Endpoint::Registration, "204");
        ensure!(deletes == 1, "{deletes} successful DELETEs of client {id}");
        // The namespace controller's last step: nothing left, the namespace is finalized.
        let mut ns = namespaces.get(&ctx.namespace).await?;
        if let Some(spec) = ns.spec.as_mut() {
            spec.finalizers = Some(vec![]);
        }
        namespaces
            .replace_subresource("finalize", &ctx.namespace, &Default::default(), &ns)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while namespaces.get_opt(&ctx.namespace).await?.is_some() {
            ensure!(Instant::now() < deadline, "the namespace did not go away");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await;
}

/// Never a silent orphan (issue 12): a client whose registration Secret is gone (deleted while
/// no operator ran, its finalizer removed by hand) cannot be deregistered. Its deletion is not
/// "already gone": the operator names the client left at the AS in a Warning event, a log line
/// and `tpp_operator_clients_left_at_as_total`, and lets the TppClient go.
#[tokio::test]
async fn a_client_whose_registration_token_is_gone_is_named_when_deleted_not_called_already_gone() {
    with_namespace("ratgone", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let id = client_id(&ctx, "payments").await?;
        op.kill();
        let secrets = ctx.api::<Secret>();
        secrets
            .patch(
                "payments-registration",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await?;
        secrets
            .delete("payments-registration", &DeleteParams::default())
            .await?;
        api(&ctx, "TppClient")
            .delete("payments", &DeleteParams::default())
            .await?;
        op.restart().await?;
        wait_gone(&ctx, "payments", Duration::from_secs(60)).await?;
        ensure!(
            sandbox.has_client(&id),
            "the premise: the client is still registered at the AS"
        );
        let events = ctx.api::<Event>().list(&Default::default()).await?;
        let warning = events.items.iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("DeregistrationFailed")
                && e.message.as_deref().unwrap_or("").contains(&id)
        });
        ensure!(
            warning.is_some(),
            "no Warning names client {id}: {:?}",
            events.items.iter().map(|e| &e.message).collect::<Vec<_>>()
        );
        ensure!(
            !events.items.iter().any(|e| e
                .message
                .as_deref()
                .unwrap_or("")
                .contains("already gone")),
            "a client left at the AS was reported already gone"
        );
        let log = op.log();
        ensure!(
            log.lines().any(
                |l| l.contains("client left registered at the authorization server")
                    && l.contains(&id)
            ),
            "no log line names client {id}"
        );
        let metrics = op.metrics().await?;
        ensure!(
            metrics
                .lines()
                .any(|l| l == r#"tpp_operator_clients_left_at_as_total{server="sandbox"} 1"#),
            "the metric counts it:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("left_at_as"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    })
    .await;
}

/// The client names of the operator log's lines holding `marker`, in order (`client=<ns>/<name>`).
fn clients_logged(log: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let (_, rest) = l.split_once(" client=")?;
            let (_, name) = rest.split_whitespace().next()?.split_once('/')?;
            Some(name.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn clients_applied_at_once_queue_for_key_generation_once_and_are_served_in_arrival_order() {
    with_namespace("onboard-queue", |ctx| async move {
        const N: usize = 12;
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        // One crypto worker and five controller slots: one key-generation slot, four for the rest.
        let op = start_operator_with_options(
            &ctx,
            OperatorOptions {
                args: ["--crypto-workers", "1", "--concurrency", "5"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            },
        )
        .await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        wait_condition(&ctx, "AuthorizationServer", "sandbox", "Ready", "True", READY).await?;
        let names: Vec<String> = (0..N).map(|i| format!("q-{i:02}")).collect();
        futures::future::try_join_all(
            names
                .iter()
                .map(|n| apply(&ctx, client(n, "sandbox", json!({})))),
        )
        .await?;
        for n in &names {
            wait_condition(&ctx, "TppClient", n, "Ready", "True", Duration::from_secs(240)).await?;
        }
        let log = op.log();
        let queued = clients_logged(&log, "key generation queued");
        let registered = clients_logged(&log, "reason=Registered");
        ensure!(
            registered.len() == N,
            "{N} registrations expected, the log has {registered:?}"
        );
        ensure!(
            queued.len() >= N / 2,
            "with one slot most of {N} clients applied at once wait: queued {queued:?}"
        );
        // Each waits once, in the admission's queue, and is woken for its turn; before, each
        // retried at random points of the backlog's drain time through the controller's queue.
        // One more look (the safety requeue, 30 s past twice its estimated turn at the
        // earliest) is allowed for a slow machine.
        let mut first_seen = Vec::new();
        for n in &queued {
            if !first_seen.contains(n) {
                first_seen.push(n.clone());
            }
        }
        for n in &first_seen {
            let times = queued.iter().filter(|q| *q == n).count();
            ensure!(
                times <= 2,
                "{n} was queued {times} times: {queued:?}"
            );
        }
        // One slot: key generation, registration and the first token run one client at a time,
        // so registrations follow the queue's arrival order (logged under the queue's lock; the
        // lines above are logged after it, by concurrent reconciles, in any order).
        let arrival = clients_logged(&log, "joined the key-generation queue");
        let registered_queued: Vec<&String> = registered
            .iter()
            .filter(|n| arrival.contains(n))
            .collect();
        let arrival: Vec<&String> = arrival.iter().collect();
        ensure!(
            registered_queued == arrival,
            "queued clients registered out of their arrival order: queued {arrival:?}, registered {registered_queued:?}"
        );
        Ok(())
    })
    .await
}
