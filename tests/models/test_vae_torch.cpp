// AutoencoderKL and the VAE wrapper: detection, key renames, random weights, shapes, crops,
// residency order and the tiling machinery (no golden files needed).
#include <gtest/gtest.h>

#include "core/error.h"
#include "models/loader/state_dict.h"
#include "models/vae/autoencoder_kl.h"
#include "models/vae/vae.h"
#include "models/vae/vae_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

std::map<std::string, std::vector<int64_t>> shapes_of(const VaeConfig& c) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const VaeParam& p : vae_params(c)) out[p.key] = p.shape;
  return out;
}

struct TestVae {
  std::shared_ptr<WeightStore> store;
  std::unique_ptr<AutoencoderKL> vae;
};

TestVae make_vae(const VaeConfig& config, Residency& residency, uint64_t seed = 5,
                 at::ScalarType storage = at::kFloat) {
  TestVae t;
  t.store = build_vae_weight_store(StateDict::from_tensors(make_random_vae_weights(config, seed, storage), "vae"),
                                   config, storage, at::kFloat);
  t.vae = std::make_unique<AutoencoderKL>(config, t.store, residency);
  return t;
}

TEST(VaeConfig, DetectsFromShapes) {
  const VaeConfig sd = VaeConfig::detect_from_shapes(shapes_of(VaeConfig::sd()));
  EXPECT_TRUE(sd.same_architecture(VaeConfig::sd())) << sd.describe();
  EXPECT_EQ(sd.downscale(), 8);
  EXPECT_TRUE(VaeConfig::detect_from_shapes(shapes_of(VaeConfig::tiny())).same_architecture(VaeConfig::tiny()));

  VaeConfig upscaler;  // SD x4 upscaler's VAE: three levels, downscale 4
  upscaler.ch_mult = {1, 2, 4};
  EXPECT_EQ(VaeConfig::detect_from_shapes(shapes_of(upscaler)).downscale(), 4);

  VaeConfig flux;  // AutoencodingEngine layout: 16 channels, no quant convs
  flux.z_channels = flux.embed_dim = 16;
  flux.has_quant_conv = false;
  const VaeConfig f = VaeConfig::detect_from_shapes(shapes_of(flux));
  EXPECT_TRUE(f.same_architecture(flux)) << f.describe();
  EXPECT_EQ(f.latent_channels(), 16);

  VaeConfig decoder_only = VaeConfig::sd();
  decoder_only.has_encoder = false;
  EXPECT_TRUE(VaeConfig::detect_from_shapes(shapes_of(decoder_only)).same_architecture(decoder_only));

  auto diffusers = shapes_of(VaeConfig::sd());
  diffusers["decoder.up_blocks.0.resnets.0.norm1.weight"] = {512};
  EXPECT_THROW(VaeConfig::detect_from_shapes(diffusers), Error);
  EXPECT_THROW(VaeConfig::detect_from_shapes({{"encoder.conv_in.weight", {128, 3, 3, 3}}}), Error);
}

TEST(VaeLayout, NormalizesQuantConvPrefixesAndAcceptsMatrixAttention) {
  auto w = make_random_vae_weights(VaeConfig::tiny(), 1, at::kFloat);
  w["decoder.post_quant_conv.weight"] = w.at("post_quant_conv.weight");
  w["decoder.post_quant_conv.bias"] = w.at("post_quant_conv.bias");
  w.erase("post_quant_conv.weight");
  w.erase("post_quant_conv.bias");
  const at::Tensor q = w.at("decoder.mid.attn_1.q.weight");
  w["decoder.mid.attn_1.q.weight"] = q.flatten(1);
  const StateDict sd = normalize_vae_keys(StateDict::from_tensors(w));
  EXPECT_TRUE(sd.has("post_quant_conv.weight"));
  auto store = build_vae_weight_store(sd, VaeConfig::detect(sd), at::kFloat, at::kFloat);
  EXPECT_TRUE(store->block("decoder.mid").host.at("decoder.mid.attn_1.q.weight").equal(q));
  w.erase("decoder.mid.attn_1.k.bias");
  EXPECT_THROW(build_vae_weight_store(normalize_vae_keys(StateDict::from_tensors(w)), VaeConfig::tiny(), at::kFloat,
                                      at::kFloat),
               Error);
}

TEST(Vae, CropsPixelsLikeComfyUI) {
  const at::Tensor image = at::arange(2 * 19 * 13 * 4, at::kFloat).reshape({2, 19, 13, 4});
  const at::Tensor c = vae_crop_pixels(image, 8);
  EXPECT_EQ(c.sizes(), at::IntArrayRef({2, 16, 8, 3}));
  EXPECT_TRUE(c.equal(image.narrow(1, 1, 16).narrow(2, 2, 8).narrow(3, 0, 3)));  // offsets (19%8)/2, (13%8)/2
  EXPECT_TRUE(vae_crop_pixels(c, 8).equal(c));
}

