// ComfyUI's attention_split (comfy/ldm/modules/attention.py): the scores of a slice of queries
// at a time, so that three score matrices fit in free memory. Note [Attention kernels].
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/log.h"
#include "models/common/attention.h"
#include "models/common/attention_heads.h"

namespace sdflow::ops {

namespace {
constexpr int64_t kMaxSteps = 64;
constexpr int64_t kScoreCopies = 3;  // ComfyUI's "modifier": scores, softmax, and slack

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}
}  // namespace

SplitPlan split_attention_plan(int64_t batch_heads, int64_t q_tokens, int64_t k_tokens, int64_t element_size,
                               int64_t free_bytes) {
  SplitPlan plan;
  const double tensor_size = static_cast<double>(batch_heads) * q_tokens * k_tokens * element_size;
  const double required = tensor_size * kScoreCopies;
  const double free = std::max(1.0, static_cast<double>(free_bytes));  // a 0 figure must not divide
  if (required > free) plan.steps = int64_t{1} << std::min(62, static_cast<int>(std::ceil(std::log2(required / free))));
  plan.slice = q_tokens % plan.steps == 0 ? q_tokens / plan.steps : q_tokens;
  return plan;
}

at::Tensor attention_split(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttentionOptions& o) {
  const detail::HeadShape s = detail::head_shape(q, k, v, o.heads);
  const double scale = std::pow(static_cast<double>(s.dim), -0.5);
  const at::Tensor qh = detail::to_heads(q, s.heads), kh = detail::to_heads(k, s.heads);
  const at::Tensor vh = detail::to_heads(v, s.heads);
  at::Tensor r1 = at::zeros({s.batch_heads(), s.q_tokens, s.v_dim}, qh.options());

  const int64_t free = detail::free_memory_for(o, q.device());
  const bool upcast = o.upcast;  // attn_precision == fp32, whatever q's dtype
  const int64_t element_size = upcast ? 4 : static_cast<int64_t>(qh.element_size());
  int64_t steps = split_attention_plan(s.batch_heads(), s.q_tokens, s.k_tokens, element_size, free).steps;
  if (steps > kMaxSteps) {
    const double max_res = std::floor(std::sqrt(std::sqrt(static_cast<double>(free) / 2.5)) / 8) * 64;
    const double required = static_cast<double>(s.batch_heads()) * s.q_tokens * s.k_tokens * element_size *
                            kScoreCopies;
    throw Error(ErrorKind::kOutOfMemory,
                "attention_split: not enough memory, use a lower resolution (max approx. " +
                    std::to_string(static_cast<int64_t>(max_res)) + "x" + std::to_string(static_cast<int64_t>(max_res)) +
                    "). Need " + gib(required / kMaxSteps) + " GB free, have " + gib(static_cast<double>(free)) +
                    " GB free");
  }

  const at::Tensor mask = detail::head_mask(o.mask, s, upcast ? at::kFloat : qh.scalar_type());
  const at::Tensor ks = upcast ? kh.to(at::kFloat) : kh;
  bool first_op_done = false;
  while (true) {
    try {
      const int64_t slice = s.q_tokens % steps == 0 ? s.q_tokens / steps : s.q_tokens;
      for (int64_t i = 0; i < s.q_tokens; i += slice) {
        const int64_t end = std::min(i + slice, s.q_tokens);
        at::Tensor qs = qh.slice(1, i, end);
        if (upcast) qs = qs.to(at::kFloat);
        at::Tensor s1 = at::bmm(qs, ks.transpose(1, 2)) * scale;  // [BH, slice, Nk]
        if (mask.defined()) s1 += detail::mask_rows(mask, i, end);
        at::Tensor s2 = at::softmax(s1, -1).to(vh.scalar_type());
        s1.reset();
        first_op_done = true;
        r1.slice(1, i, end).copy_(at::bmm(s2, vh));
      }
      break;
    } catch (const c10::OutOfMemoryError&) {
      if (first_op_done) throw;
      steps *= 2;
      if (steps > kMaxSteps) throw;
      log::warn("out of memory error, increasing steps and trying again {}", steps);
    }
  }
  return detail::from_heads(r1, s.batch, s.heads);
}

}  // namespace sdflow::ops
