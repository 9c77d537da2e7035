// What ComfyUI's VAE class (comfy/sd.py) needs of its first_stage_model, so that one wrapper
// (vae.h: ranges, crops, batching, tiling) serves every image autoencoder: the SD-style
// AutoencoderKL and the TAESD family of tiny autoencoders.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

#include "memory/weight_store.h"
#include "sdflow/memory.h"

namespace sdflow {

struct VaeRunOptions {
  AttentionBackend attention = AttentionBackend::kDefault;
  std::function<void()> check_cancel;  // called before each block; throws to stop
};

// Thread-compatible: implementations keep no state between calls.
class FirstStageModel {
 public:
  virtual ~FirstStageModel() = default;

  // first_stage_model.encode: x [B, image_channels, H, W] in −1..1 (any device/dtype) → the
  // latent [B, latent_channels, H/f, W/f] on the compute device in the compute dtype.
  // Throws Error(kModel) when the model has no encoder.
  virtual at::Tensor encode(const at::Tensor& x, const VaeRunOptions& options = {}) const = 0;
  // first_stage_model.decode: z [B, latent_channels, h, w] → [B, image_channels, h·f, w·f] in
  // about −1..1 (process_output clamps), compute dtype.
  virtual at::Tensor decode(const at::Tensor& z, const VaeRunOptions& options = {}) const = 0;

  virtual int64_t downscale() const = 0;  // f: pixels per latent cell (spacial_compression)
  virtual int64_t image_channels() const = 0;   // into the encoder
  virtual int64_t output_channels() const = 0;  // out of the decoder
  virtual int64_t latent_channels() const = 0;
  virtual bool has_encoder() const = 0;
  virtual const WeightStore& weights() const = 0;
};

}  // namespace sdflow
