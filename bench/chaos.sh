#!/usr/bin/env bash
# Long run of the chaos checker (tests/chaos): on each backend, workers contend
# for one lock under random faults until MP_CHAOS_ACQUISITIONS holds (default
# 10000 per backend); prints the violation counts and failover times.
# Usage: bench/chaos.sh [build dir] [extra chaos_driver.py options]
# (also `cmake --build <build dir> --target chaos_bench`). Exit 1 on a violation.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
shift || true
exec /usr/bin/python3 tests/chaos/chaos_driver.py \
  --worker "$B/tests/chaos/chaos_worker" --sidecar "$B/sidecar/mp-sidecar" \
  --acquisitions "${MP_CHAOS_ACQUISITIONS:-10000}" --cs-ms 1:10 --gap-ms 0:3 --fault-gap 3 8 \
  --ttl 3 --min-acquisitions 100 "$@"
