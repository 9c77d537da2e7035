// SA-Solver, stochastic Adams predictor-corrector (k-diffusion sample_sa_solver and
// sample_sa_solver_pece with ComfyUI's defaults: predictor order 3, corrector order 4, tau = 1
// between percent 0.2 and 0.8 of the schedule, else 0).
#include <algorithm>
#include <cmath>
#include <deque>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

// compute_exponential_coeffs: integrals of exp((1 + tau^2) x) x^p over [s, t], exp factored out.
at::Tensor exponential_coeffs(const at::Tensor& s, const at::Tensor& t, int64_t order, double tau) {
  const double tau_mul = 1 + tau * tau;
  at::Tensor h = t - s;
  at::Tensor p = at::arange(order, s.options());
  at::Tensor product_terms = at::pow(t, p) - at::pow(s, p) * (h * -tau_mul).exp();
  at::Tensor depth = p.unsqueeze(1) - p.unsqueeze(0);
  at::Tensor log_factorial = (p + 1).lgamma();
  at::Tensor coeff = log_factorial.unsqueeze(1) - log_factorial.unsqueeze(0);
  if (tau > 0) coeff = coeff - depth * std::log(tau_mul);
  at::Tensor even = at::remainder(depth, 2).eq(0);
  at::Tensor signs = at::where(even, at::ones_like(depth), at::full_like(depth, -1.0));
  coeff = (coeff.exp() * signs).tril();
  return at::matmul(coeff, product_terms);
}

at::Tensor adams_b_coeffs(const at::Tensor& sigma_next, const at::Tensor& curr_lambdas,
                          const at::Tensor& lambda_s, const at::Tensor& lambda_t, double tau) {
  const int64_t k = curr_lambdas.size(0);
  at::Tensor integrals = exponential_coeffs(lambda_s, lambda_t, k, tau);
  at::Tensor vander_t = at::vander(curr_lambdas, k, true).t();
  at::Tensor lagrange = at::linalg_solve(vander_t, integrals);
  at::Tensor alpha_t = sigma_next * lambda_t.exp();
  return alpha_t * lagrange;
}

at::Tensor stacked(const std::deque<at::Tensor>& list, int64_t count) {
  std::vector<at::Tensor> items(list.end() - count, list.end());
  return at::stack(items, 1);
}

at::Tensor sa_solver(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                     const SamplerOptions& opts, const StepCallback& cb, bool use_pece) {
  if (sigmas.size(0) <= 1) return x;
  const ModelSampling& ms = require_model_sampling(opts, "sa_solver");
  const int64_t predictor_order = 3;
  const int64_t corrector_order = 4;
  const double s_noise = 1.0;
  NoiseSampler noise_sampler = pick_noise_sampler(x, opts);
  const at::Tensor s_in = batch_ones(x);
  const at::Tensor lambdas = sigmas.log().neg();
  const double start_sigma = ms.percent_to_sigma(0.2);
  const double end_sigma = ms.percent_to_sigma(0.8);
  auto tau_func = [&](const at::Tensor& sigma) {
    const double v = sigma.item<double>();
    return (start_sigma >= v && v >= end_sigma) ? 1.0 : 0.0;
  };
  const int64_t max_used_order = std::max(predictor_order, corrector_order);
  const int64_t len = sigmas.size(0);
  at::Tensor x_pred = x;
  at::Tensor h;  // Python float 0.0 until the first predictor step
  double tau_t = 0.0;
  at::Tensor noise;
  std::deque<at::Tensor> preds;
  const bool lower_order_to_end = sigmas[len - 1].item<double>() == 0;

  for (int64_t i = 0; i < len - 1; ++i) {
    at::Tensor denoised = denoise(model, x_pred, sigmas[i], s_in);
    notify(cb, i, len - 1, x_pred, denoised, sigmas[i]);
    preds.push_back(denoised);
    while (static_cast<int64_t>(preds.size()) > max_used_order) preds.pop_front();
    const auto n_preds = static_cast<int64_t>(preds.size());
    int64_t pred_order = std::min(predictor_order, n_preds);
    int64_t corr_order =
        (i == 0 || (is_zero(sigmas[i + 1]) && !use_pece)) ? 0 : std::min(corrector_order, n_preds);
    if (lower_order_to_end) {
      pred_order = std::min(pred_order, len - 2 - i);
      corr_order = std::min(corr_order, len - 1 - i);
    }

    if (corr_order == 0) {
      x = x_pred;
    } else {
      at::Tensor curr = lambdas.slice(0, i - corr_order + 1, i + 1);
      at::Tensor b = adams_b_coeffs(sigmas[i], curr, lambdas[i - 1], lambdas[i], tau_t);
      at::Tensor corr_res = at::tensordot(stacked(preds, corr_order), b, {1}, {0});
      const at::Tensor h_prev = h.defined() ? h : at::zeros({}, sigmas.options());
      x = sigmas[i] / sigmas[i - 1] * (h_prev * -(tau_t * tau_t)).exp() * x + corr_res;
      if (tau_t > 0 && s_noise > 0) x = x + noise;
      if (use_pece) {
        denoised = denoise(model, x, sigmas[i], s_in);
        preds.back() = denoised;
      }
    }

    if (is_zero(sigmas[i + 1])) {
      x_pred = denoised;
    } else {
      tau_t = tau_func(sigmas[i + 1]);
      at::Tensor curr = lambdas.slice(0, i - pred_order + 1, i + 1);
      at::Tensor b = adams_b_coeffs(sigmas[i + 1], curr, lambdas[i], lambdas[i + 1], tau_t);
      at::Tensor pred_res = at::tensordot(stacked(preds, pred_order), b, {1}, {0});
      h = lambdas[i + 1] - lambdas[i];
      x_pred = sigmas[i + 1] / sigmas[i] * (h * -(tau_t * tau_t)).exp() * x + pred_res;
      if (tau_t > 0 && s_noise > 0) {
        noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] *
                (h * (-2 * tau_t * tau_t)).expm1().neg().sqrt() * s_noise;
        x_pred = x_pred + noise;
      }
    }
  }
  return x_pred;
}

}  // namespace

at::Tensor sample_sa_solver(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                            const SamplerOptions& opts, const StepCallback& cb) {
  return sa_solver(model, x, sigmas, opts, cb, false);
}

at::Tensor sample_sa_solver_pece(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                 const SamplerOptions& opts, const StepCallback& cb) {
  return sa_solver(model, x, sigmas, opts, cb, true);
}

}  // namespace sdflow::sampling
