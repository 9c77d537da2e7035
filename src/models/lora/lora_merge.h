// The merge arithmetic of ComfyUI's comfy/lora.py calculate_weight with the adapters of
// comfy/weight_adapter/lora.py and base.py (weight_decompose), as ModelPatcher runs it when a
// patched model is loaded (patch_weight_to_device; COMFY_COMPAT 2.4, 7.8):
//   W_T  = stored weight converted to the merge dtype T (ComfyUI's lora_compute_dtype: fp16 on
//          an fp16-capable GPU, else fp32)
//   ΔW   = up.flatten(1) @ down.flatten(1) in fp32 (down first merged with a Tucker mid)
//   W_T += ((strength · alpha/rank) · ΔW).to(T)        (DoRA: weight_decompose instead)
// for each patch in the order the LoRAs were added; the caller then rounds W_T to the stored
// dtype (stochastic_rounding is plain rounding for fp32/fp16/bf16).
#pragma once

#include <ATen/ATen.h>

#include "models/lora/lora_adapter.h"

namespace sdflow {

// An adapter's tensors on the merge device at ComfyUI's intermediate dtype (fp32); diff/set
// values are kept as stored and converted at use, as ComfyUI does.
struct LoraFactors {
  at::Tensor up, down, mid, dora_scale, value;
  int64_t bytes() const;
};
LoraFactors lora_factors(const LoraAdapter& adapter, const at::Device& device);

// One calculate_weight step: `weight` (merge dtype, owned by the caller, changed in place).
// Shapes were checked when the adapter was matched (LoraAdapters::match).
void merge_lora_patch(at::Tensor& weight, const LoraAdapter& adapter, const LoraFactors& factors,
                      double strength);

}  // namespace sdflow
