// Text encoder files on their own (CLIPLoader, DualCLIPLoader; comfy/sd.py load_clip and
// load_text_encoder_state_dicts), for the encoders sdflow has: CLIP-L, OpenCLIP-H, OpenCLIP-bigG.
// Files are in ComfyUI's layouts: HF transformers keys (`text_model.…`, `text_projection.weight`)
// or open_clip keys (`transformer.resblocks.…`, converted as ComfyUI converts them). The result
// is the same TextEncoders a checkpoint gives, so the CLIP value behaves exactly alike.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/loader/checkpoint_loader.h"

namespace sdflow {

class MemoryManager;
class StateDict;

// ComfyUI's detect_te_model for the CLIP towers (HF keys): layer 30 → bigG, layer 22 → H,
// layer 0 → L, in that order; kNone for anything else (T5, LLMs, non-text files).
enum class TextEncoderKind { kNone, kClipL, kClipH, kClipG };
const char* to_string(TextEncoderKind kind);  // "none", "clip_l", "clip_h", "clip_g"

// A text encoder file's keys in HF layout: open_clip files converted, a bare `text_projection`
// matrix (old CLIPSave files) also given as text_projection.weight.
StateDict text_encoder_hf_keys(const StateDict& file);

// The kind of an HF-layout file (`metadata`: the file's). sdflow's tiny test files say theirs in metadata
// (sdflow.tiny = "true", sdflow.text_encoder = "clip_l" | "clip_h" | "clip_g"), because their
// three layers look like CLIP-L to ComfyUI's rule (Note [Random test checkpoints]).
TextEncoderKind detect_text_encoder(const StateDict& hf, const std::map<std::string, std::string>& metadata = {});

struct TextEncoderLoadOptions {
  std::string type = "stable_diffusion";  // CLIPLoader / DualCLIPLoader `type`, as in the workflow
  bool cpu = false;                       // device "cpu": run on the CPU whatever the compute device
};

// One file (CLIPLoader): CLIP-L → SD1 (type sd3 / hidream refused), OpenCLIP-H → SD2 (any type),
// bigG → the SDXL refiner's encoder (types stable_cascade / sd3 / hidream refused).
// Two files (DualCLIPLoader): type sdxl only; each file goes to the bigG slot when it has
// layer 30, else to the CLIP-L slot, and both slots must be filled.
// Throws Error(kModel) naming the file (and key) for files sdflow cannot use, and Error(kModel)
// naming the type for combinations that would give another model in ComfyUI.
TextEncoders load_text_encoders(const std::vector<StateDict>& files, MemoryManager& memory,
                                const TextEncoderLoadOptions& options = {});

}  // namespace sdflow
