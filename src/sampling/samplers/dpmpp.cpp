// DPM-Solver++ 2S ancestral and 2M (k-diffusion sample_dpmpp_2s_ancestral, sample_dpmpp_2m),
// discrete model sampling branch, eta = 1, s_noise = 1.
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {
at::Tensor t_fn(const at::Tensor& sigma) { return sigma.log().neg(); }
at::Tensor sigma_fn(const at::Tensor& t) { return t.neg().exp(); }
}  // namespace

at::Tensor sample_dpmpp_2s_ancestral(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
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
      at::Tensor d = to_d(x, sigmas[i], denoised);
      x = x + d * (anc.down - sigmas[i]);
    } else {
      at::Tensor t = t_fn(sigmas[i]);
      at::Tensor t_next = t_fn(anc.down);
      const double r = 1.0 / 2;
      at::Tensor h = t_next - t;
      at::Tensor s = t + h * r;
      at::Tensor x_2 = (sigma_fn(s) / sigma_fn(t)) * x - (h.neg() * r).expm1() * denoised;
      at::Tensor denoised_2 = denoise(model, x_2, sigma_fn(s), s_in);
      x = (sigma_fn(t_next) / sigma_fn(t)) * x - h.neg().expm1() * denoised_2;
    }
    if (is_positive(sigmas[i + 1])) x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
  }
  return x;
}

at::Tensor sample_dpmpp_2m(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                           const SamplerOptions&, const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  at::Tensor old_denoised;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    at::Tensor t = t_fn(sigmas[i]);
    at::Tensor t_next = t_fn(sigmas[i + 1]);
    at::Tensor h = t_next - t;
    if (!old_denoised.defined() || is_zero(sigmas[i + 1])) {
      x = (sigma_fn(t_next) / sigma_fn(t)) * x - h.neg().expm1() * denoised;
    } else {
      at::Tensor h_last = t - t_fn(sigmas[i - 1]);
      at::Tensor r = h_last / h;
      at::Tensor q = rdiv(1, r * 2);
      at::Tensor denoised_d = (q + 1) * denoised - q * old_denoised;
      x = (sigma_fn(t_next) / sigma_fn(t)) * x - h.neg().expm1() * denoised_d;
    }
    old_denoised = denoised;
  }
  return x;
}

}  // namespace sdflow::sampling
