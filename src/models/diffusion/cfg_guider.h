// Classifier-free guidance: ComfyUI's CFGGuider.predict_noise → sampling_function →
// calc_cond_batch → cfg_function (comfy/samplers.py; COMFY_COMPAT 4.5.2, 8.4) behind the
// sampler's Denoiser interface, and guided_sample, which is ComfyUI's KSampler.sample with it.
//
// One evaluation: every positive and negative cond that is active at this sigma becomes a work
// item (its area crop of x, its weight `mult`, its model conds); compatible items run in one
// UNet call in ComfyUI's order (the last compatible item first, so one positive and one
// negative run as the batch [negative; positive]), as many as the memory estimate allows;
// predictions are averaged per side by weight, then uncond + (cond − uncond)·cfg.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion/conditioning.h"
#include "models/diffusion/diffusion_model.h"
#include "sampling/sample.h"
#include "sampling/sampler.h"

namespace sdflow {

struct GuiderOptions {
  double cfg = 8.0;
  // UNet settings (from the memory options) and the cancellation hook run before every block.
  UNetRunOptions unet;
  // Bytes free on the compute device, as ComfyUI's get_free_memory counts them. Empty: unlimited
  // (every compatible cond runs in one call).
  std::function<int64_t()> free_memory;
  // memory_required's xformers / flash-attention branch (PyTorch attention on an NVIDIA GPU).
  bool flash_attention_estimate = false;
};

// Thread-compatible; the call log is locked so tests may read it while sampling runs.
class CfgGuider {
 public:
  // `ms`: the model sampling on the sampling device (DiffusionModel::model_sampling().to(device)).
  CfgGuider(std::shared_ptr<const DiffusionModel> model, sampling::ModelSampling ms, PreparedConds conds,
            GuiderOptions options);

  // sampling_function. x [B, C, h, w] float32, sigma [B]. With want_uncond (cfg_pp samplers) the
  // negative side is evaluated even at cfg 1 and returned as uncond_denoised.
  sampling::DenoiseResult operator()(const at::Tensor& x, const at::Tensor& sigma, bool want_uncond) const;

  // calc_cond_batch: the weighted prediction of each side; a null side gives zeros.
  std::vector<at::Tensor> calc_cond_batch(const std::vector<const std::vector<PreparedCond>*>& sides,
                                          const at::Tensor& x, const at::Tensor& sigma) const;

  // What each UNet call so far ran, in order: the side (0 positive, 1 negative) of every chunk
  // of the batch. Tests check ComfyUI's grouping with it.
  struct Call {
    std::vector<size_t> sides;
    int64_t batch = 0;
  };
  std::vector<Call> calls() const;
  int64_t unet_calls() const { return unet_calls_.load(); }

 private:
  std::shared_ptr<const DiffusionModel> model_;
  sampling::ModelSampling ms_;
  PreparedConds conds_;
  GuiderOptions options_;
  mutable std::atomic<int64_t> unet_calls_{0};
  mutable std::mutex calls_mu_;
  mutable std::vector<Call> calls_;
};

// A Denoiser that calls the guider (kept alive by the closure).
sampling::Denoiser make_cfg_denoiser(std::shared_ptr<const CfgGuider> guider);

// ComfyUI's KSampler.sample with CFGGuider: sigmas from the scheduler and step range, the conds
// processed for this latent, then sampling. `sample.model_sampling` and `sample.denoiser` are
// filled here; the latent format comes from the model. Returns the LATENT samples (÷ scale) on
// `sample.device`, or the input latent unchanged when there is nothing to sample.
struct GuidedSampleRequest {
  std::shared_ptr<const DiffusionModel> model;
  std::vector<CondInput> positive;
  std::vector<CondInput> negative;
  sampling::KSamplerParams params;
  sampling::SampleRequest sample;  // sampler name, noise, latent, mask, seed, device, callback
  GuiderOptions guider;
  // Filled by guided_sample when set: the guider it used (tests read its call counts).
  std::shared_ptr<const CfgGuider>* guider_out = nullptr;
};
at::Tensor guided_sample(const GuidedSampleRequest& request);

}  // namespace sdflow
