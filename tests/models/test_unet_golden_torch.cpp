// Our UNet against ComfyUI's UNetModel on the same weights and inputs (fp32, CPU). The files
// come from tools/goldens/make_unet_goldens.py, which runs ComfyUI itself.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <ostream>
#include <set>

#include "models/loader/state_dict.h"
#include "models/unet/unet.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kDataDir = SDFLOW_SOURCE_DIR "/tests/data/unet/";

struct Case {
  const char* name;
  UNetConfig config;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class UNetGolden : public ::testing::TestWithParam<Case> {};

TEST_P(UNetGolden, MatchesComfyUIInFp32) {
  const Case& c = GetParam();
  const std::string weights_path = kDataDir + c.name + ".safetensors";
  const std::string io_path = kDataDir + c.name + "_io.safetensors";
  if (!std::ifstream(weights_path) || !std::ifstream(io_path))
    GTEST_SKIP() << "no " << weights_path << ": run tools/goldens/make_unet_goldens.py --comfy <ComfyUI dir>";

  const StateDict weights = StateDict::open(weights_path);
  const StateDict io = StateDict::open(io_path);

  // ComfyUI's key set for this config is exactly ours.
  std::set<std::string> ours, theirs;
  for (const auto& p : unet_params(c.config)) ours.insert(p.key);
  for (const auto& [k, t] : weights.tensors()) theirs.insert(k);
  EXPECT_EQ(ours, theirs);
  EXPECT_TRUE(UNetConfig::detect(weights).same_architecture(c.config));

  auto store = build_unet_weight_store(weights, c.config, at::kFloat, at::kFloat);
  UNetModel model(c.config, store, testing::cpu_memory().residency());
  const at::Tensor y = io.has("y") ? io.at("y") : at::Tensor();
  const at::Tensor out = model.forward(io.at("x"), io.at("timesteps"), io.at("context"), y);
  const at::Tensor& ref = io.at("output");
  ASSERT_EQ(out.sizes(), ref.sizes());

  const double max_diff = (out - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  const double rel_l2 = (out - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(max_diff / scale, 1e-4) << "max |diff| " << max_diff << " of max |ref| " << scale;
  EXPECT_LT(rel_l2, 1e-5);
  std::printf("%s vs ComfyUI: max|diff|/max|ref| = %.3g, rel-L2 = %.3g\n", c.name, max_diff / scale, rel_l2);
}

// The GPU path (SDPA on libtorch 2.x, cuDNN convolutions) against the same fp32 reference:
// fp32 with TF32 off must still match tightly; fp16 within the project's fp16 parity bound.
TEST_P(UNetGolden, MatchesComfyUIOnCuda) {
  const Case& c = GetParam();
  const std::string weights_path = kDataDir + c.name + ".safetensors";
  const std::string io_path = kDataDir + c.name + "_io.safetensors";
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!std::ifstream(weights_path) || !std::ifstream(io_path))
    GTEST_SKIP() << "no " << weights_path << ": run tools/goldens/make_unet_goldens.py --comfy <ComfyUI dir>";
  const StateDict weights = StateDict::open(weights_path);
  const StateDict io = StateDict::open(io_path);
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  testing::CopyingResidency cuda(at::Device(at::kCUDA));
  const at::Tensor& ref = io.at("output");
  for (at::ScalarType dtype : {at::kFloat, at::kHalf}) {
    auto store = build_unet_weight_store(weights, c.config, at::kFloat, dtype);
    UNetModel model(c.config, store, cuda);
    const at::Tensor y = io.has("y") ? io.at("y").to(at::kCUDA) : at::Tensor();
    const at::Tensor out = model.forward(io.at("x").to(at::kCUDA, dtype), io.at("timesteps").to(at::kCUDA),
                                         io.at("context").to(at::kCUDA), y);
    EXPECT_EQ(out.scalar_type(), dtype);
    const at::Tensor diff = out.to(at::kCPU, at::kFloat) - ref;
    const double rel_l2 = diff.norm().item<double>() / ref.norm().item<double>();
    std::printf("%s on CUDA in %s: rel-L2 %.3g\n", c.name, c10::toString(dtype), rel_l2);
    EXPECT_LT(rel_l2, dtype == at::kFloat ? 1e-5 : 1e-2) << c10::toString(dtype);
  }
  at::globalContext().setAllowTF32CuDNN(tf32);
}

INSTANTIATE_TEST_SUITE_P(Tiny, UNetGolden,
                         ::testing::Values(Case{"tiny_sd15", UNetConfig::tiny_sd15()},
                                           Case{"tiny_sdxl", UNetConfig::tiny_sdxl()}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace sdflow
