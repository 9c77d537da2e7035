// CLIP text encoder: config detection, key layouts and renames, random weights, layer selection,
// pooled positions, prompt weighting and textual-inversion rows (no golden files needed).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_encode.h"
#include "models/text_encoder/clip_text_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

constexpr int32_t kStart = 49406, kEnd = 49407;

std::map<std::string, std::vector<int64_t>> shapes_of(const ClipTextConfig& c) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const ClipTextParam& p : clip_text_params(c)) out[p.key] = p.shape;
  return out;
}

struct Tiny {
  std::shared_ptr<WeightStore> store;
  std::unique_ptr<ClipTextModel> model;
};

Tiny make_tiny(const ClipTextConfig& config, Residency& residency, uint64_t seed = 7) {
  Tiny t;
  t.store = build_clip_text_weight_store(
      StateDict::from_tensors(make_random_clip_weights(config, seed, at::kHalf), "tiny"), config, at::kHalf,
      at::kFloat);
  t.model = std::make_unique<ClipTextModel>(config, t.store, residency);
  return t;
}

// [start, ids…, end, pad…] of 77 tokens, all weight `w` except start/end/pad.
std::vector<WeightedToken> chunk(const std::vector<int32_t>& ids, int32_t pad, double w = 1.0) {
  std::vector<WeightedToken> c{{kStart}};
  for (int32_t id : ids) c.push_back({id, w});
  c.push_back({kEnd});
  c.resize(77, WeightedToken{pad});
  return c;
}

ClipTokens tokens(std::vector<std::vector<WeightedToken>> chunks) {
  ClipTokens t;
  t.prompt.chunks = std::move(chunks);
  return t;
}

TEST(ClipTextConfig, DetectsTheThreeFamiliesFromShapes) {
  for (const ClipTextConfig& c :
       {ClipTextConfig::clip_l(), ClipTextConfig::clip_h(), ClipTextConfig::clip_g()}) {
    const ClipTextConfig d = ClipTextConfig::detect_from_shapes(shapes_of(c));
    EXPECT_TRUE(d.same_architecture(c)) << d.describe();
    EXPECT_EQ(d.heads, c.heads);
    EXPECT_EQ(d.activation, c.activation);
    EXPECT_EQ(d.family(), c.family());
  }
  EXPECT_EQ(ClipTextConfig::clip_l().family(), "clip_l");
  EXPECT_EQ(ClipTextConfig::clip_h().family(), "clip_h");
  EXPECT_EQ(ClipTextConfig::clip_g().family(), "clip_g");
  EXPECT_EQ(ClipTextConfig::tiny_l().family(), "unknown");
  EXPECT_THROW(ClipTextConfig::detect_from_shapes({{"token_embedding.weight", {49408, 1280}}}), Error);
}

TEST(ClipTextLayout, BlocksAndParams) {
  const auto params = clip_text_params(ClipTextConfig::clip_l());
  EXPECT_EQ(params.size(), 2u + 12u * 16u + 2u);
  EXPECT_EQ(params.front().key, "text_model.embeddings.token_embedding.weight");
  EXPECT_EQ(params.back().block, "final");
  const auto names = clip_text_block_names(ClipTextConfig::clip_g());
  EXPECT_EQ(names.size(), 34u);
  EXPECT_EQ(names[1], "encoder.layers.0");
}

TEST(ClipTextLayout, OpenClipConversionRoundTrips) {
  const ClipTextConfig c = ClipTextConfig::tiny_g();
  auto hf = make_random_clip_weights(c, 3, at::kFloat, ClipKeyLayout::kHf);
  const auto oc = make_random_clip_weights(c, 3, at::kFloat, ClipKeyLayout::kOpenClip);
  EXPECT_TRUE(oc.count("transformer.resblocks.2.attn.in_proj_weight"));
  EXPECT_EQ(oc.at("transformer.resblocks.0.attn.in_proj_weight").sizes(), at::IntArrayRef({96, 32}));
  EXPECT_TRUE(oc.count("logit_scale"));
  EXPECT_TRUE(oc.count("positional_embedding"));
  const StateDict back = convert_open_clip_text(StateDict::from_tensors(oc));
  hf.erase("text_model.embeddings.position_ids");
  for (const auto& [k, t] : hf) {
    ASSERT_TRUE(back.has(k)) << k;
    EXPECT_TRUE(back.at(k).equal(t)) << k;
  }
  EXPECT_EQ(back.tensors().size(), hf.size() + 1);  // + logit_scale, passed through
}

