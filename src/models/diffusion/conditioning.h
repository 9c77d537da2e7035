// Conditioning as the sampler uses it: ComfyUI's process_conds (comfy/samplers.py) turns the
// CONDITIONING lists of a KSampler into per-cond work descriptions before the first step:
// areas and masks resolved to the latent size, start/end percents turned into sigmas, the
// model's extra conds encoded (SDXL `y`, inpainting concat), and every area cond given a
// same-area partner on the other side (create_cond_with_same_area_if_none). See COMFY_COMPAT
// 4.5.1 step 4.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <vector>

#include "models/diffusion/diffusion_model.h"

namespace sdflow {

// Latent cells in ComfyUI's order: (height, width, y, x).
using CondArea = std::array<int64_t, 4>;

// One CONDITIONING entry ([tensor, options] in ComfyUI) with the options the sampler reads.
// Absent options stay nullopt / undefined: presence matters (e.g. an area cond without a mask
// is feathered, a width set by CLIPTextEncodeSDXL overrides the latent size).
struct CondInput {
  at::Tensor cross_attn;                                 // [b, tokens, dim]
  std::optional<CondArea> area;                          // ConditioningSetArea
  std::optional<std::array<double, 4>> area_percentage;  // ("percentage", h, w, y, x) fractions
  std::optional<double> strength;
  at::Tensor mask;  // [H, W] or [B, H, W] at any resolution (ConditioningSetMask)
  std::optional<double> mask_strength;
  bool set_area_to_bounds = false;
  std::optional<double> start_percent, end_percent;
  at::Tensor pooled_output;  // SDXL
  std::optional<double> width, height, crop_w, crop_h, target_width, target_height, aesthetic_score;
};

// A cond after process_conds: what get_area_and_mult reads at every step.
struct PreparedCond {
  ModelConds model;
  std::optional<CondArea> area;
  double strength = 1.0;
  at::Tensor mask;  // [Bm, h, w] at the latent size, on the sampling device
  double mask_strength = 1.0;
  std::optional<double> timestep_start;  // sigma: skipped while sigma > this
  std::optional<double> timestep_end;    // sigma: skipped while sigma < this
};

struct PreparedConds {
  std::vector<PreparedCond> positive;
  std::vector<PreparedCond> negative;
};

// What process_conds sees of the sampling run.
struct CondContext {
  std::vector<int64_t> noise_shape;  // [B, C, h, w]
  at::Device device = at::kCPU;
  at::Tensor latent_image;  // process_in'ed latent on `device` (inpainting models' concat)
  at::Tensor denoise_mask;  // prepare_mask'ed noise mask on `device`, or undefined
};

// `ms` provides percent_to_sigma (the model's own tables). Throws Error(kRuntime) for conds the
// model cannot use (no cross-attention tensor, no pooled output on SDXL, bad masks).
PreparedConds process_conds(const DiffusionModel& model, const sampling::ModelSampling& ms,
                            const std::vector<CondInput>& positive, const std::vector<CondInput>& negative,
                            const CondContext& ctx);

}  // namespace sdflow
