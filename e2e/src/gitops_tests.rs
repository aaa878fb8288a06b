//! The Argo CD health checks and actions on the fixtures beside them (Argo CD's
//! `health_test.yaml` format), the generated `argocd-cm` data against the committed file, and
//! the kstatus rules on the same fixtures.

use super::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    input_path: String,
    health_status: Expected,
}

#[derive(Deserialize)]
struct Expected {
    status: String,
    message: String,
}

fn fixture(kind: &str, rel: &str) -> Value {
    let path = customizations_dir().join(kind).join(rel);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn health_tests(kind: &str) -> Vec<HealthTest> {
    let path = customizations_dir().join(kind).join("health_test.yaml");
    let text = std::fs::read_to_string(&path).expect("health_test.yaml");
    serde_yaml::from_str::<HealthTests>(&text)
        .expect("health_test.yaml")
        .tests
}

fn check_health_tests(kind: &str) {
    let tests = health_tests(kind);
    assert!(tests.len() >= 6, "{kind}: too few health tests");
    let mut failures = vec![];
    for t in &tests {
        let obj = fixture(kind, &t.input_path);
        let got = argo_health(kind, &obj).unwrap_or_else(|e| panic!("{}: {e:#}", t.input_path));
        if got.status != t.health_status.status || got.message != t.health_status.message {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {:?}",
                t.input_path,
                t.health_status.status,
                t.health_status.message,
                got.status,
                got.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every status Argo CD knows for a custom resource is covered where it applies.
    let statuses: std::collections::BTreeSet<_> = tests
        .iter()
        .map(|t| t.health_status.status.as_str())
        .collect();
    for s in ["Healthy", "Progressing", "Degraded"] {
        assert!(statuses.contains(s), "{kind}: no fixture is {s}");
    }
}

#[test]
fn scripts_run_in_lua_5_1_as_in_argo_cd() {
    let lua = interpreter(&Value::Null).unwrap();
    let version: String = lua.globals().get("_VERSION").unwrap();
    assert_eq!(version, "Lua 5.1");
}

#[test]
fn tppclient_health_check_passes_its_argo_cd_health_tests() {
    check_health_tests("TppClient");
    let statuses: Vec<_> = health_tests("TppClient")
        .into_iter()
        .map(|t| t.health_status.status)
        .collect();
    assert!(statuses.iter().any(|s| s == "Suspended"));
}

#[test]
fn authorization_server_health_checks_pass_their_argo_cd_health_tests() {
    check_health_tests("AuthorizationServer");
    check_health_tests("ClusterAuthorizationServer");
}

#[test]
fn cluster_authorization_server_scripts_are_those_of_the_namespaced_kind() {
    for rel in [
        "health.lua",
        "actions/discovery.lua",
        "actions/refresh-discovery/action.lua",
    ] {
        assert_eq!(
            script("AuthorizationServer", rel).unwrap(),
            script("ClusterAuthorizationServer", rel).unwrap(),
            "{rel} differs between the two kinds"
        );
    }
}

#[test]
fn fixtures_are_valid_objects_of_their_kind() {
    use tpp_operator::crd::{AuthorizationServer, ClusterAuthorizationServer, TppClient};
    for kind in KINDS {
        for t in health_tests(kind) {
            let obj = fixture(kind, &t.input_path);
            assert_eq!(obj["kind"], kind, "{}", t.input_path);
            let parsed = match kind {
                "TppClient" => serde_json::from_value::<TppClient>(obj).map(|_| ()),
                "AuthorizationServer" => {
                    serde_json::from_value::<AuthorizationServer>(obj).map(|_| ())
                }
                _ => serde_json::from_value::<ClusterAuthorizationServer>(obj).map(|_| ()),
            };
            assert!(parsed.is_ok(), "{kind} {}: {parsed:?}", t.input_path);
        }
    }
}

#[test]
fn health_check_treats_json_null_as_absent() {
    let mut obj = fixture("TppClient", "testdata/ready.yaml");
    obj["status"]["observedGeneration"] = Value::Null;
    let h = argo_health("TppClient", &obj).unwrap();
    assert_eq!(h.status, "Progressing", "{h:?}");
}

/// Lua 5.1 has only doubles: compare JSON numbers by value.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalized(v))).collect())
        }
        _ => v.clone(),
    }
}

