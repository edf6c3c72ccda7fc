#!/usr/bin/env bash
# Installs everything Goldilocks needs on a fresh Debian 12 machine: build
# tools and libraries from Debian's packages, Python packages from PyPI.
# Idempotent and quiet when everything is already there.
set -euo pipefail

DEBIAN_PACKAGES=(
  g++ ninja-build
  libgtest-dev libgmock-dev libbenchmark-dev
  libhwy-dev libopenblas-openmp-dev libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libfmt-dev
  python3-dev python3-pip
  libopenmpi-dev openmpi-bin  # optional MPI component (ring attention): GOLDILOCKS_BUILD_MPI
  chromium  # headless browser for the HTML report render test
  clang-16 libclang-rt-16-dev libomp-16-dev  # the libFuzzer target (tests/fuzz): clang 16 (14 lacks x86 _Float16), its fuzzer runtime, OpenMP
  ccache    # scripts/test: the Python build reuses the Release objects
  clang-format-16  # scripts/check-format (git-clang-format-16)
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

# Python packages for the goldilocks package and its tests. torch is pinned
# exactly (a newer one pulls gigabytes); transformers 5.23.0 is pinned to a
# release that works with torch 2.13.0 and does not ask pip to replace torch.
# Debian's system Python is "externally managed" (PEP 668); we install into it anyway.
PYTHON="${PYTHON:-python3}"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
# mpi4py (goldilocks.distributed, optional extra): its binary wheel loads Debian's Open MPI at run time.
PYTHON_PACKAGES=(torch==2.13.0 transformers==5.23.0 numpy pytest nanobind scikit-build-core mpi4py)
if ! "$PYTHON" - "${PYTHON_PACKAGES[@]}" <<'PYEOF' 2>/dev/null; then
import importlib.metadata as md, sys
for spec in sys.argv[1:]:
    name, _, pin = spec.partition("==")
    installed = md.version(name)  # raises if missing
    if pin and installed.split("+")[0] != pin:
        sys.exit(1)
PYEOF
  echo "setup: installing Python packages: ${PYTHON_PACKAGES[*]}"
  "$PYTHON" -m pip install -q "${PYTHON_PACKAGES[@]}"
fi
