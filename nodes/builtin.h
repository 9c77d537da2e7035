// Registration of sdflow's built-in nodes (ComfyUI class names), one function per group.
#pragma once

#include "nodeapi/registry.h"

namespace sdflow::nodes {

void register_builtin_nodes(NodeRegistry& registry);

void register_image_nodes(NodeRegistry& registry);
void register_latent_nodes(NodeRegistry& registry);
void register_conditioning_nodes(NodeRegistry& registry);
void register_model_nodes(NodeRegistry& registry);  // loaders, text encode, VAE, patches
void register_sampling_nodes(NodeRegistry& registry);  // KSampler, KSamplerAdvanced

// ComfyUI's KSampler.SAMPLERS and KSampler.SCHEDULERS, in ComfyUI's order.
const std::vector<std::string>& comfy_sampler_names();
const std::vector<std::string>& comfy_scheduler_names();

}  // namespace sdflow::nodes
