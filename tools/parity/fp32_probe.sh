#!/usr/bin/env bash
# Diagnoses fp32 differences against ComfyUI on the GPU machine: runs fp32 euler/normal with
# 1, 3 and 20 steps, and with cuDNN TF32 switched off in sdflow and/or ComfyUI, and writes one
# summary ($OUT/fp32_probe.md): each run's results line and both engines' math modes.
#
#   device run, carry [".device-deps", "third_party_ref"]:  bash tools/parity/fp32_probe.sh
# Needs build-gpu/sdflow (tools/parity/run_on_gpu.sh or tools/gpu/build.sh builds it).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/parity-out}
mkdir -p "$OUT"
SUM=$OUT/fp32_probe.md
WORK=${PARITY_WORK:-/tmp/sdflow-parity}-fp32probe
export COMFY_PATH=${COMFY_PATH:-third_party_ref/ComfyUI} PYTHONUNBUFFERED=1
if [ -z "${SDFLOW_LD_LIBRARY_PATH:-}" ]; then
  SDFLOW_LD_LIBRARY_PATH=$(bash -c 'source .device-deps/device-deps.sh unpack >/dev/null 2>&1; echo "${LD_LIBRARY_PATH:-}"')
  export SDFLOW_LD_LIBRARY_PATH
fi
echo "# fp32 probe ($(date -u +%F\ %H:%M) UTC, sdflow ${SDFLOW_COMMIT:-?})" >"$SUM"
probe() {  # name, steps, then env assignments
  local name=$1 steps=$2 reuse=()
  shift 2
  [ -f "$WORK/models/checkpoints/parity_sd15.safetensors" ] && reuse=(--reuse-ckpt)
  rm -rf /tmp/fp32probe-res && mkdir -p /tmp/fp32probe-res
  env "$@" python3 tools/parity/parity.py --only '^fp32\.t2i\.euler\.normal$' --steps "$steps" --budget 150 \
    --work "$WORK" --results-dir /tmp/fp32probe-res "${reuse[@]}" >"/tmp/fp32probe-$name.log" 2>&1
  {
    echo "## $name: steps $steps, env: $*"
    grep -E "^\| fp32" /tmp/fp32probe-res/results.md || tail -n 5 "/tmp/fp32probe-$name.log"
    grep -ho "cuDNN TF32.*" "$WORK"/sdflow_fp32.log 2>/dev/null | head -n 1 | sed 's/^/sdflow: /'
    grep -ho "math modes:.*" "$WORK"/comfy_fp32.log 2>/dev/null | head -n 1 | sed 's/^/comfy: /'
    echo
  } >>"$SUM"
}
probe base 20 X=1
probe steps1 1 X=1
probe sdflow_cublas_tf32_off 20 SDFLOW_CUBLAS_TF32=0
probe sdflow_all_tf32_off 20 SDFLOW_CUBLAS_TF32=0 SDFLOW_CUDNN_TF32=0
probe comfy_cudnn_tf32_off 20 PARITY_COMFY_CUDNN_TF32=0
probe sdflow_cublas_off_comfy_cudnn_off 20 SDFLOW_CUBLAS_TF32=0 PARITY_COMFY_CUDNN_TF32=0
cat "$SUM"
