// RES multistep (k-diffusion res_multistep: plain, cfg_pp, ancestral, ancestral cfg_pp) and the
// gradient-estimation sampler (sample_gradient_estimation, plain and cfg_pp).
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

at::Tensor t_fn(const at::Tensor& sigma) { return sigma.log().neg(); }
at::Tensor sigma_fn(const at::Tensor& t) { return t.neg().exp(); }
at::Tensor phi1(const at::Tensor& t) { return at::expm1(t) / t; }
at::Tensor phi2(const at::Tensor& t) { return (phi1(t) - 1.0) / t; }

at::Tensor res_multistep(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                         const SamplerOptions& opts, const StepCallback& cb, double eta, bool cfg_pp) {
  const double s_noise = 1.0;
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  at::Tensor old_sigma_down;
  at::Tensor old_denoised;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    DenoiseResult out = cfg_pp ? denoise_with_uncond(model, x, sigmas[i], s_in)
                               : DenoiseResult{denoise(model, x, sigmas[i], s_in), at::Tensor()};
    AncestralStep anc = ancestral_step(sigmas[i], sigmas[i + 1], eta);
    notify(cb, i, n, x, out.denoised, sigmas[i]);
    if (is_zero(anc.down) || !old_denoised.defined()) {
      if (cfg_pp) {
        at::Tensor d = to_d(x, sigmas[i], out.uncond_denoised);
        x = out.denoised + d * anc.down;
      } else {
        at::Tensor d = to_d(x, sigmas[i], out.denoised);
        x = x + d * (anc.down - sigmas[i]);
      }
    } else {
      at::Tensor t = t_fn(sigmas[i]);
      at::Tensor t_old = t_fn(old_sigma_down);
      at::Tensor t_next = t_fn(anc.down);
      at::Tensor t_prev = t_fn(sigmas[i - 1]);
      at::Tensor h = t_next - t;
      at::Tensor c2 = (t_prev - t_old) / h;
      at::Tensor phi1_val = phi1(h.neg());
      at::Tensor phi2_val = phi2(h.neg());
      at::Tensor b1 = at::nan_to_num(phi1_val - phi2_val / c2, 0.0);
      at::Tensor b2 = at::nan_to_num(phi2_val / c2, 0.0);
      if (cfg_pp) {
        x = x + (out.denoised - out.uncond_denoised);
        x = sigma_fn(h) * x + h * (b1 * out.uncond_denoised + b2 * old_denoised);
      } else {
        x = sigma_fn(h) * x + h * (b1 * out.denoised + b2 * old_denoised);
      }
    }
    if (is_positive(sigmas[i + 1])) x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
    old_denoised = cfg_pp ? out.uncond_denoised : out.denoised;
    old_sigma_down = anc.down;
  }
  return x;
}

at::Tensor gradient_estimation(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                               const StepCallback& cb, bool cfg_pp) {
  const double ge_gamma = 2.0;
  const at::Tensor s_in = batch_ones(x);
  at::Tensor old_d;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    DenoiseResult out = cfg_pp ? denoise_with_uncond(model, x, sigmas[i], s_in)
                               : DenoiseResult{denoise(model, x, sigmas[i], s_in), at::Tensor()};
    at::Tensor d = to_d(x, sigmas[i], cfg_pp ? out.uncond_denoised : out.denoised);
    notify(cb, i, n, x, out.denoised, sigmas[i]);
    at::Tensor dt = sigmas[i + 1] - sigmas[i];
    if (is_zero(sigmas[i + 1])) {
      x = out.denoised;
    } else {
      x = cfg_pp ? out.denoised + d * sigmas[i + 1] : x + d * dt;
      if (i >= 1) {
        at::Tensor d_bar = (d - old_d) * (ge_gamma - 1);
        x = x + d_bar * dt;
      }
    }
    old_d = d;
  }
  return x;
}

}  // namespace

at::Tensor sample_res_multistep(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                const SamplerOptions& opts, const StepCallback& cb) {
  return res_multistep(model, x, sigmas, opts, cb, 0.0, false);
}

at::Tensor sample_res_multistep_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                       const SamplerOptions& opts, const StepCallback& cb) {
  return res_multistep(model, x, sigmas, opts, cb, 0.0, true);
}

at::Tensor sample_res_multistep_ancestral(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                          const SamplerOptions& opts, const StepCallback& cb) {
  return res_multistep(model, x, sigmas, opts, cb, 1.0, false);
}

at::Tensor sample_res_multistep_ancestral_cfg_pp(const Denoiser& model, at::Tensor x,
                                                 const at::Tensor& sigmas, const SamplerOptions& opts,
                                                 const StepCallback& cb) {
  return res_multistep(model, x, sigmas, opts, cb, 1.0, true);
}

at::Tensor sample_gradient_estimation(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                      const SamplerOptions&, const StepCallback& cb) {
  return gradient_estimation(model, x, sigmas, cb, false);
}

at::Tensor sample_gradient_estimation_cfg_pp(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                             const SamplerOptions&, const StepCallback& cb) {
  return gradient_estimation(model, x, sigmas, cb, true);
}

}  // namespace sdflow::sampling
