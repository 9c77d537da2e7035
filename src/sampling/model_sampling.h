// Discrete-time model sampling (ComfyUI ModelSamplingDiscrete + EPS / V_PREDICTION): the
// 1000-entry sigma table of SD1.x / SDXL / SD2.x and the conversions between sigma, timestep,
// model input and model output. See COMFY_COMPAT 4.1.
//
// Every conversion is written as the same ATen ops ComfyUI runs, on the device of the tables
// (CPU unless to() moved them), so float32 results match bit for bit on the same torch build.
//
// Thread-safety: immutable after construction; const methods may be called concurrently.
#pragma once

#include <cstdint>

#include "core/torch_compat.h"

namespace sdflow::sampling {

enum class Prediction {
  kEps,  // SD1.x, SDXL: the UNet predicts the noise
  kV,    // SD2.x-v, v-pred SDXL finetunes: the UNet predicts v
};

struct ModelSamplingConfig {
  Prediction prediction = Prediction::kEps;
  double linear_start = 0.00085;
  double linear_end = 0.012;
  int64_t timesteps = 1000;
  bool zsnr = false;  // zero-terminal-SNR rescale (v-pred + ztsnr checkpoints)
};

class ModelSampling {
 public:
  explicit ModelSampling(const ModelSamplingConfig& config = {});

  const ModelSamplingConfig& config() const { return config_; }
  Prediction prediction() const { return config_.prediction; }

  // A copy whose tables live on `device`. ComfyUI's tables follow the UNet (they are module
  // buffers), so schedulers computed after a full model load run on the GPU.
  ModelSampling to(const at::Device& device) const;

  // [T] float32, computed in float64 and rounded once.
  const at::Tensor& sigmas() const { return sigmas_; }
  const at::Tensor& log_sigmas() const { return log_sigmas_; }
  // 0-dim float32 views of the table ends (sigmas[0], sigmas[-1]).
  at::Tensor sigma_min() const { return sigmas_[0]; }
  at::Tensor sigma_max() const { return sigmas_[sigmas_.size(0) - 1]; }
  // float(sigma_min) / float(sigma_max) as Python would read them.
  double sigma_min_value() const { return sigma_min_value_; }
  double sigma_max_value() const { return sigma_max_value_; }

  // Nearest table index by log distance (int64, same shape as sigma); never interpolated.
  at::Tensor timestep(const at::Tensor& sigma) const;
  // Log-linear interpolation of the table at (float) timestep t, clamped to [0, T-1].
  at::Tensor sigma(const at::Tensor& timestep) const;
  // p <= 0 -> 999999999.9, p >= 1 -> 0, else sigma((1 - p) * 999) as a double.
  double percent_to_sigma(double percent) const;

  // x / sqrt(sigma^2 + 1); sigma [B] (or one element) broadcast over x [B, ...].
  at::Tensor calculate_input(const at::Tensor& sigma, const at::Tensor& x) const;
  // x0 from the raw model output (eps: x - out * sigma; v: see COMFY_COMPAT 4.1).
  at::Tensor calculate_denoised(const at::Tensor& sigma, const at::Tensor& model_output,
                                const at::Tensor& model_input) const;
  // noise * sqrt(1 + sigma^2) + latent when max_denoise, else noise * sigma + latent.
  at::Tensor noise_scaling(const at::Tensor& sigma, const at::Tensor& noise, const at::Tensor& latent,
                           bool max_denoise) const;
  at::Tensor inverse_noise_scaling(const at::Tensor& sigma, const at::Tensor& latent) const { return latent; }

 private:
  ModelSampling(const ModelSamplingConfig& config, at::Tensor sigmas, at::Tensor log_sigmas);

  ModelSamplingConfig config_;
  at::Tensor sigmas_;
  at::Tensor log_sigmas_;
  double sigma_min_value_ = 0;
  double sigma_max_value_ = 0;
};

// ComfyUI's reshape_sigma: a one-element sigma becomes 0-dim, else [B, 1, ..., 1] (ndim dims).
at::Tensor reshape_sigma(const at::Tensor& sigma, int64_t ndim);

}  // namespace sdflow::sampling
