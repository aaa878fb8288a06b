//! The operator binary on a real kube-apiserver, under the chart's RBAC, against the sandbox AS
//! over real mTLS: each registration mode reaches Ready and the credentials Secret holds a token
//! the AS introspects as active and bound to the Secret's own certificate.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{fixtures::*, with_namespace};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);

/// The token in the Secret is active at the AS, for `client_id`, bound to the Secret's tls.crt.
fn assert_bound_token(
    sandbox: &e2e::sandbox::RunningSandbox,
    secret: &k8s_openapi::api::core::v1::Secret,
    token: &str,
) -> Result<String> {
    let crt = secret_text(secret, "tls.crt").context("tls.crt")?;
    let access = secret_text(secret, &format!("{token}.access_token")).context("access token")?;
    let client_id = secret_text(secret, "client_id").context("client_id")?;
    let info = sandbox.introspect(&access);
    ensure!(info["active"] == true, "token not active: {info}");
    ensure!(
        info["client_id"] == client_id.as_str(),
        "token for another client: {info}"
    );
    ensure!(
        info["cnf"]["x5t#S256"] == x5t_of_pem(&crt)?.as_str(),
        "token not bound to the Secret's certificate: {info}"
    );
    for key in [
        "tls.key",
        "ca.crt",
        "issuer",
        "token_endpoint",
        "signing.kid",
        &format!("{token}.expires_at"),
    ] {
        ensure!(
            secret_text(secret, key).is_some(),
            "credentials Secret lacks {key}"
        );
    }
    ensure!(
        secret_text(secret, "signing.key").is_none(),
        "the private signing key is in the credentials Secret without credentials.includeSigningKey"
    );
    ensure!(secret.type_.as_deref() == Some("kubernetes.io/tls"));
    Ok(client_id)
}

#[tokio::test]
async fn dynamic_registration_with_private_key_jwt_becomes_ready_with_a_bound_token() {
    with_namespace("dyn", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let obj = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        // The README's `kubectl wait` works on the conditions the operator writes.
        let waited = std::process::Command::new(e2e::control_plane::binaries_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&ctx.cp.admin_kubeconfig_path)
            .args(["-n", &ctx.namespace, "wait", "--for=condition=Ready"])
            .args(["tppclient/payments", "--timeout=30s"])
            .output()?;
        ensure!(
            waited.status.success(),
            "kubectl wait: {}",
            String::from_utf8_lossy(&waited.stderr)
        );
        // The admin server: ready, and metrics that an alert can use.
        let http = reqwest::Client::new();
        ensure!(
            http.get(format!("{}/readyz", op.admin_url))
                .send()
                .await?
                .status()
                .is_success()
        );
        let metrics = op.metrics().await?;
        let earliest = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tpp_operator_token_expiry_earliest_timestamp_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .context("token expiry gauge")?;
        ensure!(
            earliest > jiff::Timestamp::now().as_second() as f64,
            "the earliest token expiry is in the future: {earliest}"
        );
        ensure!(
            metrics.contains(
                r#"tpp_operator_as_requests_total{server="sandbox",endpoint="token",outcome="ok"}"#
            ),
            "AS calls counted by server and outcome"
        );
        // One series per client per kind, labelled namespace, name, server.
        let labels = format!(
            r#"{{namespace="{}",name="payments",server="sandbox"}}"#,
            ctx.namespace
        );
        ensure!(
            metrics
                .lines()
                .any(|l| l == format!("tpp_operator_client_ready{labels} 1")),
            "client_ready{labels} 1 in:\n{metrics}"
        );
        for kind in [
            "token_expiry_timestamp_seconds",
            "certificate_not_after_timestamp_seconds",
            "signing_key_expiry_timestamp_seconds",
        ] {
            let at = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("tpp_operator_{kind}{labels} ")))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .with_context(|| format!("{kind}{labels}"))?;
            ensure!(
                at > jiff::Timestamp::now().as_second() as f64,
                "{kind} is in the future: {at}"
            );
        }
        ensure!(
            !metrics.contains(
                &secret_text(
                    &credentials(&ctx, "payments").await?,
                    "accounts.access_token"
                )
                .unwrap_or_default()
            ),
            "a token in /metrics"
        );
        let secret = credentials(&ctx, "payments").await?;
        let client_id = assert_bound_token(&sandbox, &secret, "accounts")?;
        assert_eq!(obj.data["status"]["clientId"], client_id.as_str());
        assert_eq!(sandbox.counters().registrations_created, 1);
        // The registration answer and the keys are persisted for the operator only.
        let secrets = ctx.api::<k8s_openapi::api::core::v1::Secret>();
        let reg = secrets.get("payments-registration").await?;
        assert!(secret_text(&reg, "registration_access_token").is_some());
        assert!(secrets.get("payments-keys").await.is_ok());
        // Nothing secret in the operator's log, the events or the status.
        let log = op.log();
        let rat = secret_text(&reg, "registration_access_token").unwrap_or_default();
        let token = secret_text(&secret, "accounts.access_token").unwrap_or_default();
        let events = serde_json::to_string(
            &ctx.api::<k8s_openapi::api::core::v1::Event>()
                .list(&Default::default())
                .await?
                .items,
        )?;
        for (what, text) in [
            ("log", &log),
            ("events", &events),
            ("status", &obj.data["status"].to_string()),
        ] {
            ensure!(
                !text.contains(&rat) && !text.contains(&token) && !text.contains("PRIVATE KEY"),
                "secret material in the operator's {what}"
            );
        }
        Ok(())
    })
    .await;
}

