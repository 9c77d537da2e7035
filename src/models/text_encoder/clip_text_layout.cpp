#include "models/common/block_store.h"
#include "models/text_encoder/clip_text_layout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/log.h"
#include "models/loader/state_dict.h"

namespace sdflow {

namespace {

using Role = ClipTextParam::Role;

// fc2's input went through (quick_)GELU: E[gelu(z)²] ≈ 0.43 for z ~ N(0, 1).
constexpr double kActGain = 1.6;

const char* const kTokenEmbedding = "text_model.embeddings.token_embedding.weight";
const char* const kPositionEmbedding = "text_model.embeddings.position_embedding.weight";

std::string layer_prefix(int64_t i) { return "text_model.encoder.layers." + std::to_string(i) + "."; }

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// open_clip resblock names ↔ HF encoder layer names (ComfyUI's transformers_convert table).
const std::vector<std::pair<std::string, std::string>>& resblock_renames() {
  static const std::vector<std::pair<std::string, std::string>> table{
      {"ln_1", "layer_norm1"},
      {"ln_2", "layer_norm2"},
      {"mlp.c_fc", "mlp.fc1"},
      {"mlp.c_proj", "mlp.fc2"},
      {"attn.out_proj", "self_attn.out_proj"},
  };
  return table;
}

}  // namespace

std::vector<ClipTextParam> clip_text_params(const ClipTextConfig& c) {
  c.validate();
  std::vector<ClipTextParam> out;
  const int64_t D = c.width, I = c.intermediate;
  const double residual = 1.0 / std::sqrt(2.0 * static_cast<double>(c.layers));
  std::string block;
  auto add = [&](std::string key, std::vector<int64_t> shape, Role role, double gain = 1.0) {
    out.push_back(ClipTextParam{std::move(key), std::move(shape), block, role, gain});
  };
  auto linear = [&](const std::string& p, int64_t in, int64_t o, double gain = 1.0) {
    add(p + ".weight", {o, in}, Role::kWeight, gain);
    add(p + ".bias", {o}, Role::kBias);
  };
  auto norm = [&](const std::string& p) {
    add(p + ".weight", {D}, Role::kNormWeight);
    add(p + ".bias", {D}, Role::kNormBias);
  };

  block = "embeddings";
  add(kTokenEmbedding, {c.vocab_size, D}, Role::kEmbedding);
  add(kPositionEmbedding, {c.max_positions, D}, Role::kEmbedding);
  for (int64_t i = 0; i < c.layers; ++i) {
    block = "encoder.layers." + std::to_string(i);
    const std::string p = layer_prefix(i);
    for (const char* proj : {"q_proj", "k_proj", "v_proj"}) linear(p + "self_attn." + proj, D, D);
    linear(p + "self_attn.out_proj", D, D, residual);
    norm(p + "layer_norm1");
    linear(p + "mlp.fc1", D, I);
    linear(p + "mlp.fc2", I, D, kActGain * residual);
    norm(p + "layer_norm2");
  }
  block = "final";
  norm("text_model.final_layer_norm");
  if (c.has_text_projection) add("text_projection.weight", {D, D}, Role::kWeight);
  return out;
}

std::vector<std::string> clip_text_block_names(const ClipTextConfig& c) {
  std::vector<std::string> names{"embeddings"};
  for (int64_t i = 0; i < c.layers; ++i) names.push_back("encoder.layers." + std::to_string(i));
  names.push_back("final");
  return names;
}

StateDict convert_open_clip_text(const StateDict& sd) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, t] : sd.tensors()) {
    std::string to;
    if (key == "positional_embedding") {
      to = kPositionEmbedding;
    } else if (key == "token_embedding.weight") {
      to = kTokenEmbedding;
    } else if (key == "ln_final.weight" || key == "ln_final.bias") {
      to = "text_model.final_layer_norm." + key.substr(9);
    } else if (key == "text_projection") {
      out["text_projection.weight"] = t.transpose(0, 1).contiguous();
      continue;
    } else if (starts_with(key, "transformer.resblocks.")) {
      const size_t dot = key.find('.', 22);
      if (dot == std::string::npos) {
        out.emplace(key, t);
        continue;
      }
      const std::string index = key.substr(22, dot - 22);
      const std::string rest = key.substr(dot + 1);
      const std::string layer = "text_model.encoder.layers." + index + ".";
      if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        const std::string suffix = rest == "attn.in_proj_weight" ? "weight" : "bias";
        const int64_t rows = t.size(0) / 3;
        const char* names[3] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
        for (int64_t i = 0; i < 3; ++i) out[layer + names[i] + suffix] = t.narrow(0, i * rows, rows);
        continue;
      }
      for (const auto& [from, hf] : resblock_renames())
        if (starts_with(rest, from + ".")) to = layer + hf + rest.substr(from.size());
    }
    out.emplace(to.empty() ? key : to, t);
  }
  return StateDict::from_tensors(std::move(out), sd.label());
}

