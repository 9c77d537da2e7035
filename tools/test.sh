#!/usr/bin/env bash
# Builds (if needed) and runs the CPU test suite: what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --parallel "$(nproc)"
ctest --test-dir build -L cpu --output-on-failure --parallel "$(nproc)"
