// The one place where libtorch 1.13 (Debian, CPU) and 2.x (GPU machine) differ. Include only
// from torch-using targets.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/api/include/torch/version.h>

#include <exception>
#include <string>

#define SDFLOW_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// fp8 storage dtypes exist from torch 2.1. On older builds fp8 tensors stay raw bytes (uint8)
// and are upcast by software (see io/safetensors_torch.cpp).
#if SDFLOW_TORCH_AT_LEAST(2, 1)
#define SDFLOW_HAS_FP8 1
#else
#define SDFLOW_HAS_FP8 0
#endif

// at::_int_mm (int8 × int8 → int32 through cuBLASLt) exists from torch 2.1; CUDA only there.
#if SDFLOW_TORCH_AT_LEAST(2, 1)
#define SDFLOW_HAS_INT_MM 1
#else
#define SDFLOW_HAS_INT_MM 0
#endif

namespace sdflow::compat {

inline constexpr bool kHasFp8 = SDFLOW_HAS_FP8;
inline constexpr bool kHasIntMm = SDFLOW_HAS_INT_MM;

// Whether int_mm takes these operands: CUDA int8 [M, K] × [K, N] with M > 16 and K, N multiples
// of 8 (at::_int_mm's checks).
inline bool int_mm_supports(const at::Tensor& a, const at::Tensor& b) {
  return kHasIntMm && a.is_cuda() && a.dim() == 2 && b.dim() == 2 && a.size(0) > 16 && a.size(1) % 8 == 0 &&
         b.size(1) % 8 == 0 && a.size(1) == b.size(0);
}

// int32 [M, N] = a · b for int8 operands; call only where int_mm_supports() holds.
inline at::Tensor int_mm(const at::Tensor& a, const at::Tensor& b) {
#if SDFLOW_HAS_INT_MM
  return at::_int_mm(a, b);
#else
  (void)b;
  TORCH_CHECK(false, "int_mm needs libtorch >= 2.1");
  return a;
#endif
}

// A CUDA out-of-memory error as libtorch reports it. The caching allocator throws
// c10::OutOfMemoryError (1.13 and later, also what a --vram-budget cap produces); other paths
// still throw a plain c10::Error whose message says so: a failed cudaMalloc outside the caching
// allocator ("CUDA error: out of memory"), and cuBLAS/cuDNN failing to get their workspace.
// Host (CPU allocator) failures are not included: freeing device memory cannot help them.
inline bool is_cuda_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  if (!dynamic_cast<const c10::Error*>(&e)) return false;
  const std::string what = e.what();
  for (const char* needle : {"CUDA out of memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
                             "CUDNN_STATUS_ALLOC_FAILED", "HIP out of memory"})
    if (what.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace sdflow::compat
