// Shared by the attention kernels (not part of the ops API): moving heads into the batch the
// way ComfyUI's attention functions do, and bringing a mask to the same layout.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "models/common/attention.h"

namespace sdflow::ops::detail {

// The shape of one attention call.
struct HeadShape {
  int64_t batch = 0, heads = 0, q_tokens = 0, k_tokens = 0, dim = 0, v_dim = 0;
  int64_t batch_heads() const { return batch * heads; }
};

// Checks ranks and widths; throws Error(kRuntime) naming the problem.
HeadShape head_shape(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads);

// [B, N, heads·d] → [B·heads, N, d], contiguous (ComfyUI's unsqueeze/reshape/permute/reshape).
at::Tensor to_heads(const at::Tensor& t, int64_t heads);
// [B·heads, N, d] → [B, N, heads·d].
at::Tensor from_heads(const at::Tensor& t, int64_t batch, int64_t heads);

// A mask as [B or 1, heads or 1, Nq or 1, Nk]: [Nq, Nk] and [B, Nq, Nk] get the missing
// dimensions (ComfyUI's rule). Throws Error(kRuntime) for boolean masks.
at::Tensor mask_4d(const at::Tensor& mask);

// options.mask broadcast to [B·heads, Nq or 1, Nk] in `dtype` (ComfyUI's
// mask.reshape(bs, -1, Nq, Nk).expand(b, heads, -1, -1).reshape(-1, Nq, Nk)); undefined stays so.
at::Tensor head_mask(const at::Tensor& mask, const HeadShape& s, at::ScalarType dtype);

// Rows [begin, end) of a head mask; a mask with one query row applies to every query.
at::Tensor mask_rows(const at::Tensor& mask, int64_t begin, int64_t end);

// The figure split / sub-quad size their chunks by (AttentionOptions::free_memory).
int64_t free_memory_for(const AttentionOptions& options, const at::Device& device);

}  // namespace sdflow::ops::detail
