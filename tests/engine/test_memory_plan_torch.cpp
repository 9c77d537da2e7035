// `sdflow plan` (Engine::plan): ComfyUI's estimate formulas against hand-computed values, and
// whole plans of a txt2img graph on a tiny random SD1.5 checkpoint — weights from the header at
// the dtypes sdflow picks (checked against the weight stores the loader really builds),
// activations per node, and which flags fit a budget.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "engine/memory_plan.h"
#include "fake_gpu.h"
#include "memory/memory_manager.h"
#include "models/diffusion/diffusion_model.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/vae/vae.h"
#include "sdflow/engine.h"
#include "sdflow/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr int64_t kGiB = int64_t{1} << 30;

TEST(PlanFormulas, UnetMemoryRequiredIsComfyUIsBaseModelEstimate) {
  // SD1.5, 512², cond batch 2, fp16 with flash attention: 2·64·64 · 2 B · 0.01 · 1.0 MiB.
  EXPECT_DOUBLE_EQ(unet_memory_required({2, 4, 64, 64}, at::kHalf, 1.0, true), 163.84 * kMiB);
  // Without flash attention the dtype does not matter: 8192 · 0.15 MiB.
  EXPECT_DOUBLE_EQ(unet_memory_required({2, 4, 64, 64}, at::kFloat, 1.0, false), 1228.8 * kMiB);
  // SDXL, 1024², memory_usage_factor 0.8: 2·128·128 · 2 · 0.01 · 0.8 MiB.
  EXPECT_DOUBLE_EQ(unet_memory_required({2, 4, 128, 128}, at::kHalf, 0.8, true), 524.288 * kMiB);
}

TEST(PlanFormulas, VaeEstimatesAreComfyUIsMemoryUsedDecodeAndEncode) {
  EXPECT_EQ(vae_decode_memory({1, 4, 64, 64}, at::kBFloat16), int64_t{2178} * 64 * 64 * 64 * 2);  // 1.06 GiB
  EXPECT_EQ(vae_decode_memory({1, 4, 64, 64}, at::kBFloat16), 1141899264);
  EXPECT_EQ(vae_encode_memory({1, 3, 512, 512}, at::kBFloat16), 926416896);
  // decode_tiled_ with 64×64 tiles: its passes are 32×128, 128×32 and 64×64 cells, 4096 each.
  EXPECT_EQ(vae_tiled_decode_memory(128, 128, 64, 64, at::kBFloat16), 1141899264);
  // A 40×40 latent: the 64×64 pass decodes it whole (1600 cells) and is the largest.
  EXPECT_EQ(vae_tiled_decode_memory(40, 40, 64, 64, at::kBFloat16), int64_t{2178} * 1600 * 64 * 2);
  // encode_tiled_ with 512 px tiles on a 1024² image: 512², 1024×256, 256×1024 pixels.
  EXPECT_EQ(vae_tiled_encode_memory(1024, 1024, 512, 512, at::kFloat), int64_t{1767} * 262144 * 4);
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("sdflow_plan_" + std::to_string(rd()));
    fs::create_directories(root_ / "models" / "checkpoints");
    CheckpointRecipe r;
    r.arch = "sd15";
    r.tiny = true;
    r.dtype = at::kFloat;
    ckpt_ = root_ / "models" / "checkpoints" / "tiny.safetensors";
    write_random_checkpoint(r, ckpt_.string());
  }
  void TearDown() override { fs::remove_all(root_); }

  // ComfyUI's default graph (ids as the frontend numbers them).
  std::string txt2img(int size, int batch) const {
    nlohmann::json wf = {
        {"4", {{"class_type", "CheckpointLoaderSimple"}, {"inputs", {{"ckpt_name", "tiny.safetensors"}}}}},
        {"5",
         {{"class_type", "EmptyLatentImage"},
          {"inputs", {{"width", size}, {"height", size}, {"batch_size", batch}}}}},
        {"6", {{"class_type", "CLIPTextEncode"}, {"inputs", {{"text", "a cat"}, {"clip", {"4", 1}}}}}},
        {"7", {{"class_type", "CLIPTextEncode"}, {"inputs", {{"text", "blurry"}, {"clip", {"4", 1}}}}}},
        {"3",
         {{"class_type", "KSampler"},
          {"inputs",
           {{"seed", 1},
            {"steps", 20},
            {"cfg", 7.0},
            {"sampler_name", "euler"},
            {"scheduler", "normal"},
            {"denoise", 1.0},
            {"model", {"4", 0}},
            {"positive", {"6", 0}},
            {"negative", {"7", 0}},
            {"latent_image", {"5", 0}}}}}},
        {"8", {{"class_type", "VAEDecode"}, {"inputs", {{"samples", {"3", 0}}, {"vae", {"4", 2}}}}}},
        {"9", {{"class_type", "SaveImage"}, {"inputs", {{"images", {"8", 0}}, {"filename_prefix", "x"}}}}}};
    return wf.dump();
  }

  MemoryPlan plan(int size, int batch, double budget_gb, MemoryOptions memory = {}) {
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / "output").string();
    o.memory = memory;
    auto engine = Engine::create(o);
    PlanOptions p;
    p.budget_gb = budget_gb;
    return engine->plan(engine->parse_workflow(txt2img(size, batch)), p);
  }

  static const PlannedNode& node(const MemoryPlan& p, const std::string& id) {
    for (const auto& n : p.nodes)
      if (n.node_id == id) return n;
    throw std::runtime_error("no planned node " + id);
  }
  static const PlannedModel& model(const MemoryPlan& p, const std::string& id) {
    for (const auto& m : p.models)
      if (m.id == id) return m;
    throw std::runtime_error("no planned model " + id);
  }

  fs::path root_;
  fs::path ckpt_;
};

