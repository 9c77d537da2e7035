#include "memory/precision.h"

#include "core/error.h"
#include "core/torch_compat.h"

namespace sdflow {

std::optional<at::ScalarType> scalar_type_of(Precision p) {
  switch (p) {
    case Precision::kFp32: return at::kFloat;
    case Precision::kFp64: return at::kDouble;
    case Precision::kFp16: return at::kHalf;
    case Precision::kBf16: return at::kBFloat16;
#if SDFLOW_HAS_FP8
    case Precision::kFp8E4M3: return at::kFloat8_e4m3fn;
    case Precision::kFp8E5M2: return at::kFloat8_e5m2;
#endif
    default: return std::nullopt;
  }
}

namespace {
bool is_fp8(Precision p) { return p == Precision::kFp8E4M3 || p == Precision::kFp8E5M2 || p == Precision::kFp8E8M0; }

// ComfyUI's unet_manual_cast: compute in the storage dtype when the device handles it,
// else the first of fp16/bf16 it supports, else fp32.
at::ScalarType compute_for(at::ScalarType storage, const DeviceCaps& caps) {
  if (storage == at::kFloat || storage == at::kDouble) return storage;
  if (storage == at::kHalf && caps.supports_fp16()) return storage;
  if (storage == at::kBFloat16 && caps.supports_bf16()) return storage;
  if (caps.supports_fp16()) return at::kHalf;
  if (caps.supports_bf16()) return at::kBFloat16;
  return at::kFloat;
}
}  // namespace

DtypeChoice choose_unet_dtype(const MemoryOptions& o, const DeviceCaps& caps, at::ScalarType checkpoint_dtype) {
  DtypeChoice c;
  if (o.unet != Precision::kDefault) {
    auto t = scalar_type_of(o.unet);
    if (!t)
      throw Error(ErrorKind::kUsage, std::string("--") + to_string(o.unet) +
                                         "-unet needs fp8 support in libtorch (2.1 or newer); this build has none");
    c.storage = *t;
    c.compute = is_fp8(o.unet) ? (caps.supports_fp16() ? at::kHalf : at::kFloat) : compute_for(*t, caps);
    return c;
  }
  if (o.force_fp32 || !caps.is_gpu || o.vram == VramMode::kCpu) return c;  // fp32
  // fp16 first on every fp16-capable GPU (also for fp32 and bf16 checkpoints), like ComfyUI.
  (void)checkpoint_dtype;
  if (caps.supports_fp16()) c.storage = c.compute = at::kHalf;
  else if (caps.supports_bf16()) c.storage = c.compute = at::kBFloat16;
  return c;
}

DtypeChoice choose_text_encoder_dtype(const MemoryOptions& o, const DeviceCaps& caps) {
  DtypeChoice c;
  c.compute = at::kFloat;  // ComfyUI computes CLIP in fp32 whatever the weights
  c.storage = at::kHalf;   // fp16 storage by default, even on the CPU
  if (o.text_encoder != Precision::kDefault) {
    auto t = scalar_type_of(o.text_encoder);
    if (!t)
      throw Error(ErrorKind::kUsage, std::string("--") + to_string(o.text_encoder) +
                                         "-text-enc needs fp8 support in libtorch (2.1 or newer)");
    c.storage = *t;
  }
  return c;
}

DtypeChoice choose_vae_dtype(const MemoryOptions& o, const DeviceCaps& caps) {
  DtypeChoice c;
  if (o.vae != Precision::kDefault) {
    c.storage = c.compute = *scalar_type_of(o.vae);
    return c;
  }
  if (o.force_fp32 || o.cpu_vae || !caps.is_gpu) return c;  // fp32
  // SD/SDXL VAEs work in bf16 or fp32; fp16 is never the default (it overflows).
  if (caps.supports_bf16()) c.storage = c.compute = at::kBFloat16;
  return c;
}

at::ScalarType choose_lora_merge_dtype(const MemoryOptions& o, const DeviceCaps& caps) {
  if (!caps.is_gpu || o.vram == VramMode::kCpu) return at::kFloat;
  if (o.force_fp16) return at::kHalf;
  if (o.force_fp32) return at::kFloat;
  return caps.supports_fp16() ? at::kHalf : at::kFloat;
}

}  // namespace sdflow
