//! Helpers for end-to-end tests of the operator: apply our objects as JSON, wait for conditions
//! (with timeouts, never bare sleeps), read the credentials Secret, and start the sandbox AS (in
//! strict mode, with the initial access token Secret and client CA its checks need;
//! docs/reliability.md) and the operator for a test. Kubernetes I/O.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::{
    TestContext,
    operator::{OperatorOptions, OperatorProcess},
    pki::{CertPair, TestCa},
    sandbox::{AudPolicy, RunningSandbox, SandboxConfig},
};

/// The API of one of our kinds in the test namespace.
pub fn api(ctx: &TestContext, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind));
    if kind == "ClusterAuthorizationServer" {
        Api::all_with(ctx.client.clone(), &ar)
    } else {
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ar)
    }
}

/// Server-side apply a manifest (as a test user would with `kubectl apply --server-side`).
pub async fn apply(ctx: &TestContext, manifest: Value) -> Result<DynamicObject> {
    let kind = manifest["kind"].as_str().context("kind")?.to_owned();
    let name = manifest["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_owned();
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    Ok(api(ctx, &kind)
        .patch(
            &name,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&obj),
        )
        .await?)
}

/// An AuthorizationServer manifest for the sandbox AS. It names the test namespace's initial
/// access token ([`SANDBOX_IAT_SECRET`], created by [`start_sandbox`]) for Dynamic registration,
/// as the strict sandbox requires; `extra_spec` `{"registration": {"initialAccessTokenRef":
/// null}}` removes it.
pub fn sandbox_server(name: &str, sandbox: &RunningSandbox, extra_spec: Value) -> Value {
    let mut spec = json!({
        "issuer": sandbox.issuer(),
        "caBundle": sandbox.ca_pem(),
        "jwksCacheTtl": "2s",
        "rateLimit": {"requestsPerSecond": 50, "burst": 50},
        "registration": {"initialAccessTokenRef": {"name": SANDBOX_IAT_SECRET, "key": SANDBOX_IAT_KEY}},
    });
    merge(&mut spec, extra_spec);
    json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "AuthorizationServer", "metadata": {"name": name}, "spec": spec})
}

/// A TppClient manifest with short schedules, suitable for tests.
pub fn client(name: &str, server: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "authorizationServerRef": {"name": server},
        "registration": {"mode": "Dynamic"},
        "signingKey": {"rotation": {"propagationDelay": "3s", "retireAfter": "5s"}},
        "tokens": [{"name": "accounts", "scope": "accounts"}],
    });
    merge(&mut spec, extra_spec);
    json!({"apiVersion": "tpp.dev/v1alpha1", "kind": "TppClient", "metadata": {"name": name}, "spec": spec})
}

/// RFC 7396-style merge of `patch` into `base`.
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// The condition `type_` of a TppClient (or AS), if present.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// Wait until `check` accepts the object (polling every 200 ms), or fail after `timeout` with
/// the last status seen.
pub async fn wait_for(
    ctx: &TestContext,
    kind: &str,
    name: &str,
    timeout: Duration,
    check: impl Fn(&DynamicObject) -> bool,
) -> Result<DynamicObject> {
    let api = api(ctx, kind);
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(o) = api.get_opt(name).await? {
            if check(&o) {
                return Ok(o);
            }
            last = Some(o);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "timed out after {timeout:?} waiting for {kind}/{name}; last status: {}",
        last.map(|o| o.data["status"].to_string())
            .unwrap_or_default()
    )
}

