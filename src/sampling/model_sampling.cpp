#include "sampling/model_sampling.h"

#include <cmath>
#include <utility>

#include "core/error.h"

namespace sdflow::sampling {
namespace {

// Zero-terminal-SNR rescale of a float64 sigma table (ComfyUI rescale_zero_terminal_snr_sigmas).
at::Tensor rescale_zero_terminal_snr(const at::Tensor& sigmas) {
  // Python `1 / t` is reciprocal(t) * 1, not a true division.
  at::Tensor alphas_cumprod = at::reciprocal(sigmas * sigmas + 1) * 1;
  at::Tensor bar_sqrt = alphas_cumprod.sqrt();
  at::Tensor first = bar_sqrt[0].clone();
  at::Tensor last = bar_sqrt[bar_sqrt.size(0) - 1].clone();
  bar_sqrt -= last;
  bar_sqrt *= first / (first - last);
  at::Tensor alphas_bar = at::pow(bar_sqrt, 2);
  alphas_bar[alphas_bar.size(0) - 1] = 4.8973451890853435e-08;
  return at::pow((1 - alphas_bar) / alphas_bar, 0.5);
}

}  // namespace

at::Tensor reshape_sigma(const at::Tensor& sigma, int64_t ndim) {
  if (sigma.numel() == 1) return sigma.view(at::IntArrayRef{});
  std::vector<int64_t> shape(static_cast<size_t>(ndim), 1);
  shape[0] = sigma.size(0);
  return sigma.view(shape);
}

ModelSampling::ModelSampling(const ModelSamplingConfig& config) : config_(config) {
  if (config.timesteps < 2) {
    throw Error(ErrorKind::kUsage, "[ModelSampling] timesteps must be >= 2");
  }
  // make_beta_schedule("linear"): the endpoints' square roots are Python floats (libm pow).
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor betas = at::pow(at::linspace(std::pow(config.linear_start, 0.5),
                                          std::pow(config.linear_end, 0.5), config.timesteps, f64),
                             2);
  at::Tensor alphas = 1. - betas;
  at::Tensor alphas_cumprod = at::cumprod(alphas, 0);
  at::Tensor sigmas = at::pow((1 - alphas_cumprod) / alphas_cumprod, 0.5);
  if (config.zsnr) sigmas = rescale_zero_terminal_snr(sigmas);
  sigmas_ = sigmas.to(at::kFloat);
  log_sigmas_ = sigmas.log().to(at::kFloat);
  sigma_min_value_ = sigmas_[0].item<double>();
  sigma_max_value_ = sigmas_[sigmas_.size(0) - 1].item<double>();
}

ModelSampling::ModelSampling(const ModelSamplingConfig& config, at::Tensor sigmas, at::Tensor log_sigmas)
    : config_(config), sigmas_(std::move(sigmas)), log_sigmas_(std::move(log_sigmas)) {
  sigma_min_value_ = sigmas_[0].item<double>();
  sigma_max_value_ = sigmas_[sigmas_.size(0) - 1].item<double>();
}

ModelSampling ModelSampling::to(const at::Device& device) const {
  return ModelSampling(config_, sigmas_.to(device), log_sigmas_.to(device));
}

at::Tensor ModelSampling::timestep(const at::Tensor& sigma) const {
  at::Tensor log_sigma = sigma.log();
  at::Tensor dists = log_sigma.to(log_sigmas_.device()) - log_sigmas_.unsqueeze(1);
  return dists.abs().argmin(0).view(sigma.sizes()).to(sigma.device());
}

at::Tensor ModelSampling::sigma(const at::Tensor& timestep) const {
  at::Tensor t = at::clamp(timestep.to(at::kFloat).to(log_sigmas_.device()), 0, sigmas_.size(0) - 1);
  at::Tensor low = t.floor().to(at::kLong);
  at::Tensor high = t.ceil().to(at::kLong);
  at::Tensor w = t.frac();
  at::Tensor log_sigma = (1 - w) * log_sigmas_.index({low}) + w * log_sigmas_.index({high});
  return log_sigma.exp().to(timestep.device());
}

double ModelSampling::percent_to_sigma(double percent) const {
  if (percent <= 0.0) return 999999999.9;
  if (percent >= 1.0) return 0.0;
  percent = 1.0 - percent;
  // torch.tensor(python_float) is a float32 CPU scalar.
  at::Tensor t = at::scalar_tensor(percent * 999.0, at::TensorOptions().dtype(at::kFloat));
  return sigma(t).item<double>();
}

at::Tensor ModelSampling::calculate_input(const at::Tensor& sigma, const at::Tensor& x) const {
  at::Tensor s = reshape_sigma(sigma, x.dim());
  return x / at::pow(at::pow(s, 2) + 1.0, 0.5);
}

at::Tensor ModelSampling::calculate_denoised(const at::Tensor& sigma, const at::Tensor& model_output,
                                             const at::Tensor& model_input) const {
  at::Tensor s = reshape_sigma(sigma, model_output.dim());
  if (config_.prediction == Prediction::kEps) return model_input - model_output * s;
  // sigma_data = 1: the `* sigma_data` factors are exact identities and are left out.
  at::Tensor s2p1 = at::pow(s, 2) + 1.0;
  return model_input / s2p1 - (model_output * s) / at::pow(s2p1, 0.5);
}

at::Tensor ModelSampling::noise_scaling(const at::Tensor& sigma, const at::Tensor& noise,
                                        const at::Tensor& latent, bool max_denoise) const {
  at::Tensor s = reshape_sigma(sigma, noise.dim());
  at::Tensor out = max_denoise ? noise * at::sqrt(1.0 + at::pow(s, 2.0)) : noise * s;
  out += latent;
  return out;
}

}  // namespace sdflow::sampling
