// The sampling driver: ComfyUI's KSampler.sample -> CFGGuider.sample -> inner_sample ->
// KSAMPLER.sample flow, up to (not including) the model call. See COMFY_COMPAT 4.3-4.6, 4.9.1.
//
// The caller supplies the guided denoiser (CFG, conds and the UNet live there), the noise from
// prepare_noise (or zeros for add_noise = disable) and the LATENT's samples / noise_mask.
// Cancellation: the step callback runs once per sampler step and may throw.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/torch_compat.h"
#include "sampling/model_sampling.h"
#include "sampling/sampler.h"
#include "sampling/schedulers.h"

namespace sdflow::sampling {

using LatentTransform = std::function<at::Tensor(const at::Tensor&)>;

struct SampleRequest {
  const ModelSampling* model_sampling = nullptr;  // required; its tables may be on any device
  Denoiser denoiser;                              // required: the guided model (x, sigma[B]) -> x0
  std::string sampler_name = "euler";             // a KSampler.SAMPLERS name
  at::Tensor noise;                               // [B, C, H, W] float32 (CPU is fine)
  at::Tensor latent_image;                        // [B, C, H, W] float32, unscaled LATENT samples
  at::Tensor denoise_mask;                        // optional LATENT noise_mask (1 = regenerate)
  std::optional<uint64_t> seed;                   // KSampler seed (extra_args["seed"])
  at::Device device = at::kCPU;                   // where sampling runs (ComfyUI's load device)
  LatentTransform process_latent_in;              // latent_format.process_in; identity if empty
  LatentTransform process_latent_out;             // latent_format.process_out; identity if empty
  StepCallback callback;
  bool numpy_legacy_promotion = false;  // see SamplerOptions
};

// CFGGuider.sample with an explicit sigma list (SamplerCustom-style): an empty list returns
// latent_image unchanged; otherwise the result is process_latent_out(samples) on `device`.
at::Tensor sample_with_sigmas(const SampleRequest& request, const at::Tensor& sigmas);

struct KSamplerParams {
  std::string scheduler = "normal";
  int64_t steps = 20;
  double denoise = 1.0;  // KSamplerAdvanced always passes 1.0
  StepRange range;       // KSamplerAdvanced start/end steps and force_full_denoise
};

// KSampler.sample: unknown sampler / scheduler names fall back to euler / simple (as
// KSampler.__init__ does), then sigmas from ksampler_sigmas, the start/end step rules, and
// sample_with_sigmas. When the start step skips sampling the input latent is returned as is.
at::Tensor run_sampler(const KSamplerParams& params, const SampleRequest& request);

// The sigma list run_sampler would use (undefined when sampling is skipped).
at::Tensor run_sampler_sigmas(const KSamplerParams& params, const ModelSampling& ms,
                              const std::string& sampler_name, bool* skip);

// comfy.sampler_helpers.prepare_mask: a mask of any [.., H', W'] shape resized (bilinear) and
// repeated to `shape` = [B, C, H, W].
at::Tensor prepare_mask(const at::Tensor& mask, at::IntArrayRef shape, const at::Device& device);

// KSAMPLER.max_denoise: sigmas[0] within 1e-5 (relative) of sigma_max, or above it.
bool is_max_denoise(const ModelSampling& ms, const at::Tensor& sigmas);

}  // namespace sdflow::sampling
