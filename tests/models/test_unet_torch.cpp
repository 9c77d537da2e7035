#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/unet/unet.h"
#include "models/unet/unet_config.h"
#include "models/unet/unet_layout.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

using testing::cpu_memory;
using testing::make_test_unet;
using testing::RecordingResidency;

const std::string kDataDir = SDFLOW_SOURCE_DIR "/tests/data/unet/";

// Shapes without memory: every tensor is an expanded view of one element.
StateDict shapes_only(const std::vector<UNetParam>& params) {
  std::map<std::string, at::Tensor> t;
  const at::Tensor one = at::zeros({1});
  for (const UNetParam& p : params) t.emplace(p.key, one.expand(p.shape));
  return StateDict::from_tensors(std::move(t), "shapes");
}

struct Inputs {
  at::Tensor x, t, context, y;
};

Inputs make_inputs(const UNetConfig& c, int64_t B, int64_t H, int64_t W, uint64_t seed = 7) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Inputs in;
  in.x = at::randn({B, c.in_channels, H, W}, gen, at::kFloat);
  in.t = at::linspace(999.0, 1.0, B, at::kFloat);
  in.context = at::randn({B, 5, c.context_dim}, gen, at::kFloat);
  if (c.adm_in_channels) in.y = at::randn({B, *c.adm_in_channels}, gen, at::kFloat);
  return in;
}

TEST(UNetConfig, FactoriesAreValidAndNameTheirFamily) {
  EXPECT_EQ(UNetConfig::sd15().family(), "sd15");
  EXPECT_EQ(UNetConfig::sd2().family(), "sd2");
  EXPECT_EQ(UNetConfig::sdxl().family(), "sdxl");
  EXPECT_EQ(UNetConfig::sdxl_refiner().family(), "sdxl_refiner");
  EXPECT_EQ(UNetConfig::tiny_sd15().family(), "unknown");
  for (const auto& c : {UNetConfig::sd15(), UNetConfig::sd2(), UNetConfig::sdxl(), UNetConfig::sdxl_refiner(),
                        UNetConfig::tiny_sd15(), UNetConfig::tiny_sdxl()})
    EXPECT_NO_THROW(c.validate()) << c.describe();
  UNetConfig inpaint = UNetConfig::sd15();
  inpaint.in_channels = 9;
  EXPECT_EQ(inpaint.family(), "sd15");
  inpaint.in_channels = 8;  // InstructPix2Pix: another model class
  EXPECT_EQ(inpaint.family(), "unknown");
  // ComfyUI's head rules: 8 fixed heads (SD1.5), 64-wide heads (SDXL).
  EXPECT_EQ(UNetConfig::sd15().heads_for(640), 8);
  EXPECT_EQ(UNetConfig::sd15().head_dim_for(640), 80);
  EXPECT_EQ(UNetConfig::sdxl().heads_for(1280), 20);
  EXPECT_EQ(UNetConfig::sdxl().head_dim_for(1280), 64);
}

TEST(UNetConfig, ValidateRejectsInconsistentLists) {
  UNetConfig c = UNetConfig::tiny_sd15();
  c.transformer_depth_output.pop_back();
  EXPECT_THROW(c.validate(), Error);
  c = UNetConfig::tiny_sdxl();
  c.num_head_channels = 24;  // does not divide 32
  EXPECT_THROW(c.validate(), Error);
}

TEST(UNetConfig, DetectRecoversFullSizeConfigsFromShapes) {
  for (const auto& want :
       {UNetConfig::sd15(), UNetConfig::sd2(), UNetConfig::sdxl(), UNetConfig::sdxl_refiner()}) {
    const UNetConfig got = UNetConfig::detect(shapes_only(unet_params(want)));
    EXPECT_TRUE(got.same_architecture(want)) << "want " << want.describe() << "\n got " << got.describe();
    EXPECT_EQ(got.family(), want.family());
    EXPECT_EQ(got.num_heads, want.num_heads);
    EXPECT_EQ(got.num_head_channels, want.num_head_channels);
    EXPECT_EQ(got.attn_precision_fp32, want.attn_precision_fp32);
  }
}

