// Every sampling algorithm, one function per ComfyUI sampler name (k-diffusion's sample_<name>,
// plus uni_pc). All share SamplerFn's signature: they take the noised start x (already scaled
// by noise_scaling) and the sigma list on x's device, and return the final sample.
#pragma once

#include "sampling/sampler.h"

namespace sdflow::sampling {

#define SDFLOW_DECLARE_SAMPLER(name)                                                      \
  at::Tensor sample_##name(const Denoiser& model, at::Tensor x, const at::Tensor& sigmas, \
                           const SamplerOptions& options, const StepCallback& callback)

// euler.cpp
SDFLOW_DECLARE_SAMPLER(euler);
SDFLOW_DECLARE_SAMPLER(euler_ancestral);
SDFLOW_DECLARE_SAMPLER(heun);
SDFLOW_DECLARE_SAMPLER(heunpp2);
SDFLOW_DECLARE_SAMPLER(dpm_2);
SDFLOW_DECLARE_SAMPLER(dpm_2_ancestral);
// lms.cpp
SDFLOW_DECLARE_SAMPLER(lms);
// dpm_solver.cpp
SDFLOW_DECLARE_SAMPLER(dpm_fast);
SDFLOW_DECLARE_SAMPLER(dpm_adaptive);
// dpmpp.cpp
SDFLOW_DECLARE_SAMPLER(dpmpp_2s_ancestral);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m);
// dpmpp_sde.cpp
SDFLOW_DECLARE_SAMPLER(dpmpp_sde);
SDFLOW_DECLARE_SAMPLER(dpmpp_sde_gpu);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m_sde);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m_sde_gpu);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m_sde_heun);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m_sde_heun_gpu);
SDFLOW_DECLARE_SAMPLER(dpmpp_3m_sde);
SDFLOW_DECLARE_SAMPLER(dpmpp_3m_sde_gpu);
// cfg_pp.cpp
SDFLOW_DECLARE_SAMPLER(euler_cfg_pp);
SDFLOW_DECLARE_SAMPLER(euler_ancestral_cfg_pp);
SDFLOW_DECLARE_SAMPLER(dpmpp_2s_ancestral_cfg_pp);
SDFLOW_DECLARE_SAMPLER(dpmpp_2m_cfg_pp);
// step_samplers.cpp
SDFLOW_DECLARE_SAMPLER(ddpm);
SDFLOW_DECLARE_SAMPLER(lcm);
// multistep.cpp
SDFLOW_DECLARE_SAMPLER(ipndm);
SDFLOW_DECLARE_SAMPLER(ipndm_v);
SDFLOW_DECLARE_SAMPLER(deis);
// res_multistep.cpp
SDFLOW_DECLARE_SAMPLER(res_multistep);
SDFLOW_DECLARE_SAMPLER(res_multistep_cfg_pp);
SDFLOW_DECLARE_SAMPLER(res_multistep_ancestral);
SDFLOW_DECLARE_SAMPLER(res_multistep_ancestral_cfg_pp);
SDFLOW_DECLARE_SAMPLER(gradient_estimation);
SDFLOW_DECLARE_SAMPLER(gradient_estimation_cfg_pp);
// er_sde.cpp
SDFLOW_DECLARE_SAMPLER(er_sde);
// seeds.cpp
SDFLOW_DECLARE_SAMPLER(seeds_2);
SDFLOW_DECLARE_SAMPLER(seeds_3);
SDFLOW_DECLARE_SAMPLER(exp_heun_2_x0);
SDFLOW_DECLARE_SAMPLER(exp_heun_2_x0_sde);
// sa_solver.cpp
SDFLOW_DECLARE_SAMPLER(sa_solver);
SDFLOW_DECLARE_SAMPLER(sa_solver_pece);
// uni_pc.cpp
SDFLOW_DECLARE_SAMPLER(uni_pc);
SDFLOW_DECLARE_SAMPLER(uni_pc_bh2);

#undef SDFLOW_DECLARE_SAMPLER

}  // namespace sdflow::sampling
