#!/usr/bin/env bash
# Stop the processes start.sh recorded in RUN_DIR/pids (exactly those PIDs, newest first), with
# a bounded wait, then SIGKILL what is left. Usage: stop.sh RUN_DIR
set -uo pipefail
RUN=${1:?usage: stop.sh RUN_DIR}
[ -f "$RUN/pids" ] || exit 0
tac "$RUN/pids" | while read -r name pid; do
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { echo "stop.sh: $name ($pid) did not stop, SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null; }
done
: > "$RUN/pids"
