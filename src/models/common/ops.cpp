#include "models/common/ops.h"

namespace sdflow::ops {

namespace {
const at::Tensor* optional_tensor(const BlockLease& w, const std::string& key) {
  return w.has(key) ? &w.at(key) : nullptr;
}

// 8-bit float weights stay 8-bit on the device (WeightStore::device_dtype) and come up to the
// input's dtype for the one op that reads them; other weights set the op's dtype.
bool stored_8bit(const at::Tensor& t) { return at::isFloatingType(t.scalar_type()) && t.element_size() == 1; }

// The weight (and bias) as the op reads them, and the input in that dtype.
struct Operands {
  at::Tensor x, weight, bias;
};

Operands operands(const at::Tensor& x, const at::Tensor& weight, const at::Tensor* bias) {
  Operands o;
  if (stored_8bit(weight)) {
    o.x = x;
    o.weight = weight.to(x.scalar_type());
    if (bias) o.bias = stored_8bit(*bias) ? bias->to(x.scalar_type()) : *bias;
  } else {
    o.x = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
    o.weight = weight;
    if (bias) o.bias = *bias;
  }
  return o;
}
}  // namespace

at::Tensor linear(const at::Tensor& x, const BlockLease& w, const std::string& prefix) {
  Operands o = operands(x, w.at(prefix + ".weight"), optional_tensor(w, prefix + ".bias"));
  at::Tensor W = o.weight.dim() == 4 ? o.weight.flatten(1) : o.weight;  // 1×1 conv stored for a Linear
  return o.bias.defined() ? at::linear(o.x, W, o.bias) : at::linear(o.x, W);
}

at::Tensor conv2d(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t stride,
                  int64_t padding) {
  Operands o = operands(x, w.at(prefix + ".weight"), optional_tensor(w, prefix + ".bias"));
  at::Tensor W = o.weight.dim() == 2 ? o.weight.unsqueeze(-1).unsqueeze(-1) : o.weight;
  return at::conv2d(o.x, W, o.bias, {stride, stride}, {padding, padding});
}

at::Tensor group_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t groups,
                      double eps) {
  Operands o = operands(x, w.at(prefix + ".weight"), optional_tensor(w, prefix + ".bias"));
  return at::group_norm(o.x, groups, o.weight, o.bias, eps);
}

at::Tensor layer_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, double eps) {
  Operands o = operands(x, w.at(prefix + ".weight"), optional_tensor(w, prefix + ".bias"));
  return at::layer_norm(o.x, {o.weight.size(0)}, o.weight, o.bias, eps);
}

}  // namespace sdflow::ops
