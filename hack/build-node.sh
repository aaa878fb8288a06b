#!/usr/bin/env bash
# Builds the node components of the e2e node tier from Go modules into a cache folder outside
# the clone (default ~/.cache/tpp-operator/node/<version>), skipped when present: kubelet,
# kube-controller-manager and kube-scheduler at the pinned Kubernetes version, and a static
# pause binary (hack/pause) for the pod sandbox image. Prints the folder on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
# shellcheck source=kube-module.sh
. "$here/kube-module.sh"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/node/$KUBE_VERSION"
mkdir -p "$out"
bins=(kubelet kube-controller-manager kube-scheduler pause)
have=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have=0; done
if [ "$have" = 1 ]; then
  echo "node components $KUBE_VERSION already built" >&2
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the node components" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH=${GOPATH:-$cache_root/gopath}
export GOCACHE=${GOCACHE:-$cache_root/gocache}
(cd "$here/pause" && go build -trimpath -ldflags "-s -w" -o "$out/pause.tmp" .)
work="$out/module"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
kube_module_init
go get -tool "k8s.io/kubernetes/cmd/kubelet@$KUBE_VERSION" \
  "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
  "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION"
ldflags=$(kube_ldflags)
for b in kubelet kube-controller-manager kube-scheduler; do
  go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
done
for b in "${bins[@]}"; do mv "$out/$b.tmp" "$out/$b"; done
"$out/kubelet" --version >&2
echo "$out"
