// Helpers shared by the sampler families (internal to src/sampling).
//
// Note [Scalar ops]
// k-diffusion keeps sigmas as 0-dim tensors on the sampling device and does its scalar math
// with torch ops (float32 log/exp/expm1/pow, CUDA kernels on the GPU). The samplers here do the
// same ATen ops in the same order with the same operand kinds (0-dim tensor vs Python-number
// Scalar), which is what makes results bit-identical on the same torch build. Two Python
// idioms need care: `number / tensor` is reciprocal(tensor) * number (rdiv below), and
// `min(a, b)` returns b only when b < a.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/torch_compat.h"
#include "sampling/sampler.h"

namespace sdflow::sampling::detail {

// x.new_ones([B]).
inline at::Tensor batch_ones(const at::Tensor& x) { return at::ones({x.size(0)}, x.options()); }

// utils.append_dims: trailing singleton dims up to `ndim`.
inline at::Tensor append_dims(const at::Tensor& v, int64_t ndim) {
  std::vector<int64_t> shape = v.sizes().vec();
  while (static_cast<int64_t>(shape.size()) < ndim) shape.push_back(1);
  return v.view(shape);
}

// (x - denoised) / sigma: the Karras ODE derivative.
inline at::Tensor to_d(const at::Tensor& x, const at::Tensor& sigma, const at::Tensor& denoised) {
  return (x - denoised) / append_dims(sigma, x.dim());
}

// Python `number / tensor`.
inline at::Tensor rdiv(double number, const at::Tensor& t) { return at::reciprocal(t) * number; }

inline bool is_zero(const at::Tensor& t) { return t.eq(0).item<bool>(); }
inline bool is_positive(const at::Tensor& t) { return t.gt(0).item<bool>(); }

struct AncestralStep {
  at::Tensor down;
  at::Tensor up;
};

// get_ancestral_step(sigma_from, sigma_to, eta).
inline AncestralStep ancestral_step(const at::Tensor& from, const at::Tensor& to, double eta = 1.0) {
  if (eta == 0.0) return {to, at::zeros({}, to.options())};
  at::Tensor to2 = at::pow(to, 2);
  at::Tensor cand = at::pow(to2 * (at::pow(from, 2) - to2) / at::pow(from, 2), 0.5) * eta;
  at::Tensor up = cand.lt(to).item<bool>() ? cand : to;
  at::Tensor down = at::pow(to2 - at::pow(up, 2), 0.5);
  return {down, up};
}

// model(x, sigma * s_in).denoised
inline at::Tensor denoise(const Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                          const at::Tensor& s_in) {
  return model(x, sigma * s_in, false).denoised;
}

// model(x, sigma * s_in) for the cfg_pp samplers, which also need the unconditional x0.
inline DenoiseResult denoise_with_uncond(const Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                                         const at::Tensor& s_in) {
  DenoiseResult r = model(x, sigma * s_in, true);
  if (!r.uncond_denoised.defined()) {
    throw Error(ErrorKind::kUsage,
                "[sampler] a cfg_pp sampler needs a denoiser that returns uncond_denoised");
  }
  return r;
}

inline void notify(const StepCallback& cb, int64_t i, int64_t total, const at::Tensor& x,
                   const at::Tensor& denoised, const at::Tensor& sigma) {
  if (cb) cb(StepInfo{i, total, x, denoised, sigma});
}

inline NoiseSampler pick_noise_sampler(const at::Tensor& x, const SamplerOptions& opts) {
  return opts.noise_sampler ? opts.noise_sampler : default_noise_sampler(x, opts.seed);
}

inline const ModelSampling& require_model_sampling(const SamplerOptions& opts, const char* sampler) {
  if (opts.model_sampling == nullptr) {
    throw Error(ErrorKind::kUsage,
                std::string("[") + sampler + "] SamplerOptions::model_sampling is required");
  }
  return *opts.model_sampling;
}

inline int64_t num_steps(const at::Tensor& sigmas) { return sigmas.size(0) - 1; }

}  // namespace sdflow::sampling::detail
