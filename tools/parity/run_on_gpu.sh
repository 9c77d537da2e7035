#!/usr/bin/env bash
# The one command for a parity run on the GPU machine (docs/PARITY.md): builds sdflow, makes the
# random SD1.5 checkpoint, runs ComfyUI and sdflow on every case, compares, and leaves the
# results in $OUT (at most 8 files).
#
#   device run, carry [".device-deps", "third_party_ref"]:
#     SDFLOW_COMMIT=<git rev-parse HEAD here> bash tools/parity/run_on_gpu.sh [parity.py options]
#
# Default options: --cases core. PARITY_LEAN=1 leaves only results.md, results.json and
# parity.log (for several runs in one call, each with its own OUT). PARITY_TOTAL (default 570) is the time in seconds this whole
# script may take, build included; parity.py gets what the build leaves and stops starting
# cases when it runs out (the case list is ordered by priority).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
T0=$(date +%s)
OUT=${OUT:-/tmp/parity-out}
mkdir -p "$OUT"
TOTAL=${PARITY_TOTAL:-570}
export COMFY_PATH=${COMFY_PATH:-third_party_ref/ComfyUI}
export COMFY_COMMIT=${COMFY_COMMIT:-pollockjj/ComfyUI@618b803d314a (v0.8.0)}
export PYTHONUNBUFFERED=1
export PARITY_WORK=${PARITY_WORK:-/tmp/sdflow-parity}
LOG=$OUT/parity.log
say() { echo "[run_on_gpu $(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c 'import torch, numpy, safetensors; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(), "numpy", numpy.__version__, "safetensors", safetensors.__version__)'
  nproc
} >>"$LOG" 2>&1
say "sdflow ${SDFLOW_COMMIT:-commit unknown (set SDFLOW_COMMIT)}; ComfyUI $COMFY_COMMIT at $COMFY_PATH"
[ -d "$COMFY_PATH/comfy" ] || say "WARNING: no ComfyUI at $COMFY_PATH (carry third_party_ref)"
[ -d "$COMFY_PATH/torchsde" ] || say "WARNING: no torchsde inside $COMFY_PATH (SDE samplers will fail on the ComfyUI side)"

# Build the sdflow binary only (no tests). Debian deps: their library path is kept for sdflow
# alone (SDFLOW_LD_LIBRARY_PATH), so ComfyUI's Python never loads Debian's libraries.
ORIG_LD=${LD_LIBRARY_PATH:-}
# shellcheck disable=SC1091
source .device-deps/device-deps.sh unpack >>"$LOG" 2>&1 || say "WARNING: device-deps unpack failed"
export SDFLOW_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
if [ -x tools/gpu/build.sh ] || [ -f tools/gpu/build.sh ]; then
  bash tools/gpu/build.sh -DSDFLOW_BUILD_TESTS=OFF >"$OUT/build.log" 2>&1
else
  { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DSDFLOW_CUDA=ON -DSDFLOW_PCH=ON -DSDFLOW_BUILD_TESTS=OFF &&
    cmake --build build-gpu --parallel "$(nproc)"; } >"$OUT/build.log" 2>&1
fi
BUILD_RC=$?
export BUILD_SECONDS=$(( $(date +%s) - T0 ))
export LD_LIBRARY_PATH=$ORIG_LD
[ -n "$LD_LIBRARY_PATH" ] || unset LD_LIBRARY_PATH
if [ $BUILD_RC -ne 0 ] || [ ! -x build-gpu/sdflow ]; then
  say "BUILD FAILED (rc $BUILD_RC) after ${BUILD_SECONDS}s; running the ComfyUI side alone"
  tail -n 40 "$OUT/build.log" | tee -a "$LOG"
else
  say "build ok in ${BUILD_SECONDS}s"
fi

export PARITY_COMMAND="SDFLOW_COMMIT=${SDFLOW_COMMIT:-?} bash tools/parity/run_on_gpu.sh $*"
LEFT=$(( TOTAL - ($(date +%s) - T0) ))
say "parity.py with a budget of ${LEFT}s: $*"
python3 tools/parity/parity.py --cases core --budget "$LEFT" --work "$PARITY_WORK" --results-dir "$OUT" \
  --save-samples "$OUT/samples.safetensors" "$@" 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}

if [ -n "${PARITY_LEAN:-}" ]; then  # several runs in one device call: results only (8-file limit)
  rm -f "$OUT/samples.safetensors" "$OUT/build.log"
  say "done (rc $RC); files: $(cd "$OUT" && echo *)"
  exit "$RC"
fi
# Engine logs, one file (the 8-file limit); the workflow, to reproduce a case by hand.
for f in "$PARITY_WORK"/comfy_fp16.log "$PARITY_WORK"/sdflow_fp16.log "$PARITY_WORK"/comfy_fp32.log "$PARITY_WORK"/sdflow_fp32.log; do
  [ -f "$f" ] && { echo "===== $(basename "$f")"; tail -c 3000000 "$f"; }
done >"$OUT/engines.log" 2>&1
cp "$PARITY_WORK/workflow_fp16.json" "$OUT/" 2>/dev/null
tail -c 8000000 "$OUT/build.log" >"$OUT/build.log.tmp" 2>/dev/null && mv "$OUT/build.log.tmp" "$OUT/build.log"
say "done (rc $RC); files: $(cd "$OUT" && echo *)"
exit "$RC"
