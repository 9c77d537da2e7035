// Sigma schedules (ComfyUI SCHEDULER_HANDLERS) and the KSampler rules that turn steps, denoise
// and start/end steps into the sigma list a sampler runs on. See COMFY_COMPAT 4.2, 4.3, 4.6.
//
// Each scheduler repeats ComfyUI's arithmetic and dtypes: float32 torch ops where ComfyUI uses
// torch, doubles where it uses Python floats or numpy. Results are float32 CPU tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/torch_compat.h"
#include "sampling/model_sampling.h"

namespace sdflow::sampling {

// KSampler.SCHEDULERS, in ComfyUI's order.
const std::vector<std::string>& scheduler_names();
bool is_scheduler(std::string_view name);

// comfy.samplers.calculate_sigmas. Throws Error(kUsage) for an unknown scheduler.
at::Tensor calculate_sigmas(const ModelSampling& ms, std::string_view scheduler, int64_t steps);

// The individual schedules (n = steps).
at::Tensor simple_scheduler(const ModelSampling& ms, int64_t n);
at::Tensor ddim_scheduler(const ModelSampling& ms, int64_t n);
at::Tensor normal_scheduler(const ModelSampling& ms, int64_t n, bool sgm = false);
at::Tensor beta_scheduler(const ModelSampling& ms, int64_t n, double alpha = 0.6, double beta = 0.6);
at::Tensor linear_quadratic_scheduler(const ModelSampling& ms, int64_t n, double threshold_noise = 0.025);
at::Tensor karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho = 7.0);
at::Tensor exponential_sigmas(int64_t n, double sigma_min, double sigma_max);
at::Tensor kl_optimal_sigmas(int64_t n, double sigma_min, double sigma_max);

// dpm_2, dpm_2_ancestral, uni_pc, uni_pc_bh2: schedule steps + 1, then drop the penultimate.
bool discards_penultimate_sigma(std::string_view sampler_name);

// KSampler.calculate_sigmas + set_steps: the list for `steps` and `denoise` (denoise > 0.9999
// is a full schedule, <= 0 an empty tensor, else the tail of a longer schedule).
at::Tensor ksampler_sigmas(const ModelSampling& ms, std::string_view scheduler, std::string_view sampler_name,
                           int64_t steps, double denoise = 1.0);

// KSampler.sample's start/end step rules. `skip` is set when sampling must not run at all (the
// node returns its input latent unchanged); the returned tensor is then undefined.
struct StepRange {
  std::optional<int64_t> start_step;
  std::optional<int64_t> last_step;
  bool force_full_denoise = false;
};
at::Tensor apply_step_range(const at::Tensor& sigmas, const StepRange& range, bool* skip);

}  // namespace sdflow::sampling