TEST(UNetConfig, DetectRecoversTinyConfigsFromRandomWeights) {
  for (const auto& want : {UNetConfig::tiny_sd15(), UNetConfig::tiny_sdxl()}) {
    const UNetConfig got =
        UNetConfig::detect(StateDict::from_tensors(make_random_unet_weights(want, 1, at::kFloat)));
    EXPECT_TRUE(got.same_architecture(want)) << "want " << want.describe() << "\n got " << got.describe();
  }
  EXPECT_THROW(UNetConfig::detect(StateDict::from_tensors({{"foo", at::zeros({1})}})), Error);
}

TEST(UNetLayout, FullSizeKeyCountsMatchRealCheckpoints) {
  // Tensor counts under model.diffusion_model. in the released SD1.5 and SDXL base files.
  EXPECT_EQ(unet_params(UNetConfig::sd15()).size(), 686u);
  EXPECT_EQ(unet_params(UNetConfig::sdxl()).size(), 1680u);
  int64_t sd15 = 0;
  for (const auto& p : unet_params(UNetConfig::sd15())) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    sd15 += n;
  }
  EXPECT_EQ(sd15, 859520964);  // SD1.5 UNet parameter count
}

// Written by tools/goldens/make_unet_goldens.py --layouts from ComfyUI's own UNetModel.
std::map<std::string, std::vector<int64_t>> read_layout(const std::string& path) {
  std::map<std::string, std::vector<int64_t>> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string key, dims;
    s >> key >> dims;
    std::vector<int64_t> shape;
    std::istringstream d(dims);
    std::string tok;
    while (std::getline(d, tok, ',')) shape.push_back(std::stoll(tok));
    out.emplace(key, shape);
  }
  return out;
}

TEST(UNetLayout, MatchesComfyUILayouts) {
  const std::map<std::string, UNetConfig> configs{
      {"sd15", UNetConfig::sd15()},           {"sd2", UNetConfig::sd2()},
      {"sdxl", UNetConfig::sdxl()},           {"sdxl_refiner", UNetConfig::sdxl_refiner()},
      {"tiny_sd15", UNetConfig::tiny_sd15()}, {"tiny_sdxl", UNetConfig::tiny_sdxl()}};
  int found = 0;
  for (const auto& [name, config] : configs) {
    const std::string path = kDataDir + "layout_" + name + ".txt";
    if (!std::ifstream(path)) continue;
    ++found;
    const auto comfy = read_layout(path);
    std::map<std::string, std::vector<int64_t>> ours;
    for (const auto& p : unet_params(config)) ours.emplace(p.key, p.shape);
    for (const auto& [key, shape] : comfy) {
      auto it = ours.find(key);
      ASSERT_TRUE(it != ours.end()) << name << ": ComfyUI has '" << key << "', we do not";
      EXPECT_EQ(it->second, shape) << name << ": " << key;
    }
    for (const auto& [key, shape] : ours)
      EXPECT_TRUE(comfy.count(key)) << name << ": extra key '" << key << "'";
    const UNetConfig detected = UNetConfig::detect_from_shapes(comfy);
    EXPECT_TRUE(detected.same_architecture(config)) << name << ": " << detected.describe();
  }
  if (!found)
    GTEST_SKIP() << "no " << kDataDir << "layout_*.txt: run tools/goldens/make_unet_goldens.py --layouts";
}

TEST(UNetLayout, WeightStoreGroupsKeysIntoBlocksInExecutionOrder) {
  const UNetConfig c = UNetConfig::tiny_sdxl();
  auto weights = make_random_unet_weights(c, 3, at::kFloat);
  weights.emplace("model_ema.decay", at::zeros({}));  // ignored
  auto store = build_unet_weight_store(StateDict::from_tensors(weights), c, at::kHalf, at::kFloat);
  const UNetPlan plan = make_unet_plan(c);
  ASSERT_EQ(store->blocks().size(), plan.block_names.size());
  for (size_t i = 0; i < plan.block_names.size(); ++i)
    EXPECT_EQ(store->blocks()[i].name, plan.block_names[i]);
  // Residency units: a transformer block on its own, the transformer's norm and projections
  // together (proj_out comes back to the unit acquired before the blocks), one per ResBlock/conv.
  const auto& tb = store->block("input_blocks.3.1.transformer_blocks.1").host;
  EXPECT_TRUE(tb.count("input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight"));
  EXPECT_TRUE(tb.count("input_blocks.3.1.transformer_blocks.1.ff.net.2.bias"));
  EXPECT_FALSE(tb.count("input_blocks.3.1.transformer_blocks.0.ff.net.2.bias"));
  const auto& head = store->block("input_blocks.3.1").host;
  EXPECT_TRUE(head.count("input_blocks.3.1.proj_in.weight"));
  EXPECT_TRUE(head.count("input_blocks.3.1.proj_out.weight"));
  EXPECT_TRUE(head.count("input_blocks.3.1.norm.weight"));
  EXPECT_TRUE(store->block("input_blocks.3.0").host.count("input_blocks.3.0.in_layers.2.weight"));
  EXPECT_TRUE(store->block("output_blocks.1.2.conv").host.count("output_blocks.1.2.conv.weight"));
  EXPECT_TRUE(store->block("label_emb").host.count("label_emb.0.2.bias"));
  EXPECT_EQ(store->block("out").host.at("out.2.weight").scalar_type(), at::kHalf);
}

