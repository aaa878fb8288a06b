//! GitOps on real objects: the Argo CD health checks in `deploy/argocd/` (run in Lua 5.1) and
//! the kstatus rules judge the statuses the operator really writes, from onboarding to Ready,
//! suspended and broken; the operator never writes a TppClient's spec (Argo CD would show it
//! as drift); and the `refresh-discovery` action makes the operator fetch discovery again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::gitops::{KStatus, argo_action, argo_health, kstatus, kstatus_violations};
use e2e::{fixtures::*, with_namespace};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(90);

fn as_json(o: &DynamicObject) -> Result<Value> {
    Ok(serde_json::to_value(o)?)
}

#[tokio::test]
async fn argo_cd_health_follows_a_real_client_from_onboarding_to_ready_and_suspended() {
    with_namespace("argo-health", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        // As sync waves order them (docs/gitops.md): the server is Healthy before the client.
        wait_condition(
            &ctx,
            "AuthorizationServer",
            "sandbox",
            "Ready",
            "True",
            READY,
        )
        .await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        // Every status the operator writes on the way to Ready, judged as Argo CD would.
        let api = api(&ctx, "TppClient");
        let deadline = Instant::now() + READY;
        let mut seen = BTreeSet::new();
        let ready = loop {
            ensure!(
                Instant::now() < deadline,
                "not Ready; health seen: {seen:?}"
            );
            if let Some(o) = api.get_opt("payments").await? {
                let obj = as_json(&o)?;
                let h = argo_health("TppClient", &obj)?;
                let is_ready = condition(&o, "Ready").is_some_and(|c| c["status"] == "True");
                if is_ready {
                    ensure!(h.status == "Healthy", "Ready yet {h:?}");
                    break obj;
                }
                ensure!(
                    h.status == "Progressing",
                    "onboarding shown as {h:?}; status {}",
                    obj["status"]
                );
                // kstatus agrees: never Current before Ready, conventions kept.
                let violations = kstatus_violations(&obj);
                ensure!(
                    violations.is_empty(),
                    "{violations:?}; status {}",
                    obj["status"]
                );
                // Before the operator's first status write kstatus calls any custom resource
                // Current; from then on it must not until Ready.
                ensure!(
                    obj["status"].is_null() || kstatus(&obj).0 != KStatus::Current,
                    "Current while onboarding: {}",
                    obj["status"]
                );
                seen.insert(h.message);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let h = argo_health("TppClient", &ready)?;
        assert_eq!(
            h.message,
            "Reconciled: registered, keyed, certified and tokened"
        );
        let (verdict, message) = kstatus(&ready);
        ensure!(
            verdict == KStatus::Current,
            "kstatus {verdict:?}: {message}"
        );
        ensure!(
            kstatus_violations(&ready).is_empty(),
            "{:?}",
            kstatus_violations(&ready)
        );
        // The AuthorizationServer too.
        let server = as_json(&api_get(&ctx, "AuthorizationServer", "sandbox").await?)?;
        let h = argo_health("AuthorizationServer", &server)?;
        ensure!(h.status == "Healthy", "{h:?}");
        ensure!(kstatus(&server).0 == KStatus::Current);

        // Suspended: Argo CD says so, as soon as the spec says so.
        apply(
            &ctx,
            client("payments", "sandbox", json!({"suspend": true})),
        )
        .await?;
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "Suspended")
        })
        .await?;
        let h = argo_health("TppClient", &as_json(&o)?)?;
        ensure!(h.status == "Suspended", "{h:?}");
        Ok(())
    })
    .await;
}

async fn api_get(ctx: &e2e::TestContext, kind: &str, name: &str) -> Result<DynamicObject> {
    api(ctx, kind)
        .get(name)
        .await
        .with_context(|| format!("{kind}/{name}"))
}

#[tokio::test]
async fn argo_cd_shows_broken_objects_as_degraded_with_the_reason() {
    with_namespace("argo-degraded", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        // An issuer that is not the document's: IssuerMismatch, a permanent failure.
        let wrong = sandbox.issuer().replace("localhost", "127.0.0.1");
        apply(
            &ctx,
            sandbox_server("wrong", &sandbox, json!({"issuer": wrong})),
        )
        .await?;
        let o = wait_condition(
            &ctx,
            "AuthorizationServer",
            "wrong",
            "Ready",
            "False",
            READY,
        )
        .await?;
        let h = argo_health("AuthorizationServer", &as_json(&o)?)?;
        let reason = condition(&o, "Ready")
            .and_then(|c| c["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        ensure!(reason == "IssuerMismatch", "reason {reason}");
        ensure!(
            h.status == "Degraded" && h.message.starts_with("IssuerMismatch: "),
            "{h:?}"
        );
        // kstatus agrees: Stalled, so Failed, not Current (docs/gitops.md).
        let obj = as_json(&o)?;
        ensure!(
            kstatus(&obj).0 == KStatus::Failed,
            "kstatus on an AuthorizationServer with an issuer mismatch: {:?}; status {}",
            kstatus(&obj),
            obj["status"]
        );
        ensure!(
            kstatus_violations(&obj).is_empty(),
            "{:?}",
            kstatus_violations(&obj)
        );
        // A client of that server waits for it: Progressing and InProgress, not Degraded; the
        // server's own health says why.
        apply(&ctx, client("waiting", "wrong", json!({}))).await?;
        let o = wait_for(&ctx, "TppClient", "waiting", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "AuthorizationServerNotReady")
        })
        .await?;
        let obj = as_json(&o)?;
        let h = argo_health("TppClient", &obj)?;
        ensure!(h.status == "Progressing", "{h:?}");
        ensure!(kstatus(&obj).0 == KStatus::InProgress, "{}", obj["status"]);
        // A client whose AuthorizationServer does not exist.
        apply(&ctx, client("orphan", "missing", json!({}))).await?;
        let o = wait_condition(&ctx, "TppClient", "orphan", "Ready", "False", READY).await?;
        let h = argo_health("TppClient", &as_json(&o)?)?;
        ensure!(
            h.status == "Degraded" && h.message.starts_with("AuthorizationServerNotFound: "),
            "{h:?}"
        );
        let obj = as_json(&o)?;
        ensure!(
            kstatus_violations(&obj).is_empty(),
            "{:?}",
            kstatus_violations(&obj)
        );
        ensure!(
            kstatus(&obj).0 != KStatus::Current,
            "kstatus Current: {}",
            obj["status"]
        );
        Ok(())
    })
    .await;
}

