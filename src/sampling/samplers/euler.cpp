// Euler, Heun and DPM-2 families (k-diffusion sample_euler, sample_euler_ancestral, sample_heun,
// sample_heunpp2, sample_dpm_2, sample_dpm_2_ancestral) with KSampler's defaults: s_churn = 0,
// eta = 1, s_noise = 1. Only the discrete (non-CONST) model sampling branch exists here.
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

at::Tensor sample_euler(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                        const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor sigma_hat = sigmas[i];
    at::Tensor denoised = denoise(model, x, sigma_hat, s_in);
    at::Tensor d = to_d(x, sigma_hat, denoised);
    notify(cb, i, n, x, denoised, sigmas[i]);
    x = x + d * (sigmas[i + 1] - sigma_hat);
  }
  return x;
}

at::Tensor sample_euler_ancestral(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                  const SamplerOptions& opts, const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    AncestralStep anc = ancestral_step(sigmas[i], sigmas[i + 1], eta);
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(anc.down)) {
      x = denoised;
    } else {
      at::Tensor d = to_d(x, sigmas[i], denoised);
      at::Tensor dt = anc.down - sigmas[i];
      x = x + d * dt + noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
    }
  }
  return x;
}

at::Tensor sample_heun(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                       const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor sigma_hat = sigmas[i] * 1;  // sigmas[i] * (gamma + 1) with gamma = 0
    at::Tensor denoised = denoise(model, x, sigma_hat, s_in);
    at::Tensor d = to_d(x, sigma_hat, denoised);
    notify(cb, i, n, x, denoised, sigmas[i]);
    at::Tensor dt = sigmas[i + 1] - sigma_hat;
    if (is_zero(sigmas[i + 1])) {
      x = x + d * dt;
    } else {
      at::Tensor x_2 = x + d * dt;
      at::Tensor denoised_2 = denoise(model, x_2, sigmas[i + 1], s_in);
      at::Tensor d_2 = to_d(x_2, sigmas[i + 1], denoised_2);
      at::Tensor d_prime = (d + d_2) / 2;
      x = x + d_prime * dt;
    }
  }
  return x;
}

// ComfyUI also draws an unused randn_like(x) from the global generator every step; it cannot
// change the result, so it is not drawn here.
at::Tensor sample_heunpp2(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                          const SamplerOptions&, const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  const at::Tensor s_end = sigmas[n];
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor sigma_hat = sigmas[i] * 1.0;  // gamma = 0.0
    at::Tensor denoised = denoise(model, x, sigma_hat, s_in);
    at::Tensor d = to_d(x, sigma_hat, denoised);
    notify(cb, i, n, x, denoised, sigmas[i]);
    at::Tensor dt = sigmas[i + 1] - sigma_hat;
    if (sigmas[i + 1].eq(s_end).item<bool>()) {
      x = x + d * dt;
    } else if (sigmas[i + 2].eq(s_end).item<bool>()) {
      at::Tensor x_2 = x + d * dt;
      at::Tensor denoised_2 = denoise(model, x_2, sigmas[i + 1], s_in);
      at::Tensor d_2 = to_d(x_2, sigmas[i + 1], denoised_2);
      at::Tensor w = sigmas[0] * 2;
      at::Tensor w2 = sigmas[i + 1] / w;
      at::Tensor w1 = 1 - w2;
      at::Tensor d_prime = d * w1 + d_2 * w2;
      x = x + d_prime * dt;
    } else {
      at::Tensor x_2 = x + d * dt;
      at::Tensor denoised_2 = denoise(model, x_2, sigmas[i + 1], s_in);
      at::Tensor d_2 = to_d(x_2, sigmas[i + 1], denoised_2);
      at::Tensor dt_2 = sigmas[i + 2] - sigmas[i + 1];
      at::Tensor x_3 = x_2 + d_2 * dt_2;
      at::Tensor denoised_3 = denoise(model, x_3, sigmas[i + 2], s_in);
      at::Tensor d_3 = to_d(x_3, sigmas[i + 2], denoised_3);
      at::Tensor w = sigmas[0] * 3;
      at::Tensor w2 = sigmas[i + 1] / w;
      at::Tensor w3 = sigmas[i + 2] / w;
      at::Tensor w1 = 1 - w2 - w3;
      at::Tensor d_prime = w1 * d + w2 * d_2 + w3 * d_3;
      x = x + d_prime * dt;
    }
  }
  return x;
}

at::Tensor sample_dpm_2(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                        const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor sigma_hat = sigmas[i];
    at::Tensor denoised = denoise(model, x, sigma_hat, s_in);
    at::Tensor d = to_d(x, sigma_hat, denoised);
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = x + d * (sigmas[i + 1] - sigma_hat);
    } else {
      at::Tensor sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp();
      at::Tensor dt_1 = sigma_mid - sigma_hat;
      at::Tensor dt_2 = sigmas[i + 1] - sigma_hat;
      at::Tensor x_2 = x + d * dt_1;
      at::Tensor denoised_2 = denoise(model, x_2, sigma_mid, s_in);
      at::Tensor d_2 = to_d(x_2, sigma_mid, denoised_2);
      x = x + d_2 * dt_2;
    }
  }
  return x;
}

at::Tensor sample_dpm_2_ancestral(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                  const SamplerOptions& opts, const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    AncestralStep anc = ancestral_step(sigmas[i], sigmas[i + 1], eta);
    notify(cb, i, n, x, denoised, sigmas[i]);
    at::Tensor d = to_d(x, sigmas[i], denoised);
    if (is_zero(anc.down)) {
      x = x + d * (anc.down - sigmas[i]);
    } else {
      at::Tensor sigma_mid = sigmas[i].log().lerp(anc.down.log(), 0.5).exp();
      at::Tensor dt_1 = sigma_mid - sigmas[i];
      at::Tensor dt_2 = anc.down - sigmas[i];
      at::Tensor x_2 = x + d * dt_1;
      at::Tensor denoised_2 = denoise(model, x_2, sigma_mid, s_in);
      at::Tensor d_2 = to_d(x_2, sigma_mid, denoised_2);
      x = x + d_2 * dt_2;
      x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
    }
  }
  return x;
}

}  // namespace sdflow::sampling
