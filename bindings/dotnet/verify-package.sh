#!/usr/bin/env bash
# Packs the .NET binding and checks that the packages are all a consumer needs:
# fresh console projects (dotnet new console) that reference Metaparticle.Sync
# from a local folder feed, with the seed Lock and Election examples as their
# code, build and run against a real mp-sidecar.
#
# usage: verify-package.sh [--native-lib PATH/libmetaparticle.so] [--sidecar PATH/mp-sidecar]
#   --native-lib  bundle this library (default: built with CMake by the pack)
#   --sidecar     the sidecar to run against (default: $MP_SIDECAR_BIN)
# Everything happens in a temporary directory, with its own NuGet package
# cache, so an earlier package of the same version is never picked up.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
native=""
sidecar="${MP_SIDECAR_BIN:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --native-lib) native="$2"; shift 2 ;;
    --sidecar) sidecar="$2"; shift 2 ;;
    *) echo "usage: $0 [--native-lib PATH] [--sidecar PATH]" >&2; exit 2 ;;
  esac
done
if [ -z "$sidecar" ] || [ ! -x "$sidecar" ]; then
  echo "verify-package: need the mp-sidecar binary (--sidecar PATH or MP_SIDECAR_BIN)" >&2
  exit 2
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

work="$(mktemp -d)"
sidecar_pid=""
cleanup() {
  if [ -n "$sidecar_pid" ]; then kill "$sidecar_pid" 2>/dev/null || true; wait "$sidecar_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "verify-package: FAIL: $*" >&2; exit 1; }

version="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$here/Directory.Build.props" | head -1)"
echo "== pack Metaparticle.Core and Metaparticle.Sync $version"
dotnet pack "$here/Metaparticle.slnx" -c Release -o "$work/feed" --artifacts-path "$work/artifacts" ${native:+"-p:MetaparticleNativeLib=$native"} >"$work/pack.log" 2>&1 \
  || { cat "$work/pack.log"; fail "dotnet pack failed"; }
unzip -l "$work/feed/Metaparticle.Core.$version.nupkg" >"$work/core.contents"
grep -q 'runtimes/linux-x64/native/libmetaparticle.so' "$work/core.contents" \
  || fail "Metaparticle.Core.$version.nupkg has no runtimes/linux-x64/native/libmetaparticle.so"

cat >"$work/nuget.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$work/feed" />
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
  <config><add key="globalPackagesFolder" value="$work/packages" /></config>
</configuration>
EOF

for app in LockExample ElectionExample; do
  echo "== fresh console project $app referencing the package"
  dotnet new console -o "$work/$app" -n "$app" >"$work/$app.new.log" 2>&1 || { cat "$work/$app.new.log"; fail "dotnet new console"; }
  rm "$work/$app/Program.cs"
  cp "$repo/examples/csharp/$app/"*.cs "$work/$app/"
  (cd "$work/$app" && dotnet add package Metaparticle.Sync --version "$version" >"$work/$app.add.log" 2>&1) \
    || { cat "$work/$app.add.log"; fail "dotnet add package"; }
  (cd "$work/$app" && dotnet build -c Release >"$work/$app.build.log" 2>&1) \
    || { cat "$work/$app.build.log"; fail "building $app"; }
  [ -n "$(find "$work/$app/bin" -name libmetaparticle.so)" ] || fail "$app's output has no libmetaparticle.so"
done

echo "== run them against mp-sidecar"
"$sidecar" --listen 127.0.0.1:0 >"$work/sidecar.out" 2>"$work/sidecar.err" &
sidecar_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/sidecar.out" && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/sidecar.out" | head -1)"
[ -n "$url" ] || fail "mp-sidecar did not start: $(cat "$work/sidecar.err")"
export METAPARTICLE_SIDECAR="$url"

MP_EXAMPLE_HOLD_SECONDS=2 timeout 60 dotnet "$work/LockExample/bin/Release/"*/LockExample.dll >"$work/lock.out" 2>&1 \
  || { cat "$work/lock.out"; fail "LockExample exited with an error"; }
cat "$work/lock.out"
grep -q '^Acquired lock' "$work/lock.out" && grep -q '^Lock released.' "$work/lock.out" || fail "LockExample did not acquire and release"

# The election runs until stopped: give it a few seconds to become leader.
set +e
timeout 10 dotnet "$work/ElectionExample/bin/Release/"*/ElectionExample.dll >"$work/election.out" 2>&1
set -e
cat "$work/election.out"
grep -q '^I am the leader!' "$work/election.out" || fail "ElectionExample did not become the leader"

echo "verify-package: OK (Metaparticle.Sync $version works from a fresh project)"
