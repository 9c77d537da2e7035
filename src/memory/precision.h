// Which dtypes each model part is stored and computed in, chosen like ComfyUI v0.8.0
// (model_management.py: unet_dtype, unet_manual_cast, text_encoder_dtype, vae_dtype; see
// COMFY_COMPAT 1.7). Storage is what weights are kept in (host and device); compute is what the
// layers run in — they differ for fp8 storage and for text encoders (fp16 weights, fp32 math).
#pragma once

#include <ATen/ATen.h>

#include "sdflow/memory.h"

namespace sdflow {

struct DtypeChoice {
  at::ScalarType storage = at::kFloat;
  at::ScalarType compute = at::kFloat;
};

// What the compute device can do, as far as the choice depends on it.
struct DeviceCaps {
  bool is_gpu = false;
  int compute_capability_major = 0;  // 8 = Ampere; 0 = unknown/CPU
  bool supports_fp16() const { return is_gpu && compute_capability_major >= 7; }
  bool supports_bf16() const { return is_gpu && compute_capability_major >= 8; }
};

// checkpoint_dtype: the dtype with most elements in the file's UNet weights.
DtypeChoice choose_unet_dtype(const MemoryOptions& options, const DeviceCaps& caps, at::ScalarType checkpoint_dtype);
DtypeChoice choose_text_encoder_dtype(const MemoryOptions& options, const DeviceCaps& caps);
DtypeChoice choose_vae_dtype(const MemoryOptions& options, const DeviceCaps& caps);
// The dtype LoRA patches are merged in on the GPU (ComfyUI's lora_compute_dtype: fp16 when
// should_use_fp16(device), else fp32). On the CPU it is always fp32.
at::ScalarType choose_lora_merge_dtype(const MemoryOptions& options, const DeviceCaps& caps);

// The dtype a Precision flag names; nullopt for kDefault or a dtype this libtorch lacks.
std::optional<at::ScalarType> scalar_type_of(Precision precision);

}  // namespace sdflow
