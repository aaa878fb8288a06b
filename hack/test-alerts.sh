#!/usr/bin/env bash
# `make test-alerts`: the alerting rules the chart ships, checked and unit-tested by promtool
# against recorded series (deploy/prometheus/alerts.test.yaml), then the PrometheusRule the
# chart renders checked to carry exactly those rules. promtool and helm are built from Go
# modules into ~/.cache/tpp-operator by hack/build-promtool.sh and hack/build-helm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=charts/tpp-operator/files/alerts.rules.yaml
promtool=$(hack/build-promtool.sh | tail -n1)
helm=$(hack/build-helm.sh | tail -n1)
"$promtool" check rules "$rules"
"$promtool" test rules deploy/prometheus/alerts.test.yaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$helm" template tpp-operator charts/tpp-operator --namespace tpp-system \
  --set prometheusRule.enabled=true --set 'prometheusRule.labels.release=prometheus' \
  --show-only templates/prometheusrule.yaml > "$work/rendered.yaml"
grep -q '^kind: PrometheusRule$' "$work/rendered.yaml" || { echo "no PrometheusRule rendered" >&2; exit 1; }
grep -q '^    release: prometheus$' "$work/rendered.yaml" || { echo "prometheusRule.labels not rendered" >&2; exit 1; }
# The PrometheusRule's spec is a rule file: check it and compare its alerts with the file's.
sed -n '/^spec:$/,$p' "$work/rendered.yaml" | sed '1d; s/^  //' > "$work/spec.rules.yaml"
"$promtool" check rules "$work/spec.rules.yaml"
alerts() { grep -o 'alert: [A-Za-z]*' "$1" | sort; }
if ! diff <(alerts "$rules") <(alerts "$work/spec.rules.yaml"); then
  echo "the rendered PrometheusRule does not carry the rules of $rules" >&2
  exit 1
fi
# Off by default.
if "$helm" template tpp-operator charts/tpp-operator --show-only templates/prometheusrule.yaml >/dev/null 2>&1; then
  echo "a PrometheusRule is rendered with prometheusRule.enabled=false" >&2
  exit 1
fi
echo "alerts: rules, promtool tests and the chart's PrometheusRule OK"
