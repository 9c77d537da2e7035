#include "sampling/registry.h"

#include "sampling/samplers/samplers.h"

namespace sdflow::sampling {
namespace {

SamplerInfo entry(const char* name, SamplerFn fn) {
  SamplerInfo info;
  info.name = name;
  info.fn = fn;
  const std::string n = name;
  info.discard_penultimate_sigma =
      n == "dpm_2" || n == "dpm_2_ancestral" || n == "uni_pc" || n == "uni_pc_bh2";
  info.random_inpaint_noise = n == "ddim";
  info.needs_uncond = n.size() > 7 && n.compare(n.size() - 7, 7, "_cfg_pp") == 0;
  return info;
}

std::vector<SamplerInfo> build() {
  return {
      entry("euler", &sample_euler),
      entry("euler_cfg_pp", &sample_euler_cfg_pp),
      entry("euler_ancestral", &sample_euler_ancestral),
      entry("euler_ancestral_cfg_pp", &sample_euler_ancestral_cfg_pp),
      entry("heun", &sample_heun),
      entry("heunpp2", &sample_heunpp2),
      entry("exp_heun_2_x0", &sample_exp_heun_2_x0),
      entry("exp_heun_2_x0_sde", &sample_exp_heun_2_x0_sde),
      entry("dpm_2", &sample_dpm_2),
      entry("dpm_2_ancestral", &sample_dpm_2_ancestral),
      entry("lms", &sample_lms),
      entry("dpm_fast", &sample_dpm_fast),
      entry("dpm_adaptive", &sample_dpm_adaptive),
      entry("dpmpp_2s_ancestral", &sample_dpmpp_2s_ancestral),
      entry("dpmpp_2s_ancestral_cfg_pp", &sample_dpmpp_2s_ancestral_cfg_pp),
      entry("dpmpp_sde", &sample_dpmpp_sde),
      entry("dpmpp_sde_gpu", &sample_dpmpp_sde_gpu),
      entry("dpmpp_2m", &sample_dpmpp_2m),
      entry("dpmpp_2m_cfg_pp", &sample_dpmpp_2m_cfg_pp),
      entry("dpmpp_2m_sde", &sample_dpmpp_2m_sde),
      entry("dpmpp_2m_sde_gpu", &sample_dpmpp_2m_sde_gpu),
      entry("dpmpp_2m_sde_heun", &sample_dpmpp_2m_sde_heun),
      entry("dpmpp_2m_sde_heun_gpu", &sample_dpmpp_2m_sde_heun_gpu),
      entry("dpmpp_3m_sde", &sample_dpmpp_3m_sde),
      entry("dpmpp_3m_sde_gpu", &sample_dpmpp_3m_sde_gpu),
      entry("ddpm", &sample_ddpm),
      entry("lcm", &sample_lcm),
      entry("ipndm", &sample_ipndm),
      entry("ipndm_v", &sample_ipndm_v),
      entry("deis", &sample_deis),
      entry("res_multistep", &sample_res_multistep),
      entry("res_multistep_cfg_pp", &sample_res_multistep_cfg_pp),
      entry("res_multistep_ancestral", &sample_res_multistep_ancestral),
      entry("res_multistep_ancestral_cfg_pp", &sample_res_multistep_ancestral_cfg_pp),
      entry("gradient_estimation", &sample_gradient_estimation),
      entry("gradient_estimation_cfg_pp", &sample_gradient_estimation_cfg_pp),
      entry("er_sde", &sample_er_sde),
      entry("seeds_2", &sample_seeds_2),
      entry("seeds_3", &sample_seeds_3),
      entry("sa_solver", &sample_sa_solver),
      entry("sa_solver_pece", &sample_sa_solver_pece),
      entry("ddim", &sample_euler),  // ComfyUI: euler with random inpaint noise
      entry("uni_pc", &sample_uni_pc),
      entry("uni_pc_bh2", &sample_uni_pc_bh2),
  };
}

}  // namespace

const std::vector<SamplerInfo>& sampler_infos() {
  static const std::vector<SamplerInfo> infos = build();
  return infos;
}

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& info : sampler_infos()) out.push_back(info.name);
    return out;
  }();
  return names;
}

const SamplerInfo* find_sampler_info(std::string_view name) {
  for (const auto& info : sampler_infos()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

SamplerFn find_sampler(std::string_view name) {
  const SamplerInfo* info = find_sampler_info(name);
  return info == nullptr ? nullptr : info->fn;
}

}  // namespace sdflow::sampling
