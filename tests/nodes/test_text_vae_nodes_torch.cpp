// Text conditioning and VAE nodes on tiny random checkpoints: what each node puts in its
// CONDITIONING / IMAGE / LATENT (shapes, option names and types the sampler reads), clip skip,
// textual-inversion embeddings found by ComfyUI's rules, the VAE nodes' unit conversions, the
// inpainting encode, and the tiled fallback on out-of-memory errors.
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "model_node_harness.h"
#include "models/loader/state_dict.h"
#include "models/text_encoder/clip_text_layout.h"
#include "models/unet/unet_layout.h"
#include "nodes/clip_value.h"
#include "nodes/model_value.h"
#include "nodes/vae_value.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::ModelNodeHarness;
using testing::prim;

struct Loaded {
  Value model, clip, vae;
};

Loaded load(ModelNodeHarness& h, const std::string& arch, uint64_t seed = 1) {
  const std::string name = h.write_checkpoint(arch + ".safetensors", arch, seed);
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim(name)}}));
  return {out.at(0), out.at(1), out.at(2)};
}

CondEntry only_entry(const Value& v) {
  auto c = v.as<ConditioningValue>();
  EXPECT_EQ(c->entries.size(), 1u);
  return c->entries.at(0);
}

at::Tensor tensor_opt(const CondEntry& e, const std::string& key) {
  return std::get<at::Tensor>(e.options.at(key));
}

Value encode(ModelNodeHarness& h, const Value& clip, const std::string& text) {
  return h.run("CLIPTextEncode", inputs({{"text", prim(text)}, {"clip", clip}})).at(0);
}

TEST(TextNodes, Sd1CondIsOneChunkPerSeventySevenTokensWithUnprojectedPooled) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  const CondEntry e = only_entry(encode(h, m.clip, "a photo of a cat"));
  EXPECT_EQ(e.cond.sizes(), (std::vector<int64_t>{1, 77, 32}));
  EXPECT_EQ(e.cond.scalar_type(), at::kFloat);
  EXPECT_EQ(e.options.size(), 1u);  // pooled_output only: no size keys
  EXPECT_EQ(tensor_opt(e, "pooled_output").sizes(), (std::vector<int64_t>{1, 32}));

  // Same result as tokenizing and encoding by hand with the checkpoint's CLIP-L.
  auto clip = m.clip.as<ClipValue>();
  ClipTokenSet tokens = clip->tokenize("a photo of a cat");
  ASSERT_TRUE(tokens.l && !tokens.g && !tokens.h);
  const ClipEncodeResult direct = encode_sd1(*clip->core->encoders.clip_l, *tokens.l);
  EXPECT_TRUE(at::equal(direct.cond, e.cond));

  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "red green ";
  EXPECT_EQ(only_entry(encode(h, m.clip, long_prompt)).cond.size(1), 154);
}

TEST(TextNodes, SetLastLayerClonesTheClipAndChangesTheCond) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  const at::Tensor base = only_entry(encode(h, m.clip, "a cat")).cond;
  auto layer = [&](int64_t n) {
    return h.run("CLIPSetLastLayer", inputs({{"clip", m.clip}, {"stop_at_clip_layer", prim(n)}})).at(0);
  };
  const Value skip2 = layer(-2);
  EXPECT_EQ(skip2.as<ClipValue>()->clip_layer, -2);
  EXPECT_EQ(skip2.as<ClipValue>()->core, m.clip.as<ClipValue>()->core);  // shared models
  EXPECT_FALSE(m.clip.as<ClipValue>()->clip_layer);                      // input untouched
  const CondEntry e2 = only_entry(encode(h, skip2, "a cat"));
  EXPECT_FALSE(at::allclose(e2.cond, base));
  // The pooled output always comes from the last layer.
  EXPECT_TRUE(at::equal(tensor_opt(e2, "pooled_output"),
                        tensor_opt(only_entry(encode(h, m.clip, "a cat")), "pooled_output")));
  // SD1: -1 is the last layer with the final LayerNorm, the default.
  EXPECT_TRUE(at::equal(only_entry(encode(h, layer(-1), "a cat")).cond, base));
  // |n| beyond the layer count falls back to "last".
  EXPECT_TRUE(at::equal(only_entry(encode(h, layer(-24), "a cat")).cond, base));
}

