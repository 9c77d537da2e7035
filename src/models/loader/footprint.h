// What a model file's parts weigh on a device, read from shapes only (the safetensors header
// through a StateDict's zero-copy views: no tensor data is touched). For `sdflow plan`, which
// predicts memory without running anything. Bytes are at the dtypes the memory manager would
// choose (precision.h), so the same file weighs half as much with fp16 storage as with fp32.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "memory/precision.h"
#include "sdflow/memory.h"

namespace sdflow {

class StateDict;

struct ModelFootprint {
  std::string name;                   // "unet", "clip_l", "clip_g", "clip_h", "vae"
  at::ScalarType dtype = at::kFloat;  // storage dtype on the device
  int64_t bytes = 0;
  // The biggest residency block (what a streaming policy holds, twice when double buffered).
  int64_t largest_block_bytes = 0;
};

struct CheckpointFootprint {
  std::string family;  // "sd15", "sd2", "sdxl", "sdxl_refiner"
  double memory_usage_factor = 1.0;
  at::ScalarType unet_compute_dtype = at::kFloat;  // what memory_required's flash branch sizes by
  int64_t latent_channels = 4;
  std::optional<ModelFootprint> unet;
  std::vector<ModelFootprint> text_encoders;  // absent from files without text encoder weights
  std::optional<ModelFootprint> vae;
};

// A single-file checkpoint's parts. Throws like detect_checkpoint for files that are not one.
CheckpointFootprint checkpoint_footprint(const StateDict& checkpoint, const MemoryOptions& options,
                                         const DeviceCaps& caps);
// A VAELoader file (keys with or without "first_stage_model.").
ModelFootprint vae_footprint(const StateDict& vae_file, const MemoryOptions& options, const DeviceCaps& caps);

}  // namespace sdflow
