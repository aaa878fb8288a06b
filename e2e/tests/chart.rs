//! The Helm chart, statically: `helm lint` passes for every configuration in
//! `tests/chart/values/`, `helm template` of each matches its committed golden (and
//! `deploy/*.yaml` match a fresh render), the CRDs the chart installs are those of `crds/`, two
//! releases never collide, every setting maps to a real operator flag, namespaced mode grants
//! Secrets only in the watched namespaces, and the values schema refuses typos. Needs helm:
//! `$TPP_HELM`, else `hack/build-helm.sh` (which builds it once into the cache).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use clap::CommandFactory;
use e2e::control_plane::repo_root;
use serde_yaml::Value;

fn helm() -> PathBuf {
    e2e::helm::helm().expect("helm")
}

fn chart() -> PathBuf {
    e2e::helm::chart()
}

fn case(name: &str) -> PathBuf {
    repo_root().join(format!("e2e/tests/chart/values/{name}.yaml"))
}

fn run_helm(args: &[&str]) -> (bool, String, String) {
    e2e::helm::run(args).expect("run helm")
}

fn render(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    e2e::helm::template(release, namespace, extra).expect("helm template")
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| s(d, &["kind"]) == kind).collect()
}

/// Environment of the operator container: name → value (valueFrom entries as "").
fn operator_env(docs: &[Value]) -> BTreeMap<String, String> {
    let deployment = of_kind(docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (s(e, &["name"]).to_owned(), s(e, &["value"]).to_owned()))
        .collect()
}