TEST(UNetLayout, MissingOrMisshapenKeyIsAnErrorNamingTheKey) {
  const UNetConfig c = UNetConfig::tiny_sd15();
  auto weights = make_random_unet_weights(c, 3, at::kFloat);
  const std::string victim = "output_blocks.2.1.transformer_blocks.0.ff.net.0.proj.weight";
  ASSERT_TRUE(weights.count(victim));
  auto missing = weights;
  missing.erase(victim);
  try {
    build_unet_weight_store(StateDict::from_tensors(missing), c, at::kFloat, at::kFloat);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModel);
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
  auto wrong = weights;
  wrong[victim] = at::zeros({3, 3});
  try {
    build_unet_weight_store(StateDict::from_tensors(wrong), c, at::kFloat, at::kFloat);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
}

TEST(UNetRandomWeights, DeterministicForASeed) {
  const UNetConfig c = UNetConfig::tiny_sd15();
  auto a = make_random_unet_weights(c, 42, at::kFloat);
  auto b = make_random_unet_weights(c, 42, at::kFloat);
  auto d = make_random_unet_weights(c, 43, at::kFloat);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : a) EXPECT_TRUE(at::equal(t, b.at(k))) << k;
  EXPECT_FALSE(at::equal(a.at("out.2.weight"), d.at("out.2.weight")));
  EXPECT_TRUE(at::equal(a.at("out.0.weight"), at::ones({32})));
  EXPECT_EQ(make_random_unet_weights(c, 42, at::kHalf).at("time_embed.0.weight").scalar_type(), at::kHalf);
}

TEST(UNetModel, OutputStdIsOrderOneOnUnitNoise) {
  for (const auto& c : {UNetConfig::tiny_sd15(), UNetConfig::tiny_sdxl()}) {
    auto unet = make_test_unet(c, make_random_unet_weights(c, 11, at::kFloat), cpu_memory().residency());
    Inputs in = make_inputs(c, 2, 16, 16);
    at::Tensor out = unet.model->forward(in.x, in.t, in.context, in.y);
    const double sd = out.std().item<double>();
    std::printf("%s: output std %.3f on unit noise\n", c.describe().c_str(), sd);
    EXPECT_GE(sd, 0.5) << c.describe();
    EXPECT_LE(sd, 2.0) << c.describe();
  }
}

// Full-size random UNets (3.4 GB fp32 for SD1.5, 10 GB for SDXL): opt-in with
// --gtest_also_run_disabled_tests. Checks that the random init keeps hidden states far from the
// fp16 range limit at the real depth and width, not only in the tiny configs.
void expect_order_one_at_full_size(const UNetConfig& c) {
  auto unet = make_test_unet(c, make_random_unet_weights(c, 11, at::kFloat), cpu_memory().residency());
  Inputs in = make_inputs(c, 1, 16, 16);
  double max_h = 0;
  UNetRunOptions opts;
  opts.output_block_patches.push_back(
      [&](const at::Tensor& h, const at::Tensor& hsp, const UNetPatchContext&) {
        max_h = std::max({max_h, h.abs().max().item<double>(), hsp.abs().max().item<double>()});
        return std::make_pair(h, hsp);
      });
  at::Tensor out = unet.model->forward(in.x, in.t, in.context, in.y, opts);
  const double sd = out.std().item<double>();
  std::printf("%s: output std %.3f, max |h| in output blocks %.1f\n", c.family().c_str(), sd, max_h);
  EXPECT_GE(sd, 0.5);
  EXPECT_LE(sd, 2.0);
  EXPECT_LT(max_h, 1000.0);
}

