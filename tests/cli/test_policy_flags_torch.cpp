// On a machine without a GPU every memory-policy flag falls back to the CPU, and the CPU computes
// on the host weights whatever the policy: `sdflow run` of the tiny txt2img graph with each flag
// (one process each) writes the same PNG bytes as without it, and the same latent (SaveLatent:
// the sampler's float values, which an 8-bit PNG can hide); a ModelBlockSwap node changes
// nothing either. The fp8 flags give the documented usage error on a libtorch without fp8.
// Skips without the CLIP vocabulary (../shared/data/clip-tokenizer) and on a CUDA machine, where
// the flags are not fallbacks.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/sha256.h"
#include "core/torch_compat.h"
#include "device/device.h"
#include "models/loader/make_checkpoint.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using test::q;

const fs::path kVocab = fs::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";

// ComfyUI's default graph, cut down for a tiny model on the CPU.
nlohmann::json txt2img() {
  return nlohmann::json::parse(R"({
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 8.0, "sampler_name": "euler",
          "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
          "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15-tiny.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle,", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "SaveLatent", "inputs": {"filename_prefix": "ComfyUI", "samples": ["3", 0]}}
  })");
}

struct RunOutput {
  test::CommandResult result;
  std::string png;     // sha256 of the one PNG written; empty when none
  std::string latent;  // sha256 of the sampler's latent (SaveLatent), which the 8-bit PNG can hide
};

class PolicyFlags : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_regular_file(kVocab / "vocab.json") || !fs::is_regular_file(kVocab / "merges.txt"))
      GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << kVocab
                   << "; it is not part of the repository";
    if (cuda_available()) GTEST_SKIP() << "a CUDA device is present: the flags are not CPU fallbacks here";
    fs::create_directories(tmp_.path() / "models" / "checkpoints");
    CheckpointRecipe r;
    r.arch = "sd15";
    r.tiny = true;
    r.seed = 1;
    write_random_checkpoint(r, (tmp_.path() / "models" / "checkpoints" / "sd15-tiny.safetensors").string());
    nlohmann::json swap = txt2img();
    swap["11"] = {{"class_type", "ModelBlockSwap"},
                  {"inputs", {{"model", {"4", 0}}, {"blocks_to_swap", 64}}}};
    swap["3"]["inputs"]["model"] = {"11", 0};
    workflow_ = tmp_.write("txt2img.json", txt2img().dump());
    block_swap_ = tmp_.write("txt2img_block_swap.json", swap.dump());
  }

  // One `sdflow run` in a fresh process and output folder.
  RunOutput run(const std::string& flags, const fs::path& workflow, const std::string& run_args = "") {
    const fs::path out = tmp_.path() / ("out" + std::to_string(++runs_));
    RunOutput r;
    r.result = test::run_sdflow("--models-dir " + q(tmp_.path() / "models") + " --output-dir " + q(out) +
                                    " --clip-vocab " + q(kVocab) + " -v " + flags + " run " + q(workflow) +
                                    " " + run_args,
                                tmp_);
    if (!fs::is_directory(out)) return r;
    for (const auto& e : fs::directory_iterator(out)) {
      std::string& sha = e.path().extension() == ".png" ? r.png : r.latent;
      EXPECT_TRUE(sha.empty()) << "more than one file like " << e.path();
      sha = test::sha256_file(e.path().string());
    }
    return r;
  }

  test::TempDir tmp_;
  fs::path workflow_, block_swap_;
  int runs_ = 0;
};

