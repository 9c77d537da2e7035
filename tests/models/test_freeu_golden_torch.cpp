// FreeU / FreeU_V2 against ComfyUI's own nodes (comfy_extras/nodes_freelunch.py), fp32 on the CPU.
// tests/data/freeu comes from tools/goldens/make_freeu_goldens.py, which patches a real
// ModelPatcher with FreeU.execute / FreeU_V2.execute and runs BaseModel.apply_model; the UNet's
// weights are remade here from the same seeded rule (one randn per key, sorted order).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/diffusion/diffusion_model.h"
#include "models/loader/state_dict.h"
#include "models/patches/freeu.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kDir = SDFLOW_SOURCE_DIR "/tests/data/freeu/";

struct Goldens {
  nlohmann::json spec;
  StateDict tensors = StateDict::from_tensors({});
  std::shared_ptr<const DiffusionModel> model;
};

// make_freeu_goldens.py seeded_weights(): ≥ 2-D weights N(0, 1/fan_in), norm weights
// 1 + 0.1·N, biases 0.1·N, one randn per tensor in sorted key order.
std::map<std::string, at::Tensor> seeded_weights(const nlohmann::json& keys, uint64_t seed) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& k : keys) shapes[k.at(0).get<std::string>()] = k.at(1).get<std::vector<int64_t>>();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, shape] : shapes) {
    at::Tensor t = at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
    if (shape.size() >= 2) {
      int64_t fan_in = 1;
      for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
      t = t / std::sqrt(static_cast<double>(fan_in));
    } else if (key.size() > 7 && key.compare(key.size() - 7, 7, ".weight") == 0) {
      t = t * 0.1 + 1;
    } else {
      t = t * 0.1;
    }
    out.emplace(key, t);
  }
  return out;
}

UNetConfig config_from(const nlohmann::json& j) {
  UNetConfig c;
  c.in_channels = j.at("in_channels");
  c.out_channels = j.at("out_channels");
  c.model_channels = j.at("model_channels");
  c.channel_mult = j.at("channel_mult").get<std::vector<int64_t>>();
  c.num_res_blocks = j.at("num_res_blocks").get<std::vector<int64_t>>();
  c.transformer_depth = j.at("transformer_depth").get<std::vector<int64_t>>();
  c.transformer_depth_middle = j.at("transformer_depth_middle");
  c.transformer_depth_output = j.at("transformer_depth_output").get<std::vector<int64_t>>();
  c.context_dim = j.at("context_dim");
  c.use_linear_in_transformer = j.at("use_linear_in_transformer");
  c.num_heads = j.at("num_heads");
  c.num_head_channels = j.at("num_head_channels");
  return c;
}

const Goldens* goldens() {
  static const std::unique_ptr<Goldens> g = []() -> std::unique_ptr<Goldens> {
    std::ifstream f(kDir + "freeu_goldens.json");
    if (!f.good() || !std::ifstream(kDir + "freeu_goldens.safetensors").good()) return nullptr;
    auto g = std::make_unique<Goldens>();
    g->spec = nlohmann::json::parse(f);
    g->tensors = StateDict::open(kDir + "freeu_goldens.safetensors");
    const UNetConfig config = config_from(g->spec.at("unet"));
    const StateDict weights = StateDict::from_tensors(
        seeded_weights(g->spec.at("keys"), g->spec.at("weight_seed").get<uint64_t>()), "freeu-golden");
    EXPECT_TRUE(UNetConfig::detect(weights).same_architecture(config));
    auto store = build_unet_weight_store(weights, config, at::kFloat, at::kFloat);
    auto unet = std::make_shared<const UNetModel>(config, store, testing::cpu_memory().residency());
    g->model = std::make_shared<const DiffusionModel>(unet, DiffusionModelConfig::for_family("sd15", config));
    return g;
  }();
  return g.get();
}

#define REQUIRE_GOLDENS()                                                                      \
  const Goldens* g = goldens();                                                                \
  if (!g) GTEST_SKIP() << "tests/data/freeu not found (tools/goldens/make_freeu_goldens.py)"; \
  (void)g

