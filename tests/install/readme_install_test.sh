#!/usr/bin/env bash
# The README's install commands, exactly as written, on a fresh clone of the
# committed HEAD, with no earlier install inside the package folders: what a
# new user does. Each command block is taken from README.md by its marker
# (<!-- install-test: NAME -->), run with bash -euo pipefail from the clone's
# root, and followed by a check that can fail (the module loads, reports the
# core's version and takes a lock from a real mp-sidecar; the seed code prints
# what it should). Everything offline: no package index is used.
#
# usage: readme_install_test.sh REPO MP_SIDECAR [WORK_DIR]
#   REPO        the git repository to clone (its HEAD is what is tested)
#   MP_SIDECAR  an mp-sidecar binary for the checks (the C tarball's own
#               sidecar is used for the C check)
set -euo pipefail

repo_src=$(cd "$1" && pwd)
sidecar_bin=$2
base=${3:-${TMPDIR:-/tmp}}
[ -x "$sidecar_bin" ] || { echo "readme_install_test: $sidecar_bin is not an executable mp-sidecar" >&2; exit 2; }
helper_python=/usr/bin/python3
[ -x "$helper_python" ] || helper_python=python3

mkdir -p "$base"
work=$(mktemp -d "$base/readme-install.XXXXXX")
sidecar_pid=""
stop_sidecar() {
  if [ -n "$sidecar_pid" ]; then
    kill "$sidecar_pid" 2>/dev/null || true
    wait "$sidecar_pid" 2>/dev/null || true
    sidecar_pid=""
  fi
}
cleanup() {
  stop_sidecar
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0 failed=0
start_all=$SECONDS

# A sidecar of its own for each step (the seed code leaves `test` held until
# its TTL runs out when the test stops it), on a port the kernel picks.
start_sidecar() { # BINARY
  stop_sidecar
  local out="$work/sidecar.$RANDOM.out"
  "$1" --listen 127.0.0.1:0 >"$out" 2>&1 &
  sidecar_pid=$!
  local i
  for i in $(seq 200); do
    grep -q 'listening on' "$out" && break
    kill -0 "$sidecar_pid" 2>/dev/null || break
    sleep 0.05
  done
  METAPARTICLE_SIDECAR=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$out" | head -1)
  [ -n "$METAPARTICLE_SIDECAR" ] || { cat "$out" >&2; echo "readme_install_test: $1 did not start" >&2; return 1; }
  export METAPARTICLE_SIDECAR
}

# The body of the fenced block after <!-- install-test: NAME --> in README.md.
block() {
  "$helper_python" - "$clone/README.md" "$1" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
found = re.findall(r"<!-- install-test: " + re.escape(sys.argv[2]) + r" -->\n```[a-z]*\n(.*?)```", text, re.S)
if len(found) != 1:
    sys.exit(f"README.md has {len(found)} blocks marked install-test: {sys.argv[2]} (want 1)")
sys.stdout.write(found[0])
PY
}

# step NAME SCRIPT: runs SCRIPT (README blocks and checks) from the clone's root.
step() {
  local name=$1 script=$2 t0=$SECONDS
  echo "== $name"
  printf '%s\n' "$script" >"$work/$name.sh"
  if (cd "$clone" && bash -euo pipefail "$work/$name.sh") >"$work/$name.log" 2>&1; then
    echo "PASS $name ($((SECONDS - t0)) s)"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($((SECONDS - t0)) s); its script:"
    sed 's/^/    | /' "$work/$name.sh"
    echo "  its output (last 60 lines):"
    tail -60 "$work/$name.log" | sed 's/^/    > /'
    failed=$((failed + 1))
  fi
}

# The README's commands run as a user's would, but nothing may come from a
# package index: pip and npm are told to stay offline, mktemp -d makes its
# folders under the work directory; Python does not buffer what the seed code
# prints, so it can be seen while it runs.
export PYTHONUNBUFFERED=1 TMPDIR="$work/tmp" PIP_NO_INDEX=1 npm_config_offline=true npm_config_audit=false npm_config_fund=false
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
mkdir -p "$TMPDIR"

clone="$work/clone"
t0=$SECONDS
git clone -q --no-hardlinks "$repo_src" "$clone"
echo "cloned $(git -C "$clone" log -1 --format='%h %s') ($((SECONDS - t0)) s)"
# Every block must exist before anything runs.
for name in python python-seed node node-seed dotnet dotnet-seed release c-tarball c-build wheel npm-tarballs; do
  block "$name" >/dev/null
done

# A script for a check: the lock `readme-install` from the sidecar, and the
# core's version, through the binding.
py_check='python - <<"PY"
import metaparticle
v = metaparticle.core_version()
assert v == metaparticle.__version__, (v, metaparticle.__version__)
with metaparticle.Lock("readme-install") as lock:
    assert lock.token >= 1, lock.token
    print("python: core", v, "lock token", lock.token, "from", metaparticle.__file__)
PY'
node_check='cat > check.js <<"JS"
const sync = require("@metaparticle/sync");
const pkg = require("@metaparticle/package");
if (!/^\d+\.\d+\.\d+$/.test(sync.version)) throw new Error("no version: " + sync.version);
const r = pkg.render({ name: "readme-install", ports: [8080], replicas: 2 });
if (!r || typeof r !== "object") throw new Error("render returned " + JSON.stringify(r));
const lock = new sync.Lock("readme-install");
lock.acquire({ timeout: 10000 }).then(async (token) => {
  console.log("node: core", sync.version, "lock token", token, "from", require.resolve("@metaparticle/sync"));
  await lock.release();
});
JS
node check.js'
# Seed code that runs until stopped (an election): run it until it has
# printed every PATTERN (or TIMEOUT seconds passed, or it exited), stop it,
# and fail unless every PATTERN was printed.
seed_run() { # TIMEOUT OUTFILE PATTERN... -- COMMAND...
  local timeout=$1 out=$2 ok=0 p pid
  shift 2
  local patterns=()
  while [ "$1" != "--" ]; do patterns+=("$1"); shift; done
  shift
  "$@" >"$out" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + timeout))
  while :; do
    ok=1
    for p in "${patterns[@]}"; do grep -q -- "$p" "$out" || ok=0; done
    if [ $ok = 1 ] || ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then break; fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  cat "$out"
  for p in "${patterns[@]}"; do grep -q -- "$p" "$out" || { echo "missing '$p' in the output above"; return 1; }; done
}
seed_expect() { # FILE PATTERN...
  local f=$1; shift
  local p; for p in "$@"; do grep -q -- "$p" "$f" || { echo "missing '$p' in the output:"; cat "$f"; return 1; }; done
  cat "$f"
}
export -f seed_run seed_expect