TEST_F(PlanTest, WeightsAreWhatTheLoaderBuildsAtTheChosenDtypes) {
  if (cuda_available()) GTEST_SKIP() << "plans for an assumed GPU only where there is none";
  const MemoryPlan p = plan(512, 1, 8);
  EXPECT_EQ(p.device, "assumed CUDA GPU (compute capability 8)");
  ASSERT_EQ(p.models.size(), 3u);
  // The loader on a (fake) Ampere GPU picks the same dtypes: fp16 UNet and text encoder, bf16 VAE.
  MemoryManager mm(MemoryOptions{}, std::make_unique<test::FakeGpu>(std::make_shared<test::FakeGpuState>(),
                                                                    at::Device(at::kCUDA, 0), 8));
  const LoadedCheckpoint ck = load_checkpoint(StateDict::open(ckpt_.string()), mm);
  EXPECT_EQ(model(p, "unet@4").dtype, "Half");
  EXPECT_EQ(model(p, "unet@4").bytes, ck.model->unet().weights().total_bytes());
  EXPECT_EQ(model(p, "vae@4").dtype, "BFloat16");
  EXPECT_EQ(model(p, "vae@4").bytes, ck.vae->model->weights().total_bytes());
  EXPECT_EQ(model(p, "clip_l@4").dtype, "Half");
  EXPECT_EQ(model(p, "clip_l@4").bytes, ck.clip->clip_l->weights().total_bytes());
  EXPECT_TRUE(model(p, "clip_l@4").text_encoder);
  int64_t largest = 0;
  for (const auto& b : ck.model->unet().weights().blocks()) largest = std::max(largest, b.bytes);
  EXPECT_EQ(model(p, "unet@4").largest_block_bytes, largest);
}

