// The main job end to end through the Engine: ComfyUI's default txt2img graph (API and UI
// format) on tiny random SD1.5 / SDXL checkpoints in the real single-file layout, with the real
// CLIP vocabulary. Checks the PNG and its metadata, determinism across engines, the output cache
// (nothing re-runs; a seed change re-runs only what depends on it) and that clip skip and the
// SDXL encode node reach the image.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "io/image_codec.h"
#include "io/png_text.h"
#include "models/loader/make_checkpoint.h"
#include "sdflow/engine.h"
#include "sdflow/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

const fs::path kVocab = fs::path(SDFLOW_SHARED_DIR) / "data" / "clip-tokenizer";
const fs::path kDefaultUi =
    fs::path(SDFLOW_SHARED_DIR) / "data" / "comfyui-workflows" / "ui_sd15_txt2img_default_frontend.json";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ComfyUI's default graph with the sizes cut down for a tiny model on the CPU.
nlohmann::json default_api(const std::string& ckpt) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 8.0, "sampler_name": "euler",
          "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
          "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "CKPT"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle,", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
  })");
  j["4"]["inputs"]["ckpt_name"] = ckpt;
  return j;
}

class Txt2Img : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_regular_file(kVocab / "vocab.json") || !fs::is_regular_file(kVocab / "merges.txt"))
      GTEST_SKIP() << "CLIP vocab (vocab.json, merges.txt) not found in " << kVocab
                   << "; it is not part of the repository";
    std::random_device rd;
    root_ = fs::temp_directory_path() / ("sdflow_txt2img_" + std::to_string(rd()));
    fs::create_directories(root_ / "models" / "checkpoints");
    for (const char* arch : {"sd15", "sdxl"}) {
      CheckpointRecipe r;
      r.arch = arch;
      r.tiny = true;
      r.seed = 1;
      write_random_checkpoint(
          r, (root_ / "models" / "checkpoints" / (std::string(arch) + "-tiny.safetensors")).string());
    }
  }
  void TearDown() override {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }

  std::unique_ptr<Engine> engine(const std::string& output = "output") const {
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / output).string();
    o.temp_dir = (root_ / "temp").string();
    o.clip_vocab_dir = kVocab.string();
    return Engine::create(o);
  }

  static std::set<std::string> executed(const RunResult& r) {
    std::set<std::string> ids;
    for (const NodeReport& n : r.nodes)
      if (!n.cached) ids.insert(n.node_id);
    return ids;
  }

  static std::string only_image(const RunResult& r) {
    EXPECT_EQ(r.images.size(), 1u);
    return r.images.empty() ? "" : r.images[0].path;
  }

  fs::path root_;
};

std::vector<std::string> models_loaded(const RunResult& r) {
  std::vector<std::string> names;
  for (const NodeReport& n : r.nodes) names.insert(names.end(), n.models_loaded.begin(), n.models_loaded.end());
  return names;
}

// Smart memory: a second run (new seed) finds the models loaded; --disable-smart-memory
// unloads them after each run, so they load again.
TEST_F(Txt2Img, ModelsStayLoadedAcrossRunsUnlessSmartMemoryIsDisabled) {
  for (bool smart : {true, false}) {
    SCOPED_TRACE(smart ? "smart memory" : "--disable-smart-memory");
    EngineOptions o;
    o.models_dir = (root_ / "models").string();
    o.input_dir = (root_ / "input").string();
    o.output_dir = (root_ / "output").string();
    o.temp_dir = (root_ / "temp").string();
    o.clip_vocab_dir = kVocab.string();
    o.memory.disable_smart_memory = !smart;
    auto e = Engine::create(o);
    WorkflowHandle wf = e->parse_workflow(default_api("sd15-tiny.safetensors").dump(), "default");
    const std::vector<std::string> first = models_loaded(e->run(wf));
    EXPECT_EQ(first.size(), 3u);  // clip_l, unet, vae
    EXPECT_NE(std::find(first.begin(), first.end(), "unet (sd15-tiny.safetensors)"), first.end());
    wf.set("3", "seed", "43");
    const std::vector<std::string> second = models_loaded(e->run(wf));
    if (smart)
      EXPECT_TRUE(second.empty());
    else
      EXPECT_EQ(second, (std::vector<std::string>{"unet (sd15-tiny.safetensors)", "vae (sd15-tiny.safetensors)"}));
  }
}

