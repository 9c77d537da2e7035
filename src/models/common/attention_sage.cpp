// INT8 Q·Kᵀ attention after SageAttention (Zhang et al., "SageAttention: Accurate 8-bit
// Attention for Plug-and-play Inference Acceleration", 2024). sdflow's own kernel written from
// the paper's recipe with libtorch ops; it is not the sageattention package.
//
// 1. K smoothing: K ← K − mean_tokens(K) per channel. Every score of a query row drops by the
//    same q·mean(K), so softmax is unchanged, but K's large common offset (typical of diffusion
//    models) no longer eats the INT8 range.
// 2. Per-block symmetric INT8: Q (pre-multiplied by 1/√d) in blocks of 128 tokens, K in blocks
//    of 64, each block one scale = max|x| / 127, values rounded half away from zero.
// 3. S = (Q̂·K̂ᵀ in int32) · s_Q · s_K: at::_int_mm on CUDA (libtorch ≥ 2.1, torch_compat.h);
//    elsewhere a float32 matmul of the int8 values, which is exact because every partial sum is
//    an integer of magnitude ≤ d·127² < 2²⁴ (d ≤ 128 here).
// 4. softmax in fp32 (with the mask, if any), then P·V with P and V in fp16 (fp32 accumulation;
//    on the CPU emulated by rounding both operands to fp16 first), output in q's dtype.
//
// Like ComfyUI's attention_sage, inputs sageattn refuses run on PyTorch attention: head dims
// over 128 and, unless SageOptions::fp32_falls_back is off (KJNodes' cast to fp16), fp32 tensors.
// Unlike sageattn, which swallows attn_mask, a mask is applied.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "core/log.h"
#include "core/torch_compat.h"
#include "models/common/attention.h"
#include "models/common/attention_heads.h"

