#!/usr/bin/env bash
# Installs sdflow's build dependencies from Debian 12 packages and builds it into ./build.
#   ./tools/setup.sh              install + configure + build
#   ./tools/setup.sh --deps-only  install the packages only
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build ccache pkg-config
      libtorch-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
      libgtest-dev libgmock-dev libpng-dev libjpeg-dev zlib1g-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--deps-only" ] && exit 0

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build --parallel "$(nproc)"
echo "built: ./build/sdflow"

# A tiny random-weight SD1.5 checkpoint, so the main job runs without downloading a model.
mkdir -p models/checkpoints
[ -f models/checkpoints/sd15-tiny.safetensors ] ||
  ./build/sdflow make-checkpoint --arch sd15 --tiny --seed 1 models/checkpoints/sd15-tiny.safetensors
# The CLIP tokenizer vocabulary cannot ship with sdflow: use ../shared's copy when present.
if [ ! -f models/tokenizers/clip/vocab.json ]; then
  if [ -f ../shared/data/clip-tokenizer/vocab.json ]; then
    mkdir -p models/tokenizers
    ln -sfn "$(cd ../shared/data/clip-tokenizer && pwd)" models/tokenizers/clip
  else
    echo "note: put CLIP's vocab.json and merges.txt into models/tokenizers/clip/ (see README)"
  fi
fi
