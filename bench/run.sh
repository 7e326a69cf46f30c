#!/usr/bin/env bash
# Runs the Sync benchmark on the memory backend and on both Kubernetes
# backends against the fake API server (TLS + token, on 127.0.0.1), then
# mp-sidecar under load (bench/sidecar_load.py: 10,000 waiters, slowloris,
# RSS, throughput with wrk if installed; about 5 minutes).
# Usage: bench/run.sh [build dir]   (default: build)
# MP_BENCH_LOAD=0 skips the load step; MP_BENCH_LOAD_ARGS passes it options
# (e.g. "--only waiters,rss"; see bench/sidecar_load.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
ROUNDS=${MP_BENCH_ROUNDS:-1000}

echo "== memory backend"
"$B/bench/sync_bench" --sidecar-bin "$B/sidecar/mp-sidecar" --rounds "$ROUNDS"

work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
/usr/bin/python3 - "$work" <<'PY' &
import sys, time, pathlib
sys.path.insert(0, "tests/fakes")
import kubefake
work = pathlib.Path(sys.argv[1])
fake = kubefake.start(work)
(work / "kubeconfig-path").write_text(fake.kubeconfig)
(work / "pid").write_text(str(fake.proc.pid))
while True:
    time.sleep(3600)
PY
for _ in $(seq 200); do [ -s "$work/kubeconfig-path" ] && break; sleep 0.1; done
kubeconfig=$(cat "$work/kubeconfig-path")

for backend in lease kubernetes; do
  echo "== $backend backend (fake Kubernetes API server over TLS)"
  "$B/bench/sync_bench" --sidecar-bin "$B/sidecar/mp-sidecar" --rounds $((ROUNDS / 5)) \
    -- --backend="$backend" --kubeconfig="$kubeconfig"
done
kill %1 2>/dev/null || true

if [ "${MP_BENCH_LOAD:-1}" != 0 ]; then
  echo "== mp-sidecar under load"
  # shellcheck disable=SC2086  # MP_BENCH_LOAD_ARGS is a list of options
  /usr/bin/python3 bench/sidecar_load.py --sidecar-bin "$B/sidecar/mp-sidecar" ${MP_BENCH_LOAD_ARGS:-}
fi