TEST(ClipTextLayout, NormalizesLegacyHfKeys) {
  const StateDict sd = StateDict::from_tensors({{"embeddings.token_embedding.weight", at::zeros({2})},
                                                {"text_model.final_layer_norm.bias", at::zeros({2})}});
  const StateDict n = normalize_hf_clip_text(sd);
  EXPECT_TRUE(n.has("text_model.embeddings.token_embedding.weight"));
  EXPECT_TRUE(n.has("text_model.final_layer_norm.bias"));
}

TEST(ClipTextLayout, StoreRejectsMissingOrMisshapenWeights) {
  const ClipTextConfig c = ClipTextConfig::tiny_l();
  auto w = make_random_clip_weights(c, 1, at::kFloat);
  w.erase("text_model.encoder.layers.1.mlp.fc2.bias");
  EXPECT_THROW(build_clip_text_weight_store(StateDict::from_tensors(w), c, at::kFloat, at::kFloat), Error);
  w = make_random_clip_weights(c, 1, at::kFloat);
  w["text_model.final_layer_norm.weight"] = at::ones({31});
  EXPECT_THROW(build_clip_text_weight_store(StateDict::from_tensors(w), c, at::kFloat, at::kFloat), Error);
}

// Full-size CLIP-L with random weights in the checkpoint layout, detected as such.
TEST(ClipTextModel, RandomClipLHasTheCheckpointLayout) {
  const auto w = make_random_clip_weights(ClipTextConfig::clip_l(), 11, at::kHalf);
  ASSERT_TRUE(w.count("text_model.embeddings.position_ids"));
  EXPECT_EQ(w.at("text_model.embeddings.position_ids").scalar_type(), at::kLong);
  EXPECT_EQ(w.at("text_model.encoder.layers.11.mlp.fc1.weight").scalar_type(), at::kHalf);
  EXPECT_EQ(w.size(), clip_text_params(ClipTextConfig::clip_l()).size() + 1);
  const StateDict sd = StateDict::from_tensors(w, "random-clip-l");
  const ClipTextConfig c = ClipTextConfig::detect(sd);
  EXPECT_EQ(c.family(), "clip_l");
  EXPECT_FALSE(c.has_text_projection);
  EXPECT_NO_THROW(build_clip_text_weight_store(sd, c, at::kHalf, at::kFloat));
}

// Random weights keep hidden states O(1) at CLIP-L's and CLIP-G's depths (narrower here: the
// CPU test build has a reference BLAS), and the model asks for blocks in execution order.
TEST(ClipTextModel, RandomWeightsStayOrderOne) {
  for (int64_t layers : {12, 32}) {
    ClipTextConfig c = layers == 12 ? ClipTextConfig::clip_l() : ClipTextConfig::clip_g();
    c.width = 128;
    c.heads = 2;
    c.intermediate = 512;
    const StateDict sd = StateDict::from_tensors(make_random_clip_weights(c, 11, at::kHalf));
    testing::RecordingResidency rec(testing::cpu_memory().residency());
    ClipTextModel model(c, build_clip_text_weight_store(sd, c, at::kHalf, at::kFloat), rec);
    std::vector<int64_t> ids{kStart, 320, 1125, 539, 2368, kEnd};
    ids.resize(77, kEnd);
    ClipTextRunOptions opt;
    opt.intermediate_layer = -2;
    opt.final_layer_norm_intermediate = false;
    const ClipTextOutput out = model.forward(at::tensor(ids, at::kLong).unsqueeze(0), opt);
    EXPECT_EQ(out.last.sizes(), at::IntArrayRef({1, 77, 128}));
    const double hidden_std = out.intermediate.std().item<double>();
    EXPECT_GT(hidden_std, 0.3) << layers;
    EXPECT_LT(hidden_std, 3.0) << layers;
    EXPECT_NEAR(out.last.std().item<double>(), 1.0, 0.05);
    EXPECT_EQ(out.projected.defined(), c.has_text_projection);
    ASSERT_EQ(rec.acquired.size(), static_cast<size_t>(layers) + 3);  // embeddings ×2, layers, final
    EXPECT_EQ(rec.acquired[0], "embeddings");
    EXPECT_EQ(rec.acquired[2], "encoder.layers.0");
    EXPECT_EQ(rec.acquired.back(), "final");
  }
}