fn golden_cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(repo_root().join("e2e/tests/chart/values"))
        .expect("values folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

#[test]
fn helm_lint_passes_strictly_for_every_configuration() {
    let cases = golden_cases();
    assert!(cases.contains(&"default".to_owned()) && cases.contains(&"namespaced".to_owned()));
    for name in cases {
        let values = case(&name);
        let (ok, stdout, stderr) = run_helm(&[
            "lint",
            "--strict",
            chart().to_str().unwrap(),
            "-f",
            values.to_str().unwrap(),
        ]);
        assert!(
            ok,
            "helm lint --strict ({name}) failed:\n{stdout}\n{stderr}"
        );
    }
}

/// The rendered files (folders under deploy/, such as argocd/ and grafana/, are not the chart's).
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for sub in ["e2e/tests/chart/golden", "deploy"] {
        for e in std::fs::read_dir(dir.join(sub)).expect("rendered folder") {
            let p = e.expect("entry").path();
            if !p.is_file() {
                continue;
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

#[test]
fn committed_goldens_and_deploy_manifests_match_a_fresh_render() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(repo_root().join("hack/render-chart.sh"))
        .arg(tmp.path())
        .env("HELM", helm())
        .output()
        .expect("run hack/render-chart.sh");
    assert!(
        out.status.success(),
        "hack/render-chart.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = files_under(tmp.path());
    let committed = files_under(&repo_root());
    assert_eq!(
        fresh, committed,
        "rendered and committed files differ: run `make chart-render` and commit the result"
    );
    for rel in fresh {
        let want = std::fs::read_to_string(tmp.path().join(&rel)).unwrap();
        let have = std::fs::read_to_string(repo_root().join(&rel)).unwrap_or_default();
        assert!(
            want == have,
            "{} is out of date with the chart: run `make chart-render` and commit the result",
            rel.display()
        );
    }
}

#[test]
fn the_chart_installs_the_crds_of_the_crds_folder_kept_on_uninstall() {
    let crds = |extra: &[&str]| {
        let docs = render("r", "tpp-system", extra);
        of_kind(&docs, "CustomResourceDefinition")
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let kept = crds(&[]);
    assert_eq!(kept.len(), tpp_operator::crd::all().len());
    for (file, _) in tpp_operator::crd::all() {
        let text = std::fs::read_to_string(repo_root().join("crds").join(file)).unwrap();
        let mut want: Value = serde_yaml::from_str(&text).unwrap();
        let name = s(&want, &["metadata", "name"]).to_owned();
        let mut have = kept
            .iter()
            .find(|d| s(d, &["metadata", "name"]) == name)
            .unwrap_or_else(|| panic!("the chart renders no CRD {name}"))
            .clone();
        assert_eq!(
            s(
                &have,
                &["metadata", "annotations", "helm.sh/resource-policy"]
            ),
            "keep",
            "{name}"
        );
        // Apart from our label and annotation, byte for byte the CRD of crds/.
        for v in [&mut want, &mut have] {
            let meta = v["metadata"].as_mapping_mut().unwrap();
            meta.remove("annotations");
            meta.remove("labels");
        }
        assert_eq!(
            numbers_as_floats(&have),
            numbers_as_floats(&want),
            "{name} differs from crds/{file}"
        );
    }
    for d in crds(&["--set", "crds.keep=false"]) {
        assert!(d["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
    }
    assert!(crds(&["--set", "crds.enabled=false"]).is_empty());
}

/// `v` as JSON with every number a float: Helm's fromYaml/toYaml writes `minimum: 0.0` as `0`.
fn numbers_as_floats(v: &Value) -> serde_json::Value {
    fn walk(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            J::Number(n) => n.as_f64().map(J::from).unwrap_or(J::Number(n)),
            J::Array(a) => J::Array(a.into_iter().map(walk).collect()),
            J::Object(o) => J::Object(o.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            other => other,
        }
    }
    walk(serde_json::to_value(v).expect("YAML as JSON"))
}

/// (kind, namespace, name) of every object, namespace "" for cluster-scoped ones.
fn identities(docs: &[Value]) -> BTreeSet<(String, String, String)> {
    docs.iter()
        .filter(|d| s(d, &["kind"]) != "CustomResourceDefinition")
        .map(|d| {
            (
                s(d, &["kind"]).to_owned(),
                s(d, &["metadata", "namespace"]).to_owned(),
                s(d, &["metadata", "name"]).to_owned(),
            )
        })
        .collect()
}

#[test]
fn two_releases_share_no_object_name_nor_lease() {
    for (ns_a, ns_b) in [("tpp-system", "tpp-system"), ("team-a", "team-b")] {
        let a = render("blue", ns_a, &["--set", "crds.enabled=false"]);
        let b = render("green", ns_b, &["--set", "crds.enabled=false"]);
        let shared: Vec<_> = identities(&a)
            .intersection(&identities(&b))
            .cloned()
            .collect();
        assert!(shared.is_empty(), "both releases write {shared:?}");
        assert_ne!(
            operator_env(&a)["TPP_OPERATOR_LEADER_ELECTION_LEASE"],
            operator_env(&b)["TPP_OPERATOR_LEADER_ELECTION_LEASE"]
        );
    }
}

#[test]
fn watching_all_namespaces_sets_no_namespaces_variable() {
    let default = render("r", "tpp-system", &[]);
    assert!(!operator_env(&default).contains_key("TPP_OPERATOR_NAMESPACES"));
    let namespaced = render(
        "r",
        "tpp-system",
        &["-f", case("namespaced").to_str().unwrap()],
    );
    assert_eq!(
        operator_env(&namespaced)["TPP_OPERATOR_NAMESPACES"],
        "payments,accounts"
    );
}

#[test]
fn every_operator_variable_the_chart_sets_is_a_real_flag() {
    let known: BTreeSet<String> = tpp_operator::config::Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for name in golden_cases() {
        let docs = render("r", "tpp-system", &["-f", case(&name).to_str().unwrap()]);
        for var in operator_env(&docs).keys() {
            if var.starts_with("TPP_OPERATOR_") {
                assert!(
                    known.contains(var),
                    "{name}: {var} is no flag of the operator"
                );
            }
        }
        let deployment = of_kind(&docs, "Deployment")[0];
        let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
        for arg in args.as_sequence().into_iter().flatten() {
            let flag = arg.as_str().unwrap().trim_start_matches("--");
            let flag = flag.split('=').next().unwrap();
            assert!(
                tpp_operator::config::Config::command()
                    .get_arguments()
                    .any(|a| a.get_long() == Some(flag)),
                "{name}: --{flag} is no flag of the operator"
            );
        }
    }
}

#[test]
fn the_operator_accepts_every_value_the_chart_sets() {
    let command = tpp_operator::config::Config::command();
    for name in golden_cases() {
        let docs = render("r", "tpp-system", &["-f", case(&name).to_str().unwrap()]);
        let mut argv = vec!["tpp-operator".to_owned()];
        for (var, value) in operator_env(&docs) {
            // Values the kubelet expands ($(POD_IP)) are not the operator's to parse.
            if !var.starts_with("TPP_OPERATOR_") || value.contains("$(") {
                continue;
            }
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e.to_string_lossy() == var))
                .unwrap_or_else(|| panic!("{name}: {var} is no flag of the operator"));
            let flag = arg.get_long().unwrap_or_default();
            if arg.get_action().takes_values() {
                argv.push(format!("--{flag}={value}"));
            } else {
                // A switch: the environment's `true`/`false` is its presence.
                assert!(value == "true" || value == "false", "{name}: {var}={value}");
                if value == "true" {
                    argv.push(format!("--{flag}"));
                }
            }
        }
        if let Err(e) = <tpp_operator::config::Config as clap::Parser>::try_parse_from(&argv) {
            panic!("{name}: the operator refuses the chart's values {argv:?}: {e}");
        }
    }
}

fn grants_secrets(role: &Value) -> bool {
    role["rules"].as_sequence().into_iter().flatten().any(|r| {
        r["resources"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|x| x.as_str() == Some("secrets"))
    })
}

#[test]
fn namespaced_mode_grants_secrets_only_in_the_watched_namespaces() {
    let docs = render(
        "r",
        "tpp-system",
        &["-f", case("namespaced").to_str().unwrap()],
    );
    for cr in of_kind(&docs, "ClusterRole") {
        assert!(!grants_secrets(cr), "a ClusterRole grants Secrets");
    }
    let mut with_secrets: Vec<&str> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| grants_secrets(r))
        .map(|r| s(r, &["metadata", "namespace"]))
        .collect();
    with_secrets.sort();
    assert_eq!(with_secrets, ["accounts", "payments"]);
    // Each such Role is bound to the operator's ServiceAccount.
    let bound: BTreeSet<&str> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| s(b, &["roleRef", "name"]) == "tpp")
        .map(|b| s(b, &["metadata", "namespace"]))
        .collect();
    assert_eq!(bound, BTreeSet::from(["accounts", "payments"]));
    // Cluster-wide mode: one ClusterRole grants them.
    let default = render("r", "tpp-system", &[]);
    assert!(
        of_kind(&default, "ClusterRole")
            .into_iter()
            .any(grants_secrets)
    );
    assert!(!of_kind(&default, "Role").into_iter().any(grants_secrets));
}

#[test]
fn the_values_schema_refuses_a_misspelt_key_and_a_wrong_type() {
    for (set, expect) in [
        ("replica=3", "replica"),
        ("image.tags=1.0", "tags"),
        ("logLevel=verbose", "logLevel"),
        ("adminPort=http", "adminPort"),
        // The operator parses host:port as a socket address: no names, IPv6 in brackets.
        ("adminHost=localhost", "adminHost"),
        ("adminHost=::", "adminHost"),
    ] {
        let chart = chart();
        let (ok, _, stderr) = run_helm(&["template", "r", chart.to_str().unwrap(), "--set", set]);
        assert!(!ok, "--set {set} was accepted");
        assert!(stderr.contains(expect), "--set {set}: {stderr}");
    }
}

#[test]
fn only_operator_pods_match_the_operator_selector() {
    for name in golden_cases() {
        let docs = render("r", "tpp-system", &["-f", case(&name).to_str().unwrap()]);
        let selector = &of_kind(&docs, "Deployment")[0]["spec"]["selector"]["matchLabels"];
        let selector = selector.as_mapping().expect("matchLabels");
        for pod in of_kind(&docs, "Pod") {
            let labels = &pod["metadata"]["labels"];
            assert!(
                !selector.iter().all(|(k, v)| &labels[k] == v),
                "{name}: the test pod {} would count as an operator replica",
                s(pod, &["metadata", "name"])
            );
        }
    }
}

#[test]
fn on_the_host_network_each_replica_binds_its_node_ip_and_is_replaced_one_at_a_time() {
    let docs = render(
        "r",
        "tpp-system",
        &["-f", case("hostnetwork").to_str().unwrap()],
    );
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["hostNetwork"],
        Value::Bool(true)
    );
    assert_eq!(
        operator_env(&docs)["TPP_OPERATOR_ADMIN_ADDRESS"],
        "$(POD_IP):8080"
    );
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"].as_u64(),
        Some(0)
    );
    let default = render("r", "tpp-system", &[]);
    assert_eq!(
        operator_env(&default)["TPP_OPERATOR_ADMIN_ADDRESS"],
        "0.0.0.0:8080"
    );
}

#[test]
fn the_operator_pod_runs_as_non_root_with_a_read_only_root() {
    let docs = render("r", "tpp-system", &[]);
    let spec = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(spec["securityContext"]["runAsUser"].as_u64(), Some(65532));
    let c = &spec["containers"][0]["securityContext"];
    assert_eq!(c["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(c["allowPrivilegeEscalation"], Value::Bool(false));
    assert!(spec["hostNetwork"].is_null());
}

#[test]
fn the_jwks_port_has_a_service_of_its_own_and_the_ingress_reaches_nothing_else() {
    let docs = render(
        "r",
        "tpp-system",
        &["-f", case("namespaced").to_str().unwrap()],
    );
    let env = operator_env(&docs);
    assert_eq!(env["TPP_OPERATOR_ADMIN_ADDRESS"], "0.0.0.0:8080");
    assert_eq!(env["TPP_OPERATOR_JWKS_ADDRESS"], "0.0.0.0:8081");
    let ports = |svc: &Value| -> Vec<String> {
        svc["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(|p| format!("{}:{}", s(p, &["name"]), p["port"].as_u64().unwrap_or(0)))
            .collect()
    };
    let services: BTreeMap<&str, Vec<String>> = of_kind(&docs, "Service")
        .into_iter()
        .map(|svc| (s(svc, &["metadata", "name"]), ports(svc)))
        .collect();
    assert_eq!(
        services,
        BTreeMap::from([
            ("tpp", vec!["admin:8080".to_owned()]),
            ("tpp-jwks", vec!["jwks:8081".to_owned()]),
        ])
    );
    let ingress = of_kind(&docs, "Ingress")[0];
    for rule in ingress["spec"]["rules"].as_sequence().expect("rules") {
        for path in rule["http"]["paths"].as_sequence().expect("paths") {
            assert_eq!(s(path, &["backend", "service", "name"]), "tpp-jwks");
            assert_eq!(s(path, &["backend", "service", "port", "name"]), "jwks");
        }
    }
    // The NetworkPolicy admits the ingress controller to the JWKS port only.
    let policy = of_kind(&docs, "NetworkPolicy")[0];
    let rules = policy["spec"]["ingress"].as_sequence().expect("ingress");
    let jwks_rule = rules
        .iter()
        .find(|r| r["ports"][0]["port"] == "jwks")
        .expect("a rule for the JWKS port");
    assert_eq!(
        s(
            &jwks_rule["from"][0],
            &[
                "namespaceSelector",
                "matchLabels",
                "kubernetes.io/metadata.name"
            ]
        ),
        "ingress-nginx"
    );
}

#[test]
fn token_review_metrics_auth_grants_the_reviews_and_a_metrics_reader_role() {
    let grants = |role: &Value, group: &str, resource: &str| {
        role["rules"].as_sequence().into_iter().flatten().any(|r| {
            r["apiGroups"][0] == group && r["resources"][0] == resource && r["verbs"][0] == "create"
        })
    };
    let docs = render(
        "r",
        "tpp-system",
        &["-f", case("namespaced").to_str().unwrap()],
    );
    assert_eq!(
        operator_env(&docs)["TPP_OPERATOR_METRICS_AUTH"],
        "tokenreview"
    );
    let operator = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| s(r, &["metadata", "name"]) == "tpp")
        .expect("the operator's ClusterRole");
    assert!(grants(operator, "authentication.k8s.io", "tokenreviews"));
    assert!(grants(
        operator,
        "authorization.k8s.io",
        "subjectaccessreviews"
    ));
    let reader = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| s(r, &["metadata", "name"]) == "tpp-metrics-reader")
        .expect("the metrics reader ClusterRole");
    assert_eq!(
        reader["rules"][0]["nonResourceURLs"][0].as_str(),
        Some("/metrics")
    );
    let monitor = of_kind(&docs, "ServiceMonitor")[0];
    assert!(s(&monitor["spec"]["endpoints"][0], &["bearerTokenFile"]).ends_with("/token"));

    // The default (none): no review rights, no reader role.
    let default = render("r", "tpp-system", &[]);
    assert_eq!(operator_env(&default)["TPP_OPERATOR_METRICS_AUTH"], "none");
    for role in of_kind(&default, "ClusterRole") {
        assert!(!grants(role, "authentication.k8s.io", "tokenreviews"));
        assert_ne!(
            s(role, &["metadata", "name"]),
            "r-tpp-operator-metrics-reader"
        );
    }
}
