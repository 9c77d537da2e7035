// The compute device behind the memory manager: memory figures, allocator control and
// synchronisation. CPU builds use the no-CUDA implementation, so they link and test the same
// code paths; the CUDA one exists only when built with SDFLOW_CUDA.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>

#include "device/copy_stream.h"
#include "sdflow/memory.h"

namespace sdflow {

class ComputeDevice {
 public:
  virtual ~ComputeDevice() = default;
  virtual at::Device torch_device() const = 0;
  virtual bool is_cuda() const = 0;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H200)"
  // True when weights must be copied to be computed with (a GPU, or a test's fake device):
  // the memory manager loads, evicts and streams only then. The CPU computes on host memory.
  virtual bool has_own_memory() const { return is_cuda(); }
  // CUDA compute capability major version (8 = Ampere, 9 = Hopper); 0 for the CPU.
  virtual int compute_capability_major() const { return 0; }
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak_stats() = 0;
  // Returns cached, unused blocks to the driver.
  virtual void empty_cache() = 0;
  virtual void synchronize() = 0;
  // Caps what this process's allocator may hold on the device; allocations beyond it fail as
  // out-of-memory. Returns false when the device cannot enforce a cap (CPU).
  virtual bool set_memory_limit(int64_t bytes) = 0;
  // Copies for streamed and loaded weights. own_stream = false (--disable-async-offload): every
  // copy runs on the compute stream.
  virtual std::unique_ptr<CopyStream> make_copy_stream(bool own_stream) = 0;
};

// Host memory as the OS reports it (bytes; 0 when unknown).
struct HostMemory {
  int64_t total = 0;
  int64_t available = 0;
  int64_t rss = 0;
  int64_t peak_rss = 0;  // since the last reset_peak_rss() (else the process's lifetime)
};
HostMemory host_memory();
// Starts a new peak-RSS window (Linux: VmHWM via /proc/self/clear_refs), so peak_rss reports
// the peak since this call. Where that is not allowed, peak_rss stays the process lifetime's.
void reset_peak_rss();

std::unique_ptr<ComputeDevice> make_cpu_device();
// True when this build has CUDA and a device is visible.
bool cuda_available();
int cuda_device_count();
// Throws Error(kUsage) when the build has no CUDA or the index is out of range.
std::unique_ptr<ComputeDevice> make_cuda_device(int index);

}  // namespace sdflow
