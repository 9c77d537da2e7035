#include "models/vae/autoencoder_kl.h"

#include <string>

#include "core/error.h"
#include "core/torch_compat.h"
#include "models/common/ops.h"
#include "models/vae/vae_layout.h"

namespace sdflow {

namespace {

constexpr int64_t kGroups = 32;
constexpr double kNormEps = 1e-6;

// Note [Lean VAE activations]
// At 1024² the decoder's last level holds 256–512 MiB per tensor, and C++ keeps every
// temporary of a full expression alive until its end. So SiLU runs in place on the norm's
// output, a tensor is released before the next one is made where nothing reads it again, and
// the residual is added in place: one to two fewer full-resolution tensors alive at the peak,
// the same values (the same kernels; a + b == b + a exactly).
at::Tensor norm_silu(const at::Tensor& x, const BlockLease& w, const std::string& p) {
  at::Tensor h = ops::group_norm(x, w, p, kGroups, kNormEps);
  return at::silu_(h);
}

at::Tensor resnet(const at::Tensor& x, const BlockLease& w, const std::string& p) {
  at::Tensor h = norm_silu(x, w, p + ".norm1");
  h = ops::conv2d(h, w, p + ".conv1", 1, 1);
  h = norm_silu(h, w, p + ".norm2");
  h = ops::conv2d(h, w, p + ".conv2", 1, 1);
  if (w.has(p + ".nin_shortcut.weight")) return h.add_(ops::conv2d(x, w, p + ".nin_shortcut"));
  return h.add_(x);
}

// Single-head attention over all H·W positions, scale 1/sqrt(C).
at::Tensor attention(const at::Tensor& x, const BlockLease& w, const std::string& p,
                     AttentionBackend backend) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor h = ops::group_norm(x, w, p + ".norm", kGroups, kNormEps);
  // [B, C, H, W] → [B, H·W, C], contiguous like ComfyUI's (SDPA picks its kernel by layout).
  auto tokens = [&](const at::Tensor& t) { return t.reshape({B, C, H * W}).transpose(1, 2).contiguous(); };
  ops::AttentionOptions options;
  options.heads = 1;
  // ComfyUI's vae_attention never runs the UNet's kernels: PyTorch attention when it is enabled
  // (also under --use-sage-attention), else its own query-sliced attention, which SDPA matches
  // (same math) without the 64/128-slice limits a UNet kernel would bring.
  options.backend = backend == AttentionBackend::kPytorch ? backend : AttentionBackend::kDefault;
  at::Tensor out = ops::attention(tokens(ops::conv2d(h, w, p + ".q")), tokens(ops::conv2d(h, w, p + ".k")),
                                  tokens(ops::conv2d(h, w, p + ".v")), options);
  out = out.transpose(1, 2).reshape({B, C, H, W});
  return x + ops::conv2d(out, w, p + ".proj_out");
}

at::Tensor mid(at::Tensor h, const BlockLease& w, const std::string& p, AttentionBackend backend) {
  h = resnet(h, w, p + ".block_1");
  h = attention(h, w, p + ".attn_1", backend);
  return resnet(h, w, p + ".block_2");
}

// Nearest ×2. Half/bf16 kernels may be missing on some builds (ComfyUI's interpolate_up falls
// back the same way); nearest only copies values, so the fp32 detour is exact.
at::Tensor upsample2x(const at::Tensor& x) {
  const std::vector<int64_t> size{x.size(2) * 2, x.size(3) * 2};
  try {
    return at::upsample_nearest2d(x, size);
  } catch (const c10::Error& e) {
    // A missing kernel, not a full device: the fp32 detour would only need more memory.
    if (x.scalar_type() == at::kFloat || compat::is_cuda_out_of_memory(e)) throw;
    return at::upsample_nearest2d(x.to(at::kFloat), size).to(x.scalar_type());
  }
}

}  // namespace

AutoencoderKL::AutoencoderKL(VaeConfig config, std::shared_ptr<const WeightStore> weights,
                             Residency& residency)
    : config_(std::move(config)), weights_(std::move(weights)), residency_(residency) {
  config_.validate();
  if (!weights_) throw Error(ErrorKind::kModel, "VAE: no weights");
  std::vector<std::string> names = vae_decode_blocks(config_);
  if (config_.has_encoder)
    for (const std::string& n : vae_encode_blocks(config_)) names.push_back(n);
  for (const std::string& name : names)
    if (!weights_->has_block(name))
      throw Error(ErrorKind::kModel,
                  "VAE: weight store '" + weights_->model_name() + "' has no block '" + name + "'");
}

