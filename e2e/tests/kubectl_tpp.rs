//! `kubectl tpp` as a user runs it: the real `kubectl` (built with the control plane) finds the
//! `kubectl-tpp` binary on PATH and runs it against the e2e control plane, with the operator
//! and the sandbox AS running. `make test-e2e` builds the binary (`cargo build -p kubectl-tpp`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{fixtures::*, with_namespace};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(90);

/// The folder holding `kubectl-tpp`: `$KUBECTL_TPP_BIN`'s, else beside the test binary's
/// folder (`target/<profile>/`, the test being in `target/<profile>/deps/`).
fn plugin_dir() -> Result<PathBuf> {
    let bin = match std::env::var_os("KUBECTL_TPP_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("kubectl-tpp"))
            .unwrap_or_default(),
    };
    ensure!(
        bin.is_file(),
        "{} not found: run `cargo build -p kubectl-tpp` (make test-e2e does)",
        bin.display()
    );
    Ok(bin.parent().map(PathBuf::from).unwrap_or_default())
}

/// What one `kubectl tpp ...` run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `kubectl tpp <args> -n <test namespace>` with the admin kubeconfig; stdin is empty.
async fn kubectl_tpp(ctx: &e2e::TestContext, args: &[&str]) -> Result<Run> {
    let kubectl = e2e::control_plane::binaries_dir().join("kubectl");
    let path = format!(
        "{}:{}",
        plugin_dir()?.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&kubectl)
            .arg("tpp")
            .args(args)
            .args(["-n", &ctx.namespace])
            .env("KUBECONFIG", &ctx.cp.admin_kubeconfig_path)
            .env("PATH", path)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("kubectl tpp timed out")?
    .with_context(|| format!("run {}", kubectl.display()))?;
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ kubectl tpp {}\n{run}", args.join(" "));
    Ok(run)
}