/// Provision `name` at the sandbox out of band, with the operator's served JWKS as `jwks_uri`
/// (as OFM onboarding does); returns (client id, jwks_uri). A `hub` client (`hub_onboarding`)
/// gets tokens from the strict sandbox only over a certificate the hub onboarded
/// (`bind_onboarding`), so its HubOnboarding TppClient must onboard each certificate first.
fn provision_out_of_band(
    ctx: &e2e::TestContext,
    sandbox: &e2e::sandbox::RunningSandbox,
    op: &e2e::operator::OperatorProcess,
    name: &str,
    hub: bool,
) -> Result<(String, String)> {
    let jwks_uri = format!("{}/jwks/{}/{name}", op.jwks_url, ctx.namespace);
    let client_id = sandbox.provision_client(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": jwks_uri, "scope": "accounts", "hub_onboarding": hub}))?;
    Ok((client_id, jwks_uri))
}

#[tokio::test]
async fn static_client_provisioned_out_of_band_publishes_its_jwks_and_becomes_ready() {
    with_namespace("static", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        // The AS fetches our JWKS from the operator's JWKS server (jwks_uri), as OFM does.
        let (client_id, jwks_uri) = provision_out_of_band(&ctx, &sandbox, &op, "payments", false)?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({"registration": {"mode": "Static", "clientId": client_id, "jwksUri": jwks_uri}}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let secret = credentials(&ctx, "payments").await?;
        assert_eq!(assert_bound_token(&sandbox, &secret, "accounts")?, client_id);
        assert_eq!(sandbox.counters().registrations_created, 0, "Static must not register");

        // Deleted (deletionPolicy Delete, the default): the operator held the finalizer, revokes
        // the token it minted, and leaves the client, which it did not register, at the AS.
        let o = api(&ctx, "TppClient").get("payments").await?;
        anyhow::ensure!(
            o.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == "tpp.dev/deregistration")),
            "a Static client with tokens to revoke holds the finalizer"
        );
        api(&ctx, "TppClient").delete("payments", &Default::default()).await?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while api(&ctx, "TppClient").get_opt("payments").await?.is_some() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "the Static client was not deleted");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let revoked = sandbox.counters().requests_with(e2e::sandbox::Endpoint::Revocation, "200");
        assert_eq!(revoked, 1, "the one token of the deleted Static client is revoked");
        assert!(sandbox.has_client(&client_id), "a Static client stays registered at the AS");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn hub_onboarding_posts_once_and_becomes_ready() {
    with_namespace("hub", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        let (client_id, jwks_uri) = provision_out_of_band(&ctx, &sandbox, &op, "hub", true)?;
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

#[tokio::test]
async fn a_static_client_without_jwks_uri_waits_for_key_approval_then_becomes_ready() {
    with_namespace("approve", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("manual", "sandbox", json!({"registration": {"mode": "Static", "clientId": "manual-client"}}))).await?;
        // The key waits: a human must upload the JWKS to the AS first (OFM's manual onboarding).
        let o = wait_for(&ctx, "TppClient", "manual", READY, |o| condition(o, "SigningKeyReady").is_some_and(|c| c["reason"] == "AwaitingKeyApproval")).await?;
        let msg = condition(&o, "SigningKeyReady").map(|c| c["message"].to_string()).unwrap_or_default();
        ensure!(msg.contains("tpp.dev/approved-kids"), "the condition says what to do: {msg}");
        let cm = ctx.api::<k8s_openapi::api::core::v1::ConfigMap>().get("manual-jwks").await?;
        let jwks: serde_json::Value = serde_json::from_str(cm.data.as_ref().and_then(|d| d.get("jwks.json")).context("jwks")?)?;
        let kid = jwks["keys"][0]["kid"].as_str().context("kid")?.to_owned();
        ensure!(msg.contains(&kid), "the condition names the kid: {msg}");
        ensure!(sandbox.counters().requests_to(e2e::sandbox::Endpoint::Token) == 0, "no token before approval");
        // The human uploads the JWKS, then approves.
        sandbox.provision_client(json!({"client_id": "manual-client", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "scope": "accounts"}))?;
        let patch = json!({"metadata": {"annotations": {"tpp.dev/approved-kids": kid}}});
        api(&ctx, "TppClient").patch("manual", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
        wait_condition(&ctx, "TppClient", "manual", "Ready", "True", READY).await?;
        assert_bound_token(&sandbox, &credentials(&ctx, "manual").await?, "accounts")?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_encryption_key_is_published_beside_the_signing_key() {
    with_namespace("enc", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            client("payments", "sandbox", json!({"encryptionKey": {}})),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let cm = ctx
            .api::<k8s_openapi::api::core::v1::ConfigMap>()
            .get("payments-jwks")
            .await?;
        let jwks: serde_json::Value = serde_json::from_str(
            cm.data
                .as_ref()
                .and_then(|d| d.get("jwks.json"))
                .context("jwks")?,
        )?;
        let keys = jwks["keys"].as_array().context("keys")?;
        ensure!(
            keys.iter()
                .any(|k| k["use"] == "enc" && k["alg"] == "RSA-OAEP-256"),
            "no encryption key published: {jwks}"
        );
        ensure!(
            keys.iter()
                .any(|k| k["use"] == "sig" && k["alg"] == "PS256"),
            "no signing key published: {jwks}"
        );
        ensure!(
            keys.iter().all(|k| k.get("d").is_none()),
            "private material in the public JWKS"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_token_audience_reaches_the_as_as_the_rfc_8707_resource() {
    with_namespace("resource", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let resource = "https://rs.sandbox.example/open-banking";
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"tokens": [
                    {"name": "accounts", "scope": "accounts", "audience": resource},
                    {"name": "plain", "scope": "accounts"},
                ]}),
            ),
        )
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let secret = credentials(&ctx, "payments").await?;
        assert_bound_token(&sandbox, &secret, "accounts")?;
        let introspect = |token: &str| -> Result<serde_json::Value> {
            let access = secret_text(&secret, &format!("{token}.access_token"))
                .with_context(|| format!("{token} access token"))?;
            Ok(sandbox.introspect(&access))
        };
        let with = introspect("accounts")?;
        ensure!(with["aud"] == resource, "aud is not the resource: {with}");
        let without = introspect("plain")?;
        ensure!(
            without.get("aud").is_none(),
            "a token without audience asked for a resource: {without}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_token_with_revoke_replaced_has_each_replaced_token_revoked_and_one_without_none() {
    use e2e::sandbox::Endpoint;
    with_namespace("revoke-replaced", |ctx| async move {
        let sandbox =
            start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(10)).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let minted = || sandbox.counters().requests_with(Endpoint::Token, "200");
        let revocations = || sandbox.counters().requests_to(Endpoint::Revocation);

        // Without the flag: tokens are replaced, none is revoked.
        let first = minted();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while minted() < first + 2 {
            ensure!(std::time::Instant::now() < deadline, "no two refreshes in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(revocations() == 0, "{} revocations without revokeReplaced", revocations());

        // With it: every refresh from now on revokes the token it replaced (a refresh already
        // under way when the spec changed may not), each answered 200.
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"tokens": [{"name": "accounts", "scope": "accounts", "revokeReplaced": true}]}),
            ),
        )
        .await?;
        let from = minted();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let (m, r) = (minted() - from, revocations());
            if r >= 3 && (r == m || r + 1 == m) {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "{m} tokens minted and {r} revocations since revokeReplaced was set"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(
            sandbox.counters().requests_with(Endpoint::Revocation, "200") == revocations(),
            "every revocation is authenticated and answered 200"
        );
        // The token in the Secret is never a revoked one: it is active at the AS. (A refresh
        // between reading the Secret and asking the AS revokes what was read, after writing its
        // successor: read again, a bounded number of times.)
        let mut last = None;
        for _ in 0..5 {
            let secret = credentials(&ctx, "payments").await?;
            match assert_bound_token(&sandbox, &secret, "accounts") {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
    })
    .await;
}

/// The strict sandbox (what `start_sandbox` starts) refuses what a lenient AS lets through, and
/// the operator says so instead of reaching Ready: a client assertion whose `aud` is the token
/// endpoint (`clientAssertion.audience: TokenEndpoint`; FAPI 2.0 wants the issuer) and an
/// RFC 7591 registration without the initial access token. A correct client on the same AS
/// becomes Ready, so the refusals are the strict checks and nothing else.
#[tokio::test]
async fn the_strict_sandbox_refuses_a_token_endpoint_audience_and_a_registration_without_the_initial_access_token()
 {
    with_namespace("strict", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(
            &ctx,
            sandbox_server(
                "token-aud",
                &sandbox,
                json!({"clientAssertion": {"audience": "TokenEndpoint"}}),
            ),
        )
        .await?;
        apply(
            &ctx,
            sandbox_server(
                "no-iat",
                &sandbox,
                json!({"registration": {"initialAccessTokenRef": null}}),
            ),
        )
        .await?;
        apply(&ctx, client("correct", "sandbox", json!({}))).await?;
        apply(&ctx, client("wrong-aud", "token-aud", json!({}))).await?;
        apply(&ctx, client("without-iat", "no-iat", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "correct", "Ready", "True", READY).await?;
        let refused = |reason: &'static str| {
            move |o: &kube::api::DynamicObject| {
                condition(o, "Ready")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == reason)
            }
        };
        let o = wait_for(
            &ctx,
            "TppClient",
            "wrong-aud",
            READY,
            refused("InvalidClient"),
        )
        .await?;
        ensure!(
            credentials(&ctx, "wrong-aud")
                .await
                .ok()
                .and_then(|s| secret_text(&s, "accounts.access_token"))
                .is_none(),
            "no token for a client whose assertions the AS refuses: {}",
            o.data["status"]
        );
        ensure!(
            sandbox.counters().rejects_for("bad_audience") >= 1,
            "refused for its aud: {:?}",
            sandbox.counters().rejects
        );
        let o = wait_for(
            &ctx,
            "TppClient",
            "without-iat",
            READY,
            refused("RegistrationRejected"),
        )
        .await?;
        let registered = condition(&o, "Registered").unwrap_or_default();
        ensure!(
            registered["status"] == "False"
                && registered["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid_token")),
            "Registered carries the AS's error: {registered}"
        );
        ensure!(
            sandbox.counters().rejects_for("bad_initial_access_token") >= 1,
            "refused for the missing token: {:?}",
            sandbox.counters().rejects
        );
        ensure!(
            sandbox.counters().registrations_created == 2,
            "`correct` and `wrong-aud` registered, `without-iat` never: {}",
            sandbox.counters().registrations_created
        );
        Ok(())
    })
    .await;
}

/// `tls_client_auth` against the strict sandbox, which trusts only its client CA: a TppClient
/// with a certificate that CA issued (`apply_ca_issued_transport_secret`) becomes Ready with a
/// bound token; one with a self-signed certificate of the same subject is refused with a clear
/// reason and gets no token.
#[tokio::test]
async fn tls_client_auth_with_a_certificate_of_the_client_ca_becomes_ready_and_a_self_signed_look_alike_is_refused()
 {
    with_namespace("tls-auth", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        let subject = [
            (rcgen::DnType::CommonName, "payments-mtls"),
            (rcgen::DnType::OrganizationName, "Example TPP"),
        ];
        apply_ca_issued_transport_secret(&ctx, "issued", &subject).await?;
        apply_tls_secret(&ctx, "lookalike", &e2e::pki::self_signed_client(&subject)?).await?;
        let spec = |secret: &str| {
            json!({
                "authentication": {"method": "tls_client_auth", "subjectDn": "CN=payments-mtls,O=Example TPP"},
                "transportCertificate": {"source": "SecretRef", "secretRef": {"name": secret}},
            })
        };
        apply(&ctx, client("genuine", "sandbox", spec("issued"))).await?;
        apply(&ctx, client("impostor", "sandbox", spec("lookalike"))).await?;
        wait_condition(&ctx, "TppClient", "genuine", "Ready", "True", READY).await?;
        assert_bound_token(&sandbox, &credentials(&ctx, "genuine").await?, "accounts")?;
        let o = wait_for(&ctx, "TppClient", "impostor", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["status"] == "False" && c["reason"] == "InvalidClient")
        })
        .await?;
        ensure!(
            credentials(&ctx, "impostor").await.ok().and_then(|s| secret_text(&s, "accounts.access_token")).is_none(),
            "no token for a certificate outside the client CA: {}",
            o.data["status"]
        );
        ensure!(
            sandbox.counters().rejects_for("certificate_not_trusted") >= 1,
            "refused for its chain: {:?}",
            sandbox.counters().rejects
        );
        Ok(())
    })
    .await;
}

