// The whole txt2img path against ComfyUI itself: prompt text → tokenizer → CLIP → KSampler →
// latent → VAE decode → 8-bit image, on the tiny SD1.5 checkpoint `sdflow make-checkpoint --tiny`
// writes, compared with what ComfyUI v0.8.0's own nodes compute from the same file
// (tests/data/txt2img, made by tools/goldens/make_txt2img_golden.py). Also the CI promise that a
// batch-2 run gives the same PNG bytes in two separate `sdflow run` processes and that
// `--set 3.seed=...` reaches the pixels.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/cli_util.h"
#include "cli/sha256.h"
#include "io/image_codec.h"
#include "io/safetensors_torch.h"
#include "models/loader/make_checkpoint.h"
#include "sdflow/engine.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;
using test::q;
using test::run_sdflow;
using test::sha256_file;
using test::slurp;

const fs::path kData = fs::path(SDFLOW_SOURCE_DIR) / "tests" / "data" / "txt2img";
const fs::path kVocab = fs::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";
constexpr const char* kCheckpoint = "sd15-tiny.safetensors";

// Agreement with ComfyUI as measured with Debian's libtorch 1.13 on the CPU: every latent
// bitwise equal, and one 8-bit value of 24576 one level off (euler_ancestral: the VAE's float
// rounding put a value on the other side of SaveImage's truncation). The bounds leave room for
// another libtorch's reduction orders, not for a different formula: cfg 7.001 instead of 7
// already moves the euler latent by 1.3e-4 of its largest magnitude and 0.6 % of the levels.
constexpr double kLatentRelTol = 2e-5;
constexpr int kMaxLevelDiff = 1;
constexpr double kMaxDifferingLevels = 0.001;  // fraction of all 8-bit values

// ComfyUI's default graph (node ids as in its default workflow) with a SaveLatent on the
// sampler's output, all values from the golden's workflow and `c`, its case.
nlohmann::json workflow(const nlohmann::json& golden, const nlohmann::json& c) {
  const nlohmann::json& w = golden["workflow"];
  nlohmann::json j;
  j["3"] = {{"class_type", "KSampler"},
            {"inputs",
             {{"seed", c["seed"]},
              {"steps", c["steps"]},
              {"cfg", c["cfg"]},
              {"sampler_name", c["sampler_name"]},
              {"scheduler", c["scheduler"]},
              {"denoise", c["denoise"]},
              {"model", {"4", 0}},
              {"positive", {"6", 0}},
              {"negative", {"7", 0}},
              {"latent_image", {"5", 0}}}}};
  j["4"] = {{"class_type", "CheckpointLoaderSimple"}, {"inputs", {{"ckpt_name", kCheckpoint}}}};
  j["5"] = {{"class_type", "EmptyLatentImage"},
            {"inputs", {{"width", w["width"]}, {"height", w["height"]}, {"batch_size", w["batch_size"]}}}};
  j["6"] = {{"class_type", "CLIPTextEncode"}, {"inputs", {{"text", w["positive"]}, {"clip", {"4", 1}}}}};
  j["7"] = {{"class_type", "CLIPTextEncode"}, {"inputs", {{"text", w["negative"]}, {"clip", {"4", 1}}}}};
  j["8"] = {{"class_type", "VAEDecode"}, {"inputs", {{"samples", {"3", 0}}, {"vae", {"4", 2}}}}};
  j["9"] = {{"class_type", "SaveImage"}, {"inputs", {{"filename_prefix", "ComfyUI"}, {"images", {"8", 0}}}}};
  j["10"] = {{"class_type", "SaveLatent"}, {"inputs", {{"filename_prefix", "ComfyUI"}, {"samples", {"3", 0}}}}};
  return j;
}

class Txt2ImgGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_regular_file(kVocab / "vocab.json") || !fs::is_regular_file(kVocab / "merges.txt"))
      GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << kVocab
                   << "; it is not part of the repository";
    golden_ = nlohmann::json::parse(slurp(kData / "golden.json"));
    tensors_ = load_all((kData / "golden.safetensors").string());
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("sdflow_txt2img_golden_" + std::to_string(rd()));
    fs::create_directories(root_ / "models" / "checkpoints");

    const nlohmann::json& ck = golden_["checkpoint"];
    ASSERT_EQ(ck["arch"], "sd15");
    ASSERT_EQ(ck["dtype"], "fp16");
    CheckpointRecipe recipe;
    recipe.arch = "sd15";
    recipe.tiny = ck["tiny"].get<bool>();
    recipe.seed = ck["seed"].get<uint64_t>();
    recipe.dtype = at::kHalf;
    ckpt_ = root_ / "models" / "checkpoints" / kCheckpoint;
    write_random_checkpoint(recipe, ckpt_.string());
  }
  void TearDown() override {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  // The goldens were computed from one exact file; any other would make every comparison moot.
  void expect_golden_checkpoint() const {
    const std::string want = golden_["checkpoint"]["sha256"];
    ASSERT_EQ(sha256_file(ckpt_.string()), want)
        << "`" << golden_["checkpoint"]["recipe"].get<std::string>()
        << "` no longer writes the file the ComfyUI golden was made from (make_random_checkpoint or its "
           "layouts changed). Regenerate with:\n  /usr/bin/python3 tools/goldens/make_txt2img_golden.py "
           "--sdflow build/sdflow\nand commit tests/data/txt2img.";
  }

  EngineOptions options(const std::string& output) const {
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / output).string();
    o.temp_dir = (root_ / "temp").string();
    o.clip_vocab_dir = kVocab.string();
    return o;
  }

  nlohmann::json golden_;
  std::map<std::string, at::Tensor> tensors_;
  fs::path root_;
  fs::path ckpt_;
};