StateDict normalize_hf_clip_text(const StateDict& sd) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, t] : sd.tensors())
    out.emplace(starts_with(key, "text_model.") ? key : "text_model." + key, t);
  return StateDict::from_tensors(std::move(out), sd.label());
}

std::shared_ptr<WeightStore> build_clip_text_weight_store(const StateDict& weights,
                                                          const ClipTextConfig& config,
                                                          at::ScalarType storage, at::ScalarType compute,
                                                          const std::string& model_name) {
  BlockStoreSpec spec{model_name, "CLIP text", config.describe(), storage, compute, nullptr};
  return build_block_store(weights, clip_text_params(config), spec);
}

namespace {

std::map<std::string, at::Tensor> to_open_clip(std::map<std::string, at::Tensor> hf, int64_t layers) {
  std::map<std::string, at::Tensor> out;
  auto take = [&](const std::string& key) {
    at::Tensor t = hf.at(key);
    hf.erase(key);
    return t;
  };
  out["token_embedding.weight"] = take(kTokenEmbedding);
  out["positional_embedding"] = take(kPositionEmbedding);
  out["ln_final.weight"] = take("text_model.final_layer_norm.weight");
  out["ln_final.bias"] = take("text_model.final_layer_norm.bias");
  for (int64_t i = 0; i < layers; ++i) {
    const std::string from = layer_prefix(i);
    const std::string to = "transformer.resblocks." + std::to_string(i) + ".";
    for (const char* s : {"weight", "bias"}) {
      const std::string suffix = s;
      out[to + "attn.in_proj_" + suffix] =
          at::cat({take(from + "self_attn.q_proj." + suffix), take(from + "self_attn.k_proj." + suffix),
                   take(from + "self_attn.v_proj." + suffix)});
      for (const auto& [oc, name] : resblock_renames())
        out[to + oc + "." + suffix] = take(from + name + "." + suffix);
    }
  }
  if (hf.count("text_projection.weight"))
    out["text_projection"] = take("text_projection.weight").transpose(0, 1).contiguous();
  for (auto& [k, t] : hf) out.emplace(k, std::move(t));
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> make_random_clip_weights(const ClipTextConfig& config, uint64_t seed,
                                                           at::ScalarType dtype, ClipKeyLayout layout) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::map<std::string, at::Tensor> out;
  for (const ClipTextParam& p : clip_text_params(config)) {
    at::Tensor t;
    switch (p.role) {
      case Role::kEmbedding:
        t = at::randn(p.shape, gen, f32) * 0.5;
        break;
      case Role::kNormWeight:
        t = at::ones(p.shape, f32);
        break;
      case Role::kNormBias:
        t = at::zeros(p.shape, f32);
        break;
      case Role::kBias:
        t = at::randn(p.shape, gen, f32) * 0.02;
        break;
      case Role::kWeight:
        t = at::randn(p.shape, gen, f32) * (p.gain / std::sqrt(static_cast<double>(p.shape.at(1))));
        break;
    }
    out.emplace(p.key, t.to(dtype));
  }
  if (layout == ClipKeyLayout::kHf) {
    out["text_model.embeddings.position_ids"] = at::arange(config.max_positions, at::kLong).unsqueeze(0);
    return out;
  }
  out = to_open_clip(std::move(out), config.layers);
  out["logit_scale"] = at::full({}, std::log(100.0), f32).to(dtype);  // open_clip's trained value ln(100)
  return out;
}

}  // namespace sdflow
