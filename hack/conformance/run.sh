#!/usr/bin/env bash
# `make conformance SUITE_DIR=...`: build (cached), start everything on loopback, drive the plan
# for both variants, stop what was started. Results: $RUN/results.json and a Markdown table on
# stdout; logs of every process in $RUN/logs. See docs/conformance.md.
set -euo pipefail
SUITE_DIR=${1:?usage: run.sh SUITE_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
RUN=${CONFORMANCE_RUN_DIR:-$CACHE/conformance/runs/$(date -u +%Y%m%dT%H%M%SZ)}
"$HERE/build.sh" "$SUITE_DIR"
mkdir -p "$RUN"
trap '"$HERE/stop.sh" "$RUN"' EXIT
"$HERE/start.sh" "$RUN"
python3 "$HERE/driver.py" "$RUN" "$RUN/results.json"
