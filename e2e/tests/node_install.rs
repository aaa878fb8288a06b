//! The node tier: the chart installed with Helm, as users install it, on a real two-node
//! cluster (kubelet + containerd, kube-controller-manager, kube-scheduler; e2e/src/node.rs),
//! with the locally built image and the chart's default configuration (every namespace, two
//! replicas, leader election) plus only what a loopback-only node forces (host network, the
//! API server's loopback address, the local image). Then: an AuthorizationServer and a
//! TppClient become Ready; both replicas serve `/jwks`; a workload that mounts the
//! credentials Secret calls the AS's certificate-bound endpoint every second without a single
//! failure across token refreshes, a certificate renewal and a signing-key rotation; the
//! Deployment named in the TppClient's `spec.consumers.restartTargets` is rolled out for real
//! (kube-controller-manager, kube-scheduler and kubelet replace its pod) after the certificate
//! renewal and not by token refreshes; the
//! leader pod is deleted and the standby takes over; `helm upgrade` rolls the pods;
//! `helm uninstall` removes the operator (pods garbage-collected through their owners) and
//! keeps the CRDs and TppClients (`crds.keep`).
#![cfg(feature = "node-tier")] // make test-node; the node components must be built first

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    TestContext,
    fixtures::*,
    node::{self, NodeCluster},
    process::free_port,
    with_namespace_on,
};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{Pod, Secret},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tpp_operator::{
    consumers::plan::{self, Stamp},
    crd::RestartOn,
};

const RELEASE: &str = "tpp-operator";
const RELEASE_NAMESPACE: &str = "tpp-system";
/// Short tokens so that a few refreshes happen in minutes. The operator refreshes a third of
/// the lifetime (20 s) before expiry by default: more than the test kubelets' volume sync
/// delay (syncFrequency 5 s, at most ~7.5 s) plus a failover (a released Lease is taken at the
/// standby's next round, within 5 s).
const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

fn chart() -> String {
    e2e::control_plane::repo_root()
        .join("charts/tpp-operator")
        .display()
        .to_string()
}

/// Only what this loopback-only node forces on top of the chart's defaults.
fn values(cluster: &NodeCluster) -> Result<String> {
    let port = cluster
        .cp
        .server
        .rsplit(':')
        .next()
        .context("API server port")?;
    Ok(format!(
        "image: {{repository: tpp-operator, tag: e2e, pullPolicy: Never}}\nhostNetwork: true\nallowedAsHosts: [127.0.0.1, localhost]\nextraEnv:\n- {{name: KUBERNETES_SERVICE_HOST, value: \"127.0.0.1\"}}\n- {{name: KUBERNETES_SERVICE_PORT, value: \"{port}\"}}\n"
    ))
}

async fn operator_pods(ctx: &TestContext) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    Ok(pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
        .await?
        .items)
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status.as_ref()?.pod_ip.clone()
}

async fn lease_holder(ctx: &TestContext) -> Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    Ok(leases
        .get_opt(RELEASE)
        .await?
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Poll `check` every 250 ms until it returns `Some`, or fail after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting until {what}; last error: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The workload's counters (`GET /stats`).
async fn stats(port: u16) -> Result<Value> {
    Ok(reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/stats"))
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn count(stats: &Value, list: &str) -> usize {
    stats[list].as_array().map_or(0, Vec::len)
}

async fn annotate(ctx: &TestContext, name: &str, key: &str) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {key: jiff::Timestamp::now().to_string()}}});
    api(ctx, "TppClient")
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn secret_key(ctx: &TestContext, name: &str, key: &str) -> Result<Option<String>> {
    Ok(ctx
        .api::<Secret>()
        .get_opt(name)
        .await?
        .and_then(|s| secret_text(&s, key)))
}