start_sidecar "$sidecar_bin"
step python "$(block python)
$py_check
$(printf 'cat > seed.py <<"PY"\n%s\nPY' "$(block python-seed)")
seed_run 30 seed.out 'I have the lock, fencing token' 'I am the leader' -- python seed.py"

start_sidecar "$sidecar_bin"
step node "$(block node)
$node_check
$(printf 'cat > seed.js <<"JS"\n%s\nJS' "$(block node-seed)")
seed_run 40 seed.out 'I have the lock!' 'I am the leader' -- node seed.js"

start_sidecar "$sidecar_bin"
examples_cmd='cd examples/js && npm install'
step examples-js "grep -qF '$examples_cmd' README.md || { echo 'README.md no longer says: $examples_cmd'; exit 1; }
$examples_cmd
MP_EXAMPLE_HOLD_SECONDS=1 timeout 30 node lock.js >lock.out 2>&1
seed_expect lock.out 'I have the lock!' 'Unlocked'"

step release "$(block release)
ls -l dist
python3 -m zipfile -l dist/Metaparticle.Core.0.1.0.nupkg | grep 'runtimes/linux-x64/native/libmetaparticle.so'
ls dist/metaparticle-0.1.0-cp3*-linux_x86_64.whl dist/metaparticle-sync-0.1.0.tgz dist/metaparticle-package-0.1.0.tgz dist/Metaparticle.Sync.0.1.0.nupkg dist/Metaparticle.Package.0.1.0.nupkg
tar tzf dist/metaparticle-0.1.0-linux-x86_64.tar.gz | grep -E 'include/metaparticle.h|lib/libmetaparticle.so|pkgconfig/metaparticle.pc|cmake/metaparticle/metaparticleConfig.cmake|bin/mp-sidecar'"

