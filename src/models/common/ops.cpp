#include "models/common/ops.h"

namespace sdflow::ops {

namespace {
const at::Tensor* optional_tensor(const BlockLease& w, const std::string& key) {
  return w.has(key) ? &w.at(key) : nullptr;
}
}  // namespace

at::Tensor linear(const at::Tensor& x, const BlockLease& w, const std::string& prefix) {
  const at::Tensor& weight = w.at(prefix + ".weight");
  const at::Tensor* bias = optional_tensor(w, prefix + ".bias");
  at::Tensor xin = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  at::Tensor W = weight.dim() == 4 ? weight.flatten(1) : weight;  // 1×1 conv stored for a Linear
  return bias ? at::linear(xin, W, *bias) : at::linear(xin, W);
}

at::Tensor conv2d(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t stride,
                  int64_t padding) {
  const at::Tensor& weight = w.at(prefix + ".weight");
  const at::Tensor* bias = optional_tensor(w, prefix + ".bias");
  at::Tensor xin = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  at::Tensor W = weight.dim() == 2 ? weight.unsqueeze(-1).unsqueeze(-1) : weight;
  return at::conv2d(xin, W, bias ? *bias : at::Tensor(), {stride, stride}, {padding, padding});
}

at::Tensor group_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, int64_t groups,
                      double eps) {
  const at::Tensor& weight = w.at(prefix + ".weight");
  const at::Tensor* bias = optional_tensor(w, prefix + ".bias");
  at::Tensor xin = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  return at::group_norm(xin, groups, weight, bias ? *bias : at::Tensor(), eps);
}

at::Tensor layer_norm(const at::Tensor& x, const BlockLease& w, const std::string& prefix, double eps) {
  const at::Tensor& weight = w.at(prefix + ".weight");
  const at::Tensor* bias = optional_tensor(w, prefix + ".bias");
  at::Tensor xin = x.scalar_type() == weight.scalar_type() ? x : x.to(weight.scalar_type());
  return at::layer_norm(xin, {weight.size(0)}, weight, bias ? *bias : at::Tensor(), eps);
}

}  // namespace sdflow::ops
