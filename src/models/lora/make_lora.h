// Random LoRA files for a checkpoint (`sdflow make-lora`): every UNet conv/linear layer inside
// the input, middle and output blocks (attention, feed-forward, projections, ResBlock convs as
// LoCon with 3×3 down and 1×1 up factors, time-embedding projections, skips, resamplers) and every
// text-encoder layer (q/k/v/out projections, MLP), in the kohya or the diffusers/peft naming that
// ComfyUI v0.8.0 loads. For tests, benchmarks and parity runs: no LoRA download needed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sdflow {

class StateDict;

struct LoraRecipe {
  int64_t rank = 4;
  uint64_t seed = 0;
  std::string format = "kohya";  // "kohya" (lora_unet_/lora_te*_) | "peft" (unet./text_encoder*. lora_A/B)
  std::optional<double> alpha;   // stored as <name>.alpha; default: rank (scale 1)
  at::ScalarType dtype = at::kHalf;
  // Each layer's ΔW at strength 1 has this std relative to the layer's own weights: the UNet
  // output then moves by roughly 20–30 % on the tiny models (noticeable, not absurd; the test
  // MakeLoraCoversTheModelInBothFormatsAndMovesTheOutputModerately measures it).
  double relative_scale = 0.05;
};

// Throws Error(kUsage) for a bad recipe, Error(kModel) when the checkpoint is not SD1.x/SD2.x/SDXL.
std::vector<std::pair<std::string, at::Tensor>> make_random_lora(const StateDict& checkpoint,
                                                                 const LoraRecipe& recipe);

// Writes it as safetensors (atomically) with ss_network_dim / ss_network_alpha metadata.
void write_random_lora(const StateDict& checkpoint, const LoraRecipe& recipe, const std::string& path);

}  // namespace sdflow
