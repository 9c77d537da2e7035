// Latent nodes run one at a time through the registry (ComfyUI semantics from nodes.py).
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_torch.h"
#include "node_test_util.h"
#include "nodes/python_json.h"

namespace sdflow::nodes {
namespace {

using testing::inputs;
using testing::latent;
using testing::NodeHarness;
using testing::prim;

std::shared_ptr<const LatentValue> as_latent(const ValueList& out) {
  EXPECT_EQ(out.size(), 1u);
  return out.at(0).as<LatentValue>();
}

TEST(EmptyLatentImage, ShapeIsEighthOfPixels) {
  NodeHarness h;
  auto l = as_latent(h.run("EmptyLatentImage",
                           inputs({{"width", prim(512)}, {"height", prim(768)}, {"batch_size", prim(3)}})));
  EXPECT_EQ(l->samples.sizes(), at::IntArrayRef({3, 4, 96, 64}));
  EXPECT_EQ(l->samples.scalar_type(), at::kFloat);
  EXPECT_TRUE(l->samples.device().is_cpu());
  EXPECT_EQ(l->samples.count_nonzero().item<int64_t>(), 0);
  EXPECT_FALSE(l->noise_mask.has_value());
  // Floor division, like height // 8.
  l = as_latent(h.run("EmptyLatentImage",
                      inputs({{"width", prim(20)}, {"height", prim(17)}, {"batch_size", prim(1)}})));
  EXPECT_EQ(l->samples.sizes(), at::IntArrayRef({1, 4, 2, 2}));
}

TEST(EmptyLatentImage, Schema) {
  NodeHarness h;
  const NodeSchema* s = h.registry().find("EmptyLatentImage");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->inputs.size(), 3u);
  EXPECT_EQ(s->inputs[0].name, "width");
  EXPECT_EQ(s->inputs[0].default_value, 512);
  EXPECT_EQ(s->inputs[0].min, 16);
  EXPECT_EQ(s->inputs[0].max, 16384);
  EXPECT_EQ(s->inputs[0].step, 8);
  EXPECT_EQ(s->inputs[2].max, 4096);
  EXPECT_EQ(s->display_name, "Empty Latent Image");
}

at::Tensor latent_8x12() { return at::randn({2, 4, 8, 12}); }  // a 96×64-pixel latent

TEST(LatentUpscale, BothZeroPassesThrough) {
  NodeHarness h;
  const Value in = latent(latent_8x12());
  ValueList out = h.run("LatentUpscale", inputs({{"samples", in},
                                                 {"upscale_method", prim("nearest-exact")},
                                                 {"width", prim(0)},
                                                 {"height", prim(0)},
                                                 {"crop", prim("disabled")}}));
  EXPECT_EQ(out.at(0).object_ptr(), in.object_ptr());
}

TEST(LatentUpscale, WidthZeroFollowsAspectAndClampsTo64) {
  NodeHarness h;
  const Value in = latent(latent_8x12());
  auto run = [&](int64_t w, int64_t hgt) {
    return as_latent(h.run("LatentUpscale", inputs({{"samples", in},
                                                    {"upscale_method", prim("bilinear")},
                                                    {"width", prim(w)},
                                                    {"height", prim(hgt)},
                                                    {"crop", prim("disabled")}})))
        ->samples.sizes()
        .vec();
  };
  // width 0: height 128 → width round(12·128/8) = 192 → latent 16×24.
  EXPECT_EQ(run(0, 128), (std::vector<int64_t>{2, 4, 16, 24}));
  // height below 64 is raised to 64 first: width round(12·64/8) = 96.
  EXPECT_EQ(run(0, 8), (std::vector<int64_t>{2, 4, 8, 12}));
  // height 0: width 200 → height round(8·200/12) = round(133.33) = 133 → 16 latent px.
  EXPECT_EQ(run(200, 0), (std::vector<int64_t>{2, 4, 16, 25}));
  // Both given: each at least 64.
  EXPECT_EQ(run(16, 1000), (std::vector<int64_t>{2, 4, 125, 8}));
}

TEST(LatentUpscale, KeepsMaskAndBatchIndex) {
  NodeHarness h;
  LatentValue l;
  l.samples = latent_8x12();
  l.noise_mask = at::ones({1, 1, 8, 12});
  l.batch_index = std::vector<int64_t>{4, 5};
  auto out = as_latent(h.run("LatentUpscale", inputs({{"samples", make_latent(l)},
                                                      {"upscale_method", prim("area")},
                                                      {"width", prim(128)},
                                                      {"height", prim(64)},
                                                      {"crop", prim("center")}})));
  EXPECT_EQ(out->samples.sizes(), at::IntArrayRef({2, 4, 8, 16}));
  ASSERT_TRUE(out->noise_mask.has_value());
  EXPECT_EQ(out->noise_mask->sizes(), at::IntArrayRef({1, 1, 8, 12}));
  EXPECT_EQ(out->batch_index, (std::vector<int64_t>{4, 5}));
}

TEST(LatentUpscaleBy, RoundsHalfToEven) {
  NodeHarness h;
  // 5·1.5 = 7.5 → 8 (even), 7·1.5 = 10.5 → 10 (even).
  auto out = as_latent(h.run("LatentUpscaleBy", inputs({{"samples", latent(at::randn({1, 4, 5, 7}))},
                                                        {"upscale_method", prim("bislerp")},
                                                        {"scale_by", prim(1.5)}})));
  EXPECT_EQ(out->samples.sizes(), at::IntArrayRef({1, 4, 8, 10}));
  out = as_latent(h.run("LatentUpscaleBy", inputs({{"samples", latent(at::randn({1, 4, 64, 64}))},
                                                   {"upscale_method", prim("nearest-exact")},
                                                   {"scale_by", prim(0.33)}})));
  EXPECT_EQ(out->samples.sizes(), at::IntArrayRef({1, 4, 21, 21}));
}

TEST(LatentFromBatch, ClampsAndSetsBatchIndex) {
  NodeHarness h;
  const at::Tensor s = at::arange(5, at::kFloat).reshape({5, 1, 1, 1}).expand({5, 4, 2, 2}).contiguous();
  auto run = [&](const Value& v, int64_t index, int64_t length) {
    return as_latent(h.run("LatentFromBatch",
                           inputs({{"samples", v}, {"batch_index", prim(index)}, {"length", prim(length)}})));
  };
  auto out = run(latent(s), 3, 10);
  EXPECT_EQ(out->samples.size(0), 2);
  EXPECT_EQ(out->samples[0][0][0][0].item<float>(), 3.f);
  EXPECT_EQ(out->batch_index, (std::vector<int64_t>{3, 4}));
  out = run(latent(s), 63, 4);  // index clamped to B − 1
  EXPECT_EQ(out->samples.size(0), 1);
  EXPECT_EQ(out->batch_index, (std::vector<int64_t>{4}));

  // An existing batch_index is sliced, not renumbered.
  LatentValue l;
  l.samples = s;
  l.batch_index = std::vector<int64_t>{10, 11, 12, 13, 14};
  out = run(make_latent(l), 1, 2);
  EXPECT_EQ(out->batch_index, (std::vector<int64_t>{11, 12}));
}

TEST(LatentFromBatch, MaskSemantics) {
  NodeHarness h;
  LatentValue l;
  l.samples = at::zeros({4, 4, 2, 2});
  // A single mask is kept whole.
  l.noise_mask = at::full({1, 1, 2, 2}, 0.5f);
  auto out =
      as_latent(h.run("LatentFromBatch",
                      inputs({{"samples", make_latent(l)}, {"batch_index", prim(2)}, {"length", prim(2)}})));
  EXPECT_EQ(out->noise_mask->sizes(), at::IntArrayRef({1, 1, 2, 2}));
  // Two masks for four latents are cycled (m0 m1 m0 m1) before slicing.
  l.noise_mask = at::arange(2, at::kFloat).reshape({2, 1, 1, 1}).expand({2, 1, 2, 2}).contiguous();
  out =
      as_latent(h.run("LatentFromBatch",
                      inputs({{"samples", make_latent(l)}, {"batch_index", prim(1)}, {"length", prim(3)}})));
  ASSERT_EQ(out->noise_mask->size(0), 3);
  EXPECT_EQ(out->noise_mask->select(0, 0).max().item<float>(), 1.f);
  EXPECT_EQ(out->noise_mask->select(0, 1).max().item<float>(), 0.f);
  EXPECT_EQ(out->noise_mask->select(0, 2).max().item<float>(), 1.f);
}

TEST(RepeatLatentBatch, RepeatsSamplesMasksAndOffsetsIndices) {
  NodeHarness h;
  LatentValue l;
  l.samples = at::arange(2, at::kFloat).reshape({2, 1, 1, 1}).expand({2, 4, 2, 2}).contiguous();
  l.noise_mask = at::ones({2, 1, 2, 2});
  l.batch_index = std::vector<int64_t>{3, 5};
  auto out =
      as_latent(h.run("RepeatLatentBatch", inputs({{"samples", make_latent(l)}, {"amount", prim(3)}})));
  ASSERT_EQ(out->samples.size(0), 6);
  EXPECT_EQ(out->samples[3][0][0][0].item<float>(), 1.f);
  EXPECT_EQ(out->noise_mask->size(0), 6);
  // offset = max − min + 1 = 3.
  EXPECT_EQ(out->batch_index, (std::vector<int64_t>{3, 5, 6, 8, 9, 11}));

  // A single mask stays single.
  l.noise_mask = at::ones({1, 1, 2, 2});
  l.batch_index.reset();
  out = as_latent(h.run("RepeatLatentBatch", inputs({{"samples", make_latent(l)}, {"amount", prim(2)}})));
  EXPECT_EQ(out->noise_mask->size(0), 1);
  EXPECT_FALSE(out->batch_index.has_value());
}

TEST(SetLatentNoiseMask, ReshapesToBatchOfOneChannel) {
  NodeHarness h;
  const Value lat = latent(at::zeros({1, 4, 8, 8}));
  auto out = as_latent(
      h.run("SetLatentNoiseMask", inputs({{"samples", lat}, {"mask", make_mask(at::ones({64, 64}))}})));
  EXPECT_EQ(out->noise_mask->sizes(), at::IntArrayRef({1, 1, 64, 64}));
  out = as_latent(
      h.run("SetLatentNoiseMask", inputs({{"samples", lat}, {"mask", make_mask(at::ones({3, 16, 24}))}})));
  EXPECT_EQ(out->noise_mask->sizes(), at::IntArrayRef({3, 1, 16, 24}));
  EXPECT_THROW(h.run("SetLatentNoiseMask", inputs({{"samples", lat}, {"mask", make_mask(at::ones({5}))}})),
               Error);
}

TEST(LatentNodes, RefuseMalformedSamples) {
  NodeHarness h;
  try {
    h.run("RepeatLatentBatch", inputs({{"samples", latent(at::zeros({4, 8, 8}))}, {"amount", prim(2)}}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_EQ(std::string(e.what()).rfind("[RepeatLatentBatch #7] ", 0), 0u) << e.what();
  }
}

TEST(SaveLatent, RoundTripsThroughLoadLatent) {
  NodeHarness h;
  const at::Tensor samples = at::randn({2, 4, 3, 5});
  const nlohmann::json prompt = {{"1", {{"class_type", "SaveLatent"}, {"inputs", {{"x", 1.0}}}}}};
  const nlohmann::json extra = {{"workflow", {{"nodes", nlohmann::json::array()}}}};
  h.run("SaveLatent", inputs({{"samples", latent(samples)}, {"filename_prefix", prim("latents/ComfyUI")}}),
        &prompt, &extra);
  h.run("SaveLatent", inputs({{"samples", latent(samples)}, {"filename_prefix", prim("latents/ComfyUI")}}),
        &prompt, &extra);
  const auto files = h.recorder().take();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].filename, "ComfyUI_00001_.latent");
  EXPECT_EQ(files[1].filename, "ComfyUI_00002_.latent");
  EXPECT_EQ(files[0].subfolder, "latents");
  EXPECT_EQ(files[0].type, "output");

  const auto file = SafetensorsFile::open((h.paths().output / "latents" / "ComfyUI_00001_.latent").string());
  EXPECT_EQ(file->metadata().at("prompt"), python_json_dumps(prompt));
  EXPECT_EQ(file->metadata().at("workflow"), R"({"nodes": []})");
  const TensorInfo* marker = file->find("latent_format_version_0");
  ASSERT_NE(marker, nullptr);
  EXPECT_EQ(marker->dtype, DType::F32);
  EXPECT_EQ(marker->shape, std::vector<int64_t>{0});

  // LoadLatent reads it back unscaled (the marker is present).
  std::filesystem::copy_file(h.paths().output / "latents" / "ComfyUI_00001_.latent",
                             h.paths().input / "a.latent");
  auto loaded = as_latent(h.run("LoadLatent", inputs({{"latent", prim("a.latent")}})));
  EXPECT_TRUE(at::equal(loaded->samples, samples));
  // "[output]" looks in the output folder instead.
  loaded =
      as_latent(h.run("LoadLatent", inputs({{"latent", prim("latents/ComfyUI_00002_.latent [output]")}})));
  EXPECT_TRUE(at::equal(loaded->samples, samples));
}

TEST(SaveLatent, DisableMetadataWritesNone) {
  NodeHarness h;
  h.settings().disable_metadata = true;
  const nlohmann::json prompt = {{"1", 2}};
  h.run("SaveLatent", inputs({{"samples", latent(at::zeros({1, 4, 2, 2}))}, {"filename_prefix", prim("x")}}),
        &prompt);
  const auto file = SafetensorsFile::open((h.paths().output / "x_00001_.latent").string());
  EXPECT_TRUE(file->metadata().empty());
}

TEST(LoadLatent, OldFilesAreUnscaled) {
  NodeHarness h;
  const at::Tensor t = at::full({1, 4, 2, 2}, 0.18215f);
  save_safetensors((h.paths().input / "old.latent").string(), {{"latent_tensor", t}});
  auto l = as_latent(h.run("LoadLatent", inputs({{"latent", prim("old.latent")}})));
  EXPECT_TRUE(at::allclose(l->samples, at::ones({1, 4, 2, 2})));
}

TEST(LoadLatent, ValidateFingerprintAndEscapes) {
  NodeHarness h;
  save_safetensors((h.paths().input / "b.latent").string(), {{"latent_tensor", at::zeros({1, 4, 1, 1})}});
  auto node = h.registry().create("LoadLatent");
  ValidationEnv env;
  env.services = &h.services();
  // Without strict mode only confinement is checked: a missing file is fine.
  EXPECT_TRUE(node->validate(env, {{"latent", "missing.latent"}}).empty());
  env.strict = true;
  EXPECT_TRUE(node->validate(env, {{"latent", "b.latent"}}).empty());
  auto problems = node->validate(env, {{"latent", "missing.latent"}});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].second, "Invalid latent file: missing.latent");
  EXPECT_EQ(node->validate(env, {{"latent", "../x.latent"}}).size(), 1u);
  EXPECT_EQ(node->fingerprint(h.services(), {{"latent", "b.latent"}}).size(), 64u);
  EXPECT_THROW(h.run("LoadLatent", inputs({{"latent", prim("../b.latent")}})), Error);
}

}  // namespace
}  // namespace sdflow::nodes
