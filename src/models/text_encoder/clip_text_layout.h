// Where every CLIP text tensor lives, and the one place that renames CLIP checkpoint keys.
// The model, the weight grouping and the random weights all read clip_text_params(), so they
// cannot disagree about names or shapes. Keys are relative to the text model's `transformer.`
// prefix in ComfyUI's internal names ("clip_l.transformer.", "clip_g.transformer."):
//   SD1.x  cond_stage_model.transformer.                 HF layout
//   SDXL   conditioner.embedders.0.transformer.          HF layout (CLIP-L)
//          conditioner.embedders.1.model.                open_clip layout (CLIP-G)
//   SD2.x  cond_stage_model.model.                       open_clip layout (CLIP-H)
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory/weight_store.h"
#include "models/text_encoder/clip_text_config.h"

namespace sdflow {

class StateDict;

struct ClipTextParam {
  enum class Role { kEmbedding, kWeight, kBias, kNormWeight, kNormBias };
  std::string key;
  std::vector<int64_t> shape;
  std::string block;  // "embeddings", "encoder.layers.N" or "final"
  Role role;
  double gain = 1.0;  // init scale relative to 1/sqrt(fan_in) (random weights)
};

// Every tensor the model reads, in execution order (ComfyUI's CLIPTextModel state_dict, less
// text_projection when the config has none).
std::vector<ClipTextParam> clip_text_params(const ClipTextConfig& config);

// Block names in execution order: "embeddings", "encoder.layers.0" … , "final".
std::vector<std::string> clip_text_block_names(const ClipTextConfig& config);

// open_clip text tower → HF names (ComfyUI's clip_text_transformers_convert):
// positional_embedding, token_embedding, ln_final, transformer.resblocks.N.{ln_1, ln_2, mlp.c_fc,
// mlp.c_proj, attn.out_proj} are renamed; attn.in_proj_{weight,bias} are split into q/k/v row
// blocks (views, no copy); `text_projection` (used as x @ P) becomes text_projection.weight = Pᵀ.
// Other keys (logit_scale, …) pass through unchanged.
StateDict convert_open_clip_text(const StateDict& open_clip);

// HF-layout weights as SD1.x checkpoints store them: keys without "text_model." get it
// (old checkpoints), as ComfyUI's SD15.process_clip_state_dict does.
StateDict normalize_hf_clip_text(const StateDict& hf);

// Groups `weights` (HF keys, see above) into blocks. Missing keys or wrong shapes throw
// Error(kModel) naming the key; other keys (position_ids, logit_scale) are ignored.
std::shared_ptr<WeightStore> build_clip_text_weight_store(const StateDict& weights,
                                                          const ClipTextConfig& config,
                                                          at::ScalarType storage, at::ScalarType compute,
                                                          const std::string& model_name = "clip");

enum class ClipKeyLayout {
  kHf,        // as SD1.x/SDXL CLIP-L checkpoints: + embeddings.position_ids (int64 [1, 77])
  kOpenClip,  // as SDXL CLIP-G / SD2 checkpoints: fused in_proj, text_projection matrix, logit_scale
};

// Random weights in a real checkpoint layout, deterministic for a seed (CPU generator, params in
// clip_text_params order). Token and position embeddings N(0, 0.5); Linear weights
// N(0, gain²/fan_in) with the residual branches (out_proj, fc2) scaled by 1/sqrt(2·layers);
// biases N(0, 0.02); LayerNorms 1/0. Hidden states then stay O(1) through every layer.
std::map<std::string, at::Tensor> make_random_clip_weights(const ClipTextConfig& config, uint64_t seed,
                                                           at::ScalarType dtype,
                                                           ClipKeyLayout layout = ClipKeyLayout::kHf);

}  // namespace sdflow