TEST(ClipTextModel, PooledRowIsTheFirstEndToken) {
  Tiny t = make_tiny(ClipTextConfig::tiny_g(), testing::cpu_memory().residency());
  std::vector<int64_t> a{kStart, 320, 539, kEnd, 0, kEnd};
  a.resize(77, 0);
  std::vector<int64_t> b(77, 320);  // no end token: argmax gives row 0
  const at::Tensor toks = at::stack({at::tensor(a, at::kLong), at::tensor(b, at::kLong)});
  const ClipTextOutput out = t.model->forward(toks);
  EXPECT_TRUE(out.pooled[0].equal(out.last[0][3]));
  EXPECT_TRUE(out.pooled[1].equal(out.last[1][0]));
  ASSERT_TRUE(out.projected.defined());
  const at::Tensor proj = t.store->block("final").host.at("text_projection.weight").to(at::kFloat);
  EXPECT_TRUE(out.projected.allclose(at::matmul(out.pooled, proj.t()), 1e-5, 1e-6));
  ClipTextRunOptions bad;
  bad.intermediate_layer = 3;
  EXPECT_THROW(t.model->forward(toks, bad), Error);
  bad.intermediate_layer = -4;
  EXPECT_THROW(t.model->forward(toks, bad), Error);
}

TEST(ClipEncode, EffectiveLayerFollowsSetClipOptions) {
  const auto sd1 = ClipEncoderSpec::sd1_clip_l(), xl = ClipEncoderSpec::sdxl_clip_l();
  EXPECT_EQ(effective_clip_layer(sd1, std::nullopt, 12), std::nullopt);
  EXPECT_EQ(effective_clip_layer(sd1, -2, 12), -2);
  EXPECT_EQ(effective_clip_layer(sd1, -12, 12), -12);
  EXPECT_EQ(effective_clip_layer(sd1, -13, 12), std::nullopt);  // |n| > layers → "last"
  EXPECT_EQ(effective_clip_layer(xl, std::nullopt, 12), -2);
  EXPECT_EQ(effective_clip_layer(xl, -1, 12), -1);
  EXPECT_EQ(effective_clip_layer(xl, -24, 12), std::nullopt);
  EXPECT_EQ(effective_clip_layer(ClipEncoderSpec::sdxl_clip_g(), -24, 32), -24);
  EXPECT_FALSE(ClipEncoderSpec::sd1_clip_l().return_projected_pooled);
  EXPECT_EQ(ClipEncoderSpec::sdxl_clip_g().pad_token, 0);
  EXPECT_TRUE(ClipEncoderSpec::sd2_clip_h().layer_norm_hidden_state);
}

TEST(ClipEncode, WeightsScaleAroundTheEmptyPrompt) {
  Tiny t = make_tiny(ClipTextConfig::tiny_l(), testing::cpu_memory().residency());
  const std::vector<int32_t> ids{320, 1125, 539, 2368};
  std::vector<WeightedToken> weighted = chunk(ids, kEnd);
  weighted[2].weight = 1.5;
  weighted[4].weight = 0.25;
  const ClipEncodeResult plain = encode_sd1(*t.model, tokens({chunk(ids, kEnd)}));
  const ClipEncodeResult empty = encode_sd1(*t.model, tokens({chunk({}, kEnd)}));
  const ClipEncodeResult r = encode_sd1(*t.model, tokens({weighted}));
  EXPECT_EQ(r.cond.sizes(), at::IntArrayRef({1, 77, 32}));
  at::Tensor expected = plain.cond.clone();
  for (int j : {2, 4}) {
    const double w = weighted[j].weight;
    expected[0][j] = (plain.cond[0][j] - empty.cond[0][j]) * w + empty.cond[0][j];
  }
  EXPECT_TRUE(r.cond.allclose(expected, 1e-5, 1e-5));
  EXPECT_TRUE(r.cond[0][1].allclose(plain.cond[0][1], 1e-6, 1e-6));  // weight-1 rows untouched
  EXPECT_TRUE(r.pooled.allclose(plain.pooled, 1e-6, 1e-6));          // pooled is never weighted
}

