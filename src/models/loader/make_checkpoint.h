// Random-weight models in the real layouts ComfyUI loads (single-file SD1.5 / SD2.x / SDXL /
// SDXL-refiner checkpoints, or their parts as separate UNet, text encoder and VAE files), for
// tests, benchmarks and parity runs: no model download needed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/text_encoder/clip_text_config.h"
#include "models/unet/unet_config.h"
#include "models/vae/vae_config.h"

namespace sdflow {

struct CheckpointRecipe {
  std::string arch = "sd15";  // "sd15" | "sd2" | "sdxl" | "sdxl_refiner"
  bool tiny = false;          // same structure, small widths/depths, real 49408-token vocabulary
  uint64_t seed = 0;
  at::ScalarType dtype = at::kHalf;
};

// The configs a recipe uses (for tests that build models directly).
struct CheckpointConfigs {
  UNetConfig unet;
  std::optional<ClipTextConfig> clip_l;  // sd15, sdxl
  std::optional<ClipTextConfig> clip_g;  // sdxl, sdxl_refiner
  std::optional<ClipTextConfig> clip_h;  // sd2
  VaeConfig vae;
};
// Throws Error(kUsage) for an unknown arch.
CheckpointConfigs checkpoint_configs(const CheckpointRecipe& recipe);

// Each part's tensors with the keys a separate file holds: the UNet's LDM keys and the VAE's
// keys without prefix, CLIP-L in HF layout (`text_model.…`), CLIP-G / CLIP-H in open_clip
// layout (`transformer.resblocks.…`) as their checkpoints store them. Absent parts are empty.
struct RandomModelParts {
  std::map<std::string, at::Tensor> unet, clip_l, clip_g, clip_h, vae;
};
RandomModelParts make_random_parts(const CheckpointRecipe& recipe);

// Every tensor with its checkpoint key (model.diffusion_model., cond_stage_model. /
// conditioner.embedders.N., first_stage_model.). Throws Error(kUsage) for an unknown arch.
std::vector<std::pair<std::string, at::Tensor>> make_random_checkpoint(const CheckpointRecipe& recipe);

// Writes it as safetensors with modelspec metadata (atomically).
void write_random_checkpoint(const CheckpointRecipe& recipe, const std::string& path);

// `make-checkpoint --split`: the parts as the separate files UNETLoader, CLIPLoader /
// DualCLIPLoader and VAELoader read, in ComfyUI's folders under `models_dir`:
// diffusion_models/NAME.safetensors, text_encoders/NAME_clip_{l,g,h}.safetensors (those the
// arch has), vae/NAME.safetensors. Returns the paths written.
std::vector<std::string> write_random_split(const CheckpointRecipe& recipe, const std::string& models_dir,
                                            const std::string& name);

}  // namespace sdflow
