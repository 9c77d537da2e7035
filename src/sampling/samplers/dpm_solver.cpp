// DPM-Solver fast (fixed orders) and adaptive (PID step control), k-diffusion's DPMSolver as
// ComfyUI calls it: sigma_min = the last non-zero sigma, sigma_max = sigmas[0], eta = 0.
// With eta = 0 the noise term is 0 * noise; the draw still happens, as in k-diffusion.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {
namespace {

using namespace detail;

class DpmSolver {
 public:
  DpmSolver(const Denoiser& model, const StepCallback& cb) : model_(model), cb_(cb) {}

  static at::Tensor t_of(const at::Tensor& sigma) { return sigma.log().neg(); }
  static at::Tensor sigma_of(const at::Tensor& t) { return t.neg().exp(); }

  using Cache = std::map<std::string, at::Tensor>;

  at::Tensor eps(Cache& cache, const std::string& key, const at::Tensor& x, const at::Tensor& t) {
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    at::Tensor sigma = sigma_of(t) * batch_ones(x);
    at::Tensor e = (x - model_(x, sigma, false).denoised) / sigma_of(t);
    cache[key] = e;
    return e;
  }

  at::Tensor step1(const at::Tensor& x, const at::Tensor& t, const at::Tensor& t_next, Cache& cache) {
    at::Tensor h = t_next - t;
    at::Tensor e = eps(cache, "eps", x, t);
    return x - sigma_of(t_next) * h.expm1() * e;
  }

  at::Tensor step2(const at::Tensor& x, const at::Tensor& t, const at::Tensor& t_next, double r1,
                   Cache& cache) {
    at::Tensor h = t_next - t;
    at::Tensor e = eps(cache, "eps", x, t);
    at::Tensor s1 = t + h * r1;
    at::Tensor u1 = x - sigma_of(s1) * (h * r1).expm1() * e;
    at::Tensor e_r1 = eps(cache, "eps_r1", u1, s1);
    return x - sigma_of(t_next) * h.expm1() * e - sigma_of(t_next) / (2 * r1) * h.expm1() * (e_r1 - e);
  }

  at::Tensor step3(const at::Tensor& x, const at::Tensor& t, const at::Tensor& t_next, Cache& cache) {
    const double r1 = 1.0 / 3;
    const double r2 = 2.0 / 3;
    at::Tensor h = t_next - t;
    at::Tensor e = eps(cache, "eps", x, t);
    at::Tensor s1 = t + h * r1;
    at::Tensor s2 = t + h * r2;
    at::Tensor u1 = x - sigma_of(s1) * (h * r1).expm1() * e;
    at::Tensor e_r1 = eps(cache, "eps_r1", u1, s1);
    at::Tensor u2 = x - sigma_of(s2) * (h * r2).expm1() * e -
                    sigma_of(s2) * (r2 / r1) * ((h * r2).expm1() / (h * r2) - 1) * (e_r1 - e);
    at::Tensor e_r2 = eps(cache, "eps_r2", u2, s2);
    return x - sigma_of(t_next) * h.expm1() * e - sigma_of(t_next) / r2 * (h.expm1() / h - 1) * (e_r2 - e);
  }

  void info(int64_t i, int64_t total, const at::Tensor& x, const at::Tensor& t, const at::Tensor& denoised) {
    if (cb_) cb_(StepInfo{i, total, x, denoised, sigma_of(t)});
  }

 private:
  const Denoiser& model_;
  const StepCallback& cb_;
};

// ComfyUI's wrapper: the last non-zero sigma is the end point.
bool endpoints(const at::Tensor& sigmas, at::Tensor* sigma_min, at::Tensor* sigma_max) {
  const int64_t len = sigmas.size(0);
  if (len <= 1) return false;
  *sigma_min = sigmas[len - 1];
  if (is_zero(*sigma_min)) *sigma_min = sigmas[len - 2];
  *sigma_max = sigmas[0];
  if (!is_positive(*sigma_min) || !is_positive(*sigma_max)) {
    throw Error(ErrorKind::kRuntime, "[dpm_fast/dpm_adaptive] sigma_min and sigma_max must not be 0");
  }
  return true;
}

}  // namespace

