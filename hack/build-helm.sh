#!/usr/bin/env bash
# Builds helm from Go modules into a cache folder outside the clone (default
# ~/.cache/tpp-operator/helm/<version>/helm), skipped when present. Prints the binary's path on
# its last line. Version pinned in hack/versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/helm/$HELM_VERSION"
if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH=${GOPATH:-$cache_root/gopath}
export GOCACHE=${GOCACHE:-$cache_root/gocache}
mkdir -p "$out"
work="$out/module"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
go mod init example.invalid/helmtool >/dev/null 2>&1
go get -tool "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
V=helm.sh/helm/v4/internal/version
go build -trimpath -ldflags "-s -w -X $V.version=$HELM_VERSION" -o "$out/helm.tmp" helm.sh/helm/v4/cmd/helm
mv "$out/helm.tmp" "$out/helm"
"$out/helm" version >&2
echo "$out/helm"
