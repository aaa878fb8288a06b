//! `spec.consumers.restartTargets` on a real kube-apiserver against the sandbox AS: a
//! Deployment that reads the credentials at start gets a pod template stamp (a rollout
//! restart) once for the credentials it runs with, not on a token refresh, and again after a
//! certificate renewal. The operator runs under the chart's namespaced (least-privilege) RBAC.
//! Pods need not run: the pod template is what a rollout restart changes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    fixtures::*,
    operator::{OperatorOptions, OperatorProcess},
    with_namespace,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Secret};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tpp_operator::{consumers::plan, crd::RestartOn};

const READY: Duration = Duration::from_secs(90);
const STAMP: &str = "restart.tpp.dev/payments";

fn deployment(name: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "example.invalid/reads-credentials-at-start:1",
                        "volumeMounts": [{"name": "tpp", "mountPath": "/var/run/tpp", "readOnly": true}],
                    }],
                    "volumes": [{"name": "tpp", "secret": {"secretName": "payments-credentials"}}],
                },
            },
        },
    }))?)
}

/// The stamp of `payments` on the Deployment's pod template, and the Deployment's generation.
async fn stamp(ctx: &e2e::TestContext, name: &str) -> Result<(Option<String>, i64)> {
    let d = ctx.api::<Deployment>().get(name).await?;
    let stamp = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(STAMP).cloned());
    Ok((stamp, d.metadata.generation.unwrap_or_default()))
}

/// Poll (bounded) until the stamp satisfies `check`.
async fn wait_stamp(
    ctx: &e2e::TestContext,
    name: &str,
    what: &str,
    check: impl Fn(Option<&str>) -> bool,
) -> Result<(Option<String>, i64)> {
    let deadline = Instant::now() + READY;
    loop {
        let s = stamp(ctx, name).await?;
        if check(s.0.as_deref()) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}; stamp is {:?}", s.0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fingerprint part of a stamp (`<fingerprint>@<time>`).
fn fingerprint(stamp: &str) -> Option<String> {
    stamp.rsplit_once('@').map(|(f, _)| f.to_owned())
}

/// What the operator computes for the credentials Secret now (default `restartOn`).
async fn current_fingerprint(ctx: &e2e::TestContext) -> Result<String> {
    let s = ctx.api::<Secret>().get("payments-credentials").await?;
    plan::fingerprint(
        s.data.as_ref().context("data")?,
        &[RestartOn::Certificate, RestartOn::SigningKey],
    )
    .context("no certificate in the credentials")
}

async fn annotate(ctx: &e2e::TestContext, key: &str, value: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api(ctx, "TppClient")
        .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_restart_target_is_restarted_after_a_certificate_renewal_and_not_on_a_token_refresh() {
    with_namespace("consumers", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        // Under the chart's least-privilege RBAC: Secrets and workloads granted in this
        // namespace only.
        let op = OperatorProcess::start(
            ctx.cp,
            &ctx.client,
            OperatorOptions {
                namespaces: vec![ctx.namespace.clone()],
                namespaced_rbac: true,
                ..Default::default()
            },
        )
        .await?;
        ctx.audit_log(op.log_path());
        let log = op.log_path();
        ctx.on_failure_print(move || e2e::process::tail(&log, 12000));
        ctx.api::<Deployment>()
            .create(&PostParams::default(), &deployment("app")?)
            .await?;
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

        // Started before its credentials existed: restarted for them.
        let secrets = ctx.api::<Secret>();
        let deadline = Instant::now() + READY;
        let (first, generation) = loop {
            let current = current_fingerprint(&ctx).await?;
            let (stamp, generation) = stamp(&ctx, "app").await?;
            if let Some(s) = stamp.filter(|s| fingerprint(s) == Some(current)) {
                break (s, generation);
            }
            ensure!(
                Instant::now() < deadline,
                "no stamp for the current credentials"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };

        // A token refresh (the default restartOn leaves tokens out) restarts nothing ...
        let before = secret_text(
            &secrets.get("payments-credentials").await?,
            "accounts.expires_at",
        );
        annotate(&ctx, "tpp.dev/renew-tokens", "1").await?;
        let deadline = Instant::now() + READY;
        while secret_text(
            &secrets.get("payments-credentials").await?,
            "accounts.expires_at",
        ) == before
        {
            ensure!(Instant::now() < deadline, "the token was not refreshed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // ... a certificate renewal does, exactly once (reconciles of one TppClient run one
        // after the other, so a restart for the refresh would have come first and shown in the
        // Deployment's generation).
        let first_cert = secret_text(&secrets.get("payments-credentials").await?, "tls.crt");
        annotate(&ctx, "tpp.dev/renew-certificate", "1").await?;
        let deadline = Instant::now() + READY;
        while secret_text(&secrets.get("payments-credentials").await?, "tls.crt") == first_cert {
            ensure!(Instant::now() < deadline, "the certificate was not renewed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let renewed = current_fingerprint(&ctx).await?;
        ensure!(
            Some(&renewed) != fingerprint(&first).as_ref(),
            "same fingerprint after a renewal"
        );
        let (_, after) = wait_stamp(&ctx, "app", "a stamp for the renewed certificate", |s| {
            s.and_then(fingerprint) == Some(renewed.clone())
        })
        .await?;
        ensure!(
            after == generation + 1,
            "the pod template changed {} times for one renewal and one refresh",
            after - generation
        );
        Ok(())
    })
    .await;
}
