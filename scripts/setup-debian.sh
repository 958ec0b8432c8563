#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever multibool's build, tests, benchmarks and
# examples need and this machine lacks. Uses sudo when not run as root.
set -euo pipefail
packages=(g++ cmake ninja-build ccache pkgconf clang-format clang-14 libclang-rt-14-dev catch2 libbenchmark-dev libhwy-dev libxsimd-dev xtl-dev libopenblas-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-debian: all packages present"
    exit 0
fi
echo "setup-debian: installing ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "setup-debian: not root and no sudo; as root, run: apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    as_root=(sudo)
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
