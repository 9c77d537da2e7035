// UniPC (ComfyUI comfy/extra_samplers/uni_pc.py: sample_unipc, UniPC.sample in multistep mode,
// multistep_uni_pc_bh_update) with data prediction, B(h) = h (bh1, "uni_pc") or expm1(h)
// (bh2, "uni_pc_bh2"), order min(3, len(timesteps) - 2) and lower_order_final.
//
// Time is sigma itself; the sample lives in the variance-preserving scale x / sqrt(1 + sigma^2)
// while UniPC runs. A final sigma of 0 becomes 0.001 (ComfyUI writes it into the caller's
// sigma tensor; here a copy is changed).
#include <algorithm>
#include <vector>

#include "sampling/samplers/common.h"
#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {

using namespace detail;

namespace {

enum class Variant { kBh1, kBh2 };

// SigmaConvert: the VP view of a sigma (EDM) schedule.
at::Tensor log_mean_coeff(const at::Tensor& sigma) { return at::log(rdiv(1, sigma * sigma + 1)) * 0.5; }
at::Tensor marginal_alpha(const at::Tensor& t) { return at::exp(log_mean_coeff(t)); }
at::Tensor marginal_std(const at::Tensor& t) { return at::sqrt(1. - at::exp(log_mean_coeff(t) * 2.)); }
at::Tensor marginal_lambda(const at::Tensor& t) {
  at::Tensor lmc = log_mean_coeff(t);
  at::Tensor log_std = at::log(1. - at::exp(lmc * 2.)) * 0.5;
  return lmc - log_std;
}

class UniPc {
 public:
  UniPc(const Denoiser& model, Variant variant) : model_(model), variant_(variant) {}

  // Data prediction x0(x, t) through the eps wrapper around the k-diffusion denoiser.
  at::Tensor model_fn(const at::Tensor& x, const at::Tensor& t) {
    const int64_t dims = x.dim();
    at::Tensor sigma = append_dims(t, dims);
    at::Tensor input = x * at::pow(at::pow(sigma, 2) + 1.0, 0.5);
    at::Tensor eps = (input - model_(input, t.contiguous(), false).denoised) / sigma;
    at::Tensor alpha_t = marginal_alpha(t);
    at::Tensor sigma_t = marginal_std(t);
    return (x - append_dims(sigma_t, dims) * eps) / append_dims(alpha_t, dims);
  }

  // multistep_uni_pc_bh_update with x_t = None. Returns (x_t, model_t or undefined).
  std::pair<at::Tensor, at::Tensor> update(const at::Tensor& x, const std::vector<at::Tensor>& model_prev,
                                           const std::vector<at::Tensor>& t_prev, const at::Tensor& t,
                                           int64_t order, bool use_corrector) {
    const int64_t dims = x.dim();
    const at::Tensor& t_prev_0 = t_prev.back();
    at::Tensor lambda_prev_0 = marginal_lambda(t_prev_0);
    at::Tensor lambda_t = marginal_lambda(t);
    const at::Tensor& model_prev_0 = model_prev.back();
    at::Tensor sigma_prev_0 = marginal_std(t_prev_0);
    at::Tensor sigma_t = marginal_std(t);
    at::Tensor alpha_t = at::exp(log_mean_coeff(t));
    at::Tensor h = lambda_t - lambda_prev_0;

    std::vector<at::Tensor> rks;
    std::vector<at::Tensor> d1s;
    for (int64_t i = 1; i < order; ++i) {
      const at::Tensor& t_prev_i = t_prev[t_prev.size() - 1 - static_cast<size_t>(i)];
      const at::Tensor& model_prev_i = model_prev[model_prev.size() - 1 - static_cast<size_t>(i)];
      at::Tensor rk = ((marginal_lambda(t_prev_i) - lambda_prev_0) / h)[0];
      rks.push_back(rk);
      d1s.push_back((model_prev_i - model_prev_0) / rk);
    }
    rks.push_back(at::ones({}, h.options()));
    at::Tensor rks_t = at::stack(rks);

    at::Tensor hh = h[0].neg();
    at::Tensor h_phi_1 = at::expm1(hh);
    at::Tensor h_phi_k = h_phi_1 / hh - 1;
    int64_t factorial_i = 1;
    at::Tensor b_h = variant_ == Variant::kBh1 ? hh : at::expm1(hh);
    std::vector<at::Tensor> r_rows;
    std::vector<at::Tensor> b_vals;
    for (int64_t i = 1; i <= order; ++i) {
      r_rows.push_back(at::pow(rks_t, i - 1));
      b_vals.push_back(h_phi_k * factorial_i / b_h);
      factorial_i *= (i + 1);
      h_phi_k = h_phi_k / hh - 1.0 / static_cast<double>(factorial_i);
    }
    at::Tensor R = at::stack(r_rows);
    at::Tensor b = at::stack(b_vals);

    const bool use_predictor = !d1s.empty();
    at::Tensor d1s_t;
    at::Tensor rhos_p;
    if (!d1s.empty()) {
      d1s_t = at::stack(d1s, 1);
      if (order == 2) {
        rhos_p = at::full({1}, 0.5, b.options());
      } else {
        rhos_p = at::linalg_solve(R.slice(0, 0, order - 1).slice(1, 0, order - 1), b.slice(0, 0, order - 1));
      }
    }
    at::Tensor rhos_c;
    if (use_corrector) {
      rhos_c = order == 1 ? at::full({1}, 0.5, b.options()) : at::linalg_solve(R, b);
    }

    at::Tensor x_t_ =
        append_dims(sigma_t / sigma_prev_0, dims) * x - append_dims(alpha_t * h_phi_1, dims) * model_prev_0;
    at::Tensor scale = append_dims(alpha_t * b_h, dims);
    at::Tensor x_t = use_predictor ? x_t_ - scale * at::tensordot(d1s_t, rhos_p, {1}, {0}) : x_t_ - scale * 0;
    at::Tensor model_t;
    if (use_corrector) {
      model_t = model_fn(x_t, t);
      at::Tensor d1_t = model_t - model_prev_0;
      at::Tensor last = rhos_c[rhos_c.size(0) - 1] * d1_t;
      at::Tensor corr = d1s_t.defined()
                            ? at::tensordot(d1s_t, rhos_c.slice(0, 0, rhos_c.size(0) - 1), {1}, {0}) + last
                            : last + 0;
      x_t = x_t_ - scale * corr;
    }
    return {x_t, model_t};
  }

