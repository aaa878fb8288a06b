#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from Go modules into a cache folder outside the
# clone (default ~/.cache/tpp-operator/control-plane/<version>), skipped when present.
# The version is KUBE_VERSION from hack/versions.env unless KUBE_VERSION is set in the
# environment (`make test-compat` builds KUBE_VERSION_OLDEST this way, docs/compatibility.md).
# Prints the folder on its last line. See docs/test-infrastructure.md Part A.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
requested=${KUBE_VERSION:-}
# shellcheck source=versions.env
. "$here/versions.env"
KUBE_VERSION=${requested:-$KUBE_VERSION}
case "$KUBE_VERSION" in
  v1.[0-9]*.[0-9]*) ;;
  *) echo "KUBE_VERSION must be a full release such as v1.32.13, not '$KUBE_VERSION'" >&2; exit 1 ;;
esac
# shellcheck source=kube-module.sh
. "$here/kube-module.sh"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/control-plane/$KUBE_VERSION"
mkdir -p "$out"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "control plane $KUBE_VERSION already built" >&2
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH=${GOPATH:-$cache_root/gopath}
export GOCACHE=${GOCACHE:-$cache_root/gocache}
work="$out/module"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
kube_module_init
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION"
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go get -tool "go.etcd.io/etcd/server/v3@$etcd_version"
ldflags=$(kube_ldflags)
go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$ldflags" -o "$out/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
for b in kube-apiserver kubectl etcd; do mv "$out/$b.tmp" "$out/$b"; done
"$out/kube-apiserver" --version >&2
"$out/etcd" --version >&2
echo "$out"
