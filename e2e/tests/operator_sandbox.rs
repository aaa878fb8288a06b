//! The operator binary on a real kube-apiserver, under the chart's RBAC, against the sandbox AS
//! over real mTLS: each registration mode reaches Ready and the credentials Secret holds a token
//! the AS introspects as active and bound to the Secret's own certificate.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{fixtures::*, with_namespace};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

/// The token in the Secret is active at the AS, for `client_id`, bound to the Secret's tls.crt.
fn assert_bound_token(sandbox: &e2e::sandbox::RunningSandbox, secret: &k8s_openapi::api::core::v1::Secret, token: &str) -> Result<String> {
    let crt = secret_text(secret, "tls.crt").context("tls.crt")?;
    let access = secret_text(secret, &format!("{token}.access_token")).context("access token")?;
    let client_id = secret_text(secret, "client_id").context("client_id")?;
    let info = sandbox.introspect(&access);
    ensure!(info["active"] == true, "token not active: {info}");
    ensure!(info["client_id"] == client_id.as_str(), "token for another client: {info}");
    ensure!(info["cnf"]["x5t#S256"] == x5t_of_pem(&crt)?.as_str(), "token not bound to the Secret's certificate: {info}");
    for key in ["tls.key", "ca.crt", "issuer", "token_endpoint", "signing.key", "signing.kid", &format!("{token}.expires_at")] {
        ensure!(secret_text(secret, key).is_some(), "credentials Secret lacks {key}");
    }
    ensure!(secret.type_.as_deref() == Some("kubernetes.io/tls"));
    Ok(client_id)
}

#[tokio::test]
async fn dynamic_registration_with_private_key_jwt_becomes_ready_with_a_bound_token() {
    with_namespace("dyn", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let obj = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let secret = credentials(&ctx, "payments").await?;
        let client_id = assert_bound_token(&sandbox, &secret, "accounts")?;
        assert_eq!(obj.data["status"]["clientId"], client_id.as_str());
        assert_eq!(sandbox.counters().registrations_created, 1);
        // The registration answer and the keys are persisted for the operator only.
        let secrets = ctx.api::<k8s_openapi::api::core::v1::Secret>();
        let reg = secrets.get("payments-registration").await?;
        assert!(secret_text(&reg, "registration_access_token").is_some());
        assert!(secrets.get("payments-keys").await.is_ok());
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn static_client_provisioned_out_of_band_publishes_its_jwks_and_becomes_ready() {
    with_namespace("static", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        // The AS fetches our JWKS from the operator's admin server (jwks_uri), as OFM does.
        let jwks_uri = format!("{}/jwks/{}/payments", op.admin_url, ctx.namespace);
        let client_id = sandbox.provision_client(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
            "scope": "accounts",
        }))?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({"registration": {"mode": "Static", "clientId": client_id, "jwksUri": jwks_uri}}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let secret = credentials(&ctx, "payments").await?;
        assert_eq!(assert_bound_token(&sandbox, &secret, "accounts")?, client_id);
        assert_eq!(sandbox.counters().registrations_created, 0, "Static must not register");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn hub_onboarding_posts_once_and_becomes_ready() {
    with_namespace("hub", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        let jwks_uri = format!("{}/jwks/{}/hub", op.admin_url, ctx.namespace);
        let client_id = sandbox.provision_client(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
            "scope": "accounts",
        }))?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("hub", "sandbox", json!({"registration": {"mode": "HubOnboarding", "clientId": client_id, "jwksUri": jwks_uri}}))).await?;
        wait_condition(&ctx, "TppClient", "hub", "Ready", "True", READY).await?;
        let secret = credentials(&ctx, "hub").await?;
        assert_bound_token(&sandbox, &secret, "accounts")?;
        let onboarded = sandbox.onboardings();
        assert_eq!(onboarded.len(), 1, "exactly one onboarding POST");
        Ok(())
    })
    .await;
}