at::Tensor sample_dpm_fast(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                           const SamplerOptions& opts, const StepCallback& cb) {
  at::Tensor sigma_min;
  at::Tensor sigma_max;
  if (!endpoints(sigmas, &sigma_min, &sigma_max)) return x;
  const int64_t nfe = sigmas.size(0) - 1;
  DpmSolver solver(model, cb);
  NoiseSampler noise = pick_noise_sampler(x, opts);
  // torch.tensor(sigma) copies keep the device; t = -log(sigma).
  const at::Tensor t_start = DpmSolver::t_of(sigma_max.clone());
  const at::Tensor t_end = DpmSolver::t_of(sigma_min.clone());
  const int64_t m = nfe / 3 + 1;
  const at::Tensor ts = at::linspace(t_start.item(), t_end.item(), m + 1, x.options());
  std::vector<int> orders;
  if (nfe % 3 == 0) {
    orders.assign(static_cast<size_t>(std::max<int64_t>(m - 2, 0)), 3);
    orders.push_back(2);
    orders.push_back(1);
  } else {
    orders.assign(static_cast<size_t>(m - 1), 3);
    orders.push_back(static_cast<int>(nfe % 3));
  }
  const auto total = static_cast<int64_t>(orders.size());
  for (int64_t i = 0; i < total; ++i) {
    DpmSolver::Cache cache;
    at::Tensor t = ts[i];
    at::Tensor t_next = ts[i + 1];
    at::Tensor e = solver.eps(cache, "eps", x, t);
    at::Tensor denoised = x - DpmSolver::sigma_of(t) * e;
    solver.info(i, nfe, x, t, denoised);
    const int order = orders[static_cast<size_t>(i)];
    if (order == 1) {
      x = solver.step1(x, t, t_next, cache);
    } else if (order == 2) {
      x = solver.step2(x, t, t_next, 0.5, cache);
    } else {
      x = solver.step3(x, t, t_next, cache);
    }
    // su = 0.0 (eta = 0): x + 0.0 * noise.
    x = x + noise(DpmSolver::sigma_of(t), DpmSolver::sigma_of(t_next)) * 0.0;
  }
  return x;
}

at::Tensor sample_dpm_adaptive(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                               const SamplerOptions& opts, const StepCallback& cb) {
  at::Tensor sigma_min;
  at::Tensor sigma_max;
  if (!endpoints(sigmas, &sigma_min, &sigma_max)) return x;
  const int64_t total_steps = sigmas.size(0) - 1;
  DpmSolver solver(model, cb);
  NoiseSampler noise = pick_noise_sampler(x, opts);
  const at::Tensor t_start = DpmSolver::t_of(sigma_max.clone());
  const at::Tensor t_end = DpmSolver::t_of(sigma_min.clone());

  const int order = 3;
  const double rtol_v = 0.05;
  const double atol_v = 0.0078;
  const double accept_safety = 0.81;
  const double pid_eps = 1e-8;
  const bool forward = t_end.gt(t_start).item<bool>();
  double h = std::fabs(0.05) * (forward ? 1 : -1);
  // PID controller with pcoeff = 0, icoeff = 1, dcoeff = 0 and order 3.
  const double b1 = (0. + 1. + 0.) / order;
  const double b2 = -(0. + 2 * 0.) / order;
  const double b3 = 0. / order;
  std::vector<double> errs;
  const auto cpu_f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor atol = at::scalar_tensor(atol_v, cpu_f32);
  const at::Tensor rtol = at::scalar_tensor(rtol_v, cpu_f32);
  const double numel_sqrt = std::pow(static_cast<double>(x.numel()), 0.5);

  at::Tensor s = t_start;
  at::Tensor x_prev = x;
  int64_t steps = 0;
  for (;;) {
    const bool go = forward ? s.lt(t_end - 1e-5).item<bool>() : s.gt(t_end + 1e-5).item<bool>();
    if (!go) break;
    DpmSolver::Cache cache;
    at::Tensor t = forward ? at::minimum(t_end, s + h) : at::maximum(t_end, s + h);
    at::Tensor e = solver.eps(cache, "eps", x, s);
    at::Tensor denoised = x - DpmSolver::sigma_of(s) * e;
    at::Tensor x_low = solver.step2(x, s, t, 1.0 / 3, cache);
    at::Tensor x_high = solver.step3(x, s, t, cache);
    at::Tensor delta = at::maximum(atol, rtol * at::maximum(x_low.abs(), x_prev.abs()));
    at::Tensor error = at::linalg_vector_norm((x_low - x_high) / delta, 2) / numel_sqrt;

    const double inv_error = 1 / (error.item<double>() + pid_eps);
    if (errs.empty()) errs.assign(3, inv_error);
    errs[0] = inv_error;
    double factor = std::pow(errs[0], b1) * std::pow(errs[1], b2) * std::pow(errs[2], b3);
    factor = 1 + std::atan(factor - 1);
    const bool accept = factor >= accept_safety;
    if (accept) {
      errs[2] = errs[1];
      errs[1] = errs[0];
    }
    h *= factor;

    if (accept) {
      x_prev = x_low;
      x = x_high + noise(DpmSolver::sigma_of(s), DpmSolver::sigma_of(t)) * 0.0;
      s = t;
    }
    steps += 1;
    solver.info(steps - 1, total_steps, x, s, denoised);
  }
  return x;
}

}  // namespace sdflow::sampling