TEST_F(Txt2Img, DefaultGraphWritesADeterministicPngAndCachesEverything) {
  auto e = engine();
  WorkflowHandle wf = e->parse_workflow(default_api("sd15-tiny.safetensors").dump(), "default");
  const RunResult first = e->run(wf);
  EXPECT_EQ(executed(first), (std::set<std::string>{"3", "4", "5", "6", "7", "8", "9"}));
  const std::string png = only_image(first);
  ASSERT_TRUE(fs::is_regular_file(png));
  const Image8 img = decode_image_file(png);
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.height, 64);
  EXPECT_EQ(img.channels, 3);
  EXPECT_GT(std::set<uint8_t>(img.pixels.begin(), img.pixels.end()).size(), 16u);  // not a flat (NaN) image
  const PngTextChunks chunks = read_png_text_file(png);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].first, "prompt");
  EXPECT_EQ(nlohmann::json::parse(chunks[0].second)["4"]["inputs"]["ckpt_name"], "sd15-tiny.safetensors");

  // Nothing changed: every node comes from the cache and nothing is written.
  const RunResult again = e->run(wf);
  EXPECT_TRUE(executed(again).empty());
  EXPECT_TRUE(again.images.empty());

  // A new seed re-runs the sampler and what depends on it, not the loader or the encoders.
  wf.set("3.seed=43");
  const RunResult reseeded = e->run(wf);
  EXPECT_EQ(executed(reseeded), (std::set<std::string>{"3", "8", "9"}));
  const Image8 other = decode_image_file(only_image(reseeded));
  EXPECT_NE(other.pixels, img.pixels);

  // A fresh engine gives the same bytes for the same graph.
  auto fresh = engine("output2");
  const RunResult repeat =
      fresh->run(fresh->parse_workflow(default_api("sd15-tiny.safetensors").dump(), "default"));
  EXPECT_EQ(slurp(only_image(repeat)), slurp(png));
}

TEST_F(Txt2Img, ClipSkipChangesTheImage) {
  auto e = engine();
  nlohmann::json api = default_api("sd15-tiny.safetensors");
  const Image8 base = decode_image_file(only_image(e->run(e->parse_workflow(api.dump()))));
  api["10"] = {{"class_type", "CLIPSetLastLayer"},
               {"inputs", {{"clip", {"4", 1}}, {"stop_at_clip_layer", -2}}}};
  api["6"]["inputs"]["clip"] = {"10", 0};
  api["7"]["inputs"]["clip"] = {"10", 0};
  const RunResult skipped = e->run(e->parse_workflow(api.dump()));
  EXPECT_EQ(executed(skipped), (std::set<std::string>{"10", "6", "7", "3", "8", "9"}));
  EXPECT_NE(decode_image_file(only_image(skipped)).pixels, base.pixels);
}

TEST_F(Txt2Img, ComfyUIDefaultUiWorkflowRunsWithPromptAndWorkflowChunks) {
  if (!fs::is_regular_file(kDefaultUi)) GTEST_SKIP() << kDefaultUi << " not present";
  auto e = engine();
  WorkflowHandle wf = e->load_workflow(kDefaultUi.string());
  wf.set("4.ckpt_name=sd15-tiny.safetensors");
  wf.set("5.width=64");
  wf.set("5.height=64");
  wf.set("3.steps=2");
  const std::string png = only_image(e->run(wf));
  std::set<std::string> keys;
  for (const auto& [k, v] : read_png_text_file(png)) keys.insert(k);
  EXPECT_TRUE(keys.count("prompt"));
  EXPECT_TRUE(keys.count("workflow"));
  EXPECT_EQ(decode_image_file(png).width, 64);
}

TEST_F(Txt2Img, TinySdxlRunsWithClipTextEncodeSdxl) {
  auto e = engine();
  nlohmann::json api = default_api("sdxl-tiny.safetensors");
  for (const char* id : {"6", "7"}) {
    const std::string text = api[id]["inputs"]["text"];
    api[id] = {{"class_type", "CLIPTextEncodeSDXL"},
               {"inputs",
                {{"clip", {"4", 1}},
                 {"width", 1024},
                 {"height", 1024},
                 {"crop_w", 0},
                 {"crop_h", 0},
                 {"target_width", 1024},
                 {"target_height", 1024},
                 {"text_g", text},
                 {"text_l", text}}}};
  }
  const RunResult r = e->run(e->parse_workflow(api.dump()));
  const Image8 img = decode_image_file(only_image(r));
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.height, 64);
  // The size values reach the ADM vector: other sizes give another image.
  api["6"]["inputs"]["width"] = 512;
  const RunResult resized = e->run(e->parse_workflow(api.dump()));
  EXPECT_EQ(executed(resized), (std::set<std::string>{"6", "3", "8", "9"}));
  EXPECT_NE(decode_image_file(only_image(resized)).pixels, img.pixels);
}

}  // namespace
}  // namespace sdflow
