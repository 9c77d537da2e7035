// The SD1.x / SD2.x / SDXL UNet (ComfyUI's openaimodel.py UNetModel, legacy=False), driven by a
// UNetConfig and reading its weights block by block through the Residency (Note [Models own
// no device memory] in memory/weight_store.h). Block names: "time_embed", "label_emb",
// "input_blocks.N", "middle_block", "output_blocks.N", "out"; keys inside a block are the
// checkpoint keys relative to the UNet prefix.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "memory/residency.h"
#include "memory/weight_store.h"
#include "models/common/attention.h"
#include "models/unet/unet_config.h"
#include "models/unet/unet_layout.h"
#include "sdflow/memory.h"

namespace sdflow {

// What a block patch may look at (the part of ComfyUI's transformer_options patches read).
struct UNetPatchContext {
  int64_t output_block = 0;             // ComfyUI's block = ("output", output_block)
  std::vector<int64_t> original_shape;  // x's shape
};

// ComfyUI's output_block_patch: called for every output block with the hidden state h and its
// skip hsp before they are concatenated; returns the (h, hsp) to use (FreeU scales both).
using OutputBlockPatch = std::function<std::pair<at::Tensor, at::Tensor>(
    const at::Tensor& h, const at::Tensor& hsp, const UNetPatchContext& ctx)>;

struct UNetRunOptions {
  // kDefault is PyTorch SDPA, ComfyUI's choice on NVIDIA; fp32 attention scores (SD2.x,
  // --force-upcast-attention) are honoured only by the upcast-capable kSplit/kQuad, as in ComfyUI.
  // A model patch may replace the kernel (DiffusionModel::apply_model).
  AttentionBackend attention = AttentionBackend::kDefault;
  UpcastAttention upcast_attention = UpcastAttention::kDefault;
  ops::SageOptions sage;  // the INT8 kernel's settings, when attention is kSage
  // Bytes free on the compute device, read by the split / sub-quad kernels to size their chunks
  // (ops::AttentionOptions::free_memory); unset: the host's available memory on the CPU.
  std::function<int64_t()> free_memory;
  std::function<void()> check_cancel;                  // called before each block; throws to stop
  std::vector<OutputBlockPatch> output_block_patches;  // applied in order
  // Weight changes (LoRA) applied by the residency to the device copies it hands out; null: none.
  // Not owned: the caller keeps it alive for the forward (DiffusionModel holds it).
  const WeightPatch* weight_patch = nullptr;
};

// Thread-compatible: forward() is const and keeps no state between calls.
class UNetModel {
 public:
  // Throws Error(kModel) when the store lacks a block the config needs.
  UNetModel(UNetConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency);
  UNetModel(const UNetModel&) = delete;
  UNetModel& operator=(const UNetModel&) = delete;

  // x: [B, in_channels, h, w] at the compute dtype; timesteps: [B] (ComfyUI's t, a float index
  // 0..999); context: [B, N, context_dim]; y: [B, adm_in_channels] for SDXL, else undefined.
  // Returns [B, out_channels, h, w] at x's dtype.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& context,
                     const at::Tensor& y, const UNetRunOptions& options = {}) const;

  const UNetConfig& config() const { return config_; }
  const WeightStore& weights() const { return *weights_; }
  const UNetPlan& plan() const { return plan_; }
  // What block swap may stream, in execution order: input_blocks.*, middle_block,
  // output_blocks.* (time_embed, label_emb and out are small and always stay).
  std::vector<std::string> swappable_blocks() const;
  // The residency units (weight-store blocks) of those blocks, in execution order.
  std::vector<std::string> units_of(const std::vector<std::string>& blocks) const;

 private:
  UNetConfig config_;
  UNetPlan plan_;
  std::shared_ptr<const WeightStore> weights_;
  Residency& residency_;
};

// ComfyUI's timestep_embedding: freqs = exp(−ln(max_period)·k/half) in fp32, [cos, sin] (cos
// first), zero-padded for an odd dim. Returns fp32 [B, dim].
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period = 10000.0);

}  // namespace sdflow
