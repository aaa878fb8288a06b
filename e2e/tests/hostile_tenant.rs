//! A hostile tenant (docs/security.md § Hostile-tenant suite): in a namespace of its own it
//! applies objects that point inward, reference what it may not read, carry broken material,
//! tamper with the operator's outputs and flood the operator — while a victim tenant's client,
//! on short-lived tokens, must keep refreshing. Each hostile object must be reported by a
//! condition with a reason and a message that says what to fix; the operator must not crash and
//! must call no host but the allowed ASes; nothing of the victim's objects may reach the hostile
//! namespace. Both namespaces and the operator's metrics go through the leak audit.
//! (Apply-time refusals of bad values are in `api.rs`: 60 cases, each with the message or the
//! pruning checked.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    fixtures::*,
    operator::{OperatorOptions, OperatorProcess},
    sandbox::Endpoint,
    with_namespace,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

/// One hostile object and the reason its Ready condition must carry.
struct Case {
    kind: &'static str,
    name: &'static str,
    spec: Value,
    reason: &'static str,
}

fn tpp_api(client: &kube::Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", kind));
    Api::namespaced_with(client.clone(), namespace, &ar)
}

async fn apply_in(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    spec: Value,
) -> Result<()> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tpp.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }))?;
    tpp_api(client, namespace, kind)
        .patch(
            name,
            &PatchParams::apply("hostile-tenant").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("apply {kind}/{name}"))?;
    Ok(())
}

async fn secret_in(client: &kube::Client, namespace: &str, name: &str, data: Value) -> Result<()> {
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace}, "stringData": data,
    }))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

