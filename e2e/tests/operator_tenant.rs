//! A tenant against the operator's own surfaces, on a real kube-apiserver against the sandbox
//! AS (docs/security.md): a tampered `<name>-jwks` ConfigMap never reaches `/jwks` and is
//! restored; a flood of `/jwks` requests costs no Kubernetes API request; `/metrics` needs a
//! token the API server accepts for a user allowed to read it, and each port serves only its
//! own paths. And, asked of the API server's authorizer (SubjectAccessReview), what the
//! operator's ServiceAccount may do under the chart's RBAC with `watchNamespaces`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    TestContext,
    fixtures::*,
    operator::{OperatorOptions, OperatorProcess},
    with_namespace,
};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Event, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject},
};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(90);

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn configmap_jwks(cm: &ConfigMap) -> Option<String> {
    cm.data.as_ref()?.get("jwks.json").cloned()
}

/// The sum of the operator's metric series whose names start with one of `prefixes`.
async fn metric_sum(op: &OperatorProcess, prefixes: &[&str]) -> Result<f64> {
    let text = op.metrics().await?;
    Ok(text
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The sum of every Kubernetes API request the operator counted, budgeted or not.
async fn kube_requests(op: &OperatorProcess) -> Result<f64> {
    metric_sum(
        op,
        &[
            "tpp_operator_kube_requests_total{",
            "tpp_operator_kube_requests_unbudgeted_total{",
        ],
    )
    .await
}

/// A Ready client whose tokens outlive the test (no refresh while it measures).
async fn ready_client(
    ctx: &TestContext,
) -> Result<(e2e::sandbox::RunningSandbox, OperatorProcess)> {
    let sandbox = start_sandbox(ctx, |c| c.token_lifetime = Duration::from_secs(3600)).await?;
    let op = start_operator(ctx).await?;
    apply(ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
    apply(ctx, client("payments", "sandbox", json!({}))).await?;
    wait_condition(ctx, "TppClient", "payments", "Ready", "True", READY).await?;
    Ok((sandbox, op))
}

#[tokio::test]
async fn a_foreign_key_added_to_the_jwks_configmap_is_never_served_and_the_configmap_is_restored() {
    with_namespace("jwks-tamper", |ctx| async move {
        let (_sandbox, op) = ready_client(&ctx).await?;
        let url = format!("{}/jwks/{}/payments", op.jwks_url, ctx.namespace);
        let http = reqwest::Client::new();
        let served: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let genuine = kids(&served);
        ensure!(!genuine.is_empty(), "no key served: {served}");
        let cms: Api<ConfigMap> = ctx.api();
        let original = configmap_jwks(&cms.get("payments-jwks").await?).context("jwks.json")?;

        // A tenant who may patch ConfigMaps adds a key it holds.
        let foreign = tpp_operator::identity::PrivateKey::generate(
            tpp_operator::identity::KeyAlgorithm::EcP256,
        )?;
        let mut tampered: Value = serde_json::from_str(&original)?;
        let mut jwk = serde_json::to_value(foreign.public_jwk())?;
        jwk["kid"] = "attacker".into();
        tampered["keys"].as_array_mut().context("keys")?.push(jwk);
        let patch = json!({"data": {"jwks.json": serde_json::to_string(&tampered)?}});
        cms.patch(
            "payments-jwks",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;

        // Until the copy is restored (and a while after), /jwks serves the genuine set only.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut restored = false;
        while Instant::now() < deadline {
            let served: Value = http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            ensure!(kids(&served) == genuine, "/jwks served {served}");
            if configmap_jwks(&cms.get("payments-jwks").await?).as_deref()
                == Some(original.as_str())
            {
                restored = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(restored, "the tampered ConfigMap was not restored");
        let events = ctx.api::<Event>().list(&Default::default()).await?;
        ensure!(
            events
                .items
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("JwksRestored")
                    && e.message.as_deref() == Some("JWKS ConfigMap was modified; restored")),
            "no JwksRestored Warning event"
        );

        // Deleted: written again.
        cms.delete("payments-jwks", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(cm) = cms.get_opt("payments-jwks").await?
                && configmap_jwks(&cm).as_deref() == Some(original.as_str())
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the deleted ConfigMap was not restored"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let served: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ensure!(kids(&served) == genuine, "/jwks served {served}");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_jwks_requests_causes_no_kubernetes_api_request() {
    with_namespace("jwks-flood", |ctx| async move {
        let (_sandbox, op) = ready_client(&ctx).await?;
        let url = format!("{}/jwks/{}/payments", op.jwks_url, ctx.namespace);
        let unknown = format!("{}/jwks/{}/nobody", op.jwks_url, ctx.namespace);
        let http = reqwest::Client::new();
        let genuine = kids(
            &http
                .get(&url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?,
        );
        // The reconcile that made the client Ready may still be writing its status: wait until
        // the counters hold still over a second.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut before = kube_requests(&op).await?;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = kube_requests(&op).await?;
            if now == before {
                break;
            }
            before = now;
            ensure!(Instant::now() < deadline, "the operator never went quiet");
        }
        ensure!(before > 0.0, "the request counters do not count");
        let answers = || metric_sum(&op, &["tpp_operator_jwks_responses_total{"]);
        let answers_before = answers().await?;

        let (mut ok, mut refused, mut not_found) = (0, 0, 0);
        for i in 0..2000 {
            let target = if i % 10 == 9 { &unknown } else { &url };
            let r = http.get(target).send().await?;
            match r.status().as_u16() {
                200 => {
                    let body: Value = r.json().await?;
                    ensure!(kids(&body) == genuine, "request {i} served {body}");
                    ok += 1;
                }
                404 => not_found += 1,
                429 => {
                    ensure!(
                        r.headers().get("retry-after").is_some(),
                        "429 without Retry-After"
                    );
                    refused += 1;
                }
                other => bail!("request {i}: HTTP {other}"),
            }
        }
        ensure!(
            ok > 0 && ok + not_found + refused == 2000,
            "{ok} served, {not_found} unknown, {refused} refused"
        );
        ensure!(
            answers().await? - answers_before == 2000.0,
            "the /jwks answers are not all counted"
        );
        let after = kube_requests(&op).await?;
        ensure!(
            after == before,
            "2,000 /jwks requests caused {} Kubernetes API requests",
            after - before
        );
        Ok(())
    })
    .await;
}

/// A fresh token of ServiceAccount `name` (created) in the test namespace.
async fn service_account_token(ctx: &TestContext, name: &str) -> Result<String> {
    let sas: Api<ServiceAccount> = ctx.api();
    sas.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }),
    )
    .await?;
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    sas.create_token_request(name, &PostParams::default(), &tr)
        .await?
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")
}

#[tokio::test]
async fn metrics_need_a_reviewed_token_of_a_reader_and_each_port_serves_only_its_paths() {
    with_namespace("metrics-auth", |ctx| async move {
        let op = OperatorProcess::start(
            ctx.cp,
            &ctx.client,
            OperatorOptions {
                namespaces: vec![ctx.namespace.clone()],
                args: vec!["--metrics-auth".into(), "tokenreview".into()],
                ..Default::default()
            },
        )
        .await?;
        // The chart's <release>-metrics-reader, bound to one ServiceAccount.
        let reader = format!("metrics-reader-{}", ctx.namespace);
        let pp = PatchParams::apply("e2e").force();
        Api::<ClusterRole>::all(ctx.client.clone())
            .patch(
                &reader,
                &pp,
                &Patch::Apply(ClusterRole {
                    metadata: ObjectMeta {
                        name: Some(reader.clone()),
                        ..Default::default()
                    },
                    rules: Some(vec![PolicyRule {
                        non_resource_urls: Some(vec!["/metrics".into()]),
                        verbs: vec!["get".into()],
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            )
            .await?;
        Api::<ClusterRoleBinding>::all(ctx.client.clone())
            .patch(
                &reader,
                &pp,
                &Patch::Apply(ClusterRoleBinding {
                    metadata: ObjectMeta {
                        name: Some(reader.clone()),
                        ..Default::default()
                    },
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name: reader.clone(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: "scraper".into(),
                        namespace: Some(ctx.namespace.clone()),
                        ..Default::default()
                    }]),
                }),
            )
            .await?;
        let allowed = service_account_token(&ctx, "scraper").await?;
        let denied = service_account_token(&ctx, "bystander").await?;

        let http = reqwest::Client::new();
        let metrics = format!("{}/metrics", op.admin_url);
        let status = |token: Option<String>| {
            let req = http.get(&metrics);
            let req = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            async move { anyhow::Ok(req.send().await?.status().as_u16()) }
        };
        ensure!(status(None).await? == 401, "/metrics without a token");
        ensure!(
            status(Some("not-a-token".into())).await? == 401,
            "/metrics with a made-up token"
        );
        ensure!(
            status(Some(denied.clone())).await? == 403,
            "/metrics with a token of a user who may not read it"
        );
        // RBAC changes reach the authorizer within a moment: retry the allowed one briefly.
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            let r = http.get(&metrics).bearer_auth(&allowed).send().await?;
            if r.status().as_u16() == 200 {
                break r.text().await?;
            }
            ensure!(
                Instant::now() < deadline,
                "/metrics refused the reader: HTTP {}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure!(body.contains("tpp_operator_"), "no metrics served");
        // Reviews are cached: twenty more scrapes cost no review.
        let reviews = |text: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with("tpp_operator_kube_requests_unbudgeted_total{method=\"POST\"}")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let before = reviews(&body);
        ensure!(before >= 2.0, "the reviews are not counted: {before}");
        let mut last = String::new();
        for _ in 0..20 {
            last = http
                .get(&metrics)
                .bearer_auth(&allowed)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
        }
        ensure!(
            reviews(&last) == before,
            "cached scrapes caused reviews: {before} -> {}",
            reviews(&last)
        );

        // Each port serves only its own paths.
        let code = |url: String| {
            let http = http.clone();
            async move { anyhow::Ok(http.get(url).send().await?.status().as_u16()) }
        };
        ensure!(
            code(format!("{}/jwks/{}/payments", op.admin_url, ctx.namespace)).await? == 404,
            "/jwks on the admin port"
        );
        ensure!(
            code(format!("{}/metrics", op.jwks_url)).await? == 404,
            "/metrics on the JWKS port"
        );
        ensure!(
            code(format!("{}/healthz", op.jwks_url)).await? == 404,
            "/healthz on the JWKS port"
        );
        ensure!(
            code(format!("{}/healthz", op.admin_url)).await? == 200,
            "/healthz on the admin port"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_unlabelled_secret_with_the_credentials_name_is_never_written_and_the_client_waits_for_it_to_go()
 {
    with_namespace("name-conflict", |ctx| async move {
        use k8s_openapi::{ByteString, api::core::v1::Secret};
        // Someone's ingress TLS Secret happens to be called <name>-credentials.
        let secrets: Api<Secret> = ctx.api();
        let theirs = Secret {
            metadata: ObjectMeta {
                name: Some("payments-credentials".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(
                [
                    (
                        "tls.crt".to_owned(),
                        ByteString(b"their certificate".to_vec()),
                    ),
                    ("tls.key".to_owned(), ByteString(b"their key".to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let theirs = secrets.create(&PostParams::default(), &theirs).await?;
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "NameConflict")
        })
        .await?;
        let ready = condition(&o, "Ready").context("Ready")?;
        let message = ready["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("Secret \"payments-credentials\" already exists"),
            "the condition does not name the Secret: {message}"
        );
        // Nothing was registered at the AS for a client that could not store its answer.
        ensure!(
            sandbox.counters().registrations_created == 0,
            "registered although the name is taken"
        );
        // Several retries later the Secret is untouched.
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            let now = secrets.get("payments-credentials").await?;
            ensure!(
                now.metadata.resource_version == theirs.metadata.resource_version,
                "their Secret was written"
            );
            ensure!(
                now.data == theirs.data
                    && now.metadata.labels.is_none()
                    && now.metadata.owner_references.is_none(),
                "their Secret changed"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Once it is gone, the client gets its own.
        secrets
            .delete("payments-credentials", &DeleteParams::default())
            .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        let ours = secrets.get("payments-credentials").await?;
        ensure!(
            ours.metadata.owner_references.as_ref().is_some_and(|o| o
                .iter()
                .any(|r| r.kind == "TppClient" && r.name == "payments")),
            "the new Secret is not owned by the client"
        );
        ensure!(ours.metadata.resource_version != theirs.metadata.resource_version);
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn an_unlabelled_configmap_with_the_jwks_name_is_never_written() {
    with_namespace("cm-conflict", |ctx| async move {
        let cms: Api<ConfigMap> = ctx.api();
        let theirs = ConfigMap {
            metadata: ObjectMeta {
                name: Some("payments-jwks".into()),
                ..Default::default()
            },
            data: Some([("jwks.json".to_owned(), "{\"keys\":[]}".to_owned())].into()),
            ..Default::default()
        };
        let theirs = cms.create(&PostParams::default(), &theirs).await?;
        let sandbox = start_sandbox(&ctx, |_| {}).await?;
        let _op = start_operator(&ctx).await?;
        apply(&ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
        apply(&ctx, client("payments", "sandbox", json!({}))).await?;
        let o = wait_for(&ctx, "TppClient", "payments", READY, |o| {
            condition(o, "Ready").is_some_and(|c| c["reason"] == "NameConflict")
        })
        .await?;
        let ready = condition(&o, "Ready").context("Ready")?;
        let message = ready["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("ConfigMap \"payments-jwks\" already exists"),
            "the condition does not name the ConfigMap: {message}"
        );
        let now = cms.get("payments-jwks").await?;
        ensure!(
            now.metadata.resource_version == theirs.metadata.resource_version
                && now.data == theirs.data,
            "their ConfigMap was written"
        );
        cms.delete("payments-jwks", &DeleteParams::default())
            .await?;
        wait_condition(&ctx, "TppClient", "payments", "Ready", "True", READY).await?;
        Ok(())
    })
    .await;
}

/// Whether the API server allows `verb` on `resource` (core group unless `group`) in
/// `namespace` (cluster-wide when empty) to `user`: a SubjectAccessReview, asked as admin on
/// behalf of the operator's ServiceAccount (the answer the API server's authorizer gives).
async fn allowed(
    ctx: &TestContext,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> Result<bool> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!(
                    "system:serviceaccounts:{}",
                    e2e::operator::OPERATOR_NAMESPACE
                ),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: (!namespace.is_empty()).then(|| namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("SubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tokio::test]
async fn with_watch_namespaces_the_operator_can_read_no_secret_outside_them_and_nothing_it_does_not_need()
 {
    with_namespace("sar", |ctx| async move {
        // The chart's RBAC with watchNamespaces = [this namespace] (e2e/src/operator.rs).
        e2e::operator::namespaced_operator_kubeconfig(
            ctx.cp,
            &ctx.client,
            std::slice::from_ref(&ctx.namespace),
        )
        .await?;
        let user = format!(
            "system:serviceaccount:{}:{}-ns-{}",
            e2e::operator::OPERATOR_NAMESPACE,
            e2e::operator::RELEASE,
            ctx.namespace
        );
        let ns = ctx.namespace.as_str();
        // What it needs, in its namespace: the check is not vacuous.
        for (verb, group, resource) in [
            ("get", "", "secrets"),
            ("watch", "", "secrets"),
            ("patch", "", "configmaps"),
            ("list", "tpp.dev", "tppclients"),
            ("patch", "tpp.dev", "tppclients/status"),
        ] {
            ensure!(
                allowed(&ctx, &user, verb, group, resource, ns).await?,
                "{verb} {resource} in {ns} must be allowed"
            );
        }
        // Secrets and ConfigMaps nowhere else, not cluster-wide.
        for other in [
            "default",
            "kube-system",
            e2e::operator::OPERATOR_NAMESPACE,
            "",
        ] {
            for (verb, resource) in [
                ("get", "secrets"),
                ("list", "secrets"),
                ("watch", "secrets"),
                ("create", "secrets"),
                ("patch", "secrets"),
                ("get", "configmaps"),
                ("list", "configmaps"),
            ] {
                ensure!(
                    !allowed(&ctx, &user, verb, "", resource, other).await?,
                    "{verb} {resource} in {other:?} must be denied"
                );
            }
        }
        // Nothing it does not need, even in its own namespace.
        for (verb, group, resource, namespace) in [
            ("delete", "", "namespaces", ""),
            ("create", "", "namespaces", ""),
            ("create", "", "pods", ns),
            ("create", "", "pods/exec", ns),
            ("delete", "", "secrets", ns),
            ("delete", "", "configmaps", ns),
            ("update", "", "secrets", ns),
            ("create", "", "serviceaccounts/token", ns),
            ("create", "apps", "deployments", ns),
            ("create", "rbac.authorization.k8s.io", "rolebindings", ns),
            ("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
            ("delete", "tpp.dev", "tppclients", ns),
            ("create", "tpp.dev", "clusterauthorizationservers", ""),
        ] {
            ensure!(
                !allowed(&ctx, &user, verb, group, resource, namespace).await?,
                "{verb} {group}/{resource} in {namespace:?} must be denied"
            );
        }
        Ok(())
    })
    .await;
}
