// The tiny UNets with every attention kernel against ComfyUI's output (tests/data/unet, made by
// tools/goldens/make_unet_goldens.py with PyTorch attention), and the per-model attention patch:
// it reaches the UNet through DiffusionModel::apply_model and the CFG guider, stacks (last one
// wins) and shares the UNet instead of copying it.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "models/diffusion/cfg_guider.h"
#include "models/loader/state_dict.h"
#include "models/unet/unet.h"
#include "sampling/noise.h"
#include "unet_test_util.h"

namespace sdflow {
namespace {

const std::string kDataDir = SDFLOW_SOURCE_DIR "/tests/data/unet/";

struct Case {
  const char* name;
  UNetConfig config;
};

struct Backend {
  const char* name;
  AttentionBackend backend;
  int64_t free_bytes;  // the figure split / sub-quad size their chunks by
  double tolerance;    // max |diff| / max |ref|
};

void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

// fp32 kernels differ from SDPA by summation order only (1e-4 of the scale, the golden test's
// bound). The INT8 kernel quantises Q and K and rounds P and V to fp16 in every attention layer.
const Backend kBackends[] = {
    {"sdpa", AttentionBackend::kPytorch, 0, 1e-4},
    {"split_sliced", AttentionBackend::kSplit, 8 << 10, 1e-4},  // 8 KiB: several query slices
    {"split_whole", AttentionBackend::kSplit, int64_t{1} << 30, 1e-4},
    {"quad_chunked", AttentionBackend::kQuad, 1 << 10, 1e-4},  // key chunks of √N
    {"quad_whole", AttentionBackend::kQuad, int64_t{1} << 30, 1e-4},
    {"sage_int8", AttentionBackend::kSage, 0, 2e-2},
};

class UNetAttention : public ::testing::TestWithParam<Backend> {};

TEST_P(UNetAttention, MatchesComfyUIOnTheTinyUNets) {
  const Backend& b = GetParam();
  for (const Case& c : {Case{"tiny_sd15", UNetConfig::tiny_sd15()}, Case{"tiny_sdxl", UNetConfig::tiny_sdxl()}}) {
    const std::string weights_path = kDataDir + c.name + ".safetensors";
    const std::string io_path = kDataDir + c.name + "_io.safetensors";
    if (!std::ifstream(weights_path) || !std::ifstream(io_path))
      GTEST_SKIP() << "no " << weights_path << ": run tools/goldens/make_unet_goldens.py --comfy <ComfyUI dir>";
    const StateDict weights = StateDict::open(weights_path);
    const StateDict io = StateDict::open(io_path);
    auto store = build_unet_weight_store(weights, c.config, at::kFloat, at::kFloat);
    UNetModel model(c.config, store, testing::cpu_memory().residency());

    UNetRunOptions options;
    options.attention = b.backend;
    options.sage.fp32_falls_back = false;  // the tiny UNets are fp32: run the kernel, as KJNodes does
    if (b.free_bytes) options.free_memory = [f = b.free_bytes] { return f; };
    const at::Tensor y = io.has("y") ? io.at("y") : at::Tensor();
    const at::Tensor out = model.forward(io.at("x"), io.at("timesteps"), io.at("context"), y, options);
    const at::Tensor& ref = io.at("output");
    const double scale = ref.abs().max().item<double>();
    const double max_diff = (out - ref).abs().max().item<double>();
    const double rel_l2 = (out - ref).norm().item<double>() / ref.norm().item<double>();
    EXPECT_LT(max_diff / scale, b.tolerance) << c.name;
    std::printf("%-12s %-9s vs ComfyUI: max|diff|/max|ref| = %.3g, rel-L2 = %.3g\n", b.name, c.name,
                max_diff / scale, rel_l2);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, UNetAttention, ::testing::ValuesIn(kBackends),
                         [](const auto& info) { return std::string(info.param.name); });

std::shared_ptr<const DiffusionModel> tiny_sd15() {
  static auto m = [] {
    const UNetConfig config = UNetConfig::tiny_sd15();
    auto store = build_unet_weight_store(
        StateDict::from_tensors(make_random_unet_weights(config, 5, at::kFloat), "attention-test"), config,
        at::kFloat, at::kFloat);
    auto unet = std::make_shared<const UNetModel>(config, store, testing::cpu_memory().residency());
    return std::make_shared<const DiffusionModel>(unet, DiffusionModelConfig::for_family("sd15", config));
  }();
  return m;
}

ModelPatch attention_patch(AttentionBackend backend) {
  ModelPatch p;
  p.name = "test";
  p.attention = AttentionOverride{backend, {}};
  p.attention->sage.fp32_falls_back = false;
  return p;
}

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = sampling::make_seeded_generator(at::kCPU, seed);
  return at::randn(shape, g);
}

at::Tensor apply(const DiffusionModel& m, const UNetRunOptions& options = {}) {
  ModelConds conds;
  conds.c_crossattn = randn({1, 77, 48}, 2);
  return m.apply_model(randn({1, 4, 8, 8}, 1), at::full({1}, 2.0), conds, m.model_sampling(), options);
}

TEST(AttentionPatch, ReplacesTheFlagsKernelAndTheLastOneWins) {
  const auto base = tiny_sd15();
  UNetRunOptions flags;  // the flags' choice: SDPA
  const at::Tensor sdpa = apply(*base, flags);

  const DiffusionModel sage = base->with_patch(attention_patch(AttentionBackend::kSage));
  UNetRunOptions as_flag = flags;
  as_flag.attention = AttentionBackend::kSage;
  as_flag.sage.fp32_falls_back = false;
  const at::Tensor sage_out = apply(sage, flags);
  EXPECT_TRUE(at::equal(sage_out, apply(*base, as_flag)));  // the patch is the flag, for this model
  EXPECT_FALSE(at::allclose(sage_out, sdpa, 0, 1e-6));     // and not SDPA

  // Stacked: a later split patch replaces the sage one; the weights are still the base's.
  const DiffusionModel split = sage.with_patch(attention_patch(AttentionBackend::kSplit));
  EXPECT_EQ(split.unet_ptr(), base->unet_ptr());
  EXPECT_EQ(split.patches().size(), 2u);
  UNetRunOptions tiny_memory = flags;
  tiny_memory.free_memory = [] { return int64_t{1}; };  // > 64 slices: only split refuses this
  EXPECT_NO_THROW(apply(*base, tiny_memory));
  try {
    apply(split, tiny_memory);
    FAIL() << "split did not run";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory) << e.what();
  }
  EXPECT_LT((apply(split, flags) - sdpa).abs().max().item<double>(), 1e-4);
  // The input model is unchanged.
  EXPECT_TRUE(base->patches().empty());
  EXPECT_TRUE(at::equal(apply(*base, flags), sdpa));
}

TEST(AttentionPatch, TheCfgGuiderRunsThePatchedKernel) {
  const auto base = tiny_sd15();
  const auto patched =
      std::make_shared<const DiffusionModel>(base->with_patch(attention_patch(AttentionBackend::kSplit)));
  auto run = [](const std::shared_ptr<const DiffusionModel>& m) {
    CondInput pos, neg;
    pos.cross_attn = randn({1, 77, 48}, 3);
    neg.cross_attn = randn({1, 77, 48}, 4);
    CondContext ctx;
    ctx.noise_shape = {1, 4, 8, 8};
    GuiderOptions options;
    options.cfg = 5.0;
    options.unet.free_memory = [] { return int64_t{1}; };  // split refuses; SDPA does not look
    CfgGuider g(m, m->model_sampling(), process_conds(*m, m->model_sampling(), {pos}, {neg}, ctx), options);
    return g(randn({1, 4, 8, 8}, 5), at::full({1}, 3.0), false).denoised;
  };
  EXPECT_NO_THROW(run(base));
  EXPECT_THROW(run(patched), Error);
}

}  // namespace
}  // namespace sdflow