fn active_kid(o: &kube::api::DynamicObject) -> Option<String> {
    o.data["status"]["signingKeys"]
        .as_array()?
        .iter()
        .find(|k| k["use"] == "sig" && k["state"] == "Active")
        .and_then(|k| k["kid"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn status_renew_rotate_renew_certificate_and_jwks_on_a_live_client() {
    with_namespace("plugin", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        // signing.key is in the Secret only when asked: asked here, to check status never prints it.
        apply(
            &ctx,
            client(
                "payments",
                "sandbox",
                json!({"credentials": {"includeSigningKey": true}}),
            ),
        )
        .await?;
        let obj = wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let client_id = obj.data["status"]["clientId"]
            .as_str()
            .context("clientId")?
            .to_owned();
        let x5t = obj.data["status"]["certificate"]["x5tS256"]
            .as_str()
            .context("x5t")?
            .to_owned();
        let kid = active_kid(&obj).context("active kid")?;

        // status: what the client is, and no secret.
        let st = kubectl_tpp(&ctx, &["status", "payments"]).await?;
        ensure!(st.code == 0, "{st}");
        for want in [
            format!(
                "TppClient {}/payments: Dynamic registration, private_key_jwt",
                ctx.namespace
            ),
            "Ready:        True (Reconciled)".to_owned(),
            format!("Client ID:    {client_id}"),
            "Server:       Ready (Reconciled)".to_owned(),
            format!("Issuer:       {}", sandbox.issuer()),
            format!("x5t#S256:     {x5t}"),
            kid.clone(),
            "Active (signs)".to_owned(),
            "Tokens (Secret payments-credentials):".to_owned(),
            "NEXT REFRESH".to_owned(),
        ] {
            ensure!(st.stdout.contains(&want), "status lacks {want:?}:\n{st}");
        }
        let secret = credentials(&ctx, "payments").await?;
        for key in ["accounts.access_token", "tls.key", "signing.key"] {
            let value = secret_text(&secret, key).context(key)?;
            ensure!(!st.stdout.contains(value.trim()), "status printed {key}");
        }
        ensure!(
            !st.stdout.contains("PRIVATE KEY"),
            "status printed a private key"
        );
        // Without a name: every client of the namespace.
        let all = kubectl_tpp(&ctx, &["status"]).await?;
        ensure!(all.code == 0 && all.stdout.contains("/payments:"), "{all}");

        // renew: a new token (600 s tokens: no scheduled refresh within this test).
        let issued = secret_text(&secret, "accounts.issued_at").context("issued_at")?;
        let r = kubectl_tpp(&ctx, &["renew", "payments"]).await?;
        ensure!(
            r.code == 0 && r.stdout.contains("tpp.dev/renew-tokens="),
            "{r}"
        );
        let deadline = std::time::Instant::now() + READY;
        loop {
            let s = credentials(&ctx, "payments").await?;
            if secret_text(&s, "accounts.issued_at").is_some_and(|i| i != issued) {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "no new token after renew"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // rotate: a new signing key becomes active.
        let r = kubectl_tpp(&ctx, &["rotate", "payments"]).await?;
        ensure!(
            r.code == 0 && r.stdout.contains("tpp.dev/rotate-keys="),
            "{r}"
        );
        let rotated = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            active_kid(o).is_some_and(|k| k != kid)
        })
        .await?;
        let new_kid = active_kid(&rotated).context("new kid")?;

        // renew-certificate: a new certificate.
        let r = kubectl_tpp(&ctx, &["renew-certificate", "payments"]).await?;
        ensure!(
            r.code == 0 && r.stdout.contains("tpp.dev/renew-certificate="),
            "{r}"
        );
        wait_for(&ctx, "TppClient", "payments", READY, |o| {
            o.data["status"]["certificate"]["x5tS256"]
                .as_str()
                .is_some_and(|x| x != x5t)
        })
        .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;

        // jwks: the published public keys, the active one among them.
        let j = kubectl_tpp(&ctx, &["jwks", "payments"]).await?;
        ensure!(j.code == 0, "{j}");
        let jwks: Value = serde_json::from_str(&j.stdout).context("jwks output is JSON")?;
        let keys = jwks["keys"].as_array().context("keys")?;
        ensure!(keys.iter().any(|k| k["kid"] == new_kid.as_str()), "{j}");
        ensure!(
            keys.iter().all(|k| k.get("d").is_none()),
            "private member in jwks output"
        );

        // The history now tells the story.
        let st = kubectl_tpp(&ctx, &["status", "payments"]).await?;
        ensure!(
            st.code == 0 && st.stdout.contains("History (newest first):"),
            "{st}"
        );

        // An unknown client is an error, not an empty summary.
        let missing = kubectl_tpp(&ctx, &["status", "nope"]).await?;
        ensure!(
            missing.code != 0
                && missing
                    .stderr
                    .contains("TppClient nope not found in namespace"),
            "{missing}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn approve_shows_the_pending_kid_and_its_thumbprint_then_approves_it() {
    with_namespace("plugin-approve", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("manual", "sandbox", json!({"registration": {"mode": "Static", "clientId": "manual-client"}}))).await?;
        let o = wait_for(&ctx, "TppClient", "manual", READY, |o| {
            condition(o, "SigningKeyReady").is_some_and(|c| c["reason"] == "AwaitingKeyApproval")
        })
        .await?;
        let kid = o.data["status"]["signingKeys"][0]["kid"].as_str().context("kid")?.to_owned();

        let st = kubectl_tpp(&ctx, &["status", "manual"]).await?;
        ensure!(st.stdout.contains(&format!("Pending approval: {kid}")), "{st}");

        // Without --yes and without a terminal: shows, refuses, changes nothing.
        let refused = kubectl_tpp(&ctx, &["approve", "manual"]).await?;
        ensure!(refused.code != 0, "{refused}");
        ensure!(refused.stdout.contains(&format!("kid {kid}")), "{refused}");
        ensure!(
            refused.stdout.contains(&format!("JWK thumbprint (RFC 7638, SHA-256): {kid} (equals the kid)")),
            "{refused}"
        );
        ensure!(refused.stderr.contains("--yes"), "{refused}");
        let now = api(&ctx, "TppClient").get("manual").await?;
        ensure!(
            now.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key("tpp.dev/approved-kids")),
            "approved without consent"
        );

        // The human uploads what `kubectl tpp jwks` prints, then approves.
        let j = kubectl_tpp(&ctx, &["jwks", "manual"]).await?;
        let jwks: Value = serde_json::from_str(&j.stdout).context("jwks JSON")?;
        sandbox.provision_client(json!({"client_id": "manual-client", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "scope": "accounts"}))?;
        let ok = kubectl_tpp(&ctx, &["approve", "manual", "--yes"]).await?;
        ensure!(ok.code == 0 && ok.stdout.contains(&format!("Approved {kid}")), "{ok}");
        wait_condition(&ctx, "TppClient", "manual", "Ready", "True", READY).await?;
        let again = kubectl_tpp(&ctx, &["approve", "manual", "--yes"]).await?;
        ensure!(again.code == 0 && again.stdout.contains("no key waits for approval"), "{again}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn preflight_checks_the_seed_discovery_document_served_by_the_sandbox_and_creates_nothing() {
    with_namespace("plugin-preflight", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let ca = sandbox.ca_path().display().to_string();
        let pass = kubectl_tpp(&ctx, &["preflight", sandbox.issuer(), "--ca", &ca, "--registration", "Dynamic"]).await?;
        ensure!(pass.code == 0, "{pass}");
        for want in [
            format!("issuer                {} (matches)", sandbox.issuer()),
            format!("token endpoint        {}", sandbox.token_endpoint()),
            "PASS: 0 error(s), 0 warning(s). Nothing was created.".to_owned(),
        ] {
            ensure!(pass.stdout.contains(&want), "preflight lacks {want:?}:\n{pass}");
        }
        // The issuer must match byte for byte (the host the document names, not the one serving it).
        let wrong = sandbox.issuer().replace("localhost", "127.0.0.1");
        let mismatch = kubectl_tpp(&ctx, &["preflight", &wrong, "--ca", &ca]).await?;
        ensure!(mismatch.code == 2 && mismatch.stdout.contains("FAILED"), "{mismatch}");
        let c = sandbox.counters();
        ensure!(c.registrations_created == 0, "preflight registered a client");
        ensure!(
            c.requests_to(e2e::sandbox::Endpoint::Token) == 0
                && c.requests_to(e2e::sandbox::Endpoint::Registration) == 0,
            "preflight called more than discovery: {c:?}"
        );

        // An AS without PAR fails the FAPI 2.0 profile and names what is missing.
        let no_par = start_sandbox(&ctx, |cfg| {
            cfg.state_dir = cfg.state_dir.join("no-par");
            cfg.discovery_patch = Some(json!({"pushed_authorization_request_endpoint": null, "mtls_endpoint_aliases": {"pushed_authorization_request_endpoint": null}}));
        })
        .await?;
        let fail = kubectl_tpp(&ctx, &["preflight", no_par.issuer(), "--ca", &no_par.ca_path().display().to_string()]).await?;
        ensure!(fail.code == 1, "{fail}");
        ensure!(
            fail.stdout.contains("ERROR   the discovery document has no pushed_authorization_request_endpoint"),
            "{fail}"
        );
        Ok(())
    })
    .await;
}
