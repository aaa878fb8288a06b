//! Self-test before a switch (docs/reliability.md): a new signing key or transport certificate
//! becomes what tokens are minted with only after the AS accepted a token minted with it. The
//! sandbox AS refuses the new material (`RunningSandbox::refuse_tokens_for`); the client keeps
//! refreshing with the old material, says why in a condition, and switches once the AS
//! accepts. Real kube-apiserver and etcd, the sandbox AS over mTLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{fixtures::*, pki::self_signed_client, with_namespace};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{Patch, PatchParams};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);
/// Tokens of 9 s: refreshed every ~6 s, so "the old material keeps working" is seen within
/// seconds.
const TOKEN_LIFETIME: Duration = Duration::from_secs(9);

fn reason_of(o: &kube::api::DynamicObject, type_: &str) -> String {
    condition(o, type_)
        .and_then(|c| c["reason"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Wait until the credentials Secret of `name` holds an access token other than `old`, and
/// return it with the Secret.
async fn next_token(ctx: &e2e::TestContext, name: &str, old: &str) -> Result<(String, Secret)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let s = credentials(ctx, name).await?;
        let token = secret_text(&s, "accounts.access_token").unwrap_or_default();
        if !token.is_empty() && token != old {
            return Ok((token, s));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("no new token in {name}-credentials within 60 s")
}

#[tokio::test]
async fn a_signing_key_the_as_refuses_is_not_activated_until_it_accepts_a_token_signed_with_it() {
    with_namespace("selftest-key", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = TOKEN_LIFETIME).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        // A propagation delay long enough for the test to see the new kid and refuse it first.
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"signingKey": {"rotation": {"propagationDelay": "20s", "retireAfter": "5s"}}}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let old_kid = secret_text(&credentials(&ctx, "payments").await?, "signing.kid")
            .context("signing.kid")?;
        api(&ctx, "TppClient")
            .patch(
                "payments",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tpp.dev/rotate-keys": "1"}}})),
            )
            .await?;
        let rotating = wait_for(&ctx, "TppClient", "payments", Duration::from_secs(30), |o| {
            o.data["status"]["signingKeys"]
                .as_array()
                .is_some_and(|keys| keys.iter().any(|k| k["kid"] != old_kid.as_str() && k["state"] == "Published"))
        })
        .await?;
        let new_kid = rotating.data["status"]["signingKeys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] != old_kid.as_str()))
            .and_then(|k| k["kid"].as_str())
            .context("the new kid")?
            .to_owned();
        ensure!(sandbox.refuse_tokens_for(&new_kid));

        // The propagation delay passes; the self-test is refused: the old key stays active.
        let refused = wait_for(&ctx, "TppClient", "payments", Duration::from_secs(60), |o| {
            reason_of(o, "SigningKeyReady") == "SelfTestRefused"
        })
        .await?;
        let message = condition(&refused, "SigningKeyReady").unwrap_or_default()["message"].to_string();
        ensure!(message.contains(&new_kid) && message.contains(&old_kid), "{message}");
        ensure!(reason_of(&refused, "Ready") == "Reconciled", "still Ready: {}", refused.data["status"]);
        let refusals = sandbox.counters().requests_with(e2e::sandbox::Endpoint::Token, "401");
        ensure!(refusals >= 1, "the AS refused the self-test ({refusals} refusals)");

        // Tokens keep being refreshed, signed with the old key, while the switch waits.
        let held = secret_text(&credentials(&ctx, "payments").await?, "accounts.access_token").unwrap_or_default();
        let (token, secret) = next_token(&ctx, "payments", &held).await?;
        ensure!(secret_text(&secret, "signing.kid").as_deref() == Some(old_kid.as_str()));
        ensure!(sandbox.introspect(&token)["active"] == true, "the refreshed token is live");
        let still = api(&ctx, "TppClient").get("payments").await?;
        ensure!(reason_of(&still, "SigningKeyReady") == "SelfTestRefused", "{}", still.data["status"]);

        // Accepted: the next self-test activates the new key.
        sandbox.accept_tokens_for(&new_kid);
        wait_for(&ctx, "TppClient", "payments", Duration::from_secs(120), |o| {
            reason_of(o, "SigningKeyReady") == "KeyActive"
        })
        .await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = credentials(&ctx, "payments").await?;
            if secret_text(&s, "signing.kid").as_deref() == Some(new_kid.as_str()) {
                break;
            }
            ensure!(std::time::Instant::now() < deadline, "the new key is not mounted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await;
}

fn tls_secret(name: &str, pair: &e2e::pki::CertPair) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_owned(),
                    ByteString(pair.cert_pem.clone().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(pair.key_pem.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_certificate_the_as_refuses_does_not_replace_the_one_tokens_are_bound_to() {
    with_namespace("selftest-cert", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = TOKEN_LIFETIME).await?;
        let _op = start_operator(&ctx).await?;
        let secrets = ctx.api::<Secret>();
        let old = self_signed_client(&[(rcgen::DnType::CommonName, "payments")])?;
        let new = self_signed_client(&[(rcgen::DnType::CommonName, "payments")])?;
        let (old_x5t, new_x5t) = (x5t_of_pem(&old.cert_pem)?, x5t_of_pem(&new.cert_pem)?);
        let ssa = PatchParams::apply("e2e-user").force();
        secrets.patch("tls", &ssa, &Patch::Apply(&tls_secret("tls", &old))).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"transportCertificate": {"source": "SecretRef", "secretRef": {"name": "tls"}}}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;

        // The user replaces the certificate; the bank does not accept it yet.
        ensure!(sandbox.refuse_tokens_for(&new_x5t));
        secrets.patch("tls", &ssa, &Patch::Apply(&tls_secret("tls", &new))).await?;
        let refused = wait_for(&ctx, "TppClient", "payments", Duration::from_secs(60), |o| {
            reason_of(o, "TransportCertificateReady") == "SelfTestRefused"
        })
        .await?;
        ensure!(reason_of(&refused, "Ready") == "Reconciled", "still Ready: {}", refused.data["status"]);

        // Refreshes go on with the certificate the tokens are bound to, which stays mounted.
        let held = secret_text(&credentials(&ctx, "payments").await?, "accounts.access_token").unwrap_or_default();
        for _ in 0..2 {
            let (token, secret) = next_token(&ctx, "payments", &held).await?;
            let mounted = x5t_of_pem(&secret_text(&secret, "tls.crt").unwrap_or_default())?;
            ensure!(mounted == old_x5t, "the old certificate stays beside its tokens");
            let view = sandbox.introspect(&token);
            ensure!(view["cnf"]["x5t#S256"] == old_x5t.as_str(), "bound to the old certificate: {view}");
        }

        // Accepted: the next self-test moves certificate and tokens together.
        sandbox.accept_tokens_for(&new_x5t);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let s = credentials(&ctx, "payments").await?;
            let mounted = x5t_of_pem(&secret_text(&s, "tls.crt").unwrap_or_default())?;
            if mounted == new_x5t {
                let token = secret_text(&s, "accounts.access_token").unwrap_or_default();
                let view = sandbox.introspect(&token);
                ensure!(view["cnf"]["x5t#S256"] == new_x5t.as_str(), "bound to the new certificate: {view}");
                break;
            }
            ensure!(std::time::Instant::now() < deadline, "never switched to the new certificate");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_for(&ctx, "TppClient", "payments", Duration::from_secs(30), |o| {
            reason_of(o, "TransportCertificateReady") == "CertificateIssued"
        })
        .await?;
        Ok(())
    })
    .await;
}
