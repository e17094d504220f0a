#!/usr/bin/env bash
# Installs every Debian 12 package aihub needs to build, test and run its demo. Idempotent.
# Usage: packaging/install-deps.sh [--training]
# Run as root (CI) or with sudo available.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ccache git
  # libraries (DESIGN.md: Debian packages only)
  libboost-dev libboost-filesystem-dev
  libdcmtk-dev dcmtk
  libyaml-cpp-dev nlohmann-json3-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  doctest-dev
  # libtorch (CPU) for the reference model plugins; only plugins link it, never the host
  libtorch-dev
  # real peers and validators used by tests and the demo
  sqlite3 dicom3tools python3 python3-hl7 orthanc orthanc-dicomweb
)

# `--training` adds what the reference models' training scripts need (plugins/*/train.py).
if [ "${1:-}" = "--training" ]; then
  packages+=(python3-torch python3-numpy)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
