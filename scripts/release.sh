#!/usr/bin/env bash
# Release artifacts, each installable offline, into dist/ (or $MP_DIST_DIR):
#
#   c       metaparticle-<v>-linux-x86_64.tar.gz: libmetaparticle, metaparticle.h,
#           pkg-config and CMake package files, mp-sidecar (relocatable: unpack
#           anywhere, point PKG_CONFIG_PATH or CMAKE_PREFIX_PATH at it)
#   python  metaparticle-<v>-cp3XY-cp3XY-linux_x86_64.whl, for the Python that
#           runs this ($PYTHON, default python3). Tagged linux_x86_64, not
#           manylinux: the bundled library links the system's libcurl, OpenSSL,
#           cJSON, libyaml and libdeflate, which manylinux does not allow.
#   node    metaparticle-sync-<v>.tgz, metaparticle-package-<v>.tgz (npm pack:
#           library, headers and a prebuilt addon bundled)
#   dotnet  Metaparticle.Core/.Sync/.Package.<v>.nupkg (libmetaparticle.so
#           under runtimes/linux-x64/native in Metaparticle.Core)
#
# usage: scripts/release.sh [c|python|node|dotnet]...   (default: all four)
# The core is built once, in <repo>/build-core (scripts/build-core.cmake), and
# every artifact bundles that build. Needs the core's build dependencies
# (scripts/install-deps.sh) and, for the bindings, python3-dev + pybind11-dev,
# node + npm, dotnet.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$(mkdir -p "${MP_DIST_DIR:-$repo/dist}" && cd "${MP_DIST_DIR:-$repo/dist}" && pwd)"
build="${METAPARTICLE_BUILD_DIR:-$repo/build-core}"
python="${PYTHON:-python3}"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(c python node dotnet)
for p in "${parts[@]}"; do
  case "$p" in c|python|node|dotnet) ;; *) echo "usage: $0 [c|python|node|dotnet]..." >&2; exit 2 ;; esac
done
wants() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
step() { echo "== release: $* (at ${SECONDS} s)"; }
# Runs a command with its output in a log, shown only when it fails.
quietly() {
  local log; log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; echo "release: FAILED: $*" >&2; exit 1; fi
  rm -f "$log"
}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# Reproducible archives (gzip headers, tar and zip entries).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 315532800)}"

version="$(sed -n 's/^project(metaparticle VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")"
[ -n "$version" ] || { echo "release: cannot read the version from CMakeLists.txt" >&2; exit 1; }

targets="metaparticle"
wants c && targets="all" # the C tarball is what `cmake --install` installs, mp-sidecar included
step "building the core ($targets) in $build"
quietly cmake -DSOURCE_DIR="$repo" -DBUILD_DIR="$build" -DTARGETS="$targets" -P "$repo/scripts/build-core.cmake"
lib="$(readlink -f "$build/libmetaparticle/libmetaparticle.so")"

if wants c; then
  name="metaparticle-$version-linux-x86_64"
  step "C library: $name.tar.gz"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  quietly cmake --install "$build" --prefix "$stage/$name" --strip
  # Relocatable pkg-config file: paths relative to where it is unpacked.
  sed -i 's|^prefix=.*|prefix=${pcfiledir}/../..|' "$stage/$name"/lib*/pkgconfig/metaparticle.pc
  rm -f "$dist/$name.tar.gz"
  tar -C "$stage" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf - "$name" \
    | gzip -n -9 >"$dist/$name.tar.gz"
  rm -rf "$stage"
  trap - EXIT
fi

if wants python; then
  step "Python wheel ($("$python" --version 2>&1))"
  rm -f "$dist"/metaparticle-"$version"-*.whl
  # --no-index: the build backend needs nothing from PyPI.
  quietly env METAPARTICLE_LIBRARY="$lib" "$python" -m pip wheel --no-index --no-deps -w "$dist" "$repo/bindings/python"
fi

if wants node; then
  for pkg in sync package; do
    step "npm tarball @metaparticle/$pkg"
    rm -f "$dist/metaparticle-$pkg-$version.tgz"
    # prepack builds the addon and bundles it with the library and headers.
    quietly npm pack --foreground-scripts --pack-destination "$dist" "$repo/bindings/node/$pkg"
  done
fi

if wants dotnet; then
  step "NuGet packages Metaparticle.Core, .Sync, .Package"
  rm -f "$dist"/Metaparticle.*."$version".nupkg
  # One pack of the solution filter (the three libraries, not the tests).
  quietly dotnet pack "$repo/bindings/dotnet/Metaparticle.Packages.slnf" -c Release -o "$dist" \
    -p:MetaparticleNativeLib="$lib" --nologo
fi

step "done: $dist"
(cd "$dist" && ls -l --time-style=+ | sed 1d && sha256sum -- * 2>/dev/null | grep -v SHA256SUMS >SHA256SUMS)
