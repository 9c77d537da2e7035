// CFG++ samplers (k-diffusion sample_euler_cfg_pp, sample_euler_ancestral_cfg_pp,
// sample_dpmpp_2s_ancestral_cfg_pp, sample_dpmpp_2m_cfg_pp). They step along the unconditional
// prediction, so every model call asks the denoiser for uncond_denoised as well. ComfyUI reads
// the uncond of the most recent model call, which for 2S is the second (midpoint) call.
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

at::Tensor t_fn(const at::Tensor& sigma) { return sigma.log().neg(); }
at::Tensor sigma_fn(const at::Tensor& t) { return t.neg().exp(); }

at::Tensor euler_ancestral_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                  const SamplerOptions& opts, const StepCallback& cb, double eta,
                                  double s_noise) {
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    DenoiseResult out = denoise_with_uncond(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, out.denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = out.denoised;
      continue;
    }
    at::Tensor alpha_s = sigmas[i] * t_fn(sigmas[i]).exp();
    at::Tensor alpha_t = sigmas[i + 1] * t_fn(sigmas[i + 1]).exp();
    at::Tensor d = to_d(x, sigmas[i], alpha_s * out.uncond_denoised);
    AncestralStep anc = ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta);
    at::Tensor sigma_down = alpha_t * anc.down;
    x = alpha_t * out.denoised + sigma_down * d;
    if (eta > 0 && s_noise > 0) x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
  }
  return x;
}

}  // namespace

at::Tensor sample_euler_ancestral_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                         const SamplerOptions& opts, const StepCallback& cb) {
  return euler_ancestral_cfg_pp(model, x, sigmas, opts, cb, 1.0, 1.0);
}

at::Tensor sample_euler_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                               const SamplerOptions& opts, const StepCallback& cb) {
  return euler_ancestral_cfg_pp(model, x, sigmas, opts, cb, 0.0, 0.0);
}

at::Tensor sample_dpmpp_2s_ancestral_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                            const SamplerOptions& opts, const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    DenoiseResult out = denoise_with_uncond(model, x, sigmas[i], s_in);
    AncestralStep anc = ancestral_step(sigmas[i], sigmas[i + 1], eta);
    notify(cb, i, n, x, out.denoised, sigmas[i]);
    if (is_zero(anc.down)) {
      at::Tensor d = to_d(x, sigmas[i], out.uncond_denoised);
      x = out.denoised + d * anc.down;
    } else {
      at::Tensor t = t_fn(sigmas[i]);
      at::Tensor t_next = t_fn(anc.down);
      const double r = 1.0 / 2;
      at::Tensor h = t_next - t;
      at::Tensor s = t + h * r;
      at::Tensor x_2 = (sigma_fn(s) / sigma_fn(t)) * (x + (out.denoised - out.uncond_denoised)) -
                       (h.neg() * r).expm1() * out.denoised;
      DenoiseResult out_2 = denoise_with_uncond(model, x_2, sigma_fn(s), s_in);
      x = (sigma_fn(t_next) / sigma_fn(t)) * (x + (out.denoised - out_2.uncond_denoised)) -
          h.neg().expm1() * out_2.denoised;
    }
    if (is_positive(sigmas[i + 1])) x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
  }
  return x;
}

at::Tensor sample_dpmpp_2m_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                  const SamplerOptions&, const StepCallback& cb) {
  const at::Tensor s_in = batch_ones(x);
  at::Tensor old_uncond;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    DenoiseResult out = denoise_with_uncond(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, out.denoised, sigmas[i]);
    at::Tensor t = t_fn(sigmas[i]);
    at::Tensor t_next = t_fn(sigmas[i + 1]);
    at::Tensor h = t_next - t;
    at::Tensor mix;
    if (!old_uncond.defined() || is_zero(sigmas[i + 1])) {
      mix = at::exp(h.neg()).neg() * out.uncond_denoised;
    } else {
      at::Tensor h_last = t - t_fn(sigmas[i - 1]);
      at::Tensor r = h_last / h;
      mix = at::exp(h.neg()).neg() * out.uncond_denoised -
            at::expm1(h.neg()) * rdiv(1, r * 2) * (out.denoised - old_uncond);
    }
    x = out.denoised + mix + at::exp(h.neg()) * x;
    old_uncond = out.uncond_denoised;
  }
  return x;
}

}  // namespace sdflow::sampling
