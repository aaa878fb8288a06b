# tpp-operator — the README's two commands are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
CACHE ?= $(HOME)/.cache/tpp-operator
export TPP_CACHE_DIR := $(CACHE)
KUBE_VERSION := $(shell sed -n 's/^KUBE_VERSION=//p' hack/versions.env)
export TPP_CONTROL_PLANE_DIR ?= $(CACHE)/control-plane/$(KUBE_VERSION)
KUBE_VERSION_OLDEST := $(shell sed -n 's/^KUBE_VERSION_OLDEST=//p' hack/versions.env)
COMPAT_CONTROL_PLANE_DIR := $(CACHE)/control-plane/$(KUBE_VERSION_OLDEST)
HELM_VERSION := $(shell sed -n 's/^HELM_VERSION=//p' hack/versions.env)
export TPP_HELM ?= $(CACHE)/helm/$(HELM_VERSION)/helm

.PHONY: chaos fuzz test test-unit test-chart test-e2e test-compat test-alerts test-node deny control-plane node helm images lint-dockerfiles peer crds chart-render demo conformance bench bench-micro bench-scale lint clean-cache help

help:
	@echo "make demo   - local control plane + sandbox AS + operator, an example TppClient and its token Secret"
	@echo "make test   - all tiers: unit, chart, alerts, end to end (real kube-apiserver + etcd), node (helm install on kubelets)"
	@echo "make chaos  - the campaign: 50 clients, every failpoint x {crash, error}, 30 seeded kills (TPP_CHAOS_SEED repeats one)"
	@echo "make test-compat - api, operator_sandbox and gitops e2e tests on the oldest supported Kubernetes (KUBE_VERSION_OLDEST)"
	@echo "make test-node - the node tier alone: image, two kubelets, helm install, a workload mounting the Secret"
	@echo "make crds   - regenerate crds/, docs/api-reference.md, the chart's goldens and deploy/ from the Rust types"
	@echo "make chart-render - regenerate the chart's golden renders and deploy/install.yaml, deploy/crds.yaml"
	@echo "make fuzz   - property-based fuzzing of every parser of outside input (FUZZ_CASES, FUZZ_SECONDS)"
	@echo "make conformance SUITE_DIR=... - the OpenID Foundation FAPI 2.0 client-credentials client tests (docs/conformance.md)"
	@echo "make bench  - micro-benchmarks (ratios to floors) and a scale run with N=200 (BENCHMARKS.md)"
	@echo "make bench-scale N=1000 - the scale benchmark alone (JSON + Markdown in target/bench-scale/)"

## The OpenID Foundation conformance suite's FAPI 2.0 client-credentials client plan against the
## operator (docs/conformance.md). Needs a checkout of the suite (SUITE_DIR), Java 17, Maven, Go,
## nginx; not part of `make test` (CI cannot fetch the suite).
conformance: control-plane
	@test -n "$(SUITE_DIR)" || { echo "usage: make conformance SUITE_DIR=/path/to/conformance-suite" >&2; exit 1; }
	$(CARGO) build -p tpp-operator --bins
	TPP_OPERATOR_BIN="$(TARGET_DIR)/debug/tpp-operator" hack/conformance/run.sh "$(SUITE_DIR)"

## Build kube-apiserver, etcd and kubectl from Go modules into $(CACHE) (skipped when present).
control-plane:
	@hack/build-control-plane.sh >/dev/null

## kubelet, kube-controller-manager, kube-scheduler and pause from Go modules (skipped when present).
export TPP_NODE_DIR ?= $(CACHE)/node/$(KUBE_VERSION)
node:
	@hack/build-node.sh >/dev/null

## helm from Go modules (skipped when present).
helm:
	@hack/build-helm.sh >/dev/null

## The operator image (the Dockerfile, with the release binary built as its builder stage
## would), the workload and pause images, as tarballs in $(CACHE)/images.
TARGET_DIR = $${CARGO_TARGET_DIR:-target}
images: node
	$(CARGO) build --release -p tpp-operator --features vendored-openssl --bin tpp-operator
	$(CARGO) build -p e2e --bin credentials-consumer
	@hack/build-images.sh "$(TARGET_DIR)/release/tpp-operator" "$(TARGET_DIR)/debug/credentials-consumer" "$(TPP_NODE_DIR)/pause" >/dev/null

