// ComfyUI's attention_sub_quad (comfy/ldm/modules/attention.py) and the efficient dot-product
// attention it calls (sub_quadratic_attention.py; Rabe & Staats, "Self-attention Does Not Need
// O(n²) Memory"). Note [Attention kernels].
//
// Per key chunk the scores are shifted by their row maximum m_c before exp, giving
// values_c = Σ exp(s − m_c)·v and weights_c = Σ exp(s − m_c); chunks are merged by rescaling
// each with exp(m_c − max_c m_c) before summing, and out = Σ values / Σ weights — softmax
// without ever holding all keys' scores.
#include <cmath>
#include <vector>

#include "models/common/attention.h"
#include "models/common/attention_heads.h"

namespace sdflow::ops {

namespace {

struct Inputs {
  at::Tensor key_t;  // [BH, d, Nk]
  at::Tensor value;  // [BH, Nk, dv]
  double scale = 1.0;
  bool upcast = false;
};

// alpha·(q·kᵀ), in fp32 when upcasting: baddbmm, as ComfyUI computes it, so alpha is applied
// before the one rounding. ComfyUI passes beta 0; libtorch 1.13's small-matrix CPU kernel then
// reads the result buffer uninitialised (NaNs now and then), so beta is 1 on a zero input here,
// which adds exactly nothing.
at::Tensor scores(const at::Tensor& query, const at::Tensor& key_t, const Inputs& in) {
  at::Tensor qq = in.upcast ? query.to(at::kFloat) : query;
  at::Tensor kk = in.upcast ? key_t.to(at::kFloat) : key_t;
  return at::baddbmm(at::zeros({1, 1, 1}, qq.options()), qq, kk, /*beta=*/1, /*alpha=*/in.scale);
}

// _get_attention_scores_no_kv_chunking
at::Tensor no_kv_chunking(const at::Tensor& query, const at::Tensor& mask, const Inputs& in) {
  at::Tensor s = scores(query, in.key_t, in);
  if (mask.defined()) s += mask;
  return at::bmm(at::softmax(s, -1).to(in.value.scalar_type()), in.value);
}

struct Chunk {
  at::Tensor values;   // [BH, q, dv] in v's dtype
  at::Tensor weights;  // [BH, q] in v's dtype
  at::Tensor max;      // [BH, q] in the scores' dtype
};

// _summarize_chunk
Chunk summarize(const at::Tensor& query, const at::Tensor& key_t, const at::Tensor& value, const at::Tensor& mask,
                const Inputs& in) {
  at::Tensor w = scores(query, key_t, in);
  at::Tensor max = std::get<0>(at::max(w, -1, /*keepdim=*/true));
  w -= max;
  if (mask.defined()) w += mask;
  w.exp_();
  at::Tensor exp_weights = w.to(value.scalar_type());
  return {at::bmm(exp_weights, value), exp_weights.sum(-1), max.squeeze(-1)};
}

// _query_chunk_attention
at::Tensor query_chunk_attention(const at::Tensor& query, const at::Tensor& mask, int64_t kv_chunk,
                                 const Inputs& in) {
  const int64_t k_tokens = in.key_t.size(2);
  std::vector<at::Tensor> values, weights, maxes;
  for (int64_t c = 0; c < k_tokens; c += kv_chunk) {
    const int64_t end = std::min(c + kv_chunk, k_tokens);
    const at::Tensor m = mask.defined() ? mask.slice(2, c, end) : mask;
    Chunk ch = summarize(query, in.key_t.slice(2, c, end), in.value.slice(1, c, end), m, in);
    values.push_back(std::move(ch.values));
    weights.push_back(std::move(ch.weights));
    maxes.push_back(std::move(ch.max));
  }
  at::Tensor chunk_values = at::stack(values), chunk_weights = at::stack(weights), chunk_max = at::stack(maxes);
  const at::Tensor global_max = std::get<0>(at::max(chunk_max, 0, /*keepdim=*/true));
  const at::Tensor max_diffs = at::exp(chunk_max - global_max);
  chunk_values *= max_diffs.unsqueeze(-1);
  chunk_weights *= max_diffs;
  return chunk_values.sum(0) / chunk_weights.unsqueeze(-1).sum(0);
}

}  // namespace

SubQuadPlan sub_quad_plan(int64_t batch_heads, int64_t k_tokens, int64_t bytes_per_token, int64_t free_bytes) {
  SubQuadPlan plan;
  for (int64_t x : {4096, 2048, 1024, 512, 256}) {
    const double count = static_cast<double>(free_bytes) / (static_cast<double>(batch_heads) * bytes_per_token * x * 4.0);
    if (count >= static_cast<double>(k_tokens)) {
      plan.query_chunk = x;
      plan.kv_chunk = k_tokens;
      return plan;
    }
  }
  // efficient_dot_product_attention's default: int(sqrt(k_tokens)), at most k_tokens.
  plan.query_chunk = 512;
  plan.kv_chunk = std::min(static_cast<int64_t>(std::sqrt(static_cast<double>(k_tokens))), k_tokens);
  return plan;
}

at::Tensor attention_sub_quad(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const AttentionOptions& o) {
  const detail::HeadShape s = detail::head_shape(q, k, v, o.heads);
  const at::Tensor query = detail::to_heads(q, s.heads);
  Inputs in;
  in.key_t = detail::to_heads(k, s.heads).transpose(1, 2);
  in.value = detail::to_heads(v, s.heads);
  in.scale = std::pow(static_cast<double>(s.dim), -0.5);
  in.upcast = o.upcast && query.scalar_type() != at::kFloat;
  const int64_t bytes_per_token = in.upcast ? 4 : static_cast<int64_t>(query.element_size());
  const SubQuadPlan plan =
      sub_quad_plan(s.batch_heads(), s.k_tokens, bytes_per_token, detail::free_memory_for(o, q.device()));
  const int64_t kv_chunk = std::max<int64_t>(1, std::min(plan.kv_chunk, s.k_tokens));
  const at::Tensor mask = detail::head_mask(o.mask, s, in.upcast ? at::kFloat : query.scalar_type());

  auto run = [&](const at::Tensor& qc, const at::Tensor& mc) {
    return s.k_tokens <= kv_chunk ? no_kv_chunking(qc, mc, in) : query_chunk_attention(qc, mc, kv_chunk, in);
  };
  at::Tensor out;
  if (s.q_tokens <= plan.query_chunk) {
    out = run(query, mask);
  } else {
    std::vector<at::Tensor> parts;
    for (int64_t i = 0; i < s.q_tokens; i += plan.query_chunk) {
      const int64_t end = std::min(i + plan.query_chunk, s.q_tokens);
      parts.push_back(run(query.slice(1, i, end), detail::mask_rows(mask, i, end)));
    }
    out = at::cat(parts, 1);
  }
  return detail::from_heads(out.to(query.scalar_type()), s.batch, s.heads);
}

}  // namespace sdflow::ops
