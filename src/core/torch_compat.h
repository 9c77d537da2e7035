// The one place where libtorch 1.13 (Debian, CPU) and 2.x (GPU machine) differ. Include only
// from torch-using targets.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/api/include/torch/version.h>

#define SDFLOW_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// fp8 storage dtypes exist from torch 2.1. On older builds fp8 tensors stay raw bytes (uint8)
// and are upcast by software (see io/safetensors_torch.cpp).
#if SDFLOW_TORCH_AT_LEAST(2, 1)
#define SDFLOW_HAS_FP8 1
#else
#define SDFLOW_HAS_FP8 0
#endif

namespace sdflow::compat {

inline constexpr bool kHasFp8 = SDFLOW_HAS_FP8;

}  // namespace sdflow::compat
