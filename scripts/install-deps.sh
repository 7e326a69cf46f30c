#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need. Idempotent and
# quick when everything is already there. Run as root (or with sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config curl ca-certificates openssl procps
  libcurl4-openssl-dev libcjson-dev libyaml-dev libcli11-dev
  libssl-dev zlib1g-dev libdeflate-dev libcmocka-dev libboost-dev
  # Fuzz targets (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes
  clang-14 libclang-rt-14-dev
  python3 python3-pytest python3-yaml python3-pip python3-venv pybind11-dev python3-dev
  # Package tests: a real registry and a real container engine
  docker-registry apache2-utils podman runc
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