TEST(TextNodes, SdxlPlainEncodeConcatenatesLAndGWithProjectedPooled) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  Loaded m = load(h, "sdxl");
  const CondEntry e = only_entry(encode(h, m.clip, "a cat"));
  EXPECT_EQ(e.cond.sizes(), (std::vector<int64_t>{1, 77, 64}));
  EXPECT_EQ(e.options.size(), 1u);  // ADM sizes default at sampling time
  auto clip = m.clip.as<ClipValue>();
  ClipTokenSet tokens = clip->tokenize("a cat");
  ASSERT_TRUE(tokens.l && tokens.g);
  EXPECT_EQ(tokens.g->prompt.chunks[0].back().id, 0);      // CLIP-G pads with 0
  EXPECT_EQ(tokens.l->prompt.chunks[0].back().id, 49407);  // CLIP-L with its end token
  const ClipEncodeResult g =
      encode_token_weights(*clip->core->encoders.clip_g, ClipEncoderSpec::sdxl_clip_g(), *tokens.g);
  EXPECT_TRUE(at::equal(tensor_opt(e, "pooled_output"), g.pooled));
  EXPECT_TRUE(at::equal(e.cond.narrow(2, 32, 32), g.cond));
}

TEST(TextNodes, SdxlEncodeNodesStoreTheirSizesUnderComfyUINames) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  Loaded m = load(h, "sdxl");
  std::string long_g;
  for (int i = 0; i < 40; ++i) long_g += "blue sky ";
  const CondEntry e = only_entry(h.run("CLIPTextEncodeSDXL", inputs({{"clip", m.clip},
                                                                     {"width", prim(832)},
                                                                     {"height", prim(1216)},
                                                                     {"crop_w", prim(8)},
                                                                     {"crop_h", prim(16)},
                                                                     {"target_width", prim(640)},
                                                                     {"target_height", prim(960)},
                                                                     {"text_g", prim(long_g)},
                                                                     {"text_l", prim("a cat")}}))
                                     .at(0));
  // text_g needs two chunks; text_l is padded with an empty-prompt chunk to match.
  EXPECT_EQ(e.cond.sizes(), (std::vector<int64_t>{1, 154, 64}));
  const std::map<std::string, int64_t> want = {{"width", 832}, {"height", 1216},      {"crop_w", 8},
                                               {"crop_h", 16}, {"target_width", 640}, {"target_height", 960}};
  for (const auto& [k, v] : want) EXPECT_EQ(std::get<int64_t>(e.options.at(k)), v) << k;
  EXPECT_TRUE(e.options.count("pooled_output"));

  const CondEntry r = only_entry(h.run("CLIPTextEncodeSDXLRefiner", inputs({{"ascore", prim(2.5)},
                                                                            {"width", prim(512)},
                                                                            {"height", prim(768)},
                                                                            {"text", prim("a cat")},
                                                                            {"clip", m.clip}}))
                                     .at(0));
  EXPECT_DOUBLE_EQ(std::get<double>(r.options.at("aesthetic_score")), 2.5);
  EXPECT_EQ(std::get<int64_t>(r.options.at("width")), 512);
  EXPECT_EQ(std::get<int64_t>(r.options.at("height")), 768);

  // An SD1 CLIP has no G tokens (ComfyUI: KeyError 'g').
  Loaded sd1 = load(h, "sd15");
  EXPECT_THROW(h.run("CLIPTextEncodeSDXL", inputs({{"clip", sd1.clip},
                                                   {"width", prim(1024)},
                                                   {"height", prim(1024)},
                                                   {"crop_w", prim(0)},
                                                   {"crop_h", prim(0)},
                                                   {"target_width", prim(1024)},
                                                   {"target_height", prim(1024)},
                                                   {"text_g", prim("a")},
                                                   {"text_l", prim("b")}})),
               Error);
}

