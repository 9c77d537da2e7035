#include "sampling/schedulers.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "sampling/special_functions.h"

namespace sdflow::sampling {
namespace {

// torch.FloatTensor(list_of_python_floats).
at::Tensor float_tensor(const std::vector<double>& values) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kFloat));
  float* p = t.data_ptr<float>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<float>(values[i]);
  return t;
}

at::Tensor append_zero(const at::Tensor& x) { return at::cat({x, at::zeros({1}, x.options())}); }

double table_value(const ModelSampling& ms, int64_t index) { return ms.sigmas()[index].item<double>(); }

bool isclose_abs(double a, double b, double abs_tol) {
  // math.isclose with the default rel_tol = 1e-9.
  const double diff = std::fabs(a - b);
  return diff <= std::fmax(1e-9 * std::fmax(std::fabs(a), std::fabs(b)), abs_tol);
}

}  // namespace

const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> names = {"simple",      "sgm_uniform",      "karras",
                                                 "exponential", "ddim_uniform",     "beta",
                                                 "normal",      "linear_quadratic", "kl_optimal"};
  return names;
}

bool is_scheduler(std::string_view name) {
  for (const auto& n : scheduler_names()) {
    if (n == name) return true;
  }
  return false;
}

at::Tensor simple_scheduler(const ModelSampling& ms, int64_t n) {
  const int64_t len = ms.sigmas().size(0);
  const double ss = static_cast<double>(len) / static_cast<double>(n);
  std::vector<double> sigs;
  for (int64_t x = 0; x < n; ++x) {
    sigs.push_back(table_value(ms, len - (1 + static_cast<int64_t>(static_cast<double>(x) * ss))));
  }
  sigs.push_back(0.0);
  return float_tensor(sigs);
}

at::Tensor ddim_scheduler(const ModelSampling& ms, int64_t n) {
  const int64_t len = ms.sigmas().size(0);
  int64_t x = 1;
  std::vector<double> sigs;
  if (isclose_abs(table_value(ms, x), 0.0, 0.00001)) {
    n += 1;
  } else {
    sigs.push_back(0.0);
  }
  const int64_t ss = std::max<int64_t>(len / n, 1);
  while (x < len) {
    sigs.push_back(table_value(ms, x));
    x += ss;
  }
  return float_tensor(std::vector<double>(sigs.rbegin(), sigs.rend()));
}

at::Tensor normal_scheduler(const ModelSampling& ms, int64_t n, bool sgm) {
  const at::Tensor start = ms.timestep(ms.sigma_max());
  const at::Tensor end = ms.timestep(ms.sigma_min());
  bool append = true;
  at::Tensor timesteps;
  if (sgm) {
    timesteps = at::linspace(start.item(), end.item(), n + 1);
    timesteps = timesteps.slice(0, 0, n);
  } else {
    if (isclose_abs(ms.sigma(end).item<double>(), 0.0, 0.00001)) {
      n += 1;
      append = false;
    }
    timesteps = at::linspace(start.item(), end.item(), n);
  }
  std::vector<double> sigs;
  for (int64_t i = 0; i < timesteps.size(0); ++i) sigs.push_back(ms.sigma(timesteps[i]).item<double>());
  if (append) sigs.push_back(0.0);
  return float_tensor(sigs);
}

at::Tensor beta_scheduler(const ModelSampling& ms, int64_t n, double alpha, double beta) {
  const int64_t total = ms.sigmas().size(0) - 1;
  // numpy.linspace(0, 1, n, endpoint=False) is i * (1 / n).
  const double step = 1.0 / static_cast<double>(n);
  std::vector<double> sigs;
  double last_t = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double q = 1.0 - static_cast<double>(i) * step;
    const double t = std::nearbyint(beta_ppf(q, alpha, beta) * static_cast<double>(total));
    if (t != last_t) sigs.push_back(table_value(ms, static_cast<int64_t>(t)));
    last_t = t;
  }
  sigs.push_back(0.0);
  return float_tensor(sigs);
}

at::Tensor linear_quadratic_scheduler(const ModelSampling& ms, int64_t n, double threshold_noise) {
  std::vector<double> schedule;
  if (n == 1) {
    schedule = {1.0, 0.0};
  } else {
    const int64_t linear_steps = n / 2;
    for (int64_t i = 0; i < linear_steps; ++i) {
      schedule.push_back(static_cast<double>(i) * threshold_noise / static_cast<double>(linear_steps));
    }
    const double diff = static_cast<double>(linear_steps) - threshold_noise * static_cast<double>(n);
    const int64_t quadratic_steps = n - linear_steps;
    const double q2 = static_cast<double>(quadratic_steps * quadratic_steps);
    const double quadratic_coef =
        diff / static_cast<double>(linear_steps * quadratic_steps * quadratic_steps);
    const double linear_coef = threshold_noise / static_cast<double>(linear_steps) - 2 * diff / q2;
    const double constant = quadratic_coef * static_cast<double>(linear_steps * linear_steps);
    for (int64_t i = linear_steps; i < n; ++i) {
      const double di = static_cast<double>(i);
      schedule.push_back(quadratic_coef * static_cast<double>(i * i) + linear_coef * di + constant);
    }
    schedule.push_back(1.0);
    for (double& v : schedule) v = 1.0 - v;
  }
  return float_tensor(schedule) * ms.sigma_max().cpu();
}

