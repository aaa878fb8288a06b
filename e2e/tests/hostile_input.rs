//! Objects the API server accepts but this operator cannot read (docs/security.md § Hostile
//! input). This file changes the CRDs of its control plane (a newer CRD than the operator's,
//! as after a CRD upgrade without the operator's), so it runs on a control plane of its own:
//! one test binary, one control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use e2e::{fixtures::*, with_namespace};
use k8s_openapi::{
    api::core::v1::Event,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

/// Let `crd`'s schema accept `value` for the enum at `path` (a JSON pointer below the version's
/// `openAPIV3Schema`), as a newer CRD would.
async fn widen_enum(ctx: &e2e::TestContext, crd: &str, path: &str, value: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let patch = json!([{
        "op": "add",
        "path": format!("/spec/versions/0/schema/openAPIV3Schema{path}/enum/-"),
        "value": value,
    }]);
    crds.patch(
        crd,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(patch)?),
    )
    .await?;
    Ok(())
}

/// Apply `manifest` until the API server's validation has caught up with a changed CRD.
async fn apply_when_accepted(ctx: &e2e::TestContext, manifest: serde_json::Value) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match apply(ctx, manifest.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not accepted yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test]
async fn objects_this_operator_cannot_read_are_reported_and_every_other_client_carries_on() {
    with_namespace("undecodable", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let mut op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;

        // A newer CRD: values this operator's types do not know.
        widen_enum(
            &ctx,
            "tppclients.tpp.dev",
            "/properties/spec/properties/registration/properties/mode",
            "FromTheFuture",
        )
        .await?;
        widen_enum(
            &ctx,
            "authorizationservers.tpp.dev",
            "/properties/spec/properties/profile",
            "FAPI3",
        )
        .await?;
        apply_when_accepted(
            &ctx,
            client(
                "hostile",
                "sandbox",
                json!({"registration": {"mode": "FromTheFuture"}}),
            ),
        )
        .await?;
        apply_when_accepted(
            &ctx,
            sandbox_server("hostile-as", &sandbox, json!({"profile": "FAPI3"})),
        )
        .await?;

        // A restart lists every object again: the unreadable ones are left out, with a Warning
        // each, and the rest is reconciled by the new process.
        op.kill();
        op.restart().await?;
        op.wait_reconciled_ready(&ctx.namespace, "payments", "sandbox", READY)
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = ctx.api::<Event>().list(&Default::default()).await?;
            let warned = |name: &str, value: &str| {
                events.items.iter().any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some("InvalidSpec")
                        && e.involved_object.name.as_deref() == Some(name)
                        && e.message.as_deref().is_some_and(|m| m.contains(value))
                })
            };
            if warned("hostile", "FromTheFuture") && warned("hostile-as", "FAPI3") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "no InvalidSpec Warning names each unreadable object and its value"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(op.is_running(), "the operator exited");
        Ok(())
    })
    .await;
}