/// A hub client of the strict sandbox gets tokens only over a certificate the hub onboarded
/// (`bind_onboarding`): after a certificate renewal the operator onboards the new certificate
/// before it mints with it, so the Secret's token is bound to the new certificate and the hub
/// saw exactly one onboarding per certificate.
#[tokio::test]
async fn a_hub_clients_renewed_certificate_is_onboarded_before_tokens_are_minted_with_it() {
    with_namespace("hub-renew", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let op = start_operator(&ctx).await?;
        let (client_id, jwks_uri) = provision_out_of_band(&ctx, &sandbox, &op, "hub", true)?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("hub", "sandbox", json!({"registration": {"mode": "HubOnboarding", "clientId": client_id, "jwksUri": jwks_uri}}))).await?;
        wait_condition(&ctx, "TppClient", "hub", "Ready", "True", READY).await?;
        let first = x5t_of_pem(&secret_text(&credentials(&ctx, "hub").await?, "tls.crt").context("tls.crt")?)?;
        let patch = json!({"metadata": {"annotations": {"tpp.dev/renew-certificate": "1"}}});
        api(&ctx, "TppClient").patch("hub", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
        let deadline = std::time::Instant::now() + READY;
        let renewed = loop {
            let secret = credentials(&ctx, "hub").await?;
            let x5t = x5t_of_pem(&secret_text(&secret, "tls.crt").context("tls.crt")?)?;
            if x5t != first {
                assert_bound_token(&sandbox, &secret, "accounts")?;
                break x5t;
            }
            ensure!(std::time::Instant::now() < deadline, "the certificate was not renewed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let onboarded: Vec<String> = sandbox.onboardings().into_iter().map(|o| o.x5t_s256).collect();
        ensure!(onboarded == [first, renewed], "one onboarding per certificate, in order: {onboarded:?}");
        Ok(())
    })
    .await;
}