double max_abs(const at::Tensor& a) { return a.abs().max().item<double>(); }

at::Tensor run_case(const Goldens& g, const nlohmann::json& patches) {
  DiffusionModel m = *g.model;
  for (const auto& p : patches) {
    FreeUParams params;
    params.version = p.at(0).get<std::string>() == "FreeU" ? FreeUVersion::kV1 : FreeUVersion::kV2;
    params.b1 = p.at(1);
    params.b2 = p.at(2);
    params.s1 = p.at(3);
    params.s2 = p.at(4);
    m = m.with_patch({p.at(0).get<std::string>(), make_freeu_patch(params, m.unet().config().model_channels)});
  }
  EXPECT_EQ(m.patches().size(), patches.size());
  EXPECT_EQ(m.unet_ptr(), g.model->unet_ptr());  // patches never copy the UNet
  ModelConds conds;
  conds.c_crossattn = g.tensors.at("context");
  return m.apply_model(g.tensors.at("x"), g.tensors.at("sigma"), conds, m.model_sampling());
}

TEST(FreeUGolden, PatchedModelMatchesComfyUI) {
  REQUIRE_GOLDENS();
  const at::Tensor plain = g->tensors.at("out.none");
  for (const auto& c : g->spec.at("cases")) {
    const std::string name = c.at("name");
    const at::Tensor want = g->tensors.at("out." + name);
    const at::Tensor got = run_case(*g, c.at("patches"));
    const double err = max_abs(got - want), scale = max_abs(want);
    std::printf("%-16s max|diff| %.3g (max|out| %.3g, max|out - unpatched| %.3g)\n", name.c_str(), err, scale,
                max_abs(want - plain));
    EXPECT_LE(err, 2e-5 * std::max(1.0, scale)) << name;
    // The patch must change the output far more than the tolerance, or this test proves nothing.
    if (name != "none") EXPECT_GT(max_abs(got - plain), 1e-2) << name;
  }
  EXPECT_TRUE(g->model->patches().empty());
}

TEST(FreeUGolden, FourierFilterMatchesComfyUI) {
  REQUIRE_GOLDENS();
  for (const auto& f : g->spec.at("filters")) {
    const std::string name = f.at("name");
    const at::Tensor x = g->tensors.at("filter_in." + name);
    const at::Tensor want = g->tensors.at("filter_out." + name);
    const at::Tensor got = fourier_filter(x, f.at("threshold"), f.at("scale"));
    ASSERT_EQ(got.sizes(), want.sizes()) << name;
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    const double err = max_abs(got - want);
    std::printf("filter %s %s max|diff| %.3g (max|x - out| %.3g)\n", name.c_str(), c10::str(x.sizes()).c_str(),
                err, max_abs(x - want));
    EXPECT_LE(err, 1e-5) << name;
  }
}

TEST(FreeU, FilterKeepsDtypeAndScaleOneIsIdentity) {
  const at::Tensor x = at::randn({1, 2, 5, 6}).to(at::kHalf);
  const at::Tensor y = fourier_filter(x, 1, 1.0);
  EXPECT_EQ(y.scalar_type(), at::kHalf);
  EXPECT_LE(max_abs(y.to(at::kFloat) - x.to(at::kFloat)), 1e-2);
}

TEST(FreeU, OtherWidthsPassThrough) {
  const OutputBlockPatch patch = make_freeu_patch({}, 32);
  const at::Tensor h = at::randn({1, 96, 4, 4}), hsp = at::randn({1, 32, 4, 4});
  auto [h2, hsp2] = patch(h, hsp, {});
  EXPECT_TRUE(h2.is_same(h));
  EXPECT_TRUE(hsp2.is_same(hsp));
  auto [h3, hsp3] = patch(at::ones({1, 128, 4, 4}), hsp, {});  // 4·32: b1 on the first half
  EXPECT_FLOAT_EQ(h3[0][0][0][0].item<float>(), 1.1f);
  EXPECT_FLOAT_EQ(h3[0][64][0][0].item<float>(), 1.0f);
}

}  // namespace
}  // namespace sdflow
