// sdflow/memory.h — memory, precision and attention settings, with ComfyUI's flag names.
//
// These are plain values: the CLI fills them from ComfyUI-spelled flags, an embedding program
// sets the fields it cares about. The Engine's memory manager turns them into a policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdflow {

// --gpu-only, --highvram, --normalvram, --lowvram, --novram, --cpu (one at most).
enum class VramMode { kAuto, kGpuOnly, kHighVram, kNormalVram, kLowVram, kNoVram, kCpu };

// Storage dtype requested for a model part; kDefault lets the manager pick like ComfyUI.
enum class Precision { kDefault, kFp32, kFp64, kFp16, kBf16, kFp8E4M3, kFp8E5M2, kFp8E8M0 };

// --use-*-attention (one at most); kDefault = SDPA on CUDA, like ComfyUI with torch >= 2.
enum class AttentionBackend { kDefault, kPytorch, kSplit, kQuad, kSage, kFlash };

enum class UpcastAttention { kDefault, kForce, kNever };  // --force-upcast-attention / --dont-upcast-attention

enum class CachePolicy { kClassic, kLru, kRamPressure, kNone };  // --cache-classic/--cache-lru/--cache-ram/--cache-none

struct MemoryOptions {
  VramMode vram = VramMode::kAuto;
  std::optional<double> reserve_vram_gb;   // --reserve-vram GB
  std::optional<double> vram_budget_gb;    // --vram-budget GB (sdflow: enforced through the allocator)
  std::optional<int> cuda_device;          // --cuda-device N
  std::optional<int> default_device;       // --default-device N
  bool disable_smart_memory = false;       // --disable-smart-memory
  std::optional<int> async_offload;        // --async-offload [N] (streams)
  bool disable_async_offload = false;      // --disable-async-offload
  bool force_non_blocking = false;         // --force-non-blocking
  bool disable_pinned_memory = false;      // --disable-pinned-memory
  bool cuda_malloc = false;                // --cuda-malloc
  bool disable_cuda_malloc = false;        // --disable-cuda-malloc
  bool supports_fp8_compute = false;       // --supports-fp8-compute
  bool force_channels_last = false;        // --force-channels-last
  bool disable_mmap = false;               // --disable-mmap
  bool mmap_torch_files = false;           // --mmap-torch-files

  // Precision.
  bool force_fp32 = false;                 // --force-fp32
  bool force_fp16 = false;                 // --force-fp16
  Precision unet = Precision::kDefault;    // --fp32-unet --fp64-unet --bf16-unet --fp16-unet --fp8_*-unet
  Precision vae = Precision::kDefault;     // --fp16-vae --fp32-vae --bf16-vae
  Precision text_encoder = Precision::kDefault;  // --fp8_*-text-enc --fp16/fp32/bf16-text-enc
  bool cpu_vae = false;                    // --cpu-vae

  // Attention.
  AttentionBackend attention = AttentionBackend::kDefault;
  UpcastAttention upcast_attention = UpcastAttention::kDefault;
  bool disable_xformers = false;           // --disable-xformers (accepted; sdflow has no xformers)

  // Execution.
  CachePolicy cache = CachePolicy::kClassic;
  int cache_lru_size = 0;                  // --cache-lru N
  double cache_ram_gb = 0;                 // --cache-ram [GB]
  std::vector<std::string> fast;           // --fast [features]
  bool deterministic = false;              // --deterministic
};

// Per-device figures the memory manager reports (bytes).
struct MemoryStats {
  std::string device;          // "cpu", "cuda:0"
  int64_t total = 0;
  int64_t free = 0;
  int64_t allocated = 0;       // live tensors of this process
  int64_t reserved = 0;        // held by the caching allocator
  int64_t peak_allocated = 0;  // since the last reset
  int64_t peak_reserved = 0;
};

const char* to_string(VramMode mode);
const char* to_string(Precision precision);
const char* to_string(AttentionBackend backend);

}  // namespace sdflow