at::Tensor AutoencoderKL::encode(const at::Tensor& x, const VaeRunOptions& options) const {
  if (!config_.has_encoder) throw Error(ErrorKind::kModel, "VAE: this VAE file has no encoder");
  if (x.dim() != 4 || x.size(1) != config_.in_channels)
    throw Error(ErrorKind::kRuntime, "VAE encode: x must be [B, " + std::to_string(config_.in_channels) +
                                         ", H, W], got " + c10::str(x.sizes()));
  auto acquire = [&](const std::string& block) {
    if (options.check_cancel) options.check_cancel();
    return residency_.acquire(*weights_, block);
  };
  at::Tensor h;
  {
    const BlockLease w = acquire("encoder.conv_in");
    const at::Tensor& first = w.at("encoder.conv_in.weight");
    h = ops::conv2d(x.to(first.device(), weights_->compute_dtype()), w, "encoder.conv_in", 1, 1);
  }
  const auto levels = static_cast<int64_t>(config_.ch_mult.size());
  for (int64_t i = 0; i < levels; ++i) {
    const std::string level = "encoder.down." + std::to_string(i);
    const BlockLease w = acquire(level);
    for (int64_t b = 0; b < config_.num_res_blocks; ++b)
      h = resnet(h, w, level + ".block." + std::to_string(b));
    // The conv has no padding of its own: pad right and bottom only, as ComfyUI's Downsample.
    if (i + 1 < levels)
      h = ops::conv2d(at::constant_pad_nd(h, {0, 1, 0, 1}, 0), w, level + ".downsample.conv", 2, 0);
  }
  {
    const BlockLease w = acquire("encoder.mid");
    h = mid(h, w, "encoder.mid", options.attention);
  }
  const BlockLease w = acquire("encoder.out");
  h = ops::conv2d(norm_silu(h, w, "encoder.norm_out"), w, "encoder.conv_out", 1, 1);
  if (config_.has_quant_conv) h = ops::conv2d(h, w, "quant_conv");
  return h.narrow(1, 0, h.size(1) / 2);  // the mean half of [mean, logvar]
}

at::Tensor AutoencoderKL::decode(const at::Tensor& z, const VaeRunOptions& options) const {
  if (z.dim() != 4 || z.size(1) != config_.latent_channels())
    throw Error(ErrorKind::kRuntime, "VAE decode: z must be [B, " +
                                         std::to_string(config_.latent_channels()) + ", h, w], got " +
                                         c10::str(z.sizes()));
  auto acquire = [&](const std::string& block) {
    if (options.check_cancel) options.check_cancel();
    return residency_.acquire(*weights_, block);
  };
  at::Tensor h;
  {
    const BlockLease w = acquire("decoder.in");
    const at::Tensor& conv_in = w.at("decoder.conv_in.weight");
    h = z.to(conv_in.device(), weights_->compute_dtype());
    if (config_.has_quant_conv) h = ops::conv2d(h, w, "post_quant_conv");
    h = ops::conv2d(h, w, "decoder.conv_in", 1, 1);
  }
  {
    const BlockLease w = acquire("decoder.mid");
    h = mid(h, w, "decoder.mid", options.attention);
  }
  for (int64_t i = static_cast<int64_t>(config_.ch_mult.size()) - 1; i >= 0; --i) {
    const std::string level = "decoder.up." + std::to_string(i);
    const BlockLease w = acquire(level);
    for (int64_t b = 0; b <= config_.num_res_blocks; ++b)
      h = resnet(h, w, level + ".block." + std::to_string(b));
    if (i > 0) {
      at::Tensor up = upsample2x(h);
      h.reset();  // not read again: the conv's output can take its place
      h = ops::conv2d(up, w, level + ".upsample.conv", 1, 1);
    }
  }
  const BlockLease w = acquire("decoder.out");
  return ops::conv2d(norm_silu(h, w, "decoder.norm_out"), w, "decoder.conv_out", 1, 1);
}

}  // namespace sdflow