TEST(ClipEncode, EmbeddingRowsReplaceTokenRows) {
  Tiny t = make_tiny(ClipTextConfig::tiny_l(), testing::cpu_memory().residency());
  const std::vector<int32_t> ids{320, 1125, 539};
  const at::Tensor table =
      t.store->block("embeddings").host.at("text_model.embeddings.token_embedding.weight");
  // An embedding whose row equals token 1125's row encodes exactly like the token.
  ClipTokens with_emb = tokens({chunk(ids, kEnd)});
  with_emb.prompt.chunks[0][2] = WeightedToken{-1, 1.0, 0, 1};
  with_emb.prompt.embeddings = {"e"};
  with_emb.embeddings = {at::stack({table[7], table[1125]}).to(at::kFloat)};
  const ClipEncodeResult a = encode_sd1(*t.model, with_emb);
  const ClipEncodeResult b = encode_sd1(*t.model, tokens({chunk(ids, kEnd)}));
  EXPECT_TRUE(a.cond.equal(b.cond));
  EXPECT_TRUE(a.pooled.equal(b.pooled));
  // A row of the wrong width is dropped and the sequence padded at the end.
  ClipTokens wrong = with_emb;
  wrong.embeddings = {at::zeros({2, 48})};
  const ClipEncodeResult c = encode_sd1(*t.model, wrong);
  std::vector<WeightedToken> shifted = chunk({320, 539}, kEnd);
  const ClipEncodeResult d = encode_sd1(*t.model, tokens({shifted}));
  EXPECT_TRUE(c.cond.allclose(d.cond, 1e-6, 1e-6));
  ClipTokens missing = with_emb;
  missing.embeddings.clear();
  EXPECT_THROW(encode_sd1(*t.model, missing), Error);
}

TEST(ClipEncode, LayerSelectionAndSdxlConcat) {
  Residency& res = testing::cpu_memory().residency();
  Tiny l = make_tiny(ClipTextConfig::tiny_l(), res, 1), g = make_tiny(ClipTextConfig::tiny_g(), res, 2);
  const std::vector<int32_t> ids{320, 1125};
  ClipEncodeOptions skip2;
  skip2.clip_layer = -2;
  const ClipEncodeResult sd1 = encode_sd1(*l.model, tokens({chunk(ids, kEnd)}), skip2);
  std::vector<int64_t> raw(77, kEnd);
  raw[0] = kStart, raw[1] = 320, raw[2] = 1125;
  ClipTextRunOptions hidden;
  hidden.intermediate_layer = -2;
  const ClipTextOutput ref = l.model->forward(at::tensor(raw, at::kLong).unsqueeze(0), hidden);
  EXPECT_TRUE(sd1.cond.equal(ref.intermediate));  // SD1: hidden layer with final LayerNorm
  EXPECT_TRUE(sd1.pooled.equal(ref.pooled));      // from the last layer, unprojected

  // SDXL: L (2 chunks) and G (1 chunk) cut to 77 tokens, pooled from G (projected).
  const ClipEncodeResult xl =
      encode_sdxl(*l.model, *g.model, tokens({chunk(ids, kEnd), chunk(ids, kEnd)}), tokens({chunk(ids, 0)}));
  EXPECT_EQ(xl.cond.sizes(), at::IntArrayRef({1, 77, 64}));
  const ClipEncodeResult gr = encode_sdxl_refiner(*g.model, tokens({chunk(ids, 0)}));
  EXPECT_TRUE(xl.cond.narrow(2, 32, 32).equal(gr.cond));
  EXPECT_TRUE(xl.pooled.equal(gr.pooled));
  ClipEncodeOptions unprojected;
  unprojected.unprojected_pooled = true;
  EXPECT_FALSE(encode_sdxl_refiner(*g.model, tokens({chunk(ids, 0)}), unprojected).pooled.equal(gr.pooled));
  EXPECT_THROW(encode_sd1(*l.model, tokens({})), Error);
}

}  // namespace
}  // namespace sdflow