 private:
  const Denoiser& model_;
  Variant variant_;
};

at::Tensor sample_unipc(const Denoiser& model, at::Tensor noise, const at::Tensor& sigmas,
                        const StepCallback& cb, Variant variant) {
  at::Tensor timesteps = sigmas.clone();
  const int64_t len = timesteps.size(0);
  if (is_zero(sigmas[len - 1])) timesteps[len - 1] = 0.001;
  at::Tensor x = noise / at::sqrt(1.0 + at::pow(timesteps[0], 2.0));
  const int64_t order = std::min<int64_t>(3, len - 2);
  const int64_t steps = len - 1;
  const int64_t batch = x.size(0);
  UniPc unipc(model, variant);

  std::vector<at::Tensor> model_prev;
  std::vector<at::Tensor> t_prev;
  for (int64_t step_index = 0; step_index < steps; ++step_index) {
    if (step_index == 0) {
      at::Tensor vec_t = timesteps[0].expand({batch});
      model_prev = {unipc.model_fn(x, vec_t)};
      t_prev = {vec_t};
    } else if (step_index < order) {
      at::Tensor vec_t = timesteps[step_index].expand({batch});
      auto [x_new, model_x] = unipc.update(x, model_prev, t_prev, vec_t, step_index, true);
      x = x_new;
      if (!model_x.defined()) model_x = unipc.model_fn(x, vec_t);
      model_prev.push_back(model_x);
      t_prev.push_back(vec_t);
    } else {
      const int64_t extra_final_step = step_index == steps - 1 ? 1 : 0;
      for (int64_t step = step_index; step < step_index + 1 + extra_final_step; ++step) {
        at::Tensor vec_t = timesteps[step].expand({batch});
        const int64_t step_order = std::min(order, steps + 1 - step);
        const bool use_corrector = step != steps;
        auto [x_new, model_x] = unipc.update(x, model_prev, t_prev, vec_t, step_order, use_corrector);
        x = x_new;
        for (int64_t i = 0; i < order - 1; ++i) {
          t_prev[static_cast<size_t>(i)] = t_prev[static_cast<size_t>(i + 1)];
          model_prev[static_cast<size_t>(i)] = model_prev[static_cast<size_t>(i + 1)];
        }
        t_prev.back() = vec_t;
        if (step < steps) {
          if (!model_x.defined()) model_x = unipc.model_fn(x, vec_t);
          model_prev.back() = model_x;
        }
      }
    }
    if (cb) cb(StepInfo{step_index, steps, x, model_prev.back(), sigmas[step_index]});
  }
  x = x / marginal_alpha(timesteps[len - 1]);
  return x;
}

}  // namespace

at::Tensor sample_uni_pc(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, const SamplerOptions&,
                         const StepCallback& cb) {
  return sample_unipc(model, x, sigmas, cb, Variant::kBh1);
}

at::Tensor sample_uni_pc_bh2(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                             const SamplerOptions&, const StepCallback& cb) {
  return sample_unipc(model, x, sigmas, cb, Variant::kBh2);
}

}  // namespace sdflow::sampling
