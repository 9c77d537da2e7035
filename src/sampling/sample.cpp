#include "sampling/sample.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "sampling/registry.h"

namespace sdflow::sampling {
namespace {

const SamplerInfo& resolve_sampler(const std::string& name) {
  const SamplerInfo* info = find_sampler_info(name);
  if (info == nullptr) info = find_sampler_info("euler");  // KSampler.__init__ fallback
  if (info->fn == nullptr) {
    throw Error(ErrorKind::kUsage, "[KSampler] sampler " + info->name + " is not implemented");
  }
  return *info;
}

// comfy.utils.repeat_to_batch_size along dim 0.
at::Tensor repeat_to_batch(const at::Tensor& t, int64_t batch) {
  const int64_t n = t.size(0);
  if (n > batch) return t.narrow(0, 0, batch);
  if (n < batch) {
    std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
    reps[0] = (batch + n - 1) / n;
    return t.repeat(reps).narrow(0, 0, batch);
  }
  return t;
}

// KSamplerX0Inpaint around the guided denoiser.
Denoiser inpaint_wrapper(const Denoiser& inner, const ModelSampling& ms, const at::Tensor& mask,
                         const at::Tensor& inpaint_noise, const at::Tensor& latent) {
  return [inner, &ms, mask, inpaint_noise, latent](const at::Tensor& x, const at::Tensor& sigma,
                                                   bool want_uncond) {
    const at::Tensor latent_mask = 1. - mask;
    const at::Tensor scaled = ms.noise_scaling(sigma, inpaint_noise, latent, false);
    DenoiseResult out = inner(x * mask + scaled * latent_mask, sigma, want_uncond);
    out.denoised = out.denoised * mask + latent * latent_mask;
    return out;
  };
}

}  // namespace

at::Tensor prepare_mask(const at::Tensor& mask, at::IntArrayRef shape, const at::Device& device) {
  at::Tensor m = mask.reshape({-1, 1, mask.size(-2), mask.size(-1)});
  m = at::upsample_bilinear2d(m, {shape[2], shape[3]}, /*align_corners=*/false);
  if (m.size(1) < shape[1]) m = m.repeat({1, shape[1], 1, 1}).slice(1, 0, shape[1]);
  m = repeat_to_batch(m, shape[0]);
  return m.to(device);
}

bool is_max_denoise(const ModelSampling& ms, const at::Tensor& sigmas) {
  const double max_sigma = ms.sigma_max_value();
  const double sigma = sigmas[0].item<double>();
  // math.isclose(max_sigma, sigma, rel_tol=1e-05)
  const double diff = std::fabs(max_sigma - sigma);
  const bool close = diff <= 1e-05 * std::fmax(std::fabs(max_sigma), std::fabs(sigma));
  return close || sigma > max_sigma;
}

at::Tensor sample_with_sigmas(const SampleRequest& req, const at::Tensor& sigmas_in) {
  if (req.model_sampling == nullptr || !req.denoiser) {
    throw Error(ErrorKind::kUsage, "[sample] model_sampling and denoiser are required");
  }
  if (sigmas_in.size(-1) == 0) return req.latent_image;
  const SamplerInfo& info = resolve_sampler(req.sampler_name);
  const ModelSampling& ms = *req.model_sampling;

  at::Tensor mask;
  if (req.denoise_mask.defined()) mask = prepare_mask(req.denoise_mask, req.latent_image.sizes(), req.device);

  at::Tensor noise = req.noise.to(req.device);
  at::Tensor latent = req.latent_image.to(req.device);
  const at::Tensor sigmas = sigmas_in.to(req.device);
  if (req.process_latent_in && at::count_nonzero(latent).item<int64_t>() > 0)
    latent = req.process_latent_in(latent);

  Denoiser model = req.denoiser;
  if (mask.defined()) {
    at::Tensor inpaint_noise = noise;
    if (info.random_inpaint_noise) {
      const uint64_t seed = req.seed.value_or(41);
      if (seed == std::numeric_limits<uint64_t>::max()) {
        throw Error(ErrorKind::kRuntime, "[ddim] seed + 1 overflows torch.manual_seed (as in ComfyUI)");
      }
      at::Generator gen = at::detail::createCPUGenerator(seed + 1);
      inpaint_noise = at::randn(noise.sizes(), gen, at::TensorOptions().dtype(at::kFloat))
                          .to(noise.scalar_type())
                          .to(noise.device());
    }
    model = inpaint_wrapper(req.denoiser, ms, mask, inpaint_noise, latent);
  }

  at::Tensor x = ms.noise_scaling(sigmas[0], noise, latent, is_max_denoise(ms, sigmas));
  SamplerOptions opts;
  opts.seed = req.seed;
  opts.model_sampling = &ms;
  opts.numpy_legacy_promotion = req.numpy_legacy_promotion;
  at::Tensor samples = info.fn(model, x, sigmas, opts, req.callback);
  samples = ms.inverse_noise_scaling(sigmas[sigmas.size(0) - 1], samples).to(at::kFloat);
  return req.process_latent_out ? req.process_latent_out(samples) : samples;
}

at::Tensor run_sampler_sigmas(const KSamplerParams& params, const ModelSampling& ms,
                              const std::string& sampler_name, bool* skip) {
  const std::string scheduler = is_scheduler(params.scheduler) ? params.scheduler : "simple";
  const std::string sampler = find_sampler_info(sampler_name) != nullptr ? sampler_name : "euler";
  at::Tensor sigmas = ksampler_sigmas(ms, scheduler, sampler, params.steps, params.denoise);
  return apply_step_range(sigmas, params.range, skip);
}

at::Tensor run_sampler(const KSamplerParams& params, const SampleRequest& request) {
  if (request.model_sampling == nullptr)
    throw Error(ErrorKind::kUsage, "[KSampler] model_sampling is required");
  bool skip = false;
  at::Tensor sigmas = run_sampler_sigmas(params, *request.model_sampling, request.sampler_name, &skip);
  if (skip) return request.latent_image.defined() ? request.latent_image : at::zeros_like(request.noise);
  return sample_with_sigmas(request, sigmas);
}

}  // namespace sdflow::sampling