# The C library from its tarball: pkg-config, a program against the tarball's own sidecar.
c_program='cat > app.c <<"C"
#include <metaparticle.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    mp_lock *lock;
    mp_lock_options opts = MP_LOCK_OPTIONS_INIT;
    uint64_t token = 0;
    if (strcmp(mp_version(), MP_VERSION_STRING) != 0) { fprintf(stderr, "version %s\n", mp_version()); return 1; }
    if (mp_lock_create(&lock, "readme-install", &opts) != MP_OK || mp_lock_acquire(lock, 10000) != MP_OK ||
        mp_lock_token(lock, &token) != MP_OK || mp_lock_release(lock) != MP_OK) {
        fprintf(stderr, "%s\n", mp_error_last());
        return 1;
    }
    mp_lock_free(lock);
    printf("c: core %s lock token %llu\n", mp_version(), (unsigned long long)token);
    return token >= 1 ? 0 : 1;
}
C'
stop_sidecar
step c-tarball "$(block c-tarball)
$c_program
$(block c-build)
ldd ./app | grep 'metaparticle-0.1.0-linux-x86_64/lib.*/libmetaparticle.so.0' >/dev/null   # not grep -q: ldd would die of SIGPIPE (pipefail)
./metaparticle-0.1.0-linux-x86_64/bin/mp-sidecar --listen 127.0.0.1:0 >sidecar.out 2>&1 &
tarball_sidecar=\$!
trap 'kill \$tarball_sidecar' EXIT
for i in \$(seq 200); do grep -q 'listening on' sidecar.out && break; sleep 0.05; done
METAPARTICLE_SIDECAR=\$(grep -o 'http://127\.0\.0\.1:[0-9]*' sidecar.out | head -1) ./app
printf 'cmake_minimum_required(VERSION 3.20)\nproject(app C)\nfind_package(metaparticle 0.1 REQUIRED)\nadd_executable(app app.c)\ntarget_link_libraries(app metaparticle::metaparticle)\n' > CMakeLists.txt
cmake -S . -B cmake-build -DCMAKE_PREFIX_PATH=\$PWD/metaparticle-0.1.0-linux-x86_64 >/dev/null
cmake --build cmake-build >/dev/null && METAPARTICLE_SIDECAR=\$(grep -o 'http://127\.0\.0\.1:[0-9]*' sidecar.out | head -1) ./cmake-build/app"

start_sidecar "$sidecar_bin"
step wheel "$(block wheel)
$py_check"

start_sidecar "$sidecar_bin"
step npm-tarballs "$(block npm-tarballs)
test ! -L node_modules/@metaparticle/sync   # installed, not linked
$node_check"

# A new console project restores from a package cache of its own, so an
# earlier package of the same version can never stand in for this one.
start_sidecar "$sidecar_bin"
step dotnet "export NUGET_PACKAGES=\$TMPDIR/nuget-packages
$(block dotnet)
$(printf 'cat > Program.cs <<"CS"\n%s\nCS' "$(block dotnet-seed)")
dotnet build -c Release -o out >build.log 2>&1 || { cat build.log; exit 1; }
test -f out/runtimes/linux-x64/native/libmetaparticle.so   # from Metaparticle.Core
seed_run 60 seed.out 'Acquired lock' 'I am the leader!' -- dotnet out/MyApp.dll"
stop_sidecar

echo "readme install test: $((SECONDS - start_all)) s in all"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
