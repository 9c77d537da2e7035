// Registration of sdflow's built-in nodes (ComfyUI class names), one function per group.
#pragma once

#include "nodeapi/registry.h"

namespace sdflow::nodes {

void register_builtin_nodes(NodeRegistry& registry);

void register_image_nodes(NodeRegistry& registry);
void register_latent_nodes(NodeRegistry& registry);
void register_conditioning_nodes(NodeRegistry& registry);
void register_model_nodes(NodeRegistry& registry);  // schema-only: LoRA
void register_loader_nodes(NodeRegistry& registry);  // Checkpoint, VAE, UNET, CLIP, DualCLIP loaders
void register_patch_nodes(NodeRegistry& registry);   // FreeU, FreeU_V2
void register_text_nodes(NodeRegistry& registry);    // CLIPTextEncode (SDXL, refiner), CLIPSetLastLayer
void register_vae_nodes(NodeRegistry& registry);     // VAEDecode/Encode (tiled, inpaint)
void register_sampling_nodes(NodeRegistry& registry);  // KSampler, KSamplerAdvanced
void register_memory_nodes(NodeRegistry& registry);    // ModelBlockSwap
void register_attention_nodes(NodeRegistry& registry);  // PatchModelAttention, PathchSageAttentionKJ

// ComfyUI's KSampler.SAMPLERS and KSampler.SCHEDULERS, in ComfyUI's order.
const std::vector<std::string>& comfy_sampler_names();
const std::vector<std::string>& comfy_scheduler_names();

}  // namespace sdflow::nodes