/// The workload: mounts `payments-credentials` as a volume (never env or subPath) and calls
/// the sandbox's `/userinfo` every second over mTLS.
fn consumer_pod(url: &str, stats_port: u16) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "consumer", "labels": {"app": "consumer"}},
        "spec": {
            "hostNetwork": true,
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "consumer",
                "image": "tpp-e2e-consumer:e2e",
                "imagePullPolicy": "Never",
                "args": ["--url", url, "--stats-address", format!("127.0.0.1:{stats_port}"), "--token", "accounts"],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "credentials", "mountPath": "/var/run/tpp/credentials", "readOnly": true}]
            }],
            "volumes": [{"name": "credentials", "secret": {"secretName": "payments-credentials", "defaultMode": 0o440}}]
        }
    }))
    .expect("a valid Pod")
}

/// A workload that reads the credentials only at start (`spec.consumers.restartTargets`): the
/// pause image with the Secret mounted, so that a rollout restart is a real pod replacement.
const READER: &str = "reader";

fn reader_deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": READER},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": READER}},
            "template": {
                "metadata": {"labels": {"app": READER}},
                "spec": {
                    "hostNetwork": true,
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": READER,
                        "image": node::PAUSE_IMAGE,
                        "imagePullPolicy": "Never",
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "credentials", "mountPath": "/var/run/tpp/credentials", "readOnly": true}]
                    }],
                    "volumes": [{"name": "credentials", "secret": {"secretName": "payments-credentials", "defaultMode": 0o440}}]
                }
            }
        }
    }))
    .expect("a valid Deployment")
}

/// The `restart.tpp.dev/payments` stamp on the reader's pod template.
async fn reader_stamp(ctx: &TestContext) -> Result<Option<Stamp>> {
    let d = ctx.api::<Deployment>().get(READER).await?;
    Ok(d.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(&plan::annotation_key("payments")).cloned())
        .and_then(|v| Stamp::parse(&v)))
}

/// What the operator computes from the credentials Secret now (default `restartOn`).
async fn credentials_fingerprint(ctx: &TestContext) -> Result<Option<String>> {
    let s = ctx.api::<Secret>().get("payments-credentials").await?;
    Ok(s.data
        .as_ref()
        .and_then(|d| plan::fingerprint(d, &[RestartOn::Certificate, RestartOn::SigningKey])))
}

/// The reader's only pod once a rollout to `stamp` is complete: exactly one pod (every older
/// one deleted), Ready, created from the template that carries `stamp`.
async fn reader_rolled_out_to(ctx: &TestContext, stamp: &Stamp) -> Result<Option<Pod>> {
    let pods = ctx
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={READER}")))
        .await?
        .items;
    let [pod] = pods.as_slice() else {
        return Ok(None);
    };
    let stamped = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&plan::annotation_key("payments")))
        .is_some_and(|v| *v == stamp.render());
    Ok((stamped && pod_ready(pod)).then(|| pod.clone()))
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installed_operator_on_a_real_node_serves_a_workload_through_rotation_failover_upgrade_and_uninstall()
 {
    let cluster = match node::shared().await {
        Ok(c) => c,
        Err(e) => panic!("could not start the node cluster: {e:#}"),
    };
    with_namespace_on(&cluster.cp, "node", |ctx| async move {
        let namespace = ctx.namespace.clone();
        ctx.on_failure_print(move || {
            let mut out = cluster.log_tails(4000);
            for n in &cluster.nodes {
                out.push_str(&format!(
                    "----- operator containers on {} -----\n{}\n----- consumer on {} -----\n{}\n",
                    n.name,
                    tail_str(
                        &n.container_logs(RELEASE_NAMESPACE, RELEASE, "operator"),
                        12000
                    ),
                    n.name,
                    tail_str(&n.container_logs(&namespace, "consumer", "consumer"), 4000),
                ));
            }
            out
        });
        scenario(cluster, &ctx).await
    })
    .await;
}

