#!/usr/bin/env bash
# On the GPU machine: unpack the carried Debian deps and build sdflow against PyTorch's CUDA
# libtorch into build-gpu/. Usage: tools/gpu/build.sh [extra cmake args]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck disable=SC1091
source .device-deps/device-deps.sh unpack >/dev/null
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSDFLOW_CUDA=ON -DSDFLOW_PCH=ON "$@"
cmake --build build-gpu --parallel "$(nproc)"
