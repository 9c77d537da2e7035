#include "models/common/block_store.h"
#include "models/vae/vae_layout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

using Role = VaeParam::Role;

// Inputs of these convs went through SiLU: E[silu(z)²] ≈ 0.36 for z ~ N(0, 1).
constexpr double kActGain = 1.6;
constexpr double kResidual = 0.5;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

class ParamList {
 public:
  explicit ParamList(std::vector<VaeParam>& out) : out_(out) {}
  void set_block(std::string block) { block_ = std::move(block); }

  void conv(const std::string& p, int64_t in, int64_t out, int64_t k, double gain = 1.0) {
    add(p + ".weight", {out, in, k, k}, Role::kWeight, gain);
    add(p + ".bias", {out}, Role::kBias);
  }
  void norm(const std::string& p, int64_t ch) {
    add(p + ".weight", {ch}, Role::kNormWeight);
    add(p + ".bias", {ch}, Role::kNormBias);
  }
  void resnet(const std::string& p, int64_t in, int64_t out) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3, kActGain);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3, kActGain * kResidual);
    if (in != out) conv(p + ".nin_shortcut", in, out, 1);
  }
  void attention(const std::string& p, int64_t ch) {
    norm(p + ".norm", ch);
    conv(p + ".q", ch, ch, 1);
    conv(p + ".k", ch, ch, 1);
    conv(p + ".v", ch, ch, 1);
    conv(p + ".proj_out", ch, ch, 1, kResidual);
  }
  void mid(const std::string& p, int64_t ch) {
    resnet(p + ".block_1", ch, ch);
    attention(p + ".attn_1", ch);
    resnet(p + ".block_2", ch, ch);
  }

 private:
  void add(std::string key, std::vector<int64_t> shape, Role role, double gain = 1.0) {
    out_.push_back(VaeParam{std::move(key), std::move(shape), block_, role, gain});
  }
  std::vector<VaeParam>& out_;
  std::string block_;
};

bool is_attention_matrix(const std::string& key) {
  for (const char* s :
       {".attn_1.q.weight", ".attn_1.k.weight", ".attn_1.v.weight", ".attn_1.proj_out.weight"}) {
    const std::string suffix = s;
    if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

}  // namespace

std::vector<VaeParam> vae_params(const VaeConfig& c) {
  c.validate();
  std::vector<VaeParam> out;
  ParamList p(out);
  const auto levels = static_cast<int64_t>(c.ch_mult.size());
  if (c.has_encoder) {
    p.set_block("encoder.conv_in");
    p.conv("encoder.conv_in", c.in_channels, c.ch, 3);
    int64_t block_in = c.ch;
    for (int64_t i = 0; i < levels; ++i) {
      const std::string level = "encoder.down." + std::to_string(i);
      p.set_block(level);
      const int64_t block_out = c.ch * c.ch_mult[i];
      for (int64_t b = 0; b < c.num_res_blocks; ++b) {
        p.resnet(level + ".block." + std::to_string(b), block_in, block_out);
        block_in = block_out;
      }
      if (i + 1 < levels) p.conv(level + ".downsample.conv", block_in, block_in, 3);
    }
    p.set_block("encoder.mid");
    p.mid("encoder.mid", block_in);
    p.set_block("encoder.out");
    p.norm("encoder.norm_out", block_in);
    p.conv("encoder.conv_out", block_in, 2 * c.z_channels, 3, kActGain);
    if (c.has_quant_conv) p.conv("quant_conv", 2 * c.z_channels, 2 * c.embed_dim, 1);
  }

  int64_t block_in = c.ch * c.ch_mult.back();
  p.set_block("decoder.in");
  if (c.has_quant_conv) p.conv("post_quant_conv", c.embed_dim, c.z_channels, 1);
  p.conv("decoder.conv_in", c.z_channels, block_in, 3);
  p.set_block("decoder.mid");
  p.mid("decoder.mid", block_in);
  for (int64_t i = levels - 1; i >= 0; --i) {
    const std::string level = "decoder.up." + std::to_string(i);
    p.set_block(level);
    const int64_t block_out = c.ch * c.ch_mult[i];
    for (int64_t b = 0; b <= c.num_res_blocks; ++b) {
      p.resnet(level + ".block." + std::to_string(b), block_in, block_out);
      block_in = block_out;
    }
    if (i > 0) p.conv(level + ".upsample.conv", block_in, block_in, 3);
  }
  p.set_block("decoder.out");
  p.norm("decoder.norm_out", block_in);
  p.conv("decoder.conv_out", block_in, c.out_ch, 3, kActGain);
  return out;
}

std::vector<std::string> vae_encode_blocks(const VaeConfig& c) {
  std::vector<std::string> names{"encoder.conv_in"};
  for (size_t i = 0; i < c.ch_mult.size(); ++i) names.push_back("encoder.down." + std::to_string(i));
  names.push_back("encoder.mid");
  names.push_back("encoder.out");
  return names;
}

std::vector<std::string> vae_decode_blocks(const VaeConfig& c) {
  std::vector<std::string> names{"decoder.in", "decoder.mid"};
  for (size_t i = c.ch_mult.size(); i-- > 0;) names.push_back("decoder.up." + std::to_string(i));
  names.push_back("decoder.out");
  return names;
}

StateDict normalize_vae_keys(const StateDict& sd) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, t] : sd.tensors()) {
    std::string k = key;
    if (starts_with(k, "decoder.post_quant_conv.")) k = k.substr(8);
    if (starts_with(k, "encoder.quant_conv.")) k = k.substr(8);
    out.emplace(std::move(k), t);
  }
  return StateDict::from_tensors(std::move(out), sd.label());
}

std::shared_ptr<WeightStore> build_vae_weight_store(const StateDict& vae_weights, const VaeConfig& config,
                                                    at::ScalarType storage, at::ScalarType compute) {
  BlockStoreSpec spec{"vae", "VAE", config.describe(), storage, compute,
                      [](const std::string& key, at::Tensor t) {
                        // Attention projections stored as Linear matrices load as 1×1 convs.
                        return t.dim() == 2 && is_attention_matrix(key) ? t.reshape({t.size(0), t.size(1), 1, 1}) : t;
                      }};
  return build_block_store(vae_weights, vae_params(config), spec);
}

std::map<std::string, at::Tensor> make_random_vae_weights(const VaeConfig& config, uint64_t seed,
                                                          at::ScalarType dtype) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::map<std::string, at::Tensor> out;
  for (const VaeParam& p : vae_params(config)) {
    at::Tensor t;
    switch (p.role) {
      case Role::kNormWeight:
        t = at::ones(p.shape, f32);
        break;
      case Role::kNormBias:
        t = at::zeros(p.shape, f32);
        break;
      case Role::kBias:
        t = at::randn(p.shape, gen, f32) * 0.05;
        break;
      case Role::kWeight: {
        const int64_t fan_in = p.shape[1] * p.shape[2] * p.shape[3];
        t = at::randn(p.shape, gen, f32) * (p.gain / std::sqrt(static_cast<double>(fan_in)));
        break;
      }
    }
    out.emplace(p.key, t.to(dtype));
  }
  return out;
}

}  // namespace sdflow