TEST_F(PlanTest, ActivationsFollowTheShapesThroughTheGraph) {
  if (cuda_available()) GTEST_SKIP() << "plans for an assumed GPU only where there is none";
  const MemoryPlan p = plan(1024, 2, 8);
  ASSERT_EQ(p.nodes.size(), 4u);  // two text encodes, the sampler, the decode (loaders run nothing)
  EXPECT_EQ(p.nodes[0].class_type, "CLIPTextEncode");
  const PlannedNode& ks = node(p, "3");
  EXPECT_EQ(ks.shape, "latent [2, 4, 128, 128]");
  EXPECT_EQ(ks.models, (std::vector<std::string>{"unet@4"}));
  EXPECT_EQ(ks.activation_bytes,
            static_cast<int64_t>(unet_memory_required({4, 4, 128, 128}, at::kHalf, 1.0, true)));
  EXPECT_EQ(ks.min_activation_bytes,
            static_cast<int64_t>(unet_memory_required({2, 4, 128, 128}, at::kHalf, 1.0, true)));
  const PlannedNode& vd = node(p, "8");
  EXPECT_TRUE(vd.vae);
  EXPECT_EQ(vd.min_activation_bytes, vae_decode_memory({1, 4, 128, 128}, at::kBFloat16));
  EXPECT_EQ(vd.activation_bytes, 2 * vd.min_activation_bytes);
  EXPECT_EQ(vd.tiled_activation_bytes, vae_tiled_decode_memory(128, 128, 64, 64, at::kBFloat16));
}

TEST_F(PlanTest, SaysWhichFlagsFitAndWhenTheVaeNeedsTiles) {
  if (cuda_available()) GTEST_SKIP() << "plans for an assumed GPU only where there is none";
  // 1024² decodes need 4.25 GiB in one piece, 1.06 GiB in ComfyUI's tiles.
  MemoryPlan p = plan(1024, 1, 2);
  EXPECT_EQ(p.budget_bytes, 2 * kGiB);
  ASSERT_EQ(p.modes.size(), 4u);
  EXPECT_EQ(p.modes[1].flags, "--normalvram");
  EXPECT_TRUE(p.modes[1].fits);
  EXPECT_EQ(p.modes[1].needs_tiling, (std::vector<std::string>{"VAEDecode #8"}));
  ASSERT_GE(p.advice.size(), 2u);
  EXPECT_EQ(p.advice[0].rfind("fits in 2.00 GiB with --gpu-only", 0), 0u) << p.advice[0];
  EXPECT_EQ(p.advice[1].rfind("VAEDecode #8 needs tiling under 2.00 GiB", 0), 0u) << p.advice[1];

  // Half a GiB is below even one tile: nothing fits, and the plan says what is too big.
  p = plan(1024, 1, 0.5);
  for (const auto& m : p.modes) EXPECT_FALSE(m.fits) << m.flags;
  ASSERT_EQ(p.advice.size(), 1u);
  EXPECT_EQ(p.advice[0].rfind("does not fit in 0.50 GiB even with --novram: VAEDecode #8 needs", 0), 0u)
      << p.advice[0];

  // --cpu-vae takes the decode off the GPU: the sampler is what is left.
  MemoryOptions cpu_vae;
  cpu_vae.cpu_vae = true;
  p = plan(1024, 1, 0.5, cpu_vae);
  EXPECT_TRUE(p.modes[1].fits);
  EXPECT_EQ(p.modes[1].need_node, "KSampler #3");
}

TEST_F(PlanTest, LowVramKeepsTextEncodersOffTheGpuAndStreamsTheRest) {
  if (cuda_available()) GTEST_SKIP() << "plans for an assumed GPU only where there is none";
  const MemoryPlan p = plan(512, 1, 8);
  const PlannedModel& unet = model(p, "unet@4");
  size_t ks = 0, te = 0;
  for (size_t i = 0; i < p.nodes.size(); ++i) {
    if (p.nodes[i].node_id == "3") ks = i;
    if (p.nodes[i].node_id == "6") te = i;
  }
  const PlannedMode& normal = p.modes[1];
  const PlannedMode& low = p.modes[2];
  EXPECT_GT(normal.node_need_bytes[te], 0);
  EXPECT_EQ(low.node_need_bytes[te], 0);
  EXPECT_EQ(normal.node_need_bytes[ks], unet.bytes + p.nodes[ks].min_activation_bytes);
  EXPECT_EQ(low.node_need_bytes[ks],
            std::min(unet.bytes, 2 * unet.largest_block_bytes) + p.nodes[ks].min_activation_bytes);
}

TEST_F(PlanTest, AMissingCheckpointIsAValidationError) {
  fs::remove(ckpt_);
  try {
    plan(512, 1, 4);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kValidation);
    EXPECT_NE(std::string(e.what()).find("tiny.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdflow
