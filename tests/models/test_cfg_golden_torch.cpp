// The whole KSampler path (conds → CFG → sampler → UNet) against ComfyUI's own pipeline on the
// tiny UNets, fp32 on the CPU. tests/data/cfg comes from tools/goldens/make_cfg_goldens.py,
// which runs ComfyUI's comfy.sample.sample on a real BaseModel / SDXL + ModelPatcher.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "models/diffusion/cfg_guider.h"
#include "models/loader/state_dict.h"
#include "sampling/noise.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kCfgDir = SDFLOW_SOURCE_DIR "/tests/data/cfg/";
const std::string kUNetDir = SDFLOW_SOURCE_DIR "/tests/data/unet/";

bool goldens_present() {
  return std::ifstream(kCfgDir + "cfg_goldens.json").good() &&
         std::ifstream(kCfgDir + "cfg_goldens.safetensors").good();
}

struct Goldens {
  nlohmann::json spec;
  StateDict tensors = StateDict::from_tensors({});
  std::shared_ptr<const DiffusionModel> sd15, sdxl;
};

std::shared_ptr<const DiffusionModel> make_model(const std::string& family, const UNetConfig& config,
                                                 std::map<std::string, at::Tensor> weights) {
  auto store = build_unet_weight_store(StateDict::from_tensors(std::move(weights), "cfg-golden"), config,
                                       at::kFloat, at::kFloat);
  auto unet = std::make_shared<const UNetModel>(config, store, testing::cpu_memory().residency());
  return std::make_shared<const DiffusionModel>(unet, DiffusionModelConfig::for_family(family, config));
}

const Goldens& goldens() {
  static const Goldens g = [] {
    Goldens g;
    std::ifstream f(kCfgDir + "cfg_goldens.json");
    g.spec = nlohmann::json::parse(f);
    g.tensors = StateDict::open(kCfgDir + "cfg_goldens.safetensors");
    g.sd15 = make_model("sd15", UNetConfig::tiny_sd15(),
                        StateDict::open(kUNetDir + "tiny_sd15.safetensors").tensors());
    // tiny_sdxl with a label_emb wide enough for a real ADM vector (16-wide pooled output).
    UNetConfig xl = UNetConfig::tiny_sdxl();
    const int64_t pooled = g.spec.at("pooled_dim").get<int64_t>();
    xl.adm_in_channels = pooled + 6 * 256;
    auto w = StateDict::open(kUNetDir + "tiny_sdxl.safetensors").tensors();
    w["label_emb.0.0.weight"] =
        StateDict::open(kCfgDir + "sdxl_label_emb.safetensors").at("label_emb.0.0.weight");
    g.sdxl = make_model("sdxl", xl, std::move(w));
    return g;
  }();
  return g;
}

std::vector<CondInput> conds_from(const nlohmann::json& list, const StateDict& t) {
  std::vector<CondInput> out;
  for (const auto& entry : list) {
    CondInput c;
    c.cross_attn = t.at(entry.at(0).get<std::string>());
    for (const auto& [k, v] : entry.at(1).items()) {
      if (k == "area") {
        const auto a = v.get<std::vector<int64_t>>();
        c.area = CondArea{a[0], a[1], a[2], a[3]};
      } else if (k == "strength") {
        c.strength = v.get<double>();
      } else if (k == "set_area_to_bounds") {
        c.set_area_to_bounds = v.get<bool>();
      } else if (k == "mask") {
        c.mask = t.at(v.get<std::string>());
      } else if (k == "mask_strength") {
        c.mask_strength = v.get<double>();
      } else if (k == "start_percent") {
        c.start_percent = v.get<double>();
      } else if (k == "end_percent") {
        c.end_percent = v.get<double>();
      } else if (k == "pooled_output") {
        c.pooled_output = t.at(v.get<std::string>());
      } else if (k == "width") {
        c.width = v.get<double>();
      } else if (k == "height") {
        c.height = v.get<double>();
      } else if (k == "crop_w") {
        c.crop_w = v.get<double>();
      } else if (k == "crop_h") {
        c.crop_h = v.get<double>();
      } else if (k == "target_width") {
        c.target_width = v.get<double>();
      } else if (k == "target_height") {
        c.target_height = v.get<double>();
      } else {
        ADD_FAILURE() << "unknown cond option " << k;
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

struct CaseName {
  std::string name;
};
void PrintTo(const CaseName& c, std::ostream* os) { *os << c.name; }

std::vector<CaseName> case_names() {
  if (!goldens_present()) return {{"missing"}};
  std::ifstream f(kCfgDir + "cfg_goldens.json");
  std::vector<CaseName> names;
  const nlohmann::json spec = nlohmann::json::parse(f);
  for (const auto& c : spec.at("cases")) names.push_back({c.at("name").get<std::string>()});
  return names;
}

class CfgGolden : public ::testing::TestWithParam<CaseName> {};

TEST_P(CfgGolden, MatchesComfyUIInFp32) {
  if (!goldens_present()) GTEST_SKIP() << "no tests/data/cfg: run tools/goldens/make_cfg_goldens.py";
  const Goldens& g = goldens();
  nlohmann::json c;
  for (const auto& x : g.spec.at("cases"))
    if (x.at("name") == GetParam().name) c = x;
  ASSERT_FALSE(c.is_null());
  const StateDict& t = g.tensors;

  GuidedSampleRequest req;
  req.model = c.at("model") == "sdxl" ? g.sdxl : g.sd15;
  req.positive = conds_from(c.at("positive"), t);
  req.negative = conds_from(c.at("negative"), t);
  req.params.scheduler = c.at("scheduler").get<std::string>();
  req.params.steps = c.at("steps").get<int64_t>();
  req.params.denoise = c.value("denoise", 1.0);
  const std::string latent_name = c.at("latent");
  const at::Tensor latent = latent_name == "zero"       ? at::zeros({1, 4, 8, 8})
                            : latent_name == "zero_big" ? at::zeros({1, 4, 32, 24})
                                                        : t.at(latent_name);
  const auto seed = c.at("seed").get<uint64_t>();
  req.sample.sampler_name = c.at("sampler").get<std::string>();
  req.sample.noise = sampling::prepare_noise(latent, seed);
  req.sample.latent_image = latent;
  if (c.contains("noise_mask")) req.sample.denoise_mask = t.at(c.at("noise_mask").get<std::string>());
  req.sample.seed = seed;
  req.guider.cfg = c.at("cfg").get<double>();
  std::shared_ptr<const CfgGuider> guider;
  req.guider_out = &guider;

  const at::Tensor out = guided_sample(req);
  const at::Tensor& ref = t.at("result." + GetParam().name);
  ASSERT_EQ(out.sizes(), ref.sizes());
  const double rel_l2 = (out - ref).norm().item<double>() / ref.norm().item<double>();
  const double max_rel = (out - ref).abs().max().item<double>() / ref.abs().max().item<double>();
  std::printf("%-16s vs ComfyUI: rel-L2 %.3g, max|diff|/max|ref| %.3g, UNet calls %lld\n",
              GetParam().name.c_str(), rel_l2, max_rel, static_cast<long long>(guider->unet_calls()));
  EXPECT_LT(rel_l2, 1e-5) << "(the goldens reuse tests/data/unet/tiny_*.safetensors: rerun "
                             "tools/goldens/make_cfg_goldens.py after regenerating those)";
}

INSTANTIATE_TEST_SUITE_P(Cases, CfgGolden, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<CaseName>& i) { return i.param.name; });

// SDXL / refiner ADM vectors for a real 1280-wide pooled output (encode_adm called directly).
TEST(CfgGoldenAdm, MatchesComfyUIEncodeAdm) {
  if (!goldens_present()) GTEST_SKIP() << "no tests/data/cfg";
  const StateDict& t = goldens().tensors;
  auto params = [&](double w, double h) {
    AdmParams p;
    p.pooled = t.at("adm.pooled");
    p.width = w;
    p.height = h;
    p.target_width = w;
    p.target_height = h;
    return p;
  };
  struct Check {
    const char* key;
    AdmKind kind;
    AdmParams p;
  };
  std::vector<Check> checks;
  checks.push_back({"adm.sdxl_default", AdmKind::kSdxl, params(832, 1216)});
  AdmParams full = params(1024, 1024);
  full.crop_w = 12;
  full.crop_h = 34;
  full.target_width = 2048;
  full.target_height = 1536;
  checks.push_back({"adm.sdxl_full", AdmKind::kSdxl, full});
  checks.push_back({"adm.refiner_positive", AdmKind::kSdxlRefiner, params(1024, 1024)});
  AdmParams neg = params(896, 1152);
  neg.crop_w = 3;
  neg.aesthetic_score = 2.5;
  checks.push_back({"adm.refiner_negative", AdmKind::kSdxlRefiner, neg});
  AdmParams score = params(1024, 1024);
  score.aesthetic_score = 7.5;
  checks.push_back({"adm.refiner_score", AdmKind::kSdxlRefiner, score});
  for (const Check& c : checks) {
    const at::Tensor y = encode_adm(c.kind, c.p);
    const at::Tensor& ref = t.at(c.key);
    ASSERT_EQ(y.sizes(), ref.sizes()) << c.key;
    EXPECT_TRUE(at::equal(y, ref)) << c.key << ": max |diff| " << (y - ref).abs().max().item<double>();
  }
}

}  // namespace
}  // namespace sdflow