## hadolint on every Dockerfile.
lint-dockerfiles:
	@hack/lint-dockerfiles.sh

## Install the oidc-provider peer's npm packages from its lock file (skipped when present).
PEER_DIR := e2e/peers/oidc-provider
peer:
	@command -v node >/dev/null || { echo "node is required for the oidc-provider peer" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "npm is required for the oidc-provider peer" >&2; exit 1; }
	@[ -f $(PEER_DIR)/node_modules/oidc-provider/package.json ] || (cd $(PEER_DIR) && npm ci --no-audit --no-fund --loglevel=error)

## Regenerate the CRDs and docs/api-reference.md from operator/src/crd.
crds:
	$(CARGO) run -q -p tpp-operator --bin crdgen -- crds
	$(CARGO) run -q -p tpp-operator --bin crdgen -- charts/tpp-operator/crds-copy
	$(CARGO) run -q -p tpp-operator --bin crdgen -- api-reference docs/api-reference.md
	@$(MAKE) --no-print-directory chart-render

## Render the chart's goldens (e2e/tests/chart/golden/) and deploy/install.yaml, deploy/crds.yaml.
chart-render: helm
	HELM=$(TPP_HELM) hack/render-chart.sh

## Unit tests and loopback integration tests (no control plane needed).
test-unit:
	$(CARGO) test --workspace --exclude e2e
	$(CARGO) test -p e2e --lib --bins

## The Helm chart: helm lint, golden renders, deploy/ drift, schema and RBAC checks.
test-chart: helm
	$(CARGO) test -p e2e --test chart

