#!/usr/bin/env bash
# Installs the Debian 12 packages repae needs (only those missing), then builds.
#   scripts/setup.sh          build dependencies + Fashion-MNIST
#   scripts/setup.sh --test   also OpenMPI (the data-parallel build and its tests)
#   scripts/setup.sh --dev    also OpenMPI and python3-torch/numpy/scipy/pil (fixtures, benchmarks)
#   scripts/setup.sh --fuzz   also clang + its sanitizer runtimes (libFuzzer, for `make fuzz`; `make fuzz-replay` needs only gcc)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc make libopenblas-openmp-dev libdnnl-dev liblapacke-dev libcjson-dev zlib1g-dev libpng-dev
          libjpeg62-turbo-dev dataset-fashion-mnist)
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--dev" ]; then
    packages+=(openmpi-bin libopenmpi-dev)
fi
if [ "${1:-}" = "--dev" ]; then
    packages+=(python3-torch python3-numpy python3-scipy python3-pil)
fi
if [ "${1:-}" = "--fuzz" ]; then
    packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

make -j"$(nproc)" ${WERROR:+WERROR=$WERROR} all