// SD2 keeps OpenCLIP-H in open_clip layout under cond_stage_model.model.: converted, encoded
// from the penultimate layer with the final LayerNorm, padded with 0, projected pooled output.
TEST(TextNodes, Sd2EncodesWithTheOpenClipHLayout) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  UNetConfig unet = UNetConfig::tiny_sd15();
  unet.context_dim = ClipTextConfig::tiny_g().width;
  std::map<std::string, at::Tensor> sd;
  for (auto& [k, t] : make_random_unet_weights(unet, 1, at::kFloat)) sd["model.diffusion_model." + k] = t;
  for (auto& [k, t] :
       make_random_clip_weights(ClipTextConfig::tiny_g(), 2, at::kFloat, ClipKeyLayout::kOpenClip))
    sd["cond_stage_model.model." + k] = t;
  ModelNodeHarness h;
  h.write_file("checkpoints/sd2.safetensors", sd,
               {{"sdflow.tiny", "true"}, {"modelspec.architecture", "stable-diffusion-v2-768-v"}});
  ValueList out = h.run("CheckpointLoaderSimple", inputs({{"ckpt_name", prim("sd2.safetensors")}}));
  EXPECT_EQ(out[0].as<ModelValue>()->model->config().family, "sd2");
  auto clip = out[1].as<ClipValue>();
  ASSERT_TRUE(clip->core && clip->core->encoders.clip_h);
  ClipTokenSet tokens = clip->tokenize("a cat");
  ASSERT_TRUE(tokens.h && !tokens.l && !tokens.g);
  EXPECT_EQ(tokens.h->prompt.chunks[0].back().id, 0);
  const CondEntry e = only_entry(encode(h, out[1], "a cat"));
  const ClipEncodeResult direct = encode_sd2(*clip->core->encoders.clip_h, *tokens.h);
  EXPECT_TRUE(at::equal(e.cond, direct.cond));
  EXPECT_TRUE(at::equal(tensor_opt(e, "pooled_output"), direct.pooled));
  EXPECT_EQ(e.cond.sizes(), (std::vector<int64_t>{1, 77, 32}));
}

TEST(Embeddings, FoundByComfyUIRulesAndConfinedToTheFolder) {
  ModelNodeHarness h;
  const auto root = h.paths().models / "embeddings";
  h.write_file("embeddings/top.safetensors", {{"emb_params", at::zeros({2, 32})}});
  h.write_file("embeddings/sub/deep.safetensors", {{"clip_l", at::zeros({3, 32})}});
  std::filesystem::create_directories(root.parent_path() / "outside");
  h.write_file("outside.safetensors", {{"emb_params", at::zeros({1, 32})}});
  const std::vector<std::filesystem::path> roots{root};
  EXPECT_EQ(find_embedding_file(roots, "top")->filename(), "top.safetensors");
  EXPECT_EQ(find_embedding_file(roots, "top.safetensors")->filename(), "top.safetensors");
  EXPECT_EQ(find_embedding_file(roots, "deep")->filename(), "deep.safetensors");  // subfolders are searched
  EXPECT_EQ(find_embedding_file(roots, "sub/deep")->filename(), "deep.safetensors");
  EXPECT_FALSE(find_embedding_file(roots, "../outside"));
  EXPECT_FALSE(find_embedding_file(roots, (h.paths().models / "outside").string()));
  EXPECT_FALSE(find_embedding_file(roots, "missing"));

  // Tensor choice: the tokenizer's key, else bundle tensors, else the first by name.
  auto sd = [](std::map<std::string, at::Tensor> m) { return StateDict::from_tensors(std::move(m), "e"); };
  EXPECT_EQ(
      select_embedding(sd({{"clip_g", at::zeros({1, 8})}, {"clip_l", at::zeros({4, 4})}}), "clip_l").size(0),
      4);
  EXPECT_EQ(select_embedding(sd({{"a", at::zeros({5, 4})}, {"b", at::zeros({2, 4})}}), "clip_l").size(0), 5);
  EXPECT_EQ(select_embedding(sd({{"bundle_emb.x.string_to_param.*", at::zeros({2, 4})},
                                 {"bundle_emb.y.string_to_param.*", at::zeros({1, 4})},
                                 {"a", at::zeros({7, 4})}}),
                             "clip_l")
                .size(0),
            3);
  EXPECT_EQ(select_embedding(sd({{"v", at::zeros({4})}}), "clip_l").sizes(), (std::vector<int64_t>{1, 4}));

  EmbeddingFolder folder(roots, "clip_l");
  EXPECT_EQ(folder.vectors_for("deep"), 3);
  EXPECT_EQ(folder.vectors_for("top"), 2);
  EXPECT_EQ(folder.vectors_for("nope"), std::nullopt);
  auto v = folder.vectors({"top", "deep"});
  EXPECT_EQ(v[0].size(0), 2);
  EXPECT_EQ(v[1].size(0), 3);
}

