// The CLIP text transformer (ComfyUI's comfy/clip_model.py: CLIPTextModel), reading its weights
// block by block through the Residency (Note [Models own no device memory] in
// memory/weight_store.h). Blocks: "embeddings", "encoder.layers.N", "final".
//
// Numerics as ComfyUI's text encoders (manual_cast ops, dtype=float32): whatever the stored
// dtype, every weight is upcast to fp32 at use and all math is fp32; token rows are looked up in
// the stored dtype and then converted. Pre-LN layers, causal mask filled with −finfo(fp32).max,
// no padding mask.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "memory/residency.h"
#include "memory/weight_store.h"
#include "models/text_encoder/clip_text_config.h"

namespace sdflow {

struct ClipTextRunOptions {
  // ComfyUI's intermediate_output: a layer index (negative counts from the end: -1 is the last
  // layer, -2 the penultimate); none = no intermediate output.
  std::optional<int64_t> intermediate_layer;
  bool final_layer_norm_intermediate = true;
  std::function<void()> check_cancel;  // called before each block; throws to stop
  // Weight changes (LoRA) the residency applies to the blocks it hands out; null: none.
  const WeightPatch* weight_patch = nullptr;
};

struct ClipTextOutput {
  at::Tensor last;          // [B, N, D] final_layer_norm(last layer)
  at::Tensor intermediate;  // [B, N, D] the chosen layer's output, or undefined
  at::Tensor pooled;        // [B, D] rows of `last`
  at::Tensor projected;     // [B, D] text_projection(pooled); undefined without a projection
};

// Thread-compatible: the forward functions are const and keep no state between calls.
class ClipTextModel {
 public:
  // Throws Error(kModel) when the store lacks a block the config needs.
  ClipTextModel(ClipTextConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency);
  ClipTextModel(const ClipTextModel&) = delete;
  ClipTextModel& operator=(const ClipTextModel&) = delete;

  // Token rows as fp32 on the compute device. ids: int64, any shape → [..., D].
  at::Tensor embed_tokens(const at::Tensor& ids, const WeightPatch* weight_patch = nullptr) const;

  // ComfyUI's forward(embeds=…, num_tokens=…): embeds [B, N, D] (token rows, N = max_positions),
  // pooled row b at num_tokens[b] − 1.
  ClipTextOutput forward_embeds(const at::Tensor& embeds, const std::vector<int64_t>& num_tokens,
                                const ClipTextRunOptions& options = {}) const;
  // ComfyUI's forward(input_tokens=…): tokens [B, N] int64; pooled row at the first eos_token
  // (argmax of tokens == eos, so row 0 when there is none).
  ClipTextOutput forward(const at::Tensor& tokens, const ClipTextRunOptions& options = {}) const;

  const ClipTextConfig& config() const { return config_; }
  const WeightStore& weights() const { return *weights_; }

 private:
  ClipTextConfig config_;
  std::shared_ptr<const WeightStore> weights_;
  Residency& residency_;
};

}  // namespace sdflow
