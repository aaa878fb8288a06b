#!/bin/bash
# Runs the FIRST operator process a bench-scale run starts under heaptrack (BENCHMARKS.md,
# "Heap profile"); later starts (the standby, the restart) run plainly.
#   TPP_OPERATOR_BIN=hack/heaptrack-operator.sh HEAPTRACK_OUT=/tmp/hp \
#     OPERATOR=target/release/tpp-operator target/release/bench-scale --n 1000
# then: hack/heap-by-owner.py /tmp/hp/operator.gz
set -eu
out=${HEAPTRACK_OUT:?set HEAPTRACK_OUT to a folder}
bin=${OPERATOR:?set OPERATOR to the tpp-operator binary}
mkdir -p "$out"
if mkdir "$out/.first" 2>/dev/null; then
  pipe="$out/fifo"
  rm -f "$pipe"
  mkfifo "$pipe"
  (/usr/lib/heaptrack/libexec/heaptrack_interpret < "$pipe" | gzip > "$out/operator.gz") &
  exec env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so DUMP_HEAPTRACK_OUTPUT="$pipe" "$bin" "$@"
fi
exec "$bin" "$@"
