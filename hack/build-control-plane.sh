#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from Go modules into a cache folder outside the
# clone (default ~/.cache/tpp-operator/control-plane/<version>), skipped when present.
# Prints the folder on its last line. See docs/test-infrastructure.md Part A.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
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
go mod init example.invalid/ktools >/dev/null 2>&1
minor_patch=${KUBE_VERSION#v1.}            # 36.3
staging="v0.$minor_patch"                 # v0.36.3
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
[ -f "$gomod" ] || { echo "could not download k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
# Every staging module is required at v0.0.0 (replaced by ./staging in the kubernetes repo):
# map each to the staging tag that mirrors the release.
mods=$(awk '$1 ~ /^k8s[.]io[/]/ && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)
count=$(echo "$mods" | grep -c . || true)
if [ "$count" -le 30 ]; then echo "only $count staging modules found in $gomod; expected > 30" >&2; exit 1; fi
args=()
for m in $mods; do args+=("-replace=$m=$m@$staging"); done
go mod edit "${args[@]}"
echo "added $count staging replaces ($staging)" >&2
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION"
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go get -tool "go.etcd.io/etcd/server/v3@$etcd_version"
V=k8s.io/component-base/version
minor=${minor_patch%%.*}
ldflags="-s -w -X $V.gitMajor=1 -X $V.gitMinor=$minor -X $V.gitVersion=$KUBE_VERSION -X $V.gitTreeState=clean -X $V.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
go build -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$ldflags" -o "$out/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
for b in kube-apiserver kubectl etcd; do mv "$out/$b.tmp" "$out/$b"; done
"$out/kube-apiserver" --version >&2
"$out/etcd" --version >&2
echo "$out"
