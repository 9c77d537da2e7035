// The CUDA device: figures and limits come from libtorch's caching allocator, so they count
// exactly what sdflow's tensors hold (and what a budget must cap).
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <ATen/Context.h>

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/torch_compat.h"
#include "device/device.h"

namespace sdflow {

std::unique_ptr<CopyStream> make_cuda_copy_stream(int index, bool own_stream);  // cuda_copy_stream.cpp

namespace {

namespace alloc = c10::cuda::CUDACachingAllocator;

// SDFLOW_CUDNN_TF32 / SDFLOW_CUBLAS_TF32 = 0|1 override libtorch's fp32 math modes. They exist
// to diagnose fp32 differences against ComfyUI (docs/PARITY.md), not as tuning knobs.
void apply_math_overrides() {
  auto flag = [](const char* name, bool& value) {
    const char* v = std::getenv(name);
    if (!v || !*v) return false;
    value = std::strcmp(v, "0") != 0;
    return true;
  };
  bool on = false;
  if (flag("SDFLOW_CUDNN_TF32", on)) at::globalContext().setAllowTF32CuDNN(on);
  if (flag("SDFLOW_CUBLAS_TF32", on)) at::globalContext().setAllowTF32CuBLAS(on);
}

// One line with the math modes that decide fp32 results, for parity reports.
void log_math_modes(const std::string& device) {
  auto& ctx = at::globalContext();
  log::info("{}: cuDNN TF32 {}, cuBLAS TF32 {}, cuDNN benchmark {}, deterministic {}; SDPA flash {}, "
            "mem-efficient {}, math {}",
            device, ctx.allowTF32CuDNN() ? "on" : "off", ctx.allowTF32CuBLAS() ? "on" : "off",
            ctx.benchmarkCuDNN() ? "on" : "off", ctx.deterministicCuDNN() ? "on" : "off",
            ctx.userEnabledFlashSDP() ? "on" : "off", ctx.userEnabledMemEfficientSDP() ? "on" : "off",
            ctx.userEnabledMathSDP() ? "on" : "off");
}

class CudaDevice final : public ComputeDevice {
 public:
  explicit CudaDevice(int index) : index_(static_cast<c10::DeviceIndex>(index)) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) {
      device_name_ = prop.name;
      cc_major_ = prop.major;
    }
    // Expandable segments let the caching allocator grow one mapping per stream instead of
    // keeping differently sized segments: streamed weights (one size per block, on the copy
    // stream) and activations (another per resolution) otherwise leave reserved memory far
    // above what is allocated — on SDXL under --novram 6.3 GiB reserved for 2.2 GiB used. The
    // allocator reads PYTORCH_CUDA_ALLOC_CONF once, at its first allocation (just below); a
    // value the user set wins.
#if SDFLOW_TORCH_AT_LEAST(2, 1)  // older allocators refuse the option
    setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True", /*overwrite=*/0);
#endif
    // libtorch initialises the caching allocator lazily; its statistics calls throw "Invalid
    // device argument" until the first allocation, so make one now.
    at::empty({1}, at::TensorOptions().device(torch_device()));
    apply_math_overrides();
    log_math_modes(name());
  }
  int compute_capability_major() const override { return cc_major_; }
  at::Device torch_device() const override { return at::Device(at::kCUDA, index_); }
  bool is_cuda() const override { return true; }
  std::string name() const override { return "cuda:" + std::to_string(index_) + " (" + device_name_ + ")"; }

  MemoryStats stats() const override {
    MemoryStats s;
    s.device = "cuda:" + std::to_string(index_);
    size_t free_b = 0, total_b = 0;
    c10::cuda::CUDAGuard guard(index_);
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
      s.free = static_cast<int64_t>(free_b);
      s.total = static_cast<int64_t>(total_b);
    }
    const auto stats = alloc::getDeviceStats(index_);
    // Index 0 is StatType::AGGREGATE; its namespace moved between libtorch versions.
    constexpr size_t agg = 0;
    s.allocated = stats.allocated_bytes[agg].current;
    s.peak_allocated = stats.allocated_bytes[agg].peak;
    s.reserved = stats.reserved_bytes[agg].current;
    s.peak_reserved = stats.reserved_bytes[agg].peak;
    // Free as ComfyUI counts it: the driver's free memory plus what the allocator holds idle.
    s.free += s.reserved - s.allocated;
    return s;
  }
  void reset_peak_stats() override { alloc::resetPeakStats(index_); }
  void empty_cache() override { alloc::emptyCache(); }
  void synchronize() override {
    c10::cuda::CUDAGuard guard(index_);
    cudaDeviceSynchronize();
  }
  bool set_memory_limit(int64_t bytes) override {
    size_t free_b = 0, total_b = 0;
    c10::cuda::CUDAGuard guard(index_);
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || total_b == 0) return false;
    double fraction = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_b));
    alloc::setMemoryFraction(fraction, index_);
    return true;
  }
  std::unique_ptr<CopyStream> make_copy_stream(bool own_stream) override {
    return make_cuda_copy_stream(index_, own_stream);
  }

 private:
  c10::DeviceIndex index_;
  std::string device_name_ = "unknown";
  int cc_major_ = 0;
};

}  // namespace

bool cuda_available() { return cuda_device_count() > 0; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

std::unique_ptr<ComputeDevice> make_cuda_device(int index) {
  const int n = cuda_device_count();
  if (index < 0 || index >= n)
    throw Error(ErrorKind::kUsage, "CUDA device " + std::to_string(index) + " does not exist (" +
                                       std::to_string(n) + " visible)");
  return std::make_unique<CudaDevice>(index);
}

}  // namespace sdflow