fn is_rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && s.parse::<jiff::Timestamp>().is_ok())
}

#[test]
fn tppclient_actions_set_the_operators_verb_annotations_and_nothing_else() {
    use tpp_operator::crd::annotations;
    let obj = fixture("TppClient", "testdata/ready.yaml");
    let listed = argo_actions("TppClient", &obj).unwrap();
    let expected = [
        ("renew-tokens", annotations::RENEW_TOKENS),
        ("rotate-keys", annotations::ROTATE_KEYS),
        ("renew-certificate", annotations::RENEW_CERTIFICATE),
    ];
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        action_names("TppClient").unwrap(),
        "discovery lists exactly the actions that have a script"
    );
    for (action, annotation) in expected {
        assert!(
            !listed[action].disabled,
            "{action} disabled on a running client"
        );
        let before = jiff::Timestamp::now();
        let out = argo_action("TppClient", action, &obj).unwrap();
        let value = &out["metadata"]["annotations"][annotation];
        assert!(is_rfc3339_utc(value), "{action}: {value}");
        let at: jiff::Timestamp = value.as_str().unwrap().parse().unwrap();
        assert!(
            at.as_second() >= before.as_second(),
            "{action}: a fresh value"
        );
        // Nothing else changed: the spec in particular (Argo CD would show it as drift).
        let mut rest = out.clone();
        rest["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        assert_eq!(
            normalized(&rest),
            normalized(&obj),
            "{action} changed more than its annotation"
        );
        // An existing annotation is kept.
        let mut annotated = obj.clone();
        annotated["metadata"]["annotations"] = serde_json::json!({"team": "payments"});
        let out = argo_action("TppClient", action, &annotated).unwrap();
        assert_eq!(out["metadata"]["annotations"]["team"], "payments");
        assert!(is_rfc3339_utc(&out["metadata"]["annotations"][annotation]));
    }
}

#[test]
fn tppclient_actions_are_disabled_while_suspended_and_certificate_renewal_for_a_secret_ref() {
    let suspended = fixture("TppClient", "testdata/suspended.yaml");
    let listed = argo_actions("TppClient", &suspended).unwrap();
    assert!(listed.values().all(|a| a.disabled), "{listed:?}");
    let mut from_secret = fixture("TppClient", "testdata/ready.yaml");
    from_secret["spec"]["transportCertificate"] =
        serde_json::json!({"source": "SecretRef", "secretRef": {"name": "tls"}});
    let listed = argo_actions("TppClient", &from_secret).unwrap();
    assert!(listed["renew-certificate"].disabled);
    assert!(!listed["renew-tokens"].disabled);
}

#[test]
fn authorization_server_refresh_action_sets_the_refresh_discovery_annotation() {
    for kind in ["AuthorizationServer", "ClusterAuthorizationServer"] {
        let obj = fixture(kind, "testdata/ready.yaml");
        let listed = argo_actions(kind, &obj).unwrap();
        assert_eq!(listed.keys().collect::<Vec<_>>(), ["refresh-discovery"]);
        let out = argo_action(kind, "refresh-discovery", &obj).unwrap();
        let v = &out["metadata"]["annotations"][tpp_operator::crd::annotations::REFRESH_DISCOVERY];
        assert!(is_rfc3339_utc(v), "{kind}: {v}");
        assert_eq!(normalized(&out["spec"]), normalized(&obj["spec"]));
    }
}

const ARGOCD_CM: &str = "deploy/argocd/argocd-cm-patch.yaml";

#[test]
fn committed_argocd_cm_patch_matches_the_scripts() {
    let path = repo_root().join(ARGOCD_CM);
    let data = argocd_cm_data().unwrap();
    if std::env::var_os("TPP_REGENERATE").is_some() {
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": "argocd", "labels": {"app.kubernetes.io/part-of": "argocd"}},
            "data": data,
        });
        let text = format!(
            "# Generated from deploy/argocd/resource_customizations by\n# `TPP_REGENERATE=1 cargo test -p e2e --lib committed_argocd_cm_patch`. Do not edit.\n# Merge into argocd-cm (docs/gitops.md).\n{}",
            serde_yaml::to_string(&cm).unwrap()
        );
        std::fs::write(&path, text).unwrap();
    }
    let committed: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {ARGOCD_CM}: {e}")),
    )
    .unwrap();
    let want = serde_json::to_value(&data).unwrap();
    assert!(
        committed["data"] == want,
        "{ARGOCD_CM} is stale: run `TPP_REGENERATE=1 cargo test -p e2e --lib committed_argocd_cm_patch`"
    );
    // Argo CD reads each actions value as YAML with discovery.lua and definitions.
    for kind in KINDS {
        let actions: Value = serde_yaml::from_str(
            committed["data"][format!("resource.customizations.actions.tpp.dev_{kind}")]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert!(actions["discovery.lua"].as_str().is_some());
        assert!(!actions["definitions"].as_array().unwrap().is_empty());
    }
}

