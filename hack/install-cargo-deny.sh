#!/usr/bin/env bash
# Installs cargo-deny (dependency licence and duplicate-version checks, deny.toml) with
# `cargo install --locked` into a cache folder outside the clone (default
# ~/.cache/tpp-operator/cargo-deny/<version>/bin/cargo-deny), skipped when present. Prints the
# binary's path on its last line. Version pinned in hack/versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/cargo-deny/$CARGO_DENY_VERSION"
if [ -x "$out/bin/cargo-deny" ]; then
  echo "$out/bin/cargo-deny"
  exit 0
fi
command -v cargo >/dev/null || { echo "cargo is required to install cargo-deny" >&2; exit 1; }
# Its own target folder, so that the workspace's build cache is not disturbed.
CARGO_TARGET_DIR="$out/target" cargo install cargo-deny --version "=$CARGO_DENY_VERSION" \
  --locked --root "$out" >&2
rm -rf "$out/target"
"$out/bin/cargo-deny" --version >&2
echo "$out/bin/cargo-deny"