TEST_F(PolicyFlags, EveryMemoryFlagGivesTheDefaultBytesOnTheCpu) {
  const RunOutput base = run("", workflow_);
  ASSERT_EQ(base.result.exit_code, 0) << base.result.err;
  ASSERT_FALSE(base.png.empty());
  ASSERT_FALSE(base.latent.empty());
  // Flags read, not ignored: the GPU ones say they fell back, the budget that it has no VRAM.
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"--gpu-only", "no CUDA device available: running on the CPU"},
      {"--highvram", "no CUDA device available: running on the CPU"},
      {"--normalvram", ""},
      {"--lowvram", ""},
      {"--novram", ""},
      {"--cpu", ""},
      {"--reserve-vram 1", ""},
      {"--vram-budget 2", "--vram-budget 2 GB has no effect on cpu"},
      // Under what sampling needs: were it to cap the CPU's free figure (it did), cond and uncond
      // would run as two batches and the latent would change in its last bits.
      {"--vram-budget 0.001", "--vram-budget 0.001 GB has no effect on cpu"},
      {"--disable-smart-memory", ""},
      {"--cuda-device 0", "no CUDA device available: running on the CPU"},
      {"--cpu-vae", ""},
      {"--disable-mmap", ""},
  };
  for (const auto& [flag, says] : flags) {
    SCOPED_TRACE(flag);
    const RunOutput r = run(flag, workflow_);
    ASSERT_EQ(r.result.exit_code, 0) << r.result.err;
    EXPECT_EQ(r.png, base.png);
    EXPECT_EQ(r.latent, base.latent);
    EXPECT_NE(r.result.err.find("memory: device cpu,"), std::string::npos) << r.result.err;
    EXPECT_NE(r.result.err.find("vram state DISABLED"), std::string::npos) << r.result.err;
    if (!says.empty()) EXPECT_NE(r.result.err.find(says), std::string::npos) << r.result.err;
  }
  // The comparison can see a change: another seed, other bytes.
  const RunOutput reseeded = run("", workflow_, "--set 3.seed=43");
  ASSERT_EQ(reseeded.result.exit_code, 0) << reseeded.result.err;
  EXPECT_NE(reseeded.png, base.png);
  EXPECT_NE(reseeded.latent, base.latent);
}

// Every UNet block swapped (64 ≥ the tiny UNet's blocks). Without metadata, since the saved
// prompt names the extra node.
TEST_F(PolicyFlags, ModelBlockSwapGivesTheSameBytes) {
  const RunOutput base = run("--disable-metadata", workflow_);
  const RunOutput swapped = run("--disable-metadata", block_swap_);
  ASSERT_EQ(base.result.exit_code, 0) << base.result.err;
  ASSERT_EQ(swapped.result.exit_code, 0) << swapped.result.err;
  ASSERT_FALSE(base.png.empty());
  EXPECT_EQ(swapped.png, base.png);
  EXPECT_EQ(swapped.latent, base.latent);
  EXPECT_NE(swapped.result.err.find("[ModelBlockSwap #11] done"), std::string::npos) << swapped.result.err;
}

// docs/MEMORY.md: fp8 is storage only and needs libtorch ≥ 2.1; without it the loader refuses
// the flag as a usage error (exit 2) naming it, and nothing is written.
TEST_F(PolicyFlags, Fp8FlagsRunOrGiveTheDocumentedUsageError) {
  // One of each kind (tests/cli/test_comfy_flags_torch.cpp checks all four against the dtype choice).
  for (const char* flag : {"--fp8_e4m3fn-unet", "--fp8_e5m2-text-enc"}) {
    SCOPED_TRACE(flag);
    const RunOutput r = run(flag, workflow_);
    if (compat::kHasFp8) {
      EXPECT_EQ(r.result.exit_code, 0) << r.result.err;
      EXPECT_FALSE(r.png.empty());
      continue;
    }
    EXPECT_EQ(r.result.exit_code, 2) << r.result.err;
    EXPECT_NE(r.result.err.find(std::string("[CheckpointLoaderSimple #4] ") + flag +
                                " needs fp8 support in libtorch (2.1 or newer)"),
              std::string::npos)
        << r.result.err;
    EXPECT_TRUE(r.png.empty());
    EXPECT_TRUE(r.latent.empty());
  }
}

}  // namespace
}  // namespace sdflow