fn ready(obj: &DynamicObject) -> Option<(String, String, String)> {
    let c = condition(obj, "Ready")?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn client_spec(server: &str, extra: Value) -> Value {
    let mut spec = client("x", server, extra)["spec"].clone();
    spec["signingKey"]["rotation"] = json!({"propagationDelay": "3s", "retireAfter": "5s"});
    spec
}

#[tokio::test]
async fn a_hostile_tenant_is_reported_object_by_object_and_the_victims_client_keeps_refreshing() {
    with_namespace("victim", |ctx| async move {
        // The hostile tenant's namespace, under the leak audit like the victim's.
        let hostile = ctx.create_namespace("hostile").await?;

        let victim_as = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(6)).await?;
        let hostile_as = e2e::sandbox::start({
            let dir = ctx.cp.dir.join(format!("sandbox-{hostile}"));
            std::fs::create_dir_all(&dir)?;
            strict_sandbox_config(dir)?
        })
        .await?;
        apply_sandbox_iat_secret(&Api::namespaced(ctx.client.clone(), &hostile), &hostile).await?;
        let op = OperatorProcess::start(
            ctx.cp,
            &ctx.client,
            OperatorOptions {
                namespaces: vec![ctx.namespace.clone(), hostile.clone()],
                ..Default::default()
            },
        )
        .await?;
        ctx.audit_log(op.log_path());
        let log = op.log_path();
        ctx.on_failure_print(move || {
            format!("----- operator log (tail) -----\n{}", e2e::process::tail(&log, 12000))
        });

        // The victim: Ready, on 6 s tokens.
        apply(&ctx, sandbox_server("bank", &victim_as, json!({}))).await?;
        apply(&ctx, client("payments", "bank", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", Duration::from_secs(90)).await?;
        let victim_tokens_before = victim_as.counters().requests_to(Endpoint::Token);

        // The hostile tenant's own, valid AS (its clients must still work: hostility is per object).
        let own = |extra: Value| {
            let mut spec = json!({
                "issuer": hostile_as.issuer(), "caBundle": hostile_as.ca_pem(), "jwksCacheTtl": "2s",
                "rateLimit": {"requestsPerSecond": 50, "burst": 50},
                "registration": {"initialAccessTokenRef": {"name": SANDBOX_IAT_SECRET, "key": SANDBOX_IAT_KEY}},
            });
            merge(&mut spec, extra);
            spec
        };
        apply_in(&ctx.client, &hostile, "AuthorizationServer", "own", own(json!({}))).await?;
        secret_in(&ctx.client, &hostile, "garbage-cert", json!({"tls.crt": "not a certificate", "tls.key": "not a key"})).await?;
        secret_in(&ctx.client, &hostile, "garbage-jwt", json!({"ssa": "not.a.jwt"})).await?;
        // What the victim holds and the hostile tenant names: markers searched for in the hostile
        // namespace at the end, and the victim's CA (with it, the victim's AS would answer).
        const VICTIM_IAT: &str = "victim-initial-access-token";
        const VICTIM_SSA: &str = "victim-software-statement.eyJ2aWN0aW0iOnRydWV9.c2ln";
        const VICTIM_CA_MARKER: &str = "victim-ca-bundle-marker";
        secret_in(&ctx.client, &ctx.namespace, "victim-secret", json!({"iat": VICTIM_IAT, "ssa": VICTIM_SSA})).await?;
        let victim_ca: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "victim-ca", "namespace": ctx.namespace}, "data": {"ca.crt": format!("# {VICTIM_CA_MARKER}\n{}", victim_as.ca_pem())},
        }))?;
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.namespace).create(&PostParams::default(), &victim_ca).await?;

        let victim = ctx.namespace.clone();
        // Namespaced ASes of the hostile tenant whose registration defaults name the victim's
        // namespace: the ASes themselves pass discovery (the references are read only when one of
        // their clients registers); their clients are refused.
        let victim_ref = |key: &str| json!({"name": "victim-secret", "key": key, "namespace": victim});
        apply_in(&ctx.client, &hostile, "AuthorizationServer", "iat-default-from-victim", own(json!({"registration": {"initialAccessTokenRef": victim_ref("iat")}}))).await?;
        apply_in(&ctx.client, &hostile, "AuthorizationServer", "ssa-default-from-victim", own(json!({"registration": {"softwareStatementRef": victim_ref("ssa")}}))).await?;
        // Two ClusterAuthorizationServers, as the platform team writes them (cluster-scoped, so
        // they may name a namespace): one for the victim's namespace only, on the victim's AS;
        // one for every namespace whose initial access token reference names no namespace, so
        // each tenant's client reads it from its own namespace (here: a name that exists only in
        // the victim's).
        let cluster_api: Api<DynamicObject> = Api::all_with(
            ctx.client.clone(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk("tpp.dev", "v1alpha1", "ClusterAuthorizationServer")),
        );
        let victim_only = format!("{hostile}-victim-only");
        let shared = format!("{hostile}-shared");
        for (name, spec) in [
            (&victim_only, json!({
                "issuer": victim_as.issuer(), "caBundle": victim_as.ca_pem(),
                "allowedNamespaces": {"matchLabels": {"kubernetes.io/metadata.name": victim}},
            })),
            (&shared, json!({
                "issuer": hostile_as.issuer(), "caBundle": hostile_as.ca_pem(), "jwksCacheTtl": "2s",
                "allowedNamespaces": {},
                "registration": {"initialAccessTokenRef": {"name": "victim-secret", "key": "iat"}},
            })),
        ] {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "tpp.dev/v1alpha1", "kind": "ClusterAuthorizationServer",
                "metadata": {"name": name}, "spec": spec,
            }))?;
            cluster_api.patch(name, &PatchParams::apply("platform-team").force(), &Patch::Apply(&obj)).await?;
        }
        let on_cluster = |name: &str, extra: Value| {
            let mut e = json!({"authorizationServerRef": {"kind": "ClusterAuthorizationServer", "name": name}});
            merge(&mut e, extra);
            client_spec("x", e)
        };
        let cases = vec![
            // ASes pointing inward or at nothing.
            Case { kind: "AuthorizationServer", name: "kube-api", spec: own(json!({"issuer": "https://kubernetes.default.svc"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "cluster-local", spec: own(json!({"issuer": "https://vault.vault.svc.cluster.local:8200"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "private-ip", spec: own(json!({"issuer": "https://10.0.0.1"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "metadata-ip", spec: own(json!({"issuer": "https://169.254.169.254"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "loopback-v6", spec: own(json!({"issuer": "https://[::1]:6443"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "inward-discovery", spec: own(json!({"discoveryUrl": "https://kubernetes.default.svc/.well-known/openid-configuration"})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "inward-registration", spec: own(json!({"registration": {"endpoint": "https://kubernetes.default.svc/register"}})), reason: "EgressRefused" },
            Case { kind: "AuthorizationServer", name: "wrong-issuer", spec: own(json!({"issuer": format!("{}/other", hostile_as.issuer())})), reason: "DiscoveryFailed" },
            Case { kind: "AuthorizationServer", name: "garbage-ca", spec: own(json!({"caBundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})), reason: "InvalidTransportConfig" },
            Case { kind: "AuthorizationServer", name: "wrong-ca", spec: own(json!({"caBundle": victim_as.ca_pem()})), reason: "TlsFailure" },
            Case { kind: "AuthorizationServer", name: "ca-from-victim", spec: own(json!({"caBundle": null, "caBundleRef": {"kind": "Secret", "name": "victim-secret", "key": "iat", "namespace": victim}})), reason: "CrossNamespaceReference" },
            Case { kind: "AuthorizationServer", name: "victims-as-by-ca-ref", spec: own(json!({"issuer": victim_as.issuer(), "caBundle": null, "caBundleRef": {"kind": "ConfigMap", "name": "victim-ca", "key": "ca.crt", "namespace": victim}})), reason: "CrossNamespaceReference" },
            Case { kind: "AuthorizationServer", name: "ca-missing", spec: own(json!({"caBundle": null, "caBundleRef": {"kind": "ConfigMap", "name": "nope", "key": "ca.crt"}})), reason: "ReferenceNotFound" },
            // Clients referencing what they may not read, or broken material.
            Case { kind: "TppClient", name: "no-such-as", spec: client_spec("no-such-as", json!({})), reason: "AuthorizationServerNotFound" },
            Case { kind: "TppClient", name: "victims-as", spec: client_spec("bank", json!({})), reason: "AuthorizationServerNotFound" },
            Case { kind: "TppClient", name: "no-such-cluster-as", spec: client_spec("x", json!({"authorizationServerRef": {"kind": "ClusterAuthorizationServer", "name": "nope"}})), reason: "AuthorizationServerNotFound" },
            Case { kind: "TppClient", name: "on-inward-as", spec: client_spec("kube-api", json!({})), reason: "AuthorizationServerNotReady" },
            Case { kind: "TppClient", name: "iat-from-victim", spec: client_spec("own", json!({"registration": {"initialAccessTokenRef": {"name": "victim-secret", "key": "iat", "namespace": victim}}})), reason: "CrossNamespaceReference" },
            Case { kind: "TppClient", name: "ssa-from-victim", spec: client_spec("own", json!({"registration": {"mode": "SignedRequest", "softwareStatementRef": victim_ref("ssa")}})), reason: "CrossNamespaceReference" },
            Case { kind: "TppClient", name: "on-as-iat-from-victim", spec: client_spec("iat-default-from-victim", json!({})), reason: "CrossNamespaceReference" },
            Case { kind: "TppClient", name: "on-as-ssa-from-victim", spec: client_spec("ssa-default-from-victim", json!({"registration": {"mode": "SignedRequest"}})), reason: "CrossNamespaceReference" },
            Case { kind: "TppClient", name: "on-victims-cluster-as", spec: on_cluster(&victim_only, json!({})), reason: "NamespaceNotAllowed" },
            Case { kind: "TppClient", name: "cluster-iat-own-namespace", spec: on_cluster(&shared, json!({})), reason: "ReferenceNotFound" },
            Case { kind: "TppClient", name: "iat-missing", spec: client_spec("own", json!({"registration": {"initialAccessTokenRef": {"name": "nope", "key": "iat"}}})), reason: "ReferenceNotFound" },
            Case { kind: "TppClient", name: "ssa-garbage", spec: client_spec("own", json!({"registration": {"mode": "SignedRequest", "softwareStatementRef": {"name": "garbage-jwt", "key": "ssa"}}})), reason: "InvalidSpec" },
            Case { kind: "TppClient", name: "cert-garbage", spec: client_spec("own", json!({"transportCertificate": {"source": "SecretRef", "secretRef": {"name": "garbage-cert"}}})), reason: "CertificateInvalid" },
            Case { kind: "TppClient", name: "cert-missing", spec: client_spec("own", json!({"transportCertificate": {"source": "SecretRef", "secretRef": {"name": "nope"}}})), reason: "ReferenceNotFound" },
            Case { kind: "TppClient", name: "managed-claim", spec: client_spec("own", json!({"registration": {"metadata": {"extra": {"jwks_uri": "https://evil.example/jwks"}}}})), reason: "InvalidSpec" },
            Case { kind: "TppClient", name: "token-endpoint-claim", spec: client_spec("own", json!({"registration": {"metadata": {"extra": {"token_endpoint_auth_method": "none"}}}})), reason: "InvalidSpec" },
        ];
        for c in &cases {
            apply_in(&ctx.client, &hostile, c.kind, c.name, c.spec.clone()).await?;
        }
        // A flood: 30 clients at once on an AS that does not exist.
        for i in 0..30 {
            apply_in(&ctx.client, &hostile, "TppClient", &format!("flood-{i}"), client_spec("no-such-as", json!({}))).await?;
        }
        // A legitimate client of the hostile tenant, then tampering with its outputs.
        apply_in(&ctx.client, &hostile, "TppClient", "own-client", client_spec("own", json!({}))).await?;

        // Every hostile object is reported with its reason and a message.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut pending: Vec<&Case> = cases.iter().collect();
        while !pending.is_empty() {
            let mut still = vec![];
            for c in pending {
                let got = tpp_api(&ctx.client, &hostile, c.kind).get_opt(c.name).await?.and_then(|o| ready(&o));
                match got {
                    Some((status, reason, message)) if status == "False" && reason == c.reason && !message.is_empty() => {}
                    other => still.push((c, other)),
                }
            }
            if still.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let lines: Vec<String> = still
                    .iter()
                    .map(|(c, got)| format!("{} {}: want {}, got {:?}", c.kind, c.name, c.reason, got))
                    .collect();
                bail!("not reported as expected:\n{}", lines.join("\n"));
            }
            pending = still.into_iter().map(|(c, _)| c).collect();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for i in 0..30 {
            let o = tpp_api(&ctx.client, &hostile, "TppClient").get(&format!("flood-{i}")).await?;
            ensure!(ready(&o).is_some_and(|(_, r, _)| r == "AuthorizationServerNotFound"), "flood-{i} not reported");
        }
        // Nothing of the victim's objects reached the hostile namespace: not in a status, a
        // Secret or a ConfigMap (the victim's CA bundle by a marker line of its own: both
        // sandboxes share the test CA, so its certificate would prove nothing).
        let mut places: Vec<(String, String)> = vec![];
        for kind in ["TppClient", "AuthorizationServer"] {
            for o in tpp_api(&ctx.client, &hostile, kind).list(&Default::default()).await? {
                places.push((format!("{kind}/{} status", o.metadata.name.clone().unwrap_or_default()), o.data["status"].to_string()));
            }
        }
        for s in Api::<Secret>::namespaced(ctx.client.clone(), &hostile).list(&Default::default()).await? {
            for (k, v) in s.data.iter().flatten() {
                places.push((format!("Secret {}/{k}", s.metadata.name.clone().unwrap_or_default()), String::from_utf8_lossy(&v.0).into_owned()));
            }
        }
        for c in Api::<ConfigMap>::namespaced(ctx.client.clone(), &hostile).list(&Default::default()).await? {
            for (k, v) in c.data.iter().flatten() {
                places.push((format!("ConfigMap {}/{k}", c.metadata.name.clone().unwrap_or_default()), v.clone()));
            }
        }
        for (what, marker) in [("the victim's initial access token", VICTIM_IAT), ("the victim's software statement", VICTIM_SSA), ("the victim's CA bundle", VICTIM_CA_MARKER)] {
            for (place, text) in &places {
                ensure!(!text.contains(marker), "{what} reached the hostile namespace: {place}");
            }
        }

        // Tampering: the own client's credentials Secret deleted by the tenant.
        let own_client_ready = || async {
            tpp_api(&ctx.client, &hostile, "TppClient")
                .get_opt("own-client")
                .await
                .ok()
                .flatten()
                .and_then(|o| ready(&o))
                .is_some_and(|(s, _, _)| s == "True")
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !own_client_ready().await {
            ensure!(Instant::now() < deadline, "the hostile tenant's valid client never became Ready");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let registrations = hostile_as.counters().registrations_created;
        Api::<Secret>::namespaced(ctx.client.clone(), &hostile)
            .delete("own-client-credentials", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Api::<Secret>::namespaced(ctx.client.clone(), &hostile).get_opt("own-client-credentials").await?.is_some() {
                break;
            }
            ensure!(Instant::now() < deadline, "a deleted credentials Secret was not recreated");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ensure!(
            hostile_as.counters().registrations_created == registrations,
            "recreating a deleted credentials Secret registered the client again"
        );

        // Tampering with the JWKS ConfigMap copy: a foreign key added, then the copy deleted.
        // Each time the copy is restored from the key state, and nothing is registered again.
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &hostile);
        let jwks_of = |cm: &ConfigMap| cm.data.as_ref().and_then(|d| d.get("jwks.json")).cloned();
        let original = jwks_of(&cms.get("own-client-jwks").await?).context("jwks.json")?;
        let mut tampered: Value = serde_json::from_str(&original)?;
        tampered["keys"].as_array_mut().context("keys")?.push(json!({"kty": "oct", "kid": "tenant-key", "k": "AAAA"}));
        let patch = json!({"data": {"jwks.json": serde_json::to_string(&tampered)?}});
        cms.patch("own-client-jwks", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        let restored = |what: &'static str| {
            let cms = cms.clone();
            let original = original.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    if let Some(cm) = cms.get_opt("own-client-jwks").await?
                        && jwks_of(&cm).as_deref() == Some(original.as_str())
                    {
                        return Ok::<(), anyhow::Error>(());
                    }
                    ensure!(Instant::now() < deadline, "the JWKS ConfigMap was not restored after {what}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        restored("a foreign key was added").await?;
        cms.delete("own-client-jwks", &DeleteParams::default()).await?;
        restored("its deletion").await?;
        ensure!(
            hostile_as.counters().registrations_created == registrations,
            "restoring the JWKS ConfigMap registered the client again"
        );

        // Tampering with `<name>-registration`, three actions in turn; none registers the client
        // again. (1) `client_id` overwritten: the issued one is in `response.json` beside it, so
        // the client shows CorruptState naming the Secret and the issued id, and asks no token
        // for the garbage; put back, it is Ready again.
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &hostile);
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let reg = secrets.get("own-client-registration").await?;
        let original = |key: &str| -> Result<String> {
            let v = reg.data.as_ref().and_then(|d| d.get(key)).with_context(|| format!("{key} in own-client-registration"))?;
            Ok(String::from_utf8(v.0.clone())?)
        };
        let (issued_id, issued_rat) = (original("client_id")?, original("registration_access_token")?);
        let set = |key: &'static str, value: Option<String>| {
            let secrets = secrets.clone();
            async move {
                let patch = json!({"data": {key: value.map(|v| b64(&v))}});
                secrets.patch("own-client-registration", &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok::<(), anyhow::Error>(())
            }
        };
        set("client_id", Some("tenant-garbage-client-id".into())).await?;
        let tokens = hostile_as.counters().requests_to(Endpoint::Token);
        let own = |what: &'static str, ok: Box<dyn Fn(&DynamicObject) -> bool + Send + Sync>| {
            let client = ctx.client.clone();
            let hostile = hostile.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let o = tpp_api(&client, &hostile, "TppClient").get("own-client").await?;
                    if ok(&o) {
                        return Ok::<(), anyhow::Error>(());
                    }
                    ensure!(Instant::now() < deadline, "{what}: status {}", o.data["status"]);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        let id = issued_id.clone();
        own("an edited client_id was not reported as CorruptState", Box::new(move |o| {
            ready(o).is_some_and(|(s, r, m)| s == "False" && r == "CorruptState" && m.contains("own-client-registration") && m.contains(&id))
        }))
        .await?;
        ensure!(hostile_as.counters().requests_to(Endpoint::Token) == tokens, "a token was asked for an edited client_id");
        set("client_id", Some(issued_id.clone())).await?;
        own("the client_id put back did not make the client Ready", Box::new(|o| ready(o).is_some_and(|(s, _, _)| s == "True"))).await?;
        // (2) The registration access token overwritten: it does not match the digest written
        // with the token the AS issued, so the client reports it at once (not at the next RFC
        // 7592 call), naming the Secret and the client id; tokens keep coming for the unchanged
        // client id, and nothing calls RFC 7592 or registers; put back, it clears.
        set("registration_access_token", Some("tenant-garbage-registration-access-token".into())).await?;
        let id = issued_id.clone();
        let overwritten = move |o: &DynamicObject| {
            o.data["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
                c["status"] == "False"
                    && c["reason"] == "RegistrationAccessTokenOverwritten"
                    && c["message"].as_str().is_some_and(|m| m.contains("own-client-registration") && m.contains(&id))
            })
        };
        own("an overwritten registration access token was not reported at once", Box::new(overwritten.clone())).await?;
        let updates = hostile_as.counters().requests_to(Endpoint::Registration);
        let tokens = hostile_as.counters().requests_to(Endpoint::Token);
        tpp_api(&ctx.client, &hostile, "TppClient")
            .patch("own-client", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"tpp.dev/renew-tokens": "after-rat-edit"}}})))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while hostile_as.counters().requests_to(Endpoint::Token) == tokens {
            ensure!(Instant::now() < deadline, "no token after the registration access token was overwritten");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        own("the overwritten registration access token stopped being reported", Box::new(overwritten)).await?;
        ensure!(
            hostile_as.counters().requests_to(Endpoint::Registration) == updates,
            "a registration or RFC 7592 call was made while the registration access token was not the operator's"
        );
        set("registration_access_token", Some(issued_rat)).await?;
        own("the registration access token put back did not clear the report", Box::new(|o| {
            ready(o).is_some_and(|(s, _, _)| s == "True")
                && !o.data["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["reason"] == "RegistrationAccessTokenOverwritten")
        }))
        .await?;
        // (3) `client_id` removed: the registration is lost (as if the Secret were deleted), so
        // the client halts with RegistrationSecretLost naming the client left at the AS; put
        // back, it is Ready again.
        set("client_id", None).await?;
        let id = issued_id.clone();
        own("a removed client_id was not reported as RegistrationSecretLost", Box::new(move |o| {
            o.data["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
                c["status"] == "False" && c["reason"] == "RegistrationSecretLost" && c["message"].as_str().is_some_and(|m| m.contains(&id))
            })
        }))
        .await?;
        set("client_id", Some(issued_id.clone())).await?;
        own("the client_id put back did not make the client Ready", Box::new(|o| ready(o).is_some_and(|(s, _, _)| s == "True"))).await?;
        ensure!(
            hostile_as.counters().registrations_created == registrations,
            "tampering with own-client-registration made the operator register the client again"
        );

        // Tampering with the key state itself: `<name>-keys` overwritten with garbage. There is
        // no other copy of the keys to restore from, so the client must say so (CorruptState),
        // and must neither generate keys and register anew nor serve anything.
        let patch = json!({"data": {"state.json": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "garbage")}});
        Api::<Secret>::namespaced(ctx.client.clone(), &hostile)
            .patch("own-client-keys", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = tpp_api(&ctx.client, &hostile, "TppClient").get("own-client").await?;
            if ready(&got).is_some_and(|(s, r, m)| s == "False" && r == "CorruptState" && m.contains("own-client-keys")) {
                break;
            }
            ensure!(Instant::now() < deadline, "garbage in own-client-keys was not reported as CorruptState: {:?}", ready(&got));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ensure!(
            hostile_as.counters().registrations_created == registrations,
            "a garbled key state made the operator register the client again"
        );

        // Meanwhile the victim kept refreshing, and its token never expired.
        let deadline = Instant::now() + Duration::from_secs(30);
        while victim_as.counters().requests_to(Endpoint::Token) < victim_tokens_before + 3 {
            ensure!(Instant::now() < deadline, "the victim's client stopped refreshing");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", Duration::from_secs(10)).await?;

        // The operator is alive and called no host but the two sandboxes; its metrics go to
        // the leak audit.
        let mut op = op;
        ensure!(op.is_running(), "the operator exited");
        ctx.audit_metrics(op.metrics().await?);
        let allowed = [origin(victim_as.issuer()), origin(hostile_as.issuer())];
        let log = op.log();
        let called: std::collections::BTreeSet<String> = log
            .lines()
            .filter(|l| l.contains("as call"))
            .filter_map(|l| l.split("origin=").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned())
            .collect();
        ensure!(!called.is_empty(), "no AS call was logged: the check would prove nothing");
        for o in &called {
            let host = o.trim_start_matches("https://").split(':').next().unwrap_or_default();
            ensure!(
                allowed.iter().any(|a| a == o) || host == "127.0.0.1" || host == "localhost",
                "the operator called {o}, which is not an allowed AS"
            );
        }
        eprintln!(
            "hostile tenant: {} reported objects + 30 flood clients + 7 tampering actions; AS origins called: {called:?}",
            cases.len()
        );
        for name in [&victim_only, &shared] {
            cluster_api.delete(name, &DeleteParams::default()).await.ok();
        }
        Ok(())
    })
    .await;
}

/// Events of the test namespace with `reason`, their notes.
async fn notes(ctx: &e2e::TestContext, reason: &str) -> Result<Vec<String>> {
    let events = ctx
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&Default::default())
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.message.unwrap_or_default())
        .collect())
}

#[tokio::test]
async fn a_tenant_patching_renew_tokens_in_a_loop_gets_one_token_request_per_floor() {
    with_namespace("verbloop", |ctx| async move {
        let sandbox = start_sandbox(&ctx, |c| c.token_lifetime = Duration::from_secs(3_600)).await?;
        let op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("bank", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "bank", json!({}))).await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", Duration::from_secs(90)).await?;
        let before = sandbox.counters().requests_to(Endpoint::Token);

        // Twenty new values: the first is acted on at once (one token request), the nineteen
        // after it, as fast as the API server takes them, are deferred and say until when.
        let clients = api(&ctx, "TppClient");
        const PATCHES: usize = 20;
        let renew = |i: usize| json!({"metadata": {"annotations": {"tpp.dev/renew-tokens": format!("loop-{i}")}}});
        clients.patch("payments", &PatchParams::default(), &Patch::Merge(&renew(0))).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while sandbox.counters().requests_to(Endpoint::Token) == before {
            ensure!(Instant::now() < deadline, "the first tpp.dev/renew-tokens value was never acted on");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 1..PATCHES {
            clients.patch("payments", &PatchParams::default(), &Patch::Merge(&renew(i))).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let deferred = notes(&ctx, "TriggerDeferred").await?;
            if !deferred.is_empty() {
                ensure!(
                    deferred.iter().all(|n| n.contains("tpp.dev/renew-tokens will be acted on at") && !n.contains("loop-")),
                    "deferral notes: {deferred:?}"
                );
                break;
            }
            ensure!(Instant::now() < deadline, "no TriggerDeferred event after {PATCHES} patches");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let requests = sandbox.counters().requests_to(Endpoint::Token) - before;
        eprintln!("{PATCHES} patches of tpp.dev/renew-tokens: {requests} token request(s)");
        ensure!(requests == 1, "{PATCHES} patches caused {requests} token requests; the floor allows 1 per 10 minutes");
        ctx.audit_metrics(op.metrics().await?);
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", Duration::from_secs(10)).await?;
        Ok(())
    })
    .await;
}

fn origin(issuer: &str) -> String {
    let rest = issuer.trim_start_matches("https://");
    format!("https://{}", rest.split('/').next().unwrap_or_default())
}