TEST(Sha256, KnownVectors) {
  test::Sha256 empty;
  EXPECT_EQ(empty.hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  test::Sha256 abc;
  abc.update(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_EQ(abc.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks, with the length spilling into the second.
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  test::Sha256 s;
  s.update(reinterpret_cast<const uint8_t*>(two.data()), two.size());
  EXPECT_EQ(s.hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_F(Txt2ImgGolden, TinyCheckpointIsTheOneTheGoldenWasMadeFrom) { expect_golden_checkpoint(); }

TEST_F(Txt2ImgGolden, DefaultGraphMatchesComfyUIForEverySampler) {
  expect_golden_checkpoint();
  if (HasFatalFailure()) return;
  auto engine = Engine::create(options("output"));
  ASSERT_FALSE(golden_["cases"].empty());
  for (const nlohmann::json& c : golden_["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const RunResult r = engine->run(engine->parse_workflow(workflow(golden_, c).dump(), name));

    // The KSampler output, through SaveLatent's file.
    ASSERT_EQ(r.latents.size(), 1u);
    const at::Tensor want = tensors_.at("latent." + name);
    const at::Tensor got = load_all(r.latents[0].path).at("latent_tensor").to(at::kFloat);
    ASSERT_EQ(got.sizes(), want.sizes());
    const double scale = want.abs().max().item<double>();
    const double max_diff = (got - want).abs().max().item<double>();
    const double rel = max_diff / scale;
    std::printf("[txt2img %-20s] latent %s: max |diff| %.3g, largest |value| %.4g, relative %.3g\n",
                name.c_str(), "[2,4,8,8]", max_diff, scale, rel);
    EXPECT_TRUE(std::isfinite(rel));
    EXPECT_LE(rel, kLatentRelTol);

    // The decoded images, through SaveImage's PNGs (one per batch item, in batch order).
    const at::Tensor levels = tensors_.at("image." + name).contiguous();
    const int64_t batch = levels.size(0), h = levels.size(1), w = levels.size(2), ch = levels.size(3);
    ASSERT_EQ(int64_t(r.images.size()), batch);
    int worst = 0;
    int64_t differing = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const Image8 img = decode_image_file(r.images[size_t(b)].path);
      ASSERT_EQ(img.width, w);
      ASSERT_EQ(img.height, h);
      ASSERT_EQ(img.channels, ch);
      const uint8_t* ref = levels[b].data_ptr<uint8_t>();
      for (size_t i = 0; i < img.pixels.size(); ++i) {
        const int d = std::abs(int(img.pixels[i]) - int(ref[i]));
        worst = std::max(worst, d);
        differing += d != 0;
      }
    }
    const double fraction = double(differing) / double(levels.numel());
    std::printf("[txt2img %-20s] image %lldx%lldx%lld x%lld: max level diff %d, %lld of %lld values differ\n",
                name.c_str(), (long long)h, (long long)w, (long long)ch, (long long)batch, worst,
                (long long)differing, (long long)levels.numel());
    EXPECT_LE(worst, kMaxLevelDiff);
    EXPECT_LE(fraction, kMaxDifferingLevels);
  }
}

// CI's done-when: two processes, same workflow, same bytes (no cache can help across processes),
// and a seed given on the command line changes the pixels of both batch items.
TEST_F(Txt2ImgGolden, BatchOfTwoIsByteIdenticalAcrossProcessesAndSeedReachesIt) {
  test::TempDir tmp;
  const nlohmann::json c = golden_["cases"].at(0);
  nlohmann::json wf = workflow(golden_, c);
  wf.erase("10");
  const fs::path file = tmp.write("txt2img.json", wf.dump());
  auto run = [&](const std::string& out, const std::string& extra) {
    const auto start = std::chrono::steady_clock::now();
    const test::CommandResult r =
        run_sdflow("--models-dir " + q(root_ / "models") + " --output-dir " + q(root_ / out) + " --clip-vocab " +
                       q(kVocab) + " -q run " + q(file) + extra,
                   tmp);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<fs::path> pngs;
    for (const auto& e : fs::directory_iterator(root_ / out))
      if (e.path().extension() == ".png") pngs.push_back(e.path());
    std::sort(pngs.begin(), pngs.end());
    return std::make_pair(pngs, s);
  };
  const auto [first, seconds] = run("run1", "");
  std::printf("[txt2img batch 2] `sdflow run` of the tiny default graph (64x64, batch 2, %d steps %s): %.2f s wall\n",
              c["steps"].get<int>(), c["sampler_name"].get<std::string>().c_str(), seconds);
  const auto [second, unused] = run("run2", "");
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(second.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(first[i].filename(), second[i].filename());
    EXPECT_TRUE(slurp(first[i]) == slurp(second[i])) << first[i] << " and " << second[i] << " differ";
  }
  const auto [reseeded, unused2] = run("run3", " --set 3.seed=" + std::to_string(c["seed"].get<uint64_t>() + 1));
  ASSERT_EQ(reseeded.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NE(decode_image_file(reseeded[i]).pixels, decode_image_file(first[i]).pixels) << reseeded[i];
  // The two batch items are different images too (each has its own noise).
  EXPECT_NE(decode_image_file(first[0]).pixels, decode_image_file(first[1]).pixels);
}

}  // namespace
}  // namespace sdflow
