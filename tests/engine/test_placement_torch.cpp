// Where models run and what the memory manager reports, under ComfyUI's rules
// (model_management.py: text_encoder_device, vae_device; COMFY_COMPAT 1.1, 1.7): a fake GPU
// that names a CUDA device nothing is ever copied to, so placement is visible on a CPU build.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "device/device.h"
#include "fake_gpu.h"
#include "memory/memory_manager.h"
#include "models/loader/checkpoint_loader.h"
#include "models/loader/make_checkpoint.h"
#include "models/loader/state_dict.h"
#include "models/vae/vae.h"

namespace sdflow {
namespace {

const at::Device kGpu(at::kCUDA, 0);

std::unique_ptr<MemoryManager> manager(VramMode mode, int cc = 8, bool cpu_vae = false,
                                       std::shared_ptr<test::FakeGpuState> state = nullptr) {
  MemoryOptions o;
  o.vram = mode;
  o.cpu_vae = cpu_vae;
  if (!state) state = std::make_shared<test::FakeGpuState>();
  return std::make_unique<MemoryManager>(o, std::make_unique<test::FakeGpu>(state, kGpu, cc));
}

TEST(Placement, TextEncodersRunOnTheCpuUnderLowAndNoVramLikeComfyUI) {
  EXPECT_EQ(manager(VramMode::kAuto)->text_encoder_device(), kGpu);
  EXPECT_EQ(manager(VramMode::kNormalVram)->text_encoder_device(), kGpu);
  EXPECT_EQ(manager(VramMode::kHighVram)->text_encoder_device(), kGpu);
  EXPECT_EQ(manager(VramMode::kGpuOnly)->text_encoder_device(), kGpu);
  EXPECT_EQ(manager(VramMode::kLowVram)->text_encoder_device(), at::Device(at::kCPU));
  EXPECT_EQ(manager(VramMode::kNoVram)->text_encoder_device(), at::Device(at::kCPU));
  // should_use_fp16 is false before Volta: ComfyUI keeps CLIP on the CPU there...
  EXPECT_EQ(manager(VramMode::kNormalVram, /*cc=*/6)->text_encoder_device(), at::Device(at::kCPU));
  // ...unless --gpu-only.
  EXPECT_EQ(manager(VramMode::kGpuOnly, /*cc=*/6)->text_encoder_device(), kGpu);
}

TEST(Placement, VaeRunsOnTheGpuUnlessCpuVae) {
  EXPECT_EQ(manager(VramMode::kNoVram)->vae_device(), kGpu);
  EXPECT_EQ(manager(VramMode::kNormalVram, 8, /*cpu_vae=*/true)->vae_device(), at::Device(at::kCPU));
}

TEST(Placement, CpuModelsGetAHostResidencyOfTheirOwn) {
  auto mm = manager(VramMode::kLowVram);
  EXPECT_EQ(&mm->residency_for(kGpu), &mm->residency());
  EXPECT_NE(&mm->residency_for(at::kCPU), &mm->residency());
}

class PlacedCheckpoint : public ::testing::Test {
 protected:
  // The file, not just its tensors: tiny checkpoints are recognised by their metadata.
  static void SetUpTestSuite() {
    path_ = std::filesystem::temp_directory_path() /
            ("sdflow_placement_" + std::to_string(::getpid()) + ".safetensors");
    CheckpointRecipe r;
    r.arch = "sd15";
    r.tiny = true;
    r.dtype = at::kFloat;
    write_random_checkpoint(r, path_.string());
  }
  static void TearDownTestSuite() { std::filesystem::remove(path_); }
  static StateDict tiny_sd15() { return StateDict::open(path_.string()); }
  static std::filesystem::path path_;
};
std::filesystem::path PlacedCheckpoint::path_;

TEST_F(PlacedCheckpoint, LowVramTextEncoderRunsWithoutTheGpu) {
  auto mm = manager(VramMode::kLowVram);
  LoadedCheckpoint ck = load_checkpoint(tiny_sd15(), *mm);
  ASSERT_TRUE(ck.clip && ck.clip->clip_l);
  const at::Tensor tokens = at::full({1, 77}, 49407, at::kLong);
  const ClipTextOutput out = ck.clip->clip_l->forward(tokens);
  EXPECT_TRUE(out.last.device().is_cpu());
  EXPECT_EQ(mm->residency().resident_bytes(), 0);  // nothing went to the GPU's policy
  EXPECT_GT(mm->residency_for(at::kCPU).resident_bytes(), 0);
  EXPECT_EQ(ck.vae->device, kGpu);
  // Under NORMAL_VRAM the same encoder is placed on the (fake) GPU: the compute device's
  // ModelResidency loads it, the host residency holds nothing. (The fake GPU's host copy stream
  // copies nothing to CUDA, so the forward runs.)
  auto normal = manager(VramMode::kNormalVram);
  LoadedCheckpoint on_gpu = load_checkpoint(tiny_sd15(), *normal);
  EXPECT_EQ(&normal->text_encoder_residency(), &normal->residency());
  if (!cuda_available()) {
    on_gpu.clip->clip_l->forward(tokens);
    EXPECT_FALSE(normal->loaded_models().empty());
    EXPECT_EQ(normal->host_residency().resident_bytes(), 0);
  }
}

TEST_F(PlacedCheckpoint, CpuVaeDecodesOnTheHost) {
  auto mm = manager(VramMode::kNormalVram, 8, /*cpu_vae=*/true);
  LoadedCheckpoint ck = load_checkpoint(tiny_sd15(), *mm);
  ASSERT_TRUE(ck.vae);
  EXPECT_EQ(ck.vae->device, at::Device(at::kCPU));
  EXPECT_EQ(ck.vae->dtype, at::kFloat);  // --cpu-vae computes in fp32, like ComfyUI
  const at::Tensor img = vae_decode(*ck.vae->model, at::zeros({1, 4, 8, 8}));
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 64, 64, 3}));
  EXPECT_EQ(mm->residency().resident_bytes(), 0);
}

TEST(MemoryFigures, TheBudgetCapsTotalAndFree) {
  auto state = std::make_shared<test::FakeGpuState>();
  constexpr int64_t kGiB = int64_t{1} << 30;
  state->stats.total = 80 * kGiB;
  state->stats.free = 70 * kGiB;
  state->stats.allocated = 1 * kGiB;
  MemoryOptions o;
  o.vram_budget_gb = 4;
  MemoryManager mm(o, std::make_unique<test::FakeGpu>(state));
  EXPECT_EQ(state->limit, 4 * kGiB);  // enforced through the allocator
  EXPECT_EQ(mm.stats().total, 4 * kGiB);
  EXPECT_EQ(mm.stats().free, 3 * kGiB);
  MemoryManager unbudgeted(MemoryOptions{}, std::make_unique<test::FakeGpu>(state));
  EXPECT_EQ(unbudgeted.stats().free, 70 * kGiB);
}

}  // namespace
}  // namespace sdflow