at::Tensor karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho) {
  at::Tensor ramp = at::linspace(0, 1, n);
  const double min_inv_rho = std::pow(sigma_min, 1 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1 / rho);
  at::Tensor sigmas = at::pow(ramp * (min_inv_rho - max_inv_rho) + max_inv_rho, rho);
  return append_zero(sigmas);
}

at::Tensor exponential_sigmas(int64_t n, double sigma_min, double sigma_max) {
  return append_zero(at::linspace(std::log(sigma_max), std::log(sigma_min), n).exp());
}

at::Tensor kl_optimal_sigmas(int64_t n, double sigma_min, double sigma_max) {
  at::Tensor adj = at::arange(n, at::TensorOptions().dtype(at::kFloat)).div_(n - 1);
  at::Tensor sigmas = at::zeros({n + 1}, adj.options());
  sigmas.slice(0, 0, n).copy_((adj * std::atan(sigma_min) + (1 - adj) * std::atan(sigma_max)).tan_());
  return sigmas;
}

at::Tensor calculate_sigmas(const ModelSampling& ms, std::string_view scheduler, int64_t steps) {
  if (scheduler == "simple") return simple_scheduler(ms, steps);
  if (scheduler == "sgm_uniform") return normal_scheduler(ms, steps, true);
  if (scheduler == "karras") return karras_sigmas(steps, ms.sigma_min_value(), ms.sigma_max_value());
  if (scheduler == "exponential")
    return exponential_sigmas(steps, ms.sigma_min_value(), ms.sigma_max_value());
  if (scheduler == "ddim_uniform") return ddim_scheduler(ms, steps);
  if (scheduler == "beta") return beta_scheduler(ms, steps);
  if (scheduler == "normal") return normal_scheduler(ms, steps, false);
  if (scheduler == "linear_quadratic") return linear_quadratic_scheduler(ms, steps);
  if (scheduler == "kl_optimal") return kl_optimal_sigmas(steps, ms.sigma_min_value(), ms.sigma_max_value());
  throw Error(ErrorKind::kUsage, "[scheduler] invalid scheduler " + std::string(scheduler));
}

bool discards_penultimate_sigma(std::string_view sampler_name) {
  return sampler_name == "dpm_2" || sampler_name == "dpm_2_ancestral" || sampler_name == "uni_pc" ||
         sampler_name == "uni_pc_bh2";
}

namespace {

at::Tensor ksampler_calculate(const ModelSampling& ms, std::string_view scheduler, std::string_view sampler,
                              int64_t steps) {
  const bool discard = discards_penultimate_sigma(sampler);
  if (discard) steps += 1;
  at::Tensor sigmas = calculate_sigmas(ms, scheduler, steps);
  if (discard) {
    const int64_t n = sigmas.size(0);
    sigmas = at::cat({sigmas.slice(0, 0, n - 2), sigmas.slice(0, n - 1, n)});
  }
  return sigmas;
}

}  // namespace

at::Tensor ksampler_sigmas(const ModelSampling& ms, std::string_view scheduler, std::string_view sampler_name,
                           int64_t steps, double denoise) {
  if (denoise > 0.9999) return ksampler_calculate(ms, scheduler, sampler_name, steps);
  if (denoise <= 0.0) return at::empty({0}, at::TensorOptions().dtype(at::kFloat));
  const auto new_steps = static_cast<int64_t>(static_cast<double>(steps) / denoise);
  at::Tensor sigmas = ksampler_calculate(ms, scheduler, sampler_name, new_steps);
  const int64_t n = sigmas.size(0);
  // Python's sigmas[-(steps + 1):] clamps a too-long tail to the whole list.
  const int64_t begin = std::max<int64_t>(0, n - (steps + 1));
  return sigmas.slice(0, begin, n);
}

at::Tensor apply_step_range(const at::Tensor& sigmas_in, const StepRange& range, bool* skip) {
  *skip = false;
  at::Tensor sigmas = sigmas_in;
  if (range.last_step && *range.last_step < sigmas.size(0) - 1) {
    sigmas = sigmas.slice(0, 0, *range.last_step + 1).clone();
    if (range.force_full_denoise) sigmas[sigmas.size(0) - 1] = 0;
  }
  if (range.start_step) {
    if (*range.start_step < sigmas.size(0) - 1) {
      sigmas = sigmas.slice(0, *range.start_step, sigmas.size(0));
    } else {
      *skip = true;
      return at::Tensor();
    }
  }
  return sigmas;
}

}  // namespace sdflow::sampling
