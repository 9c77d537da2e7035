// Weighted prompt chunks → CONDITIONING tensors, as ComfyUI's CLIP.encode_from_tokens does through
// SDClipModel (comfy/sd1_clip.py: process_tokens, forward, set_clip_options) and
// ClipTokenWeightEncoder.encode_token_weights, with the per-model wrappers of sd1_clip.py,
// sdxl_clip.py and text_encoders/sd2_clip.py. See Note [CLIP encoding] in clip_encode.cpp.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "models/text_encoder/clip_text.h"
#include "models/tokenizer/clip_tokenize.h"

namespace sdflow {

// The constants of one SDClipModel subclass.
struct ClipEncoderSpec {
  int32_t start_token = 49406;
  int32_t end_token = 49407;
  int32_t pad_token = 49407;
  std::optional<int64_t> default_layer;  // none = "last"; else layer="hidden" with this layer_idx
  bool layer_norm_hidden_state = true;   // final_layer_norm on a hidden layer's output
  bool return_projected_pooled = true;

  static ClipEncoderSpec sd1_clip_l();   // last layer + final LN; unprojected pooled
  static ClipEncoderSpec sdxl_clip_l();  // hidden -2, no final LN
  static ClipEncoderSpec sdxl_clip_g();  // hidden -2, no final LN, projected pooled, pads with 0
  static ClipEncoderSpec sd2_clip_h();   // hidden -2 + final LN, projected pooled, pads with 0
};

// One encoder's input: the tokenizer's chunks and the vectors of the embeddings they name, one
// tensor per TokenizedPrompt::embeddings entry ([rows, width] or [width]; any float dtype).
struct ClipTokens {
  TokenizedPrompt prompt;
  std::vector<at::Tensor> embeddings;
};

struct ClipEncodeOptions {
  std::optional<int64_t> clip_layer;  // CLIPSetLastLayer's stop_at_clip_layer (CLIP.layer_idx)
  bool unprojected_pooled = false;    // encode_from_tokens(return_pooled="unprojected")
  at::Device output_device = at::kCPU;
  std::function<void()> check_cancel;
  // The CLIP value's LoRA stack (covers every encoder of the model); null: none.
  const WeightPatch* weight_patch = nullptr;
};

struct ClipEncodeResult {
  at::Tensor cond;    // [1, 77·chunks, D] float32
  at::Tensor pooled;  // [1, D] float32 (first chunk)
};

// ComfyUI's reset_clip_options then set_clip_options({"layer": clip_layer}) when one is set:
// the layer whose output is the cond, or none for "last" (also when |clip_layer| > layers).
std::optional<int64_t> effective_clip_layer(const ClipEncoderSpec& spec, std::optional<int64_t> clip_layer,
                                            int64_t layers);

// SDClipModel.encode_token_weights for one encoder. Throws Error(kRuntime) when there are no
// chunks, chunks differ in length or an embedding index has no vectors.
ClipEncodeResult encode_token_weights(const ClipTextModel& model, const ClipEncoderSpec& spec,
                                      const ClipTokens& tokens, const ClipEncodeOptions& options = {});

// SD1ClipModel (CLIP-L): cond [1, 77k, 768], pooled 768 unprojected.
ClipEncodeResult encode_sd1(const ClipTextModel& clip_l, const ClipTokens& l,
                            const ClipEncodeOptions& options = {});
// SD2ClipModel (OpenCLIP-H): cond [1, 77k, 1024], pooled 1024 projected.
ClipEncodeResult encode_sd2(const ClipTextModel& clip_h, const ClipTokens& h,
                            const ClipEncodeOptions& options = {});
// SDXLClipModel: cat([L, G], -1) cut to the shorter token count ([1, 77k, 2048]); pooled = G's
// projected pooled (1280).
ClipEncodeResult encode_sdxl(const ClipTextModel& clip_l, const ClipTextModel& clip_g, const ClipTokens& l,
                             const ClipTokens& g, const ClipEncodeOptions& options = {});
// SDXLRefinerClipModel: CLIP-G only.
ClipEncodeResult encode_sdxl_refiner(const ClipTextModel& clip_g, const ClipTokens& g,
                                     const ClipEncodeOptions& options = {});

}  // namespace sdflow