/// Wait for condition `type_` to have `status` ("True"/"False").
pub async fn wait_condition(
    ctx: &TestContext,
    kind: &str,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> Result<DynamicObject> {
    wait_for(ctx, kind, name, timeout, |o| {
        condition(o, type_).is_some_and(|c| c["status"] == status)
    })
    .await
}

/// A key of a Secret as text.
pub fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The credentials Secret of client `name`.
pub async fn credentials(ctx: &TestContext, name: &str) -> Result<Secret> {
    ctx.api::<Secret>()
        .get(&format!("{name}-credentials"))
        .await
        .with_context(|| format!("{name}-credentials"))
}

/// Secret (in the test namespace) holding the initial access token of the sandboxes that
/// [`start_sandbox`] starts; [`sandbox_server`] references it.
pub const SANDBOX_IAT_SECRET: &str = "sandbox-iat";
/// Key of the initial access token in [`SANDBOX_IAT_SECRET`].
pub const SANDBOX_IAT_KEY: &str = "token";

/// The initial access token of this test process's sandboxes (random per process).
pub fn sandbox_initial_access_token() -> &'static SecretString {
    static IAT: OnceLock<SecretString> = OnceLock::new();
    IAT.get_or_init(|| {
        SecretString::from(format!(
            "e2e-iat-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        ))
    })
}

/// The client CA of this test process's sandboxes: a `tls_client_auth` certificate must chain
/// to it ([`apply_ca_issued_transport_secret`] issues one).
pub fn sandbox_client_ca() -> Result<&'static TestCa> {
    static CA: OnceLock<TestCa> = OnceLock::new();
    if let Some(ca) = CA.get() {
        return Ok(ca);
    }
    let ca = TestCa::new("e2e sandbox client CA")?;
    Ok(CA.get_or_init(|| ca))
}

/// Start the sandbox AS in strict mode, with `tune` applied last (a test that needs a lenient
/// check turns it off there and says why). Strict: only the exact issuer as assertion `aud`
/// (and the strict clock and lifetime bounds), the initial access token
/// [`sandbox_initial_access_token`] for RFC 7591 registration, `tls_client_auth` certificates
/// chained to [`sandbox_client_ca`], signed registrations with `iss` and the software
/// statement's keys, hub clients only over an onboarded certificate. Creates the Secret
/// [`SANDBOX_IAT_SECRET`] in the test namespace, which [`sandbox_server`] references.
pub async fn start_sandbox(
    ctx: &TestContext,
    tune: impl FnOnce(&mut SandboxConfig),
) -> Result<RunningSandbox> {
    let dir = ctx.cp.dir.join(format!("sandbox-{}", ctx.namespace));
    std::fs::create_dir_all(&dir)?;
    let mut cfg = strict_sandbox_config(dir)?;
    tune(&mut cfg);
    apply_sandbox_iat_secret(&ctx.api(), &ctx.namespace).await?;
    crate::sandbox::start(cfg).await
}

/// The sandbox configuration [`start_sandbox`] starts from: every strict check on, 2 s JWKS
/// cache (for a sandbox a test starts itself, e.g. in another namespace).
pub fn strict_sandbox_config(state_dir: std::path::PathBuf) -> Result<SandboxConfig> {
    let mut cfg = SandboxConfig::new(state_dir);
    cfg.jwks_cache_ttl = Duration::from_secs(2);
    cfg.aud_policy = AudPolicy::Strict;
    cfg.initial_access_token = Some(sandbox_initial_access_token().clone());
    cfg.client_ca_pem = Some(sandbox_client_ca()?.cert_pem.clone());
    cfg.strict_signed_registration = true;
    cfg.bind_onboarding = true;
    Ok(cfg)
}

/// Create (server-side apply) the Secret [`SANDBOX_IAT_SECRET`] through `secrets` (of
/// `namespace`, for the error message).
pub async fn apply_sandbox_iat_secret(secrets: &Api<Secret>, namespace: &str) -> Result<()> {
    let iat = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SANDBOX_IAT_SECRET},
        "stringData": {SANDBOX_IAT_KEY: sandbox_initial_access_token().expose_secret()}});
    secrets
        .patch(
            SANDBOX_IAT_SECRET,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&iat),
        )
        .await
        .with_context(|| format!("create Secret {namespace}/{SANDBOX_IAT_SECRET}"))?;
    Ok(())
}

/// Create (server-side apply) a `kubernetes.io/tls` Secret `name` holding a client
/// certificate for `subject` issued by [`sandbox_client_ca`], as a TppClient with
/// `tls_client_auth` and `transportCertificate.source: SecretRef` needs it. Returns the pair.
pub async fn apply_ca_issued_transport_secret(
    ctx: &TestContext,
    name: &str,
    subject: &[(rcgen::DnType, &str)],
) -> Result<CertPair> {
    let issued = sandbox_client_ca()?.issue_client(subject)?;
    apply_tls_secret(ctx, name, &issued).await?;
    Ok(issued)
}

/// Create (server-side apply) a `kubernetes.io/tls` Secret `name` holding `pair`.
pub async fn apply_tls_secret(ctx: &TestContext, name: &str, pair: &CertPair) -> Result<()> {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name}, "stringData": {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}});
    ctx.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("e2e-user").force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("create Secret {name}"))?;
    Ok(())
}

/// Start an operator watching the test namespace; its log is printed if the test fails.
pub async fn start_operator(ctx: &TestContext) -> Result<OperatorProcess> {
    start_operator_with_failpoints(ctx, None).await
}

/// [`start_operator`] with `FAILPOINTS` set to `failpoints` (e.g.
/// `after_registration_post=1*return(abort)`; docs/reliability.md). The binary must be built
/// with `--features failpoints` (`make test-e2e` does).
pub async fn start_operator_with_failpoints(
    ctx: &TestContext,
    failpoints: Option<&str>,
) -> Result<OperatorProcess> {
    start_operator_with_options(
        ctx,
        OperatorOptions {
            failpoints: failpoints.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}

/// [`start_operator`] with `options` (their `namespaces` replaced by the test namespace): its
/// log is leak-audited and printed if the test fails.
pub async fn start_operator_with_options(
    ctx: &TestContext,
    options: OperatorOptions,
) -> Result<OperatorProcess> {
    let op = OperatorProcess::start(
        ctx.cp,
        &ctx.client,
        OperatorOptions {
            namespaces: vec![ctx.namespace.clone()],
            ..options
        },
    )
    .await?;
    let log = op.log_path();
    ctx.audit_log(log.clone());
    ctx.on_failure_print(move || {
        format!(
            "----- operator log (tail) -----\n{}",
            crate::process::tail(&log, 12000)
        )
    });
    Ok(op)
}

/// `x5t#S256` of a PEM certificate.
pub fn x5t_of_pem(pem: &str) -> Result<String> {
    Ok(tpp_operator::identity::cert::parse_pem(pem)?.x5t_s256)
}
