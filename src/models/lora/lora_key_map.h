// Which model weight each LoRA base name changes: ComfyUI's comfy/lora.py model_lora_keys_unet
// and model_lora_keys_clip, over sdflow's weight stores (COMFY_COMPAT 7.7). Every naming scheme
// ComfyUI v0.8.0 accepts for SD1.x / SD2.x / SDXL is here and only here:
//   UNet  lora_unet_<ldm path>, lora_unet_<diffusers path>, lycoris_<diffusers path>,
//         <diffusers path> and unet.<diffusers path> (attention as .processor.to_q …),
//         diffusion_model.<ldm path> (generic, also for biases)
//   CLIP  lora_te_ / lora_te1_ / lora_te2_ text_model_encoder_layers_N_<layer>,
//         text_encoder. / text_encoder_2. text_model.encoder.layers.N.<layer>,
//         lora_te1_ / lora_te2_text_projection, text_encoders.<model key> (generic)
// with ComfyUI's precedence where two schemes give the same name.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "memory/weight_store.h"
#include "models/unet/unet_config.h"

namespace sdflow {

struct LoraTarget {
  // The store holding the weight, or null when ComfyUI's map names a tensor this model does not
  // have (ComfyUI then reports the patch as "NOT LOADED").
  const WeightStore* store = nullptr;
  std::string block;
  std::string key;        // key inside the store, e.g. "input_blocks.1.1.proj_in.weight"
  std::string comfy_key;  // ComfyUI's model key, for logs: "diffusion_model.input_blocks…"
  // A tensor ComfyUI's model has but sdflow does not keep because no output reads it (CLIP-L's
  // text_projection in SD1.x/SDXL): a LoRA for it is accepted and has no effect, as in ComfyUI.
  bool unused = false;
};

// LoRA base name (without .lora_up.weight, .alpha, …) → target, in ComfyUI's insertion order
// (a Python dict): load_lora walks it in that order, so when a file names one weight twice the
// later name wins, as in ComfyUI.
class LoraKeyMap {
 public:
  void set(const std::string& name, const LoraTarget& target);
  const LoraTarget* find(const std::string& name) const;
  const std::vector<std::pair<std::string, LoraTarget>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<std::pair<std::string, LoraTarget>> entries_;
};

// model_lora_keys_unet for an SD-family UNet whose store keys are relative to the UNet prefix.
void add_unet_lora_keys(LoraKeyMap& map, const WeightStore& unet, const UNetConfig& config);

// model_lora_keys_clip for a checkpoint's text encoders (any may be null): SD1.x has clip_l,
// SD2.x clip_h, SDXL clip_l + clip_g, the SDXL refiner clip_g.
struct ClipStores {
  const WeightStore* clip_l = nullptr;
  const WeightStore* clip_g = nullptr;
  const WeightStore* clip_h = nullptr;
};
void add_clip_lora_keys(LoraKeyMap& map, const ClipStores& clip);

}  // namespace sdflow