/// Whether a managedFields entry owns anything under `spec`.
fn owns_spec(entry: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry) -> bool {
    entry
        .fields_v1
        .as_ref()
        .is_some_and(|f| f.0.get("f:spec").is_some())
}

#[tokio::test]
async fn the_operator_never_writes_a_spec_so_argo_cd_sees_no_drift() {
    with_namespace("no-drift", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        // Exercise every path that writes: a key rotation and a certificate renewal.
        let before = api_get(&ctx, "TppClient", "payments").await?;
        let active = |o: &DynamicObject| {
            o.data["status"]["signingKeys"].as_array().and_then(|ks| {
                ks.iter().find(|k| k["state"] == "Active").map(|k| k["kid"].clone())
            })
        };
        let (kid_before, x5t_before) = (active(&before), before.data["status"]["certificate"]["x5tS256"].clone());
        let verbs = json!({"metadata": {"annotations": {
            "tpp.dev/rotate-keys": "r1", "tpp.dev/renew-certificate": "c1", "tpp.dev/renew-tokens": "t1"}}});
        api(&ctx, "TppClient").patch("payments", &PatchParams::default(), &Patch::Merge(&verbs)).await?;
        wait_for(&ctx, "TppClient", "payments", READY, |o| {
            active(o) != kid_before && o.data["status"]["certificate"]["x5tS256"] != x5t_before
        })
        .await?;
        let o = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        for (kind, name, obj) in [
            ("TppClient", "payments", o),
            ("AuthorizationServer", "sandbox", api_get(&ctx, "AuthorizationServer", "sandbox").await?),
        ] {
            // Only the user's apply and the API server's defaults ever changed the spec.
            ensure!(obj.metadata.generation == Some(1), "{kind} spec written: generation {:?}", obj.metadata.generation);
            let managed = obj.metadata.managed_fields.clone().unwrap_or_default();
            ensure!(managed.iter().any(|m| m.manager.as_deref() == Some("tpp-operator")), "{kind}: no operator write seen");
            for m in &managed {
                if m.manager.as_deref() != Some("e2e-user") {
                    ensure!(!owns_spec(m), "{kind}/{name}: {:?} owns spec fields: {:?}", m.manager, m.fields_v1);
                }
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_refresh_discovery_action_makes_the_operator_fetch_discovery_again() {
    with_namespace("refresh-discovery", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let o = wait_condition(
            &ctx,
            "AuthorizationServer",
            "sandbox",
            "Ready",
            "True",
            READY,
        )
        .await?;
        let discovery = || {
            sandbox
                .counters()
                .requests_to(e2e::sandbox::Endpoint::Discovery)
        };
        let before = discovery();
        ensure!(before >= 1);
        // What Argo CD does: run the action on the live object, patch the difference.
        let acted = argo_action("AuthorizationServer", "refresh-discovery", &as_json(&o)?)?;
        let value = acted["metadata"]["annotations"]["tpp.dev/refresh-discovery"].clone();
        ensure!(value.is_string(), "{acted}");
        let patch = json!({"metadata": {"annotations": {"tpp.dev/refresh-discovery": value}}});
        api(&ctx, "AuthorizationServer")
            .patch("sandbox", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // The document is cached for 15 minutes: only the action explains a new fetch.
        let deadline = Instant::now() + Duration::from_secs(30);
        while discovery() == before {
            ensure!(
                Instant::now() < deadline,
                "no discovery fetch after refresh-discovery"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn argo_cd_shows_a_client_waiting_for_key_approval_as_suspended_with_the_kid() {
    with_namespace("argo-approval", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "manual",
                "sandbox",
                json!({"registration": {"mode": "Static", "clientId": "manual-client"}}),
            ),
        )
        .await?;
        let o = wait_for(&ctx, "TppClient", "manual", READY, |o| {
            condition(o, "SigningKeyReady").is_some_and(|c| c["reason"] == "AwaitingKeyApproval")
                && condition(o, "Ready").is_some_and(|c| c["reason"] == "AwaitingKeyApproval")
        })
        .await?;
        let kid = o.data["status"]["signingKeys"][0]["kid"]
            .as_str()
            .context("kid")?
            .to_owned();
        let h = argo_health("TppClient", &as_json(&o)?)?;
        ensure!(h.status == "Suspended", "{h:?}");
        ensure!(
            h.message.starts_with("AwaitingKeyApproval: ") && h.message.contains(&kid),
            "{h:?}"
        );
        Ok(())
    })
    .await;
}
