// Linear multistep (k-diffusion sample_lms, order 4).
//
// The coefficients are integrals of Lagrange basis polynomials, which k-diffusion evaluates with
// scipy.integrate.quad (QUADPACK qags, epsrel 1e-4). For these cubic-or-lower integrands qags
// accepts its first 21-point Gauss-Kronrod estimate, so that rule is reproduced here with
// QUADPACK's constants and summation order. The integrand itself mixes a Python float with
// numpy float32 sigmas: NumPy >= 2 evaluates it in float32, NumPy 1.x in float64
// (SamplerOptions::numpy_legacy_promotion picks the latter).
#include <algorithm>
#include <array>
#include <cmath>
#include <deque>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {
namespace {

using namespace detail;

constexpr std::array<double, 11> kXgk = {
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
    0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
    0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
    0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
    0.000000000000000000000000000000000};
constexpr std::array<double, 11> kWgk = {
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
    0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
    0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077208620980860, 0.134709217311473325928054001771707,
    0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
    0.149445554002916905664936468389821};

// QUADPACK dqk21 result (the Gauss part only feeds the error estimate, which qags accepts).
template <typename F>
double gauss_kronrod_21(const F& f, double a, double b) {
  const double centr = 0.5 * (a + b);
  const double hlgth = 0.5 * (b - a);
  double resk = kWgk[10] * f(centr);
  for (int j = 1; j <= 5; ++j) {
    const int jtw = 2 * j - 1;  // Fortran xgk(2j), 0-based
    const double absc = hlgth * kXgk[jtw];
    resk += kWgk[jtw] * (f(centr - absc) + f(centr + absc));
  }
  for (int j = 1; j <= 5; ++j) {
    const int jtwm1 = 2 * j - 2;  // Fortran xgk(2j - 1), 0-based
    const double absc = hlgth * kXgk[jtwm1];
    resk += kWgk[jtwm1] * (f(centr - absc) + f(centr + absc));
  }
  return resk * hlgth;
}

double lms_coeff(int order, const std::vector<float>& t, int64_t i, int j, bool legacy_promotion) {
  auto fn = [&](double tau) -> double {
    if (legacy_promotion) {
      double prod = 1.0;
      for (int k = 0; k < order; ++k) {
        if (k == j) continue;
        // float64 numerator over a float32 difference of two sigmas.
        prod *= (tau - static_cast<double>(t[i - k])) / static_cast<double>(t[i - j] - t[i - k]);
      }
      return prod;
    }
    // NEP 50: the Python float is cast to float32 and every step rounds to float32.
    bool first = true;
    float prod = 1.0f;
    const auto tau32 = static_cast<float>(tau);
    for (int k = 0; k < order; ++k) {
      if (k == j) continue;
      const float term = (tau32 - t[i - k]) / (t[i - j] - t[i - k]);
      prod = first ? static_cast<float>(1.0 * static_cast<double>(term)) : prod * term;
      first = false;
    }
    return first ? 1.0 : static_cast<double>(prod);
  };
  return gauss_kronrod_21(fn, static_cast<double>(t[i]), static_cast<double>(t[i + 1]));
}

}  // namespace

at::Tensor sample_lms(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                      const SamplerOptions& opts, const StepCallback& cb) {
  const int order = 4;
  const at::Tensor s_in = batch_ones(x);
  const at::Tensor sigmas_cpu = sigmas.detach().cpu().to(at::kFloat).contiguous();
  const std::vector<float> t(sigmas_cpu.data_ptr<float>(), sigmas_cpu.data_ptr<float>() + sigmas_cpu.numel());
  std::deque<at::Tensor> ds;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor denoised = denoise(model, x, sigmas[i], s_in);
    ds.push_back(to_d(x, sigmas[i], denoised));
    if (static_cast<int>(ds.size()) > order) ds.pop_front();
    notify(cb, i, n, x, denoised, sigmas[i]);
    if (is_zero(sigmas[i + 1])) {
      x = denoised;
    } else {
      const int cur_order = static_cast<int>(std::min<int64_t>(i + 1, order));
      // sum(coeff * d for coeff, d in zip(coeffs, reversed(ds))) starts from the int 0.
      at::Tensor acc;
      for (int j = 0; j < cur_order; ++j) {
        const double coeff = lms_coeff(cur_order, t, i, j, opts.numpy_legacy_promotion);
        at::Tensor term = ds[ds.size() - 1 - static_cast<size_t>(j)] * coeff;
        acc = j == 0 ? term + 0 : acc + term;
      }
      x = x + acc;
    }
  }
  return x;
}

}  // namespace sdflow::sampling
