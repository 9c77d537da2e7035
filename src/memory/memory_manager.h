// The memory manager: owned by the Engine, handed by reference to whatever needs device
// memory. It turns MemoryOptions (ComfyUI's flags) into a VRAM state, owns the compute device
// and the residency policy, enforces --vram-budget through the allocator, and records per-node
// peaks. See docs/MEMORY.md.
#pragma once

#include <memory>
#include <string>

#include "device/device.h"
#include "memory/model_residency.h"
#include "memory/precision.h"
#include "memory/residency.h"
#include "memory/vram_state.h"
#include "sdflow/memory.h"

namespace sdflow {

// ComfyUI's state resolution (COMFY_COMPAT 1.6): flags first; --cpu or no GPU → disabled.
VramState resolve_vram_state(const MemoryOptions& options, bool have_gpu);

// ComfyUI's text_encoder_device(): the GPU under --gpu-only, or under high/normal VRAM when
// fp16 is usable there (should_use_fp16: not with --force-fp32 unless --force-fp16); else the
// CPU. This decides fp32 parity too: ComfyUI's --force-fp32 encodes prompts on the CPU.
bool text_encoder_on_gpu(const MemoryOptions& options, VramState state, const DeviceCaps& caps);

// Bytes ComfyUI keeps free besides the weights: --reserve-vram, else 400 MiB (Linux).
int64_t extra_reserved_vram(const MemoryOptions& options);

struct HostActivity;  // host_residency()'s loads and evictions (memory_manager.cpp)

class MemoryManager {
 public:
  // Picks the compute device from the options (--cpu, --cuda-device) and what the build has.
  explicit MemoryManager(const MemoryOptions& options);
  // For tests and embedders that bring their own device.
  MemoryManager(const MemoryOptions& options, std::unique_ptr<ComputeDevice> device);
  ~MemoryManager();
  MemoryManager(const MemoryManager&) = delete;
  MemoryManager& operator=(const MemoryManager&) = delete;

  const MemoryOptions& options() const { return options_; }
  VramState vram_state() const { return state_; }
  ComputeDevice& device() { return *device_; }
  const ComputeDevice& device() const { return *device_; }
  at::Device compute_device() const { return device_->torch_device(); }
  // Where values between nodes live (CPU unless --gpu-only, like ComfyUI's intermediate_device).
  at::Device intermediate_device() const;
  // Where the VAE runs (ComfyUI's vae_device): the CPU with --cpu-vae, else the compute device.
  at::Device vae_device() const;
  // The policy for the compute device's models.
  Residency& residency() { return *residency_; }
  ModelResidency& model_residency() { return *residency_; }
  // The policy for models that run on `device`: residency() for the compute device,
  // host_residency() (everything resident in RAM, nothing copied) for the CPU.
  Residency& residency_for(at::Device device);
  DeviceCaps caps() const { return {device_->is_cuda(), device_->compute_capability_major()}; }
  // Dtypes for each model part under the current flags and device (COMFY_COMPAT 1.7).
  DtypeChoice unet_dtype(at::ScalarType checkpoint_dtype) const {
    return choose_unet_dtype(options_, caps(), checkpoint_dtype);
  }
  DtypeChoice text_encoder_dtype() const { return choose_text_encoder_dtype(options_, caps()); }
  // Where text encoders run (text_encoder_on_gpu above: the CPU under --lowvram, --novram,
  // --force-fp32 and on pre-Volta GPUs), and the residency that puts their weights there.
  at::Device text_encoder_device() const;
  Residency& text_encoder_residency() { return residency_for(text_encoder_device()); }
  // Called for each text encoder store built on text_encoder_residency(): under the default
  // (normal VRAM) policy it leaves the device when another model loads, so sampling and
  // decoding never carry it (1.6 GB for SDXL's two); --highvram/--gpu-only keep it.
  void adopt_text_encoder(const WeightStore& store);
  // An everything-resident policy on the host, for models placed on the CPU while the compute
  // device is a GPU (text encoders by ComfyUI's rule above).
  Residency& host_residency();
  DtypeChoice vae_dtype() const { return choose_vae_dtype(options_, caps()); }

  // The enforced budget in bytes (0 = none): set from --vram-budget at construction, on a device
  // with memory of its own (none on the CPU).
  int64_t budget_bytes() const { return budget_bytes_; }

  // Per-node accounting: reset peaks and the activity record before a node, read them after.
  void begin_node();
  MemoryStats end_node();
  // The device's figures; with --vram-budget, total and free are what the budget leaves.
  MemoryStats stats() const;
  // Drops every model from the device and returns cached blocks (OOM ladder's first rungs,
  // --disable-smart-memory after a run). At a node boundary every model is idle, so this is
  // also "evict idle models".
  void unload_all();

  // Low-memory mode, the OOM ladder's last rungs (Note [OOM ladder] in exec/recovery.h).
  // While the level is above 0, code that has a cheaper path takes it: VAE decode/encode tile
  // at once (level 2: smaller tiles); a streaming-capable residency streams every block.
  // Reading the level records that the running code has such a path, so the ladder can tell
  // whether raising it could help (low_memory_consulted()).
  int low_memory_level() const;
  void set_low_memory_level(int level);
  bool low_memory_consulted() const { return low_memory_consulted_; }
  void reset_low_memory_consulted() { low_memory_consulted_ = false; }

  // --- Models on the device (model_residency.h) -------------------------------------------
  // ComfyUI's load_models_gpu for one model: unloads others (LRU) to make room, then keeps the
  // largest blocks that fit resident and streams the rest. Sampling calls it with the
  // activation estimate; a model first used without it is loaded with no estimate.
  // With low_memory_level() > 0 every block of the model streams (a --novram-like plan).
  void load_model(const ModelLoad& request);
  // Streams `blocks` of `store` from now on, whatever the room (block swap from outside a
  // MODEL value; the store is re-planned with its latest figures). Empty: none forced.
  void set_streamed_blocks(const WeightStore& store, std::vector<std::string> blocks);
  // ComfyUI's free_memory: unloads least recently used models until more than `bytes` are
  // free (every model but `keep` with --disable-smart-memory).
  void free_memory(int64_t bytes, const WeightStore* keep = nullptr) { residency_->free_memory(bytes, keep); }
  // Unloads every model not in `keep` (models idle in this node).
  void unload_idle_models(const std::vector<const WeightStore*>& keep = {}) { residency_->unload_except(keep); }
  // Free device memory as ComfyUI counts it, capped by --vram-budget.
  int64_t free_vram() const { return residency_->free_vram(); }
  std::optional<BlockPlan> plan_of(const WeightStore& store) const { return residency_->plan(store); }
  std::vector<LoadedModelInfo> loaded_models() const { return residency_->loaded_models(); }
  // What moved host→device and which models came and went since the last call (begin_node
  // clears it; --report reads it after each node). Models loaded into host_residency() are
  // listed too (they copy nothing to the device).
  MemoryActivity take_activity();

 private:
  void init();

  MemoryOptions options_;
  std::unique_ptr<ComputeDevice> device_;
  std::unique_ptr<ModelResidency> residency_;
  std::unique_ptr<ComputeDevice> host_device_;  // for models placed on the CPU beside a GPU
  std::unique_ptr<Residency> host_residency_;
  std::shared_ptr<HostActivity> host_activity_;
  int low_memory_level_ = 0;
  mutable bool low_memory_consulted_ = false;
  VramState state_ = VramState::kDisabled;
  int64_t budget_bytes_ = 0;
};

}  // namespace sdflow
