#!/usr/bin/env bash
# Build the mp-sidecar image with Metaparticle's own image builder (mp-image:
# the executable, its shared-library closure and ELF interpreter, CA
# certificates; no Dockerfile, no daemon) and push it.
#
#   deploy/build-sidecar-image.sh REGISTRY/PATH [TAG]     e.g. 127.0.0.1:5000/metaparticle 0.1.0
#
# Pushes REGISTRY/PATH/mp-sidecar:TAG (default tag 0.1.0) and prints it with
# its digest. Builds mp-sidecar and mp-image in $MP_BUILD_DIR (default build/)
# first. Registry credentials: ~/.docker/config.json or
# METAPARTICLE_REGISTRY_USERNAME / METAPARTICLE_REGISTRY_PASSWORD; a registry
# on localhost/127.0.0.1 is spoken to over plain HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:?usage: deploy/build-sidecar-image.sh REGISTRY/PATH [TAG]}
tag=${2:-0.1.0}
build=${MP_BUILD_DIR:-build}
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target mp-sidecar mp-image -j"$(nproc)"
# A copy without debug information (it is most of the executable's size),
# with any plugin it loads from its own directory beside it.
stage=$(realpath "$build")/sidecar-image
rm -rf "$stage" && mkdir -p "$stage"
objcopy --strip-debug "$build/sidecar/mp-sidecar" "$stage/mp-sidecar"
args=(--repository "$repo" --name mp-sidecar --tag "$tag" --port 13131)
# Plugins mp-sidecar loads with dlopen (when this build has any) are not in
# its ELF closure: include them.
for plugin in "$build"/sidecar/mp-sidecar-*.so; do
  [ -e "$plugin" ] || continue
  objcopy --strip-debug "$plugin" "$stage/$(basename "$plugin")"
  args+=(--include "$stage/$(basename "$plugin")")
done
exec "$build/deploy/mp-image" "${args[@]}" -- "$stage/mp-sidecar"
