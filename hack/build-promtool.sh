#!/usr/bin/env bash
# Builds promtool (Prometheus's rule tester) from Go modules into a cache folder outside the
# clone (default ~/.cache/tpp-operator/promtool/<version>/promtool), skipped when present.
# Prints the binary's path on its last line. Version pinned in hack/versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/promtool/$PROMETHEUS_VERSION"
if [ -x "$out/promtool" ]; then
  echo "$out/promtool"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build promtool" >&2; exit 1; }
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH=${GOPATH:-$cache_root/gopath}
export GOCACHE=${GOCACHE:-$cache_root/gocache}
mkdir -p "$out"
work="$out/module"
rm -rf "$work"; mkdir -p "$work"; cd "$work"
go mod init example.invalid/promtool >/dev/null 2>&1
go get -tool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" >&2
V=github.com/prometheus/common/version
# remove_all_sd: promtool checks and tests rules; the service-discovery plugins (cloud SDKs)
# would triple the build.
go build -tags remove_all_sd -trimpath -ldflags "-s -w -X $V.Version=$PROMETHEUS_VERSION" -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
mv "$out/promtool.tmp" "$out/promtool"
"$out/promtool" --version >&2
echo "$out/promtool"
