// SEEDS-2 / SEEDS-3 and the exponential Heun x0 samplers built on SEEDS-2 (k-diffusion
// sample_seeds_2, sample_seeds_3, sample_exp_heun_2_x0, sample_exp_heun_2_x0_sde), plus the
// ER-SDE solver (sample_er_sde). All use default_noise_sampler noise.
#include <algorithm>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

at::Tensor lambda_fn(const at::Tensor& sigma) { return sigma.log().neg(); }
at::Tensor sigma_fn(const at::Tensor& lambda) { return lambda.neg().exp(); }
at::Tensor ei_h_phi_1(const at::Tensor& h) { return at::expm1(h); }
at::Tensor ei_h_phi_2(const at::Tensor& h) { return (at::expm1(h) - h) / h; }

enum class Seeds2Solver { kPhi1, kPhi2 };

at::Tensor seeds_2(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions& opts,
                   const StepCallback& cb, double eta, double s_noise, double r, Seeds2Solver solver) {
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const bool inject_noise = eta > 0 && s_noise > 0;
  const double fac = 1 / (2 * r);
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
    at::Tensor h_eta = h * (eta + 1);
    at::Tensor lambda_s_1 = at::lerp(lambda_s, lambda_t, r);
    at::Tensor sigma_s_1 = sigma_fn(lambda_s_1);
    at::Tensor alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
    at::Tensor alpha_t = sigmas[i + 1] * lambda_t.exp();

    at::Tensor x_2 =
        sigma_s_1 / sigmas[i] * (h * -r * eta).exp() * x - alpha_s_1 * ei_h_phi_1(h_eta * -r) * denoised;
    at::Tensor sde_noise;
    if (inject_noise) {
      sde_noise = (h * (-2 * r) * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1);
      x_2 = x_2 + sde_noise * sigma_s_1 * s_noise;
    }
    at::Tensor denoised_2 = denoise(model, x_2, sigma_s_1, s_in);

    if (solver == Seeds2Solver::kPhi1) {
      at::Tensor denoised_d = at::lerp(denoised, denoised_2, fac);
      x = sigmas[i + 1] / sigmas[i] * (h.neg() * eta).exp() * x -
          alpha_t * ei_h_phi_1(h_eta.neg()) * denoised_d;
    } else {
      at::Tensor b2 = ei_h_phi_2(h_eta.neg()) / r;
      at::Tensor b1 = ei_h_phi_1(h_eta.neg()) - b2;
      x = sigmas[i + 1] / sigmas[i] * (h.neg() * eta).exp() * x - alpha_t * (b1 * denoised + b2 * denoised_2);
    }
    if (inject_noise) {
      at::Tensor segment = h * (r - 1) * eta;
      sde_noise = sde_noise * segment.exp();
      sde_noise = sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_1, sigmas[i + 1]);
      x = x + sde_noise * sigmas[i + 1] * s_noise;
    }
  }
  return x;
}

}  // namespace

at::Tensor sample_seeds_2(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                          const SamplerOptions& opts, const StepCallback& cb) {
  return seeds_2(model, x, sigmas, opts, cb, 1.0, 1.0, 0.5, Seeds2Solver::kPhi1);
}

at::Tensor sample_exp_heun_2_x0(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                const SamplerOptions& opts, const StepCallback& cb) {
  return seeds_2(model, x, sigmas, opts, cb, 0.0, 0.0, 1.0, Seeds2Solver::kPhi2);
}

at::Tensor sample_exp_heun_2_x0_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                    const SamplerOptions& opts, const StepCallback& cb) {
  return seeds_2(model, x, sigmas, opts, cb, 1.0, 1.0, 1.0, Seeds2Solver::kPhi2);
}

