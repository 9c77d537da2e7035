// Adams-type multistep samplers on the sigma grid: iPNDM, iPNDM-v and DEIS (tab mode), as in
// ComfyUI's k_diffusion (sample_ipndm, sample_ipndm_v, sample_deis + deis.get_deis_coeff_list).
//
// DEIS's coefficients differentiate log(alpha(t)) with autograd; the backward graph is short,
// so its ops are spelled out here in autograd's order instead of running autograd.
#include <algorithm>
#include <cmath>
#include <deque>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

void push_history(std::deque<at::Tensor>& buffer, const at::Tensor& d, size_t max_order) {
  buffer.push_back(d);
  if (buffer.size() > max_order - 1) buffer.pop_front();
}

at::Tensor back(const std::deque<at::Tensor>& b, size_t k) { return b[b.size() - k]; }

}  // namespace

at::Tensor sample_ipndm(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                        const StepCallback& cb) {
  const size_t max_order = 4;
  const at::Tensor s_in = batch_ones(x);
  at::Tensor x_next = x;
  std::deque<at::Tensor> buffer;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor t_cur = sigmas[i];
    const at::Tensor t_next = sigmas[i + 1];
    const at::Tensor x_cur = x_next;
    at::Tensor denoised = denoise(model, x_cur, t_cur, s_in);
    notify(cb, i, n, x_cur, denoised, sigmas[i]);
    at::Tensor d_cur = (x_cur - denoised) / t_cur;
    const auto order = static_cast<size_t>(std::min<int64_t>(max_order, i + 1));
    const at::Tensor dt = t_next - t_cur;
    if (is_zero(t_next)) {
      x_next = denoised;
    } else if (order == 1) {
      x_next = x_cur + dt * d_cur;
    } else if (order == 2) {
      x_next = x_cur + dt * (d_cur * 3 - back(buffer, 1)) / 2;
    } else if (order == 3) {
      x_next = x_cur + dt * (d_cur * 23 - back(buffer, 1) * 16 + back(buffer, 2) * 5) / 12;
    } else {
      x_next =
          x_cur + dt * (d_cur * 55 - back(buffer, 1) * 59 + back(buffer, 2) * 37 - back(buffer, 3) * 9) / 24;
    }
    push_history(buffer, d_cur, max_order);
  }
  return x_next;
}

at::Tensor sample_ipndm_v(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                          const SamplerOptions&, const StepCallback& cb) {
  const size_t max_order = 4;
  const at::Tensor s_in = batch_ones(x);
  const at::Tensor& ts = sigmas;
  at::Tensor x_next = x;
  std::deque<at::Tensor> buffer;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor t_cur = sigmas[i];
    const at::Tensor t_next = sigmas[i + 1];
    const at::Tensor x_cur = x_next;
    at::Tensor denoised = denoise(model, x_cur, t_cur, s_in);
    notify(cb, i, n, x_cur, denoised, sigmas[i]);
    at::Tensor d_cur = (x_cur - denoised) / t_cur;
    const auto order = static_cast<size_t>(std::min<int64_t>(max_order, i + 1));
    if (is_zero(t_next)) {
      x_next = denoised;
    } else if (order == 1) {
      x_next = x_cur + (t_next - t_cur) * d_cur;
    } else {
      const at::Tensor h_n = t_next - t_cur;
      const at::Tensor h_n_1 = t_cur - ts[i - 1];
      const at::Tensor ratio = h_n / h_n_1;
      if (order == 2) {
        at::Tensor coeff1 = (ratio + 2) / 2;
        at::Tensor coeff2 = ratio.neg() / 2;
        x_next = x_cur + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * back(buffer, 1));
      } else {
        const at::Tensor h_n_2 = ts[i - 1] - ts[i - 2];
        const at::Tensor temp1 =
            (1 - h_n / ((h_n + h_n_1) * 3) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2;
        if (order == 3) {
          at::Tensor coeff1 = (ratio + 2) / 2 + temp1;
          at::Tensor coeff2 = ratio.neg() / 2 - (h_n_1 / h_n_2 + 1) * temp1;
          at::Tensor coeff3 = temp1 * h_n_1 / h_n_2;
          x_next = x_cur +
                   (t_next - t_cur) * (coeff1 * d_cur + coeff2 * back(buffer, 1) + coeff3 * back(buffer, 2));
        } else {
          const at::Tensor h_n_3 = ts[i - 2] - ts[i - 3];
          const at::Tensor s01 = h_n + h_n_1;
          const at::Tensor s012 = h_n + h_n_1 + h_n_2;
          const at::Tensor temp2 = ((1 - h_n / (s01 * 3)) / 2 + (1 - h_n / (s01 * 2)) * h_n / (s012 * 6)) *
                                   (h_n * s01 * s012) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
          const at::Tensor q = (h_n_1 * (h_n_1 + h_n_2)) / (h_n_2 * (h_n_2 + h_n_3));
          at::Tensor coeff1 = (ratio + 2) / 2 + temp1 + temp2;
          at::Tensor coeff2 = ratio.neg() / 2 - (h_n_1 / h_n_2 + 1) * temp1 - (h_n_1 / h_n_2 + 1 + q) * temp2;
          at::Tensor coeff3 = temp1 * h_n_1 / h_n_2 + (h_n_1 / h_n_2 + q * (h_n_2 / h_n_3 + 1)) * temp2;
          at::Tensor coeff4 = temp2.neg() * q * h_n_1 / h_n_2;
          x_next = x_cur + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * back(buffer, 1) +
                                               coeff3 * back(buffer, 2) + coeff4 * back(buffer, 3));
        }
      }
    }
    push_history(buffer, d_cur, max_order);
  }
  return x_next;
}

