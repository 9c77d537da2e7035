// The memory manager: owned by the Engine, handed by reference to whatever needs device
// memory. It turns MemoryOptions (ComfyUI's flags) into a VRAM state, owns the compute device
// and the residency policy, enforces --vram-budget through the allocator, and records per-node
// peaks. See docs/MEMORY.md.
#pragma once

#include <memory>
#include <string>

#include "device/device.h"
#include "memory/precision.h"
#include "memory/residency.h"
#include "sdflow/memory.h"

namespace sdflow {

// ComfyUI's VRAMState (model_management.py), same meaning.
enum class VramState { kDisabled, kNoVram, kLowVram, kNormalVram, kHighVram };
const char* to_string(VramState state);

// ComfyUI's state resolution (COMFY_COMPAT 1.6): flags first; --cpu or no GPU → disabled.
VramState resolve_vram_state(const MemoryOptions& options, bool have_gpu);

// ComfyUI's text_encoder_device(): the GPU under --gpu-only, or under high/normal VRAM when
// fp16 is usable there (should_use_fp16: not with --force-fp32 unless --force-fp16); else the
// CPU. This decides fp32 parity too: ComfyUI's --force-fp32 encodes prompts on the CPU.
bool text_encoder_on_gpu(const MemoryOptions& options, VramState state, const DeviceCaps& caps);

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
  Residency& residency() { return *residency_; }
  DeviceCaps caps() const { return {device_->is_cuda(), device_->compute_capability_major()}; }
  // Dtypes for each model part under the current flags and device (COMFY_COMPAT 1.7).
  DtypeChoice unet_dtype(at::ScalarType checkpoint_dtype) const {
    return choose_unet_dtype(options_, caps(), checkpoint_dtype);
  }
  DtypeChoice text_encoder_dtype() const { return choose_text_encoder_dtype(options_, caps()); }
  // Where text encoders run, and the residency that puts their weights there.
  at::Device text_encoder_device() const;
  Residency& text_encoder_residency();
  // An everything-resident policy on the host, for models placed on the CPU while the compute
  // device is a GPU (text encoders by ComfyUI's rule above).
  Residency& host_residency();
  DtypeChoice vae_dtype() const { return choose_vae_dtype(options_, caps()); }

  // The enforced budget in bytes (0 = none): set from --vram-budget at construction.
  int64_t budget_bytes() const { return budget_bytes_; }

  // Per-node accounting: reset peaks before a node, read them after.
  void begin_node();
  MemoryStats end_node();
  MemoryStats stats() const { return device_->stats(); }

  // Drops every model from the device and returns cached blocks (OOM ladder's first rungs,
  // --disable-smart-memory after a run).
  void unload_all();

 private:
  void init();

  MemoryOptions options_;
  std::unique_ptr<ComputeDevice> device_;
  std::unique_ptr<Residency> residency_;
  std::unique_ptr<ComputeDevice> host_device_;
  std::unique_ptr<Residency> host_residency_;
  VramState state_ = VramState::kDisabled;
  int64_t budget_bytes_ = 0;
};

}  // namespace sdflow
