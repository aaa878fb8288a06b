//! The monitoring artefacts name only metrics the operator exports: the Grafana dashboard
//! (deploy/grafana/tpp-operator.json), the alerting rules the chart ships
//! (charts/tpp-operator/files/alerts.rules.yaml) and the series their promtool tests record
//! (deploy/prometheus/alerts.test.yaml). The exported names come from a real rendering of the
//! metrics registry with every metric populated through its public API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure with a location

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::Value;
use tpp_operator::metrics::{ClientFacts, ErrorLabels, KubeRequestLabels, Metrics, OutcomeLabels};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Names of every sample line of a registry in which every metric has a value.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new(true);
    let at = |s| jiff::Timestamp::from_second(s).unwrap();
    m.record_client(
        "ns",
        "a",
        "ofm",
        ClientFacts {
            tokens: vec![("accounts".to_owned(), at(2000))],
            certificate_not_after: Some(at(3000)),
            signing_key_activated_at: Some(at(1000)),
            signing_key_expiry: Some(at(4000)),
        },
    );
    m.set_ready("ns", "a", "ofm", Some(true));
    m.registration_lost("ofm");
    m.observe_call("ofm", "token", "ok", 0.1);
    let outcome = OutcomeLabels {
        outcome: "ok".into(),
    };
    m.reconciles.get_or_create(&outcome).inc();
    m.token_refreshes.get_or_create(&outcome).inc();
    m.reconcile_errors
        .get_or_create(&ErrorLabels {
            reason: "FetchTokenFailed".into(),
        })
        .inc();
    m.kube_requests
        .get_or_create(&KubeRequestLabels {
            method: "GET".into(),
        })
        .inc();
    m.reconcile_duration.observe(0.1);
    m.status_writes.inc();
    m.reconciles_in_flight.set(1);
    m.render()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Every `tpp_…` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = vec![];
    let mut rest = expr;
    while let Some(i) = rest.find("tpp_") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn assert_exported(what: &str, expr: &str, exported: &BTreeSet<String>) {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{what}: names no tpp_ metric: {expr}");
    for name in names {
        assert!(
            exported.contains(&name),
            "{what}: {name} is not exported by the operator (exported: {exported:?})"
        );
    }
}

#[test]
fn the_metric_name_parser_finds_every_name_of_an_expression() {
    assert_eq!(
        metric_names(
            r#"sum by (server) (rate(tpp_operator_as_requests_total{outcome!="ok"}[5m])) / tpp_x"#
        ),
        ["tpp_operator_as_requests_total", "tpp_x"]
    );
}

#[test]
fn every_dashboard_panel_queries_only_metrics_the_operator_exports() {
    let exported = exported();
    let dash: Value = serde_json::from_str(&read("deploy/grafana/tpp-operator.json"))
        .expect("the dashboard is valid JSON");
    assert_eq!(dash["uid"], "tpp-operator");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("numeric id")),
            "duplicate panel id in {title}"
        );
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert_exported(&format!("panel {title:?}"), expr, &exported);
            queried += 1;
        }
    }
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(q) = var["definition"].as_str() {
            assert_exported(&format!("variable {}", var["name"]), q, &exported);
        }
    }
    assert!(queried >= 15, "{queried} queries");
}

#[test]
fn every_alert_rule_names_only_exported_metrics_and_says_what_to_do() {
    let exported = exported();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/tpp-operator/files/alerts.rules.yaml"))
            .expect("valid YAML");
    let mut alerts = vec![];
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alerting rules only");
            let expr = rule["expr"].as_str().expect("expr");
            assert_exported(name, expr, &exported);
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ),
                "{name}: severity"
            );
            for a in ["summary", "description"] {
                assert!(rule["annotations"][a].as_str().is_some(), "{name}: {a}");
            }
            alerts.push(name.to_owned());
        }
    }
    for wanted in [
        "TppTokenAboutToExpire",
        "TppCertificateAboutToExpire",
        "TppClientNotReady",
        "TppAuthorizationServerErrors",
        "TppRegistrationLost",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} missing");
    }
}

#[test]
fn the_promtool_tests_record_exported_series_and_prove_every_alert_fires() {
    let exported = exported();
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/alerts.test.yaml")).expect("valid YAML");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("charts/tpp-operator/files/alerts.rules.yaml"))
            .expect("valid YAML");
    let mut fired = BTreeSet::new();
    for test in tests["tests"].as_sequence().expect("tests") {
        for s in test["input_series"].as_sequence().expect("input_series") {
            let series = s["series"].as_str().expect("series");
            assert_exported("input series", series, &exported);
        }
        for t in test["alert_rule_test"]
            .as_sequence()
            .expect("alert_rule_test")
        {
            if t["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty()) {
                fired.insert(t["alertname"].as_str().expect("alertname").to_owned());
            }
        }
    }
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert");
            assert!(
                fired.contains(name),
                "{name}: no promtool test expects it to fire"
            );
        }
    }
}

#[test]
fn the_chart_embeds_the_tested_rules_file() {
    let template = read("charts/tpp-operator/templates/prometheusrule.yaml");
    assert!(template.contains(r#".Files.Get "files/alerts.rules.yaml""#));
    assert!(template.contains(".Values.prometheusRule.enabled"));
    let tests = read("deploy/prometheus/alerts.test.yaml");
    assert!(tests.contains("- ../../charts/tpp-operator/files/alerts.rules.yaml"));
}