TEST(UNetModel, DISABLED_FullSizeSd15RandomWeightsStayOrderOne) {
  expect_order_one_at_full_size(UNetConfig::sd15());
}
TEST(UNetModel, DISABLED_FullSizeSdxlRandomWeightsStayOrderOne) {
  expect_order_one_at_full_size(UNetConfig::sdxl());
}

TEST(UNetModel, ShapesOddSizesAndDeterminism) {
  const UNetConfig c = UNetConfig::tiny_sdxl();
  auto unet = make_test_unet(c, make_random_unet_weights(c, 5, at::kFloat), cpu_memory().residency());
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{8, 8}, {7, 5}, {9, 12}}) {
    Inputs in = make_inputs(c, 2, hw.first, hw.second);
    at::Tensor a = unet.model->forward(in.x, in.t, in.context, in.y);
    EXPECT_EQ(a.sizes(), in.x.sizes());
    EXPECT_EQ(a.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::isfinite(a).all().item<bool>());
    EXPECT_TRUE(at::equal(a, unet.model->forward(in.x, in.t, in.context, in.y)));
  }
  Inputs in = make_inputs(c, 1, 8, 8);
  EXPECT_THROW(unet.model->forward(in.x, in.t, in.context, at::Tensor()), Error);  // SDXL needs y
}

TEST(UNetModel, BatchItemsAreIndependent) {
  const UNetConfig c = UNetConfig::tiny_sd15();
  auto unet = make_test_unet(c, make_random_unet_weights(c, 5, at::kFloat), cpu_memory().residency());
  Inputs in = make_inputs(c, 2, 8, 8);
  at::Tensor both = unet.model->forward(in.x, in.t, in.context, in.y);
  at::Tensor second =
      unet.model->forward(in.x.narrow(0, 1, 1), in.t.narrow(0, 1, 1), in.context.narrow(0, 1, 1), {});
  EXPECT_LT((both.narrow(0, 1, 1) - second).abs().max().item<double>(), 1e-4);
}

TEST(UNetModel, AcquiresUnitsInExecutionOrderAndChecksCancel) {
  const UNetConfig c = UNetConfig::tiny_sdxl();
  RecordingResidency rec(cpu_memory().residency());
  auto unet = make_test_unet(c, make_random_unet_weights(c, 5, at::kFloat), rec);
  Inputs in = make_inputs(c, 1, 8, 8);
  int checks = 0;
  UNetRunOptions opts;
  opts.check_cancel = [&] { ++checks; };
  unet.model->forward(in.x, in.t, in.context, in.y, opts);
  EXPECT_EQ(rec.acquired, unet.model->plan().block_names);
  EXPECT_EQ(checks, static_cast<int>(rec.acquired.size()));
  const std::vector<std::string> head{"time_embed", "label_emb", "input_blocks.0.0"};
  EXPECT_EQ(std::vector<std::string>(rec.acquired.begin(), rec.acquired.begin() + 3), head);
  EXPECT_EQ(rec.acquired.back(), "out");

  opts.check_cancel = [&] {
    if (++checks > 100) throw Error(ErrorKind::kCancelled, "cancelled");
  };
  checks = 97;
  rec.acquired.clear();
  EXPECT_THROW(unet.model->forward(in.x, in.t, in.context, in.y, opts), Error);
  EXPECT_EQ(rec.acquired.size(), 3u);
}

