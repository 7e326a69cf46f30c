#!/usr/bin/env bash
# Runs every test: installs what a fresh machine lacks, builds, runs the whole
# CTest suite (C API, sidecar protocol, Kubernetes backends against the fake
# API server, bindings, package), then the native tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 600

if [ "${MP_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== native tests under AddressSanitizer + UndefinedBehaviorSanitizer =="
  MP_BUILD_DIR=build-sanitize scripts/build.sh -DMP_SANITIZE=ON -DMP_BUILD_BINDINGS=OFF
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure --timeout 600 -L native
fi
