#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) in build-fuzz/ and runs it.
#   tools/fuzz.sh [SECONDS=60] [TARGET=fuzz_safetensors_header] [extra libFuzzer flags...]
# Seeds and a dictionary are generated here on every run; the corpus the fuzzer grows stays in
# build-fuzz/ (never commit it). Crash reproducers land in build-fuzz/fuzz-artifacts/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
target=${2:-fuzz_safetensors_header}
shift $(($# < 2 ? $# : 2))
build=$root/build-fuzz
work=$build/fuzz-work/$target

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DSDFLOW_BUILD_FUZZERS=ON \
  -DSDFLOW_PCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" -j"${JOBS:-2}" "$target"

rm -rf "$work/seeds"
mkdir -p "$work/corpus" "$work/seeds" "$build/fuzz-artifacts"

# 8-byte little-endian length prefix.
le64() {
  local n=$1 i
  for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(((n >> (8 * i)) & 255)))"; done
}
# seed NAME HEADER_JSON DATA_BYTES: a whole file, and the bare header for the fuzzer's second mode.
seed() {
  local header=$2
  { le64 "${#header}"; printf %s "$header"; head -c "$3" /dev/urandom; } >"$work/seeds/$1.safetensors"
  printf %s "$header" >"$work/seeds/$1.json"
}

case $target in
  fuzz_safetensors_header)
    seed empty '{}' 0
    seed meta '{"__metadata__":{"format":"pt","note":"x"}}' 0
    seed one '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}  ' 24
    # Near-misses next to each rejection path, so mutations explore both sides of it.
    seed overlap '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}' 8
    seed gap '{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}' 12
    seed bad_meta '{"__metadata__":{"a":1}}' 0
    seed bad_shape '{"w":{"dtype":"F16","shape":[-1,4611686018427387904],"data_offsets":[0,2.0]}}' 2
    seed mixed '{"__metadata__":{"a":"b"},"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]},"e":{"dtype":"F8_E4M3","shape":[0,7],"data_offsets":[16,16]},"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"BOOL","shape":[],"data_offsets":[16,17]}}' 17
    {
      for t in '{' '}' '[' ']' ':' ',' '0' '-1' '1.5' 'null' 'true' '18446744073709551615' '4611686018427387904'; do
        printf '"%s"\n' "$t"
      done
      for k in dtype shape data_offsets __metadata__ F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL; do
        printf '"\\"%s\\""\n' "$k"
      done
    } >"$work/dict"
    ;;
  fuzz_torch_checkpoint)
    # Real torch.save files (tests/data/torch) and their bare pickles, which the fuzzer runs as
    # data.pkl when an input has no zip header.
    cp "$root"/tests/data/torch/* "$work/seeds/"
    for f in "$root"/tests/data/torch/*.pth; do
      unzip -p "$f" '*/data.pkl' >"$work/seeds/$(basename "$f" .pth).pkl" 2>/dev/null || true
    done
    {
      for t in 'collections\x0aOrderedDict\x0a' 'torch._utils\x0a_rebuild_tensor_v2\x0a' 'torch\x0aFloatStorage\x0a' \
        'torch\x0aHalfStorage\x0a' 'storage' 'data.pkl' 'byteorder' 'little' 'PK\x03\x04' 'PK\x01\x02' 'PK\x05\x06' \
        'PK\x06\x06' 'PK\x06\x07' '\x80\x02' '\xff\xff\xff\xff'; do
        printf '"%s"\n' "$t"
      done
    } >"$work/dict"
    ;;
esac

dict_flag=()
[[ -f $work/dict ]] && dict_flag=(-dict="$work/dict")
"$build/tests/fuzz/$target" "$work/corpus" "$work/seeds" "${dict_flag[@]}" -max_total_time="$seconds" \
  -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/" "$@"
