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
