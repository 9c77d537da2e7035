// VAE values: ComfyUI's VAE object (comfy/sd.py: VAE) — an AutoencoderKL or TAESD with the latent format
// of the checkpoint it came from and its dtype — and the decode/encode paths the VAE nodes
// share: batching by free memory, and the tiled fallback when a regular pass runs out of
// memory (COMFY_COMPAT 2.6).
#pragma once

#include <ATen/ATen.h>

#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "models/loader/checkpoint_loader.h"
#include "models/vae/vae.h"
#include "nodeapi/node.h"
#include "nodeapi/value.h"

namespace sdflow::nodes {

// VAE: immutable once made. `vae.model` is null when the checkpoint had no VAE weights: using
// it then fails like ComfyUI's invalid VAE.
struct VaeValue final : Object {
  VaeModel vae;

  // Throws ComfyUI's "VAE is invalid" error (kRuntime, prefixed by `where`) without a model.
  const FirstStageModel& require(const std::string& where) const;
};

inline Value make_vae(VaeModel v) {
  auto value = std::make_shared<VaeValue>();
  value->vae = std::move(v);
  return Value::object(std::move(value));
}

// ComfyUI's OOM_EXCEPTION: c10::OutOfMemoryError (a CUDA allocation failure, also what
// --vram-budget produces) or sdflow's Error(kOutOfMemory).
bool is_out_of_memory(const std::exception& e);

// Runs `regular`; when it runs out of memory, logs `warning`, returns the device's cached
// memory and runs `fallback` instead (ComfyUI retries outside its except block for the same
// reason: the failed pass's tensors must be gone first). Other errors propagate.
at::Tensor with_tiled_fallback(const std::function<at::Tensor()>& regular,
                               const std::function<at::Tensor()>& fallback, const std::string& warning,
                               const std::function<void()>& empty_cache = {});

// VAE.decode / VAE.encode as the nodes run them, with the service lookups done: IMAGE
// [B, H, W, 3] and LATENT [B, C, h, w] float32 on the intermediate device.
at::Tensor decode_latent(NodeContext& ctx, const VaeValue& vae, const at::Tensor& latent);
at::Tensor encode_pixels(NodeContext& ctx, const VaeValue& vae, const at::Tensor& image);

}  // namespace sdflow::nodes
