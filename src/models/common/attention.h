// Multi-head attention kernels: ComfyUI's attention functions (comfy/ldm/modules/attention.py,
// sub_quadratic_attention.py) and an INT8 Q·Kᵀ kernel after SageAttention. See Note [Attention
// kernels] in attention.cpp for what each one computes and where it deviates.
//
// Every kernel takes q [B, Nq, heads·d], k and v [B, Nk, heads·d] (v may have another width)
// and returns [B, Nq, heads·d_v] in q's dtype. `attention()` picks the kernel of
// options.backend; the named functions run one kernel whatever the backend says (tests, bench).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

#include "sdflow/memory.h"

namespace sdflow::ops {

// The INT8 kernel's choices. Defaults are SageAttention's per-block granularity (Q blocks of 128
// tokens, K blocks of 64, K smoothed); q_block 32 is its per-warp granularity (the CUDA kernels).
struct SageOptions {
  int64_t q_block = 128;
  int64_t k_block = 64;
  bool smooth_k = true;  // subtract K's per-channel mean over tokens (softmax is unchanged)
  // What ComfyUI's attention_sage does when sageattn refuses the inputs (fp32 tensors, head dims
  // over 128): fall back to PyTorch attention. False casts fp32 to fp16 first, as KJNodes'
  // patch does; head dims over 128 still fall back.
  bool fp32_falls_back = true;
};

struct AttentionOptions {
  int64_t heads = 1;
  AttentionBackend backend = AttentionBackend::kDefault;
  // Scores (QKᵀ, softmax) in fp32: ComfyUI's attn_precision == fp32 after get_attn_precision.
  // Only basic/split/sub-quad read it, as in ComfyUI; sub-quad ignores it for fp32 inputs.
  bool upcast = false;
  // Additive mask: [Nq, Nk], [B, Nq, Nk] or [B, heads, Nq, Nk], each dim possibly 1 (Nk not);
  // undefined = none.
  at::Tensor mask;
  // Bytes free on q's device (ComfyUI's model_management.get_free_memory), read by split and
  // sub-quad to size their chunks, once per call. Unset: the host's available memory for CPU
  // tensors, unlimited for others (callers on a GPU pass the memory manager's figure).
  std::function<int64_t()> free_memory;
  SageOptions sage;
};

// The backend's kernel. kDefault and kPytorch: SDPA where libtorch has it (≥ 2.0), else
// attention_basic without upcast (SDPA's math); kFlash runs as kPytorch.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionOptions& options);

at::Tensor attention_basic(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttentionOptions& options);
at::Tensor attention_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionOptions& options);
// Throws Error(kOutOfMemory) when more than 64 query slices would be needed (ComfyUI's
// "Not enough memory, use lower resolution").
at::Tensor attention_split(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttentionOptions& options);
at::Tensor attention_sub_quad(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const AttentionOptions& options);
at::Tensor attention_sage_int8(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const AttentionOptions& options);

// attention_split's plan: 2^ceil(log2(3·BH·Nq·Nk·bytes / free)) steps (1 when it fits);
// queries are sliced by Nq / steps only when steps divides Nq, else not at all.
struct SplitPlan {
  int64_t steps = 1;
  int64_t slice = 0;  // query tokens per slice
};
SplitPlan split_attention_plan(int64_t batch_heads, int64_t q_tokens, int64_t k_tokens, int64_t element_size,
                               int64_t free_bytes);

// attention_sub_quad's chunk sizes: the largest query chunk of 4096..256 whose scores fit four
// times over (then keys are not chunked), else 512 queries and √Nk keys per chunk.
struct SubQuadPlan {
  int64_t query_chunk = 512;
  int64_t kv_chunk = 0;
};
SubQuadPlan sub_quad_plan(int64_t batch_heads, int64_t k_tokens, int64_t bytes_per_token, int64_t free_bytes);

}  // namespace sdflow::ops