TEST(UNetModel, OutputBlockPatchSeesEveryOutputBlock) {
  const UNetConfig c = UNetConfig::tiny_sd15();
  auto unet = make_test_unet(c, make_random_unet_weights(c, 5, at::kFloat), cpu_memory().residency());
  Inputs in = make_inputs(c, 1, 8, 8);
  const at::Tensor plain = unet.model->forward(in.x, in.t, in.context, in.y);
  std::vector<int64_t> seen;
  UNetRunOptions opts;
  opts.output_block_patches.push_back(
      [&](const at::Tensor& h, const at::Tensor& hsp, const UNetPatchContext& ctx) {
        seen.push_back(ctx.output_block);
        EXPECT_EQ(ctx.original_shape, in.x.sizes().vec());
        EXPECT_EQ(h.size(2), hsp.size(2));
        return std::make_pair(h, hsp);
      });
  EXPECT_TRUE(at::equal(plain, unet.model->forward(in.x, in.t, in.context, in.y, opts)));
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3}));
  opts.output_block_patches.push_back([](const at::Tensor& h, const at::Tensor& hsp,
                                         const UNetPatchContext&) { return std::make_pair(h * 1.5, hsp); });
  EXPECT_FALSE(at::allclose(plain, unet.model->forward(in.x, in.t, in.context, in.y, opts)));
}

TEST(UNetModel, Fp16RunsCloseToFp32) {
  const UNetConfig c = UNetConfig::tiny_sd15();
  auto weights = make_random_unet_weights(c, 9, at::kFloat);
  auto f32 = make_test_unet(c, weights, cpu_memory().residency(), at::kFloat);
  auto bf16 = make_test_unet(c, weights, cpu_memory().residency(), at::kBFloat16);
  Inputs in = make_inputs(c, 1, 8, 8);
  at::Tensor a = f32.model->forward(in.x, in.t, in.context, in.y);
  at::Tensor b = bf16.model->forward(in.x.to(at::kBFloat16), in.t, in.context, in.y);
  EXPECT_EQ(b.scalar_type(), at::kBFloat16);
  const double rel = (a - b.to(at::kFloat)).norm().item<double>() / a.norm().item<double>();
  EXPECT_LT(rel, 5e-2);
}

TEST(UNetTimestepEmbedding, CosineFirstWithComfyFrequencies) {
  at::Tensor e = timestep_embedding(at::tensor({0.0f, 10.0f}), 8);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_TRUE(at::equal(e[0], at::cat({at::ones({4}), at::zeros({4})})));
  for (int k = 0; k < 4; ++k) {
    const double f = std::exp(-std::log(10000.0) * k / 4);
    EXPECT_NEAR(e[1][k].item<double>(), std::cos(10 * f), 1e-6);
    EXPECT_NEAR(e[1][4 + k].item<double>(), std::sin(10 * f), 1e-6);
  }
  EXPECT_EQ(timestep_embedding(at::tensor({1.0f}), 7).size(1), 7);
}

TEST(UNetPrediction, Sd2UsesTheNormBiasHeuristicAndSdxlUsesMarkerKeys) {
  const UNetConfig sd2 = UNetConfig::sd2();
  const std::string key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  EXPECT_EQ(detect_prediction(sd2, StateDict::from_tensors({{key, at::randn({320}, gen) * 0.2}})).type,
            PredictionType::kV);
  EXPECT_EQ(detect_prediction(sd2, StateDict::from_tensors({{key, at::randn({320}, gen) * 0.01}})).type,
            PredictionType::kEps);
  UNetConfig inpaint = sd2;
  inpaint.in_channels = 9;
  EXPECT_EQ(detect_prediction(inpaint, StateDict::from_tensors({{key, at::randn({320}, gen) * 0.2}})).type,
            PredictionType::kEps);

  const UNetConfig xl = UNetConfig::sdxl();
  EXPECT_EQ(detect_prediction(xl, StateDict::from_tensors({})).type, PredictionType::kEps);
  auto v =
      detect_prediction(xl, StateDict::from_tensors({{"v_pred", at::zeros({})}, {"ztsnr", at::zeros({})}}));
  EXPECT_EQ(v.type, PredictionType::kV);
  EXPECT_TRUE(v.zsnr);
  auto edm = detect_prediction(xl, StateDict::from_tensors({{"edm_vpred.sigma_max", at::tensor(120.0)}}));
  EXPECT_EQ(edm.type, PredictionType::kVEdm);
  EXPECT_DOUBLE_EQ(*edm.sigma_max, 120.0);
  EXPECT_EQ(detect_prediction(UNetConfig::sd15(), StateDict::from_tensors({{"v_pred", at::zeros({})}})).type,
            PredictionType::kEps);
}

}  // namespace
}  // namespace sdflow
