// Sampler names (ComfyUI KSampler.SAMPLERS, in order) and their implementations.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "sampling/sampler.h"

namespace sdflow::sampling {

struct SamplerInfo {
  std::string name;
  SamplerFn fn = nullptr;                  // nullptr: not implemented
  bool discard_penultimate_sigma = false;  // schedule steps + 1, drop the second-to-last sigma
  bool random_inpaint_noise = false;       // ddim: inpaint noise from a CPU seed + 1 draw
  bool needs_uncond = false;               // cfg_pp: the denoiser must return uncond_denoised
};

// KSampler.SAMPLERS: KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"].
const std::vector<std::string>& sampler_names();
// Every entry of sampler_names(), in the same order.
const std::vector<SamplerInfo>& sampler_infos();
// nullptr for names ComfyUI does not know.
const SamplerInfo* find_sampler_info(std::string_view name);
// The implementation, or nullptr for unknown or unimplemented names.
SamplerFn find_sampler(std::string_view name);

}  // namespace sdflow::sampling
