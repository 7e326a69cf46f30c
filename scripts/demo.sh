#!/usr/bin/env bash
# The main job, end to end on one machine: build, start mp-sidecar on the
# memory backend, run three election replicas, show the leader, kill it
# (SIGKILL: no goodbye), and show a new leader take over once the dead
# leader's TTL runs out; then stop the new leader gracefully (SIGTERM) and
# show the handover is immediate.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh >/dev/null
B=build
TTL=${MP_DEMO_TTL:-5}
work=$(mktemp -d)
pids=()
cleanup() {
  # Replicas first (they release their lock through the sidecar), then the sidecar.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; sleep 0.1; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting mp-sidecar (memory backend)"
"$B/sidecar/mp-sidecar" --listen 127.0.0.1:0 >"$work/sidecar.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/sidecar.log" && break; sleep 0.05; done
head -1 "$work/sidecar.log"
export METAPARTICLE_SIDECAR=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/sidecar.log" | head -1)

leader() { curl -s "$METAPARTICLE_SIDECAR/locks/test" | sed -n 's/.*"owner":"\([^"]*\)".*/\1/p'; }
wait_leader_change() {  # $1 = old leader
  for _ in $(seq 400); do
    l=$(leader); if [ -n "$l" ] && [ "$l" != "$1" ]; then echo "$l"; return; fi; sleep 0.05
  done
  echo "no new leader" >&2; exit 1
}

say "starting three election replicas (TTL ${TTL}s)"
for i in 1 2 3; do
  "$B/examples/election" --ttl "$TTL" test > >(sed -u "s/^/  replica $i | /") 2>&1 &
  pids+=($!)
  disown $!  # no "Killed" job notice when the demo kills the leader
done
first=$(wait_leader_change "")
say "leader: $first"
sleep 1

say "killing the leader with SIGKILL (pid ${first##*/}); its session closes, so its lock goes to the next replica at once"
t0=$(date +%s.%N)
kill -9 "${first##*/}"
second=$(wait_leader_change "$first")
t1=$(date +%s.%N)
say "new leader: $second (took over after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s)"
sleep 1

say "stopping the new leader with SIGTERM: it steps down at once"
t0=$(date +%s.%N)
kill -TERM "${second##*/}"
third=$(wait_leader_change "$second")
t1=$(date +%s.%N)
say "new leader: $third (handover in $(awk "BEGIN{printf \"%.0f\", ($t1 - $t0) * 1000}") ms)"
sleep 0.5
say "done"
