// sdflow/plan.h — what a workflow will need in VRAM, predicted without running it
// (`sdflow plan`). Model weights come from the files' headers at the dtypes sdflow would pick;
// activations from ComfyUI's own estimates (BaseModel.memory_required for the UNet,
// VAE.memory_used_decode/encode for the VAE). These are ComfyUI's batching heuristics, so they
// err on the generous side; measured peaks are in `sdflow run --report`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdflow {

struct PlanOptions {
  // Budget to check against in GiB; 0: --vram-budget when given, else the GPU's total VRAM
  // less --reserve-vram (no check on a machine without a GPU).
  double budget_gb = 0;
  // Without a GPU (and without --cpu) the plan is made for a CUDA GPU of this compute
  // capability: 8 = Ampere or newer (fp16 UNet, bf16 VAE, fp16 text encoders).
  int assume_compute_capability = 8;
};

struct PlannedModel {
  std::string id;     // "unet@4": part and loader node id
  std::string file;   // model file name as the workflow gives it
  std::string dtype;  // storage dtype on the device, libtorch's name ("Half", "BFloat16", ...)
  int64_t bytes = 0;
  int64_t largest_block_bytes = 0;
  bool text_encoder = false;
};

struct PlannedNode {
  std::string node_id;
  std::string class_type;
  std::vector<std::string> models;     // PlannedModel ids of the models this node runs
  std::string shape;                   // the latent/image it works on, e.g. "latent [1, 4, 64, 64]"
  int64_t weight_bytes = 0;            // those models fully loaded
  int64_t activation_bytes = 0;        // ComfyUI's estimate at the full batch (UNet: cond batch of 2B)
  int64_t min_activation_bytes = 0;    // what it falls back to (UNet: batch B; VAE: one image)
  int64_t tiled_activation_bytes = 0;  // VAE nodes: with ComfyUI's fallback tiles; 0 otherwise
  bool vae = false;
  std::string note;  // "shape unknown", "model unknown", ...
};

// One VRAM mode, as the flags select it.
struct PlannedMode {
  std::string flags;       // "--gpu-only", "--normalvram", "--lowvram", "--novram"
  int64_t need_bytes = 0;  // the largest per-node need (weights held + smallest activations)
  std::string need_node;   // where: "KSampler #3"
  bool fits = false;       // need ≤ budget (false when there is no budget)
  // VAE nodes that fit only when tiled (and so would run the tiled fallback), "VAEDecode #8".
  std::vector<std::string> needs_tiling;
  std::vector<int64_t> node_need_bytes;  // per PlannedNode, same order
};

struct MemoryPlan {
  std::string device;         // "cuda:0 (NVIDIA H200)" or "assumed CUDA GPU (compute capability 8)"
  int64_t total_vram = 0;     // 0 when unknown
  int64_t budget_bytes = 0;   // 0: nothing to check against
  std::string budget_source;  // "--vram-budget", "total VRAM less --reserve-vram", ""
  std::vector<PlannedModel> models;
  std::vector<PlannedNode> nodes;   // in execution order
  std::vector<PlannedMode> modes;   // --gpu-only, --normalvram, --lowvram, --novram
  std::vector<std::string> advice;  // one sentence each: which flags fit, which nodes need tiling
};

}  // namespace sdflow
