// Random-weight checkpoints in the real single-file layouts (ComfyUI loads the full-size ones as
// SD1.5 / SDXL), for tests, benchmarks and parity runs: no model download needed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/text_encoder/clip_text_config.h"
#include "models/unet/unet_config.h"
#include "models/vae/vae_config.h"

namespace sdflow {

struct CheckpointRecipe {
  std::string arch = "sd15";  // "sd15" | "sdxl"
  bool tiny = false;          // same structure, small widths/depths, real 49408-token vocabulary
  uint64_t seed = 0;
  at::ScalarType dtype = at::kHalf;
};

// The configs a recipe uses (for tests that build models directly).
struct CheckpointConfigs {
  UNetConfig unet;
  ClipTextConfig clip_l;
  std::optional<ClipTextConfig> clip_g;  // SDXL only
  VaeConfig vae;
};
CheckpointConfigs checkpoint_configs(const CheckpointRecipe& recipe);

// Every tensor with its checkpoint key (model.diffusion_model., cond_stage_model. /
// conditioner.embedders.N., first_stage_model.). Throws Error(kUsage) for an unknown arch.
std::vector<std::pair<std::string, at::Tensor>> make_random_checkpoint(const CheckpointRecipe& recipe);

// Writes it as safetensors with modelspec metadata (atomically).
void write_random_checkpoint(const CheckpointRecipe& recipe, const std::string& path);

}  // namespace sdflow