## End-to-end tests against the real control plane and the oidc-provider peer (helm for
## chart_apiserver: the rendered chart applied to the apiserver): every e2e/tests/*.rs but the
## chart's offline tests (test-chart) and the node tier (test-node), so `make test` runs each
## test once. (`--test '*'` would stop at node_install, whose feature it does not enable.)
E2E_TESTS := $(filter-out chart node_install,$(basename $(notdir $(wildcard e2e/tests/*.rs))))
## The operator is built with its failpoints (docs/reliability.md): crash tests set FAILPOINTS.
test-e2e: control-plane peer helm
	$(CARGO) build -p tpp-operator -p kubectl-tpp --bins --features tpp-operator/failpoints
	@mkdir -p $(CACHE)/logs && : > $(CACHE)/logs/leak-audit.tsv
	TPP_LEAK_AUDIT_LOG=$(CACHE)/logs/leak-audit.tsv $(CARGO) test -p e2e $(addprefix --test ,$(E2E_TESTS))
	@awk -F'\t' '{ n += $$2; c += 1 } END { printf "leak audit: %d passed e2e tests audited, %d distinct secret values checked, 0 hits\n", c, n }' $(CACHE)/logs/leak-audit.tsv

## The campaign (docs/reliability.md, "The campaign"; e2e/tests/chaos.rs): 50 TppClients of the
## four modes against the strict sandbox AS and 50 of the two registering modes against oidc-provider,
## every failpoint on the controller's path x {crash, error}, 30 seeded SIGKILLs, the
## invariants after each. The seed is printed; TPP_CHAOS_SEED=<seed> repeats a run. `make test`
## runs the reduced campaign (the same test without TPP_CHAOS=full).
chaos: control-plane peer
	$(CARGO) build -p tpp-operator --bins --features tpp-operator/failpoints
	TPP_CHAOS=full $(CARGO) test -p e2e --test chaos -- --nocapture

## The compatibility tier (docs/compatibility.md): the CRDs' schemas and CEL rules, the operator
## against the sandbox AS, and the GitOps health and kstatus checks, on a control plane of the
## oldest supported Kubernetes minor (KUBE_VERSION_OLDEST, built once into $(CACHE)).
test-compat:
	@KUBE_VERSION=$(KUBE_VERSION_OLDEST) hack/build-control-plane.sh >/dev/null
	@"$(COMPAT_CONTROL_PLANE_DIR)/kube-apiserver" --version
	$(CARGO) build -p tpp-operator --bins --features failpoints
	TPP_KUBE_VERSION=$(KUBE_VERSION_OLDEST) TPP_CONTROL_PLANE_DIR=$(COMPAT_CONTROL_PLANE_DIR) $(CARGO) test -p e2e --test api --test operator_sandbox --test gitops

## The node tier: the chart installed with Helm on two kubelets, a workload mounting the Secret.
test-node: control-plane node helm lint-dockerfiles images
	$(CARGO) test -p e2e --features node-tier --test node_install -- --nocapture

## The alerting rules the chart ships (charts/tpp-operator/files/alerts.rules.yaml): checked and
## unit-tested against recorded series by promtool, and the chart's PrometheusRule rendered by
## helm (both built from Go modules into $(CACHE)).
test-alerts:
	@hack/test-alerts.sh

## Dependency licences and duplicate versions (deny.toml), offline against the local index;
## cargo-deny is installed once by hack/install-cargo-deny.sh. `cargo fetch` first: builds
## download only this platform's crates, and cargo-deny reads the lock file's crates of every
## platform (a fresh machine has no others).
deny:
	@$(CARGO) fetch --locked --quiet
	@deny=$$(hack/install-cargo-deny.sh | tail -n1) && \
	  PATH="$$(dirname "$$deny"):$$PATH" $(CARGO) deny --offline --workspace check licenses bans

## Property-based fuzzing of every parser of outside input (operator/tests/fuzz_parsers.rs, seed
## corpus in operator/tests/fixtures/fuzz_corpus/): FUZZ_CASES cases per target, each target stopped after
## FUZZ_SECONDS (14 targets: under 5 minutes by default). `make test` runs the same targets
## with proptest's default 256 cases.
FUZZ_CASES ?= 100000
FUZZ_SECONDS ?= 20
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) FUZZ_SECONDS=$(FUZZ_SECONDS) \
	  $(CARGO) test -p tpp-operator --test fuzz_parsers -- --nocapture --test-threads=1

## Everything.
test: test-unit test-chart test-alerts test-e2e test-compat test-node

## Local control plane + sandbox AS + operator running examples/tppclient-static.yaml; prints what
## the operator made, then one line per token refresh until Ctrl-C. Files in .demo/.
## DEMO_EXIT_AFTER_READY=1 exits 0 once the client is Ready and the summary is printed.
demo:
	@test -x "$(TPP_CONTROL_PLANE_DIR)/kube-apiserver" || echo "demo: building kube-apiserver, etcd and kubectl $(KUBE_VERSION) from Go modules into $(TPP_CONTROL_PLANE_DIR) (first run only, several minutes)" >&2
	@$(MAKE) --no-print-directory control-plane
	$(CARGO) build -p tpp-operator -p e2e --bins
	@"$${CARGO_TARGET_DIR:-target}/debug/demo"

## Criterion flags for `make bench`: short, so that the whole run fits in minutes.
BENCH_ARGS ?= --warm-up-time 1 --measurement-time 2 --noplot
BENCH_OUT ?= target/bench
N ?= 200
BENCH_SCALE_ARGS ?=

## Micro-benchmarks, each with its ratio to a floor measured in the same run, then N=200.
bench: bench-micro
	$(MAKE) --no-print-directory bench-scale N=200

bench-micro:
	@mkdir -p $(BENCH_OUT)
	set -o pipefail; $(CARGO) bench -p tpp-operator --bench identity --bench handshake --bench refresh --bench secret_body -- $(BENCH_ARGS) 2>&1 | tee $(BENCH_OUT)/micro.txt
	@echo "--- ratios (also in $(BENCH_OUT)/micro.txt) ---"
	@grep -E '^(ratio|rsa2048 sign/s|refresh_)' $(BENCH_OUT)/micro.txt

## The scale harness: real control plane, release operator binary, sandbox AS, N TppClients.
bench-scale: control-plane
	$(CARGO) build --release -p tpp-operator -p e2e --bins
	$${CARGO_TARGET_DIR:-target}/release/bench-scale --n $(N) $(BENCH_SCALE_ARGS)

## Style enforced in CI (.ci/run runs it before `make test`): rustfmt-clean, clippy-clean,
## no unwrap/expect outside tests ([workspace.lints] in Cargo.toml), dependency licences and
## duplicate versions (deny.toml).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --lib --bins --no-deps --quiet
	@$(MAKE) --no-print-directory deny