TEST(Vae, EncodeDecodeShapesAndRanges) {
  testing::RecordingResidency rec(testing::cpu_memory().residency());
  TestVae t = make_vae(VaeConfig::tiny(), rec);
  const at::Tensor image = at::rand({3, 18, 23, 3});
  const at::Tensor latent = vae_encode(*t.vae, image);
  EXPECT_EQ(latent.sizes(), at::IntArrayRef({3, 4, 4, 5}));
  EXPECT_EQ(latent.scalar_type(), at::kFloat);
  EXPECT_EQ(rec.acquired, vae_encode_blocks(VaeConfig::tiny()));
  rec.acquired.clear();
  VaeImageOptions two;
  two.batch = 2;
  const at::Tensor decoded = vae_decode(*t.vae, latent, two);
  EXPECT_EQ(decoded.sizes(), at::IntArrayRef({3, 16, 20, 3}));
  EXPECT_GE(decoded.min().item<double>(), 0.0);
  EXPECT_LE(decoded.max().item<double>(), 1.0);
  EXPECT_EQ(rec.acquired.size(), 2 * vae_decode_blocks(VaeConfig::tiny()).size());
  EXPECT_EQ(rec.acquired.front(), "decoder.in");
  EXPECT_LT((decoded - vae_decode(*t.vae, latent)).abs().max().item<double>(), 1e-5);  // batching
  EXPECT_TRUE(vae_decode(*t.vae, latent.unsqueeze(2)).equal(vae_decode(*t.vae, latent)));  // 5-D: first frame

  VaeConfig decoder_only = VaeConfig::tiny();
  decoder_only.has_encoder = false;
  TestVae d = make_vae(decoder_only, testing::cpu_memory().residency());
  EXPECT_THROW(d.vae->encode(at::zeros({1, 3, 8, 8})), Error);
  EXPECT_EQ(d.vae->decode(at::zeros({1, 4, 2, 2})).sizes(), at::IntArrayRef({1, 3, 8, 8}));
}

// The full-size SD VAE with random weights in the checkpoint layout keeps values O(1).
TEST(Vae, RandomSdVaeStaysOrderOne) {
  const auto w = make_random_vae_weights(VaeConfig::sd(), 3, at::kHalf);
  const StateDict sd = StateDict::from_tensors(w, "random-vae");
  const VaeConfig c = VaeConfig::detect(sd);
  EXPECT_TRUE(c.same_architecture(VaeConfig::sd()));
  auto store = build_vae_weight_store(sd, c, at::kHalf, at::kFloat);
  AutoencoderKL vae(c, store, testing::cpu_memory().residency());
  const at::Tensor z = at::randn({1, 4, 4, 4});
  const at::Tensor x = vae.decode(z);
  EXPECT_EQ(x.sizes(), at::IntArrayRef({1, 3, 32, 32}));
  EXPECT_GT(x.std().item<double>(), 0.1);
  EXPECT_LT(x.abs().max().item<double>(), 20.0);
  const at::Tensor mean = vae.encode(x.clamp(-1, 1));
  EXPECT_EQ(mean.sizes(), at::IntArrayRef({1, 4, 4, 4}));
  EXPECT_GT(mean.std().item<double>(), 0.1);
  EXPECT_LT(mean.abs().max().item<double>(), 20.0);
}

TEST(VaeTiling, BlendsAFunctionThatCommutesWithCropping) {
  // Nearest ×4 upscaling gives each tile exactly its region of the whole result, so the
  // feathered average must reproduce the untiled output.
  const at::Tensor x = at::randn({2, 3, 23, 17});
  const VaeTileFn up = [](const at::Tensor& t) { return at::upsample_nearest2d(t, {t.size(2) * 4, t.size(3) * 4}); };
  int64_t tiles = 0;
  const at::Tensor tiled = tiled_scale(x, up, 8, 6, 2, 4.0, 3, at::kCPU, [&] { ++tiles; });
  EXPECT_TRUE(tiled.allclose(up(x), 1e-5, 1e-6));
  EXPECT_EQ(tiles, 2 * tiled_scale_steps(17, 23, 8, 6, 2));
  EXPECT_EQ(tiled_scale_steps(17, 23, 8, 6, 2), 6 * 3);
  EXPECT_EQ(tiled_scale_steps(8, 6, 8, 6, 2), 1);
  EXPECT_THROW(tiled_scale(x, up, 4, 4, 4, 4.0, 3, at::kCPU), Error);
  // Downscaling by average pooling of 2×2 likewise (encode direction, upscale 1/2).
  const VaeTileFn down = [](const at::Tensor& t) { return at::avg_pool2d(t, {2, 2}); };
  const at::Tensor y = at::randn({1, 3, 24, 20});
  EXPECT_TRUE(tiled_scale(y, down, 8, 12, 4, 0.5, 3, at::kCPU).allclose(down(y), 1e-5, 1e-6));
}

TEST(VaeTiling, SingleTileEqualsPlainDecodeAndEncode) {
  TestVae t = make_vae(VaeConfig::tiny(), testing::cpu_memory().residency());
  const at::Tensor z = at::randn({1, 4, 6, 5});
  EXPECT_TRUE(vae_decode_tiled(*t.vae, z, {64, 64, 8}).allclose(vae_decode(*t.vae, z), 1e-5, 1e-6));
  const at::Tensor image = at::rand({1, 24, 20, 3});
  EXPECT_TRUE(vae_encode_tiled(*t.vae, image, {256, 256, 32}).allclose(vae_encode(*t.vae, image), 1e-5, 1e-6));
  const at::Tensor tiled = vae_decode_tiled(*t.vae, at::randn({1, 4, 20, 14}), {8, 8, 2});
  EXPECT_EQ(tiled.sizes(), at::IntArrayRef({1, 80, 56, 3}));
}

TEST(Vae, MemoryEstimates) {
  EXPECT_EQ(vae_decode_memory({1, 4, 128, 128}, at::kBFloat16), int64_t{2178} * 128 * 128 * 64 * 2);
  EXPECT_EQ(vae_encode_memory({1, 3, 1024, 1024}, at::kFloat), int64_t{1767} * 1024 * 1024 * 4);
}

}  // namespace
}  // namespace sdflow
