// `sdflow plan`: a workflow's VRAM needs per node and per VRAM mode, predicted from model file
// headers, shapes propagated through the graph, and ComfyUI's activation estimates — nothing
// runs and no tensor data is read. See include/sdflow/plan.h and docs/MEMORY.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "io/model_folders.h"
#include "memory/precision.h"
#include "nodeapi/registry.h"
#include "nodes/services.h"
#include "sdflow/memory.h"
#include "sdflow/plan.h"
#include "workflow/workflow.h"

namespace sdflow {

struct PlanEnvironment {
  const NodeRegistry* registry = nullptr;
  const ModelFolders* folders = nullptr;
  const nodes::EnginePaths* paths = nullptr;  // LoadImage's folders (image sizes)
  MemoryOptions options;
  DeviceCaps caps;  // the GPU planned for
  std::string device_name;
  int64_t total_vram = 0;  // 0 when unknown
};

// `workflow`: validated and normalized; `order`: the execution plan's order. Throws
// Error(kIo/kFormat/kModel) naming the node when a model file cannot be read.
MemoryPlan plan_memory(const Workflow& workflow, const std::vector<std::string>& order,
                       const PlanEnvironment& env, const PlanOptions& options);

// The activation estimates the plan uses (exposed for tests), in bytes.
// VAE.decode_tiled_ with tiles (tile_x, tile_y) in latent cells: the largest of its three passes.
int64_t vae_tiled_decode_memory(int64_t h, int64_t w, int64_t tile_x, int64_t tile_y, at::ScalarType dtype);
// VAE.encode_tiled_ with tiles in pixels.
int64_t vae_tiled_encode_memory(int64_t h, int64_t w, int64_t tile_x, int64_t tile_y, at::ScalarType dtype);

}  // namespace sdflow
