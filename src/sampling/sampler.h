// The contract between the sampling algorithms and whatever evaluates the model.
//
// A sampler only sees a Denoiser: (x, sigma[B]) -> x0 prediction. Classifier-free guidance,
// conditioning, batching and the UNet live behind it (the caller builds it); inpainting masks
// are applied by run_sampler's wrapper (sample.h). The cfg_pp samplers also need the
// unconditional x0: they call the denoiser with want_uncond = true, and the denoiser must then
// evaluate the negative prompt even at cfg == 1 (ComfyUI's disable_cfg1_optimization) and
// return it in DenoiseResult::uncond_denoised.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "core/torch_compat.h"
#include "sampling/model_sampling.h"
#include "sampling/noise.h"

namespace sdflow::sampling {

struct DenoiseResult {
  at::Tensor denoised;         // guided x0 prediction, x's shape, float32
  at::Tensor uncond_denoised;  // only when want_uncond was set
};

// sigma: [B] float32 on x's device. May throw (e.g. cancellation).
using Denoiser = std::function<DenoiseResult(const at::Tensor& x, const at::Tensor& sigma, bool want_uncond)>;

// Wraps a plain x0 function (no uncond available) as a Denoiser, for tests and simple callers.
Denoiser make_denoiser(std::function<at::Tensor(const at::Tensor& x, const at::Tensor& sigma)> fn);

// What k-diffusion's callback receives, once per outer step. May throw to cancel sampling.
struct StepInfo {
  int64_t step = 0;         // i
  int64_t total_steps = 0;  // len(sigmas) - 1
  at::Tensor x;             // the sample before this step's update
  at::Tensor denoised;      // this step's x0 prediction
  at::Tensor sigma;         // sigmas[i] (0-dim); undefined for samplers without one
};
using StepCallback = std::function<void(const StepInfo&)>;

struct SamplerOptions {
  // extra_args["seed"]: seeds the ancestral / SDE noise. ComfyUI's KSampler always passes it.
  std::optional<uint64_t> seed;
  // Needed by lcm (noise_scaling), sa_solver (percent_to_sigma) and the tests of CONST-ness;
  // samplers that need it throw Error(kUsage) when it is missing.
  const ModelSampling* model_sampling = nullptr;
  // Replaces the sampler's own noise source (default_noise_sampler / Brownian tree) when set.
  NoiseSampler noise_sampler;
  // lms evaluates its coefficient integrand with NumPy scalars: float32 under NumPy >= 2
  // (default), float64 under NumPy 1.x's value-based promotion. Set to match a reference run.
  bool numpy_legacy_promotion = false;
};

using SamplerFn = at::Tensor (*)(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas,
                                 const SamplerOptions& options, const StepCallback& callback);

}  // namespace sdflow::sampling
