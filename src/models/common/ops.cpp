#include "models/common/ops.h"

#include <cmath>

#include "core/torch_compat.h"

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

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o) {
  const int64_t B = q.size(0), Nq = q.size(1), Nk = k.size(1);
  const int64_t H = o.heads;
  const int64_t D = q.size(2) / H;
  // [B, N, H·D] → [B, H, N, D]
  auto split = [&](const at::Tensor& t, int64_t n) { return t.reshape({B, n, H, D}).transpose(1, 2); };
  at::Tensor qh = split(q, Nq), kh = split(k, Nk), vh = split(v, Nk);
  at::Tensor out;
#if SDFLOW_TORCH_AT_LEAST(2, 0)
  if (!o.upcast && (o.backend == AttentionBackend::kDefault || o.backend == AttentionBackend::kPytorch)) {
    out = at::scaled_dot_product_attention(qh, kh, vh, o.mask.defined() ? c10::optional<at::Tensor>(o.mask)
                                                                          : c10::optional<at::Tensor>());
  }
#endif
  if (!out.defined()) {
    // Plain attention (libtorch 1.13 has no SDPA): softmax(q kᵀ / √d) v, optionally in fp32.
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    at::Tensor qs = o.upcast ? qh.to(at::kFloat) : qh;
    at::Tensor ks = o.upcast ? kh.to(at::kFloat) : kh;
    at::Tensor scores = at::matmul(qs, ks.transpose(-1, -2)) * scale;
    if (o.mask.defined()) scores = scores + o.mask.to(scores.scalar_type());
    at::Tensor probs = at::softmax(scores, -1).to(vh.scalar_type());
    out = at::matmul(probs, vh);
  }
  return out.transpose(1, 2).reshape({B, Nq, H * D});
}

}  // namespace sdflow::ops
