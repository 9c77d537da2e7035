// The layer operations every model family is built from. Weights come from a BlockLease
// (memory/weight_store.h) by checkpoint key, so model code is written against checkpoint names
// and never holds device memory itself. Inputs are cast to the lease's tensor dtype where
// ComfyUI's manual-cast layers do the same.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "memory/weight_store.h"
#include "models/common/attention.h"  // ops::attention and its kernels

namespace sdflow::ops {

// y = x Wᵀ + b with W = lease[prefix + ".weight"] (bias optional).
at::Tensor linear(const at::Tensor& x, const BlockLease& w, const std::string& prefix);
// Convolution; 2-D weights (a Linear stored for a 1×1 conv) are accepted.
at::Tensor conv2d(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t stride = 1,
                  int64_t padding = 0);
at::Tensor group_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t groups,
                      double eps);
at::Tensor layer_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, double eps);

}  // namespace sdflow::ops
