#include "models/lora/lora_merge.h"

#include <limits>
#include <vector>

namespace sdflow {

namespace {

int64_t bytes_of(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.numel() * t.element_size()) : 0;
}

at::Tensor to_device(const at::Tensor& t, const at::Device& device, at::ScalarType dtype) {
  return t.defined() ? t.to(device, dtype) : at::Tensor();
}

double eps_of(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return 0.0009765625;  // torch.finfo(float16).eps
    case at::kBFloat16:
      return 0.0078125;
    case at::kDouble:
      return std::numeric_limits<double>::epsilon();
    default:
      return std::numeric_limits<float>::epsilon();
  }
}

// base.py weight_decompose with function = identity. `diff` is ΔW (fp32), `scale` alpha/rank.
void weight_decompose(at::Tensor& weight, const at::Tensor& dora_scale, at::Tensor diff, double scale,
                      double strength) {
  diff.mul_(scale);
  at::Tensor calc = weight + diff.to(weight.scalar_type());
  std::vector<int64_t> norm_shape(weight.dim(), 1);
  at::Tensor norm;
  if (dora_scale.size(0) == calc.size(0)) {
    // ComfyUI takes the norm of the unpatched weight on this axis.
    norm_shape[0] = weight.size(0);
    norm = at::linalg_vector_norm(weight.reshape({weight.size(0), -1}), 2, {1}, true).reshape(norm_shape);
  } else {
    norm_shape[0] = calc.size(1);
    norm = at::linalg_vector_norm(calc.transpose(0, 1).reshape({calc.size(1), -1}), 2, {1}, true)
               .reshape(norm_shape)
               .transpose(0, 1);
  }
  norm = norm + eps_of(weight.scalar_type());
  calc.mul_((dora_scale / norm).to(weight.scalar_type()));
  if (strength != 1.0) {
    calc.sub_(weight);
    weight.add_(strength * calc);
  } else {
    weight.copy_(calc);
  }
}

}  // namespace

int64_t LoraFactors::bytes() const {
  return bytes_of(up) + bytes_of(down) + bytes_of(mid) + bytes_of(dora_scale) + bytes_of(value);
}

LoraFactors lora_factors(const LoraAdapter& a, const at::Device& device) {
  LoraFactors f;
  f.up = to_device(a.up, device, at::kFloat);
  f.down = to_device(a.down, device, at::kFloat);
  f.mid = to_device(a.mid, device, at::kFloat);
  f.dora_scale = to_device(a.dora_scale, device, at::kFloat);
  if (a.value.defined()) f.value = a.value.to(device);
  return f;
}

void merge_lora_patch(at::Tensor& weight, const LoraAdapter& a, const LoraFactors& f, double strength) {
  switch (a.kind) {
    case LoraAdapter::Kind::kDiff:
      if (strength != 0.0) weight.add_(strength * f.value.to(weight.scalar_type()));
      return;
    case LoraAdapter::Kind::kSet:
      weight.copy_(f.value);
      return;
    case LoraAdapter::Kind::kLora:
      break;
  }
  at::Tensor down = f.down;
  const double scale = a.alpha ? *a.alpha / static_cast<double>(down.size(0)) : 1.0;
  if (f.mid.defined()) {
    // LoCon Tucker: down' = (downᵀ.flatten(1) @ midᵀ.flatten(1)) → [in, rank, kh, kw] → transposed.
    down = at::mm(down.transpose(0, 1).flatten(1), f.mid.transpose(0, 1).flatten(1))
               .reshape({down.size(1), down.size(0), f.mid.size(2), f.mid.size(3)})
               .transpose(0, 1);
  }
  at::Tensor diff = at::mm(f.up.flatten(1), down.flatten(1)).reshape(weight.sizes());
  if (f.dora_scale.defined()) {
    weight_decompose(weight, f.dora_scale, std::move(diff), scale, strength);
    return;
  }
  // In place: the same products as ComfyUI's (strength·scale)·ΔW, one full-size buffer fewer.
  diff.mul_(strength * scale);
  weight.add_(diff.to(weight.scalar_type()));
}

}  // namespace sdflow