namespace {

// deis.get_deis_coeff_list(t_steps, max_order, N = 10000, 'tab'): CPU float32 0-dim tensors.
std::vector<std::vector<at::Tensor>> deis_coefficients(const at::Tensor& sigmas, int64_t max_order) {
  const int64_t kN = 10000;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  // edm2t (epsilon_s = 1e-3, sigma_min = 0.002, sigma_max = 80) takes NumPy logs of two torch
  // scalars: float32 0.002^2 + 1 (a float32 log) and int64 80^2 + 1 (a float64 log, which makes
  // the betas float64). NumPy's SIMD logs are 1 ulp off libm for both, so these are NumPy's
  // results (NumPy 1.24-2.x, x86-64). The dtypes are kept: ATen then promotes like torch does.
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor lmin = at::scalar_tensor(0x1.0fffdap-18, f32);
  const at::Tensor lmax = at::scalar_tensor(0x1.1874677f0ef32p+3, f64);
  const at::Tensor beta_d = (lmin / 1e-3 - lmax) * 2 / (1e-3 - 1);
  const at::Tensor beta_min = lmax - beta_d * 0.5;
  const at::Tensor edm = sigmas.detach().cpu();
  const at::Tensor t_steps =
      ((at::pow(beta_min, 2) + beta_d * 2 * (at::pow(edm, 2) + 1).log()).sqrt() - beta_min) / beta_d;
  const at::Tensor beta_0 = beta_min;
  const at::Tensor beta_1 = beta_d + beta_min;

  std::vector<std::vector<at::Tensor>> coeffs;
  for (int64_t i = 0; i + 1 < t_steps.size(0); ++i) {
    const int64_t order = std::min(i + 1, max_order);
    if (order == 1) {
      coeffs.emplace_back();
      continue;
    }
    const at::Tensor t_cur = t_steps[i];
    const at::Tensor t_next = t_steps[i + 1];
    const at::Tensor taus = at::linspace(t_cur.item(), t_next.item(), kN, f32);
    const at::Tensor dtau = (t_next - t_cur) / kN;
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < order; ++k) idx.push_back(i - k);
    const at::Tensor prev_t = t_steps.index({at::tensor(idx, at::kLong)});

    // alpha = exp(-0.5 t^2 (b1 - b0) - t b0); d log(alpha)/dt as autograd computes it.
    const at::Tensor c = beta_1 - beta_0;
    const at::Tensor alpha = (at::pow(taus, 2) * -0.5 * c - taus * beta_0).exp();
    const at::Tensor g_log = at::ones_like(alpha) / alpha;
    const at::Tensor g_exp = g_log * alpha;
    const at::Tensor grad_a = g_exp * c * -0.5 * (taus.pow(1.0) * 2.0);
    const at::Tensor grad_b = g_exp.neg() * beta_0;
    const at::Tensor dlog = grad_a + grad_b;
    const at::Tensor integrand = dlog * -0.5 / at::sqrt(alpha * (1 - alpha));

    std::vector<at::Tensor> row;
    for (int64_t j = 0; j < order; ++j) {
      at::Tensor poly;
      for (int64_t k = 0; k < order; ++k) {
        if (k == j) continue;
        at::Tensor term = (taus - prev_t[k]) / (prev_t[j] - prev_t[k]);
        poly = poly.defined() ? poly * term : term * 1;
      }
      row.push_back(at::sum(integrand * poly) * dtau);
    }
    coeffs.push_back(row);
  }
  return coeffs;
}

}  // namespace

at::Tensor sample_deis(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                       const StepCallback& cb) {
  const int64_t max_order = 3;
  const at::Tensor s_in = batch_ones(x);
  at::Tensor x_next = x;
  const auto coeffs = deis_coefficients(sigmas, max_order);
  std::deque<at::Tensor> buffer;
  const int64_t n = num_steps(sigmas);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor t_cur = sigmas[i];
    const at::Tensor t_next = sigmas[i + 1];
    const at::Tensor x_cur = x_next;
    at::Tensor denoised = denoise(model, x_cur, t_cur, s_in);
    notify(cb, i, n, x_cur, denoised, sigmas[i]);
    at::Tensor d_cur = (x_cur - denoised) / t_cur;
    int64_t order = std::min(max_order, i + 1);
    if (t_next.le(0).item<bool>()) order = 1;
    const auto& c = coeffs[static_cast<size_t>(i)];
    if (order == 1) {
      x_next = x_cur + (t_next - t_cur) * d_cur;
    } else if (order == 2) {
      x_next = x_cur + c[0] * d_cur + c[1] * back(buffer, 1);
    } else {
      x_next = x_cur + c[0] * d_cur + c[1] * back(buffer, 1) + c[2] * back(buffer, 2);
    }
    push_history(buffer, d_cur, static_cast<size_t>(max_order));
  }
  return x_next;
}

}  // namespace sdflow::sampling
