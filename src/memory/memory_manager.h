// The memory manager: owned by the Engine, handed by reference to whatever needs device
// memory. It turns MemoryOptions (ComfyUI's flags) into a VRAM state, owns the compute device
// and the residency policy, enforces --vram-budget through the allocator, and records per-node
// peaks. See docs/MEMORY.md.
#pragma once

#include <memory>
#include <string>

#include "device/device.h"
#include "memory/activity.h"
#include "memory/precision.h"
#include "memory/residency.h"
#include "sdflow/memory.h"

namespace sdflow {

// ComfyUI's VRAMState (model_management.py), same meaning.
enum class VramState { kDisabled, kNoVram, kLowVram, kNormalVram, kHighVram };
const char* to_string(VramState state);

// ComfyUI's state resolution (COMFY_COMPAT 1.6): flags first; --cpu or no GPU → disabled.
VramState resolve_vram_state(const MemoryOptions& options, bool have_gpu);

// Bytes ComfyUI keeps free besides the weights: --reserve-vram, else 400 MiB (Linux).
int64_t extra_reserved_vram(const MemoryOptions& options);

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
  // Where text encoders run (ComfyUI's text_encoder_device): the GPU with --gpu-only, or in
  // HIGH/NORMAL VRAM on an fp16-capable GPU; the CPU otherwise (--lowvram, --novram, old GPUs).
  at::Device text_encoder_device() const;
  // Where the VAE runs (ComfyUI's vae_device): the CPU with --cpu-vae, else the compute device.
  at::Device vae_device() const;
  // The policy for the compute device's models.
  Residency& residency() { return *residency_; }
  // The policy for models that run on `device`: residency() for the compute device, a
  // host-memory one (everything resident in RAM, nothing copied) for the CPU.
  Residency& residency_for(at::Device device);
  DeviceCaps caps() const { return {device_->is_cuda(), device_->compute_capability_major()}; }
  // Dtypes for each model part under the current flags and device (COMFY_COMPAT 1.7).
  DtypeChoice unet_dtype(at::ScalarType checkpoint_dtype) const {
    return choose_unet_dtype(options_, caps(), checkpoint_dtype);
  }
  DtypeChoice text_encoder_dtype() const { return choose_text_encoder_dtype(options_, caps()); }
  DtypeChoice vae_dtype() const { return choose_vae_dtype(options_, caps()); }

  // The enforced budget in bytes (0 = none): set from --vram-budget at construction.
  int64_t budget_bytes() const { return budget_bytes_; }

  // Per-node accounting: reset peaks and the activity record before a node, read them after.
  void begin_node();
  MemoryStats end_node();
  MemoryActivity take_activity() { return activity_.take(); }
  // Policies note what they load, evict and stream here (see activity.h).
  ActivityLog& activity() { return activity_; }
  // The device's figures; with --vram-budget, total and free are what the budget leaves.
  MemoryStats stats() const;
  // After each node: what the VRAM state says must leave the device (NO_VRAM: every model, as
  // ComfyUI keeps nothing of a model resident there).
  void after_node();

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

 private:
  void init();

  MemoryOptions options_;
  std::unique_ptr<ComputeDevice> device_;
  ActivityLog activity_;
  std::unique_ptr<Residency> residency_;
  std::unique_ptr<ComputeDevice> host_device_;  // for models placed on the CPU beside a GPU
  std::unique_ptr<Residency> host_residency_;
  int low_memory_level_ = 0;
  mutable bool low_memory_consulted_ = false;
  VramState state_ = VramState::kDisabled;
  int64_t budget_bytes_ = 0;
};

}  // namespace sdflow