namespace sdflow::ops {

namespace {

constexpr int64_t kMaxHeadDim = 128;
constexpr double kInt8Max = 127.0;
// fp32 scores held at once (heads are processed in groups of this size).
constexpr int64_t kScoreBytes = int64_t{256} << 20;

struct Quantized {
  at::Tensor values;  // int8 [BH, N, D]
  at::Tensor scale;   // float [BH, N, 1]: the scale of each token's block
};

// x: float [BH, N, D].
Quantized quantize_per_block(const at::Tensor& x, int64_t block) {
  const int64_t BH = x.size(0), N = x.size(1), D = x.size(2);
  const int64_t blocks = (N + block - 1) / block, padded = blocks * block;
  const at::Tensor xp = padded == N ? x : at::constant_pad_nd(x, {0, 0, 0, padded - N});
  const at::Tensor b = xp.view({BH, blocks, block, D});
  const at::Tensor scale = at::amax(b.abs(), {2, 3}, /*keepdim=*/true) / kInt8Max;  // [BH, blocks, 1, 1]
  const at::Tensor divisor = at::where(scale > 0, scale, at::ones_like(scale));    // all-zero block → zeros
  at::Tensor q = b / divisor;
  q = at::trunc(q + 0.5 * at::sign(q)).clamp_(-kInt8Max, kInt8Max);
  Quantized out;
  out.values = q.to(at::kChar).view({BH, padded, D}).narrow(1, 0, N);
  out.scale = scale.expand({BH, blocks, block, 1}).reshape({BH, padded, 1}).narrow(1, 0, N);
  return out;
}

// int32 Q̂·K̂ᵀ as float32 [g, Nq, Nk]; qi [g, Nq, D], ki [g, Nk, D] int8.
at::Tensor int8_scores(const at::Tensor& qi, const at::Tensor& ki) {
  if (compat::kHasIntMm && qi.is_cuda()) {
    // _int_mm wants K and N (here D and Nk) multiples of 8: zero padding adds nothing to the sums.
    const int64_t D = qi.size(2), Nk = ki.size(1);
    const int64_t pd = (8 - D % 8) % 8, pn = (8 - Nk % 8) % 8;
    const at::Tensor qp = pd ? at::constant_pad_nd(qi, {0, pd}) : qi;
    const at::Tensor kp = (pd || pn) ? at::constant_pad_nd(ki, {0, pd, 0, pn}) : ki;
    static std::atomic<bool> int_mm_failed{false};
    if (!int_mm_failed && compat::int_mm_supports(qp[0], kp[0].t())) {
      try {
        at::Tensor out = at::empty({qi.size(0), qi.size(1), Nk}, qi.options().dtype(at::kFloat));
        for (int64_t h = 0; h < qi.size(0); ++h)  // row-major Q̂ × column-major K̂ᵀ: cuBLASLt's int8 layout
          out[h].copy_(compat::int_mm(qp[h], kp[h].t()).narrow(1, 0, Nk));
        return out;
      } catch (const c10::Error& e) {
        // A cuBLASLt without this int8 layout: the exact float path below gives the same numbers.
        int_mm_failed = true;
        log::warn("INT8 attention: at::_int_mm failed ({}); using fp32 matmuls of the int8 values", e.what_without_backtrace());
      }
    }
  }
  return at::bmm(qi.to(at::kFloat), ki.to(at::kFloat).transpose(1, 2));
}

// P·V with fp16 operands and fp32 accumulation, returned in fp16.
at::Tensor pv_fp16(const at::Tensor& p, const at::Tensor& v16) {
  if (p.is_cuda()) return at::bmm(p.to(at::kHalf), v16);
  // The CPU has no fp16 matmul in libtorch 1.13: round the operands, multiply in fp32.
  return at::bmm(p.to(at::kHalf).to(at::kFloat), v16.to(at::kFloat)).to(at::kHalf);
}

}  // namespace

at::Tensor attention_sage_int8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const AttentionOptions& o) {
  const detail::HeadShape s = detail::head_shape(q, k, v, o.heads);
  const at::ScalarType in_dtype = q.scalar_type();
  if (s.dim > kMaxHeadDim || s.v_dim != s.dim) return attention_sdpa(q, k, v, o);
  if (in_dtype == at::kFloat && o.sage.fp32_falls_back) return attention_sdpa(q, k, v, o);
  if (o.sage.q_block < 1 || o.sage.k_block < 1) return attention_sdpa(q, k, v, o);

  const double scale = std::pow(static_cast<double>(s.dim), -0.5);
  // Quantisation statistics in fp32 from the inputs as given (fp32 inputs: as KJNodes' cast to
  // fp16 would round them first).
  auto as_input = [&](const at::Tensor& t) {
    return in_dtype == at::kFloat ? t.to(at::kHalf).to(at::kFloat) : t.to(at::kFloat);
  };
  at::Tensor kf = as_input(detail::to_heads(k, s.heads));
  if (o.sage.smooth_k) kf = kf - kf.mean(1, /*keepdim=*/true);
  const Quantized qq = quantize_per_block(as_input(detail::to_heads(q, s.heads)) * scale, o.sage.q_block);
  const Quantized kq = quantize_per_block(kf, o.sage.k_block);
  kf.reset();
  const at::Tensor v16 = detail::to_heads(v, s.heads).to(at::kHalf);
  const at::Tensor mask = detail::head_mask(o.mask, s, at::kFloat);
  const at::Tensor k_scale_t = kq.scale.transpose(1, 2);  // [BH, 1, Nk]

  const at::ScalarType out_dtype = in_dtype == at::kFloat ? at::kHalf : in_dtype;
  at::Tensor out = at::empty({s.batch_heads(), s.q_tokens, s.dim}, q.options().dtype(out_dtype));
  const int64_t per_head = std::max<int64_t>(1, s.q_tokens * s.k_tokens * 4);
  const int64_t group = std::clamp<int64_t>(kScoreBytes / per_head, 1, s.batch_heads());
  for (int64_t h = 0; h < s.batch_heads(); h += group) {
    const int64_t end = std::min(h + group, s.batch_heads());
    at::Tensor scores = int8_scores(qq.values.slice(0, h, end), kq.values.slice(0, h, end));
    scores.mul_(qq.scale.slice(0, h, end)).mul_(k_scale_t.slice(0, h, end));
    if (mask.defined()) scores.add_(mask.size(0) == 1 ? mask : mask.slice(0, h, end));
    at::Tensor p = at::softmax(scores, -1);
    scores.reset();
    out.slice(0, h, end).copy_(pv_fp16(p, v16.slice(0, h, end)));
  }
  return detail::from_heads(out, s.batch, s.heads).to(in_dtype);
}

}  // namespace sdflow::ops
