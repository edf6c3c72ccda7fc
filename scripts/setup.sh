#!/usr/bin/env bash
# Installs everything Goldilocks needs on a fresh Debian 12 machine: build
# tools and libraries from Debian's packages, Python packages from PyPI.
# Idempotent and quiet when everything is already there.
set -euo pipefail

DEBIAN_PACKAGES=(
  g++ ninja-build
  libgtest-dev libgmock-dev libbenchmark-dev
  libhwy-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libfmt-dev
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# CMake >= 3.24 (Debian 12 ships 3.25; a pip-installed cmake also works).
if ! command -v cmake >/dev/null 2>&1; then
  python3 -m pip install -q cmake
fi
