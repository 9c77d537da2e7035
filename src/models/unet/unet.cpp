#include "models/unet/unet.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "models/common/ops.h"

namespace sdflow {

namespace {

using Kind = UNetLayer::Kind;

constexpr int64_t kGroups = 32;
constexpr double kResNormEps = 1e-5;          // ResBlock and final GroupNorm: torch default
constexpr double kTransformerNormEps = 1e-6;  // SpatialTransformer's GroupNorm
constexpr double kLayerNormEps = 1e-5;

std::string cat(const std::string& prefix, const char* rest) { return prefix + "." + rest; }

// Everything a block's layers read besides their own weights.
struct BlockInputs {
  const at::Tensor& emb;      // [B, time_embed_dim]
  const at::Tensor& context;  // [B, N, context_dim]
  bool linear_proj;
  ops::AttentionOptions attention;                  // heads set per layer
  std::optional<std::vector<int64_t>> output_size;  // upsample target (the next skip's h, w)
};

// GroupNorm runs in the model dtype: ComfyUI's GroupNorm has no fp32 upcast (COMFY_COMPAT 4.14).
at::Tensor res_block(const at::Tensor& x, const BlockInputs& in, const BlockLease& w, const UNetLayer& l) {
  at::Tensor h = at::silu(ops::group_norm(x, w, cat(l.prefix, "in_layers.0"), kGroups, kResNormEps));
  h = ops::conv2d(h, w, cat(l.prefix, "in_layers.2"), 1, 1);
  at::Tensor emb_out = ops::linear(at::silu(in.emb), w, cat(l.prefix, "emb_layers.1")).to(h.scalar_type());
  h = h + emb_out.unsqueeze(-1).unsqueeze(-1);
  h = at::silu(ops::group_norm(h, w, cat(l.prefix, "out_layers.0"), kGroups, kResNormEps));
  h = ops::conv2d(h, w, cat(l.prefix, "out_layers.3"), 1, 1);
  const at::Tensor skip =
      l.in_channels == l.out_channels ? x : ops::conv2d(x, w, cat(l.prefix, "skip_connection"));
  return skip + h;
}

at::Tensor cross_attention(const at::Tensor& x, const at::Tensor& context, const BlockLease& w,
                           const std::string& p, const ops::AttentionOptions& options) {
  at::Tensor q = ops::linear(x, w, p + ".to_q");
  at::Tensor k = ops::linear(context, w, p + ".to_k");
  at::Tensor v = ops::linear(context, w, p + ".to_v");
  return ops::linear(ops::attention(q, k, v, options), w, p + ".to_out.0");
}

// GEGLU: the first half of the projection is the value, the second the gate; exact (erf) GELU.
at::Tensor feed_forward(const at::Tensor& x, const BlockLease& w, const std::string& p) {
  auto parts = ops::linear(x, w, p + ".net.0.proj").chunk(2, -1);
  return ops::linear(parts[0] * at::gelu(parts[1]), w, p + ".net.2");
}

// x: [B, N, C]
at::Tensor basic_transformer_block(at::Tensor x, const at::Tensor& context, const BlockLease& w,
                                   const std::string& p, const ops::AttentionOptions& options) {
  at::Tensor n = ops::layer_norm(x, w, p + ".norm1", kLayerNormEps);
  x = cross_attention(n, n, w, p + ".attn1", options) + x;
  n = ops::layer_norm(x, w, p + ".norm2", kLayerNormEps);
  x = cross_attention(n, context, w, p + ".attn2", options) + x;
  return x + feed_forward(ops::layer_norm(x, w, p + ".norm3", kLayerNormEps), w, p + ".ff");
}

// Hands out a residency unit's weights (UNetBlock::units).
using AcquireUnit = std::function<BlockLease(const std::string&)>;

// x: [B, C, H, W]. The layer's first unit (norm, proj_in, proj_out) is held throughout; each
// transformer block is its own unit, so a streamed stage never has more than its small head,
// the block computing and the block landing on the device.
at::Tensor spatial_transformer(const at::Tensor& x, const BlockInputs& in, const AcquireUnit& acquire,
                               const UNetLayer& l) {
  const BlockLease w = acquire(l.prefix);
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  ops::AttentionOptions attention = in.attention;
  attention.heads = l.heads;
  at::Tensor h = ops::group_norm(x, w, cat(l.prefix, "norm"), kGroups, kTransformerNormEps);
  if (!in.linear_proj) h = ops::conv2d(h, w, cat(l.prefix, "proj_in"));
  h = h.movedim(1, 3).flatten(1, 2).contiguous();  // [B, H·W, C]
  if (in.linear_proj) h = ops::linear(h, w, cat(l.prefix, "proj_in"));
  for (int64_t d = 0; d < l.depth; ++d) {
    const std::string unit = transformer_block_unit(l, d);
    const BlockLease block = acquire(unit);
    h = basic_transformer_block(h, in.context, block, unit, attention);
  }
  if (in.linear_proj) h = ops::linear(h, w, cat(l.prefix, "proj_out"));
  h = h.reshape({B, H, W, h.size(-1)}).movedim(3, 1).contiguous();
  if (!in.linear_proj) h = ops::conv2d(h, w, cat(l.prefix, "proj_out"));
  return h + x;
}

at::Tensor run_block(const UNetBlock& block, at::Tensor h, const BlockInputs& in, const AcquireUnit& acquire) {
  for (const UNetLayer& l : block.layers) {
    if (l.kind == Kind::kTransformer) {
      h = spatial_transformer(h, in, acquire, l);
      continue;
    }
    const BlockLease w = acquire(l.prefix);
    switch (l.kind) {
      case Kind::kConv:
        h = ops::conv2d(h, w, l.prefix, 1, 1);
        break;
      case Kind::kResBlock:
        h = res_block(h, in, w, l);
        break;
      case Kind::kTransformer:
        break;
      case Kind::kDownsample:
        h = ops::conv2d(h, w, l.prefix, 2, 1);
        break;
      case Kind::kUpsample: {
        // Always an explicit size, like ComfyUI's F.interpolate(size=...): the next skip's
        // size when there is one (odd sizes round-trip), else ×2.
        std::vector<int64_t> size =
            in.output_size ? *in.output_size : std::vector<int64_t>{h.size(2) * 2, h.size(3) * 2};
        h = ops::conv2d(at::upsample_nearest2d(h, size), w, l.prefix, 1, 1);
        break;
      }
    }
  }
  return h;
}

}  // namespace

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  const auto f32 = timesteps.options().dtype(at::kFloat);
  at::Tensor freqs = at::exp(at::arange(0, half, f32) * (-std::log(max_period)) / half);
  at::Tensor args = timesteps.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);
  at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, -1);
  if (dim % 2) emb = at::cat({emb, at::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

UNetModel::UNetModel(UNetConfig config, std::shared_ptr<const WeightStore> weights, Residency& residency)
    : config_(std::move(config)),
      plan_(make_unet_plan(config_)),
      weights_(std::move(weights)),
      residency_(residency) {
  if (!weights_) throw Error(ErrorKind::kModel, "UNet: no weights");
  for (const std::string& name : plan_.block_names)
    if (!weights_->has_block(name))
      throw Error(ErrorKind::kModel,
                  "UNet: weight store '" + weights_->model_name() + "' has no block '" + name + "'");
}

std::vector<std::string> UNetModel::swappable_blocks() const {
  std::vector<std::string> names;
  for (const auto* part : {&plan_.input_blocks, &plan_.middle_block, &plan_.output_blocks})
    for (const UNetBlock& b : *part) names.push_back(b.name);
  return names;
}

std::vector<std::string> UNetModel::units_of(const std::vector<std::string>& blocks) const {
  std::vector<std::string> units;
  for (const auto* part : {&plan_.input_blocks, &plan_.middle_block, &plan_.output_blocks})
    for (const UNetBlock& b : *part)
      if (std::find(blocks.begin(), blocks.end(), b.name) != blocks.end())
        units.insert(units.end(), b.units.begin(), b.units.end());
  return units;
}

at::Tensor UNetModel::forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& context,
                              const at::Tensor& y, const UNetRunOptions& options) const {
  if (x.dim() != 4 || x.size(1) != config_.in_channels)
    throw Error(ErrorKind::kRuntime, "UNet: x must be [B, " + std::to_string(config_.in_channels) +
                                         ", h, w], got " + c10::str(x.sizes()));
  if (y.defined() != config_.adm_in_channels.has_value())
    throw Error(ErrorKind::kRuntime, config_.adm_in_channels ? "UNet: this model needs the ADM input y"
                                                             : "UNet: this model takes no ADM input y");
  const at::ScalarType dtype = x.scalar_type();
  const AcquireUnit acquire = [&](const std::string& block) {
    if (options.check_cancel) options.check_cancel();
    return residency_.acquire(*weights_, block, options.weight_patch);
  };

  // fp32 scores: the config's request, overridden by the upcast flags (get_attn_precision:
  // --force-upcast-attention only upcasts fp16), and only where the backend can upcast.
  bool fp32_scores = config_.attn_precision_fp32;
  if (options.upcast_attention == UpcastAttention::kNever) fp32_scores = false;
  if (options.upcast_attention == UpcastAttention::kForce && dtype == at::kHalf) fp32_scores = true;
  ops::AttentionOptions attention;
  attention.backend = options.attention;
  attention.upcast = fp32_scores && (options.attention == AttentionBackend::kSplit ||
                                     options.attention == AttentionBackend::kQuad);
  attention.free_memory = options.free_memory;
  attention.sage = options.sage;

  at::Tensor emb;
  {
    const BlockLease w = acquire("time_embed");
    at::Tensor t_emb = timestep_embedding(timesteps.to(x.device()), config_.model_channels).to(dtype);
    emb = ops::linear(at::silu(ops::linear(t_emb, w, "time_embed.0")), w, "time_embed.2");
  }
  if (config_.adm_in_channels) {
    if (y.size(0) != x.size(0)) throw Error(ErrorKind::kRuntime, "UNet: y and x batch sizes differ");
    const BlockLease w = acquire("label_emb");
    at::Tensor yin = at::isFloatingType(y.scalar_type()) ? y.to(x.device(), dtype) : y.to(x.device());
    emb = emb + ops::linear(at::silu(ops::linear(yin, w, "label_emb.0.0")), w, "label_emb.0.2");
  }
  const at::Tensor ctx = context.to(x.device(), dtype);
  BlockInputs in{emb, ctx, config_.use_linear_in_transformer, attention, std::nullopt};

  std::vector<at::Tensor> hs;
  at::Tensor h = x;
  for (const UNetBlock& block : plan_.input_blocks) {
    h = run_block(block, h, in, acquire);
    hs.push_back(h);
  }
  for (const UNetBlock& block : plan_.middle_block) h = run_block(block, h, in, acquire);
  UNetPatchContext patch_ctx;
  patch_ctx.original_shape = x.sizes().vec();
  for (size_t i = 0; i < plan_.output_blocks.size(); ++i) {
    const UNetBlock& block = plan_.output_blocks[i];
    at::Tensor hsp = std::move(hs.back());
    hs.pop_back();
    patch_ctx.output_block = static_cast<int64_t>(i);
    for (const OutputBlockPatch& patch : options.output_block_patches)
      std::tie(h, hsp) = patch(h, hsp, patch_ctx);
    h = at::cat({h, hsp}, 1);
    hsp.reset();
    in.output_size = hs.empty() ? std::nullopt
                                : std::optional<std::vector<int64_t>>({hs.back().size(2), hs.back().size(3)});
    h = run_block(block, h, in, acquire);
  }

  h = h.to(dtype);
  const BlockLease w = acquire("out");
  h = at::silu(ops::group_norm(h, w, "out.0", kGroups, kResNormEps));
  return ops::conv2d(h, w, "out.2", 1, 1);
}

}  // namespace sdflow
