#!/usr/bin/env bash
# On the GPU machine: regenerate the committed CPU goldens from ComfyUI's own modules.
# Needs ComfyUI v0.8.0 sources at $COMFY (default third_party_ref/ComfyUI, git-ignored, carried)
# and the CLIP vocab at $VOCAB. Writes into tests/data/ and copies to $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/../.."
COMFY=${COMFY:-third_party_ref/ComfyUI}
VOCAB=${VOCAB:-third_party_ref/clip-tokenizer}
status=0
for s in tools/goldens/make_*_goldens.py; do
  echo "== $s"
  python3 "$s" --comfy "$COMFY" --vocab "$VOCAB" || { echo "FAILED: $s"; status=1; }
done
exit $status
