#include "models/common/block_store.h"
#include "models/unet/unet_layout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

using Kind = UNetLayer::Kind;
using Role = UNetParam::Role;

// Inputs of these layers went through SiLU or GEGLU: E[silu(z)²] ≈ 0.36, E[gelu(z)²] ≈ 0.43 for
// z ~ N(0, 1), so a 1/sqrt(fan_in) init would shrink the signal by ~0.6 at each of them.
constexpr double kActGain = 1.6;

std::string cat(const std::string& prefix, const std::string& rest) { return prefix + "." + rest; }

UNetLayer res_layer(const std::string& prefix, int64_t in, int64_t out) {
  return UNetLayer{Kind::kResBlock, prefix, in, out};
}

UNetLayer transformer_layer(const UNetConfig& c, const std::string& prefix, int64_t ch, int64_t depth) {
  UNetLayer l{Kind::kTransformer, prefix, ch, ch};
  l.heads = c.heads_for(ch);
  l.head_dim = c.head_dim_for(ch);
  l.depth = depth;
  return l;
}

}  // namespace

std::string transformer_block_unit(const UNetLayer& layer, int64_t d) {
  return layer.prefix + ".transformer_blocks." + std::to_string(d);
}

std::vector<std::string> layer_units(const UNetLayer& layer) {
  std::vector<std::string> units{layer.prefix};
  if (layer.kind == Kind::kTransformer)
    for (int64_t d = 0; d < layer.depth; ++d) units.push_back(transformer_block_unit(layer, d));
  return units;
}

namespace {

class ParamList {
 public:
  explicit ParamList(std::vector<UNetParam>& out) : out_(out) {}
  void set_block(std::string block) { block_ = std::move(block); }

  void linear(const std::string& p, int64_t in, int64_t out, double gain = 1.0, bool bias = true) {
    add(p + ".weight", {out, in}, Role::kWeight, gain);
    if (bias) add(p + ".bias", {out}, Role::kBias);
  }
  void conv(const std::string& p, int64_t in, int64_t out, int64_t k, double gain = 1.0) {
    add(p + ".weight", {out, in, k, k}, Role::kWeight, gain);
    add(p + ".bias", {out}, Role::kBias);
  }
  void norm(const std::string& p, int64_t ch) {
    add(p + ".weight", {ch}, Role::kNormWeight);
    add(p + ".bias", {ch}, Role::kNormBias);
  }

  void res_block(const std::string& p, int64_t in, int64_t out, int64_t emb) {
    norm(cat(p, "in_layers.0"), in);
    conv(cat(p, "in_layers.2"), in, out, 3, kActGain);
    linear(cat(p, "emb_layers.1"), emb, out, kActGain);
    norm(cat(p, "out_layers.0"), out);
    conv(cat(p, "out_layers.3"), out, out, 3, kActGain);
    if (in != out) conv(cat(p, "skip_connection"), in, out, 1);
  }

  void transformer(const UNetLayer& l, int64_t context_dim, bool use_linear) {
    const int64_t ch = l.in_channels, inner = l.heads * l.head_dim;
    const int64_t ctx = context_dim > 0 ? context_dim : inner;
    const std::string outer = block_;
    norm(cat(l.prefix, "norm"), ch);
    if (use_linear)
      linear(cat(l.prefix, "proj_in"), ch, inner);
    else
      conv(cat(l.prefix, "proj_in"), ch, inner, 1);
    for (int64_t d = 0; d < l.depth; ++d) {
      const std::string b = transformer_block_unit(l, d);
      set_block(b);
      for (const char* attn : {"attn1", "attn2"}) {
        const int64_t kv_in = std::string(attn) == "attn1" ? inner : ctx;
        linear(cat(b, std::string(attn) + ".to_q"), inner, inner, 1.0, false);
        linear(cat(b, std::string(attn) + ".to_k"), kv_in, inner, 1.0, false);
        linear(cat(b, std::string(attn) + ".to_v"), kv_in, inner, 1.0, false);
        linear(cat(b, std::string(attn) + ".to_out.0"), inner, inner);
      }
      norm(cat(b, "norm1"), inner);
      norm(cat(b, "norm2"), inner);
      norm(cat(b, "norm3"), inner);
      linear(cat(b, "ff.net.0.proj"), inner, inner * 8);
      linear(cat(b, "ff.net.2"), inner * 4, inner, kActGain);
    }
    set_block(outer);  // proj_out belongs to the layer's first unit, acquired before the blocks
    // ComfyUI declares the Linear proj_out as Linear(in_channels, inner_dim): [inner, ch].
    if (use_linear)
      linear(cat(l.prefix, "proj_out"), ch, inner);
    else
      conv(cat(l.prefix, "proj_out"), inner, ch, 1);
  }