TEST(Embeddings, APromptNamingOneGetsItsVectors) {
  SDFLOW_REQUIRE_SHARED_VOCAB();
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  h.write_file("embeddings/style.safetensors", {{"clip_l", at::randn({2, 32}) * 3}});
  auto clip = m.clip.as<ClipValue>();
  ClipTokenSet t = clip->tokenize("embedding:style a cat");
  ASSERT_EQ(t.l->prompt.embeddings.size(), 1u);
  EXPECT_EQ(t.l->embeddings.at(0).size(0), 2);
  const at::Tensor with = only_entry(encode(h, m.clip, "embedding:style a cat")).cond;
  const at::Tensor without = only_entry(encode(h, m.clip, "a cat")).cond;
  EXPECT_FALSE(at::allclose(with, without));
  // A missing embedding is dropped with a warning, as ComfyUI does.
  EXPECT_TRUE(at::equal(only_entry(encode(h, m.clip, "embedding:nothing a cat")).cond, without));
}

Value latent_value(at::Tensor t) {
  LatentValue l;
  l.samples = std::move(t);
  return make_latent(std::move(l));
}

TEST(VaeNodes, DecodeAndEncodeConvertBetweenImageAndLatentUnits) {
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  const at::Tensor z = at::randn({2, 4, 8, 8});
  const at::Tensor img = h.run("VAEDecode", inputs({{"samples", latent_value(z)}, {"vae", m.vae}}))
                             .at(0)
                             .as<ImageValue>()
                             ->images;
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{2, 64, 64, 3}));
  EXPECT_GE(img.min().item<float>(), 0.0f);
  EXPECT_LE(img.max().item<float>(), 1.0f);
  const auto& vae = *m.vae.as<VaeValue>()->vae.model;
  EXPECT_TRUE(at::allclose(img, vae_decode(vae, z), 1e-6, 1e-6));

  // Encode crops to multiples of 8 (70 → 64, 66 → 64) and returns the posterior mean.
  const at::Tensor pixels = at::rand({1, 70, 66, 3});
  const at::Tensor lat = h.run("VAEEncode", inputs({{"pixels", make_image(pixels)}, {"vae", m.vae}}))
                             .at(0)
                             .as<LatentValue>()
                             ->samples;
  EXPECT_EQ(lat.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  EXPECT_TRUE(at::allclose(lat, vae_encode(vae, pixels), 1e-6, 1e-6));
}

TEST(VaeNodes, TiledNodesTakePixelSizesAndClampTheOverlap) {
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  const auto& vae = *m.vae.as<VaeValue>()->vae.model;
  const at::Tensor z = at::randn({1, 4, 12, 12});
  std::vector<ProgressUpdate> progress;
  h.on_progress = [&](const ProgressUpdate& p) { progress.push_back(p); };
  // tile 64 px = 8 latent cells; overlap 64 > 64/4 is clamped to 16 px = 2 cells.
  const at::Tensor img = h.run("VAEDecodeTiled", inputs({{"samples", latent_value(z)},
                                                         {"vae", m.vae},
                                                         {"tile_size", prim(64)},
                                                         {"overlap", prim(64)},
                                                         {"temporal_size", prim(64)},
                                                         {"temporal_overlap", prim(8)}}))
                             .at(0)
                             .as<ImageValue>()
                             ->images;
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 96, 96, 3}));
  EXPECT_TRUE(at::allclose(img, vae_decode_tiled(vae, z, {8, 8, 2})));
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().value, progress.back().max);

  const at::Tensor pixels = at::rand({1, 96, 96, 3});
  const at::Tensor lat = h.run("VAEEncodeTiled", inputs({{"pixels", make_image(pixels)},
                                                         {"vae", m.vae},
                                                         {"tile_size", prim(64)},
                                                         {"overlap", prim(16)},
                                                         {"temporal_size", prim(64)},
                                                         {"temporal_overlap", prim(8)}}))
                             .at(0)
                             .as<LatentValue>()
                             ->samples;
  EXPECT_EQ(lat.sizes(), (std::vector<int64_t>{1, 4, 12, 12}));
  EXPECT_TRUE(at::allclose(lat, vae_encode_tiled(vae, pixels, {64, 64, 16})));
}