at::Tensor sample_seeds_3(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                          const SamplerOptions& opts, const StepCallback& cb) {
  const double eta = 1.0;
  const double s_noise = 1.0;
  const double r_1 = 1. / 3;
  const double r_2 = 2. / 3;
  NoiseSampler noise = pick_noise_sampler(x, opts);
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
    at::Tensor h_eta = h * (eta + 1);
    at::Tensor lambda_s_1 = at::lerp(lambda_s, lambda_t, r_1);
    at::Tensor lambda_s_2 = at::lerp(lambda_s, lambda_t, r_2);
    at::Tensor sigma_s_1 = sigma_fn(lambda_s_1);
    at::Tensor sigma_s_2 = sigma_fn(lambda_s_2);
    at::Tensor alpha_s_1 = sigma_s_1 * lambda_s_1.exp();
    at::Tensor alpha_s_2 = sigma_s_2 * lambda_s_2.exp();
    at::Tensor alpha_t = sigmas[i + 1] * lambda_t.exp();

    at::Tensor x_2 =
        sigma_s_1 / sigmas[i] * (h * -r_1 * eta).exp() * x - alpha_s_1 * ei_h_phi_1(h_eta * -r_1) * denoised;
    at::Tensor sde_noise = (h * (-2 * r_1) * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1);
    x_2 = x_2 + sde_noise * sigma_s_1 * s_noise;
    at::Tensor denoised_2 = denoise(model, x_2, sigma_s_1, s_in);

    at::Tensor a3_2 = ei_h_phi_2(h_eta * -r_2) * (r_2 / r_1);
    at::Tensor a3_1 = ei_h_phi_1(h_eta * -r_2) - a3_2;
    at::Tensor x_3 = sigma_s_2 / sigmas[i] * (h * -r_2 * eta).exp() * x -
                     alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2);
    at::Tensor segment = h * (r_1 - r_2) * eta;
    sde_noise = sde_noise * segment.exp();
    sde_noise = sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_1, sigma_s_2);
    x_3 = x_3 + sde_noise * sigma_s_2 * s_noise;
    at::Tensor denoised_3 = denoise(model, x_3, sigma_s_2, s_in);

    at::Tensor b3 = ei_h_phi_2(h_eta.neg()) / r_2;
    at::Tensor b1 = ei_h_phi_1(h_eta.neg()) - b3;
    x = sigmas[i + 1] / sigmas[i] * (h.neg() * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3);
    segment = h * (r_2 - 1) * eta;
    sde_noise = sde_noise * segment.exp();
    sde_noise = sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(sigma_s_2, sigmas[i + 1]);
    x = x + sde_noise * sigmas[i + 1] * s_noise;
  }
  return x;
}

namespace {

at::Tensor er_noise_scaler(const at::Tensor& x) { return x * (at::pow(x, 0.3).exp() + 10.0); }

}  // namespace

at::Tensor sample_er_sde(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                         const SamplerOptions& opts, const StepCallback& cb) {
  const double s_noise = 1.0;
  const int max_stage = 3;
  const double num_points = 200.0;
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const at::Tensor point_indice = at::arange(0, num_points, x.options().dtype(at::kFloat));
  const at::Tensor er_lambdas = lambda_fn(sigmas).neg().exp();
  at::Tensor old_denoised;
  at::Tensor old_denoised_d;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    notify(cb, i, n, x, denoised, sigmas[i]);
    const int64_t stage_used = std::min<int64_t>(max_stage, i + 1);
    if (is_zero(sigmas[i + 1])) {
      x = denoised;
    } else {
      at::Tensor er_lambda_s = er_lambdas[i];
      at::Tensor er_lambda_t = er_lambdas[i + 1];
      at::Tensor alpha_s = sigmas[i] / er_lambda_s;
      at::Tensor alpha_t = sigmas[i + 1] / er_lambda_t;
      at::Tensor r_alpha = alpha_t / alpha_s;
      at::Tensor r = er_noise_scaler(er_lambda_t) / er_noise_scaler(er_lambda_s);
      x = r_alpha * r * x + alpha_t * (1 - r) * denoised;
      if (stage_used >= 2) {
        at::Tensor dt = er_lambda_t - er_lambda_s;
        at::Tensor step = dt.neg() / num_points;
        at::Tensor lambda_pos = er_lambda_t + point_indice * step;
        at::Tensor scaled_pos = er_noise_scaler(lambda_pos);
        at::Tensor s = at::sum(rdiv(1, scaled_pos)) * step;
        at::Tensor denoised_d = (denoised - old_denoised) / (er_lambda_s - er_lambdas[i - 1]);
        x = x + alpha_t * (dt + s * er_noise_scaler(er_lambda_t)) * denoised_d;
        if (stage_used >= 3) {
          at::Tensor s_u = at::sum((lambda_pos - er_lambda_s) / scaled_pos) * step;
          at::Tensor denoised_u = (denoised_d - old_denoised_d) / ((er_lambda_s - er_lambdas[i - 2]) / 2);
          x = x + alpha_t * (at::pow(dt, 2) / 2 + s_u * er_noise_scaler(er_lambda_t)) * denoised_u;
        }
        old_denoised_d = denoised_d;
      }
      at::Tensor amp =
          (at::pow(er_lambda_t, 2) - at::pow(er_lambda_s, 2) * at::pow(r, 2)).sqrt().nan_to_num(0.0);
      x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * amp;
    }
    old_denoised = denoised;
  }
  return x;
}

}  // namespace sdflow::sampling
