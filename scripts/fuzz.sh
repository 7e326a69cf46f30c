#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang, ASan and UBSan into
# build-fuzz/ (or $MP_FUZZ_BUILD_DIR) and runs each for SECONDS (default 30)
# on its seed corpus tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: every target)
#
# Inputs the fuzzer finds interesting go to build-fuzz/corpus/<target>/ (the
# seeds in the repository are only read; copy a new input there by hand when
# it is worth keeping). A crash, leak, UB report or timeout leaves its input in
# build-fuzz/artifacts/<target>/ and makes the script fail; reproduce it with
#   build-fuzz/tests/fuzz/<target> build-fuzz/artifacts/<target>/crash-...
# Every target still runs; the summary names the failing ones.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
build_dir=${MP_FUZZ_BUILD_DIR:-build-fuzz}
# A target is a corpus directory: tests/fuzz/corpus/<target>/ and a tests/fuzz target of that name.
mapfile -t all_targets < <(ls tests/fuzz/corpus)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  if [ ! -d "tests/fuzz/corpus/$t" ]; then
    echo "fuzz.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done

for cc in clang-14 clang; do command -v "$cc" >/dev/null && break; done
if ! command -v "$cc" >/dev/null; then
  echo "fuzz.sh: clang is not installed; run scripts/install-deps.sh (it installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi
cxx=${cc/clang/clang++}

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DMP_FUZZ=ON \
  -DMP_BUILD_TESTS=OFF -DMP_BUILD_EXAMPLES=OFF -DMP_BUILD_BENCH=OFF -DMP_BUILD_BINDINGS=OFF >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
  work="$build_dir/corpus/$t"
  artifacts="$build_dir/artifacts/$t/"
  log="$build_dir/fuzz-$t.log"
  mkdir -p "$work" "$artifacts"
  echo "== $t: ${seconds} s =="
  # -timeout: one input taking this long is a hang (a finding);
  # -rss_limit_mb: so is unbounded memory growth.
  if ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
     "$build_dir/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    grep -E -B4 -A30 '^==[0-9]+==ERROR|runtime error|Test unit written|libFuzzer: (timeout|out-of-memory)' "$log" | head -80 || true
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  summary+=("$(printf '%-24s %-6s runs=%s exec/s=%s log=%s' "$t" "$status" "${runs:-?}" "${rate:-?}" "$log")")
done

echo "== fuzz summary =="
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $build_dir/artifacts/)" >&2
  exit 1
fi