 private:
  void add(std::string key, std::vector<int64_t> shape, Role role, double gain = 1.0) {
    out_.push_back(UNetParam{std::move(key), std::move(shape), block_, role, gain});
  }
  std::vector<UNetParam>& out_;
  std::string block_;
};

}  // namespace

UNetPlan make_unet_plan(const UNetConfig& c) {
  c.validate();
  UNetPlan plan;
  plan.block_names.push_back("time_embed");
  if (c.adm_in_channels) plan.block_names.push_back("label_emb");

  int64_t ch = c.model_channels;
  std::vector<int64_t> skip_channels{ch};
  plan.input_blocks.push_back(
      {"input_blocks.0", {UNetLayer{Kind::kConv, "input_blocks.0.0", c.in_channels, ch}}});
  size_t res_index = 0;
  const size_t levels = c.channel_mult.size();
  for (size_t level = 0; level < levels; ++level) {
    const int64_t level_ch = c.channel_mult[level] * c.model_channels;
    for (int64_t r = 0; r < c.num_res_blocks[level]; ++r) {
      UNetBlock block{"input_blocks." + std::to_string(plan.input_blocks.size()), {}};
      block.layers.push_back(res_layer(cat(block.name, "0"), ch, level_ch));
      ch = level_ch;
      const int64_t depth = c.transformer_depth.at(res_index++);
      if (depth > 0) block.layers.push_back(transformer_layer(c, cat(block.name, "1"), ch, depth));
      plan.input_blocks.push_back(std::move(block));
      skip_channels.push_back(ch);
    }
    if (level + 1 < levels) {
      UNetBlock block{"input_blocks." + std::to_string(plan.input_blocks.size()), {}};
      block.layers.push_back(UNetLayer{Kind::kDownsample, cat(block.name, "0.op"), ch, ch});
      plan.input_blocks.push_back(std::move(block));
      skip_channels.push_back(ch);
    }
  }

  if (c.transformer_depth_middle >= -1) {
    UNetBlock mid{"middle_block", {res_layer("middle_block.0", ch, ch)}};
    if (c.transformer_depth_middle >= 0) {
      mid.layers.push_back(transformer_layer(c, "middle_block.1", ch, c.transformer_depth_middle));
      mid.layers.push_back(res_layer("middle_block.2", ch, ch));
    }
    plan.middle_block.push_back(std::move(mid));
  }

  for (size_t level = levels; level-- > 0;) {
    const int64_t level_ch = c.channel_mult[level] * c.model_channels;
    for (int64_t i = 0; i <= c.num_res_blocks[level]; ++i) {
      const int64_t skip = skip_channels.back();
      skip_channels.pop_back();
      const auto index = static_cast<int64_t>(plan.output_blocks.size());
      UNetBlock block{"output_blocks." + std::to_string(index), {}};
      block.layers.push_back(res_layer(cat(block.name, "0"), ch + skip, level_ch));
      ch = level_ch;
      const int64_t depth = c.output_transformer_depth(index);
      if (depth > 0) block.layers.push_back(transformer_layer(c, cat(block.name, "1"), ch, depth));
      if (level > 0 && i == c.num_res_blocks[level]) {
        const std::string p = cat(block.name, std::to_string(block.layers.size()) + ".conv");
        block.layers.push_back(UNetLayer{Kind::kUpsample, p, ch, ch});
      }
      plan.output_blocks.push_back(std::move(block));
    }
  }
  plan.out_norm_channels = ch;

  for (auto* part : {&plan.input_blocks, &plan.middle_block, &plan.output_blocks}) {
    for (UNetBlock& b : *part) {
      for (const UNetLayer& l : b.layers)
        for (std::string& u : layer_units(l)) b.units.push_back(std::move(u));
      plan.block_names.insert(plan.block_names.end(), b.units.begin(), b.units.end());
    }
  }
  plan.block_names.push_back("out");
  return plan;
}

