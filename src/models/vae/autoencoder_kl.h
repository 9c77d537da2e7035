// The SD-style AutoencoderKL (ComfyUI's first_stage_model: comfy/ldm/models/autoencoder.py with
// the Encoder/Decoder of comfy/ldm/modules/diffusionmodules/model.py), reading its weights block
// by block through the Residency (Note [Models own no device memory] in memory/weight_store.h).
// It computes in the store's compute dtype, as ComfyUI runs the VAE entirely in its vae_dtype
// (bf16 on Ampere+, fp32 on older GPUs): GroupNorm(32, eps 1e-6) and SiLU in that dtype, the mid
// block's single-head attention through SDPA where libtorch has it.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>

#include "memory/residency.h"
#include "memory/weight_store.h"
#include "models/vae/first_stage.h"
#include "models/vae/vae_config.h"
#include "sdflow/memory.h"

namespace sdflow {

// Thread-compatible: encode/decode are const and keep no state between calls.
class AutoencoderKL final : public FirstStageModel {
 public:
  // Throws Error(kModel) when the store lacks a block the config needs.
  AutoencoderKL(VaeConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency);
  AutoencoderKL(const AutoencoderKL&) = delete;
  AutoencoderKL& operator=(const AutoencoderKL&) = delete;

  // first_stage_model.encode: x [B, in_channels, H, W] in −1..1 (any device/dtype; moved to the
  // compute device and dtype) → the posterior mean [B, latent_channels, H/f, W/f]
  // (DiagonalGaussianRegularizer without sampling) on the compute device, compute dtype; sizes
  // that are not multiples of f round down at each downsample.
  // Throws Error(kModel) for a decoder-only VAE.
  at::Tensor encode(const at::Tensor& x, const VaeRunOptions& options = {}) const override;
  // first_stage_model.decode: z [B, latent_channels, h, w] → [B, out_ch, h·f, w·f], compute dtype.
  at::Tensor decode(const at::Tensor& z, const VaeRunOptions& options = {}) const override;

  const VaeConfig& config() const { return config_; }
  const WeightStore& weights() const override { return *weights_; }
  int64_t downscale() const override { return config_.downscale(); }
  int64_t image_channels() const override { return config_.in_channels; }
  int64_t output_channels() const override { return config_.out_ch; }
  int64_t latent_channels() const override { return config_.latent_channels(); }
  bool has_encoder() const override { return config_.has_encoder; }

 private:
  VaeConfig config_;
  std::shared_ptr<const WeightStore> weights_;
  Residency& residency_;
};

}  // namespace sdflow
