#include "models/common/attention.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/torch_compat.h"
#include "device/device.h"
#include "models/common/attention_heads.h"

// Note [Attention kernels]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// ComfyUI picks one attention function per process (attention.py, module level) and models may
// override it per model (transformer_options["optimized_attention_override"], which KJNodes'
// PathchSageAttentionKJ sets). sdflow's kernels, by AttentionBackend:
//
//   kDefault, kPytorch, kFlash  attention_sdpa: at::scaled_dot_product_attention (libtorch ≥ 2),
//                               else attention_basic's math without upcast. Ignores upcast, like
//                               ComfyUI's attention_pytorch.
//   kSplit   attention_split: queries sliced so that 3 score matrices fit in free memory
//            (attention_split_plan); QKᵀ and softmax in fp32 when upcast. Slices are taken only
//            when the step count divides Nq — ComfyUI's rule, kept for identical results.
//   kQuad    attention_sub_quad: ComfyUI's sub-quadratic attention (Rabe & Staats): query chunks,
//            and key chunks of √Nk merged by their running maxima (log-sum-exp), when the scores
//            of a 256-query chunk do not fit. Upcast only applies to non-fp32 inputs.
//   kSage    attention_sage_int8 (attention_sage.cpp): SageAttention's idea, not its kernels.
//
// ComfyUI reads the free memory inside each call (get_free_memory); here it is
// AttentionOptions::free_memory, so a test can fix it and get ComfyUI's exact chunking.
// Deviations: on an out-of-memory error before its first slice, split doubles its steps at once
// (ComfyUI first empties the CUDA cache and retries the same steps); boolean masks are not
// accepted (sdflow's callers build additive masks).

namespace sdflow::ops {

namespace detail {

HeadShape head_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  if (q.dim() != 3 || k.dim() != 3 || v.dim() != 3)
    throw Error(ErrorKind::kRuntime, "attention: q, k and v must be [batch, tokens, channels], got " +
                                         c10::str(q.sizes()) + ", " + c10::str(k.sizes()) + ", " +
                                         c10::str(v.sizes()));
  if (heads < 1 || q.size(2) % heads != 0 || v.size(2) % heads != 0 || k.size(2) != q.size(2))
    throw Error(ErrorKind::kRuntime, "attention: " + std::to_string(heads) + " heads do not divide q " +
                                         c10::str(q.sizes()) + " / k " + c10::str(k.sizes()) + " / v " +
                                         c10::str(v.sizes()));
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0) || v.size(1) != k.size(1))
    throw Error(ErrorKind::kRuntime, "attention: batch or token counts of q " + c10::str(q.sizes()) + ", k " +
                                         c10::str(k.sizes()) + ", v " + c10::str(v.sizes()) + " disagree");
  HeadShape s;
  s.batch = q.size(0);
  s.heads = heads;
  s.q_tokens = q.size(1);
  s.k_tokens = k.size(1);
  s.dim = q.size(2) / heads;
  s.v_dim = v.size(2) / heads;
  return s;
}

at::Tensor to_heads(const at::Tensor& t, int64_t heads) {
  const int64_t B = t.size(0), N = t.size(1), d = t.size(2) / heads;
  return t.reshape({B, N, heads, d}).permute({0, 2, 1, 3}).reshape({B * heads, N, d}).contiguous();
}

at::Tensor from_heads(const at::Tensor& t, int64_t batch, int64_t heads) {
  const int64_t N = t.size(1), d = t.size(2);
  return t.reshape({batch, heads, N, d}).permute({0, 2, 1, 3}).reshape({batch, N, heads * d});
}

at::Tensor mask_4d(const at::Tensor& mask) {
  if (mask.scalar_type() == at::kBool)
    throw Error(ErrorKind::kRuntime, "attention: boolean masks are not supported; pass an additive mask");
  if (mask.dim() == 2) return mask.unsqueeze(0).unsqueeze(0);  // [Nq, Nk]
  if (mask.dim() == 3) return mask.unsqueeze(1);               // [B, Nq, Nk]
  return mask;
}

