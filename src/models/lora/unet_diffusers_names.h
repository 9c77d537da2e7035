// Diffusers names of an LDM-layout UNet's tensors, as ComfyUI's comfy/utils.py unet_to_diffusers
// computes them for a unet_config: LoRA files trained against the diffusers UNet name its layers
// this way (lora_unet_down_blocks_0_..., unet.down_blocks.0....). The map may name tensors a
// particular UNet lacks (ComfyUI's does too); callers check against the real weights.
#pragma once

#include <map>
#include <string>

#include "models/unet/unet_config.h"

namespace sdflow {

// diffusers key ("down_blocks.0.resnets.0.conv1.weight") → LDM key relative to the UNet prefix
// ("input_blocks.1.0.in_layers.2.weight").
std::map<std::string, std::string> unet_diffusers_names(const UNetConfig& config);

}  // namespace sdflow
