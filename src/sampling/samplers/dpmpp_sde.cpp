// DPM-Solver++ SDE, 2M SDE (midpoint / heun) and 3M SDE with Brownian-tree noise
// (k-diffusion sample_dpmpp_sde, sample_dpmpp_2m_sde, sample_dpmpp_3m_sde and their _gpu
// wrappers). The tree is a port of torchsde's (Note [Brownian tree parity] in
// brownian_tree.h); the plain samplers keep it on the CPU, the _gpu ones on x's device.
#include <limits>

#include "sampling/brownian_tree.h"
#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

at::Tensor lambda_fn(const at::Tensor& sigma) { return sigma.log().neg(); }
at::Tensor sigma_fn(const at::Tensor& lambda) { return lambda.neg().exp(); }

NoiseSampler tree_noise(const at::Tensor& x, const at::Tensor& sigmas, const SamplerOptions& opts, bool cpu) {
  if (opts.noise_sampler) return opts.noise_sampler;
  uint64_t seed = 0;
  if (opts.seed) {
    seed = *opts.seed;
  } else {
    // BatchedBrownianTree draws a seed from the global generator when none is given.
    seed = static_cast<uint64_t>(
        at::randint(0, std::numeric_limits<int64_t>::max(), {}, at::kLong).item<int64_t>());
  }
  const at::Tensor positive = sigmas.index({sigmas.gt(0)});
  return brownian_tree_noise_sampler(x, positive.min(), sigmas.max(), seed, cpu);
}

at::Tensor dpmpp_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const NoiseSampler& noise,
                     const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  const double r = 1.0 / 2;
  const at::Tensor s_in = batch_ones(x);
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = denoised;
      continue;
    }
    at::Tensor lambda_s = lambda_fn(sigmas[i]);
    at::Tensor lambda_t = lambda_fn(sigmas[i + 1]);
    at::Tensor h = lambda_t - lambda_s;
    at::Tensor lambda_s_1 = lambda_s + h * r;
    const double fac = 1 / (2 * r);
    at::Tensor sigma_s_1 = sigma_fn(lambda_s_1);
    at::Tensor alpha_s = sigmas[i] * lambda_s.exp();
    at::Tensor alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
    at::Tensor alpha_t = sigmas[i + 1] * lambda_t.exp();

    AncestralStep anc = ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta);
    at::Tensor h_ = anc.down.log().neg() - lambda_s;
    at::Tensor x_2 = (alpha_s_1 / alpha_s) * h_.neg().exp() * x - alpha_s_1 * h_.neg().expm1() * denoised;
    x_2 = x_2 + alpha_s_1 * noise(sigmas[i], sigma_s_1) * s_noise * anc.up;
    at::Tensor denoised_2 = denoise(model, x_2, sigma_s_1, s_in);

    anc = ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta);
    h_ = anc.down.log().neg() - lambda_s;
    at::Tensor denoised_d = denoised * (1 - fac) + denoised_2 * fac;
    x = (alpha_t / alpha_s) * h_.neg().exp() * x - alpha_t * h_.neg().expm1() * denoised_d;
    x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * anc.up;
  }
  return x;
}

enum class SolverType { kMidpoint, kHeun };