fn tail_str(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

async fn scenario(cluster: &'static NodeCluster, ctx: &TestContext) -> Result<()> {
    let values_path = ctx.cp.dir.join("values-node.yaml");
    std::fs::write(&values_path, values(cluster)?)?;
    let values_arg = values_path.display().to_string();
    let chart = chart();

    // 1. helm install with the chart's defaults, waiting for both replicas to be Ready.
    let started = Instant::now();
    cluster
        .helm(&[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--values",
            &values_arg,
            "--wait",
            "--timeout",
            "5m",
        ])
        .await?;
    eprintln!(
        "node tier: helm install --wait took {:?}",
        started.elapsed()
    );
    let pods = operator_pods(ctx).await?;
    ensure!(
        pods.iter().filter(|p| pod_ready(p)).count() == 2,
        "two Ready replicas after helm install --wait"
    );
    let mut nodes: Vec<_> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    ensure!(
        nodes.len() == 2,
        "the replicas run on both nodes: {nodes:?}"
    );
    let leader = eventually(
        Duration::from_secs(60),
        "a replica holds the Lease",
        || async { lease_holder(ctx).await },
    )
    .await?;
    ensure!(
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some(leader.as_str())),
        "the Lease holder {leader} is one of the release's pods"
    );

    // 2. An AuthorizationServer and a TppClient become Ready; the TppClient names a Deployment
    // that reads the credentials at start as a restart target.
    let sandbox = start_sandbox(ctx, |c| c.token_lifetime = TOKEN_LIFETIME).await?;
    ctx.api::<Deployment>()
        .create(&PostParams::default(), &reader_deployment())
        .await?;
    apply(ctx, sandbox_server("sandbox", &sandbox, json!({}))).await?;
    apply(
        ctx,
        client(
            "payments",
            "sandbox",
            json!({"consumers": {
                "restartTargets": [{"kind": "Deployment", "name": READER}],
                "minRestartInterval": "5s",
            }}),
        ),
    )
    .await?;
    wait_condition(
        ctx,
        "TppClient",
        "payments",
        "Ready",
        "True",
        Duration::from_secs(180),
    )
    .await?;

    // Started before its credentials existed, the reader is restarted once for them (by the
    // chart's default RBAC, rbac.restartConsumers) and rolled out by the real controllers.
    let first_stamp = eventually(
        Duration::from_secs(120),
        "the reader's pod template carries a stamp for the current credentials",
        || async {
            let current = credentials_fingerprint(ctx).await?;
            Ok(reader_stamp(ctx)
                .await?
                .filter(|s| Some(&s.fingerprint) == current.as_ref()))
        },
    )
    .await?;
    let first_reader = eventually(
        Duration::from_secs(180),
        "the reader's stamped pod is Ready and the only one",
        || async { reader_rolled_out_to(ctx, &first_stamp).await },
    )
    .await?;

    // 3. Both replicas (leader and standby) serve the client's JWKS.
    let kid = secret_key(ctx, "payments-credentials", "signing.kid")
        .await?
        .context("signing.kid")?;
    for p in &pods {
        let ip = pod_ip(p).context("pod IP")?;
        let url = format!("http://{ip}:8081/jwks/{}/payments", ctx.namespace);
        let jwks: Value = reqwest::get(&url).await?.error_for_status()?.json().await?;
        ensure!(
            jwks["keys"]
                .as_array()
                .is_some_and(|ks| ks.iter().any(|k| k["kid"] == kid.as_str())),
            "{url} does not publish the active kid: {jwks}"
        );
    }

    // 4. The workload: ≥ 3 token refreshes, one certificate renewal, one key rotation, 0 failures.
    let stats_port = free_port()?;
    let url = format!("{}/userinfo", sandbox.mtls_base());
    ctx.api::<Pod>()
        .create(&PostParams::default(), &consumer_pod(&url, stats_port))
        .await?;
    let first = eventually(
        Duration::from_secs(120),
        "the workload made a successful call",
        || async {
            let s = stats(stats_port).await?;
            Ok((s["ok"].as_u64() > Some(0)).then_some(s))
        },
    )
    .await?;
    let tokens_at_start = count(&first, "tokens");
    let phase = Instant::now();
    eventually(
        Duration::from_secs(240),
        "the workload used 3 refreshed tokens",
        || async {
            let s = stats(stats_port).await?;
            Ok((count(&s, "tokens") >= tokens_at_start + 3).then_some(()))
        },
    )
    .await?;
    let refreshed = phase.elapsed();
    // Token refreshes alone restarted nothing: same stamp, same pod.
    ensure!(
        reader_stamp(ctx).await?.as_ref() == Some(&first_stamp),
        "token refreshes changed the reader's stamp {first_stamp:?}"
    );
    let still = reader_rolled_out_to(ctx, &first_stamp)
        .await?
        .context("the reader's pod is no longer the only Ready one after token refreshes")?;
    ensure!(
        uid(&still) == uid(&first_reader),
        "token refreshes replaced the reader's pod"
    );
    annotate(ctx, "payments", "tpp.dev/renew-certificate").await?;
    eventually(
        Duration::from_secs(120),
        "the workload used a renewed certificate",
        || async {
            let s = stats(stats_port).await?;
            Ok((count(&s, "certificates") >= 2).then_some(()))
        },
    )
    .await?;
    // The renewal restarts the reader: a new stamp, a new pod Ready, the old one gone.
    let renewed = credentials_fingerprint(ctx)
        .await?
        .context("a certificate in the credentials")?;
    ensure!(
        renewed != first_stamp.fingerprint,
        "the renewal did not change the fingerprint"
    );
    let restarted = Instant::now();
    let renewal_stamp = eventually(
        Duration::from_secs(120),
        "the reader's pod template carries a stamp for the renewed certificate",
        || async {
            Ok(reader_stamp(ctx)
                .await?
                .filter(|s| s.fingerprint == renewed))
        },
    )
    .await?;
    let renewed_reader = eventually(
        Duration::from_secs(180),
        "a new reader pod from the restamped template is Ready and the old one gone",
        || async { reader_rolled_out_to(ctx, &renewal_stamp).await },
    )
    .await?;
    ensure!(
        uid(&renewed_reader) != uid(&first_reader),
        "the reader's pod was not replaced"
    );
    eprintln!(
        "node tier: restart target rolled out in {:?} after the workload used the renewed certificate (pod {} -> {})",
        restarted.elapsed(),
        first_reader.metadata.name.as_deref().unwrap_or_default(),
        renewed_reader.metadata.name.as_deref().unwrap_or_default(),
    );
    annotate(ctx, "payments", "tpp.dev/rotate-keys").await?;
    let new_kid = eventually(
        Duration::from_secs(120),
        "the signing key rotated",
        || async {
            Ok(secret_key(ctx, "payments-credentials", "signing.kid")
                .await?
                .filter(|k| *k != kid))
        },
    )
    .await?;
    let tokens_at_rotation = count(&stats(stats_port).await?, "tokens");
    eventually(
        Duration::from_secs(120),
        "the workload used a token minted after the rotation",
        || async {
            let s = stats(stats_port).await?;
            Ok((count(&s, "tokens") > tokens_at_rotation).then_some(()))
        },
    )
    .await?;
    let after_rotation = stats(stats_port).await?;
    eprintln!(
        "node tier: workload {} calls, {} ok, {} failed over {:?} ({} tokens, {} certificates, {} Secret versions; 3 refreshes took {refreshed:?}; signing key {kid} -> {new_kid})",
        after_rotation["calls"],
        after_rotation["ok"],
        after_rotation["failed"],
        phase.elapsed(),
        count(&after_rotation, "tokens"),
        count(&after_rotation, "certificates"),
        count(&after_rotation, "snapshots"),
    );
    ensure!(
        after_rotation["failed"] == 0,
        "the workload had failed calls across refreshes, renewal and rotation: {after_rotation}"
    );
    ensure!(count(&after_rotation, "tokens") >= tokens_at_start + 4);

    // 5. Failover: delete the leader pod; the standby takes the Lease and reconciles.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    let leader = lease_holder(ctx).await?.context("a leader")?;
    let deleted = Instant::now();
    pods_api.delete(&leader, &DeleteParams::default()).await?;
    let new_leader = eventually(
        Duration::from_secs(120),
        "another replica holds the Lease",
        || async { Ok(lease_holder(ctx).await?.filter(|h| *h != leader)) },
    )
    .await?;
    let failover = deleted.elapsed();
    eprintln!(
        "node tier: failover {leader} -> {new_leader} took {failover:?} (delete to Lease held)"
    );
    let token = secret_key(ctx, "payments-credentials", "accounts.access_token").await?;
    annotate(ctx, "payments", "tpp.dev/renew-tokens").await?;
    eventually(
        Duration::from_secs(60),
        "the new leader refreshed the token",
        || async {
            let now = secret_key(ctx, "payments-credentials", "accounts.access_token").await?;
            Ok((now.is_some() && now != token).then_some(()))
        },
    )
    .await?;

    // 6. helm upgrade: a changed value rolls both replicas, one at a time.
    let started = Instant::now();
    cluster
        .helm(&[
            "upgrade",
            RELEASE,
            &chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--values",
            &values_arg,
            "--set",
            "concurrency=8",
            "--wait",
            "--timeout",
            "5m",
        ])
        .await?;
    eprintln!(
        "node tier: helm upgrade --wait took {:?}",
        started.elapsed()
    );
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    let d = deployments.get(RELEASE).await?;
    let env = serde_json::to_value(&d.spec.as_ref().context("spec")?.template)?;
    ensure!(
        env.to_string()
            .contains(r#"{"name":"TPP_OPERATOR_CONCURRENCY","value":"8"}"#),
        "the upgrade changed the pod template"
    );
    eventually(
        Duration::from_secs(180),
        "both replicas replaced and Ready",
        || async {
            let pods = operator_pods(ctx).await?;
            let upgraded = pods
                .iter()
                .filter(|p| {
                    pod_ready(p)
                        && serde_json::to_string(&p.spec).is_ok_and(|s| {
                            s.contains(r#"{"name":"TPP_OPERATOR_CONCURRENCY","value":"8"}"#)
                        })
                })
                .count();
            Ok((pods.len() == 2 && upgraded == 2).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "node tier: helm upgrade rolled both replicas in {:?}",
        started.elapsed()
    );
    // The upgraded leader keeps the workload supplied: one more refreshed token in use.
    let tokens_before = count(&stats(stats_port).await?, "tokens");
    eventually(
        Duration::from_secs(120),
        "the workload used a token refreshed after the upgrade",
        || async {
            let s = stats(stats_port).await?;
            Ok((count(&s, "tokens") > tokens_before).then_some(()))
        },
    )
    .await?;
    wait_condition(
        ctx,
        "TppClient",
        "payments",
        "Ready",
        "True",
        Duration::from_secs(60),
    )
    .await?;
    let end = stats(stats_port).await?;
    eprintln!(
        "node tier: workload through failover and upgrade too: {} calls, {} failed in total",
        end["calls"], end["failed"]
    );
    ensure!(
        end["failed"] == 0,
        "the workload had failed calls across the failover and the upgrade: {end}"
    );

    // 7. helm uninstall: the operator goes (pods garbage-collected through their owners); the
    // CRDs, the TppClient and its Secret stay (crds.keep).
    cluster
        .helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NAMESPACE,
            "--wait",
            "--timeout",
            "5m",
        ])
        .await?;
    eventually(
        Duration::from_secs(120),
        "the operator pods are gone",
        || async { Ok(operator_pods(ctx).await?.is_empty().then_some(())) },
    )
    .await?;
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    for crd in [
        "tppclients.tpp.dev",
        "authorizationservers.tpp.dev",
        "clusterauthorizationservers.tpp.dev",
    ] {
        ensure!(
            crds.get_opt(crd).await?.is_some(),
            "CRD {crd} kept after uninstall"
        );
    }
    ensure!(
        api(ctx, "TppClient").get_opt("payments").await?.is_some(),
        "the TppClient is kept"
    );
    ensure!(
        ctx.api::<Secret>()
            .get_opt("payments-credentials")
            .await?
            .is_some(),
        "its Secret is kept"
    );
    Ok(())
}