TEST(VaeNodes, EncodeForInpaintGreysTheMaskAndGrowsTheNoiseMask) {
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  const auto& vae = *m.vae.as<VaeValue>()->vae.model;
  const at::Tensor pixels = at::rand({1, 68, 64, 3});
  at::Tensor mask = at::zeros({1, 34, 32});  // half size: resized to the image first
  mask.narrow(1, 10, 6).narrow(2, 12, 4).fill_(1.0);
  auto run = [&](int64_t grow) {
    return h
        .run("VAEEncodeForInpaint", inputs({{"pixels", make_image(pixels)},
                                            {"vae", m.vae},
                                            {"mask", make_mask(mask)},
                                            {"grow_mask_by", prim(grow)}}))
        .at(0)
        .as<LatentValue>();
  };
  auto out = run(6);
  EXPECT_EQ(out->samples.sizes(), (std::vector<int64_t>{1, 4, 8, 8}));
  ASSERT_TRUE(out->noise_mask);
  EXPECT_EQ(out->noise_mask->sizes(), (std::vector<int64_t>{1, 1, 64, 64}));

  // By hand: bilinear resize, crop 68 → 64 rows from offset 2, grey where the mask is set.
  at::Tensor big = at::upsample_bilinear2d(mask.reshape({1, 1, 34, 32}), {68, 64}, false);
  big = big.narrow(2, 2, 64);
  at::Tensor grey = pixels.narrow(1, 2, 64).clone();
  const at::Tensor keep = (1.0 - big.round()).squeeze(1).unsqueeze(-1);
  grey = (grey - 0.5) * keep + 0.5;
  EXPECT_TRUE(at::allclose(out->samples, vae_encode(vae, grey), 1e-5, 1e-5));
  const at::Tensor masked = big.round();
  EXPECT_GT(out->noise_mask->sum().item<double>(), masked.sum().item<double>());  // grown
  EXPECT_TRUE(at::equal(*run(0)->noise_mask, masked));                            // not grown
}

TEST(VaeNodes, OutOfMemoryFallsBackToTheTiledPathAndOtherErrorsPropagate) {
  int fallback_calls = 0;
  auto fallback = [&] {
    ++fallback_calls;
    return at::ones({1});
  };
  const at::Tensor r = with_tiled_fallback(
      []() -> at::Tensor {
        throw c10::OutOfMemoryError({__func__, __FILE__, __LINE__}, "CUDA out of memory");
      },
      fallback, "retrying tiled");
  EXPECT_EQ(fallback_calls, 1);
  EXPECT_TRUE(at::equal(r, at::ones({1})));
  with_tiled_fallback([]() -> at::Tensor { throw Error(ErrorKind::kOutOfMemory, "budget"); }, fallback, "w");
  EXPECT_EQ(fallback_calls, 2);
  EXPECT_THROW(
      with_tiled_fallback([]() -> at::Tensor { throw Error(ErrorKind::kCancelled, "stop"); }, fallback, "w"),
      Error);
  EXPECT_THROW(with_tiled_fallback([]() -> at::Tensor { throw std::runtime_error("bad"); }, fallback, "w"),
               std::runtime_error);
  EXPECT_EQ(fallback_calls, 2);
  EXPECT_TRUE(at::equal(with_tiled_fallback([] { return at::zeros({1}); }, fallback, "w"), at::zeros({1})));
}

TEST(VaeNodes, CancellationStopsADecode) {
  ModelNodeHarness h;
  Loaded m = load(h, "sd15");
  h.cancel().request();
  try {
    h.run("VAEDecode", inputs({{"samples", latent_value(at::zeros({1, 4, 8, 8}))}, {"vae", m.vae}}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
}

}  // namespace
}  // namespace sdflow::nodes