at::Tensor head_mask(const at::Tensor& mask, const HeadShape& s, at::ScalarType dtype) {
  if (!mask.defined()) return mask;
  at::Tensor m = mask_4d(mask);
  if (m.dim() != 4 || m.size(3) != s.k_tokens || (m.size(2) != 1 && m.size(2) != s.q_tokens))
    throw Error(ErrorKind::kRuntime, "attention: mask " + c10::str(mask.sizes()) + " does not broadcast to [" +
                                         std::to_string(s.batch) + ", " + std::to_string(s.heads) + ", " +
                                         std::to_string(s.q_tokens) + ", " + std::to_string(s.k_tokens) + "]");
  m = m.expand({s.batch, s.heads, m.size(2), s.k_tokens});
  return m.reshape({s.batch_heads(), m.size(2), s.k_tokens}).to(dtype);
}

at::Tensor mask_rows(const at::Tensor& mask, int64_t begin, int64_t end) {
  if (!mask.defined() || mask.size(1) == 1) return mask;
  return mask.slice(1, begin, end);
}

int64_t free_memory_for(const AttentionOptions& options, const at::Device& device) {
  if (options.free_memory) return options.free_memory();
  if (device.is_cpu()) return host_memory().available;
  return std::numeric_limits<int64_t>::max() / 4;
}

}  // namespace detail

using detail::from_heads;
using detail::head_mask;
using detail::head_shape;
using detail::to_heads;

at::Tensor attention_basic(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttentionOptions& o) {
  const detail::HeadShape s = head_shape(q, k, v, o.heads);
  const double scale = std::pow(static_cast<double>(s.dim), -0.5);
  at::Tensor qh = to_heads(q, s.heads), kh = to_heads(k, s.heads), vh = to_heads(v, s.heads);
  if (o.upcast) {
    qh = qh.to(at::kFloat);
    kh = kh.to(at::kFloat);
  }
  at::Tensor sim = at::bmm(qh, kh.transpose(1, 2)) * scale;
  if (o.mask.defined()) sim.add_(head_mask(o.mask, s, sim.scalar_type()));
  at::Tensor out = at::bmm(at::softmax(sim, -1).to(vh.scalar_type()), vh);
  return from_heads(out, s.batch, s.heads);
}

at::Tensor attention_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionOptions& o) {
#if SDFLOW_TORCH_AT_LEAST(2, 0)
  const detail::HeadShape s = head_shape(q, k, v, o.heads);
  // [B, N, H·d] → [B, H, N, d] views, as attention_pytorch passes them.
  auto split = [&](const at::Tensor& t, int64_t n, int64_t d) { return t.view({s.batch, n, s.heads, d}).transpose(1, 2); };
  c10::optional<at::Tensor> mask;
  if (o.mask.defined()) mask = detail::mask_4d(o.mask).to(q.scalar_type());
  at::Tensor out = at::scaled_dot_product_attention(split(q, s.q_tokens, s.dim), split(k, s.k_tokens, s.dim),
                                                    split(v, s.k_tokens, s.v_dim), mask);
  return out.transpose(1, 2).reshape({s.batch, s.q_tokens, s.heads * s.v_dim});
#else
  AttentionOptions plain = o;
  plain.upcast = false;  // SDPA computes in the input dtype
  return attention_basic(q, k, v, plain);
#endif
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& o) {
  switch (o.backend) {
    case AttentionBackend::kSplit:
      return attention_split(q, k, v, o);
    case AttentionBackend::kQuad:
      return attention_sub_quad(q, k, v, o);
    case AttentionBackend::kSage:
      return attention_sage_int8(q, k, v, o);
    case AttentionBackend::kDefault:
    case AttentionBackend::kPytorch:
    case AttentionBackend::kFlash:
      break;
  }
  return attention_sdpa(q, k, v, o);
}

}  // namespace sdflow::ops