std::vector<UNetParam> unet_params(const UNetConfig& c) {
  const UNetPlan plan = make_unet_plan(c);
  const int64_t emb = c.time_embed_dim();
  std::vector<UNetParam> params;
  ParamList p(params);

  p.set_block("time_embed");
  p.linear("time_embed.0", c.model_channels, emb);
  p.linear("time_embed.2", emb, emb, kActGain);
  if (c.adm_in_channels) {
    p.set_block("label_emb");
    p.linear("label_emb.0.0", *c.adm_in_channels, emb);
    p.linear("label_emb.0.2", emb, emb, kActGain);
  }
  auto add_block = [&](const UNetBlock& block) {
    for (const UNetLayer& l : block.layers) {
      p.set_block(l.prefix);
      switch (l.kind) {
        case Kind::kConv:
          p.conv(l.prefix, l.in_channels, l.out_channels, 3);
          break;
        case Kind::kResBlock:
          p.res_block(l.prefix, l.in_channels, l.out_channels, emb);
          break;
        case Kind::kTransformer:
          p.transformer(l, c.context_dim, c.use_linear_in_transformer);
          break;
        case Kind::kDownsample:
        case Kind::kUpsample:
          p.conv(l.prefix, l.in_channels, l.out_channels, 3);
          break;
      }
    }
  };
  for (const auto& b : plan.input_blocks) add_block(b);
  for (const auto& b : plan.middle_block) add_block(b);
  for (const auto& b : plan.output_blocks) add_block(b);
  p.set_block("out");
  p.norm("out.0", plan.out_norm_channels);
  p.conv("out.2", c.model_channels, c.out_channels, 3, kActGain);
  return params;
}

std::shared_ptr<WeightStore> build_unet_weight_store(const StateDict& unet_weights, const UNetConfig& config,
                                                     at::ScalarType storage, at::ScalarType compute) {
  BlockStoreSpec spec{"unet", "UNet", config.describe(), storage, compute, nullptr};
  return build_block_store(unet_weights, unet_params(config), spec);
}

std::map<std::string, at::Tensor> make_random_unet_weights(const UNetConfig& config, uint64_t seed,
                                                           at::ScalarType dtype) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::map<std::string, at::Tensor> out;
  for (const UNetParam& p : unet_params(config)) {
    at::Tensor t;
    switch (p.role) {
      case Role::kNormWeight:
        t = at::ones(p.shape, f32);
        break;
      case Role::kNormBias:
        t = at::zeros(p.shape, f32);
        break;
      case Role::kBias:
        t = at::randn(p.shape, gen, f32) * 0.1;
        break;
      case Role::kWeight: {
        int64_t fan_in = 1;
        for (size_t i = 1; i < p.shape.size(); ++i) fan_in *= p.shape[i];
        t = at::randn(p.shape, gen, f32) * (p.gain / std::sqrt(static_cast<double>(fan_in)));
        break;
      }
    }
    out.emplace(p.key, t.to(dtype));
  }
  return out;
}

}  // namespace sdflow
