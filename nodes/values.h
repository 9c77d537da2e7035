// The torch-side values that flow between nodes, in ComfyUI's layouts. The executor sees them
// only as sdflow::Object; nodes create and read them.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "nodeapi/value.h"

namespace sdflow::nodes {

// IMAGE: [B, H, W, C] float32 in 0..1.
struct ImageValue final : Object {
  explicit ImageValue(at::Tensor t) : images(std::move(t)) {}
  at::Tensor images;
};

// MASK: [B, H, W] (or [H, W]) float32.
struct MaskValue final : Object {
  explicit MaskValue(at::Tensor t) : mask(std::move(t)) {}
  at::Tensor mask;
};

// LATENT: {samples [B, C, h, w], optional noise_mask, optional batch_index}.
struct LatentValue final : Object {
  at::Tensor samples;
  std::optional<at::Tensor> noise_mask;
  std::optional<std::vector<int64_t>> batch_index;
};

// One CONDITIONING entry: the cross-attention tensor plus ComfyUI's option dict
// (pooled_output, area, strength, mask, start_percent, width, ...).
using CondOption = std::variant<at::Tensor, double, int64_t, bool, std::string, std::vector<int64_t>>;
struct CondEntry {
  at::Tensor cond;  // [1, tokens, dim]
  std::map<std::string, CondOption> options;
};
struct ConditioningValue final : Object {
  std::vector<CondEntry> entries;
};

inline Value make_image(at::Tensor t) { return Value::object(std::make_shared<ImageValue>(std::move(t))); }
inline Value make_mask(at::Tensor t) { return Value::object(std::make_shared<MaskValue>(std::move(t))); }
inline Value make_latent(LatentValue v) { return Value::object(std::make_shared<LatentValue>(std::move(v))); }
inline Value make_conditioning(ConditioningValue v) {
  return Value::object(std::make_shared<ConditioningValue>(std::move(v)));
}

}  // namespace sdflow::nodes
