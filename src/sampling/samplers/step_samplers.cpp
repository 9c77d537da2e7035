// Single-step samplers: DDPM (k-diffusion generic_step_sampler + DDPMSampler_step) and LCM.
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

// DDPM posterior mean in the variance-preserving scale, plus its noise when sigma_prev > 0.
at::Tensor ddpm_step(const at::Tensor& x, const at::Tensor& sigma, const at::Tensor& sigma_prev,
                     const at::Tensor& eps, const NoiseSampler& noise) {
  at::Tensor alpha_cumprod = rdiv(1, sigma * sigma + 1);
  at::Tensor alpha_cumprod_prev = rdiv(1, sigma_prev * sigma_prev + 1);
  at::Tensor alpha = alpha_cumprod / alpha_cumprod_prev;
  at::Tensor mu = rdiv(1.0, alpha).sqrt() * (x - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt());
  if (is_positive(sigma_prev)) {
    mu += ((1 - alpha) * (1. - alpha_cumprod_prev) / (1. - alpha_cumprod)).sqrt() * noise(sigma, sigma_prev);
  }
  return mu;
}

}  // namespace

at::Tensor sample_ddpm(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                       const SamplerOptions& opts, const StepCallback& cb) {
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    x = ddpm_step(x / at::sqrt(1.0 + at::pow(sigmas[i], 2.0)), sigmas[i], sigmas[i + 1],
                  (x - denoised) / sigmas[i], noise);
    if (!is_zero(sigmas[i + 1])) x *= at::sqrt(1.0 + at::pow(sigmas[i + 1], 2.0));
  }
  return x;
}

at::Tensor sample_lcm(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                      const SamplerOptions& opts, const StepCallback& cb) {
  const ModelSampling& ms = require_model_sampling(opts, "lcm");
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    x = denoised;
    if (is_positive(sigmas[i + 1]))
      x = ms.noise_scaling(sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]), x, false);
  }
  return x;
}

}  // namespace sdflow::sampling