at::Tensor dpmpp_2m_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                        const NoiseSampler& noise, const StepCallback& cb, SolverType solver) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  const at::Tensor s_in = batch_ones(x);
  at::Tensor old_denoised;
  at::Tensor h;
  at::Tensor h_last;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = denoised;
    } else {
      at::Tensor lambda_s = lambda_fn(sigmas[i]);
      at::Tensor lambda_t = lambda_fn(sigmas[i + 1]);
      h = lambda_t - lambda_s;
      at::Tensor h_eta = h * (eta + 1);
      at::Tensor alpha_t = sigmas[i + 1] * lambda_t.exp();
      at::Tensor e = h_eta.neg().expm1().neg();
      x = sigmas[i + 1] / sigmas[i] * (h.neg() * eta).exp() * x + alpha_t * e * denoised;
      if (old_denoised.defined()) {
        at::Tensor r = h_last / h;
        if (solver == SolverType::kHeun) {
          x = x + alpha_t * (e / h_eta.neg() + 1) * rdiv(1, r) * (denoised - old_denoised);
        } else {
          x = x + alpha_t * 0.5 * e * rdiv(1, r) * (denoised - old_denoised);
        }
      }
      x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (h * -2 * eta).expm1().neg().sqrt() * s_noise;
    }
    old_denoised = denoised;
    h_last = h;
  }
  return x;
}

at::Tensor dpmpp_3m_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                        const NoiseSampler& noise, const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  const at::Tensor s_in = batch_ones(x);
  at::Tensor denoised_1;
  at::Tensor denoised_2;
  at::Tensor h;
  at::Tensor h_1;
  at::Tensor h_2;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = denoised;
    } else {
      at::Tensor lambda_s = lambda_fn(sigmas[i]);
      at::Tensor lambda_t = lambda_fn(sigmas[i + 1]);
      h = lambda_t - lambda_s;
      at::Tensor h_eta = h * (eta + 1);
      at::Tensor alpha_t = sigmas[i + 1] * lambda_t.exp();
      x = sigmas[i + 1] / sigmas[i] * (h.neg() * eta).exp() * x +
          alpha_t * h_eta.neg().expm1().neg() * denoised;
      if (h_2.defined()) {
        at::Tensor r0 = h_1 / h;
        at::Tensor r1 = h_2 / h;
        at::Tensor d1_0 = (denoised - denoised_1) / r0;
        at::Tensor d1_1 = (denoised_1 - denoised_2) / r1;
        at::Tensor d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1);
        at::Tensor d2 = (d1_0 - d1_1) / (r0 + r1);
        at::Tensor phi_2 = h_eta.neg().expm1() / h_eta + 1;
        at::Tensor phi_3 = phi_2 / h_eta - 0.5;
        x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2;
      } else if (h_1.defined()) {
        at::Tensor r = h_1 / h;
        at::Tensor d = (denoised - denoised_1) / r;
        at::Tensor phi_2 = h_eta.neg().expm1() / h_eta + 1;
        x = x + (alpha_t * phi_2) * d;
      }
      x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (h * -2 * eta).expm1().neg().sqrt() * s_noise;
    }
    denoised_2 = denoised_1;
    denoised_1 = denoised;
    h_2 = h_1;
    h_1 = h;
  }
  return x;
}

}  // namespace

at::Tensor sample_dpmpp_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                            const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_sde(model, x, sigmas, tree_noise(x, sigmas, opts, true), cb);
}

at::Tensor sample_dpmpp_sde_gpu(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_sde(model, x, sigmas, tree_noise(x, sigmas, opts, false), cb);
}

at::Tensor sample_dpmpp_2m_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                               const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_2m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, true), cb, SolverType::kMidpoint);
}

at::Tensor sample_dpmpp_2m_sde_gpu(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                   const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_2m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, false), cb, SolverType::kMidpoint);
}

at::Tensor sample_dpmpp_2m_sde_heun(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                    const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_2m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, true), cb, SolverType::kHeun);
}

at::Tensor sample_dpmpp_2m_sde_heun_gpu(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                        const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_2m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, false), cb, SolverType::kHeun);
}

at::Tensor sample_dpmpp_3m_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                               const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_3m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, true), cb);
}

at::Tensor sample_dpmpp_3m_sde_gpu(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                   const SamplerOptions& opts, const StepCallback& cb) {
  if (sigmas.size(0) <= 1) return x;
  return dpmpp_3m_sde(model, x, sigmas, tree_noise(x, sigmas, opts, false), cb);
}

}  // namespace sdflow::sampling
