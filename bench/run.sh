#!/usr/bin/env bash
# Runs the Sync benchmark on the memory backend and on both Kubernetes
# backends against the fake API server (TLS + token, on 127.0.0.1).
# Usage: bench/run.sh [build dir]   (default: build)
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