/// (fixture, kstatus verdict) for the fixtures written to the kstatus conventions.
const KSTATUS: [(&str, &str, KStatus); 13] = [
    ("TppClient", "testdata/onboarding.yaml", KStatus::InProgress),
    (
        "TppClient",
        "testdata/generation-behind.yaml",
        KStatus::InProgress,
    ),
    ("TppClient", "testdata/retrying.yaml", KStatus::InProgress),
    (
        "TppClient",
        "testdata/registration-rejected.yaml",
        KStatus::Failed,
    ),
    ("TppClient", "testdata/ready.yaml", KStatus::Current),
    ("TppClient", "testdata/suspended.yaml", KStatus::Current),
    ("TppClient", "testdata/deleting.yaml", KStatus::Terminating),
    (
        "AuthorizationServer",
        "testdata/ready.yaml",
        KStatus::Current,
    ),
    (
        "AuthorizationServer",
        "testdata/generation-behind.yaml",
        KStatus::InProgress,
    ),
    (
        "AuthorizationServer",
        "testdata/discovery-retrying.yaml",
        KStatus::InProgress,
    ),
    (
        "AuthorizationServer",
        "testdata/issuer-mismatch.yaml",
        KStatus::Failed,
    ),
    (
        "ClusterAuthorizationServer",
        "testdata/ready.yaml",
        KStatus::Current,
    ),
    (
        "ClusterAuthorizationServer",
        "testdata/issuer-mismatch.yaml",
        KStatus::Failed,
    ),
];

#[test]
fn kstatus_rules_give_the_expected_verdict_on_the_fixtures() {
    for (kind, rel, want) in KSTATUS {
        let obj = fixture(kind, rel);
        let (got, message) = kstatus(&obj);
        assert_eq!(got, want, "{kind} {rel}: {message}");
        assert_eq!(
            kstatus_violations(&obj),
            Vec::<String>::new(),
            "{kind} {rel}"
        );
    }
}

#[test]
fn kstatus_conventions_catch_a_not_ready_object_without_reconciling_or_stalled() {
    // What the issue found: Ready=False, no Reconciling/Stalled, so kstatus says Current.
    let obj = fixture("TppClient", "testdata/without-kstatus-conditions.yaml");
    assert_eq!(kstatus(&obj).0, KStatus::Current);
    let v = kstatus_violations(&obj);
    assert!(
        v.iter()
            .any(|m| m.contains("Current") && m.contains("Ready")),
        "{v:?}"
    );
    let mut both = fixture("TppClient", "testdata/retrying.yaml");
    both["status"]["conditions"][2]["status"] = "True".into();
    assert!(
        kstatus_violations(&both)
            .iter()
            .any(|m| m.contains("both True"))
    );
}

#[test]
fn argo_cd_and_kstatus_agree_on_the_fixtures() {
    // Argo CD Healthy ⇔ kstatus Current (a suspended client aside: Argo CD says Suspended);
    // Degraded ⇒ Failed where the Stalled condition is set; Progressing ⇒ InProgress or
    // Terminating.
    for (kind, rel, verdict) in KSTATUS {
        let obj = fixture(kind, rel);
        let h = argo_health(kind, &obj).unwrap();
        let ok = match h.status.as_str() {
            "Healthy" => verdict == KStatus::Current,
            "Suspended" => verdict == KStatus::Current,
            "Degraded" => verdict == KStatus::Failed,
            "Progressing" => matches!(verdict, KStatus::InProgress | KStatus::Terminating),
            _ => false,
        };
        assert!(
            ok,
            "{kind} {rel}: Argo CD {} vs kstatus {verdict:?}",
            h.status
        );
    }
}
