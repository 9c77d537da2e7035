#include "models/text_encoder/clip_text.h"

#include <limits>
#include <string>

#include "core/error.h"
#include "models/common/ops.h"
#include "models/text_encoder/clip_text_layout.h"

namespace sdflow {

namespace {

constexpr double kLayerNormEps = 1e-5;

at::Tensor f32(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }

// ComfyUI's manual_cast Linear/LayerNorm: the weights come to the input's dtype (fp32).
at::Tensor linear(const at::Tensor& x, const BlockLease& w, const std::string& p) {
  const std::string bias = p + ".bias";
  return w.has(bias) ? at::linear(x, f32(w.at(p + ".weight")), f32(w.at(bias)))
                     : at::linear(x, f32(w.at(p + ".weight")));
}

at::Tensor layer_norm(const at::Tensor& x, const BlockLease& w, const std::string& p) {
  return at::layer_norm(x, {x.size(-1)}, f32(w.at(p + ".weight")), f32(w.at(p + ".bias")), kLayerNormEps);
}

at::Tensor activation(const at::Tensor& x, ClipActivation act) {
  return act == ClipActivation::kQuickGelu ? x * at::sigmoid(x * 1.702) : at::gelu(x);
}

}  // namespace

ClipTextModel::ClipTextModel(ClipTextConfig config, std::shared_ptr<const WeightStore> weights,
                             Residency& residency)
    : config_(std::move(config)), weights_(std::move(weights)), residency_(residency) {
  config_.validate();
  if (!weights_) throw Error(ErrorKind::kModel, "CLIP text: no weights");
  for (const std::string& name : clip_text_block_names(config_))
    if (!weights_->has_block(name))
      throw Error(ErrorKind::kModel,
                  "CLIP text: weight store '" + weights_->model_name() + "' has no block '" + name + "'");
}

at::Tensor ClipTextModel::embed_tokens(const at::Tensor& ids, const WeightPatch* weight_patch) const {
  const BlockLease w = residency_.acquire(*weights_, "embeddings", weight_patch);
  const at::Tensor& table = w.at("text_model.embeddings.token_embedding.weight");
  return at::embedding(table, ids.to(table.device(), at::kLong)).to(at::kFloat);
}

ClipTextOutput ClipTextModel::forward_embeds(const at::Tensor& embeds, const std::vector<int64_t>& num_tokens,
                                             const ClipTextRunOptions& options) const {
  if (embeds.dim() != 3 || embeds.size(2) != config_.width || embeds.size(1) != config_.max_positions)
    throw Error(ErrorKind::kRuntime,
                "CLIP text: embeds must be [B, " + std::to_string(config_.max_positions) + ", " +
                    std::to_string(config_.width) + "], got " + c10::str(embeds.sizes()));
  const int64_t B = embeds.size(0), N = embeds.size(1), L = config_.layers;
  if (static_cast<int64_t>(num_tokens.size()) != B)
    throw Error(ErrorKind::kRuntime, "CLIP text: one num_tokens entry per sequence needed");
  auto acquire = [&](const std::string& block) {
    if (options.check_cancel) options.check_cancel();
    return residency_.acquire(*weights_, block, options.weight_patch);
  };

  std::optional<int64_t> inter;
  if (options.intermediate_layer) {
    inter = *options.intermediate_layer < 0 ? L + *options.intermediate_layer : *options.intermediate_layer;
    // ComfyUI would produce no output at all (and fail on None) for such an index.
    if (*inter < 0 || *inter >= L)
      throw Error(ErrorKind::kRuntime, "CLIP text: layer " + std::to_string(*options.intermediate_layer) +
                                           " does not exist (" + std::to_string(L) + " layers)");
  }

  at::Tensor x;
  {
    const BlockLease w = acquire("embeddings");
    const at::Tensor& pos = w.at("text_model.embeddings.position_embedding.weight");
    x = embeds.to(pos.device(), at::kFloat) + f32(pos);
  }
  const auto opts = x.options();
  at::Tensor mask = at::full({N, N}, -std::numeric_limits<float>::max(), opts).triu_(1);
  ops::AttentionOptions attention;
  attention.heads = config_.heads;
  attention.mask = mask;

  ClipTextOutput out;
  for (int64_t i = 0; i < L; ++i) {
    const BlockLease w = acquire("encoder.layers." + std::to_string(i));
    const std::string p = "text_model.encoder.layers." + std::to_string(i) + ".";
    at::Tensor h = layer_norm(x, w, p + "layer_norm1");
    at::Tensor q = linear(h, w, p + "self_attn.q_proj");
    at::Tensor k = linear(h, w, p + "self_attn.k_proj");
    at::Tensor v = linear(h, w, p + "self_attn.v_proj");
    x = x + linear(ops::attention(q, k, v, attention), w, p + "self_attn.out_proj");
    h = activation(linear(layer_norm(x, w, p + "layer_norm2"), w, p + "mlp.fc1"), config_.activation);
    x = x + linear(h, w, p + "mlp.fc2");
    if (inter && *inter == i) out.intermediate = x;
  }

  const BlockLease w = acquire("final");
  out.last = layer_norm(x, w, "text_model.final_layer_norm");
  if (out.intermediate.defined() && options.final_layer_norm_intermediate)
    out.intermediate = layer_norm(out.intermediate, w, "text_model.final_layer_norm");
  std::vector<int64_t> rows;
  for (int64_t n : num_tokens) {
    if (n < 1 || n > N) throw Error(ErrorKind::kRuntime, "CLIP text: num_tokens out of range");
    rows.push_back(n - 1);
  }
  const at::Tensor index = at::tensor(rows, at::kLong).to(x.device());
  out.pooled = out.last.index({at::arange(B, index.options()), index});
  if (w.has("text_projection.weight")) out.projected = linear(out.pooled, w, "text_projection");
  return out;
}

ClipTextOutput ClipTextModel::forward(const at::Tensor& tokens, const ClipTextRunOptions& options) const {
  if (tokens.dim() != 2) throw Error(ErrorKind::kRuntime, "CLIP text: tokens must be [B, N]");
  const at::Tensor first_eos = tokens.eq(config_.eos_token).to(at::kInt).argmax(-1).to(at::kCPU);
  std::vector<int64_t> num_tokens;
  for (int64_t b = 0; b < tokens.size(0); ++b) num_tokens.push_back(first_eos[b].item<int64_t>() + 1);
  return forward_embeds(embed_tokens(tokens), num_tokens, options);
}

}  // namespace sdflow
