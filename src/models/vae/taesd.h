// TAESD, the tiny autoencoder of madebyollin/taesd as ComfyUI runs it (comfy/taesd/taesd.py:
// TAESD.encode/decode with the vae_scale/vae_shift of the family; see taesd_layout.h for the
// layers), reading its two weight blocks through the Residency like every model. Computes in
// the store's compute dtype (ComfyUI's vae_dtype); scale and shift are rounded to it as
// ComfyUI's parameters are.
#pragma once

#include <ATen/ATen.h>

#include <memory>

#include "memory/residency.h"
#include "memory/weight_store.h"
#include "models/vae/first_stage.h"
#include "models/vae/taesd_layout.h"

namespace sdflow {

// Thread-compatible: encode/decode are const and keep no state between calls.
class Taesd final : public FirstStageModel {
 public:
  // Throws Error(kModel) when the store lacks a block the config needs.
  Taesd(TaesdConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency);
  Taesd(const Taesd&) = delete;
  Taesd& operator=(const Taesd&) = delete;

  // x [B, 3, H, W] in −1..1 → encoder(x/2 + 1/2)/scale + shift, [B, latent_channels, H/f, W/f]
  // (taef2: the 32-channel result 2×2-patchified into 128 channels; H/8 and W/8 must be even).
  at::Tensor encode(const at::Tensor& x, const VaeRunOptions& options = {}) const override;
  // z → 2·decoder((z − shift)·scale) − 1 (taef2: unpatchified to 32 channels first).
  at::Tensor decode(const at::Tensor& z, const VaeRunOptions& options = {}) const override;

  const TaesdConfig& config() const { return config_; }
  const WeightStore& weights() const override { return *weights_; }
  int64_t downscale() const override { return config_.downscale(); }
  int64_t image_channels() const override { return 3; }
  int64_t output_channels() const override { return 3; }
  int64_t latent_channels() const override { return config_.latent_channels; }
  bool has_encoder() const override { return config_.has_encoder; }

 private:
  TaesdConfig config_;
  std::shared_ptr<const WeightStore> weights_;
  Residency& residency_;
};

}  // namespace sdflow
