#include "models/vae/taesd.h"

#include <string>

#include "core/error.h"
#include "models/common/ops.h"

namespace sdflow {

namespace {

constexpr int64_t kPoolGroups = 4;
constexpr double kPoolEps = 1e-5;  // nn.GroupNorm's default

// Block: x += pool(x) where there is one; relu(conv(x) + x) (64 → 64, so the skip is identity).
at::Tensor block(at::Tensor x, const BlockLease& w, const std::string& p) {
  if (w.has(p + ".pool.0.weight")) {
    at::Tensor h = ops::conv2d(x, w, p + ".pool.0");
    h = at::relu(ops::group_norm(h, w, p + ".pool.1", kPoolGroups, kPoolEps));
    x = x + ops::conv2d(h, w, p + ".pool.3");
  }
  at::Tensor h = at::relu(ops::conv2d(x, w, p + ".conv.0", 1, 1));
  h = at::relu(ops::conv2d(h, w, p + ".conv.2", 1, 1));
  h = ops::conv2d(h, w, p + ".conv.4", 1, 1);
  return at::relu(h + x);
}

// nn.Upsample(scale_factor=2), nearest. As in AutoencoderKL: an fp32 detour where a half/bf16
// kernel is missing is exact, since nearest only copies.
at::Tensor upsample2x(const at::Tensor& x) {
  const std::vector<int64_t> size{x.size(2) * 2, x.size(3) * 2};
  try {
    return at::upsample_nearest2d(x, size);
  } catch (const c10::Error&) {
    if (x.scalar_type() == at::kFloat) throw;
    return at::upsample_nearest2d(x.to(at::kFloat), size).to(x.scalar_type());
  }
}

// FLUX.2's 2×2 patches: [B, C, 2h, 2w] ↔ [B, 4C, h, w], channel c·4 + 2·i + j holding pixel
// (2y + i, 2x + j) of channel c (ComfyUI's EncoderFlux2 / DecoderFlux2 reshapes).
at::Tensor patchify(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  return x.reshape({B, C, H / 2, 2, W / 2, 2}).permute({0, 1, 3, 5, 2, 4}).reshape({B, C * 4, H / 2, W / 2});
}
at::Tensor unpatchify(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1) / 4, h = x.size(2), w = x.size(3);
  return x.reshape({B, C, 2, 2, h, w}).permute({0, 1, 4, 2, 5, 3}).reshape({B, C, h * 2, w * 2});
}

}  // namespace

Taesd::Taesd(TaesdConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency)
    : config_(std::move(config)), weights_(std::move(weights)), residency_(residency) {
  config_.validate();
  if (!weights_) throw Error(ErrorKind::kModel, "TAESD: no weights");
  for (const char* b : {"taesd_encoder", "taesd_decoder"}) {
    const bool wanted = std::string(b) == "taesd_encoder" ? config_.has_encoder : config_.has_decoder;
    if (wanted && !weights_->has_block(b))
      throw Error(ErrorKind::kModel, "TAESD: weight store '" + weights_->model_name() + "' has no block '" + b + "'");
  }
}

at::Tensor Taesd::encode(const at::Tensor& x, const VaeRunOptions& options) const {
  if (!config_.has_encoder) throw Error(ErrorKind::kModel, "TAESD: this VAE has no encoder");
  if (x.dim() != 4 || x.size(1) != 3)
    throw Error(ErrorKind::kRuntime, "TAESD encode: x must be [B, 3, H, W], got " + c10::str(x.sizes()));
  if (config_.patchified() && (x.size(2) % 16 != 0 || x.size(3) % 16 != 0))
    throw Error(ErrorKind::kRuntime, "TAESD encode: " + config_.family + " needs sizes that are multiples of 16, got " +
                                         c10::str(x.sizes()));
  if (options.check_cancel) options.check_cancel();
  const BlockLease w = residency_.acquire(*weights_, "taesd_encoder");
  const at::Tensor& first = w.at("taesd_encoder.0.weight");
  at::Tensor h = x.to(first.device(), weights_->compute_dtype()) * 0.5 + 0.5;
  const std::string p = "taesd_encoder.";
  h = ops::conv2d(h, w, p + "0", 1, 1);
  for (int i = 1; i <= 13; ++i) {
    if (i == 2 || i == 6 || i == 10) {
      h = ops::conv2d(h, w, p + std::to_string(i), 2, 1);
    } else {
      h = block(h, w, p + std::to_string(i));
    }
  }
  h = ops::conv2d(h, w, p + "14", 1, 1);
  if (config_.patchified()) h = patchify(h);
  const auto opts = h.options();
  return h / at::scalar_tensor(config_.scale, opts) + at::scalar_tensor(config_.shift, opts);
}

at::Tensor Taesd::decode(const at::Tensor& z, const VaeRunOptions& options) const {
  if (!config_.has_decoder) throw Error(ErrorKind::kModel, "TAESD: this VAE has no decoder");
  if (z.dim() != 4 || z.size(1) != config_.latent_channels)
    throw Error(ErrorKind::kRuntime, "TAESD decode: z must be [B, " + std::to_string(config_.latent_channels) +
                                         ", h, w], got " + c10::str(z.sizes()));
  if (options.check_cancel) options.check_cancel();
  const BlockLease w = residency_.acquire(*weights_, "taesd_decoder");
  const at::Tensor& first = w.at("taesd_decoder.1.weight");
  at::Tensor h = z.to(first.device(), weights_->compute_dtype());
  const auto opts = h.options();
  h = (h - at::scalar_tensor(config_.shift, opts)) * at::scalar_tensor(config_.scale, opts);
  if (config_.patchified()) h = unpatchify(h);
  h = at::tanh(h / 3.0) * 3.0;  // Clamp
  const std::string p = "taesd_decoder.";
  h = at::relu(ops::conv2d(h, w, p + "1", 1, 1));
  for (int i = 3; i <= 18; ++i) {
    if (i == 6 || i == 11 || i == 16) {
      h = upsample2x(h);
    } else if (i == 7 || i == 12 || i == 17) {
      h = ops::conv2d(h, w, p + std::to_string(i), 1, 1);
    } else {
      h = block(h, w, p + std::to_string(i));
    }
  }
  h = ops::conv2d(h, w, p + "19", 1, 1);
  return h.sub(0.5).mul(2.0);
}

}  // namespace sdflow
