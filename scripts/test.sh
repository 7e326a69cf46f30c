#!/usr/bin/env bash
# Runs every test: installs what a fresh machine lacks, builds, runs the whole
# CTest suite (C API, sidecar protocol, Kubernetes backends against the fake
# API server, bindings, package), then the native tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then under ThreadSanitizer,
# then runs every libFuzzer target (tests/fuzz) for MP_FUZZ_SECONDS (30) each.
# MP_SKIP_SANITIZE=1, MP_SKIP_TSAN=1, MP_SKIP_FUZZ=1 skip those stages.
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

if [ "${MP_SKIP_TSAN:-0}" != 1 ]; then
  echo "== native tests under ThreadSanitizer =="
  MP_BUILD_DIR=build-tsan scripts/build.sh -DMP_TSAN=ON -DMP_BUILD_BINDINGS=OFF -DMP_BUILD_EXAMPLES=OFF -DMP_BUILD_BENCH=OFF
  # TSan of GCC 12 / LLVM 14 aborts with "unexpected memory mapping" on
  # kernels with vm.mmap_rnd_bits > 28; running without address-space
  # randomization (setarch -R, inherited by the tests' children) avoids
  # that. Where personality() is not allowed (some container seccomp
  # profiles) run without it.
  no_aslr=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then no_aslr=(setarch "$(uname -m)" -R); fi
  # Reports go to files, so that a race in a process whose exit status a test
  # does not check (an mp-sidecar started by pytest) still fails this stage.
  tsan_logs=build-tsan/tsan-reports
  rm -rf "$tsan_logs" && mkdir -p "$tsan_logs"
  tsan_status=0
  TSAN_OPTIONS="log_path=$PWD/$tsan_logs/report second_deadlock_stack=1 history_size=4 ${TSAN_OPTIONS:-}" \
    "${no_aslr[@]}" ctest --test-dir build-tsan --output-on-failure --timeout 900 -L native || tsan_status=$?
  if compgen -G "$tsan_logs/report*" >/dev/null; then
    cat "$tsan_logs"/report*
    echo "ThreadSanitizer reported problems (above; files in $tsan_logs)" >&2
    tsan_status=1
  fi
  ((tsan_status == 0)) || exit "$tsan_status"
fi

if [ "${MP_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz targets, ${MP_FUZZ_SECONDS:-30} s each =="
  scripts/fuzz.sh "${MP_FUZZ_SECONDS:-30}"
fi
