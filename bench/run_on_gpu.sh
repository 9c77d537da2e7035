#!/usr/bin/env bash
# One device call of the benchmark (docs/BENCHMARKS.md): builds sdflow, makes the random
# checkpoints, runs bench/run_bench.py (or BENCH_SCRIPT, e.g. bench/attention_quality.py) within
# what is left of BENCH_TOTAL seconds, and leaves its .md and .json, and bench.log, in $OUT.
#
#   device run (nvidia-h200), carry [".device-deps", "third_party_ref"]:
#     BENCH_TOTAL=570 bash bench/run_on_gpu.sh --archs sd15 [run_bench.py options]
#     BENCH_TOTAL=570 BENCH_SCRIPT=bench/attention_quality.py bash bench/run_on_gpu.sh [its options]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
T0=$(date +%s)
OUT=${OUT:-/tmp/sdflow-bench-out}
mkdir -p "$OUT"
TOTAL=${BENCH_TOTAL:-570}
SCRIPT=${BENCH_SCRIPT:-bench/run_bench.py}
export COMFY_PATH=${COMFY_PATH:-third_party_ref/ComfyUI}
export PYTHONUNBUFFERED=1
LOG=$OUT/bench.log
say() { echo "[bench $(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$LOG" 2>&1
ORIG_LD=${LD_LIBRARY_PATH:-}
bash tools/gpu/build.sh -DSDFLOW_BUILD_TESTS=OFF >"$OUT/build.log" 2>&1
BUILD_RC=$?
# sdflow needs the carried Debian libraries; ComfyUI's Python must not see them.
# shellcheck disable=SC1091
source .device-deps/device-deps.sh unpack >/dev/null 2>&1
export SDFLOW_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH=$ORIG_LD
[ -n "$LD_LIBRARY_PATH" ] || unset LD_LIBRARY_PATH
if [ $BUILD_RC -ne 0 ] || [ ! -x build-gpu/sdflow ]; then
  say "BUILD FAILED (rc $BUILD_RC)"
  tail -n 40 "$OUT/build.log" | tee -a "$LOG"
  exit 1
fi
tail -c 200000 "$OUT/build.log" >"$OUT/build.log.tmp" && mv "$OUT/build.log.tmp" "$OUT/build.log"
LEFT=$(( TOTAL - ($(date +%s) - T0) ))
say "build ok; $SCRIPT with ${LEFT}s: $*"
python3 "$SCRIPT" --budget "$LEFT" --out "$OUT" "$@" 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
say "done (rc $RC); files: $(cd "$OUT" && echo *)"
exit "$RC"
